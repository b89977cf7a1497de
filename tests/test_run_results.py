#!/usr/bin/python3
"""test_run_results.py — `attnbench run` end to end: a small exactness run and a small suite
write results/<run_id>.json and .csv that parse back, match each other, and carry the schema's
fields; the naive backend is refused up front (skipped, with the bytes it would need) where its
score matrix cannot fit; throughput records sit on the roofline measured in the same run (K/V
bytes, bandwidth, bound), --sweep-max doubles n_k and stops with a record, and `attnbench peak`
measures memory bandwidth beside sgemm. usage: test_run_results.py ATTNBENCH SCRATCH SUITES_DIR"""
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
check(doc["schema"] == "attnbench.results/2", "schema attnbench.results/2")
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
# flag would exit 2, so run the smallest one for real with its sizes overridden: 128 tokens, the
# least that holds the nightly grid's four needles and the question).
for suite in sorted(glob.glob(f"{suites}/*.json")):
    r, files = run(["--config", suite, "--seq-len", "128", "--repeats", "1", "--warmup", "0", "--heads", "2",
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


def records_of(files):
    js = [f for f in files if f.endswith(".json")]
    return json.load(open(js[0]))["records"] if js else []


# Throughput on its roofline: K/V bytes are the visible rows read once, the figures derive from
# the time as documented, and with one repeat the fraction of the roofline is exactly the larger
# of the two fractions (the lower roof is the one that binds).
r, files = run(["--task", "throughput", "--backends", "blockwise", "--seq-len", "128", "--q-len", "1,128",
                "--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--mask", "none,window", "--window", "32",
                "--repeats", "1", "--warmup", "0"], f"{scratch}/roof")
check(r.returncode == 0, f"throughput run exits 0 (got {r.returncode}: {r.stderr[-300:]})")
check("GFLOP/s = 4·B·H·d·visible_pairs / time" in r.stderr, "the FLOP formula is printed once")
check(r.stderr.count("visible_pairs") == 1, "the FLOP formula is printed only once")
recs = records_of(files)
check(len(recs) == 4, f"4 throughput records, got {len(recs)}")
for x in recs:
    c, m = x["config"], x["metrics"]
    what = f"throughput n_q={c['seq_len_q']} mask={c['mask']}"
    rows = 32 if c["mask"] == "window" and c["seq_len_q"] == 1 else 128  # the window decode sees 32 keys
    want = 2 * 1 * 2 * rows * 16 * 4
    check(m.get("kv_bytes") == want, f"{what}: kv_bytes {m.get('kv_bytes')} == 2·B·H_kv·rows·d·4 = {want}")
    need = {"kv_gbps", "read_gbps", "frac_of_bandwidth", "intensity", "machine_balance", "bound", "frac_of_roofline"}
    if not check(need <= set(m), f"{what}: roofline metrics present (missing {need - set(m)})"):
        continue
    close = lambda a, b: abs(a - b) <= 1e-9 * max(abs(a), abs(b))
    check(close(m["kv_gbps"], want / m["time_s"] / 1e9), f"{what}: kv_gbps = kv_bytes / time_s")
    check(close(m["intensity"], m["flops"] / want), f"{what}: intensity = flops / kv_bytes")
    check(close(m["machine_balance"], m["sgemm_gflops"] / m["read_gbps"]), f"{what}: balance = sgemm / read")
    check(m["bound"] == (1 if m["intensity"] < m["machine_balance"] else 0), f"{what}: bound {m['bound']}")
    check(close(m["frac_of_roofline"], max(m["frac_of_sgemm"], m["frac_of_bandwidth"])),
          f"{what}: frac_of_roofline {m['frac_of_roofline']} = max(frac_of_sgemm, frac_of_bandwidth)")
    check(x["status"] == "pass" and m["frac_of_bandwidth"] <= 1.1 and m["frac_of_sgemm"] <= 1.1,
          f"{what}: passes under both roofs ({x['status']}: {x.get('reason')})")

# --sweep-max doubles n_k up to the maximum; a time budget the next n would break is a skipped
# record with the projection; a backend's memory refusal is a skipped record too.
r, files = run(["--task", "throughput", "--backends", "blockwise", "--seq-len", "64", "--sweep-max", "300",
                "--heads", "2", "--kv-heads", "2", "--head-dim", "16", "--repeats", "1", "--warmup", "0"],
               f"{scratch}/sweep")
got = [(x["config"]["seq_len_k"], x["status"]) for x in records_of(files)]
check(r.returncode == 0 and got == [(64, "pass"), (128, "pass"), (256, "pass")], f"sweep 64..300: {got}")
r, files = run(["--task", "throughput", "--backends", "blockwise", "--seq-len", "64", "--sweep-max", "4096",
                "--time-budget", "1e-9", "--heads", "2", "--kv-heads", "2", "--head-dim", "16", "--repeats", "1",
                "--warmup", "0"], f"{scratch}/budget")
recs = records_of(files)
got = [(x["config"]["seq_len_k"], x["status"]) for x in recs]
check(r.returncode == 0 and got == [(64, "pass"), (128, "skipped")] and
      "time budget" in recs[1]["reason"] and "projected" in recs[1]["reason"],
      f"sweep stops at the time budget with a skipped record: {got} {recs[-1].get('reason') if recs else ''}")
r, files = run(["--task", "throughput", "--backends", "naive", "--seq-len", "131072", "--sweep-max", "262144",
                "--heads", "1", "--kv-heads", "1", "--head-dim", "8", "--mask", "causal"], f"{scratch}/sweepmem")
recs = records_of(files)
check(r.returncode == 0 and len(recs) == 1 and recs[0]["status"] == "skipped" and "would need" in recs[0]["reason"],
      f"sweep stops at naive's memory refusal: {[(x['config']['seq_len_k'], x['status']) for x in recs]}")
r, files = run(["--task", "throughput", "--seq-len", "64,128", "--sweep-max", "256"], f"{scratch}/sweepbad")
check(r.returncode == 2 and not files, f"--sweep-max with two --seq-len values is a usage error (exit {r.returncode})")

# attnbench peak measures memory bandwidth beside sgemm (small arrays here, for speed).
out = f"{scratch}/peak"
r = subprocess.run([binary, "peak", "--sizes", "256", "--stream-mib", "16", "--repeats", "2", "--out-dir", out],
                   capture_output=True, text=True)
recs = records_of(sorted(glob.glob(f"{out}/*")))
by = {x["backend"]: x for x in recs}
check(r.returncode == 0 and set(by) == {"sgemm", "stream"}, f"peak gives sgemm and stream records: {sorted(by)}")
m = by.get("stream", {}).get("metrics", {})
check(m.get("array_bytes") == 16 << 20, f"--stream-mib 16: array_bytes {m.get('array_bytes')}")
check(all((m.get(k) or 0) > 0 for k in ("stream_triad_gbps", "stream_read_gbps", "machine_balance")),
      f"bandwidth figures are positive: {m}")
check(by.get("stream", {}).get("units", {}).get("stream_read_gbps") == "GB/s", "bandwidth in GB/s")
check("stream_read_gbps" in r.stdout, "the peak table shows the bandwidth")
r = subprocess.run([binary, "peak", "--stream-mib", "0", "--out-dir", out], capture_output=True, text=True)
check(r.returncode == 2 and "--stream-mib" in r.stderr, f"--stream-mib 0 is a usage error (exit {r.returncode})")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
