# shellcheck shell=sh
# nccl_env.sh — sourced by the nccl tests (test_nccl.sh, test_nccl_grad.sh): libnccl on the library
# path (PyTorch machines carry it inside the nvidia-nccl package; it is loaded at run time), P =
# min(GPUs, 4) ranks (NCCL will not put two ranks on one device: one GPU runs P = 1, and says so),
# and mpirun allowed as root with oversubscription.
lib=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)
[ -n "$lib" ] && export LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"
# The devices CUDA will number, which nvidia-smi ignores CUDA_VISIBLE_DEVICES to list.
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  ngpu=$(printf '%s\n' "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)
else
  ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
[ "${ngpu:-0}" -ge 1 ] || ngpu=1
P=$ngpu; [ "$P" -gt 4 ] && P=4
[ "$P" = 1 ] && echo "nccl: one GPU here, so P = 1 only (multi-rank NCCL needs a GPU per rank)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
