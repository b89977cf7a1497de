#!/usr/bin/env python3
"""report_dom.py — reads the DOM of a rendered `attnbench report` page (Chromium --dump-dom, on
stdin) for tests/test_report.sh. Prints what it found; exit 1 when a check fails.

  cycle VIEW:CANVASES:TABLES ...  the hidden #status of a page opened with #cycle: ok, no error,
                                  each VIEW visited with at least that many charts and tables, none
                                  of zero size, no chart with two series of one colour
  cross FIXTURES [gpu]            the cross-hardware table of hw-cpu.json + hw-gpu.json: one row per
                                  case both machines measured, the GPU's ratio = its tokens/s ÷ the CPU's
                                  (gpu: the page opened with the GPU as baseline, the CPU's ratio)
  peers FIXTURES                  each torch_sdpa record beside blockwise_cuda, ratio = ours ÷ peer
  roofline FIXTURES               CPU records with their frac_of_sgemm, GPU ones "no roof measured"
  history FIXTURES                the nightly fixtures' gate: night 3 fails, nights 2 and 4 pass"""
import html
import html.parser
import json
import re
import sys


class Cells(html.parser.HTMLParser):
    """Every <td>/<th> with its attributes and text, by table id and row."""

    def __init__(self):
        super().__init__()
        self.tables, self.table, self.row, self.cell = {}, None, None, None
        self.status_attrs, self.in_status, self.status = None, False, ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.table = self.tables.setdefault(a.get("id") or a.get("aria-label") or str(len(self.tables)), [])
        elif tag == "tr" and self.table is not None:
            self.row = {"attrs": a, "cells": []}
            self.table.append(self.row)
        elif tag in ("td", "th") and self.row is not None:
            self.cell = {"attrs": a, "text": ""}
            self.row["cells"].append(self.cell)
        elif tag == "div" and a.get("id") == "status":
            self.status_attrs, self.in_status = a, True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cell = None
        elif tag == "table":
            self.table = self.row = None
        elif tag == "div":
            self.in_status = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell["text"] += data
        if self.in_status:
            self.status += data


def fail(msg):
    print(msg)
    sys.exit(1)


def close(a, b):
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def load(fx, name):
    return json.load(open(f"{fx}/{name}"))["records"]


def shape(r):
    c = r["config"]
    return (c["head_dim"], c["seq_len_k"], c["mask"])


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    p = Cells()
    p.feed(sys.stdin.read())
    if p.status_attrs is None:
        fail("no #status element: the page did not load")
    st = json.loads(html.unescape(p.status)) if p.status.startswith("{") else None
    if mode == "cycle":
        if "hidden" not in p.status_attrs:
            fail("the status element is visible")
        if not st or p.status_attrs.get("data-ok") != "1" or st["errors"]:
            fail(f"page not ok: {p.status_attrs.get('data-ok')} {p.status[:300]}")
        for want in args:
            v, nc, nt = want.split(":")
            got = st["visited"].get(v)
            if not got or got["canvases"] < int(nc) or got["tables"] < int(nt) or got["zero_size"] or got["colour_repeats"]:
                fail(f"view {v}: {got} (want ≥ {nc} charts, ≥ {nt} tables, none empty, no colour twice)")
        print(" ".join(f"{v}={d['canvases']}c/{d['tables']}t" for v, d in st["visited"].items()))
        return
    fx = args[0]
    if not st or st["view"] != mode or list(st["visited"]) != [mode] or st["errors"]:
        fail(f"#{mode} did not open the {mode} view alone: {p.status[:300]}")
    cpu, gpu = load(fx, "hw-cpu.json"), load(fx, "hw-gpu.json")
    tput = lambda recs, be: {shape(r): r["metrics"]["tokens_per_s"] for r in recs
                             if r["task"] == "throughput" and r["backend"] == be and r["status"] == "pass"}
    if mode == "cross":  # baseline: the CPU (the page's default), or the GPU with a second argument "gpu"
        gpu_base = len(args) > 1 and args[1] == "gpu"
        rows = p.tables.get("cross-table", [])[1:]
        c, g = tput(cpu, "blockwise"), tput(gpu, "blockwise_cuda")
        want = {k: (c[k] / g[k] if gpu_base else g[k] / c[k]) for k in c if k in g}
        got = {}
        for row in rows:
            m = re.search(r"d=(\d+) n=(\d+) (\w+)", row["attrs"]["data-case"])
            for cell in row["cells"]:
                machine = cell["attrs"].get("data-machine", "")
                if machine and ("H200" in machine) != gpu_base:
                    got[(int(m[1]), int(m[2]), m[3])] = float(cell["attrs"]["data-ratio"])
        if len(rows) != len(want) or set(got) != set(want) or not all(close(got[k], want[k]) for k in want):
            fail(f"cross: {len(rows)} rows, got {got}, want {want}")
        print(f"{len(rows)} cases paired CPU ↔ GPU (blockwise ↔ blockwise_cuda), {'CPU/GPU' if gpu_base else 'GPU/CPU'} "
              f"{min(want.values()):.3g}–{max(want.values()):.3g}×, each as the files say")
    elif mode == "peers":
        rows = p.tables.get("peers-table", [])[1:]
        ours = tput(gpu, "blockwise_cuda")
        want = sorted(ours[shape(r)] / r["metrics"]["tokens_per_s"] for r in gpu if r["backend"] == "torch_sdpa")
        got = sorted(float(row["cells"][-1]["attrs"]["data-ratio"]) for row in rows)
        if len(got) != len(want) or not all(close(a, b) for a, b in zip(got, want)):
            fail(f"peers: got {got}, want {want}")
        print(f"{len(rows)} peer records beside blockwise_cuda, ours/peer {min(got):.2f}–{max(got):.2f}")
    elif mode == "roofline":
        rows = p.tables.get("roofline-table", [])[1:]
        noroof = [r for r in rows if any(c["text"] == "no roof measured" for c in r["cells"])]
        gpu_n = sum(r["task"] == "throughput" and r["status"] == "pass" for r in gpu)
        fracs = sorted(round(r["metrics"]["frac_of_sgemm"], 12) for r in cpu if r["task"] == "throughput")
        shown = sorted(float(r["cells"][6]["text"]) for r in rows if r not in noroof)
        if len(noroof) != gpu_n or len(shown) != len(fracs) or \
                not all(abs(a - b) <= 5e-3 * b for a, b in zip(shown, fracs)):
            fail(f"roofline: {len(noroof)} without a roof (want {gpu_n}), shown {shown}, want {fracs}")
        print(f"{len(shown)} CPU records with their fraction of sgemm, {len(noroof)} GPU records 'no roof measured'")
    elif mode == "history":
        gates = {}
        for t in (v for k, v in p.tables.items() if k.startswith("gate table")):
            for row in t[1:]:
                g = [c["attrs"].get("data-gate") for c in row["cells"] if c["attrs"].get("data-gate")]
                gates[row["attrs"]["data-run"][-1]] = g[0] if g else None
        if gates != {"1": None, "2": "pass", "3": "fail", "4": "pass"}:
            fail(f"history: {gates}")
        print("nights 1–4: first, pass, FAIL, pass")
    else:
        fail("unknown mode " + mode)


if __name__ == "__main__":
    main()
