#!/usr/bin/env bash
# replay_all.sh — the fuzz_replay test: every target's seed corpus and crash inputs through its
# replay driver (a crash, sanitizer report or hang fails). usage: replay_all.sh BINDIR SRCDIR TARGET...
set -u
bin=$1 src=$2
shift 2
fail=0
for t in "$@"; do
  if out=$(timeout 60 "$bin/fuzz_replay_$t" "$src/corpus/$t" "$src/crashes/$t" 2>&1); then
    echo "ok   $t: ${out##*$'\n'}"
  else
    echo "FAIL $t (exit $?)"; echo "$out" | tail -30; fail=1
  fi
done
exit $fail
