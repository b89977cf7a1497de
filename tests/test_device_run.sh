#!/bin/sh
# test_device_run.sh — tools/device_run.sh without a GPU: it parses (sh -n), its dry run plans
# the eight parts within their shares (tests 140 s, prefill 90, backward 30, decode 30, model 50,
# needle 90, approx 20, rest 30: 480 s in all) and three output files, and it refuses an unknown part.
set -u
tool=${1:?usage: test_device_run.sh TOOLS_DIR}/device_run.sh
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }
sh -n "$tool" && ok "sh -n" || bad "sh -n: syntax"
plan=$(sh "$tool" --dry-run /tmp/attn-device-run-test) || bad "dry run exits $?"
for want in "part tests: 140 s" "part prefill: 90 s" "part backward: 30 s" "part decode: 30 s" "part model: 50 s" \
            "part needle: 90 s" "part approx: 20 s" "part rest: 30 s"; do
  echo "$plan" | grep -qx "$want" && ok "plan: $want" || bad "plan lacks '$want'"
done
echo "$plan" | grep -q "^total: 480 s of 480;" && ok "total 480 s" || bad "total is not 480 s"
echo "$plan" | grep -q -- "throughput --direction backward --backends blockwise_cuda" && ok "backward vs SDPA" || bad "no backward run"
n_out=$(echo "$plan" | sed -n 's/.*output: //p' | wc -w)
[ "$n_out" -eq 3 ] && ok "three output files" || bad "output files: $n_out (want 3, at most 8)"
echo "$plan" | grep -q -- "--q-len 1,16" && ok "decode at n_q 1 and 16" || bad "no decode run at n_q 1,16"
echo "$plan" | grep -q -- "--seq-len 1048576 --depths 0:100:10 --mode prefill" && ok "needle 1M, 11 depths" || bad "no 1M needle"
for k in mma wgmma; do
  n=$(echo "$plan" | grep -c -- "--backends blockwise_cuda --kernel $k .*--seq-len 4096,16384,65536 --mask none,causal")
  [ "$n" -eq 2 ] && ok "prefill: blockwise_cuda --kernel $k at d 64 and 128" || bad "prefill: $n runs of --kernel $k (want 2)"
done
n=$(echo "$plan" | grep -c "torch_sdpa.py --seq-len 4096,16384,65536 --heads 16 --head-dim")
[ "$n" -eq 2 ] && ok "prefill: torch SDPA on the same shapes" || bad "prefill: $n SDPA runs (want 2)"
echo "$plan" | grep -q -- "--task throughput --backends blockwise_cuda,sinks_window_cuda,topk_blocks_cuda" &&
  ok "approx: the CUDA approximate backends beside blockwise_cuda" || bad "no approx throughput run"
sh "$tool" --dry-run /tmp/x nope >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "unknown part refused" || bad "unknown part: exit $rc (want 2)"
exit $fail
