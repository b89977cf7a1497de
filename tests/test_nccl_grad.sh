#!/bin/sh
# test_nccl_grad.sh — the GPU ring backward (ring_cuda, striped_cuda, zigzag_cuda), ulysses_cuda's
# (bf16 only) and usp_cuda's (cuda_local only) end to end: exactness --direction backward in bf16 and f16, packed documents included,
# against the float64 gradient reference, first on cuda_local (P = 2, 4: no MPI needed), then under mpirun with
# --transport nccl, one process and GPU per rank (P = min(GPUs, 4); with one GPU P = 1, as
# test_nccl.sh explains); and throughput --direction backward, whose per-rank figures fail the
# record when a rank's bytes differ from ring_backward_expect's (ulysses_cuda_grad_expect's) count. Exits 77 (CTest skip)
# without a device; the nccl part also without mpirun or libnccl (then after the cuda_local part).
# usage: test_nccl_grad.sh ATTNBENCH TEST_CUDA SCRATCH_DIR MPIEXEC
set -u
bin=$1 probe=$2 dir=$3 mpirun=${4:-mpirun}
"$probe" --probe >/dev/null 2>&1 || { echo "skip: no CUDA device"; exit 77; }
mkdir -p "$dir"
# Judges one table: every record must pass; a declined (skipped) or failed one fails the test.
judge() {
  name=$1 rc=$2 out=$3
  npass=$(printf '%s\n' "$out" | grep -cE '[[:space:]]pass$' || true)
  nbad=$(printf '%s\n' "$out" | grep -cE '[[:space:]](skipped|fail|error)$' || true)
  if [ "$rc" != 0 ] || [ "$npass" = 0 ] || [ "$nbad" != 0 ]; then
    echo "grad: $name FAILED (exit $rc, $npass passed, $nbad declined or failed)"
    exit 1
  fi
  echo "grad: $name: $npass records passed"
}
ring="--backends ring_cuda,striped_cuda,zigzag_cuda"
common="--heads 4 --kv-heads 2 --head-dim 64 --seq-len 700 \
  --q-len 700,233 --mask none,causal,window --window 200 --comm-timeout 60 --out-dir $dir"
for P in 2 4; do
  for dt in bf16 f16; do
    # shellcheck disable=SC2086
    out=$("$bin" run --task exactness --direction backward --transport cuda_local --ranks $P --dtype $dt $ring $common 2>&1)
    rc=$?; echo "$out"; judge "cuda_local P=$P $dt" $rc "$out"
  done
  # shellcheck disable=SC2086
  out=$("$bin" run --task exactness --direction backward --transport cuda_local --ranks $P --dtype bf16 \
    --doc-lens 1,90,250,359 $ring $common 2>&1)
  rc=$?; echo "$out"; judge "cuda_local P=$P documents" $rc "$out"
  # shellcheck disable=SC2086
  out=$("$bin" run --task throughput --direction backward --transport cuda_local --ranks $P --dtype bf16 \
    --repeats 2 --warmup 1 $ring $common 2>&1)
  rc=$?; echo "$out"; judge "cuda_local P=$P throughput (per-rank figures)" $rc "$out"
  # ulysses_cuda: bf16 only; H = 4 over H_kv = 2 gives each rank whole kv heads at P = 2 and
  # shared ones (summed on the way back) at P = 4. usp_cuda (cuda_local only; U = gcd(P, 2)):
  # U = 2 × R = 1 at P = 2, U = 2 × R = 2 at P = 4.
  for extra in "--task exactness" "--task exactness --doc-lens 1,90,250,359" "--task throughput --repeats 2 --warmup 1"; do
    # shellcheck disable=SC2086
    out=$("$bin" run $extra --direction backward --transport cuda_local --ranks $P --dtype bf16 $common \
      --backends ulysses_cuda,usp_cuda 2>&1)
    rc=$?; echo "$out"; judge "cuda_local P=$P ulysses_cuda,usp_cuda $extra" $rc "$out"
  done
done

command -v "$mpirun" >/dev/null 2>&1 || { echo "skip: no mpirun (the cuda_local part passed)"; exit 77; }
# shellcheck source=tests/nccl_env.sh
. "$(dirname "$0")/nccl_env.sh"
nccl_case() { # the backends among the arguments
  name=$1; shift
  # shellcheck disable=SC2086
  out=$("$mpirun" --oversubscribe -np "$P" "$bin" run --transport nccl --ranks "$P" $common "$@" 2>&1)
  rc=$?
  echo "$out"
  if echo "$out" | grep -q "cannot load libnccl"; then
    echo "skip: libnccl not found (the cuda_local part passed)"; exit 77
  fi
  if echo "$out" | grep -q "this build has no NCCL headers"; then
    echo "skip: built without nccl.h (the cuda_local part passed)"; exit 77
  fi
  judge "nccl P=$P $name" $rc "$out"
}
# shellcheck disable=SC2086 # $ring: one flag and its list
nccl_case "bf16" --task exactness --direction backward --dtype bf16 $ring
# shellcheck disable=SC2086
nccl_case "f16" --task exactness --direction backward --dtype f16 $ring
# shellcheck disable=SC2086
nccl_case "documents" --task exactness --direction backward --dtype bf16 --doc-lens 1,90,250,359 $ring
# shellcheck disable=SC2086
nccl_case "throughput (per-rank figures)" --task throughput --direction backward --dtype bf16 --repeats 2 --warmup 1 $ring
nccl_case "ulysses_cuda bf16" --task exactness --direction backward --dtype bf16 --backends ulysses_cuda
nccl_case "ulysses_cuda documents" --task exactness --direction backward --dtype bf16 --doc-lens 1,90,250,359 \
  --backends ulysses_cuda
nccl_case "ulysses_cuda throughput (per-rank figures)" --task throughput --direction backward --dtype bf16 \
  --repeats 2 --warmup 1 --backends ulysses_cuda
echo "grad: nccl P = $P passed"
