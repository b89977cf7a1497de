/* flash_tile.cuh — the pieces of the tensor-core tile loop that flash.cu, flash_decode.cu and
 * sparse_attn.cu share: the tile shape per head dim, tile loads, the non-finite scan, Q fragments,
 * S = Q·Kᵀ, O += P·V and the row epilogue (64 query rows × 64 keys, 32 at d = 256, 4 warps;
 * layouts: flash_frag.h, docs/gpu-kernels.md). Each is forceinline and leaves the kernels' SASS
 * as it was when written out in each file. */
#pragma once
#include <math.h>

#include "impls/cuda/flash_frag.h"
#include "impls/cuda/mma_sm80.cuh"

namespace ftile {

using namespace mma80;

constexpr int TILE = 64, THREADS = 128; /* 64 query rows (and keys below d = 256), 4 warps */

/* The forward tile at head dim D: flash_frag.h's FRAG_* (checked on the host by test_flash_frag.c). */
template <int D> struct shape {
    static constexpr int ROWS = FRAG_ROWS, KEYS = FRAG_KEYS(D), SMEM = FRAG_SMEM_BYTES(D);
    static constexpr bool Q_REGS = FRAG_Q_IN_REGS(D);
    static_assert(ROWS == TILE && D % 64 == 0 && D <= 256, "head dims 64, 128, 256");
    static_assert(KEYS % 16 == 0 && KEYS * (D / 8) % THREADS == 0, "whole mma steps and 16-byte chunks per thread");
    static_assert(SMEM <= FRAG_SMEM_LIMIT, "Q + 2 stages of K and V must fit one block on sm_80, sm_86/89 and sm_90");
};

/* Rows [row0, row0 + ROWS) of an (n × D) 16-bit matrix into a swizzled ROWS × D tile; rows ≥ n
 * become zeros (so padded keys add 0·V, never NaN). */
template <typename T, int D, int ROWS = TILE>
__device__ __forceinline__ void load_tile(T *tile, const T *src, int64_t row0, int64_t n) {
    static_assert(sizeof(T) == 2, "16-byte chunks of 8 two-byte elements");
    constexpr int CHUNKS = D / 8, PER_THREAD = ROWS * CHUNKS / THREADS;
    static_assert(ROWS * CHUNKS % THREADS == 0, "whole chunks per thread");
#pragma unroll
    for (int i = 0; i < PER_THREAD; i++) {
        int idx = threadIdx.x + i * THREADS, row = idx / CHUNKS, col = (idx % CHUNKS) * 8;
        bool valid = row0 + row < n;
        const T *g = src + (valid ? (row0 + row) * D + col : 0);
        cp_async16(tile + frag_swz(D, row, col), g, valid);
    }
}

/* 1 on every thread when the ROWS × D tile holds a ±∞ or NaN (a block-wide OR: call it from all threads). */
template <typename T, int D, int ROWS = TILE> __device__ __forceinline__ bool tile_nonfinite(const T *tile) {
    static_assert(ROWS * D / 8 % THREADS == 0, "each thread scans whole 16-byte chunks");
    const uint4 *c = reinterpret_cast<const uint4 *>(tile);
    int bad = 0;
#pragma unroll
    for (int i = 0; i < ROWS * D / 8 / THREADS; i++) {
        const uint4 w = c[threadIdx.x + i * THREADS];
        bad |= elem16<T>::nonfinite2(w.x) | elem16<T>::nonfinite2(w.y) | elem16<T>::nonfinite2(w.z) |
               elem16<T>::nonfinite2(w.w);
    }
    return __syncthreads_or(bad) != 0;
}

/* This warp's 16 rows of the Q tile as A fragments, one per 16-column step: held in registers
 * (REGS), or read from the shared Q tile (which stays put) at each use where holding them would
 * not fit the register file (d = 256: flash_frag.h). get(r, kk) gives step kk's. */
template <typename T, int D, bool REGS = FRAG_Q_IN_REGS(D)> struct q_frag;
template <typename T, int D> struct q_frag<T, D, true> {
    unsigned a[D / 16][4];
    __device__ __forceinline__ q_frag(const T *sQ, int warp, int lane) {
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
            ldsm_x4(a[kk], sQ + frag_q_ldsm(D, warp, lane, kk));
    }
    __device__ __forceinline__ void get(unsigned (&r)[4], int kk) const {
        r[0] = a[kk][0], r[1] = a[kk][1], r[2] = a[kk][2], r[3] = a[kk][3];
    }
};
template <typename T, int D> struct q_frag<T, D, false> {
    const T *sQ;
    int warp, lane;
    __device__ __forceinline__ q_frag(const T *q, int w, int l) : sQ(q), warp(w), lane(l) {}
    __device__ __forceinline__ void get(unsigned (&r)[4], int kk) const { ldsm_x4(r, sQ + frag_q_ldsm(D, warp, lane, kk)); }
};

/* s = 0 (S accumulators or O accumulators: n tiles of 8 columns). */
template <int N> __device__ __forceinline__ void zero(float (&s)[N][4]) {
#pragma unroll
    for (int n = 0; n < N; n++)
        s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
}

/* S = Q·Kᵀ: 16 rows × 8N keys per warp. */
template <typename T, int D, int N, class QF>
__device__ __forceinline__ void scores(float (&s)[N][4], const QF &q, const T *k_s, int lane) {
    static_assert(N % 2 == 0, "key tiles in pairs");
    zero(s);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        unsigned qa[4];
        q.get(qa, kk);
#pragma unroll
        for (int np = 0; np < N / 2; np++) {
            unsigned bk[4]; /* b0 b1 of key tile 2np, then of 2np+1 */
            ldsm_x4(bk, k_s + frag_k_ldsm(D, lane, np, kk));
            elem16<T>::mma(s[2 * np], qa, bk[0], bk[1]);
            elem16<T>::mma(s[2 * np + 1], qa, bk[2], bk[3]);
        }
    }
}

/* O += P·V over 8N keys, P rounded to T (bf16 or f16) straight from the S accumulators. */
template <typename T, int D, int N>
__device__ __forceinline__ void pv_mma(float (&o)[D / 8][4], const float (&s)[N][4], const T *v_s, int lane) {
#pragma unroll
    for (int kk = 0; kk < N / 2; kk++) {
        const unsigned pa[4] = {elem16<T>::pack(s[2 * kk][0], s[2 * kk][1]), elem16<T>::pack(s[2 * kk][2], s[2 * kk][3]),
                                elem16<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                elem16<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; dp++) {
            unsigned bv[4]; /* b0 b1 of d tile 2dp, then of 2dp+1 */
            ldsm_x4_trans(bv, v_s + frag_v_ldsm(D, lane, kk, dp));
            elem16<T>::mma(o[2 * dp], pa, bv[0], bv[1]);
            elem16<T>::mma(o[2 * dp + 1], pa, bv[2], bv[3]);
        }
    }
}

/* O += P·V over the keys keep(key, r) admits only (key: the tile's column; r: the thread's row, 0
 * or 1), scalar over shared memory, P rounded to T as the MMA path does: the fallback for a tile
 * whose V holds a non-finite value, where a hidden key's weight 0 times ∞ would be NaN in the MMA
 * (docs/nonfinite.md). Every lane walks all 8N keys of its two rows: the score (row, key) sits in
 * s[n][e] of a lane of the same quad (frag_row, frag_col), fetched by shuffle. */
template <typename T, int D, int N, class KEEP>
__device__ __forceinline__ void pv_kept(float (&o)[D / 8][4], const float (&s)[N][4], const T *v_s, int lane,
                                        KEEP keep) {
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
#pragma unroll 1
            for (int src = 0; src < 4; src++) {
                const int from = frag_quad_lane(lane, src), r = e >> 1; /* frag_row(from, e) == frag_row(lane, e) */
                const float w = elem16<T>::round(__shfl_sync(0xffffffffu, s[n][e], from));
                const int key = frag_col(from, n, e);
                if (!keep(key, r))
                    continue;
#pragma unroll
                for (int dn = 0; dn < D / 8; dn++) {
                    const float2 v = elem16<T>::load2(v_s + frag_swz(D, key, frag_col(lane, dn, 0)));
                    o[dn][2 * r] += w * v.x;
                    o[dn][2 * r + 1] += w * v.y;
                }
            }
}

/* One tile's online-softmax step in base 2: s (scores already scaled and masked, mx their maxima
 * per row in this thread) becomes P = exp2(s − m); the row maxima m (reduced over the quad), the
 * per-thread partial sums l and O are rescaled by alpha = exp2(m_old − m). A row with nothing
 * visible yet subtracts 0 (m = −∞ gives alpha 0). */
template <int D, int N>
__device__ __forceinline__ void softmax_step(float (&s)[N][4], float (&mx)[2], float (&m)[2], float (&l)[2],
                                             float (&o)[D / 8][4]) {
    float alpha[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        float m_new = fmaxf(m[r], mx[r]);
        m_use[r] = m_new == -INFINITY ? 0.f : m_new;
        alpha[r] = exp2f(m[r] - m_use[r]);
        m[r] = m_new;
    }
    float rowsum[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            s[n][e] = exp2f(s[n][e] - m_use[e >> 1]);
            rowsum[e >> 1] += s[n][e];
        }
#pragma unroll
    for (int r = 0; r < 2; r++)
        l[r] = l[r] * alpha[r] + rowsum[r];
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        o[n][0] *= alpha[0], o[n][1] *= alpha[0];
        o[n][2] *= alpha[1], o[n][3] *= alpha[1];
    }
}

/* The quad's sum of a row's partial l (the four lanes of a quad share rows g and g+8). */
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

/* Row r's O / l to out (its row, this lane's columns) and, lane tq 0, LSE = ln 2 · (m + log2 l).
 * l = 0: no finite score (O = 0, LSE = −∞); a NaN l (a NaN score) reaches O and LSE
 * (docs/nonfinite.md). */
template <int D>
__device__ __forceinline__ void store_row(float *out, float *lse, const float (&o)[D / 8][4], int r, float l, float m,
                                          int tq) {
    const float inv = l == 0.f ? 0.f : 1.f / l;
#pragma unroll
    for (int n = 0; n < D / 8; n++)
        *reinterpret_cast<float2 *>(out + n * 8) = make_float2(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    if (tq == 0)
        *lse = l == 0.f ? -INFINITY : (m + log2f(l)) * 0.6931471805599453f;
}

} // namespace ftile
