#!/usr/bin/env bash
# test_size_overflow.sh — a shape whose byte count overflows 64 bits must be refused up front
# with one "too large" message and exit 2 (it used to crash or report "0 tensors"), on every
# path that sizes memory: each backend family, the memory and model tasks. usage: BIN SCRATCH
set -u
bin=$1 out=$2
rm -rf "$out" && mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
huge=(--batch 1048576 --heads 65536 --kv-heads 65536 --seq-len 4294967296 --mask none --repeats 1 --warmup 0
      --threads 1 --out-dir "$out")
fail=0
check() {
  local err rc
  err=$(timeout 60 "$bin" run "$@" "${huge[@]}" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -eq 2 ] && [ "$(printf '%s\n' "$err" | grep -c 'error:.*too large.*overflows 64 bits')" -eq 1 ] &&
     [ -z "$(ls -A "$out")" ]; then
    echo "ok   $*"
  else
    fail=1; echo "FAIL $* (exit $rc)"; printf '%s\n' "$err" | tail -3 | sed 's/^/     | /'
  fi
}
check --task throughput --backends blockwise
check --task throughput --backends naive
check --task throughput --backends naive_blas
check --task throughput --backends sliding_window --mask window --window 8
check --task throughput --backends ring --ranks 4
check --task throughput --backends ulysses --ranks 2
check --task memory --backends blockwise
check --task exactness --backends blockwise
check --task model --backends blockwise
exit $fail
