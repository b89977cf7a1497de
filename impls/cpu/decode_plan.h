/* decode_plan.h — the split plan for decode and short queries (flash-decoding), compiled by C and
 * by nvcc alike: the CPU path (decode.c) and the CUDA kernels (impls/cuda/flash_decode.cu) run the
 * same plan, so tests/test_decode.c checks on the host the chunking, head packing and merge
 * indexing the GPU uses. Why and how: docs/decode.md. */
#pragma once
#include <math.h>
#include <stdint.h>

#include "core/mask.h" /* ATTN_HD_INLINE, attn_span_t */

enum {
    DECODE_MAX_QTILES = 32, /* packed query tiles per (batch, kv head): their key ranges travel in the plan */
    DECODE_MAX_SPLIT = 1024,
    DECODE_MIN_CHUNK_TILES = 4, /* a split reads at least this many key tiles: below it the merge costs more than it saves */
};

/* The query heads that share a KV head are packed into one tile: packed row r of (batch b, kv head
 * g) is query row r % n_q of head g·group + r / n_q. Those heads' Q rows are (group·n_q, d)
 * consecutive rows when q_ld = n_q. The keys that any packed row can see, [k_lo, k_hi), are cut
 * into `split` chunks of `chunk` keys; each (b, g, query tile, chunk) is one work item writing a
 * partial O and LSE, merged afterwards by the log-sum-exp rule. */
typedef struct {
    int64_t batch, n_q, n_k, q_ld; /* B, query rows, key rows, rows between (batch, head) slabs of Q, O, LSE */
    int64_t heads, kv_heads, group; /* H, H_kv, H / H_kv */
    int64_t rows;                  /* packed rows per (batch, kv head): group · n_q */
    int tile_rows, tile_keys;      /* rows of a query tile, keys of a key tile */
    int q_tiles;                   /* ⌈rows / tile_rows⌉ ≤ DECODE_MAX_QTILES */
    int64_t k_lo, k_hi;            /* keys visible from some query: the union of the tiles' ranges */
    int64_t chunk;                 /* keys per split, a multiple of tile_keys */
    int split;                     /* ⌈(k_hi − k_lo) / chunk⌉, ≥ 1 */
    int64_t tile_lo[DECODE_MAX_QTILES], tile_hi[DECODE_MAX_QTILES]; /* keys some row of each query tile sees */
    int64_t full_lo[DECODE_MAX_QTILES], full_hi[DECODE_MAX_QTILES]; /* keys every row of it sees: no mask there */
} decode_plan_t;

/* Query head (within the batch) and query row of packed row r of kv head g. */
ATTN_HD_INLINE int64_t decode_head_of(const decode_plan_t *pl, int64_t g, int64_t r) { return g * pl->group + r / pl->n_q; }
ATTN_HD_INLINE int64_t decode_qrow_of(const decode_plan_t *pl, int64_t r) { return r % pl->n_q; }

/* Row index into Q, O (× d) and LSE of packed row r of (batch b, kv head g). */
ATTN_HD_INLINE int64_t decode_out_row(const decode_plan_t *pl, int64_t b, int64_t g, int64_t r) {
    return (b * pl->heads + decode_head_of(pl, g, r)) * pl->q_ld + decode_qrow_of(pl, r);
}

/* Keys [*lo, *hi) of split s seen by query tile t (empty when *lo ≥ *hi). */
ATTN_HD_INLINE void decode_chunk(const decode_plan_t *pl, int t, int s, int64_t *lo, int64_t *hi) {
    int64_t a = pl->k_lo + (int64_t)s * pl->chunk, e = a + pl->chunk;
    if (e > pl->k_hi)
        e = pl->k_hi;
    *lo = a > pl->tile_lo[t] ? a : pl->tile_lo[t];
    *hi = e < pl->tile_hi[t] ? e : pl->tile_hi[t];
}

/* Row index of the partial results of packed row r of (b, g) from split s: partial O is
 * (B·H_kv, split, rows, d), partial LSE (B·H_kv, split, rows). */
ATTN_HD_INLINE int64_t decode_part_row(const decode_plan_t *pl, int64_t b, int64_t g, int s, int64_t r) {
    return ((b * pl->kv_heads + g) * pl->split + s) * pl->rows + r;
}

/* The log-sum-exp merge of one row's partials lse[s·stride], s < n: returns the merged LSE and
 * leaves in *m the shift to use in the weights exp(lse_s − m) / *sum. A part that saw nothing
 * (−∞) weighs 0; no part saw anything: LSE −∞, *sum 0 (O = 0); a NaN part: NaN (it must reach O). */
ATTN_HD_INLINE float decode_merge_lse(const float *lse, int64_t stride, int n, float *m, float *sum) {
    float mx = -INFINITY, s = 0.f;
    for (int i = 0; i < n; i++) {
        float x = lse[(int64_t)i * stride];
        if (x != x) {
            *m = x, *sum = x;
            return x;
        }
        mx = x > mx ? x : mx;
    }
    *m = mx;
    if (mx == -INFINITY) {
        *sum = 0.f;
        return -INFINITY;
    }
    for (int i = 0; i < n; i++)
        s += expf(lse[(int64_t)i * stride] - mx);
    *sum = s;
    return mx + logf(s);
}

/* Weight of a part in the merged O: exp(lse − m) / sum; 0 when nothing was seen, NaN for NaN. */
ATTN_HD_INLINE float decode_merge_weight(float lse, float m, float sum) {
    if (sum != sum)
        return sum;
    return sum == 0.f ? 0.f : expf(lse - m) / sum;
}

/* The plan for B × H × n_q queries at positions qs against n_k keys at positions ks, query tiles
 * of tile_rows packed rows and key tiles of tile_keys, on `units` parallel workers (SMs or
 * threads) with `waves` work items wanted per unit; force_split > 0 imposes the split (tests).
 * Returns 0 (and no plan) when the packed rows need more than DECODE_MAX_QTILES tiles. */
#ifdef __cplusplus
extern "C"
#endif
int decode_plan_make(decode_plan_t *pl, int64_t batch, int64_t heads, int64_t kv_heads, int64_t n_q, int64_t q_ld,
                     int64_t n_k, const attn_vis_t *v, attn_span_t qs, attn_span_t ks, int tile_rows,
                     int tile_keys, int units, int waves, int force_split);
