#!/usr/bin/env python3
"""soak.py — the local and mpi transports under repeated runs with random injected faults (hidden
--inject-fault: exit, stall, slow within and beyond --comm-timeout, or none), for a bounded time.
Each run has a deadline; after each: no attnbench/orted/prterun process left, no partial file,
and the outcome the fault calls for (a fault: non-zero exit naming the rank; none or a short
delay: exit 0 with a results file). The seed is printed so a failure can be replayed.

usage: soak.py BINARY SCRATCH [--mpirun PATH] [--seconds N (SOAK_SECONDS, 600)] [--seed S]
"""
import argparse, glob, os, random, re, shutil, signal, subprocess, sys, time

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
TIMEOUT = 1.0  # --comm-timeout of every run: faults end within a few of these


def leftovers(sid, tag):
    """Processes of one run still alive, zombies excepted: those of its session, and any (an mpi
    rank, orted, prterun) whose command line holds the run's own --out-dir. Other processes of the
    same binary (a concurrent campaign, another helper) are not this run's."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,stat=,comm=,args="], capture_output=True, text=True).stdout
    hits = []
    for line in out.splitlines():
        pid, psid, st, comm, args = (line.split(None, 4) + [""])[:5]
        if int(pid) == os.getpid() or st.startswith("Z") or comm == "ps":
            continue
        if int(psid) == sid or tag in args:
            hits.append(line.strip())
    return hits


def plan(rng, have_mpi):
    transport = "mpi" if have_mpi and rng.random() < 0.4 else "local"
    backend = rng.choice(["ring", "striped", "zigzag", "ulysses"])
    ranks = rng.choice([2, 3, 4]) if transport == "local" else rng.choice([2, 3])
    if backend == "ulysses":
        ranks = 2 if ranks == 3 else ranks
    steps = 1 if backend == "ulysses" else ranks  # fault points: ulysses has one (step 0), the ring family P
    kind = rng.choice(["none", "exit", "stall", "slow-short", "slow-long"])
    rank, step = rng.randrange(ranks), rng.randrange(steps)
    fault = {"none": None, "exit": "exit:%d:%d" % (rank, step), "stall": "stall:%d:%d" % (rank, step),
             "slow-short": "slow:%d:%d:%g" % (rank, step, round(rng.uniform(0.05, 0.4) * TIMEOUT, 2)),
             "slow-long": "slow:%d:%d:%g" % (rank, step, round(rng.uniform(1.6, 2.5) * TIMEOUT, 2))}[kind]
    return transport, backend, ranks, kind, rank, fault


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("scratch")
    ap.add_argument("--mpirun", default=shutil.which("mpirun"))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", time.time_ns() % 1000000)))
    a = ap.parse_args()
    exe = os.path.abspath(a.binary)
    rng = random.Random(a.seed)
    print("soak: seed %d, %g s, transports local%s" % (a.seed, a.seconds, ", mpi" if a.mpirun else ""), flush=True)
    shutil.rmtree(a.scratch, ignore_errors=True)
    os.makedirs(a.scratch)
    t_end, runs, faults, fails = time.time() + a.seconds, 0, {}, 0
    while time.time() < t_end:
        transport, backend, ranks, kind, rank, fault = plan(rng, bool(a.mpirun))
        out = os.path.join(a.scratch, "r%05d" % runs)
        argv = [exe, "run", "--task", "throughput", "--repeats", "1", "--warmup", "0", "--seq-len",
                str(rng.choice([256, 512, 1024])), "--heads", "4", "--kv-heads", "2", "--head-dim", "16",
                "--comm-timeout", str(TIMEOUT), "--backends", backend, "--out-dir", out, "--threads", "1",
                "--transport", transport]
        argv += ["--ranks", str(ranks)] if transport == "local" else []
        argv += ["--inject-fault", fault] if fault else []
        if transport == "mpi":
            argv = [a.mpirun, "--oversubscribe", "-np", str(ranks)] + argv
        deadline = 30 if transport == "mpi" else 15
        t0 = time.time()
        p = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True, stdin=subprocess.DEVNULL)
        try:
            text, hung = p.communicate(timeout=deadline)[0], False
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            text, hung = p.communicate()[0], True
        secs, rc = time.time() - t0, p.returncode
        time.sleep(0.2)  # let mpirun's daemons finish exiting before they are counted
        left = leftovers(p.pid, out)
        files = glob.glob(os.path.join(out, "*"))
        partial = [f for f in files if ".tmp" in os.path.basename(f)]
        why = []
        if hung:
            why.append("hung (killed after %d s)" % deadline)
        if left:
            why.append("processes left: " + "; ".join(left[:3]))
            for line in left:
                try:
                    os.kill(int(line.split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        if partial:
            why.append("partial files: " + ", ".join(partial))
        must_fail = kind in ("exit", "stall", "slow-long")
        if not hung and must_fail:
            if rc == 0:
                why.append("exit 0 after an injected %s" % kind)
            if not re.search(r"rank \d+", text):
                why.append("no rank named in the output")
            if not re.search(r"rank %d: injected fault|from rank %d\b" % (rank, rank), text):
                why.append("the faulty rank %d is not named" % rank)
            if transport == "mpi" and [f for f in files if f.endswith(".json")]:
                why.append("a results file after a failed mpi run")
        if not hung and not must_fail:
            if rc != 0:
                why.append("exit %d without a fault that should fail it" % rc)
            if not [f for f in files if f.endswith(".json")]:
                why.append("no results file")
            if kind == "slow-short" and not re.search(r"rank %d: injected fault: slow by" % rank, text):
                why.append("the slow rank's note is missing")
        faults[kind] = faults.get(kind, 0) + 1
        status = "FAIL" if why else "ok  "
        if why:
            fails += 1
        print("%s run %d: %s %s P=%d fault %s: exit %s in %.1f s%s" % (status, runs, transport, backend, ranks, fault or "none",
                                                                rc, secs, ("\n     " + "\n     ".join(why)) if why else ""), flush=True)
        if why:
            print("     | " + "\n     | ".join(text.strip().splitlines()[-5:]), flush=True)
        shutil.rmtree(out, ignore_errors=True)
        runs += 1
    print("soak: seed %d: %d runs (%s), %d failed" % (a.seed, runs, ", ".join("%s %d" % kv for kv in sorted(faults.items())), fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
