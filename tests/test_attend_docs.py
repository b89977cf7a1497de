#!/usr/bin/env python3
"""test_attend_docs.py — `attend --cu-seqlens` end to end, without NumPy: float64 .npy inputs
written by hand, offsets as int32 and int64 (an empty document included), causal and window,
n_q = n_k and n_q < n_k, against attention computed here document by document in Python."""
import importlib.util
import math
import os
import random
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("rc", os.path.join(HERE, "campaign", "run_campaign.py"))
rc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rc)

binary, tmp = sys.argv[1], sys.argv[2]
os.makedirs(tmp, exist_ok=True)
random.seed(7)
H, HK, D, N = 2, 1, 8, 50
OFF = [0, 1, 20, 20, 45, 50]
failed = 0


def write(name, shape, values, descr="<f8"):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(rc.npy_bytes(shape, descr, values=values))
    return path


def read_f64(path):
    raw = open(path, "rb").read()
    hl = struct.unpack("<H", raw[8:10])[0]
    body = raw[10 + hl:]
    return struct.unpack("<%dd" % (len(body) // 8), body)


for mask, window, nq, descr in (("causal", 0, N, "<i4"), ("window", 7, N, "<i8"), ("causal", 0, 17, "<i8"),
                                ("none", 0, 12, "<i4")):
    Q = [random.uniform(-1, 1) for _ in range(H * nq * D)]
    K = [random.uniform(-1, 1) for _ in range(HK * N * D)]
    V = [random.uniform(-1, 1) for _ in range(HK * N * D)]
    args = [binary, "attend", "--backend", "naive", "--mask", mask, "--out", os.path.join(tmp, "o.npy"),
            "--q", write("q.npy", (1, H, nq, D), Q), "--k", write("k.npy", (1, HK, N, D), K),
            "--v", write("v.npy", (1, HK, N, D), V)]
    if descr == "<i4":  # npy_bytes scales int32 values by 8
        args += ["--cu-seqlens", write("off.npy", (len(OFF),), [o / 8 for o in OFF], "<i4")]
    else:
        path = os.path.join(tmp, "off.npy")
        h = ("{'descr': '<i8', 'fortran_order': False, 'shape': (%d,), }" % len(OFF)).encode()
        h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
        with open(path, "wb") as f:
            f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + struct.pack("<%dq" % len(OFF), *OFF))
        args += ["--cu-seqlens", path]
    if window:
        args += ["--window", str(window)]
    r = subprocess.run(args, capture_output=True, text=True)
    name = "attend --cu-seqlens %s mask %s n_q %d" % (descr, mask, nq)
    if r.returncode != 0:
        print("FAIL %s: exit %d: %s" % (name, r.returncode, r.stderr.strip()))
        failed += 1
        continue
    O = read_f64(os.path.join(tmp, "o.npy"))
    err = 0.0
    for h in range(H):
        for r_ in range(nq):
            i = N - nq + r_
            doc = max(t for t in range(len(OFF) - 1) if OFF[t] <= i < OFF[t + 1])
            lo, hi = OFF[doc], OFF[doc + 1]
            if mask != "none":
                hi = i + 1
            if mask == "window":
                lo = max(lo, i - window + 1)
            s = [sum(Q[(h * nq + r_) * D + c] * K[j * D + c] for c in range(D)) / math.sqrt(D) for j in range(lo, hi)]
            m = max(s)
            p = [math.exp(x - m) for x in s]
            z = sum(p)
            for c in range(D):
                want = sum(p[t] * V[(lo + t) * D + c] for t in range(len(p))) / z
                err = max(err, abs(want - O[(h * nq + r_) * D + c]))
    ok = err < 1e-12  # float64 both sides: only rounding order differs
    print("%s %s: max |error| %.3g" % ("ok  " if ok else "FAIL", name, err))
    failed += not ok
sys.exit(1 if failed else 0)
