#!/bin/sh
# test_nccl.sh — the nccl transport end to end under mpirun: ring_cuda, striped_cuda,
# zigzag_cuda, ulysses_cuda and usp_cuda through the exactness task (bf16 rule against the
# float64 reference), one process and one GPU per rank. NCCL will not put two ranks on one device, so with one GPU this runs
# P = 1 (the bootstrap, the communicator, result gathering; a ring of one sends nothing, so the
# only NCCL data path then is ulysses_cuda's all-to-all to itself) and says so; with G GPUs it
# runs P = min(G, 4). ulysses_cuda runs with H = 12 and H_kv 1 and 12 (heads split over P = 1..4);
# usp_cuda with H = 4, H_kv = 2 at its default degree.
# Exits 77 (CTest skip) without a device, without mpirun, or when libnccl cannot be found.
# usage: test_nccl.sh ATTNBENCH TEST_CUDA SCRATCH_DIR MPIEXEC
set -u
bin=$1 probe=$2 dir=$3 mpirun=${4:-mpirun}
"$probe" --probe >/dev/null 2>&1 || { echo "skip: no CUDA device"; exit 77; }
command -v "$mpirun" >/dev/null 2>&1 || { echo "skip: no mpirun"; exit 77; }
# shellcheck source=tests/nccl_env.sh
. "$(dirname "$0")/nccl_env.sh"
echo "nccl: $ngpu GPU(s), running P = $P"
mkdir -p "$dir"
# Runs one exactness command under mpirun and judges its table: attnbench exits 0 when every
# case was declined (a pre-sm_80 GPU, say), which is no pass; a declined case here is a failure.
run_case() {
  name=$1; shift
  out=$("$mpirun" --oversubscribe -np "$P" "$bin" run --task exactness --transport nccl --ranks "$P" --dtype bf16 \
    --seq-len 1000 --q-len 1000,333 --mask none,causal,window --window 300 --head-dim 64 --comm-timeout 60 \
    --out-dir "$dir" "$@" 2>&1)
  rc=$?
  echo "$out"
  if echo "$out" | grep -q "cannot load libnccl"; then
    echo "skip: libnccl not found (set LD_LIBRARY_PATH to NCCL's lib directory)"
    exit 77
  fi
  if echo "$out" | grep -q "this build has no NCCL headers"; then
    echo "skip: built without nccl.h"
    exit 77
  fi
  npass=$(printf '%s\n' "$out" | grep -cE '[[:space:]]pass$' || true)
  nskip=$(printf '%s\n' "$out" | grep -cE '[[:space:]]skipped$' || true)
  if [ $rc = 0 ] && [ "$npass" = 0 ]; then
    echo "skip: every $name case was declined ($nskip skipped; see the notes above)"
    exit 77
  fi
  if [ $rc != 0 ] || [ "$nskip" != 0 ]; then
    echo "nccl: $name FAILED (exit $rc, $npass passed, $nskip declined)"
    exit 1
  fi
  echo "nccl: $name P = $P: $npass cases passed"
}
run_case "ring family" --backends ring_cuda,striped_cuda,zigzag_cuda --heads 4 --kv-heads 1
# H = 12 splits over P = 1..4 both with one kv head (MQA) and with H_kv = H.
run_case "ulysses (MQA)" --backends ulysses_cuda --heads 12 --kv-heads 1
run_case "ulysses (MHA)" --backends ulysses_cuda --heads 12 --kv-heads 12
# usp_cuda at the default degree gcd(P, H_kv): with H_kv = 2, U = 2 and a ring of P / 2 at P = 4.
run_case "usp" --backends usp_cuda --heads 4 --kv-heads 2
echo "nccl: P = $P passed"
