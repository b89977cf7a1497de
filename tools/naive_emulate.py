#!/usr/bin/env python3
# Kept: naive.cu's column-major cuBLAS operands (order, transposes, leading dimensions) run only on a GPU; no C test can reach them.
"""naive_emulate.py — impls/cuda/naive.cu's cuda_naive_forward transcribed with column-major cuBLAS
semantics (cublasSgemm / cublasGemmEx: element (i, j) of a matrix with leading dimension ld at
X[off + i + j·ld], op = T or N), fed exactly the arguments the code passes, and compared with a
row-major float64 softmax(QKᵀ·s + mask)·V and its LSE.

It checks what a GPU run would otherwise be the first to check: operand order, transposes, m/n/k,
leading dimensions and per-head offsets of both GEMMs, the GQA head map, queries at the end of the
keys (n_q < n_k), the masks and the softmax's LSE, in f32 and with bf16 inputs and probabilities.
A hand transcription, not the code: mirror a change to naive.cu here first. No CTest case (it
cannot see a regression in naive.cu). Run by hand with /usr/bin/python3 (NumPy); exits 1 on the
first mismatch (f32: 1e-4 absolute; bf16: 2e-2, P's rounding to bf16).
usage: tools/naive_emulate.py
"""
import numpy as np, itertools, sys

def gemm(transa, transb, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off, ldc):
    # column-major: element (i,j) of X with ld at X[off + i + j*ld]
    def mat(X, off, rows, cols, ld):
        idx = off + np.arange(rows)[:, None] + np.arange(cols)[None, :] * ld
        return X[idx]
    Am = mat(A, a_off, k if transa == 'T' else m, m if transa == 'T' else k, lda)
    Bm = mat(B, b_off, n if transb == 'T' else k, k if transb == 'T' else n, ldb)
    opA = Am.T if transa == 'T' else Am
    opB = Bm.T if transb == 'T' else Bm
    assert lda >= (k if transa == 'T' else m) and ldb >= (n if transb == 'T' else k) and ldc >= m
    R = alpha * (opA.astype(np.float64) @ opB.astype(np.float64))
    idx = c_off + np.arange(m)[:, None] + np.arange(n)[None, :] * ldc
    C[idx] = (R + beta * C[idx]) if beta else R

def bf16(x):
    x = np.asarray(x, np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return r.view(np.float32)

def visible(mask, w, i, j):
    return mask == 0 or (j <= i and (mask != 2 or j > i - w))

def softmax_rows(S, P16, lse, lse_off, n_q, n_k, q_off, mask, w, scale):
    for r in range(n_q):
        i = q_off + r
        s = S[r*n_k:(r+1)*n_k].astype(np.float32)
        vis = np.array([visible(mask, w, i, j) for j in range(n_k)])
        x = np.where(vis, s * np.float32(scale), -np.inf).astype(np.float32)
        m = x.max()
        l = np.float32(0) if m == -np.inf else np.exp(x - m).sum(dtype=np.float32)
        inv = 1/l if l > 0 else 0
        pj = np.zeros(n_k, np.float32) if m == -np.inf else (np.exp(x - m) * inv).astype(np.float32)
        if P16 is not None: P16[r*n_k:(r+1)*n_k] = bf16(pj)
        else: S[r*n_k:(r+1)*n_k] = pj
        lse[lse_off + r] = m + np.log(l) if l > 0 else -np.inf

def naive_cuda(B, H, Hkv, d, n_q, n_k, mask, w, q, k, v, bf):
    scale = 1/np.sqrt(d)
    if bf: q, k, v = bf16(q), bf16(k), bf16(v)
    q = q.ravel().astype(np.float32); k = k.ravel().astype(np.float32); v = v.ravel().astype(np.float32)
    o = np.zeros(B*H*n_q*d, np.float32); lse = np.zeros(B*H*n_q, np.float32)
    S = np.zeros(n_q*n_k, np.float32); P16 = np.zeros(n_q*n_k, np.float32) if bf else None
    M, N, Kd = n_k, n_q, d
    for bh in range(B*H):
        b = bh // H; kvh = (bh % H) // (H // Hkv)
        q_at = bh*n_q*d; kv_at = (b*Hkv + kvh)*n_k*d
        gemm('T', 'N', M, N, Kd, 1.0, k, kv_at, Kd, q, q_at, Kd, 0.0, S, 0, M)
        softmax_rows(S, P16, lse, bh*n_q, n_q, n_k, n_k - n_q, mask, w, scale)
        gemm('N', 'N', Kd, N, M, 1.0, v, kv_at, Kd, P16 if bf else S, 0, M, 0.0, o, q_at, Kd)
    return o.reshape(B, H, n_q, d), lse.reshape(B, H, n_q)

def reference(B, H, Hkv, d, n_q, n_k, mask, w, q, k, v):
    scale = 1/np.sqrt(d); g = H // Hkv
    O = np.zeros((B, H, n_q, d)); L = np.zeros((B, H, n_q))
    for b in range(B):
        for h in range(H):
            S = q[b, h].astype(np.float64) @ k[b, h//g].T.astype(np.float64) * scale
            i = (n_k - n_q) + np.arange(n_q)[:, None]; j = np.arange(n_k)[None, :]
            vis = np.ones_like(S, bool) if mask == 0 else (j <= i) & ((j > i - w) if mask == 2 else True)
            S = np.where(vis, S, -np.inf); m = S.max(1, keepdims=True)
            P = np.exp(S - m); l = P.sum(1, keepdims=True)
            O[b, h] = P / l @ v[b, h//g]; L[b, h] = (m + np.log(l))[:, 0]
    return O, L

rng = np.random.default_rng(1)
worst = {}
for (B, H, Hkv, d, n_k, n_q, mask, w, bf) in itertools.product([2], [4], [4, 2, 1], [64, 40], [7, 65, 130], [1, None, 'third'], [0, 1, 2], [1, 3, 39], [0, 1]):
    if mask != 2 and w != 3: continue
    nq = n_k if n_q is None else (max(1, n_k//3) if n_q == 'third' else n_q)
    q = rng.standard_normal((B, H, nq, d)).astype(np.float32)
    k = rng.standard_normal((B, Hkv, n_k, d)).astype(np.float32)
    v = rng.standard_normal((B, Hkv, n_k, d)).astype(np.float32)
    o, l = naive_cuda(B, H, Hkv, d, nq, n_k, mask, w, q, k, v, bf)
    qr, kr, vr = (bf16(q), bf16(k), bf16(v)) if bf else (q, k, v)
    O, L = reference(B, H, Hkv, d, nq, n_k, mask, w, qr, kr, vr)
    e = np.abs(o - O).max(); el = np.abs(l - L).max()
    key = ('bf16' if bf else 'f32')
    worst[key] = max(worst.get(key, 0), e, el)
    lim = 2e-2 if bf else 1e-4
    if e > lim or el > 1e-4: print('MISMATCH', B, H, Hkv, d, n_k, nq, mask, w, bf, e, el); sys.exit(1)
print('all cases match; worst abs err', worst)
