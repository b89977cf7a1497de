#!/bin/bash
# test_faults.sh — a rank that exits or stalls mid-ring (hidden --inject-fault) must end the run
# with a message naming a rank and a non-zero exit within a short time (--comm-timeout 2),
# never a hang; under mpi no results file may appear. A rank slower than the timeout is a stall;
# one late by less is waited for. The same faults with ":backward" fire in the backward's steps
# (ring_grad.c, ulysses_grad.c); a dropped dK/dV partial sum in the backward's ring must fail the
# gradient check (exit 1, a complete results file whose records say fail).
# usage: test_faults.sh ATTNBENCH SCRATCH [MPIEXEC]   (with MPIEXEC: the mpi cases only)
set -u
bin=$1 scratch=$2 mpiexec=${3:-}
rm -rf "$scratch" && mkdir -p "$scratch"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
fails=0 n=0

# expect_fault NAME LIMIT_S CMD...: non-zero exit, done within LIMIT_S, a "rank N" in the output.
expect_fault() {
  local name=$1 limit=$2; shift 2
  n=$((n + 1))
  local t0=$(date +%s%N) out rc
  out=$(timeout 120 "$@" 2>&1); rc=$?
  local ms=$((($(date +%s%N) - t0) / 1000000)) secs
  secs=$((ms / 1000)).$(printf %03d $((ms % 1000)))
  local why=""
  [ $rc -eq 0 ] && why="exit status 0"
  [ $rc -eq 124 ] && why="hung (killed by timeout 120)"
  [ -z "$why" ] && [ $ms -gt $((limit * 1000)) ] && why="took ${secs}s (limit ${limit}s)"
  [ -z "$why" ] && ! grep -qE "rank [0-9]+" <<<"$out" && why="no rank named in the output"
  if [ -n "$why" ]; then
    echo "FAIL $name: $why"; echo "$out" | tail -5 | sed 's/^/     /'; fails=$((fails + 1))
  else
    echo "ok   $name: exit $rc in ${secs}s: $(grep -oE "(error|note).*rank [0-9]+[^(]*" <<<"$out" | head -1)"
  fi
}

# expect_slow NAME CMD...: a rank late by less than the timeout is waited for: exit 0, the note
# naming the slow rank, a results file in the --out-dir (the last argument).
expect_slow() {
  local name=$1; shift
  n=$((n + 1))
  local out rc dir=${@: -1}
  out=$(timeout 120 "$@" 2>&1); rc=$?
  if [ $rc -eq 0 ] && grep -qE "rank [0-9]+: injected fault: slow by" <<<"$out" && ls "$dir"/*.json >/dev/null 2>&1; then
    echo "ok   $name: exit 0, $(grep -oE "rank [0-9]+: injected fault: slow by [^ ]+ s" <<<"$out" | head -1)"
  else
    echo "FAIL $name: exit $rc, expected 0 with a slow-rank note and a results file"; echo "$out" | tail -5 | sed 's/^/     /'
    fails=$((fails + 1))
  fi
}

# expect_detected NAME CMD...: a wrong answer, not a crash: exit 1 and a complete results file in
# the --out-dir (the last argument) whose every record failed the gradient bound.
expect_detected() {
  local name=$1; shift
  n=$((n + 1))
  local out rc dir=${@: -1} f
  out=$(timeout 120 "$@" 2>&1); rc=$?
  f=$(ls "$dir"/*.json 2>/dev/null | head -1)
  if [ $rc -eq 1 ] && [ -n "$f" ] && python3 - "$f" <<'PY'
import json, sys
recs = json.load(open(sys.argv[1]))["records"]
sys.exit(0 if recs and all(r["status"] == "fail" and "above tolerance" in (r["reason"] or "") for r in recs) else 1)
PY
  then
    echo "ok   $name: exit 1, $(grep -c '"status": "fail"' "$f") failed records in a complete results file"
  else
    echo "FAIL $name: exit $rc, expected 1 with every record failing its gradient bound"; echo "$out" | tail -5 | sed 's/^/     /'
    fails=$((fails + 1))
  fi
}

bwd=(run --task throughput --direction backward --repeats 1 --warmup 0 --seq-len 4096 --heads 4 --kv-heads 2
     --comm-timeout 2)
common=(run --task throughput --repeats 1 --warmup 0 --seq-len 4096 --heads 4 --kv-heads 2 --comm-timeout 2)
if [ -z "$mpiexec" ]; then
  expect_fault "local ring, rank 2 exits at step 1" 10 "$bin" "${common[@]}" --backends ring --ranks 4 \
    --inject-fault exit:2:1 --out-dir "$scratch/a"
  expect_fault "local zigzag, rank 1 stalls at step 1" 10 "$bin" "${common[@]}" --backends zigzag --ranks 4 \
    --inject-fault stall:1:1 --out-dir "$scratch/b"
  expect_fault "local striped, rank 0 stalls at step 2" 10 "$bin" "${common[@]}" --backends striped --ranks 3 \
    --inject-fault stall:0:2 --out-dir "$scratch/c"
  expect_fault "local ulysses, rank 1 exits" 10 "$bin" "${common[@]}" --backends ulysses --ranks 2 \
    --inject-fault exit:1:0 --out-dir "$scratch/d"
  expect_fault "local ulysses, rank 3 stalls" 10 "$bin" "${common[@]}" --backends ulysses --ranks 4 \
    --inject-fault stall:3:0 --out-dir "$scratch/e"
  expect_slow "local ring, rank 2 slow by 0.5 s (timeout 10 s)" "$bin" "${common[@]}" --comm-timeout 10 \
    --backends ring --ranks 4 --inject-fault slow:2:1:0.5 --out-dir "$scratch/f"
  expect_fault "local ring, rank 2 slow by 4 s (timeout 2 s)" 10 "$bin" "${common[@]}" --backends ring --ranks 4 \
    --inject-fault slow:2:1:4 --out-dir "$scratch/g"
  expect_fault "local ring backward, rank 2 exits at step 1" 10 "$bin" "${bwd[@]}" --backends ring --ranks 4 \
    --inject-fault exit:2:1:backward --out-dir "$scratch/ba"
  expect_fault "local zigzag backward, rank 1 stalls at step 1" 10 "$bin" "${bwd[@]}" --backends zigzag --ranks 4 \
    --inject-fault stall:1:1:backward --out-dir "$scratch/bb"
  expect_fault "local ulysses backward, rank 1 exits" 10 "$bin" "${bwd[@]}" --backends ulysses --ranks 2 \
    --inject-fault exit:1:0:backward --out-dir "$scratch/bc"
  expect_fault "local usp backward, rank 3 stalls at step 1" 10 "$bin" "${bwd[@]}" --backends usp --ranks 4 \
    --inject-fault stall:3:1:backward --out-dir "$scratch/bd"
  expect_detected "local ring/zigzag backward, step 1's dK/dV partial sum dropped" "$bin" run --task exactness \
    --direction backward --backends ring,zigzag --ranks 4 --seq-len 512 --heads 4 --kv-heads 2 --mask causal \
    --inject-fault drop-step:1:backward --out-dir "$scratch/be"
else
  mpi=("$mpiexec" --oversubscribe -np)
  expect_fault "mpi ring, rank 1 exits at step 1" 30 "${mpi[@]}" 3 "$bin" "${common[@]}" --transport mpi \
    --backends ring --inject-fault exit:1:1 --out-dir "$scratch/m1"
  expect_fault "mpi striped, rank 2 stalls at step 1" 30 "${mpi[@]}" 3 "$bin" "${common[@]}" --transport mpi \
    --backends striped --inject-fault stall:2:1 --out-dir "$scratch/m2"
  expect_fault "mpi zigzag, rank 0 stalls at step 1" 30 "${mpi[@]}" 2 "$bin" "${common[@]}" --transport mpi \
    --backends zigzag --inject-fault stall:0:1 --out-dir "$scratch/m3"
  expect_fault "mpi ulysses, rank 1 stalls" 30 "${mpi[@]}" 2 "$bin" "${common[@]}" --transport mpi \
    --backends ulysses --inject-fault stall:1:0 --out-dir "$scratch/m4"
  expect_slow "mpi ring, rank 1 slow by 0.5 s (timeout 10 s)" "${mpi[@]}" 3 "$bin" "${common[@]}" --comm-timeout 10 \
    --transport mpi --backends ring --inject-fault slow:1:1:0.5 --out-dir "$scratch/m5"
  expect_fault "mpi zigzag, rank 1 slow by 5 s (timeout 2 s)" 30 "${mpi[@]}" 2 "$bin" "${common[@]}" --transport mpi \
    --backends zigzag --inject-fault slow:1:1:5 --out-dir "$scratch/m6"
  expect_fault "mpi ring backward, rank 1 exits at step 1" 30 "${mpi[@]}" 3 "$bin" "${bwd[@]}" --transport mpi \
    --backends ring --inject-fault exit:1:1:backward --out-dir "$scratch/m7"
  expect_fault "mpi ulysses backward, rank 1 stalls" 30 "${mpi[@]}" 2 "$bin" "${bwd[@]}" --transport mpi \
    --backends ulysses --inject-fault stall:1:0:backward --out-dir "$scratch/m8"
  expect_detected "mpi striped backward, step 2's dK/dV partial sum dropped" "${mpi[@]}" 3 "$bin" run --task exactness \
    --direction backward --transport mpi --backends striped --seq-len 512 --heads 4 --kv-heads 2 --mask causal \
    --inject-fault drop-step:2:backward --out-dir "$scratch/m9"
  for d in m1 m2 m3 m4 m6 m7 m8; do
    n=$((n + 1))
    if ls "$scratch/$d"/*.json >/dev/null 2>&1; then echo "FAIL $d: a results file was written"; fails=$((fails + 1)); fi
  done
fi
echo "$((n - fails)) passed, $fails failed"
[ $fails -eq 0 ]
