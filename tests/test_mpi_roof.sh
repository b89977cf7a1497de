#!/bin/bash
# test_mpi_roof.sh — under mpi each rank is a process with its own threads, so the throughput
# task's compute roof counts every process's cores (roof_processes); with one process's sgemm a
# correct P = 2 run read as 1.4× the roof and was marked an error.
# usage: test_mpi_roof.sh MPIEXEC ATTNBENCH SCRATCH
mpiexec=$1 bin=$2 scratch=$3
rm -rf "$scratch" && mkdir -p "$scratch"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$mpiexec" --oversubscribe -np 2 "$bin" run --task throughput --transport mpi --backends striped --seq-len 4096 \
  --threads 1 --repeats 2 --warmup 1 --mask causal --out-dir "$scratch" >"$scratch/log" 2>&1 || {
  echo "FAIL: the run failed"; tail -5 "$scratch/log"; exit 1; }
f=$(ls "$scratch"/*.json) || exit 1
/usr/bin/python3 - "$f" "$(nproc)" <<'PY'
import json, sys
rec = json.load(open(sys.argv[1]))["records"][0]
want = min(2, int(sys.argv[2]))
got = rec["config"].get("roof_processes", 1)
ok = rec["status"] == "pass" and got == want
print(("ok  " if ok else "FAIL"), "status", rec["status"], "roof_processes", got, "want", want,
      "frac_of_sgemm", rec["metrics"]["frac_of_sgemm"]["value"] if isinstance(rec["metrics"]["frac_of_sgemm"], dict) else rec["metrics"]["frac_of_sgemm"])
sys.exit(0 if ok else 1)
PY
