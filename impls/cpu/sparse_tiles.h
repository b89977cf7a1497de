/* sparse_tiles.h — the tile rules of the approximate backends, compiled by C and by nvcc alike so
 * that the CUDA versions (impls/cuda/sparse_attn.cu) keep what the CPU ones keep and
 * tests/test_sparse_tiles.c replays the kernels' index arithmetic on the host: a Q tile's request
 * (tiles always kept, candidates, budget), the ranking of candidates with its tie-break, the
 * per-(query, key) keep rule, the bitonic network and the walk of a list. docs/approximate.md. */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/mask.h" /* ATTN_HD_INLINE, mask_visible */

/* What one Q tile visits: the K tiles of up to two ranges [lo[k], hi[k]) (empty when lo ≥ hi),
 * plus the `keep` best-bounded candidates of [c_lo, c_hi) outside those ranges. The request
 * functions (sparse_engine.h) build it from the mask (mask_key_range) and the budget; when
 * keep > 0 both ranges lie inside [c_lo, c_hi) and fewer than all its other tiles are kept. */
typedef struct {
    int64_t lo[2], hi[2];
    int64_t c_lo, c_hi;
    int64_t keep;
} sparse_req_t;

ATTN_HD_INLINE int sparse_req_holds(const sparse_req_t *r, int64_t t) {
    return (t >= r->lo[0] && t < r->hi[0]) || (t >= r->lo[1] && t < r->hi[1]);
}

/* The most tiles r can list (its ranges, counted apart, and its budget): a list's capacity. */
ATTN_HD_INLINE int64_t sparse_req_len_max(const sparse_req_t *r) {
    int64_t n = r->keep;
    for (int k = 0; k < 2; k++)
        n += r->hi[k] > r->lo[k] ? r->hi[k] - r->lo[k] : 0;
    return n;
}

/* The list of a request that keeps no candidate: its ranges' tiles ascending and distinct
 * (ranges may overlap: sinks and a window meeting). Returns the count. */
ATTN_HD_INLINE int64_t sparse_req_fixed_list(const sparse_req_t *r, int32_t *out) {
    int64_t a_lo = r->lo[0], a_hi = r->hi[0], b_lo = r->lo[1], b_hi = r->hi[1], n = 0;
    if (b_lo < b_hi && (a_lo >= a_hi || b_lo < a_lo)) { /* a: the non-empty range that starts first */
        int64_t s = a_lo, e = a_hi;
        a_lo = b_lo, a_hi = b_hi, b_lo = s, b_hi = e;
    }
    for (int64_t t = a_lo; t < a_hi; t++)
        out[n++] = (int32_t)t;
    for (int64_t t = b_lo > a_hi ? b_lo : a_hi; t < b_hi; t++) /* b's tiles below a_hi are a's */
        out[n++] = (int32_t)t;
    return n;
}

/* The candidates' ranking: tile a ranks below tile b when its score is lower, or equal and a is
 * the earlier tile — so among equal scores the later tile is kept first. */
ATTN_HD_INLINE int sparse_ranks_below(float sa, int64_t a, float sb, int64_t b) {
    return sa < sb || (sa == sb && a < b);
}

/* A tile's score from its rows' bounds, folded one row at a time from −∞: the largest, a NaN
 * bound counting as +∞ (a non-finite key is never silently dropped). */
ATTN_HD_INLINE float sparse_fold(float m, float v) { return v != v ? INFINITY : v > m ? v : m; }

/* The bound of one row against one tile, channel by channel: max(q·kmin, q·kmax) = q·mid +
 * |q|·half, the two sums kept apart (the CPU's two sgemms) and added at the end. */
ATTN_HD_INLINE void sparse_bound_add(float q, float mid, float half, float *s_mid, float *s_half) {
    *s_mid += q * mid;
    *s_half += fabsf(q) * half;
}

/* The per-channel summary of a K tile: min and max over its rows (row 0 first, then each next
 * row: the comparisons decide what a NaN does), then mid and half. */
ATTN_HD_INLINE void sparse_minmax_add(float v, float *lo, float *hi) {
    *lo = v < *lo ? v : *lo;
    *hi = v > *hi ? v : *hi;
}
ATTN_HD_INLINE void sparse_mid_half(float lo, float hi, float *mid, float *half) {
    *mid = 0.5f * (hi + lo);
    *half = 0.5f * (hi - lo);
}

/* A score's bits mapped so that unsigned order is float order (−0 taken as +0; scores are never
 * NaN after sparse_fold). */
ATTN_HD_INLINE uint32_t sparse_float_order(float x) {
    uint32_t u;
    if (x == 0.0f)
        x = 0.0f;
    memcpy(&u, &x, sizeof u);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

/* The sort key of candidate tile t with score s: keys order as sparse_ranks_below ranks, and the
 * largest of several keys of one tile is the key of the largest score (so an atomic max folds
 * rows). 0 is below every key: unused slots, and tiles kept anyway. t < 2³². */
ATTN_HD_INLINE uint64_t sparse_tile_key(float s, int64_t t) {
    return ((uint64_t)sparse_float_order(s) << 32) | (uint32_t)t;
}
ATTN_HD_INLINE int64_t sparse_key_tile(uint64_t k) { return (int64_t)(k & 0xffffffffu); }

/* The smallest power of 2 ≥ n (n ≥ 1): the bitonic network's length. */
ATTN_HD_INLINE int64_t sparse_pow2(int64_t n) {
    int64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* One compare-exchange of the bitonic network that sorts n (a power of 2) keys descending: stage
 * (k = 2, 4, …, n; j = k/2, …, 1), element i (acts only when i < i ^ j). Every (k, j) stage runs
 * over all i before the next. */
ATTN_HD_INLINE void sparse_bitonic_step(uint64_t *a, int64_t i, int64_t k, int64_t j) {
    int64_t l = i ^ j;
    if (l <= i)
        return;
    uint64_t x = a[i], y = a[l];
    if ((i & k) == 0 ? x < y : x > y) {
        a[i] = y;
        a[l] = x;
    }
}

/* Whether query position i keeps key position j: what the mask lets it see, and for sinks_window
 * (limited) only a sink (j < sinks) or a key of its local window (i − window < j ≤ i). */
typedef struct {
    attn_vis_t vis;
    int64_t sinks, window;
    int limited;
} sparse_rule_t;

ATTN_HD_INLINE int sparse_keeps(const sparse_rule_t *r, int64_t i, int64_t j) {
    if (!mask_visible(&r->vis, i, j))
        return 0;
    if (!r->limited || j < r->sinks)
        return 1;
    attn_vis_t band = {ATTN_MASK_WINDOW, r->window, 0, 0};
    return mask_visible(&band, i, j);
}

/* The attention kernel's walk: a block of SPARSE_STEP query rows at row r0 belongs to Q tile
 * r0 / bq (bq a multiple of SPARSE_STEP), and walks its list in steps of SPARSE_STEP keys, bk / SPARSE_STEP
 * steps per listed tile (bk a multiple of SPARSE_STEP); step `it` starts at key sparse_step_key0. */
enum { SPARSE_STEP = 64 };
ATTN_HD_INLINE int64_t sparse_block_qtile(int64_t r0, int bq) { return r0 / bq; }
ATTN_HD_INLINE int64_t sparse_steps(int64_t count, int bk) { return count * (bk / SPARSE_STEP); }
ATTN_HD_INLINE int64_t sparse_step_key0(const int32_t *list, int64_t it, int bk) {
    int per = bk / SPARSE_STEP;
    return (int64_t)list[it / per] * bk + (int64_t)(it % per) * SPARSE_STEP;
}
/* The same walk in sub-steps of `keys` keys, a divisor of SPARSE_STEP (the d = 256 kernel's key
 * tile is 32: impls/cuda/flash_frag.h's FRAG_KEYS): SPARSE_STEP / keys per step, in key order. */
ATTN_HD_INLINE int64_t sparse_sub_steps(int64_t count, int bk, int keys) {
    return sparse_steps(count, bk) * (SPARSE_STEP / keys);
}
ATTN_HD_INLINE int64_t sparse_sub_key0(const int32_t *list, int64_t it, int bk, int keys) {
    int per = SPARSE_STEP / keys;
    return sparse_step_key0(list, it / per, bk) + (int64_t)(it % per) * keys;
}
