/* tile_avx512.c — the fused AVX-512 tile kernel (tile_kernel.h). Query rows run across the 16
 * lanes of a vector, a strip of SW = 48 rows in three vectors, so the per-row max and sum of the
 * online softmax are lane-wise (no horizontal reductions) and both products are register-blocked
 * outer products fed by broadcasts of K and V straight from their row-major tensors (no packing
 * but Qᵀ once per Q tile). Per K/V tile and strip: Sᵀ = K·Qᵀ into an L1-sized buffer with the
 * max fused in, exp2 in place, then Oᵀ = α·Oᵀ + Vᵀ·P chunk by chunk of 8 dimensions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "impls/cpu/exp2_avx512.h"
#include "impls/cpu/softmax.h"
#include "impls/cpu/tile_kernel.h"

enum {
    NV = 3,       /* vectors per strip */
    SW = 16 * NV, /* rows per strip */
    MR = 8,       /* keys per S register block: MR × NV accumulators */
    CR = 8,       /* dimensions per P·V register block: CR × NV accumulators */
};

static int round_up(int x, int to) { return (x + to - 1) / to * to; }

static size_t fused_ws_floats(int bq, int bk, int d) {
    size_t strips = (size_t)(bq + SW - 1) / SW;
    /* Qᵀ and Oᵀ, the score strip, m and l, lo and hi (int32, one float each) */
    return strips * SW * (2 * (size_t)d + 4) + (size_t)round_up(bk, MR) * SW;
}

static void fused_init(tile_kernel_ws_t *w, float *base, int bq, int bk, int d, float c) {
    size_t strips = (size_t)(bq + SW - 1) / SW, rows = strips * SW;
    *w = (tile_kernel_ws_t){.d = d, .bq = bq, .bk = bk, .c = c};
    w->qt = base;
    w->ot = w->qt + rows * d;
    w->s = w->ot + rows * d;
    w->m = w->s + (size_t)round_up(bk, MR) * SW;
    w->l = w->m + rows;
    w->lo = (int32_t *)(w->l + rows);
    w->hi = w->lo + rows;
}

static void fused_begin(tile_kernel_ws_t *w, const float *Q, int rows) {
    int d = w->d;
    w->rows = rows;
    w->strips = (rows + SW - 1) / SW;
    for (int st = 0; st < w->strips; st++) {
        float *qt = w->qt + (size_t)st * d * SW;
        for (int i = 0; i < SW; i++) {
            int r = st * SW + i;
            for (int c = 0; c < d; c++) /* rows past the tile's end score 0 and are never read */
                qt[(size_t)c * SW + i] = r < rows ? Q[(size_t)r * d + c] : 0.0f;
        }
    }
    int n = w->strips * SW;
    memset(w->ot, 0, sizeof(float) * (size_t)n * d);
    for (int r = 0; r < n; r++) {
        w->m[r] = -INFINITY;
        w->l[r] = 0.0f;
        w->lo[r] = 0;
        w->hi[r] = INT32_MAX;
    }
}

/* Lanes of vector v whose rows see key j of the tile. */
#define VISIBLE(v, j) \
    (_mm512_cmple_epi32_mask(vlo[v], _mm512_set1_epi32(j)) & _mm512_cmpgt_epi32_mask(vhi[v], _mm512_set1_epi32(j)))

/* Sᵀ rows j .. j+MR−1 of one strip (keys past cols read the last key again and are dropped),
 * masked when partial, stored, and folded into the running max. vmaxps(x, max) keeps max when
 * x is NaN: NaN scores leave the max alone and reach l through exp2 (docs/nonfinite.md). */
ATTN_AVX512 static inline __attribute__((always_inline)) void
s_block(int nv, const float *qt, const float *K, int d, int j, int cols, int partial, const int32_t *lo,
        const int32_t *hi, float *s, __m512 *vmax) {
    const float *kr[MR];
    for (int r = 0; r < MR; r++)
        kr[r] = K + (size_t)(j + r < cols ? j + r : cols - 1) * d;
    __m512 acc[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < nv; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int c = 0; c < d; c++) {
        __m512 q[NV];
        for (int v = 0; v < nv; v++)
            q[v] = _mm512_loadu_ps(qt + (size_t)c * SW + 16 * v);
        for (int r = 0; r < MR; r++) {
            __m512 b = _mm512_set1_ps(kr[r][c]);
            for (int v = 0; v < nv; v++)
                acc[r][v] = _mm512_fmadd_ps(b, q[v], acc[r][v]);
        }
    }
    /* The row bounds are loaded here, after the products, not held in registers across them:
     * 24 accumulators, 3 Q vectors and a broadcast leave no room for 6 more (they spilled, and a
     * partial tile cost 1.13 full ones; docs/packed-documents.md). */
    __m512i vlo[NV], vhi[NV];
    for (int v = 0; partial && v < nv; v++) {
        vlo[v] = _mm512_loadu_si512(lo + 16 * v);
        vhi[v] = _mm512_loadu_si512(hi + 16 * v);
    }
    for (int r = 0; r < MR; r++) {
        if (j + r >= cols)
            break;
        for (int v = 0; v < nv; v++) {
            __m512 x = acc[r][v];
            if (partial)
                x = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), VISIBLE(v, j + r), x);
            _mm512_storeu_ps(s + (size_t)(j + r) * SW + 16 * v, x);
            vmax[v] = _mm512_max_ps(x, vmax[v]);
        }
    }
}

/* Oᵀ dimensions c0 .. c0+n−1 (n = CR, or 1 for a remainder): α·Oᵀ + Σ_j V[j]·P[j], over the
 * keys each lane sees when visible_only. */
ATTN_AVX512 static inline __attribute__((always_inline)) void
pv_block(int nv, float *ot, const float *s, const float *V, int d, int c0, int n, int cols, const __m512 *alpha,
         int visible_only, const __m512i *vlo, const __m512i *vhi) {
    __m512 acc[CR][NV];
    for (int k = 0; k < n; k++)
        for (int v = 0; v < nv; v++)
            acc[k][v] = _mm512_mul_ps(_mm512_loadu_ps(ot + (size_t)(c0 + k) * SW + 16 * v), alpha[v]);
    for (int j = 0; j < cols; j++) {
        __m512 p[NV];
        for (int v = 0; v < nv; v++)
            p[v] = _mm512_loadu_ps(s + (size_t)j * SW + 16 * v);
        const float *vr = V + (size_t)j * d + c0;
        if (visible_only) {
            __mmask16 vis[NV];
            for (int v = 0; v < nv; v++)
                vis[v] = VISIBLE(v, j);
            for (int k = 0; k < n; k++) {
                __m512 b = _mm512_set1_ps(vr[k]);
                for (int v = 0; v < nv; v++)
                    acc[k][v] = _mm512_mask3_fmadd_ps(b, p[v], acc[k][v], vis[v]);
            }
        } else {
            for (int k = 0; k < n; k++) {
                __m512 b = _mm512_set1_ps(vr[k]);
                for (int v = 0; v < nv; v++)
                    acc[k][v] = _mm512_fmadd_ps(b, p[v], acc[k][v]);
            }
        }
    }
    for (int k = 0; k < n; k++)
        for (int v = 0; v < nv; v++)
            _mm512_storeu_ps(ot + (size_t)(c0 + k) * SW + 16 * v, acc[k][v]);
}

/* One strip of nv vectors (nv = 1..3: a strip holding fewer rows computes only the vectors that
 * hold some, so a decode row costs one vector, not three), always inlined so that each nv is a
 * kernel of its own with the loops over vectors unrolled. */
ATTN_AVX512 static inline __attribute__((always_inline)) void
strip_block(int nv, tile_kernel_ws_t *w, int st, const float *K, const float *V, int cols, int partial,
            int visible_only) {
    const int d = w->d;
    const __m512 vc = _mm512_set1_ps(w->c), ninf = _mm512_set1_ps(-INFINITY);
    const float *qt = w->qt + (size_t)st * d * SW;
    float *ot = w->ot + (size_t)st * d * SW, *m = w->m + st * SW, *l = w->l + st * SW;
    __m512i vlo[NV], vhi[NV];
    __m512 vmax[NV], muse[NV], alpha[NV], sum[NV];
    for (int v = 0; v < nv; v++) {
        vlo[v] = _mm512_loadu_si512(w->lo + st * SW + 16 * v);
        vhi[v] = _mm512_loadu_si512(w->hi + st * SW + 16 * v);
        vmax[v] = ninf;
    }
    const int32_t *lo = w->lo + st * SW, *hi = w->hi + st * SW;
    if (partial)
        for (int j = 0; j < cols; j += MR)
            s_block(nv, qt, K, d, j, cols, 1, lo, hi, w->s, vmax);
    else
        for (int j = 0; j < cols; j += MR)
            s_block(nv, qt, K, d, j, cols, 0, lo, hi, w->s, vmax);
    /* A lane whose max is still −∞ has seen no finite score: its weights are exp2(S·c), 0
     * for −∞ and NaN for NaN (which then poisons l, as the generic path does), α = 1. */
    for (int v = 0; v < nv; v++) {
        __m512 old = _mm512_loadu_ps(m + 16 * v), mx = _mm512_max_ps(vmax[v], old);
        __mmask16 none = _mm512_cmp_ps_mask(mx, ninf, _CMP_EQ_OQ);
        muse[v] = _mm512_mask_mov_ps(mx, none, _mm512_setzero_ps());
        alpha[v] = _mm512_mask_mov_ps(exp2_ps(_mm512_mul_ps(_mm512_sub_ps(old, mx), vc)), none,
                                      _mm512_set1_ps(1.0f));
        _mm512_storeu_ps(m + 16 * v, mx);
        sum[v] = _mm512_setzero_ps();
    }
    for (int j = 0; j < cols; j++)
        for (int v = 0; v < nv; v++) {
            float *sp = w->s + (size_t)j * SW + 16 * v;
            __m512 e = exp2_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(sp), muse[v]), vc));
            _mm512_storeu_ps(sp, e);
            sum[v] = _mm512_add_ps(sum[v], e);
        }
    for (int v = 0; v < nv; v++)
        _mm512_storeu_ps(l + 16 * v, _mm512_fmadd_ps(_mm512_loadu_ps(l + 16 * v), alpha[v], sum[v]));
    int c0 = 0;
    if (visible_only) { /* rare (a V tile with ∞ or NaN across a mask edge) */
        for (; c0 + CR <= d; c0 += CR)
            pv_block(nv, ot, w->s, V, d, c0, CR, cols, alpha, 1, vlo, vhi);
        for (; c0 < d; c0++)
            pv_block(nv, ot, w->s, V, d, c0, 1, cols, alpha, 1, vlo, vhi);
        return;
    }
    for (; c0 + CR <= d; c0 += CR)
        pv_block(nv, ot, w->s, V, d, c0, CR, cols, alpha, 0, vlo, vhi);
    for (; c0 < d; c0++)
        pv_block(nv, ot, w->s, V, d, c0, 1, cols, alpha, 0, vlo, vhi);
}

ATTN_AVX512 static void strip1(tile_kernel_ws_t *w, int st, const float *K, const float *V, int cols, int partial,
                               int visible_only) {
    strip_block(1, w, st, K, V, cols, partial, visible_only);
}
ATTN_AVX512 static void strip2(tile_kernel_ws_t *w, int st, const float *K, const float *V, int cols, int partial,
                               int visible_only) {
    strip_block(2, w, st, K, V, cols, partial, visible_only);
}
ATTN_AVX512 static void strip3(tile_kernel_ws_t *w, int st, const float *K, const float *V, int cols, int partial,
                               int visible_only) {
    strip_block(3, w, st, K, V, cols, partial, visible_only);
}

static void fused_block(tile_kernel_ws_t *w, const float *K, const float *V, int cols, int partial, int visible_only) {
    for (int st = 0; st < w->strips; st++) {
        int rows = w->rows - st * SW < SW ? w->rows - st * SW : SW, nv = (rows + 15) / 16;
        (nv == 3 ? strip3 : nv == 2 ? strip2 : strip1)(w, st, K, V, cols, partial, visible_only);
    }
}

static void fused_end(tile_kernel_ws_t *w, float *O, float *LSE) {
    int d = w->d;
    for (int r = 0; r < w->rows; r++) {
        int st = r / SW, i = r % SW;
        const float *ot = w->ot + (size_t)st * d * SW + i;
        float l = w->l[r], *o = O + (size_t)r * d;
        if (l == 0.0f) { /* nothing visible in this piece, or only −∞ scores: its share is 0 */
            memset(o, 0, sizeof(float) * (size_t)d);
            LSE[r] = -INFINITY;
        } else if (l != l) { /* a NaN score */
            for (int c = 0; c < d; c++)
                o[c] = l;
            LSE[r] = l;
        } else {
            float inv = 1.0f / l;
            for (int c = 0; c < d; c++)
                o[c] = ot[(size_t)c * SW] * inv;
            LSE[r] = (float)((double)w->m[r] * w->c * M_LN2 + log((double)l));
        }
    }
}

const tile_kernel_t tile_kernel_avx512 = {
    .name = "avx512",
    .ws_floats = fused_ws_floats,
    .init = fused_init,
    .begin = fused_begin,
    .block = fused_block,
    .end = fused_end,
    .default_bq = 96,
    .default_bk = 128,
    .min_rows = 16,
};

const tile_kernel_t *tile_kernel_select(void) { return cpu_simd_avx512() ? &tile_kernel_avx512 : NULL; }
