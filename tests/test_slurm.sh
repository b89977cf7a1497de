#!/bin/bash
# test_slurm.sh — examples/slurm/attnbench_mpi.sbatch as a Slurm job would run it, on this machine:
# a stand-in `srun` that starts the command with mpirun, the job's variables set by hand. Checks
# the run's results carry the placement of both ranks (host, node-local rank, Slurm job id); the
# nccl script only for its syntax (no GPU here).
# usage: test_slurm.sh ATTNBENCH MPIRUN SCRATCH PYTHON3
set -u
bin=$1 mpirun=$2 scratch=$3 py=$4
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$scratch" && mkdir -p "$scratch/bin"
cat > "$scratch/bin/srun" <<EOS
#!/bin/sh
n=1
while [ \$# -gt 0 ]; do case "\$1" in --ntasks=*) n=\${1#--ntasks=}; shift;; --*) shift;; *) break;; esac; done
exec "$mpirun" -np "\$n" --oversubscribe "\$@"
EOS
chmod +x "$scratch/bin/srun"
fail=0
for s in attnbench_mpi attnbench_nccl; do
    bash -n "$here/../examples/slurm/$s.sbatch" || { echo "FAIL $s.sbatch: syntax"; fail=1; }
done
PATH="$scratch/bin:$PATH" SLURM_JOB_ID=4242 SLURM_NTASKS=2 SLURM_CPUS_ON_NODE=1 ATTNBENCH="$bin" OUT="$scratch/out" \
    BACKENDS=ring SEQ_LEN=256 SHAPE="--heads 2 --kv-heads 1 --head-dim 16 --mask causal --repeats 1 --warmup 0" \
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 \
    bash "$here/../examples/slurm/attnbench_mpi.sbatch" > "$scratch/job.log" 2>&1
rc=$?
[ $rc -eq 0 ] || { echo "FAIL the job exited $rc"; tail -20 "$scratch/job.log"; fail=1; }
"$py" - "$scratch/out" <<'EOS' || fail=1
import glob, json, socket, sys
files = glob.glob(sys.argv[1] + "/*.json")
doc = json.load(open(files[0])) if len(files) == 1 else {"run": {}, "records": []}
pl = doc["run"].get("placement")
want = [{"rank": r, "host": socket.gethostname()[:63], "local_rank": r, "cuda_visible_devices": None,
         "slurm_job_id": "4242"} for r in (0, 1)]
ok = pl == want and doc["records"] and all(r["ranks"] == 2 and r["status"] == "pass" for r in doc["records"])
print(("ok   " if ok else "FAIL ") + f"placement of both ranks in the run metadata (got {pl}, want {want})")
sys.exit(0 if ok else 1)
EOS
exit $fail
