#!/usr/bin/python3
"""test_attend_numpy.py — `attnbench attend` against an independent NumPy float64 attention:
every backend × mask on a GQA problem with n_q < n_k, float32 and float64 inputs.
usage: test_attend_numpy.py ATTNBENCH SCRATCH"""
import os
import subprocess
import sys

import numpy as np

binary, scratch = sys.argv[1], sys.argv[2]
os.makedirs(scratch, exist_ok=True)


def reference(q, k, v, mask, window, scale):
    """softmax(q kᵀ·scale + mask) v and log-sum-exp, queries at the end of the keys."""
    b, h, nq, d = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    k = np.repeat(k, h // hkv, axis=1).astype(np.float64)
    v = np.repeat(v, h // hkv, axis=1).astype(np.float64)
    s = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k) * scale
    i = (nk - nq + np.arange(nq))[:, None]
    j = np.arange(nk)[None, :]
    visible = np.ones((nq, nk), bool)
    if mask in ("causal", "window"):
        visible &= j <= i
    if mask == "window":
        visible &= j > i - window
    s = np.where(visible, s, -np.inf)
    m = s.max(-1, keepdims=True)
    p = np.exp(s - m)
    l = p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bhkd->bhqd", p / l, v), (m + np.log(l))[..., 0]


rng = np.random.default_rng(42)
B, H, HKV, NQ, NK, D, W = 2, 6, 2, 77, 300, 40, 50
q = rng.standard_normal((B, H, NQ, D))
k = rng.standard_normal((B, HKV, NK, D))
v = rng.standard_normal((B, HKV, NK, D))
failed = passed = 0
for dtype in (np.float32, np.float64):
    for name, arr in (("q", q), ("k", k), ("v", v)):
        np.save(f"{scratch}/{name}.npy", arr.astype(dtype))
    qf, kf, vf = (np.load(f"{scratch}/{n}.npy") for n in "qkv")
    # The distributed backends run on one rank here, each in its own layout (striped and zigzag
    # used to be declined for a --layout contiguous the user never gave).
    for backend in ("naive", "blockwise", "sliding_window", "ring", "striped", "zigzag", "ulysses"):
        for mask in ("none", "causal", "window"):
            if backend == "sliding_window" and mask != "window":
                continue
            cmd = [binary, "attend", "--backend", backend, "--q", f"{scratch}/q.npy", "--k", f"{scratch}/k.npy",
                   "--v", f"{scratch}/v.npy", "--out", f"{scratch}/o.npy", "--lse", f"{scratch}/lse.npy",
                   "--mask", mask, "--window", str(W), "--scale", "0.2"]
            run = subprocess.run(cmd, capture_output=True, text=True)
            label = f"{np.dtype(dtype).name} {backend} {mask}"
            if run.returncode != 0:
                print(f"FAIL {label}: exit {run.returncode}: {run.stderr.strip()}")
                failed += 1
                continue
            o, lse = np.load(f"{scratch}/o.npy"), np.load(f"{scratch}/lse.npy")
            o_ref, lse_ref = reference(qf, kf, vf, mask, W, 0.2)
            # float64 output only from naive on float64 input: it must agree to rounding.
            want = np.float64 if (dtype == np.float64 and backend == "naive") else np.float32
            tol = 1e-12 if want == np.float64 else 2e-5  # float32: ~160 ulps, far below any real bug
            err = max(np.abs(o - o_ref).max(), np.abs(lse - lse_ref).max())
            ok = o.dtype == want and o.shape == (B, H, NQ, D) and lse.shape == (B, H, NQ) and err <= tol
            print(f"{'ok  ' if ok else 'FAIL'} {label}: dtype {o.dtype} max abs err {err:.3g} (tol {tol:g})")
            passed += ok
            failed += not ok
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
