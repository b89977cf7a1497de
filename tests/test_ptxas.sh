#!/bin/sh
# test_ptxas.sh NVCC SRC_ROOT GEN_DIR sm90|mma — ptxas's own report (-Xptxas -v) on the tensor-core
# kernels: performance bugs no CPU test sees and ptxas states at compile time. sm90: flash_sm90.cu
# for sm_90a, no serialised wgmma (C7515) and no spill. mma: flash.cu, flash_decode.cu,
# sparse_attn.cu for sm_80, no spill at head dims 128/256 (255 registers at 256); d = 64 reported.
set -u
nvcc=$1 root=$2 gen=$3 kind=$4
case $kind in
sm90) arch=90a files=flash_sm90 spill_re='.' defs=-DATTN_SM90A=1 ;;
mma) arch=80 files="flash flash_decode sparse_attn" spill_re='Li(128|256)E' defs= ;;
*) echo "test_ptxas.sh: kind must be sm90 or mma (got $kind)"; exit 2 ;;
esac
out=$(mktemp -d) || exit 1
trap 'rm -rf "$out"' EXIT
bad=0
for f in $files; do
    if ! "$nvcc" -O3 -DNDEBUG -DATTN_HAVE_CUDA=1 $defs -I"$root" -I"$gen" -std=c++17 \
        --expt-relaxed-constexpr -gencode=arch=compute_$arch,code=sm_$arch -Xptxas -v -cubin \
        -o "$out/$f.cubin" "$root/impls/cuda/$f.cu" >"$out/$f.log" 2>&1; then
        cat "$out/$f.log"; echo "FAIL: $f.cu does not compile for sm_$arch"; exit 1
    fi
    # one line per entry: its name, then its spill and register lines
    grep -E "Compiling entry function|bytes spill|Used [0-9]+ registers" "$out/$f.log" | paste - - - >"$out/$f.k"
    case $kind in
    sm90) want=6 n=$(grep -c "flash_sm90I" "$out/$f.k") ;; # bf16/f16 × d 64/128/256
    mma) want=2 n=$(grep -cE "(flash_fwd|decode_split_kernel|sparse_attn_kernel)I[0-9A-Za-z_]+Li256E" "$out/$f.k") ;;
    esac
    serial=$(grep -c "C7515" "$out/$f.log")
    spill=$(grep -E "$spill_re" "$out/$f.k" | grep -vcE " 0 bytes spill stores, 0 bytes spill loads")
    echo "$f.cu (sm_$arch): $n checked instantiations, $serial serialised wgmma (C7515), $spill with spills"
    sed -E "s/.*Compiling entry function '([^']*)'.*Used ([0-9]+) registers.*/   \2 registers  \1/" "$out/$f.k" | sort -u
    [ "$n" -ge $want ] || { echo "FAIL: $f.cu: expected at least $want instantiations"; bad=1; }
    [ "$serial" -eq 0 ] || { grep C7515 "$out/$f.log"; echo "FAIL: $f.cu: wgmma serialised"; bad=1; }
    [ "$spill" -eq 0 ] || { grep -E "$spill_re" "$out/$f.k" | grep -vE " 0 bytes spill stores"; echo "FAIL: $f.cu spills"; bad=1; }
done
[ $bad = 0 ] && echo PASS
exit $bad
