#!/bin/sh
# device_run.sh — runs on the GPU machine, in the checkout, with device-pack/ carried
# (tools/device_pack.sh made it here): puts the pack where the build's absolute paths point,
# finds libnccl inside PyTorch's packages, then runs the `gpu` CTest cases, the torch SDPA peer
# and the GPU suite, writing logs and results under OUT_DIR. Each step's exit status is printed;
# the script exits with the first non-zero one.
# The exec step runs the torch peers through attnbench's exec: protocol (docs/exec-protocol.md) at
# the peer step's shape, for the same figures within noise, and their exactness at small n.
# usage: tools/device_run.sh OUT_DIR [tests|peer|exec|suite ...]   (default: all four)
set -u
cd "$(dirname "$0")/.."
out=${1:?usage: tools/device_run.sh OUT_DIR [tests|peer|exec|suite ...]}
shift
steps=${*:-tests peer exec suite}
[ -f device-pack/SOURCE_ROOT ] || { echo "device_run: no device-pack/ (run tools/device_pack.sh, carry device-pack)"; exit 2; }
root=$(cat device-pack/SOURCE_ROOT)
# The build recorded absolute paths under $root (CTest files, the haystack default): make $root
# this checkout and $root/build-gpu the pack.
if [ "$root" != "$PWD" ]; then
  if [ -e "$root" ] && [ ! -L "$root" ]; then
    echo "device_run: $root exists and is not this checkout; run from $root or rebuild the pack here"
    exit 2
  fi
  mkdir -p "$(dirname "$root")" && ln -sfn "$PWD" "$root" || { echo "device_run: cannot link $root"; exit 2; }
fi
# On the machine that built it, build-gpu/ is the build itself.
[ -d build-gpu ] && [ ! -L build-gpu ] || ln -sfn "$PWD/device-pack" build-gpu
# libnccl and libcublas are not packed: PyTorch's nvidia-* packages and the CUDA toolkit have them.
nv=$(python3 -c 'import os, nvidia.nccl, nvidia.cublas
print(":".join(os.path.join(list(m.__path__)[0], "lib") for m in (nvidia.nccl, nvidia.cublas)))' 2>/dev/null || true)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [ -d "$d" ] && nv="${nv:+$nv:}$d"; done
export LD_LIBRARY_PATH="$PWD/device-pack/lib${nv:+:$nv}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd device-pack/attnbench | grep -q "not found"; then
  echo "device_run: attnbench is missing libraries:"; ldd device-pack/attnbench | grep "not found"; exit 2
fi
mkdir -p "$out"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
first=0
step() {
  name=$1; shift
  echo "== $name: $*"
  "$@" >"$out/$name.log" 2>&1
  rc=$?
  tail -40 "$out/$name.log"
  echo "== $name: exit $rc"
  [ $first = 0 ] && [ $rc != 0 ] && first=$rc
}
for s in $steps; do
  case $s in
    tests) step ctest_gpu sh -c "cd build-gpu && ctest -L gpu --output-on-failure" ;;
    peer)  step torch_sdpa python3 benchmarks/torch_sdpa.py --out-dir "$out" ;;
    exec)  specs="--exec-spec benchmarks/peers/torch_sdpa.json --exec-spec benchmarks/peers/torch_flex.json"
           specs="$specs --exec-spec benchmarks/peers/flash_attn.json"
           peers=exec:torch_sdpa,exec:torch_flex,exec:flash_attn
           step exec_throughput build-gpu/attnbench run --task throughput --dtype bf16 $specs \
             --backends "blockwise_cuda,$peers" --seq-len 16384 --heads 16 --head-dim 128 --mask none,causal \
             --warmup 3 --repeats 20 --out-dir "$out"
           step exec_exactness build-gpu/attnbench run --task exactness --dtype bf16 $specs --backends "$peers" \
             --seq-len 1024,4096 --heads 8 --kv-heads 2 --head-dim 128 --mask none,causal,window --window 512 \
             --out-dir "$out" ;;
    suite) step gpu_suite build-gpu/attnbench run --config suites/gpu.json --out-dir "$out" ;;
    *) echo "device_run: unknown step '$s' (tests, peer, exec, suite)"; exit 2 ;;
  esac
done
exit $first
