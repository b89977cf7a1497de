#!/usr/bin/python3
# Kept for what tests/test_plan.c cannot reach: ring_cuda.cu's device pointer offsets, leading dimensions and allocation sizes.
"""ring_emulate.py — the host-side index arithmetic of impls/cuda/ring_cuda.cu (ring_cuda_ranks:
ring_cuda, striped_cuda, zigzag_cuda) transcribed into Python on byte buffers, run on the CPU
against a direct float64 attention.

Transcribed as written: comm/layout.c and impls/parallel/dist.c's shard copy (in
tools/layout_emulate.py), the buffer sizes and uploads (K then V in one block of 2·BHkv·kcnt·d bf16), the step
loop (src = (r − s + P) % P, send/receive sizes, cur / 1 − cur), gcomm_shift as cuda_local does it
(recv[r] ← send[r − 1], rb[r] == sb[r − 1] checked: the blocks really travel round the ring, no
rank reads its source's buffer directly), mask_key_range (core/problem.c) for skipping,
the band (the step, skip and band arithmetic is impls/parallel/plan.c's plan_ring_step, which
tests/test_plan.c checks in C), every cuda_flash_call field as built (pointer offsets
q + local_start·d, k/v + local_start·d inside the block, q_ld = nq, kv_ld = kcnt, o_part/lse_part
+ local_start), and merge_kernel's float32 log-sum-exp merge. The flash kernel itself is
tools/ulysses_emulate.py's float64 numpy stand-in for cuda_flash_call, which reads and writes
through the call's pointers and strides, so a wrong offset or ld reads the wrong rows.

Device buffers are uninitialised (random garbage) byte arrays with their "+ 16" pads; every
access is bounds-checked against the size without the pad. bf16 is stored as float16; inputs
are multiples of 1/64 in [−2, 2] (exact in float16), so the tolerance can be tight.

A hand transcription, not the CUDA code, so no CTest case: mirror a change to ring_cuda.cu here
and run it by hand (a few minutes; -j N runs N processes). Exits 1 on any mismatch.
usage: tools/ring_emulate.py [-v] [-j N]
"""
import itertools
import multiprocessing
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in tools/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layout_emulate import (CONTIGUOUS, STRIPED, ZIGZAG, cdiv, dist_shard_copy,  # noqa: E402
                            layout_local_count, layout_max_local_count, layout_pieces)
from ulysses_emulate import PAD, Buf, Fail, flash_call, gathered_vs_reference, reference  # noqa: E402

NONE, CAUSAL, WINDOW = 0, 1, 2
KIND_NAMES = ["contiguous", "striped", "zigzag"]
BF16, F32 = 2, 4  # sizeof(bf16), sizeof(float)


# ---------------------------------------------------------------- core/problem.c, band.h
def first_at_or_after(s, x):
    start, stride = s
    if x <= start:
        return 0
    return cdiv(x - start + stride - 1, stride)


def mask_key_range(m, w, i_lo, i_hi, ks, n):
    a, b = 0, n
    if m != NONE:
        b = min(n, first_at_or_after(ks, i_hi + 1))
        if m == WINDOW:
            a = min(n, first_at_or_after(ks, i_lo - w + 1))
    return a, (b if b > a else a)


def band_floor_div(a, b):
    return cdiv(a, b) if a >= 0 else -cdiv(-a + b - 1, b)


def band_for(a, b, S, w):
    delta = a - b
    q_off = band_floor_div(delta, S)
    return q_off, -band_floor_div(-(w - delta), S) + q_off


# ---------------------------------------------------------------- ring_cuda.cu
def merge_kernel(o_acc, l_acc, o_part, l_part, ld, r0, rows, slabs, d):
    """acc ← acc ⊕ part for rows [r0, r0 + rows) of every slab (ld rows apart), float32."""
    w = np.arange(rows * slabs, dtype=np.int64)
    at = (w // rows) * ld + r0 + w % rows
    lp, la = l_part.read(0, at, np.float32, "merge l_part"), l_acc.read(0, at, np.float32, "merge l_acc")
    cols = np.arange(d)
    op = o_part.read(0, at[:, None] * d + cols, np.float32, "merge o_part")
    oa = o_acc.read(0, at[:, None] * d + cols, np.float32, "merge o_acc")
    live = lp != -np.inf  # the kernel returns at once for lp == −∞
    fresh = live & (la == -np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.maximum(la, lp)
        wa, wp = np.exp(la - m), np.exp(lp - m)
        inv = np.float32(1) / (wa + wp)
        merged = (wa[:, None] * oa + wp[:, None] * op) * inv[:, None]
        new_l = m + np.log(wa + wp)
    new_o = np.where(fresh[:, None], op, merged).astype(np.float32)
    new_l = np.where(fresh, lp, new_l).astype(np.float32)
    if live.any():
        o_acc.write(0, at[live][:, None] * d + cols, new_o[live], np.float32, "merge o_acc")
        l_acc.write(0, at[live], new_l[live], np.float32, "merge l_acc")


def fill_kernel(buf, n, v):
    if n:
        buf.write(0, np.arange(n), np.float32(v), np.float32, "fill")


def cuda_upload(dst, dst_elem, host, n, staging):
    idx = np.arange(n)
    staging.write(0, idx, host[:n].astype(np.float32), np.float32, "upload staging")
    dst.write(dst_elem * BF16, idx, staging.read(0, idx, np.float32).astype(np.float16), np.float16, "upload dst")


def gcomm_shift(P, send, send_bytes, recv, recv_bytes):
    """cuda_local: rank r's recv ← rank r − 1's send; both are (Buf, byte offset 0)."""
    for r in range(P):
        frm = (r - 1 + P) % P
        if recv_bytes[r] != send_bytes[frm]:
            raise Fail(f"gcomm_shift: rank {r} expects {recv_bytes[r]} bytes but rank {frm} sends {send_bytes[frm]}")
        if recv_bytes[r] and recv[r] is not send[frm]:
            idx = np.arange(recv_bytes[r])
            recv[r].write(0, idx, send[frm].read(0, idx, np.uint8, "shift send"), np.uint8, "shift recv")


def ring_cuda_rank_bytes(p, kind, P, rank):
    lq, lk = (kind, p["n_q"], P), (kind, p["n_k"], P)
    d, bh, bhkv = p["d"], p["B"] * p["H"], p["B"] * p["Hkv"]
    nq, kmax = layout_local_count(lq, rank), layout_max_local_count(lk)
    return bh * nq * d * BF16 + 2 * (2 * bhkv * kmax * d * BF16 + 16) + 2 * (bh * nq * d + bh * nq) * F32 + 80


def dist_ring_expect(kind, p, P, elem_bytes):
    lk = (kind, p["n_k"], P)
    row = 2.0 * p["B"] * p["Hkv"] * p["d"] * elem_bytes
    sent, recv = [0.0] * P, [0.0] * P
    for r in range(P if P > 1 else 0):
        sent[r] = row * (p["n_k"] - layout_local_count(lk, (r + 1) % P))
        recv[r] = row * (p["n_k"] - layout_local_count(lk, r))
    return sent, recv


def ring_cuda_ranks(p, kind, P, h, rng):
    """cuda_local driver: first = 0, count = P (local index i = rank r)."""
    L, first = P, 0
    d, BH, BHkv = p["d"], p["B"] * p["H"], p["B"] * p["Hkv"]
    lq, lk = (kind, p["n_q"], P), (kind, p["n_k"], P)
    kmax = layout_max_local_count(lk)
    block_elems = 2 * BHkv * kmax * d
    st = [dict(bytes_sent=0.0, bytes_recv=0.0, blocks_computed=0, blocks_skipped=0) for _ in range(L)]
    b = []
    stage_n = 1
    for i in range(L):
        r = first + i
        nq, nk = layout_local_count(lq, r), layout_local_count(lk, r)
        stage_n = max(stage_n, max(BH * nq * d, BHkv * nk * d))
    stage = Buf(rng, "stage", stage_n * F32, pad=0)
    for i in range(L):
        r = first + i
        nq, nk = layout_local_count(lq, r), layout_local_count(lk, r)
        qn, kn = BH * nq * d, BHkv * nk * d
        bi = dict(q=Buf(rng, f"r{r}.q", qn * BF16), kv=[Buf(rng, f"r{r}.kv0", block_elems * BF16),
                                                     Buf(rng, f"r{r}.kv1", block_elems * BF16)],
                  o=Buf(rng, f"r{r}.o", qn * F32), o_part=Buf(rng, f"r{r}.o_part", qn * F32),
                  lse=Buf(rng, f"r{r}.lse", BH * nq * F32), lse_part=Buf(rng, f"r{r}.lse_part", BH * nq * F32))
        bi["alloc"] = sum(x.logical + PAD for x in [bi["q"], *bi["kv"], bi["o"], bi["o_part"], bi["lse"], bi["lse_part"]])
        bi["bytes"] = ring_cuda_rank_bytes(p, kind, P, r)
        if qn:
            cuda_upload(bi["q"], 0, h["q"][i], qn, stage)
        if kn:  # K then V in one block
            cuda_upload(bi["kv"][0], 0, h["k"][i], kn, stage)
            cuda_upload(bi["kv"][0], kn, h["v"][i], kn, stage)
        fill_kernel(bi["o"], qn, 0.0)
        fill_kernel(bi["lse"], BH * nq, -np.inf)
        b.append(bi)

    q_offset = p["n_k"] - p["n_q"]
    cur = 0
    for s in range(P):
        if s < P - 1:
            send, recv, sb, rb = [None] * L, [None] * L, [0] * L, [0] * L
            for i in range(L):
                r = first + i
                src, next_src = (r - s + P) % P, (r - s - 1 + P) % P
                send[i], recv[i] = b[i]["kv"][cur], b[i]["kv"][1 - cur]
                sb[i] = 2 * BHkv * layout_local_count(lk, src) * d * BF16
                rb[i] = 2 * BHkv * layout_local_count(lk, next_src) * d * BF16
                st[i]["bytes_sent"] += sb[i]
                st[i]["bytes_recv"] += rb[i]
            gcomm_shift(P, send, sb, recv, rb)
        for i in range(L):
            r = first + i
            src = (r - s + P) % P
            qpc, kpc = layout_pieces(lq, r), layout_pieces(lk, src)
            nq, kcnt = layout_local_count(lq, r), layout_local_count(lk, src)
            kblock = b[i]["kv"][cur]
            kblock_off, vblock_off = 0, BHkv * kcnt * d  # elements (bf16) from the block's start
            for qp in qpc:
                for kp in kpc:
                    q_start, q_stride, q_count, q_local = qp
                    k_start, k_stride, k_count, k_local = kp
                    a = q_start + q_offset
                    lo, hi = mask_key_range(p["mask"], p["window"], a, a + q_stride * (q_count - 1),
                                            (k_start, k_stride), k_count)
                    if lo >= hi or q_count == 0:
                        st[i]["blocks_skipped"] += 1
                        continue
                    st[i]["blocks_computed"] += 1
                    q_off, win = band_for(a, k_start, q_stride, p["window"])
                    call = dict(q=(b[i]["q"], (q_local * d) * BF16),
                                k=(kblock, (kblock_off + k_local * d) * BF16),
                                v=(kblock, (vblock_off + k_local * d) * BF16),
                                o=(b[i]["o_part"], (q_local * d) * F32),
                                lse=(b[i]["lse_part"], q_local * F32),
                                n_q=q_count, n_k=k_count, q_ld=nq, kv_ld=kcnt, q_off=q_off, window=win, mask=p["mask"])
                    flash_call(p["B"], p["H"], p["Hkv"], d, 1.0 / np.sqrt(d), call)
                    merge_kernel(b[i]["o"], b[i]["lse"], b[i]["o_part"], b[i]["lse_part"], nq, q_local, q_count, BH, d)
        cur = 1 - cur
    for i in range(L):
        r = first + i
        nq = layout_local_count(lq, r)
        qn, ln = BH * nq * d, BH * nq
        if qn:
            h["o"][i][:] = b[i]["o"].read(0, np.arange(qn), np.float32)
            h["lse"][i][:] = b[i]["lse"].read(0, np.arange(ln), np.float32)
        st[i]["alloc"], st[i]["device_bytes"] = b[i]["alloc"], b[i]["bytes"]
    return st


def run_case(args):
    kind, P, n, n_q, mask, w, Hkv, B, seed = args
    H, d, n_k = 4, 8, n
    p = dict(B=B, H=H, Hkv=Hkv, d=d, n_q=n_q, n_k=n_k, mask=mask, window=w)
    rng = np.random.default_rng(seed)
    q = rng.integers(-128, 129, B * H * n_q * d) / 64.0
    k = rng.integers(-128, 129, B * Hkv * n_k * d) / 64.0
    v = rng.integers(-128, 129, B * Hkv * n_k * d) / 64.0
    lq, lk = (kind, n_q, P), (kind, n_k, P)
    h = dict(q=[], k=[], v=[], o=[], lse=[])
    for r in range(P):
        m, kk = layout_local_count(lq, r), layout_local_count(lk, r)
        for name, whole, outer, cnt, l in (("q", q, B * H, m, lq), ("k", k, B * Hkv, kk, lk), ("v", v, B * Hkv, kk, lk)):
            sh = np.full(outer * cnt * d, np.nan)
            dist_shard_copy(l, r, outer, d, sh, whole, 1)
            h[name].append(sh)
        h["o"].append(np.full(B * H * m * d, np.nan, dtype=np.float32))
        h["lse"].append(np.full(B * H * m, np.nan, dtype=np.float32))
    problems, notes = [], []
    try:
        st = ring_cuda_ranks(p, kind, P, h, rng)
    except Fail as e:
        return [f"exception: {e}"], notes
    ref = reference(q, k, v, B, H, Hkv, n_q, n_k, d, mask, w, 1.0 / np.sqrt(d))
    problems += gathered_vs_reference(lq, h, B * H, d, ref, 2e-5)
    es, er = dist_ring_expect(kind, p, P, 2.0)
    for r in range(P):
        if st[r]["bytes_sent"] != es[r] or st[r]["bytes_recv"] != er[r]:
            problems.append(f"rank {r}: bytes {st[r]['bytes_sent']}/{st[r]['bytes_recv']} != expect {es[r]}/{er[r]}")
        if st[r]["alloc"] != st[r]["device_bytes"]:
            problems.append(f"rank {r}: allocated {st[r]['alloc']} B, ring_cuda_rank_bytes says {st[r]['device_bytes']} B")
    return problems, notes


def main():
    verbose = "-v" in sys.argv
    jobs = int(sys.argv[sys.argv.index("-j") + 1]) if "-j" in sys.argv else (os.cpu_count() or 1)
    masks = [(NONE, 0), (CAUSAL, 0), (WINDOW, 1), (WINDOW, 7), (WINDOW, 30)]
    cases, extra = [], []
    for kind, P, n in itertools.product([CONTIGUOUS, STRIPED, ZIGZAG], range(1, 9), [37, 64, 100, 5]):
        for n_q in sorted({n, n // 3 + 1}):
            for (mask, w), Hkv, B in itertools.product(masks, [4, 1], [1, 2]):
                c = (kind, P, n, n_q, mask, w, Hkv, B, len(cases) + len(extra) + 1)
                # Shards that can be empty (n < P, or n < 2P under zigzag): counted apart
                empty = min(n, n_q) < (2 * P if kind == ZIGZAG else P)
                if n == 5 and not empty:
                    continue
                (extra if empty else cases).append(c)
    with multiprocessing.Pool(jobs) as pool:
        results = pool.map(run_case, cases + extra, chunksize=8)
    n_bad = n_bad_extra = 0
    note_lines = {}
    for c, (problems, notes) in zip(cases + extra, results):
        kind, P, n, n_q, mask, w, Hkv, B, _ = c
        tag = f"{KIND_NAMES[kind]} P={P} n_k={n} n_q={n_q} mask={mask} w={w} Hkv={Hkv} B={B}"
        is_extra = c in extra
        if problems:
            if is_extra:
                n_bad_extra += 1
            else:
                n_bad += 1
            print("FAIL", "(empty shards)" if is_extra else "", tag, "; ".join(problems), flush=True)
        elif verbose:
            print("ok  ", tag)
        for nt in notes:
            note_lines.setdefault(KIND_NAMES[kind], []).append(f"{tag}: {nt}")
    for kname, lines in note_lines.items():
        print(f"note: ring_cuda_rank_bytes differs from the allocations in {len(lines)} rank-cases ({kname}), e.g. {lines[0]}")
    print(f"ring emulation: {len(cases)} cases, " + ("all ok" if not n_bad else f"{n_bad} failed")
          + f"; with empty shards (n < P, zigzag n < 2P): {len(extra)} cases, " + ("all ok" if not n_bad_extra else f"{n_bad_extra} failed"))
    return 1 if n_bad or n_bad_extra else 0


if __name__ == "__main__":
    sys.exit(main())
