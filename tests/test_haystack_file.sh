#!/usr/bin/env bash
# test_haystack_file.sh — `attnbench needle --haystack` refuses what is not a regular file of at
# most 64 MiB (datasets/haystack.h) with one message and exit 2, at once: /dev/zero never ends
# and a FIFO with no writer never opens, so either used to hang. usage: SCRIPT ATTNBENCH SCRATCH
set -u
bin=$1 scratch=$2
rm -rf "$scratch" && mkdir -p "$scratch"
fail=0
# refuse NAME PATH: exit 2 within 20 s, the one message, no results file.
refuse() {
  rm -rf "$scratch/out"
  timeout 20 "$bin" needle --backends naive --seq-len 256 --depths 50 --haystack "$2" --out-dir "$scratch/out" \
    >"$scratch/log" 2>&1
  rc=$?
  if [ $rc -eq 2 ] && grep -q "must be a regular file of at most 64 MiB" "$scratch/log" &&
     [ -z "$(ls "$scratch/out" 2>/dev/null)" ]; then
    echo "ok   $1 refused"
  else
    echo "FAIL $1: exit $rc (124 = hung)"; tail -3 "$scratch/log"; fail=1
  fi
}
refuse "/dev/zero" /dev/zero
mkfifo "$scratch/fifo"
refuse "a FIFO with no writer" "$scratch/fifo"
refuse "a directory" "$scratch"
truncate -s $((64 * 1024 * 1024 + 1)) "$scratch/big.txt" # sparse: costs no disk
refuse "a file 1 byte over the cap" "$scratch/big.txt"
exit $fail
