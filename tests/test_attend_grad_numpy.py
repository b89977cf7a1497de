#!/usr/bin/python3
"""test_attend_grad_numpy.py — `attnbench attend --do ... --dq --dk --dv` against an independent
NumPy float64 backward (the softmax-attention gradient written from its formulas), every CPU
backend (the distributed ones on one rank) × mask on a GQA problem with n_q < n_k, float32 and float64 inputs; a
backend without a backward must be refused with one message and nothing written.
usage: test_attend_grad_numpy.py ATTNBENCH SCRATCH"""
import os
import subprocess
import sys

import numpy as np

binary, scratch = sys.argv[1], sys.argv[2]
os.makedirs(scratch, exist_ok=True)


def gradients(q, k, v, do, mask, window, scale):
    """dQ, dK, dV of sum(O·dO) for O = softmax(q kᵀ·scale + mask) v, queries at the end of the keys."""
    b, h, nq, d = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    g = h // hkv
    q, do = q.astype(np.float64), do.astype(np.float64)
    kr = np.repeat(k, g, axis=1).astype(np.float64)
    vr = np.repeat(v, g, axis=1).astype(np.float64)
    s = np.einsum("bhqd,bhkd->bhqk", q, kr) * scale
    i = (nk - nq + np.arange(nq))[:, None]
    j = np.arange(nk)[None, :]
    visible = np.ones((nq, nk), bool)
    if mask in ("causal", "window"):
        visible &= j <= i
    if mask == "window":
        visible &= j > i - window
    s = np.where(visible, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    dv = np.einsum("bhqk,bhqd->bhkd", p, do)
    dp = np.einsum("bhqd,bhkd->bhqk", do, vr)
    ds = p * (dp - (p * dp).sum(-1, keepdims=True))  # softmax's Jacobian, not the D = rowsum(dO∘O) shortcut
    dq = np.einsum("bhqk,bhkd->bhqd", ds, kr) * scale
    dk = np.einsum("bhqk,bhqd->bhkd", ds, q) * scale
    fold = lambda x: x.reshape(b, hkv, g, nk, d).sum(2)  # GQA: a kv head's gradient sums its group
    return dq, fold(dk), fold(dv)


rng = np.random.default_rng(7)
B, H, HKV, NQ, NK, D, W = 2, 6, 2, 77, 300, 40, 50
arrays = {"q": rng.standard_normal((B, H, NQ, D)), "k": rng.standard_normal((B, HKV, NK, D)),
          "v": rng.standard_normal((B, HKV, NK, D)), "do": rng.standard_normal((B, H, NQ, D))}
failed = passed = 0


def result(ok, label, detail):
    global failed, passed
    print(f"{'ok  ' if ok else 'FAIL'} {label}: {detail}")
    passed += ok
    failed += not ok


outs = [f"{scratch}/{n}.npy" for n in ("o", "dq", "dk", "dv")]
for dtype in (np.float32, np.float64):
    for name, arr in arrays.items():
        np.save(f"{scratch}/{name}.npy", arr.astype(dtype))
    q, k, v, do = (np.load(f"{scratch}/{n}.npy") for n in ("q", "k", "v", "do"))
    for backend in ("naive", "blockwise", "sliding_window", "ring", "striped", "zigzag", "ulysses", "usp"):
        for mask in ("none", "causal", "window"):
            if backend == "sliding_window" and mask != "window":
                continue
            for f in outs:
                if os.path.exists(f):
                    os.remove(f)
            cmd = [binary, "attend", "--backend", backend, "--mask", mask, "--window", str(W), "--scale", "0.2"]
            cmd += sum([[f"--{n}", f"{scratch}/{n}.npy"] for n in ("q", "k", "v", "do", "dq", "dk", "dv")], [])
            run = subprocess.run(cmd, capture_output=True, text=True)
            label = f"{np.dtype(dtype).name} {backend} {mask}"
            if run.returncode != 0:
                result(False, label, f"exit {run.returncode}: {run.stderr.strip()}")
                continue
            got = [np.load(f) for f in outs[1:]]
            want = gradients(q, k, v, do, mask, W, 0.2)
            wdt = np.float64 if (dtype == np.float64 and backend == "naive") else np.float32
            # float32: relative L2 2e-5 (~170 ulps: the gradients' sums run over ≤ 300 terms after a
            # softmax); float64 naive must agree to rounding. A wrong mask, scale or GQA fold is O(1).
            tol = 1e-11 if wdt == np.float64 else 2e-5
            errs = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(got, want)]
            shapes = [a.shape == b.shape and a.dtype == wdt for a, b in zip(got, want)]
            result(all(shapes) and max(errs) <= tol, label,
                   f"rel L2 dq {errs[0]:.3g} dk {errs[1]:.3g} dv {errs[2]:.3g} (tol {tol:g}) dtype {got[0].dtype}")
            ok_o = not os.path.exists(outs[0])
            result(ok_o, label + " no --out", "O not written without --out" if ok_o else "o.npy appeared")

# All or none: a backend without a backward is refused before anything is written.
for f in outs:
    if os.path.exists(f):
        os.remove(f)
cmd = [binary, "attend", "--backend", "naive_blas"] + sum([[f"--{n}", f"{scratch}/{n}.npy"]
                                                        for n in ("q", "k", "v", "do", "dq", "dk", "dv")], [])
cmd += ["--out", outs[0]]
run = subprocess.run(cmd, capture_output=True, text=True)
written = [f for f in outs if os.path.exists(f)]
result(run.returncode != 0 and not written and "backward" in run.stderr and len(run.stderr.strip().splitlines()) == 1,
       "naive_blas declines the backward", f"exit {run.returncode}, stderr {run.stderr.strip()!r}, written {written}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
