#!/usr/bin/env bash
# replay_all.sh — the fuzz_replay test: every target's seed corpus and crash inputs through its
# replay driver, or its libFuzzer binary in an ATTN_FUZZ build (a crash, sanitizer report or hang
# fails). usage: replay_all.sh BINDIR SRCDIR TARGET...
set -u
bin=$1 src=$2
shift 2
fail=0
for t in "$@"; do
  if [ -x "$bin/fuzz_$t" ]; then # an ATTN_FUZZ build: libFuzzer runs each input once with -runs=0
    cmd=("$bin/fuzz_$t" -runs=0 "$src/corpus/$t" "$src/crashes/$t")
  else
    cmd=("$bin/fuzz_replay_$t" "$src/corpus/$t" "$src/crashes/$t")
  fi
  if out=$(timeout 60 "${cmd[@]}" 2>&1); then
    echo "ok   $t: ${out##*$'\n'}"
  else
    echo "FAIL $t (exit $?)"; echo "$out" | tail -30; fail=1
  fi
done
exit $fail
