#!/bin/sh
# test_device_run.sh — tools/device_run.sh without a GPU: it parses (sh -n), its dry run plans
# the seven parts within their shares (tests 180 s, prefill 90, backward 30, decode 30, model 60,
# needle 90, rest 30: 510 s in all) and three output files, and it refuses an unknown part.
set -u
tool=${1:?usage: test_device_run.sh TOOLS_DIR}/device_run.sh
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }
sh -n "$tool" && ok "sh -n" || bad "sh -n: syntax"
plan=$(sh "$tool" --dry-run /tmp/attn-device-run-test) || bad "dry run exits $?"
for want in "part tests: 180 s" "part prefill: 90 s" "part backward: 30 s" "part decode: 30 s" "part model: 60 s" "part needle: 90 s" \
            "part rest: 30 s"; do
  echo "$plan" | grep -qx "$want" && ok "plan: $want" || bad "plan lacks '$want'"
done
echo "$plan" | grep -q "^total: 510 s of 510;" && ok "total 510 s" || bad "total is not 510 s"
echo "$plan" | grep -q -- "throughput --direction backward --backends blockwise_cuda" && ok "backward vs SDPA" || bad "no backward run"
n_out=$(echo "$plan" | sed -n 's/.*output: //p' | wc -w)
[ "$n_out" -eq 3 ] && ok "three output files" || bad "output files: $n_out (want 3, at most 8)"
echo "$plan" | grep -q -- "--q-len 1,16" && ok "decode at n_q 1 and 16" || bad "no decode run at n_q 1,16"
echo "$plan" | grep -q -- "--seq-len 1048576 --depths 0:100:10 --mode prefill" && ok "needle 1M, 11 depths" || bad "no 1M needle"
sh "$tool" --dry-run /tmp/x nope >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "unknown part refused" || bad "unknown part: exit $rc (want 2)"
exit $fail
