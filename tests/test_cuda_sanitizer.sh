#!/bin/sh
# test_cuda_sanitizer.sh — compute-sanitizer over small CUDA cases: memcheck on naive_cuda and
# blockwise_cuda (out-of-bounds and misaligned accesses, leaks of device memory), racecheck on
# blockwise_cuda (shared-memory hazards between the cp.async stages and the ldmatrix reads).
# Exits 77 (CTest skip) without a CUDA device or without compute-sanitizer.
# usage: test_cuda_sanitizer.sh ATTNBENCH TEST_CUDA SCRATCH_DIR
set -u
bin=$1 probe=$2 dir=$3
"$probe" --probe >/dev/null 2>&1 || { echo "skip: no CUDA device"; exit 77; }
san=$(command -v compute-sanitizer || true)
[ -z "$san" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && san=/usr/local/cuda/bin/compute-sanitizer
[ -z "$san" ] && { echo "skip: compute-sanitizer not found"; exit 77; }
mkdir -p "$dir"
fail=0 passed=0
# Runs compute-sanitizer over one attnbench command; counts the cases that ran and passed, since
# attnbench exits 0 when every case was declined (a device below sm_80, say).
run_san() {
  out=$("$san" "$@" 2>&1)
  rc=$?
  echo "$out"
  [ $rc = 0 ] || fail=1
  n=$(printf '%s\n' "$out" | grep -cE '[[:space:]]pass$' || true)
  passed=$((passed + n))
  [ "$n" -gt 0 ] || { echo "(no case ran under this tool)"; fail=1; }
}
# n = 130: three query blocks and three key tiles, the last partial; q-len 50 puts the queries
# mid-tile; H = 2 over H_kv = 1 is GQA; d 64 and 128 are the two kernels.
small="--task exactness --seq-len 130 --q-len 130,50 --mask none,causal,window --window 37 --heads 2 --kv-heads 1
       --out-dir $dir"
for d in 64 128; do
  echo "== memcheck d=$d"
  run_san --tool memcheck --leak-check full --error-exitcode 9 "$bin" run $small --head-dim $d --dtype bf16 \
    --backends naive_cuda,blockwise_cuda,sliding_window_cuda
  echo "== racecheck d=$d"
  run_san --tool racecheck --error-exitcode 9 "$bin" run $small --head-dim $d --dtype bf16 \
    --backends blockwise_cuda
done
echo "== memcheck ring_cuda, striped_cuda, zigzag_cuda on 3 virtual ranks (cuda_local)"
run_san --tool memcheck --error-exitcode 9 "$bin" run $small --head-dim 64 --dtype bf16 --ranks 3 \
  --transport cuda_local --backends ring_cuda,striped_cuda,zigzag_cuda
run_san --tool memcheck --error-exitcode 9 "$bin" run $small --head-dim 64 --dtype bf16 --ranks 2 \
  --transport cuda_local --backends ulysses_cuda
echo "== memcheck f32 naive_cuda"
run_san --tool memcheck --error-exitcode 9 "$bin" run $small --head-dim 64 --dtype f32 --backends naive_cuda
[ $passed = 0 ] && { echo "skip: every case was declined (see the notes above)"; exit 77; }
[ $fail = 0 ] && echo "sanitizer: clean ($passed cases)" || echo "sanitizer: FAILED"
exit $fail
