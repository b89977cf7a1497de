#!/bin/sh
# test_ptxas_sm90.sh NVCC SRC_ROOT GEN_DIR — compiles flash_sm90.cu for sm_90a with ptxas's report and
# fails where a wgmma kernel is serialised (C7515: the wgmma pipeline degrades to one MMA at a time)
# or spills: both are performance bugs no CPU test can see and ptxas states at compile time.
set -u
nvcc=$1 root=$2 gen=$3
out=$(mktemp -d) || exit 1
trap 'rm -rf "$out"' EXIT
if ! "$nvcc" -O3 -DNDEBUG -DATTN_HAVE_CUDA=1 -DATTN_SM90A=1 -I"$root" -I"$gen" -std=c++17 --expt-relaxed-constexpr \
    -gencode=arch=compute_90a,code=sm_90a -Xptxas -v -cubin -o "$out/k.cubin" "$root/impls/cuda/flash_sm90.cu" \
    >"$out/log" 2>&1; then
    cat "$out/log"; echo "FAIL: flash_sm90.cu does not compile for sm_90a"; exit 1
fi
kernels=$(grep -c "Compiling entry function '.*flash_sm90" "$out/log")
serial=$(grep -c "C7515" "$out/log")
spills=$(grep -E "bytes spill (stores|loads)" "$out/log" | grep -vcE "^ *0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads")
echo "flash_sm90 kernels: $kernels, serialised (C7515): $serial, with spills: $spills"
[ "$kernels" -ge 6 ] || { cat "$out/log"; echo "FAIL: expected 6 flash_sm90 instantiations (bf16/f16 × d 64/128/256)"; exit 1; }
[ "$serial" -eq 0 ] || { grep C7515 "$out/log"; echo "FAIL: wgmma serialised"; exit 1; }
[ "$spills" -eq 0 ] || { cat "$out/log"; echo "FAIL: register spills"; exit 1; }
echo PASS
