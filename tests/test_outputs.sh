#!/usr/bin/env bash
# test_outputs.sh — how attnbench writes what it is told to (docs/outputs.md): write-through to
# FIFOs and devices (reached by symlinks in a scratch directory, never a real /dev node), symlinks
# kept, all outputs or none, results directories checked before any compute, no *.tmp.* left.
# usage: test_outputs.sh ATTNBENCH SCRATCH PYTHON3
set -u
bin=$1 d=$2 py=$3
rm -rf "$d" && mkdir -p "$d"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     | $l"; done; }
no_temps() { [ -z "$(find "$d" -name '*.tmp.*' -print -quit)" ] || bad "$1: a *.tmp.* file was left" "$(find "$d" -name '*.tmp.*')"; }
# fifo_read FIFO FILE: a reader that gives up after 5 s (the old code never opens the FIFO).
fifo_read() { timeout 5 cat "$1" > "$2" & }

"$py" - "$d" <<'PY'
import numpy as np, sys
rng = np.random.default_rng(1)
q = rng.standard_normal((1, 2, 8, 4), dtype=np.float32)
np.save(f"{sys.argv[1]}/q.npy", q); np.save(f"{sys.argv[1]}/k.npy", q[:, :1]); np.save(f"{sys.argv[1]}/v.npy", q[:, :1])
PY
A=(attend --backend naive --q "$d/q.npy" --k "$d/k.npy" --v "$d/v.npy")
"$bin" "${A[@]}" --out "$d/ref.npy" --lse "$d/ref_lse.npy" || bad "attend to plain files" "exit $?"

# A FIFO is written through (the reader gets the bytes) and stays a FIFO.
mkfifo "$d/fifo"
fifo_read "$d/fifo" "$d/fifo.got"
timeout 20 "$bin" "${A[@]}" --out "$d/fifo" 2>"$d/err"; rc=$?; wait
if [ $rc -eq 0 ] && [ -p "$d/fifo" ] && cmp -s "$d/fifo.got" "$d/ref.npy"; then ok "attend --out FIFO writes through"
else bad "attend --out FIFO writes through" "exit $rc, fifo still a FIFO: $([ -p "$d/fifo" ] && echo yes || echo no)" "$(cat "$d/err")"; fi
no_temps "FIFO"

# A symlink to /proc/self/fd/1 (what /dev/stdout is) reaches the pipe, and stays a symlink.
ln -s /proc/self/fd/1 "$d/stdout"
timeout 20 "$bin" "${A[@]}" --out "$d/stdout" 2>"$d/err" | cat > "$d/stdout.got"; rc=${PIPESTATUS[0]}
if [ $rc -eq 0 ] && [ -L "$d/stdout" ] && cmp -s "$d/stdout.got" "$d/ref.npy"; then ok "attend --out link-to-stdout writes the pipe"
else bad "attend --out link-to-stdout writes the pipe" "exit $rc" "$(cat "$d/err")"; fi

# A device's write error is reported (ENOSPC from /dev/full), and the symlink to it is kept.
ln -s /dev/full "$d/full"
"$bin" "${A[@]}" --out "$d/full" 2>"$d/err"; rc=$?
if [ $rc -ne 0 ] && grep -q "No space left on device" "$d/err" && [ "$(grep -c 'error:' "$d/err")" -eq 1 ] \
   && [ -L "$d/full" ] && [ "$(readlink "$d/full")" = /dev/full ]; then ok "attend --out link-to-/dev/full fails with ENOSPC"
else bad "attend --out link-to-/dev/full fails with ENOSPC" "exit $rc, still a link: $([ -L "$d/full" ] && echo yes || echo no)" "$(cat "$d/err")"; fi
no_temps "/dev/full"

# A symlink to a regular file: the target gets the content, the link stays (relative, dangling too).
echo old > "$d/real.npy"
ln -s real.npy "$d/link.npy"
ln -s new.npy "$d/dangling.npy"
"$bin" "${A[@]}" --out "$d/link.npy" --lse "$d/dangling.npy" 2>"$d/err"; rc=$?
if [ $rc -eq 0 ] && [ -L "$d/link.npy" ] && [ -L "$d/dangling.npy" ] && cmp -s "$d/real.npy" "$d/ref.npy" \
   && cmp -s "$d/new.npy" "$d/ref_lse.npy"; then ok "symlinked outputs keep their links, targets get the data"
else bad "symlinked outputs keep their links, targets get the data" "exit $rc" "$(cat "$d/err")" "$(ls -l "$d")"; fi
no_temps "symlinks"

# All or none. A bad second path fails before the compute and leaves no first file ...
"$bin" "${A[@]}" --out "$d/o1.npy" --lse /nonexistent/l.npy 2>"$d/err"; rc=$?
if [ $rc -ne 0 ] && [ ! -e "$d/o1.npy" ] && grep -q "/nonexistent" "$d/err"; then ok "attend with a bad --lse writes no --out"
else bad "attend with a bad --lse writes no --out" "exit $rc, o1.npy exists: $([ -e "$d/o1.npy" ] && echo yes || echo no)" "$(cat "$d/err")"; fi
# ... nor a changed pre-existing one: a missing directory, a directory, a write error (after compute).
echo keep > "$d/pre.keep"
for lse in "$d/nodir/l.npy" "$d" "$d/full"; do
  cp "$d/pre.keep" "$d/pre.npy"
  "$bin" "${A[@]}" --out "$d/pre.npy" --lse "$lse" 2>"$d/err"; rc=$?
  if [ $rc -ne 0 ] && cmp -s "$d/pre.npy" "$d/pre.keep"; then ok "attend --lse $lse leaves --out unchanged"
  else bad "attend --lse $lse leaves --out unchanged" "exit $rc" "$(cat "$d/err")"; fi
done
no_temps "all or none"

# A results directory that cannot be created fails before any compute: one line (no "[1/N]"
# progress line came first) and quickly; the time bound is loose because ctest -j shares the cores.
printf '{"runs": [{"seq-len": 1024}, {"seq-len": 2048}], "backends": "naive", "heads": 2, "kv-heads": 1, "head-dim": 16}' \
  > "$d/suite.json"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for cmd in "run --seq-len 4096 --heads 2 --kv-heads 1 --head-dim 16 --backends naive" "run --config $d/suite.json" \
           "needle --seq-len 512 --depths 50" "peak --sizes 256 --stream-mib 8" "comm --ranks 2"; do
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2086
  timeout 60 "$bin" $cmd --out-dir /proc/nope >/dev/null 2>"$d/err"; rc=$?
  ms=$(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 ))
  if [ $rc -eq 1 ] && [ "$(wc -l < "$d/err")" -eq 1 ] && grep -q "/proc/nope" "$d/err" && [ $ms -lt 3000 ]; then
    ok "${cmd%% *} --out-dir /proc/nope fails first (${ms} ms)"
  else bad "${cmd%% *} --out-dir /proc/nope fails first" "exit $rc after ${ms} ms, expected 1, one line, < 3 s:" "$(tail -3 "$d/err")"; fi
done

# report writes through to a FIFO too (the same page it writes to a file).
"$bin" run --out-dir "$d/res" --seq-len 16 --heads 2 --kv-heads 1 --head-dim 8 --backends naive >/dev/null 2>&1
res=$(ls "$d"/res/*.json | head -1)
"$bin" report "$res" --out "$d/page.html" >/dev/null || bad "report to a file" "exit $?"
mkfifo "$d/rfifo"
fifo_read "$d/rfifo" "$d/rfifo.got"
timeout 20 "$bin" report "$res" --out "$d/rfifo" >/dev/null 2>"$d/err"; rc=$?; wait
if [ $rc -eq 0 ] && [ -p "$d/rfifo" ] && cmp -s "$d/rfifo.got" "$d/page.html"; then ok "report --out FIFO writes through"
else bad "report --out FIFO writes through" "exit $rc" "$(cat "$d/err")"; fi
no_temps "report"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
