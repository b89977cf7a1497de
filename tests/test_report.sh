#!/usr/bin/env bash
# test_report.sh — `attnbench report` and `attnbench compare` on the committed fixtures
# (tests/fixtures: one real run and files derived from it). The page is opened in headless
# Chromium: every chart and table must have a non-zero size and no script error may be logged
# (the page writes both into #status); a deliberately broken page must fail that check. Bad
# files → exit 2 and no page; compare's exit codes for equal, improved, noisy, regressed and
# flipped files. usage: test_report.sh ATTNBENCH FIXTURES SCRATCH
set -u
bin=$1 fx=$2 scratch=$3
rm -rf "$scratch" && mkdir -p "$scratch"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

browser=$(command -v chromium || command -v chromium-browser || true)
status_of() { # the #status element of a page after rendering
  "$browser" --headless --no-sandbox --disable-gpu --user-data-dir="$(mktemp -d "$scratch/profile.XXXX")" \
    --virtual-time-budget=10000 --window-size=1280,4000 --dump-dom "file://$1" 2>/dev/null |
    grep -o '<div id="status"[^<]*</div>'
}

page="$scratch/index.html"
if "$bin" report "$fx/machine-a.json" "$fx/machine-b.json" --out "$page" >/dev/null; then ok "report exits 0"; else bad "report exit $?"; fi
if [ -n "$browser" ]; then
  st=$(status_of "$page")
  echo "     $st"
  canv=$(printf '%s' "$st" | sed -n 's/.*"canvases":\([0-9]*\).*/\1/p')
  tabs=$(printf '%s' "$st" | sed -n 's/.*"tables":\([0-9]*\).*/\1/p')
  if printf '%s' "$st" | grep -q 'data-ok="1"' && printf '%s' "$st" | grep -q '"zero_size":0,"errors":\[\]' &&
     [ "${canv:-0}" -ge 9 ] && [ "${tabs:-0}" -ge 5 ]; then
    ok "Chromium renders $canv charts and $tabs tables, none empty, no console error"
  else bad "page status: $st"; fi
  # The check can fail: a script error before rendering leaves the page not ok.
  sed 's/^const machineOf = /no_such_function(); const machineOf = /' "$page" > "$scratch/broken.html"
  st=$(status_of "$scratch/broken.html")
  printf '%s' "$st" | grep -q 'data-ok="0"' && ok "a page with a script error is caught" || bad "broken page passed: $st"
else
  echo "SKIP Chromium is not installed (make installs it)"; skipped=1
fi
grep -q "https\?://[a-z]" <(grep -o '<script src=[^>]*>' "$page") && bad "the page loads a script from the network" ||
  ok "no external script: the page works offline"

# Bad input: one error, exit 2, no page.
printf '{"schema": "attnbench.results/1", "run": {"run_id": "x", "host": "h"}, "records": [' > "$scratch/truncated.json"
sed 's/attnbench.results\/1/other.results\/9/' "$fx/equal.json" > "$scratch/schema.json"
sed 's/"backend":"naive"/"backend":7/' "$fx/equal.json" > "$scratch/field.json"
for f in truncated schema field; do
  out="$scratch/bad-$f.html"
  err=$("$bin" report "$scratch/$f.json" --out "$out" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 2 ] && [ ! -e "$out" ] && printf '%s' "$err" | grep -q "$f.json"; then ok "report refuses $f.json: $err"
  else bad "report on $f.json: exit $rc, page $( [ -e "$out" ] && echo written || echo absent ), $err"; fi
  "$bin" compare "$fx/equal.json" "$scratch/$f.json" >/dev/null 2>&1; rc=$?
  [ $rc -eq 2 ] && ok "compare refuses $f.json (exit 2)" || bad "compare on $f.json: exit $rc"
done

# compare: the gate.
expect() { # expect CODE PATTERN NEW.json [flags]
  local code=$1 pattern=$2 new=$3; shift 3
  out=$("$bin" compare "$fx/machine-a.json" "$fx/$new" "$@" 2>&1); rc=$?
  if [ $rc -eq "$code" ] && printf '%s' "$out" | grep -q -- "$pattern"; then ok "compare $new $* → exit $rc"
  else bad "compare $new $*: exit $rc (want $code, '$pattern')"; printf '%s\n' "$out" | tail -3; fi
}
expect 0 "0 status regression(s), 0 timed metric(s) worse, 0 better" equal.json
expect 0 "improved" improved.json
expect 0 "0 timed metric(s) worse" noisy.json --threshold 5%
expect 1 "REGRESSED" regressed.json
expect 1 "1 status regression" flipped.json
expect 2 "threshold" equal.json --threshold lots
/usr/bin/python3 - "$fx/machine-a.json" "$scratch/fewer.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["records"] = [r for r in d["records"] if r["task"] != "memory"]
json.dump(d, open(sys.argv[2], "w"))
PY
out=$("$bin" compare "$fx/machine-a.json" "$scratch/fewer.json" 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$(printf '%s\n' "$out" | grep -c '^only in BASE: memory')" -eq 6 ] &&
  ok "records without a match are listed (6 memory records only in BASE)" || bad "unmatched listing: exit $rc"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] || exit 1
[ "${skipped:-0}" -eq 1 ] && exit 77
exit 0
