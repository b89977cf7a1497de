#!/usr/bin/python3
"""test_comm_results.py — `attnbench comm` writes results files of the one schema through
results.c (task comm, one record per operation and message size, JSON and CSV that agree), and
`attnbench report` and `attnbench compare` read them like any other results file, with compare's
exit codes for equal, regressed, improved and flipped comm records.
usage: test_comm_results.py ATTNBENCH SCRATCH"""
import csv
import glob
import json
import os
import shutil
import subprocess
import sys

binary, scratch = sys.argv[1:3]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
passed = failed = 0


def check(ok, what):
    global passed, failed
    print(f"{'ok  ' if ok else 'FAIL'} {what}")
    passed += bool(ok)
    failed += not ok


def attnbench(*args):
    return subprocess.run([binary, *args], capture_output=True, text=True)


def close(a, b):
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


out = f"{scratch}/a"
r = attnbench("comm", "--ranks", "3", "--sizes", "8,4096", "--repeats", "3", "--warmup", "1", "--out-dir", out)
check(r.returncode == 0, f"comm exits 0 (got {r.returncode}: {r.stderr[-300:]})")
files = sorted(glob.glob(f"{out}/*"))
check(len(files) == 2 and files[0].endswith(".csv") and files[1].endswith(".json") and
      os.path.basename(files[0])[:-4] == os.path.basename(files[1])[:-5], f"one <run_id>.csv and .json: {files}")
check(not glob.glob(f"{out}/.*"), "no temporary files left")
doc = json.load(open(files[1]))
check(doc["schema"] == "attnbench.results/2", "schema attnbench.results/2")
check(doc["run"]["run_id"] == os.path.basename(files[1])[:-5] and doc["run"]["command_line"].startswith("comm "),
      f"run metadata names the run and the command ({doc['run']['command_line']})")
recs = doc["records"]
ident = [(x["task"], x["backend"], x["config"].get("message_bytes")) for x in recs]
check(ident == [("comm", "pingpong", 8), ("comm", "alltoall", 8), ("comm", "pingpong", 4096), ("comm", "alltoall", 4096)],
      f"one record per operation and size, in size order: {ident}")
check(all(x["transport"] == "local" and x["ranks"] == 3 and x["device"] == "cpu" and x["layout"] == "none" and
          x["status"] == "pass" and x["config"]["repeats"] == 3 and x["config"]["warmup"] == 1 for x in recs),
      "transport local, 3 ranks, 3 timed iterations after 1 warm-up, all pass")
want = {"pingpong": ("latency_s", "p2p_gbps"), "alltoall": ("time_s", "algbw_gbps")}
for x in recs:
    t, bw = want[x["backend"]]
    m, u, size = x["metrics"], x["units"], x["config"]["message_bytes"]
    names = {"message_bytes"} | {n + s for n in (t, bw) for s in ("", "_min", "_max")}
    check(set(m) == names and set(u) == names, f"{x['backend']} {size} B: metrics {sorted(m)}")
    check(u[t] == "s" and u[bw] == "GB/s" and u["message_bytes"] == "B" and m["message_bytes"] == size,
          f"{x['backend']} {size} B: units s, GB/s, B")
    check(0 < m[t + "_min"] <= m[t] <= m[t + "_max"], f"{x['backend']} {size} B: {t} min ≤ median ≤ max")
    # Each iteration's bandwidth is its bytes over its time: the fastest is the best.
    moved = size * (x["ranks"] - 1 if x["backend"] == "alltoall" else 1)
    check(close(m[bw + "_max"], moved / m[t + "_min"] / 1e9) and close(m[bw + "_min"], moved / m[t + "_max"] / 1e9),
          f"{x['backend']} {size} B: {bw} = bytes / {t} per iteration")

rows = list(csv.reader(open(files[0])))
header = attnbench("run", "--task", "exactness", "--backends", "naive", "--seq-len", "16", "--heads", "1",
                   "--kv-heads", "1", "--head-dim", "4", "--out-dir", f"{scratch}/run")
run_csv = glob.glob(f"{scratch}/run/*.csv")
check(header.returncode == 0 and len(run_csv) == 1 and rows[0] == next(csv.reader(open(run_csv[0]))),
      "the CSV has the columns of every other results file")
col = {name: i for i, name in enumerate(rows[0])}
csv_vals = [(row[col["task"]], row[col["backend"]], row[col["repeats"]], row[col["metric"]], float(row[col["value"]]))
            for row in rows[1:]]
json_vals = [(x["task"], x["backend"], "3", k, v) for x in recs for k, v in x["metrics"].items()]
check(csv_vals == json_vals, "CSV rows equal the JSON metrics, record by record")

# A second run in the same second gets its own files.
r2 = attnbench("comm", "--sizes", "8", "--repeats", "3", "--out-dir", out)
check(r2.returncode == 0 and len(glob.glob(f"{out}/*.json")) == 2, "a second run writes a second file pair")

# report reads it like any results file.
page = f"{scratch}/index.html"
r = attnbench("report", files[1], "--out", page)
check(r.returncode == 0 and os.path.getsize(page) > 0, f"report exits 0 and writes the page ({r.stderr[-200:]})")
browser = shutil.which("chromium") or shutil.which("chromium-browser")
if browser:
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={scratch}/profile",
                          "--virtual-time-budget=10000", "--window-size=1280,4000", "--dump-dom", f"file://{page}"],
                         capture_output=True, text=True, timeout=120).stdout
    status = dom[dom.find('<div id="status"'):].split("</div>")[0]
    check('data-ok="1"' in status and '"canvases":2' in status, f"the page draws the 2 comm charts: {status}")
else:
    print("skip Chromium is not installed: the page is not rendered")

# compare: the gate, on comm records.
def compare(new):
    r = attnbench("compare", files[1], new)
    return r.returncode, r.stdout


def doctored(name, edit):
    d = json.load(open(files[1]))
    for x in d["records"]:
        edit(x)
    path = f"{scratch}/{name}.json"
    json.dump(d, open(path, "w"))
    return path


def shift(backend, size, metric, up):
    """Moves a metric's median, min and max together until the new spread lies wholly beyond the
    old one (2× the old max, or half the old min): the gate ignores moves within the spreads."""
    def edit(x):
        if x["backend"] == backend and x["config"]["message_bytes"] == size:
            m = x["metrics"]
            f = 2 * m[metric + "_max"] / m[metric + "_min"] if up else 0.5 * m[metric + "_min"] / m[metric + "_max"]
            for s in ("", "_min", "_max"):
                m[metric + s] *= f
    return edit


rc, text = compare(files[1])
check(rc == 0 and "4 matched record(s): 0 status regression(s), 0 timed metric(s) worse, 0 better" in text and
      "comm pingpong 4096 B local P=3" in text, f"compare with itself: exit {rc}, 4 matched, named by size")
rc, text = compare(doctored("slower", shift("pingpong", 4096, "latency_s", True)))
check(rc == 1 and "REGRESSED" in text, f"a longer ping-pong latency: exit {rc} (want 1), REGRESSED")
rc, text = compare(doctored("faster", shift("alltoall", 8, "time_s", False)))
check(rc == 0 and "1 better" in text, f"a shorter all-to-all time: exit {rc} (want 0), improved")
rc, text = compare(doctored("lower_bw", shift("alltoall", 4096, "algbw_gbps", False)))
check(rc == 1 and "REGRESSED" in text, f"a lower all-to-all bandwidth: exit {rc} (want 1), REGRESSED")
rc, text = compare(doctored("flipped", lambda x: x.update(status="error") if x["backend"] == "alltoall" and
                            x["config"]["message_bytes"] == 8 else None))
check(rc == 1 and "1 status regression" in text, f"a record that errors: exit {rc} (want 1)")
rc, text = compare(next(f for f in glob.glob(f"{out}/*.json") if f != files[1]))
check(rc == 0 and "only in BASE: comm pingpong 4096 B local P=3" in text, f"another rank count matches nothing: exit {rc}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
