#!/usr/bin/env python3
"""test_simulate_checks.py — `attnbench simulate` end to end, fast: a real (small) throughput run
and a real comm run go in as files; every check record must hold model_s, measured_s and
rel_err = |model − measured| / measured, status fail exactly beyond 20 %, and the projection
records must name their constants. The 20 % gate itself is the slow test (docs/simulate.md).
usage: test_simulate_checks.py ATTNBENCH SCRATCH"""
import glob, json, os, shutil, subprocess, sys

bin_, scratch = sys.argv[1], sys.argv[2]
shutil.rmtree(scratch, ignore_errors=True)
fails = 0
def check(ok, name, why=""):
    global fails
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + why))
    fails += not ok

def run(*args):
    out = os.path.join(scratch, str(len(os.listdir(scratch)) if os.path.isdir(scratch) else 0))
    subprocess.run([bin_, *args, "--out-dir", out], check=True, capture_output=True, text=True)
    return glob.glob(out + "/*.json")[0]

tp = run("run", "--task", "throughput", "--backends", "ring,zigzag,ulysses", "--ranks", "2", "--seq-len", "1024",
         "--repeats", "1", "--warmup", "0")
cm = run("comm", "--ranks", "2", "--sizes", "8,65536", "--repeats", "3")
cm2 = run("comm", "--ranks", "2", "--sizes", "8,65536", "--repeats", "3")
sim = run("simulate", "--ranks", "8,128", "--seq-len", "4096", "--heads", "8", "--kv-heads", "2", tp, cm)
# links from one comm run checked against another: check "link"; without --links: "link-self"
lsim = run("simulate", "--ranks", "8", "--seq-len", "4096", "--links", cm, "--profile",
           os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "suites", "simulate", "h100-bf16.json"), cm2)
lrecs = [r for r in json.load(open(lsim))["records"] if "check" in r["config"]]
check(len(lrecs) == 4 and all(r["config"]["check"] == "link" and "intra_oneway_bytes_0" in r["config"] and
                              "intra_exchange_s_1" in r["config"] for r in lrecs),
      "--links a comm file: link checks of another run, its tables named", str([r["config"].get("check") for r in lrecs]))
recs = json.load(open(sim))["records"]
checks = [r for r in recs if "check" in r["config"]]
kinds = sorted({(r["backend"], r["config"]["check"]) for r in checks})
check(("ring", "compute") in kinds and ("zigzag", "compute") in kinds and ("ulysses", "compute") in kinds and
      ("pingpong", "link-self") in kinds and ("alltoall", "link-self") in kinds, "every check kind present", str(kinds))
for r in checks:
    m = r["metrics"]
    rel = abs(m["model_s"] - m["measured_s"]) / m["measured_s"]
    check(abs(rel - m["rel_err"]) <= 1e-12 * max(1, rel) and m["model_s"] > 0 and
          (r["status"] == "fail") == (rel > 0.20),
          "check %s %s: rel_err and status computed" % (r["backend"], r["config"]["check"]), json.dumps(m))
proj = [r for r in recs if "check" not in r["config"]]
check(len(proj) == 5 * 2, "one record per scheme × P × n", str(len(proj)))
for r in proj:
    c = r["config"]
    named = all(k in c for k in ("profile", "profile_rows_0", "profile_flops_0", "intra_latency_s", "tile_full_s_0",
                                 "tile_part_s", "tile_merge_row_s", "tile_call_s",
                                 "intra_bandwidth_Bps", "inter_latency_s", "inter_bandwidth_Bps", "elem_bytes"))
    ok = r["status"] == "skipped" or all(k in r["metrics"] for k in
        ("time_s", "compute_s", "comm_s", "exposed_comm_s", "memory_bytes", "fits"))
    check(named and ok, "%s P=%d: constants named, metrics present" % (r["backend"], r["ranks"]))
sys.exit(1 if fails else 0)
