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
fail=0
# n = 130: three query blocks and three key tiles, the last partial; q-len 50 puts the queries
# mid-tile; H = 2 over H_kv = 1 is GQA; d 64 and 128 are the two kernels.
small="--task exactness --seq-len 130 --q-len 130,50 --mask none,causal,window --window 37 --heads 2 --kv-heads 1
       --out-dir $dir"
for d in 64 128; do
  echo "== memcheck d=$d"
  "$san" --tool memcheck --leak-check full --error-exitcode 9 "$bin" run $small --head-dim $d --dtype bf16 \
    --backends naive_cuda,blockwise_cuda,sliding_window_cuda || fail=1
  echo "== racecheck d=$d"
  "$san" --tool racecheck --error-exitcode 9 "$bin" run $small --head-dim $d --dtype bf16 \
    --backends blockwise_cuda || fail=1
done
echo "== memcheck ring_cuda, striped_cuda, zigzag_cuda on 3 virtual ranks (cuda_local)"
"$san" --tool memcheck --error-exitcode 9 "$bin" run $small --head-dim 64 --dtype bf16 --ranks 3 \
  --transport cuda_local --backends ring_cuda,striped_cuda,zigzag_cuda || fail=1
"$san" --tool memcheck --error-exitcode 9 "$bin" run $small --head-dim 64 --dtype bf16 --ranks 2 \
  --transport cuda_local --backends ulysses_cuda || fail=1
echo "== memcheck f32 naive_cuda"
"$san" --tool memcheck --error-exitcode 9 "$bin" run $small --head-dim 64 --dtype f32 --backends naive_cuda || fail=1
[ $fail = 0 ] && echo "sanitizer: clean" || echo "sanitizer: FAILED"
exit $fail
