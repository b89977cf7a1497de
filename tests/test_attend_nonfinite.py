#!/usr/bin/env python3
"""test_attend_nonfinite.py — `attnbench attend` with a NaN in K and with Q × 1e10: exit 0, one
warning line naming the first non-finite input (tensor and index) for the NaN, none for the huge
finite Q; rows that see the NaN are NaN in O and LSE, the others and the huge case match a float64
softmax (docs/nonfinite.md). Then the backward (--do): a NaN in K, ∞ in dO, ∞ in V; the non-finite
rows of dQ, dK, dV are a float64 reference's, the finite ones match it.
usage: test_attend_nonfinite.py ATTNBENCH SCRATCH"""
import os, subprocess, sys
import numpy as np

bin_, scratch = sys.argv[1], sys.argv[2]
os.makedirs(scratch, exist_ok=True)
rng = np.random.default_rng(3)
B, H, n, d = 1, 2, 40, 16
q, k, v = (rng.standard_normal((B, H, n, d)).astype(np.float32) for _ in range(3))

def reference(q, k, v):
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
    s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
    with np.errstate(invalid="ignore"):
        m = s.max(-1, keepdims=True)
        p = np.exp(s - m)
        o = np.einsum("bhij,bhjd->bhid", np.where(np.isfinite(s) | np.isnan(s), p, 0), v) / p.sum(-1, keepdims=True)
        return o, (m + np.log(p.sum(-1, keepdims=True)))[..., 0]

fail = 0
for name, (qq, kk), warn in [("nan-k", (q, k.copy()), True), ("q*1e10", (q * np.float32(1e10), k), False)]:
    if name == "nan-k":
        kk[0, 1, 25, 4] = np.nan
    paths = {t: os.path.join(scratch, f"{name}-{t}.npy") for t in "qkvol"}
    for t, a in zip("qkv", (qq, kk, v)):
        np.save(paths[t], a)
    r = subprocess.run([bin_, "attend", "--backend", "blockwise", "--mask", "causal", "--q", paths["q"], "--k", paths["k"],
                        "--v", paths["v"], "--out", paths["o"], "--lse", paths["l"]], capture_output=True, text=True)
    warnings = [l for l in r.stderr.splitlines() if "warning" in l]
    o, lse = np.load(paths["o"]), np.load(paths["l"])
    ro, rl = reference(qq, kk, v)
    bad_ref = ~np.isfinite(ro).all(-1)
    ok = r.returncode == 0 and len(warnings) == (1 if warn else 0)
    if warn:
        ok = ok and paths["k"] in warnings[0] and "[0, 1, 25, 4]" in warnings[0]
    ok = ok and (bad_ref == ~np.isfinite(o).all(-1)).all() and (~np.isfinite(rl) == ~np.isfinite(lse)).all()
    good = ~bad_ref
    ok = ok and bad_ref.any() == warn and np.allclose(o[good], ro[good], atol=1e-5, rtol=1e-5) \
        and np.allclose(lse[good], rl[good], rtol=1e-6, atol=1e-5)
    print(("ok  " if ok else "FAIL"), name, "exit", r.returncode, "warnings", warnings)
    fail |= not ok

def grad_reference(q, k, v, do):
    """float64 forward + backward over the visible (causal) pairs only: a hidden pair contributes
    nothing, a visible one by IEEE arithmetic even at weight 0 (docs/nonfinite.md "The backward")."""
    q, k, v, do = (a.astype(np.float64) for a in (q, k, v, do))
    vis = np.tril(np.ones((n, n), bool))
    sc = 1 / np.sqrt(d)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    with np.errstate(invalid="ignore", over="ignore"):
        for h in range(H):
            for i in range(n):
                js = np.nonzero(vis[i])[0]
                s = q[0, h, i] @ k[0, h, js].T * sc
                m = s.max() if not np.isnan(s).any() else np.nan
                p = np.exp(s - m)
                p = p / p.sum()
                o = p @ v[0, h, js]
                dp = v[0, h, js] @ do[0, h, i]
                ds = p * (dp - do[0, h, i] @ o)
                dv[0, h, js] += p[:, None] * do[0, h, i][None, :]
                dq[0, h, i] = (ds[:, None] * k[0, h, js]).sum(0) * sc
                dk[0, h, js] += ds[:, None] * q[0, h, i][None, :] * sc
    return dq, dk, dv

# The backward: a NaN in K, ∞ in a dO row (one warning naming dO), and ∞ in V; the rows of dQ, dK,
# dV that hold a non-finite value are the reference's, the others match it.
do = rng.standard_normal((B, H, n, d)).astype(np.float32)
for name, (kk, vv, dd), where in [("bwd nan-k", (k.copy(), v, do), "k"), ("bwd inf-do", (k, v, do.copy()), "do"),
                                  ("bwd inf-v", (k, v.copy(), do), "v")]:
    if name == "bwd nan-k":
        kk[0, 1, 25, 4] = np.nan
    elif name == "bwd inf-do":
        dd[0, 0, 17, 3] = -np.inf
    else:
        vv[0, 1, 30, 2] = np.inf
    paths = {t: os.path.join(scratch, f"{name.replace(' ', '-')}-{t}.npy") for t in ["q", "k", "v", "do", "dq", "dk", "dv"]}
    for t, a in zip(["q", "k", "v", "do"], (q, kk, vv, dd)):
        np.save(paths[t], a)
    r = subprocess.run([bin_, "attend", "--backend", "blockwise", "--mask", "causal", "--block-q", "16", "--block-k", "16"]
                       + [a for t in ["q", "k", "v", "do", "dq", "dk", "dv"] for a in ("--" + t, paths[t])],
                       capture_output=True, text=True)
    warnings = [l for l in r.stderr.splitlines() if "warning" in l]
    ok = r.returncode == 0 and len(warnings) == 1 and paths[where] in warnings[0]
    ref = grad_reference(q, kk, vv, dd)
    detail = []
    for t, want in zip(["dq", "dk", "dv"], ref):
        got = np.load(paths[t]) if ok else np.zeros_like(want)
        bad_ref, bad = ~np.isfinite(want).all(-1), ~np.isfinite(got).all(-1)
        good = ~bad_ref
        same = (bad_ref == bad).all()
        close = same and np.allclose(got[good], want[good], rtol=1e-4, atol=1e-5)
        ok = ok and same and close and good.any()
        detail.append(f"{t}: {int(bad_ref.sum())} bad rows, {'same' if same else 'DIFFERENT'}")
    ok = ok and any((~np.isfinite(w)).any() for w in ref)
    print(("ok  " if ok else "FAIL"), name, "exit", r.returncode, "; ".join(detail), "warnings", warnings,
          r.stderr[-300:] if r.returncode else "")
    fail |= not ok
sys.exit(fail)
