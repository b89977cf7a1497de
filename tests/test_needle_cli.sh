#!/usr/bin/env bash
# test_needle_cli.sh — `attnbench needle` end to end with the set-up's tokenizer and corpus:
# exact recall, the window's recall equal to its in-window fraction, a second haystack, the
# grid written as it goes and --resume running only what a file lacks, bad flags refused with
# no file left behind. usage: test_needle_cli.sh ATTNBENCH SCRATCH PYTHON3
set -u
bin=$1 scratch=$2 py=$3
rm -rf "$scratch" && mkdir -p "$scratch"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# check FILE.json PYTHON-EXPRESSION NAME: the expression sees `recs` (the file's needle records).
check() {
  if "$py" - "$1" "$2" <<'PY'; then ok "$3"; else bad "$3"; fi
import json, sys
recs = [r for r in json.load(open(sys.argv[1]))["records"] if r["task"] == "needle"]
ok = eval(sys.argv[2])
if not ok:
    for r in recs:
        print("     ", r["backend"], r["config"]["seq_len_k"], r["config"]["depth"], r["status"], r["metrics"].get("recall"),
              r["metrics"].get("recall_expected"), r["reason"])
sys.exit(0 if ok else 1)
PY
}

G=(--seq-len 2048 --depths 0:100:25 --window 1000 --threads 2)
out="$scratch/a"
if "$bin" needle --backends blockwise,sliding_window "${G[@]}" --out-dir "$out" >"$scratch/a.log" 2>&1; then
  ok "needle blockwise,sliding_window n=2048 exits 0"; else bad "needle run exit $?"; tail "$scratch/a.log"; fi
f=$(ls "$out"/*.json 2>/dev/null | head -1)
check "$f" 'len(recs) == 10 and all(r["status"] == "pass" for r in recs)' "10 records, all pass"
check "$f" 'all(r["metrics"]["recall"] == 1 for r in recs if r["backend"] == "blockwise")' "blockwise recall 1 at every depth"
check "$f" '(all(r["metrics"]["recall"] == r["metrics"]["recall_expected"] for r in recs) and
            sorted(r["metrics"]["recall"] for r in recs if r["backend"] == "sliding_window") == [0, 0, 0, 1, 1])' \
  "sliding_window w=1000 recalls the 2 depths inside its window (75, 100 %), not the 3 outside"
grep -q "needle recall % — blockwise" "$scratch/a.log" && ok "grid printed" || bad "no grid in the output"

# --resume: the same file grows by the new depths only.
"$bin" needle --backends blockwise,sliding_window --seq-len 2048 --depths 0:100:12.5 --window 1000 --threads 2 \
  --out-dir "$out" --resume "$f" >"$scratch/b.log" 2>&1 && ok "resume exits 0" || bad "resume exit $?"
[ "$(grep -c 'kept from' "$scratch/b.log")" -eq 10 ] && ok "resume keeps the 10 measured cases" || bad "resume recomputed"
check "$f" 'len(recs) == 18 and len({(r["backend"], r["config"]["depth"]) for r in recs}) == 18' "resumed file holds 18 cases once each"
[ "$(ls "$out" | wc -l)" -eq 2 ] && ok "one json and one csv" || bad "extra files: $(ls "$out")"

# A different haystack gives the same exact recall.
out="$scratch/c"
"$bin" needle --backends blockwise --haystack noise "${G[@]}" --out-dir "$out" >/dev/null 2>&1 && ok "noise haystack exits 0" || bad "noise haystack"
check "$(ls "$out"/*.json | head -1)" 'len(recs) == 5 and all(r["metrics"]["recall"] == 1 for r in recs)' "noise haystack: recall 1"

# Bad input: one message, exit 2, nothing written.
out="$scratch/d"
for args in "--depths 0:200:10" "--needles 17" "--mode decode" "--ask some" "--resume $scratch/missing.json" \
            "--haystack $scratch/missing.txt" "--tokenizer $scratch/a.log"; do
  err=$("$bin" needle --backends blockwise --seq-len 512 --out-dir "$out" $args 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$err" | grep -c 'error:')" -eq 1 ] && [ -z "$(ls -A "$out" 2>/dev/null)" ]; then
    ok "refused: $args (exit $rc)"; else bad "$args: exit $rc, output: $err"; fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
