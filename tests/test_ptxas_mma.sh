#!/bin/sh
# test_ptxas_mma.sh NVCC SRC_ROOT GEN_DIR — compiles the mma.sync kernels (flash.cu, flash_decode.cu,
# sparse_attn.cu) for sm_80 with ptxas's report and fails where an instantiation at head dim 128 or
# 256 spills: at d = 256 they sit at 255 registers with Q read per tile (docs/gpu-kernels.md), so
# an edit that tips them over shows here, not only as a slower kernel on a GPU. d = 64 is reported.
set -u
nvcc=$1 root=$2 gen=$3
out=$(mktemp -d) || exit 1
trap 'rm -rf "$out"' EXIT
bad=0
for f in flash flash_decode sparse_attn; do
    if ! "$nvcc" -O3 -DNDEBUG -DATTN_HAVE_CUDA=1 -I"$root" -I"$gen" -std=c++17 --expt-relaxed-constexpr \
        -gencode=arch=compute_80,code=sm_80 -Xptxas -v -cubin -o "$out/$f.cubin" "$root/impls/cuda/$f.cu" \
        >"$out/$f.log" 2>&1; then
        cat "$out/$f.log"; echo "FAIL: $f.cu does not compile for sm_80"; exit 1
    fi
    # one line per entry: its name, then its spill and register lines
    grep -E "Compiling entry function|bytes spill|Used [0-9]+ registers" "$out/$f.log" | paste - - - >"$out/$f.k"
    n256=$(grep -cE "(flash_fwd|decode_split_kernel|sparse_attn_kernel)I[0-9A-Za-z_]+Li256E" "$out/$f.k")
    spill=$(grep -E "Li(128|256)E" "$out/$f.k" | grep -vcE " 0 bytes spill stores, 0 bytes spill loads")
    echo "$f.cu: $n256 d=256 tile kernels, $spill d=128/256 entries with spills"
    grep -E "Li(64|128|256)E" "$out/$f.k" | sed -E "s/.*(flash_fwd|decode_split_kernel|decode_merge_kernel|sparse_attn_kernel)I?L?i?([0-9A-Za-z_]*)E.*Used ([0-9]+) registers.*/   \1 \2: \3 registers/" | sort -u
    [ "$n256" -ge 2 ] || { echo "FAIL: $f.cu has no bf16 and f16 d=256 instantiations"; bad=1; }
    [ "$spill" -eq 0 ] || { grep -E "Li(128|256)E" "$out/$f.k" | grep -vE " 0 bytes spill stores"; echo "FAIL: $f.cu spills"; bad=1; }
done
[ $bad = 0 ] && echo PASS
exit $bad
