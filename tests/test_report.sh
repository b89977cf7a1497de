#!/usr/bin/env bash
# test_report.sh — `attnbench report` and `attnbench compare` on the committed fixtures
# (tests/fixtures: real runs and files derived from them, which say so). The pages are opened in
# headless Chromium, every view in turn: every chart and table must have a non-zero size, no script
# error may be logged and no two series of a chart share a colour (the page writes these into its
# hidden #status); the cross-hardware, peers, roofline and gate-history views' figures are checked
# against the files (tests/report_dom.py); a deliberately broken page must fail. Bad files → exit 2
# and no page; compare's exit codes for equal, improved, noisy, regressed and flipped files, and on
# the nightly fixtures the verdicts the gate history shows. usage: test_report.sh ATTNBENCH FIXTURES SCRATCH
set -u
bin=$1 fx=$2 scratch=$3
rm -rf "$scratch" && mkdir -p "$scratch"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

browser=$(command -v chromium || command -v chromium-browser || true)
dom_of() { # the DOM of a page (URL, with a #view) after rendering
  "$browser" --headless --no-sandbox --disable-gpu --user-data-dir="$(mktemp -d "$scratch/profile.XXXX")" \
    --virtual-time-budget=10000 --window-size=1280,4000 --dump-dom "file://$1" 2>/dev/null
}
# A page's DOM → its #status, or a check of it (tests/report_dom.py).
dom=$(dirname "$0")/report_dom.py

page="$scratch/index.html"
if "$bin" report "$fx/machine-a.json" "$fx/machine-b.json" --out "$page" >/dev/null; then ok "report exits 0"; else bad "report exit $?"; fi
hw="$scratch/hw.html"
if "$bin" report "$fx/hw-cpu.json" "$fx/hw-gpu.json" --history "$fx/nightly" --out "$hw" >/dev/null; then
  ok "report of the two-machine fixture with --history exits 0"; else bad "report hw exit $?"; fi
if [ -n "$browser" ]; then
  # Every view through its button (#cycle): charts and tables drawn with a size, no console error,
  # no two series of a chart in one colour; the status element is hidden.
  out=$(dom_of "$page#cycle" | python3 "$dom" cycle overview:9:5 cross:1:1 roofline:2:1 peers:0:0 history:0:0)
  [ $? -eq 0 ] && ok "fixtures page, every view: $out" || bad "fixtures page: $out"
  out=$(dom_of "$hw#cycle" | python3 "$dom" cycle overview:3:1 cross:1:1 roofline:2:1 peers:1:1 history:2:1)
  [ $? -eq 0 ] && ok "two-machine page, every view: $out" || bad "two-machine page: $out"
  # Each view by itself, and its figures against the files (report_dom.py computes them from the JSON).
  for v in cross peers roofline history; do
    out=$(dom_of "$hw#view=$v" | python3 "$dom" "$v" "$fx")
    [ $? -eq 0 ] && ok "view $v: $out" || bad "view $v: $out"
  done
  out=$(dom_of "$hw#view=cross&base=1" | python3 "$dom" cross "$fx" gpu)
  [ $? -eq 0 ] && ok "view cross, the GPU as baseline: $out" || bad "view cross, GPU baseline: $out"
  # The check can fail: a script error before rendering leaves the page not ok.
  sed 's/^const machineOf = /no_such_function(); const machineOf = /' "$page" > "$scratch/broken.html"
  out=$(dom_of "$scratch/broken.html#cycle" | python3 "$dom" cycle overview:0:0)
  [ $? -ne 0 ] && ok "a page with a script error is caught: $out" || bad "broken page passed: $out"
else
  echo "SKIP Chromium is not installed (make installs it)"; skipped=1
fi
grep -q "https\?://[a-z]" <(grep -o '<script src=[^>]*>' "$page") && bad "the page loads a script from the network" ||
  ok "no external script: the page works offline"

# The gate history is compare's rule: night 3 (x3 slower) fails against night 2, the others pass.
for pair in "1 2 0" "2 3 1" "3 4 0"; do
  set -- $pair
  "$bin" compare "$fx/nightly/night-$1.json" "$fx/nightly/night-$2.json" >/dev/null 2>&1; rc=$?
  [ $rc -eq "$3" ] && ok "compare night-$1 night-$2 → exit $rc, as the history says" || bad "compare night-$1 night-$2: exit $rc"
done
mkdir -p "$scratch/one-night" && cp "$fx/nightly/night-1.json" "$scratch/one-night/"
for d in "$scratch/one-night" "$scratch/no-such-dir"; do
  err=$("$bin" report --history "$d" --out "$scratch/h.html" 2>&1 >/dev/null); rc=$?
  [ $rc -eq 2 ] && [ ! -e "$scratch/h.html" ] && ok "report --history $(basename "$d") refused: $err" || bad "--history $d: exit $rc"
done

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
