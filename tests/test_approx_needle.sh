#!/usr/bin/env bash
# test_approx_needle.sh — the approximate backends' needle sweep (slow; docs/approximate.md):
# query-tail needles in the KJV and in the Vim documentation, with and without distractors,
# blockwise, sliding_window, sinks_window (--sinks list) and topk_blocks (--topk list), then the
# report page. Checks what must hold whatever the data: exact recall 100 %, every approximate
# record `approximate` with recall and key_fraction in 0 … 1, topk_blocks at 5 % visiting at
# most 10 % of the keys from 16K on, and at 10 % from 16K on (where the budget exceeds the window)
# its recall never below sinks_window's best at the same case.
# usage: test_approx_needle.sh ATTNBENCH SCRATCH PYTHON3 [SEQ_LENS (4096,16384,65536)] [HAYSTACKS ("kjv vim")]
# (the haystacks named are rerun; other results already in SCRATCH are checked and reported too)
set -u
bin=$1 scratch=$2 py=$3 lens=${4:-4096,16384,65536} hays=${5:-kjv vim}
mkdir -p "$scratch"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

vimdoc="$scratch/vimdoc.txt"
if ls /usr/share/vim/vim*/doc/*.txt >/dev/null 2>&1; then # <k0> is Vim's keypad 0: not a needle symbol here
  cat /usr/share/vim/vim*/doc/*.txt | sed -E 's/<([kv])([0-9]+)>/<\1 \2>/g' | head -c 60000000 >"$vimdoc"
fi
G=(--backends blockwise,sliding_window,sinks_window,topk_blocks --seq-len "$lens" --mode query-tail
   --depths 0:100:10 --window 1024 --sinks 4,64 --topk 1%,5%,10% --threads 2)
for hay in $hays; do
  for dis in 0 200; do
    [ "$hay" = vim ] && [ ! -s "$vimdoc" ] && { echo "skip vim: no /usr/share/vim/*/doc"; continue; }
    h=(); [ "$hay" = vim ] && h=(--haystack "$vimdoc")
    out="$scratch/$hay-d$dis"
    rm -rf "$out"
    if "$bin" needle "${G[@]}" "${h[@]}" --distractors "$dis" --out-dir "$out" >"$out.log" 2>&1; then
      ok "needle $hay distractors=$dis exits 0"; else bad "needle $hay distractors=$dis exit $?"; tail -5 "$out.log"; fi
  done
done
files=$(ls "$scratch"/*/*.json 2>/dev/null)
[ -n "$files" ] || { bad "no results files"; echo "$pass passed, $fail failed"; exit 1; }
if "$py" - $files <<'PY'; then ok "sweep figures hold"; else bad "sweep figures"; fi
import json, sys
recs = [r for f in sys.argv[1:] for r in json.load(open(f))["records"] if r["task"] == "needle"]
bad = []
def key(r):
    c = r["config"]
    return (c["haystack"], c.get("distractors", 0), c["seq_len_k"], c["depth"])
for r in recs:
    m = r["metrics"]
    if r["backend"] == "blockwise" and (r["status"] != "pass" or m.get("recall") != 1):
        bad.append(("blockwise missed", key(r)))
    if r["backend"] in ("sinks_window", "topk_blocks"):
        if r["status"] != "approximate" or not (0 <= m.get("recall", -1) <= 1) or not (0 < m.get("key_fraction", -1) <= 1):
            bad.append(("approximate record", r["backend"], key(r), r["status"]))
        if r["backend"] == "topk_blocks" and r["config"].get("topk_pct") == 5 and r["config"]["seq_len_k"] >= 16384 \
                and m["key_fraction"] > 0.10:
            bad.append(("5% budget over 10% of keys", key(r), m["key_fraction"]))
best_sinks = {}
for r in recs:
    if r["backend"] == "sinks_window":
        best_sinks[key(r)] = max(best_sinks.get(key(r), 0), r["metrics"]["recall"])
for r in recs:
    if r["backend"] == "topk_blocks" and r["config"].get("topk_pct") == 10 and r["config"]["seq_len_k"] >= 16384 \
            and r["metrics"]["recall"] < best_sinks.get(key(r), 0):
        bad.append(("topk 10% below sinks_window", key(r)))
for b in bad[:20]:
    print("     ", b)
sys.exit(1 if bad else 0)
PY
if "$bin" report $files --out "$scratch/report.html" >"$scratch/report.log" 2>&1 &&
   grep -q "Approximate attention" "$scratch/report.html"; then
  ok "report with the approximate view"; else bad "report"; cat "$scratch/report.log"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
