#!/bin/sh
# device_pack.sh — prepares a GPU run on a machine that has the NVIDIA driver, nvcc and PyTorch
# but none of Debian's libraries (the workplace's device machines): builds build-gpu/ for sm_90
# only, and copies into device-pack/ (git-ignored) what the gpu tests and the GPU suite need —
# attnbench, test_cuda, the CTest files, the KJV haystack and tokenizer, and every shared library
# `ldd` resolves outside the CUDA toolkit. tools/device_run.sh uses it on the other machine.
# Exits 1 when the pack would not fit the 64 MiB a device run may carry with the working tree.
# usage: tools/device_pack.sh [extra cmake args]
set -eu
cd "$(dirname "$0")/.."
root=$PWD build=$root/build-gpu pack=$root/device-pack
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DATTN_WITH_CUDA=ON "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
rm -rf "$pack"
mkdir -p "$pack/tests" "$pack/lib"
cp "$build/attnbench" "$pack/"
cp "$build/tests/test_cuda" "$build/tests/test_cuda_decode" "$pack/tests/"
cp "$build/CTestTestfile.cmake" "$pack/"
cp "$build/tests/CTestTestfile.cmake" "$pack/tests/"
cp -r "$build/datasets" "$pack/"
mkdir -p "$pack/tests/scratch"
# Libraries: everything ldd resolves except the C runtime the device machine has itself and
# CUDA's own (cuBLAS is over 500 MB; the device machine has it in its CUDA toolkit and in
# PyTorch's nvidia-cublas package, which tools/device_run.sh puts on the library path).
for bin in "$pack/attnbench" "$pack/tests/test_cuda" "$pack/tests/test_cuda_decode"; do
  ldd "$bin" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++.so*) ;;
    libcublas*|libcudart*|libnccl*) ;;
    *) cp -L "$lib" "$pack/lib/" ;;
  esac
done
# Where the build put its absolute paths (CTest files, the haystack's default location).
printf '%s\n' "$root" >"$pack/SOURCE_ROOT"
kib=$(du -sk "$pack" | cut -f1)
tree_kib=$(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
echo "device-pack: $((kib / 1024)) MiB (+ $((tree_kib / 1024)) MiB of tracked files); carry: device-pack"
[ $((kib + tree_kib)) -lt $((62 * 1024)) ] || { echo "device-pack: too large to carry (limit 64 MiB)"; exit 1; }
