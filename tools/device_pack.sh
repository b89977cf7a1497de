#!/bin/sh
# device_pack.sh — prepares a GPU run on a machine that has the NVIDIA driver, nvcc and PyTorch
# but none of Debian's libraries (the workplace's device machines): builds build-gpu/ for sm_90
# only, and packs into device-pack/payload.tar.xz (git-ignored) what the gpu tests and the GPU
# suite need — attnbench, every program a gpu test runs, the CTest files, the KJV haystack and
# tokenizer, every shared library `ldd` resolves outside the CUDA toolkit. tools/device_run.sh
# unpacks and uses it on the other machine.
# Exits 1 when the pack would not fit the 64 MiB a device run may carry with the working tree.
# usage: tools/device_pack.sh [extra cmake args]
set -eu
cd "$(dirname "$0")/.."
root=$PWD build=$root/build-gpu pack=$root/device-pack
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DATTN_WITH_CUDA=ON "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
rm -rf "$pack"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/tests/scratch" "$stage/lib"
cp "$build/attnbench" "$stage/"
cp "$build/CTestTestfile.cmake" "$stage/"
cp "$build/tests/CTestTestfile.cmake" "$stage/tests/"
cp -r "$build/datasets" "$stage/"
# Every program a gpu or cuda_f16 test runs (its command and any argument naming a file of the
# build), so that a test added later travels without editing this list.
bins=$(cd "$build" && ctest --show-only=json-v1 -L 'gpu|cuda_f16' | python3 -c '
import json, os, sys
b = sys.argv[1]
for t in json.load(sys.stdin)["tests"]:
    for a in t.get("command", []):
        if a.startswith(b + "/") and os.path.isfile(a) and os.access(a, os.X_OK):
            print(os.path.relpath(a, b))' "$build" | sort -u)
[ -n "$bins" ] || { echo "device-pack: no gpu test programs found in $build"; exit 1; }
for rel in $bins; do mkdir -p "$stage/$(dirname "$rel")" && cp "$build/$rel" "$stage/$rel"; done
# Libraries: everything ldd resolves except the C runtime the device machine has itself and
# CUDA's own (cuBLAS is over 500 MB; the device machine has it in its CUDA toolkit and in
# PyTorch's nvidia-cublas package, which tools/device_run.sh puts on the library path).
for bin in "$stage/attnbench" $(for rel in $bins; do echo "$stage/$rel"; done); do
  ldd "$bin" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++.so*) ;;
    libcublas*|libcudart*|libnccl*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
  esac
done
# OpenBLAS alone is 36 MB: the pack travels as one xz archive that tools/device_run.sh unpacks.
mkdir -p "$pack"
tar -C "$stage" -cf - . | xz -T0 -6 >"$pack/payload.tar.xz"
# Where the build put its absolute paths (CTest files, the haystack's default location).
printf '%s\n' "$root" >"$pack/SOURCE_ROOT"
kib=$(du -sk "$pack" | cut -f1)
tree_kib=$(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
echo "device-pack: $((kib / 1024)) MiB (+ $((tree_kib / 1024)) MiB of tracked files); carry: device-pack"
[ $((kib + tree_kib)) -lt $((62 * 1024)) ] || { echo "device-pack: too large to carry (limit 64 MiB)"; exit 1; }
