#!/usr/bin/env python3
"""dist_table.py — the README's sequence-parallel table, generated from a results file.

usage: dashboards/dist_table.py results/<run_id>.json

One row per distributed throughput record: time per call (median), the critical path (the sum
over steps of the slowest rank's compute), load imbalance measured and analytic, overlap
(1 − exposed / total communication), bytes each rank sent (all ranks equal → one number, else
min–max), and the speed-up T₁ / T over a single-rank `blockwise` record of the same case at one
thread, when the file has one, with the parallel efficiency speed-up / cores: the cores a run
could use are P under mpi (one single-threaded process per rank) but min(P, threads) under
local, where P threads share the machine. Standard library only."""
import json
import os
import statistics
import sys


def key(r):
    c = r["config"]
    return (c["seq_len_k"], c["seq_len_q"], c["mask"], c["heads"], c["kv_heads"], c["head_dim"], c["batch"])


def human_bytes(x):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024 or unit == "GiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024


def main(path):
    if os.path.exists(os.path.realpath(path) + ".partial"):  # core/outfile.h: its set's write stopped
        sys.exit(f"{path}: its write stopped between its files' renames ({path}.partial is beside it): run again")
    with open(path) as f:
        run = json.load(f)
    recs = [r for r in run["records"] if r["task"] == "throughput" and r["status"] == "pass"]
    single = {key(r): r["metrics"]["time_s"] for r in recs
              if r["backend"] == "blockwise" and r["metrics"].get("threads") == 1}
    dist = [r for r in recs if r["ranks"] > 1 or r["per_rank"]]
    if not dist:
        sys.exit(f"{path}: no distributed throughput records")
    c = dist[0]["config"]
    meta = run["run"]
    print(f"run `{meta['run_id']}` ({meta['cpu_model']}, {meta['cores']} cores), transport "
          f"{dist[0]['transport']}, n = {c['seq_len_k']}, {c['mask']}, H = {c['heads']}, H_kv = {c['kv_heads']}, "
          f"d = {c['head_dim']}\n")
    print("| backend | P | time / call | critical path | imbalance (analytic) | overlap | bytes sent per rank "
          "| speed-up vs 1 core | cores | efficiency |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(dist, key=lambda r: (r["ranks"], r["backend"])):
        m, P = r["metrics"], r["ranks"]
        sent = r["per_rank"].get("bytes_sent", [0])
        sent_txt = human_bytes(sent[0]) if min(sent) == max(sent) else f"{human_bytes(min(sent))} – {human_bytes(max(sent))}"
        t1 = single.get(key(r))
        cores = P if r["transport"] == "mpi" else min(P, int(m["threads"]))
        speedup = f"{t1 / m['time_s']:.2f}" if t1 else "–"
        eff = f"{t1 / m['time_s'] / cores:.2f}" if t1 else "–"
        print(f"| {r['backend']} | {P} | {m['time_s']:.3f} s | {m['critical_path_s']:.3f} s | "
              f"{m['imbalance']:.3f} ({m['imbalance_expected']:.3f}) | {m['overlap']:.2f} | {sent_txt} | "
              f"{speedup} | {cores} | {eff} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
