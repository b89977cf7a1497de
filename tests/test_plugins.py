#!/usr/bin/env python3
"""test_plugins.py — backends from outside the binary, end to end through the executable: the
example plugin (examples/plugin) in list, exactness (f64, n_q < n_k, all masks), throughput, memory,
needle and a suite; ATTNBENCH_PLUGINS; refusals (wrong ABI version, no symbol, not a shared object,
a duplicate name, from every subcommand) with exit 2, one message and no results file; the NumPy
exec: backend's throughput records (peer, the same statistics); exec programs that fail, hang or
answer with the wrong shape become error records with the reason, within their timeout.
a plugin built for ABI 0 (the unstable draft) gets one message naming versions 0 and 1; the
example's backward through `--direction backward` (pass) and document masks (`--docs`); a plugin
backend without a backward declines backward cases (skipped, with the reason).
usage: test_plugins.py ATTNBENCH SCRATCH PLUGIN.so WRONG_ABI.so DUPLICATE.so NOSYM.so NUMPY_SPEC V0.so
                       FORWARD_ONLY.so"""
import glob
import json
import os
import shutil
import subprocess
import sys
import time

bin_, scratch, plugin, wrong_abi, dup, nosym, numpy_spec, v0, fwd_only = sys.argv[1:10]
failed = 0
SHAPE = ["--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--seq-len", "40", "--q-len", "40,13",
         "--window", "7", "--repeats", "2", "--warmup", "0", "--threads", "1"]


def check(ok, what):
    global failed
    print(("ok   " if ok else "FAIL ") + what)
    failed += not ok


def run(name, args, env_extra=None, timeout=300):
    out = os.path.join(scratch, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "tmp"))
    env = dict(os.environ, TMPDIR=os.path.join(out, "tmp"), **(env_extra or {}))
    env.pop("ATTNBENCH_PLUGINS", None) if not env_extra or "ATTNBENCH_PLUGINS" not in env_extra else None
    t0 = time.time()
    p = subprocess.run([bin_, *[a.replace("{out}", out) for a in args]], env=env, capture_output=True, text=True,
                       timeout=timeout)
    p.wall = time.time() - t0
    files = glob.glob(os.path.join(out, "res", "*.json"))
    p.doc = json.load(open(files[0])) if len(files) == 1 else None
    p.files = files
    p.leftover = os.listdir(os.path.join(out, "tmp"))
    return p


def spec(name, **kw):
    path = os.path.join(scratch, name + ".json")
    with open(path, "w") as f:
        json.dump(dict(dict(name=name, dtype="f32", version="test"), **kw), f)
    return path


# ---- the example plugin through every task --------------------------------------------------------
p = run("list", ["list", "--plugin", plugin])
row = [l.split() for l in p.stdout.splitlines() if l.startswith("tiled_example ")]
check(p.returncode == 0 and row and row[0][1:6] == ["cpu", "yes", "yes", "yes", "f32,f64"],
      f"list --plugin: tiled_example, cpu, every mask, f32 and f64 ({row})")
p = run("list_env", ["list"], {"ATTNBENCH_PLUGINS": ":" + plugin + ":"})
check(p.returncode == 0 and "tiled_example" in p.stdout, "ATTNBENCH_PLUGINS (empty items skipped)")

# --backends names the plugin's backend before --plugin loads it: plugins load before flags parse
p = run("exact", ["run", "--task", "exactness", "--backends", "tiled_example", "--dtype", "f64", "--mask",
                  "none,causal,window", "--block-k", "16", "--out-dir", "{out}/res", "--plugin", plugin, *SHAPE])
recs = p.doc["records"] if p.doc else []
check(p.returncode == 0 and len(recs) == 6 and all(r["status"] == "pass" for r in recs),
      f"exactness f64, 3 masks × (n_q = n_k, n_q < n_k): 6 records pass (exit {p.returncode}, "
      f"{[r['status'] for r in recs]}) {p.stderr[-300:] if p.returncode else ''}")
check(all(r.get("peer") == {"name": "tiled_example", "version": "1.0", "kind": "plugin"} for r in recs) and recs,
      "records carry peer {name, version, kind plugin}")
check(bool(recs) and all(r["metrics"]["rel_l2_err"] < 1e-13 for r in recs), "f64 accumulation: rel_l2 < 1e-13")

# ABI 1: the backward and packed documents, through the same exactness task and tolerance rules
pb = run("backward_docs", ["run", "--task", "exactness", "--backends", "tiled_example", "--direction", "backward",
                          "--docs", "uniform:1:12", "--mask", "none,causal,window", "--out-dir", "{out}/res",
                          "--plugin", plugin, *SHAPE])
recs_b = pb.doc["records"] if pb.doc else []
check(pb.returncode == 0 and len(recs_b) == 6 and all(r["status"] == "pass" and r["config"].get("docs", 1) > 1
                                                     for r in recs_b),
      f"exactness --direction backward --docs: 6 records pass (exit {pb.returncode}, "
      f"{[(r['status'], r.get('reason')) for r in recs_b]}) {pb.stderr[-300:] if pb.returncode else ''}")
pf = run("forward_only", ["run", "--task", "exactness", "--backends", "tiled_forward_only", "--direction", "both",
                         "--out-dir", "{out}/res", "--plugin", fwd_only, *SHAPE])
recs_f = pf.doc["records"] if pf.doc else []
fwd = [r for r in recs_f if r.get("config", {}).get("direction", "forward") == "forward"]
bwd = [r for r in recs_f if r.get("config", {}).get("direction") == "backward"]
check(pf.returncode == 0 and fwd and bwd and all(r["status"] == "pass" for r in fwd) and
      all(r["status"] == "skipped" and "has no backward pass" in r.get("reason", "") for r in bwd),
      f"no backward entry point: forward passes, backward cases skipped with the reason (exit {pf.returncode}, "
      f"{[(r.get('config', {}).get('direction'), r['status'], r.get('reason')) for r in recs_f]})")

exact_file = p.files[0] if p.files else None
if exact_file:  # readers: peer is a schema-2 field; a /1 file that carries one is refused by name
    rep = subprocess.run([bin_, "report", exact_file, "--out", os.path.join(scratch, "peer.html")],
                         capture_output=True, text=True, timeout=120)
    check(rep.returncode == 0, f"report reads records with peer (exit {rep.returncode}) {rep.stderr[-200:]}")
    doc = json.load(open(exact_file))
    doc["schema"] = "attnbench.results/1"
    old = os.path.join(scratch, "20260101T000000Z-abcdef.json")
    with open(old, "w") as f:
        json.dump(doc, f)
    rep = subprocess.run([bin_, "report", old, "--out", os.path.join(scratch, "peer1.html")], capture_output=True,
                         text=True, timeout=120)
    check(rep.returncode == 2 and '"peer"' in rep.stderr, f"a schema /1 file with peer is refused ({rep.stderr[-200:]})")

p = run("thr", ["run", "--task", "throughput", "--plugin", plugin, "--backends", "tiled_example,naive",
                "--mask", "causal", "--out-dir", "{out}/res", *SHAPE])
recs = {r["backend"]: r for r in p.doc["records"]} if p.doc else {}
t = recs.get("tiled_example", {})
check(p.returncode == 0 and t.get("status") == "pass" and t["metrics"]["time_s_min"] <= t["metrics"]["time_s"]
      and "peer" in t and "peer" not in recs.get("naive", {"peer": 1}),
      f"throughput: the plugin's record passes with time_s (median, min, max) and peer; naive has none")

p = run("mem", ["run", "--task", "memory", "--plugin", plugin, "--backends", "tiled_example", "--mask", "causal",
                "--block-k", "32", "--out-dir", "{out}/res", *SHAPE])
m = p.doc["records"][0] if p.doc else {}
mm = m.get("metrics", {})
check(p.returncode == 0 and m.get("status") == "pass" and mm.get("workspace_bytes") == (32 + 16) * 8 and
      mm.get("alloc_to_analytic") == 1, f"memory task: the plugin's declared workspace ((block_k + d) doubles) is "
      f"allocated by the harness and counted exactly (exit {p.returncode}, {mm}) {p.stderr[-200:]}")

p = run("needle", ["needle", "--plugin", plugin, "--backends", "tiled_example", "--seq-len", "256", "--depths",
                   "0:100:50", "--haystack", "noise", "--out-dir", "{out}/res"])
recs = p.doc["records"] if p.doc else []
check(p.returncode == 0 and len(recs) == 3 and all(r["metrics"]["recall"] == 1 and r.get("peer") for r in recs),
      f"needle: 3 depths, recall 1 with the plugin, peer recorded (exit {p.returncode})")

suite = os.path.join(scratch, "suite.json")
with open(suite, "w") as f:  # "backends" before "plugin": the suite loads plugins first too
    json.dump({"backends": ["tiled_example"], "plugin": plugin, "runs": [{"task": "exactness", "seq-len": [16]}]}, f)
p = run("suite", ["run", "--config", suite, "--out-dir", "{out}/res", "--heads", "2", "--kv-heads", "1"])
check(p.returncode == 0 and p.doc and p.doc["records"][0]["status"] == "pass", f"a suite's top-level plugin key "
      f"(exit {p.returncode}) {p.stderr[-200:]}")


# ---- refusals: exit 2, one message, nothing written ------------------------------------------------
def refused(name, args, want, env=None):
    p = run(name, args + ["--out-dir", "{out}/res"] if args[0] in ("run", "needle") else args, env)
    errs = [l for l in p.stderr.splitlines() if "error:" in l]
    check(p.returncode == 2 and len(errs) == 1 and want in errs[0] and not p.files,
          f"{name}: exit 2, one message with '{want}' (exit {p.returncode}: {p.stderr.strip()[:300]})")


notso = os.path.join(scratch, "not_a_plugin.so")
with open(notso, "w") as f:
    f.write("this is text\n")
refused("wrong_abi", ["run", "--plugin", wrong_abi, "--backends", "naive"], "built for plugin ABI version 99")
refused("abi_v0", ["run", "--plugin", v0, "--backends", "naive"],
        "built for plugin ABI version 0 (the unstable draft, without documents and backward), this attnbench "
        "speaks version 1 only")
refused("no_symbol", ["run", "--plugin", nosym], "no symbol 'attnbench_plugin'")
refused("not_shared_object", ["list", "--plugin", notso], "cannot load")
refused("missing_file", ["needle", "--plugin", os.path.join(scratch, "nope.so")], "no such file")
refused("duplicate", ["run", "--plugin", plugin, "--plugin", dup], "backend 'tiled_example' is already defined")
refused("env_wrong_abi", ["list"], "(from ATTNBENCH_PLUGINS)", {"ATTNBENCH_PLUGINS": wrong_abi})
for cmd in ("attend", "peak", "comm", "report", "compare", "simulate"):
    refused(f"every_subcommand_{cmd}", [cmd, "--plugin", wrong_abi], "ABI version 99")

# ---- exec: backends ---------------------------------------------------------------------------------
p = run("exec_thr", ["run", "--task", "throughput", "--exec-spec", numpy_spec, "--backends", "exec:numpy",
                     "--mask", "none,window", "--out-dir", "{out}/res", *SHAPE])
recs = p.doc["records"] if p.doc else []
ok = p.returncode == 0 and len(recs) == 4
for r in recs:
    mt = r["metrics"]
    ok &= r["status"] == "pass" and r["config"].get("timing") == "wall" and mt["time_s_min"] <= mt["time_s"] <= \
        mt["time_s_max"] and abs(mt["tokens_per_s_max"] * mt["time_s_min"] - r["config"]["seq_len_q"]) < 1e-6 * \
        r["config"]["seq_len_q"] and r["peer"]["kind"] == "exec" and r["peer"]["version"].startswith("numpy ")
check(ok, f"exec:numpy throughput: 4 records, the program's own wall times as time_s/min/max, tokens/s, "
          f"peer numpy <version> (exit {p.returncode}) {p.stderr[-300:]}")
check(not p.leftover, f"temporary directories removed ({p.leftover})")

fail = spec("fails", command=["/bin/sh", "-c", "echo the kernel broke >&2; exit 3", "sh"])
hang = spec("hangs", command=["/bin/sh", "-c", "sleep 60", "sh"], timeout_s=1)
shape = spec("shape", command=["/usr/bin/python3", "-c",
                               "import json,sys,numpy as np; r=json.load(open(sys.argv[2])); "
                               "np.save(r['o'], np.zeros((1,2,3),np.float32)); np.save(r['lse'], np.zeros(3))"])
p = run("exec_bad", ["run", "--task", "exactness", "--exec-spec", fail, "--exec-spec", hang, "--exec-spec", shape,
                     "--backends", "exec:fails,exec:hangs,exec:shape", "--mask", "causal", "--out-dir", "{out}/res",
                     *SHAPE[:8]])
why = {r["backend"]: (r["status"], r["reason"]) for r in p.doc["records"]} if p.doc else {}
check(p.returncode == 1 and why.get("exec:fails", ("",))[0] == "error" and "status 3: the kernel broke" in
      why["exec:fails"][1], f"a failing program: error record with its stderr ({why.get('exec:fails')})")
check(why.get("exec:hangs", ("",))[0] == "error" and "did not finish within 1 s" in why["exec:hangs"][1]
      and p.wall < 30, f"a hanging program: killed after its timeout, error record (run took {p.wall:.1f} s)")
check(why.get("exec:shape", ("",))[0] == "error" and "shape" in why["exec:shape"][1],
      f"wrong output shape: error record ({why.get('exec:shape')})")
nover = spec("nover", command=["/nonexistent/prog"])
with open(nover) as f:
    d = json.load(f)
del d["version"]
with open(nover, "w") as f:
    json.dump(d, f)
refused("exec_no_version", ["list", "--exec-spec", nover], "no \"version\", and `/nonexistent/prog --version` failed")
sys.exit(1 if failed else 0)
