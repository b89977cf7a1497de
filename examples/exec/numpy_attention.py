#!/usr/bin/env python3
"""numpy_attention.py — an attnbench exec: backend in NumPy (docs/exec-protocol.md), the example of
the protocol: `attnbench run --exec-spec examples/exec/numpy.json --backends exec:numpy ...`.

  numpy_attention.py --version         prints its version (the records' peer version)
  numpy_attention.py forward REQ.json  reads Q, K, V .npy, writes O and LSE .npy
  numpy_attention.py time REQ.json     makes Q, K, V from the request's seed, times warm-up + repeats
                                       calls, prints one JSON line {"seconds": [...], "timing": "wall"}
Computes in the request's dtype (float32 for f32, float64 for f64), one (batch, head) at a time.
"""
import json
import sys
import time

import numpy as np


def attention(req, q, k, v):
    """O (B, H, n_q, d) and LSE (B, H, n_q) under the request's mask at global positions."""
    B, H, Hkv, nq, nk = req["batch"], req["heads"], req["kv_heads"], req["n_q"], req["n_k"]
    dt = np.float64 if req["dtype"] == "f64" else np.float32
    i = req["q_start"] + np.arange(nq)[:, None]  # query positions
    j = req["k_start"] + np.arange(nk)[None, :]  # key positions
    if req["mask"] == "none":
        visible = np.ones((nq, nk), dtype=bool)
    else:
        visible = j <= i
        if req["mask"] == "window":
            visible &= j > i - req["window"]
    o = np.zeros((B, H, nq, q.shape[-1]), dtype=dt)
    lse = np.full((B, H, nq), -np.inf, dtype=dt)
    scale = dt(req["scale"])
    for b in range(B):
        for h in range(H):
            kh = h // (H // Hkv)  # GQA: query head h reads kv head h / (H / H_kv)
            s = np.where(visible, (q[b, h] @ k[b, kh].T) * scale, dt(-np.inf))
            m = s.max(axis=1, keepdims=True)
            m = np.where(np.isfinite(m), m, dt(0))
            p = np.exp(s - m)
            l = p.sum(axis=1, keepdims=True)
            seen = l[:, 0] > 0
            o[b, h][seen] = (p @ v[b, kh])[seen] / l[seen]
            lse[b, h][seen] = (m + np.log(l))[seen, 0]
    return o, lse


def main(argv):
    if argv == ["--version"]:
        print(f"numpy {np.__version__}")
        return 0
    if len(argv) != 2 or argv[0] not in ("forward", "time"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        req = json.load(f)
    dt = np.float64 if req["dtype"] == "f64" else np.float32
    if argv[0] == "forward":
        q, k, v = (np.load(req[x]).astype(dt, copy=False) for x in ("q", "k", "v"))
        o, lse = attention(req, q, k, v)
        np.save(req["o"], o)
        np.save(req["lse"], lse)
        return 0
    rng = np.random.default_rng(req["seed"])
    d = req["head_dim"]
    q = rng.standard_normal((req["batch"], req["heads"], req["n_q"], d)).astype(dt)
    k = rng.standard_normal((req["batch"], req["kv_heads"], req["n_k"], d)).astype(dt)
    v = rng.standard_normal((req["batch"], req["kv_heads"], req["n_k"], d)).astype(dt)
    for _ in range(req["warmup"]):
        attention(req, q, k, v)
    secs = []
    for _ in range(req["repeats"]):
        t0 = time.perf_counter()
        attention(req, q, k, v)
        secs.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": secs, "timing": "wall"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
