#!/bin/sh
# device_run.sh — runs on the GPU machine, in the checkout, with device-pack/ carried
# (tools/device_pack.sh made it here): puts the pack where the build's absolute paths point,
# finds libnccl inside PyTorch's packages, then runs the `gpu` CTest cases, the torch SDPA peer
# and the GPU suite, writing logs and results under OUT_DIR. Each step's exit status is printed;
# the script exits with the first non-zero one.
# usage: tools/device_run.sh OUT_DIR [tests|peer|suite ...]   (default: all three)
set -u
cd "$(dirname "$0")/.."
out=${1:?usage: tools/device_run.sh OUT_DIR [tests|peer|suite ...]}
shift
steps=${*:-tests peer suite}
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
lib=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$PWD/device-pack/lib${lib:+:$lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
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
    suite) step gpu_suite build-gpu/attnbench run --config suites/gpu.json --out-dir "$out" ;;
    *) echo "device_run: unknown step '$s' (tests, peer, suite)"; exit 2 ;;
  esac
done
exit $first
