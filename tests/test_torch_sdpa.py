#!/usr/bin/env python3
"""test_torch_sdpa.py — benchmarks/torch_sdpa.py's plumbing against a NumPy stand-in for torch
(tests/fixtures/fake_torch): records and files that `attnbench report` reads, FLOPs by visible
pairs, the lower-right causal bias for n_q < n_k (the stand-in refuses a dense mask, as SDPA's
flash kernel does), the GQA probe with and without enable_gqa, a failing case kept as an error
record with exit 1, and the same script run by attnbench as the exec:torch_sdpa peer (time mode). Times and TFLOP/s are the stand-in's and mean nothing; the real peer
runs only on a GPU.
usage: test_torch_sdpa.py ATTNBENCH SCRATCH_DIR"""
import glob
import json
import os
import shutil
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
script = os.path.join(here, "..", "benchmarks", "torch_sdpa.py")
bin_, scratch = sys.argv[1], sys.argv[2]
failed = 0


def check(ok, what):
    global failed
    print(("ok   " if ok else "FAIL ") + what)
    failed += not ok


def run(name, env_extra, *args):
    out = os.path.join(scratch, name)
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=os.path.join(here, "fixtures", "fake_torch"), **env_extra)
    p = subprocess.run([sys.executable, script, "--seq-len", "128,200", "--q-len", "50", "--heads", "4",
                        "--kv-heads", "2", "--head-dim", "64", "--repeats", "2", "--warmup", "1", "--out-dir", out,
                        *args], env=env, capture_output=True, text=True, timeout=300)
    files = glob.glob(os.path.join(out, "*.json"))
    doc = json.load(open(files[0])) if len(files) == 1 else None
    return p, doc, files


def visible(n_q, n_k, mask):
    return n_q * n_k if mask == "none" else n_q * (n_k - n_q + 1) + n_q * (n_q - 1) // 2


p, doc, files = run("gqa", {})
check(p.returncode == 0 and doc is not None, f"runs with GQA, n_q < n_k, both masks (exit {p.returncode})")
if doc:
    recs = doc["records"]
    check(len(recs) == 4 and all(r["status"] == "pass" and r["backend"] == "torch_sdpa" for r in recs),
          f"4 passing torch_sdpa records (got {[r['status'] for r in recs]})")
    check(all(r["config"]["gqa"] == "native" for r in recs), "GQA through enable_gqa")
    ok = all(r["metrics"]["flops"] == 4 * 64 * 4 * visible(50, r["config"]["seq_len_k"], r["config"]["mask"])
             for r in recs)
    check(ok, "FLOPs are 4·d·B·H per visible pair, queries at the end of the keys")
    rep = subprocess.run([bin_, "report", files[0], "--out", os.path.join(scratch, "sdpa.html")],
                         capture_output=True, text=True, timeout=120)
    check(rep.returncode == 0, f"attnbench report reads the file (exit {rep.returncode}) {rep.stderr.strip()}")
    check(os.path.exists(files[0][:-5] + ".csv"), "the CSV beside it")

p, doc, _ = run("nogqa", {"FAKE_TORCH_NO_GQA": "1"})
check(p.returncode == 0 and doc and all(r["config"]["gqa"] == "expanded" for r in doc["records"]),
      "a torch without enable_gqa: K/V expanded before timing")

p, doc, _ = run("fail", {"FAKE_TORCH_FAIL_NK": "200"})
st = [(r["config"]["seq_len_k"], r["status"]) for r in doc["records"]] if doc else []
check(p.returncode == 1 and st == [(128, "pass"), (128, "pass"), (200, "error"), (200, "error")],
      f"a failing case: error records, the others kept, exit 1 (exit {p.returncode}, {st})")
check(bool(doc) and all("No available kernel" in r["reason"] for r in doc["records"] if r["status"] == "error"),
      "the error record says why")

p, doc, _ = run("f16", {}, "--dtype", "f16")
check(p.returncode == 0 and doc and len(doc["records"]) == 4 and
      all(r["config"]["dtype"] == "f16" and r["status"] == "pass" for r in doc["records"]),
      f"--dtype f16: 4 passing records in f16 (exit {p.returncode})")

p, doc, files = run("bad", {}, "--mask", "window")
check(p.returncode == 2 and not files, f"a bad flag: exit 2, nothing written (exit {p.returncode})")

# The same script as an exec: peer (docs/exec-protocol.md): attnbench runs `torch_sdpa.py time REQ`
# and records its CUDA-event seconds; FLOPs and records must match the standalone script's.
spec = json.load(open(os.path.join(here, "..", "benchmarks", "peers", "torch_sdpa.json")))
spec["command"] = [sys.executable, script]  # Debian's python3 with NumPy, as this test runs under
spec_path = os.path.join(scratch, "torch_sdpa_spec.json")
json.dump(spec, open(spec_path, "w"))


def exec_run(name, pythonpath, dtype="bf16"):
    out = os.path.join(scratch, name)
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=pythonpath)
    p = subprocess.run([bin_, "run", "--task", "throughput", "--exec-spec", spec_path, "--backends",
                        "exec:torch_sdpa", "--seq-len", "128,200", "--q-len", "50", "--heads", "4", "--kv-heads", "2",
                        "--head-dim", "64", "--dtype", dtype, "--mask", "none,causal,window", "--repeats", "2",
                        "--warmup", "1", "--out-dir", out], env=env, capture_output=True, text=True, timeout=300)
    files = glob.glob(os.path.join(out, "*.json"))
    return p, json.load(open(files[0]))["records"] if len(files) == 1 else []


p, recs = exec_run("exec", os.path.join(here, "fixtures", "fake_torch"))
by = {(r["config"]["seq_len_k"], r["config"]["mask"]): r for r in recs}
ok = p.returncode == 0 and len(recs) == 6
for (n_k, mask), r in by.items():
    if mask == "window":
        ok &= r["status"] == "skipped" and "declines mask window" in r["reason"]
    else:
        ok &= r["status"] == "pass" and r["metrics"]["flops"] == 4 * 64 * 4 * visible(50, n_k, mask) and \
            r["config"]["timing"] == "cuda_events" and r["device"] == "cuda:0" and \
            r["peer"] == {"name": "torch_sdpa", "version": "torch 0.0+fake", "kind": "exec"}
check(ok, f"exec:torch_sdpa: 4 records pass with the script's FLOPs, CUDA-event timing, peer torch version; "
          f"window declined by the spec (exit {p.returncode}) {p.stderr[-300:]}")
# The spec lists bf16 and f16 (a "dtype" list): f16 cases run in float16, f32 ones are declined.
p, recs = exec_run("exec_f16", os.path.join(here, "fixtures", "fake_torch"), "f16")
check(p.returncode == 0 and len(recs) == 6 and
      all(r["config"]["dtype"] == "f16" and r["status"] == ("skipped" if r["config"]["mask"] == "window" else "pass")
          for r in recs), f"exec:torch_sdpa --dtype f16: 4 pass in f16, window declined (exit {p.returncode})")
p, recs = exec_run("exec_f32", os.path.join(here, "fixtures", "fake_torch"), "f32")
check(p.returncode == 0 and recs and all(r["status"] == "skipped" and "computes in bf16, f16 only" in r["reason"]
                                         for r in recs), "exec:torch_sdpa --dtype f32: declined, naming bf16 and f16")
p, recs = exec_run("exec_notorch", os.path.join(scratch, "no_such_dir"))
check(p.returncode == 0 and recs and all(r["status"] == "skipped" and "PyTorch is not installed" in r["reason"]
                                         for r in recs), "without torch: every case skipped, saying why")
# The other torch peers need torch and a GPU to do anything; here: they compile, print usage, and
# say "cannot run here" (exit 77, the protocol's word for it) when torch is missing.
for peer in ("torch_flex.py", "flash_attn_peer.py"):
    path = os.path.join(here, "..", "benchmarks", peer)
    env = dict(os.environ, PYTHONPATH=os.path.join(scratch, "no_such_dir"))
    u = subprocess.run([sys.executable, path], env=env, capture_output=True, text=True, timeout=60)
    v = subprocess.run([sys.executable, path, "--version"], env=env, capture_output=True, text=True, timeout=60)
    check(u.returncode == 2 and "usage:" in u.stderr and v.returncode == 77 and "PyTorch is not installed" in v.stderr,
          f"{peer}: usage (exit {u.returncode}), --version without torch: 77 (exit {v.returncode}) {v.stderr.strip()}")
sys.exit(1 if failed else 0)
