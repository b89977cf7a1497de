#!/usr/bin/env python3
# Kept: flash.cu's lane, ldmatrix and mma fragment arithmetic runs only on a GPU; no C test can reach it.
"""flash_emulate.py — impls/cuda/flash.cu's flash_fwd transcribed lane by lane into Python, with
ldmatrix (plain and .trans) and mma.sync m16n8k16 implemented from the PTX ISA's fragment tables,
and run in double precision (no bf16 rounding) against a direct softmax(QKᵀ·s + mask)·V.

It checks the kernel's index arithmetic — swizzle, ldmatrix addresses, fragment reuse of S as P,
tile range and edge masking, online softmax, GQA, queries at the end of the keys, LSE in natural
log, slabs q_ld / kv_ld rows apart read and written through interior pointers (the distributed
backends' pieces of a shard), query offsets below zero (rows that see no key: O = 0, LSE = −∞) —
where no GPU is at hand. Buffers are filled with NaN outside the rows the kernel may touch, so a
stray read shows as NaN and a stray write as a changed sentinel. It is a hand transcription, not
the kernel: it cannot see a regression in flash.cu, so it is no CTest case. Run it by hand (about
a minute) after changing the kernel's indexing, and mirror the change here first. Exits 1 if any
case differs by 1e-9 or writes outside its rows.
usage: tools/flash_emulate.py
"""
import math, random, sys

BR = BC = 64
WARPS = 4
INF = float("inf")

def swz(D, row, col):
    return row * D + (((col >> 3) ^ (row & 7)) << 3)

def cdiv(a, b):
    """C integer division (truncates toward zero; Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q

def load_tile(D, tile, src, base, row0, n):
    """src + base is the kernel's pointer (Q, K or V of one slab)."""
    CH = D // 8
    for idx in range(64 * CH):
        row, col = idx // CH, (idx % CH) * 8
        valid = row0 + row < n
        for e in range(8):
            tile[swz(D, row, col) + e] = src[base + (row0 + row) * D + col + e] if valid else 0.0

def ldsm(smem, addr, trans=False):
    """addr(lane) -> element index of the 8-element row lane supplies. Returns r[lane][i] = (lo, hi)."""
    mats = []
    for i in range(4):
        m = []
        for rr in range(8):
            a = addr(i * 8 + rr)
            m.append([smem[a + c] for c in range(8)])
        mats.append(m)
    out = []
    for lane in range(32):
        g, t = lane // 4, lane % 4
        regs = []
        for i in range(4):
            M = mats[i]
            if not trans:
                regs.append((M[g][2 * t], M[g][2 * t + 1]))
            else:
                regs.append((M[2 * t][g], M[2 * t + 1][g]))
        out.append(regs)
    return out

def mma(c, a, b0, b1):
    """c[lane][4] += A·B, A from a[lane][4 pairs], B from b0[lane], b1[lane] pairs (PTX m16n8k16)."""
    A = [[0.0] * 16 for _ in range(16)]
    B = [[0.0] * 8 for _ in range(16)]
    for lane in range(32):
        g, t = lane // 4, lane % 4
        A[g][2 * t], A[g][2 * t + 1] = a[lane][0]
        A[g + 8][2 * t], A[g + 8][2 * t + 1] = a[lane][1]
        A[g][2 * t + 8], A[g][2 * t + 9] = a[lane][2]
        A[g + 8][2 * t + 8], A[g + 8][2 * t + 9] = a[lane][3]
        B[2 * t][g], B[2 * t + 1][g] = b0[lane]
        B[2 * t + 8][g], B[2 * t + 9][g] = b1[lane]
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for e in range(4):
            r = g + 8 * (e >> 1)
            col = 2 * t + (e & 1)
            c[lane][e] += sum(A[r][k] * B[k][col] for k in range(16))

def visible(mask, window, i, j):
    return mask == 0 or (j <= i and (mask != 2 or j > i - window))

def flash(D, q, k, v, o, lse, B, H, Hkv, n_q, n_k, q_off, q_ld, kv_ld, mask, window, scale,
          q_base=0, k_base=0, v_base=0, o_base=0, lse_base=0):
    """flash_params: pointers q + q_base, k + k_base, v + v_base, o + o_base, lse + lse_base."""
    group = H // Hkv
    m_blocks = (n_q + BR - 1) // BR
    scale_log2 = scale * 1.4426950408889634
    tiles_visited = 0
    for bx in range(m_blocks):
        for bh in range(B * H):
            mb = m_blocks - 1 - bx
            b, h = bh // H, bh % H
            kvh = h // group
            r0 = mb * BR
            Q = q_base + bh * q_ld * D               # p.q + bh·q_ld·D
            K = k_base + (b * Hkv + kvh) * kv_ld * D  # p.k + (b·kv_heads + kvh)·kv_ld·D
            V = v_base + (b * Hkv + kvh) * kv_ld * D
            i_lo = q_off + r0
            i_hi = q_off + min(r0 + BR, n_q) - 1
            k_lo, k_hi = 0, n_k
            if mask != 0:
                k_hi = min(n_k, i_hi + 1)
            if mask == 2:
                k_lo = max(0, i_lo - window + 1)
            t_lo, t_hi = cdiv(k_lo, BC), cdiv(k_hi + BC - 1, BC)
            sQ = [0.0] * (BR * D)
            load_tile(D, sQ, q, Q, r0, n_q)
            warp_state = []
            for warp in range(WARPS):
                qa = [ldsm(sQ, lambda lane, kk=kk: swz(D, warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8,
                                                       kk * 16 + (lane >> 4) * 8)) for kk in range(D // 16)]
                ov = [[[0.0] * 4 for _ in range(32)] for _ in range(D // 8)]
                m = [[-INF, -INF] for _ in range(32)]
                l = [[0.0, 0.0] for _ in range(32)]
                warp_state.append((qa, ov, m, l))
            for t in range(t_lo, t_hi):
                tiles_visited += 1
                k_s = [0.0] * (BC * D)
                v_s = [0.0] * (BC * D)
                load_tile(D, k_s, k, K, t * BC, n_k)
                load_tile(D, v_s, v, V, t * BC, n_k)
                key0 = t * BC
                edge = (key0 + BC > n_k or (mask != 0 and key0 + BC - 1 > i_lo) or
                        (mask == 2 and key0 <= i_hi - window))
                for warp in range(WARPS):
                    qa, ov, m, l = warp_state[warp]
                    s = [[[0.0] * 4 for _ in range(32)] for _ in range(BC // 8)]
                    for kk in range(D // 16):
                        for np_ in range(BC // 16):
                            bk = ldsm(k_s, lambda lane: swz(D, np_ * 16 + (lane & 7) + (lane >> 4) * 8,
                                                            kk * 16 + ((lane >> 3) & 1) * 8))
                            mma(s[2 * np_], qa[kk], [bk[x][0] for x in range(32)], [bk[x][1] for x in range(32)])
                            mma(s[2 * np_ + 1], qa[kk], [bk[x][2] for x in range(32)], [bk[x][3] for x in range(32)])
                    # softmax, per lane
                    mx = [[-INF, -INF] for _ in range(32)]
                    for lane in range(32):
                        g, tq = lane // 4, lane % 4
                        row_pos = [i_lo + warp * 16 + g, i_lo + warp * 16 + g + 8]
                        for n in range(BC // 8):
                            for e in range(4):
                                x = s[n][lane][e] * scale_log2
                                if edge:
                                    j = key0 + n * 8 + 2 * tq + (e & 1)
                                    if j >= n_k or not visible(mask, window, row_pos[e >> 1], j):
                                        x = -INF
                                s[n][lane][e] = x
                                mx[lane][e >> 1] = max(mx[lane][e >> 1], x)
                    # quad reduction (shfl_xor 1, 2)
                    for step in (1, 2):
                        mx = [[max(mx[lane][r], mx[lane ^ step][r]) for r in range(2)] for lane in range(32)]
                    alpha = [[0, 0] for _ in range(32)]
                    m_use = [[0, 0] for _ in range(32)]
                    for lane in range(32):
                        for r in range(2):
                            m_new = max(m[lane][r], mx[lane][r])
                            m_use[lane][r] = 0.0 if m_new == -INF else m_new
                            alpha[lane][r] = 2.0 ** (m[lane][r] - m_use[lane][r]) if m[lane][r] != -INF else 0.0
                            m[lane][r] = m_new
                    for lane in range(32):
                        rowsum = [0.0, 0.0]
                        for n in range(BC // 8):
                            for e in range(4):
                                x = s[n][lane][e]
                                p = 0.0 if x == -INF else 2.0 ** (x - m_use[lane][e >> 1])
                                s[n][lane][e] = p
                                rowsum[e >> 1] += p
                        for r in range(2):
                            l[lane][r] = l[lane][r] * alpha[lane][r] + rowsum[r]
                        for n in range(D // 8):
                            ov[n][lane][0] *= alpha[lane][0]; ov[n][lane][1] *= alpha[lane][0]
                            ov[n][lane][2] *= alpha[lane][1]; ov[n][lane][3] *= alpha[lane][1]
                    for kk in range(BC // 16):
                        pa = [((s[2 * kk][x][0], s[2 * kk][x][1]), (s[2 * kk][x][2], s[2 * kk][x][3]),
                               (s[2 * kk + 1][x][0], s[2 * kk + 1][x][1]), (s[2 * kk + 1][x][2], s[2 * kk + 1][x][3]))
                              for x in range(32)]
                        for dp in range(D // 16):
                            bv = ldsm(v_s, lambda lane: swz(D, kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8,
                                                            dp * 16 + (lane >> 4) * 8), trans=True)
                            mma(ov[2 * dp], pa, [bv[x][0] for x in range(32)], [bv[x][1] for x in range(32)])
                            mma(ov[2 * dp + 1], pa, [bv[x][2] for x in range(32)], [bv[x][3] for x in range(32)])
            # epilogue
            for warp in range(WARPS):
                qa, ov, m, l = warp_state[warp]
                for step in (1, 2):
                    l = [[l[lane][r] + l[lane ^ step][r] for r in range(2)] for lane in range(32)]
                for lane in range(32):
                    g, tq = lane // 4, lane % 4
                    for r in range(2):
                        row = r0 + warp * 16 + g + r * 8
                        if row >= n_q:
                            continue
                        inv = 1.0 / l[lane][r] if l[lane][r] > 0 else 0.0
                        base = o_base + (bh * q_ld + row) * D + 2 * tq
                        for n in range(D // 8):
                            o[base + n * 8] = ov[n][lane][2 * r] * inv
                            o[base + n * 8 + 1] = ov[n][lane][2 * r + 1] * inv
                        if tq == 0:
                            lse[lse_base + bh * q_ld + row] = ((m[lane][r] + math.log2(l[lane][r])) * math.log(2)
                                                   if l[lane][r] > 0 else -INF)
    return tiles_visited

def reference(D, q, k, v, B, H, Hkv, n_q, n_k, q_off, mask, window, scale):
    """Dense Q (B,H,n_q,D), K/V (B,Hkv,n_k,D); query r at position q_off + r."""
    o = [0.0] * (B * H * n_q * D)
    lse = [0.0] * (B * H * n_q)
    for bh in range(B * H):
        b, h = bh // H, bh % H
        kvh = h // (H // Hkv)
        for r in range(n_q):
            i = q_off + r
            sc = []
            for j in range(n_k):
                if visible(mask, window, i, j):
                    sc.append((j, scale * sum(q[(bh * n_q + r) * D + c] * k[((b * Hkv + kvh) * n_k + j) * D + c]
                                              for c in range(D))))
            if not sc:  # no visible key: O = 0, LSE = −∞
                lse[bh * n_q + r] = -INF
                continue
            mx = max(s for _, s in sc)
            z = sum(math.exp(s - mx) for _, s in sc)
            lse[bh * n_q + r] = mx + math.log(z)
            for c in range(D):
                o[(bh * n_q + r) * D + c] = sum(math.exp(s - mx) / z * v[((b * Hkv + kvh) * n_k + j) * D + c]
                                                for j, s in sc)
    return o, lse

def case(D, B, H, Hkv, n_q, n_k, mask, window, seed, q_off=None, q_ld=None, kv_ld=None, q_row0=0, k_row0=0):
    """Dense inputs placed in larger NaN-filled buffers: slab bh's rows [0, n_q) at rows
    q_row0 + bh·q_ld + r (Q, O, LSE) and K/V's at k_row0 + slab·kv_ld + j, the kernel handed the
    pointers + q_row0·D etc. (q_ld = n_q, kv_ld = n_k, q_off = n_k − n_q: a whole tensor)."""
    q_off = n_k - n_q if q_off is None else q_off
    q_ld = n_q if q_ld is None else q_ld
    kv_ld = n_k if kv_ld is None else kv_ld
    rnd = random.Random(seed)
    q = [rnd.uniform(-1.7, 1.7) for _ in range(B * H * n_q * D)]
    k = [rnd.uniform(-1.7, 1.7) for _ in range(B * Hkv * n_k * D)]
    v = [rnd.uniform(-1.7, 1.7) for _ in range(B * Hkv * n_k * D)]
    NAN = float("nan")
    q_rows, k_rows = q_row0 + B * H * q_ld + 3, k_row0 + B * Hkv * kv_ld + 3  # 3 spare rows past the end
    qb, kb, vb = [NAN] * (q_rows * D), [NAN] * (k_rows * D), [NAN] * (k_rows * D)
    ob, lb = [NAN] * (q_rows * D), [NAN] * q_rows
    for bh in range(B * H):
        for r in range(n_q):
            at = (q_row0 + bh * q_ld + r) * D
            qb[at:at + D] = q[(bh * n_q + r) * D:(bh * n_q + r + 1) * D]
    for s in range(B * Hkv):
        for j in range(n_k):
            at = (k_row0 + s * kv_ld + j) * D
            kb[at:at + D] = k[(s * n_k + j) * D:(s * n_k + j + 1) * D]
            vb[at:at + D] = v[(s * n_k + j) * D:(s * n_k + j + 1) * D]
    scale = 1 / math.sqrt(D)
    tiles = flash(D, qb, kb, vb, ob, lb, B, H, Hkv, n_q, n_k, q_off, q_ld, kv_ld, mask, window, scale,
                  q_base=q_row0 * D, k_base=k_row0 * D, v_base=k_row0 * D, o_base=q_row0 * D, lse_base=q_row0)
    ro, rl = reference(D, q, k, v, B, H, Hkv, n_q, n_k, q_off, mask, window, scale)
    eo = el = 0.0
    stray = 0
    written = set()
    for bh in range(B * H):
        for r in range(n_q):
            row = q_row0 + bh * q_ld + r
            written.add(row)
            for c in range(D):
                x, y = ob[row * D + c], ro[(bh * n_q + r) * D + c]
                eo = max(eo, abs(x - y) if x == x else INF)
            x, y = lb[row], rl[bh * n_q + r]
            el = max(el, 0.0 if x == y else abs(x - y) if x == x else INF)  # −∞ == −∞ for empty rows
    for row in range(q_rows):
        if row not in written:
            stray += (lb[row] == lb[row]) + sum(ob[row * D + c] == ob[row * D + c] for c in range(D))
    empty = sum(x == -INF for x in rl)
    ok = eo < 1e-9 and el < 1e-9 and not stray
    print(f"{'ok  ' if ok else 'FAIL'} D={D} B={B} H={H} Hkv={Hkv} n_q={n_q} n_k={n_k} q_off={q_off} q_ld={q_ld} "
          f"kv_ld={kv_ld} rows0={q_row0},{k_row0} mask={mask} w={window} max|dO|={eo:.2e} max|dLSE|={el:.2e} "
          f"empty rows={empty} stray writes={stray} tiles={tiles}", flush=True)
    return ok

if __name__ == "__main__":
    cases = [
        (64, 1, 2, 1, 130, 130, 0, 0),
        (64, 1, 2, 1, 130, 130, 1, 0),
        (64, 1, 2, 1, 130, 130, 2, 37),
        (64, 1, 2, 1, 50, 130, 1, 0),
        (64, 1, 2, 1, 50, 130, 2, 37),
        (128, 2, 2, 2, 7, 65, 1, 0),
        (128, 1, 4, 2, 1, 65, 2, 3),
        (64, 1, 1, 1, 200, 200, 2, 70),
    ]
    # Slabs inside larger buffers (q_ld > n_q, kv_ld > n_k, pointers at interior rows, as the
    # ring's pieces and blocks are) and query offsets below zero or past n_k, as band_for gives.
    strided = [  # D, B, H, Hkv, n_q, n_k, mask, window, q_off, q_ld, kv_ld, q_row0, k_row0
        (64, 2, 2, 1, 70, 80, 0, 0, 10, 75, 90, 3, 5),
        (64, 1, 2, 1, 70, 80, 1, 0, -9, 71, 83, 1, 2),
        (64, 1, 2, 1, 70, 80, 2, 20, -9, 71, 83, 1, 2),
        (128, 1, 2, 2, 20, 100, 1, 0, -30, 33, 101, 13, 0),
        (64, 1, 2, 1, 66, 70, 2, 1, -2, 67, 77, 0, 7),
        (64, 1, 1, 1, 65, 130, 2, 0, 40, 70, 140, 2, 9),
        (64, 2, 2, 2, 9, 70, 2, 5, 66, 12, 72, 4, 1),
    ]
    bad = sum(not case(*c, seed=i) for i, c in enumerate(cases))
    bad += sum(not case(*c[:8], seed=100 + i, q_off=c[8], q_ld=c[9], kv_ld=c[10], q_row0=c[11], k_row0=c[12])
               for i, c in enumerate(strided))
    print("emulation:", "all ok" if not bad else f"{bad} failed")
    sys.exit(1 if bad else 0)
