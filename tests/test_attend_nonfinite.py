#!/usr/bin/env python3
"""test_attend_nonfinite.py — `attnbench attend` with a NaN in K and with Q × 1e10: exit 0, one
warning line naming the first non-finite input (tensor and index) for the NaN, none for the huge
finite Q; rows that see the NaN are NaN in O and LSE, the others and the huge case match a float64
softmax (docs/nonfinite.md). usage: test_attend_nonfinite.py ATTNBENCH SCRATCH"""
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
sys.exit(fail)
