#!/usr/bin/python3
"""test_precision_sweep.py — issue 20's precision acceptance (label slow): the distributed CPU
backends (ring, striped, zigzag, ulysses where its heads allow, usp when this build has it) at
P = 1 … 64 on `local`, n = 65536 causal and n_k = 10⁶ query-tail (256 query rows), f32 merge;
prints the error per P and the slope per backend, and FAILS if any backend's error at the
largest P exceeds 2× its error at P = 1 (or any f32 record fails its tolerance).
usage: test_precision_sweep.py ATTNBENCH SCRATCH [--cases full,tail] [--ranks 1,2,...]
       [--backends a,b] [--heads H] [--kv-heads H]"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("binary")
ap.add_argument("scratch")
ap.add_argument("--cases", default="full,tail")
ap.add_argument("--ranks", default="1,2,4,8,16,32,64")
ap.add_argument("--backends", default="")
ap.add_argument("--heads", default="8")
ap.add_argument("--kv-heads", default="8")
ap.add_argument("--full-n", default="65536")
ap.add_argument("--tail-n", default="1000000")
a = ap.parse_args()

listed = subprocess.run([a.binary, "list"], capture_output=True, text=True).stdout
names = {ln.split()[0] for ln in listed.splitlines() if ln.strip()}
backends = a.backends or ",".join(b for b in ("ring", "striped", "zigzag", "ulysses", "usp") if b in names)
shutil.rmtree(a.scratch, ignore_errors=True)
os.makedirs(a.scratch)
cases = {"full": ["--seq-len", a.full_n], "tail": ["--seq-len", a.tail_n, "--q-len", "256"]}
failed = 0
for case in a.cases.split(","):
    out = f"{a.scratch}/{case}"
    cmd = [a.binary, "run", "--task", "precision", "--backends", backends + ",blockwise", "--mask", "causal",
           "--precision-ranks", a.ranks, "--heads", a.heads, "--kv-heads", a.kv_heads, "--out-dir", out] + cases[case]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(f"# {' '.join(cmd[1:])}  ({time.time() - t0:.0f} s, exit {r.returncode})")
    if r.returncode != 0:
        print(r.stderr[-2000:])
        failed += 1
        continue
    js = [f for f in os.listdir(out) if f.endswith(".json")]
    recs = json.load(open(f"{out}/{js[0]}"))["records"]
    by = {}
    for rec in recs:
        if rec["config"].get("fit"):
            m = rec["metrics"]
            print(f"  {rec['backend']:10s} slope {m.get('rel_l2_slope')} per log2 P, relative "
                  f"{m.get('rel_l2_slope_rel')}, P_max/P_1 {m.get('rel_l2_ratio_pmax')}"
                  if rec["status"] == "pass" else f"  {rec['backend']:10s} slope: {rec['status']} {rec['reason']}")
            continue
        err = rec["metrics"].get("rel_l2_err")
        print(f"  {rec['backend']:10s} P={rec['ranks']:<3d} rel_l2 {err} max_abs {rec['metrics'].get('max_abs_err')} "
              f"rows {rec['metrics'].get('ref_rows')} {rec['metrics'].get('time_s')} s {rec['status']} "
              f"{rec.get('reason') or ''}")
        if rec["status"] == "fail" or rec["status"] == "error":
            print(f"FAIL {case} {rec['backend']} P={rec['ranks']}: {rec['status']} {rec.get('reason')}")
            failed += 1
        if rec["status"] == "pass" and err is not None:
            by.setdefault(rec["backend"], {})[rec["ranks"]] = err
    pmax = max(int(p) for p in a.ranks.split(","))
    for b, errs in sorted(by.items()):
        if b == "blockwise" or 1 not in errs or len(errs) < 2:
            print(f"  {case} {b}: not gated (measured at P = {sorted(errs)} only)")
            continue
        top = max(errs)
        ok = errs[top] <= 2 * errs[1]
        if b != "ulysses" and top != pmax:
            ok = False  # the ring family must reach the largest P
        print(f"{'ok  ' if ok else 'FAIL'} {case} {b}: error at P={top} {errs[top]:.3e} vs 2 x P=1 {2 * errs[1]:.3e}")
        failed += not ok
print(f"{'FAILED' if failed else 'passed'}: {failed} failure(s)")
sys.exit(1 if failed else 0)
