#!/usr/bin/python3
"""test_run_results.py — `attnbench run` end to end: a small exactness run and a small suite
write results/<run_id>.json and .csv that parse back, match each other, and carry the schema's
fields; the naive backend is refused up front (skipped, with the bytes it would need) where its
score matrix cannot fit. usage: test_run_results.py ATTNBENCH SCRATCH SUITES_DIR"""
import csv
import glob
import json
import os
import shutil
import subprocess
import sys

binary, scratch, suites = sys.argv[1:4]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
passed = failed = 0


def check(ok, what):
    global passed, failed
    print(f"{'ok  ' if ok else 'FAIL'} {what}")
    passed += bool(ok)
    failed += not ok


def run(args, out):
    r = subprocess.run([binary, "run", "--out-dir", out] + args, capture_output=True, text=True)
    files = sorted(glob.glob(f"{out}/*"))
    return r, files


r, files = run(["--task", "exactness", "--backends", "naive,blockwise,sliding_window", "--seq-len", "64,100",
                "--q-len", "50", "--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--mask", "causal,window",
                "--window", "20"], f"{scratch}/a")
check(r.returncode == 0, f"exactness run exits 0 (got {r.returncode}: {r.stderr[-300:]})")
check(len(files) == 2 and files[0].endswith(".csv") and files[1].endswith(".json"), f"one .csv and one .json: {files}")
doc = json.load(open(files[1]))
check(doc["schema"] == "attnbench.results/1", "schema attnbench.results/1")
run_keys = {"run_id", "started_at", "git_sha", "command_line", "seed", "host", "os", "cpu_model", "cores", "threads",
            "memory_bytes", "blas", "gpu_model", "gpu_driver", "cuda_version", "nccl_version", "mpi_version",
            "compiler", "build_type"}
check(run_keys <= set(doc["run"]), f"run metadata has every field (missing {run_keys - set(doc['run'])})")
recs = doc["records"]
check(len(recs) == 2 * 2 * 3, f"12 records (2 seq × 2 masks × 3 backends), got {len(recs)}")
statuses = {(x["backend"], x["config"]["mask"]): x["status"] for x in recs}
check(statuses[("sliding_window", "causal")] == "skipped", "sliding_window skips causal")
check(all(x["status"] == "pass" for x in recs if not (x["backend"] == "sliding_window" and
                                                    x["config"]["mask"] == "causal")), "every other record passes")
config_keys = {"batch", "heads", "kv_heads", "head_dim", "seq_len_q", "seq_len_k", "mask", "window", "dtype",
               "block_q", "block_k"}
check(all(config_keys <= set(x["config"]) for x in recs), "every record has the config fields")
check(all(set(x["metrics"]) == set(x["units"]) for x in recs), "every metric has a unit")
rows = list(csv.reader(open(files[0])))
header = rows[0]
check(all(len(row) == len(header) for row in rows), "every CSV row has the header's column count")
col = {name: i for i, name in enumerate(header)}
json_values = {(x["backend"], x["config"]["seq_len_k"], x["config"]["mask"], m): v
               for x in recs for m, v in x["metrics"].items()}
# A non-finite metric is null in JSON and an empty field in CSV.
csv_values = {(row[col["backend"]], int(row[col["seq_len_k"]]), row[col["mask"]], row[col["metric"]]):
              float(row[col["value"]]) if row[col["value"]] else None for row in rows[1:] if row[col["metric"]]}
check(json_values == csv_values, "CSV values equal JSON values")
check(not glob.glob(f"{scratch}/a/.*"), "no temporary files left")

# The shipped suites parse and validate (nothing is computed: --help-free dry check via a bad
# flag would exit 2, so run the smallest one for real with its sizes overridden).
for suite in sorted(glob.glob(f"{suites}/*.json")):
    r, files = run(["--config", suite, "--seq-len", "32", "--repeats", "1", "--warmup", "0", "--heads", "2",
                    "--kv-heads", "2"], f"{scratch}/suite")
    check(r.returncode == 0 and len(files) == 2, f"{os.path.basename(suite)} runs (exit {r.returncode}) "
          f"{r.stderr[-300:] if r.returncode else ''}")
    shutil.rmtree(f"{scratch}/suite", ignore_errors=True)

# naive refused up front at 2^17 keys (64 GiB of scores), recorded as skipped with the bytes.
r, files = run(["--task", "memory", "--backends", "naive", "--seq-len", "131072", "--heads", "1", "--kv-heads", "1",
                "--head-dim", "8", "--mask", "causal"], f"{scratch}/b")
doc = json.load(open([f for f in files if f.endswith(".json")][0])) if files else {"records": [{}]}
rec = doc["records"][0]
check(r.returncode == 0 and rec.get("status") == "skipped" and "would need" in (rec.get("reason") or ""),
      f"naive refused up front: {rec.get('status')}: {rec.get('reason')}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
