/* piece_vis.h — what a per-step GPU kernel sees of one ring piece pair: the mask in the kernel's
 * band coordinates (plan_band_for: query row r at band position q_off + r, key row j at j) and
 * packed documents looked up at the global positions those rows hold (query row r at q0 + S·r,
 * key j at k0 + S·j). Compiled by C and nvcc (flash.cu); tests/test_piece_vis.c checks each
 * function against mask_visible at global positions over all pairs. */
#pragma once
#include "core/mask.h"

typedef struct {
    attn_vis_t vis;  /* mask and window in band positions; doc / n_docs: global offsets (device memory on a GPU) */
    int64_t q_off;   /* band position of query row 0 */
    int64_t q0, k0;  /* global positions of query row 0 and key row 0 */
    int64_t stride;  /* global distance between neighbouring rows of either piece (≥ 1) */
} piece_vis_t;

/* One contiguous problem (single GPU, Ulysses' whole sequence): band = global positions. */
ATTN_HD_INLINE piece_vis_t piece_vis_global(attn_vis_t v, int64_t q_off) {
    piece_vis_t pv = {v, q_off, q_off, 0, 1};
    return pv;
}

/* Global position of the query at band position i. */
ATTN_HD_INLINE int64_t piece_q_global(const piece_vis_t *pv, int64_t i) {
    return pv->q0 + pv->stride * (i - pv->q_off);
}

/* Smallest key row j ≥ 0 whose global position k0 + S·j is ≥ x. */
ATTN_HD_INLINE int64_t piece_first_key_at(const piece_vis_t *pv, int64_t x) {
    return x <= pv->k0 ? 0 : (x - pv->k0 + pv->stride - 1) / pv->stride;
}

/* Query at band position i sees key row j: the band's mask, and the same document globally. */
ATTN_HD_INLINE int piece_visible(const piece_vis_t *pv, int64_t i, int64_t j) {
    attn_vis_t band = {pv->vis.mask, pv->vis.window, 0, 0};
    if (!mask_visible(&band, i, j))
        return 0;
    if (!mask_has_docs(&pv->vis))
        return 1;
    int64_t d = mask_doc_of(&pv->vis, piece_q_global(pv, i)), k = pv->k0 + pv->stride * j;
    return k >= pv->vis.doc[d] && k < pv->vis.doc[d + 1];
}

/* Key rows [*lo, *hi) of n_k that some query at band positions [i_lo, i_hi] may see: the band's
 * range cut to the first query's document start and the last query's document end (both ends
 * never decrease with the position: core/mask.h). A hull: per-pair tests decide the rest. */
ATTN_HD_INLINE void piece_key_range(const piece_vis_t *pv, int64_t i_lo, int64_t i_hi, int64_t n_k, int64_t *lo,
                                    int64_t *hi) {
    int64_t a = 0, b = n_k;
    if (pv->vis.mask != ATTN_MASK_NONE && i_hi + 1 < b)
        b = i_hi + 1 > 0 ? i_hi + 1 : 0;
    if (pv->vis.mask == ATTN_MASK_WINDOW && i_lo - pv->vis.window + 1 > a)
        a = i_lo - pv->vis.window + 1;
    if (mask_has_docs(&pv->vis)) {
        int64_t da = piece_first_key_at(pv, mask_doc_lo(&pv->vis, piece_q_global(pv, i_lo)));
        int64_t db = piece_first_key_at(pv, mask_doc_hi(&pv->vis, piece_q_global(pv, i_hi)));
        a = da > a ? da : a;
        b = db < b ? db : b;
    }
    *lo = a < n_k ? a : n_k;
    *hi = b > *lo ? b : *lo;
}

/* 1 when documents hide some key row of [k_lo, k_hi) (k_hi > k_lo) from some query at band
 * positions [i_lo, i_hi]: a tile the kernel must mask although the band alone would not. */
ATTN_HD_INLINE int piece_docs_cut(const piece_vis_t *pv, int64_t i_lo, int64_t i_hi, int64_t k_lo, int64_t k_hi) {
    return mask_docs_cut(&pv->vis, piece_q_global(pv, i_lo), piece_q_global(pv, i_hi), pv->k0 + pv->stride * k_lo,
                         pv->k0 + pv->stride * (k_hi - 1) + 1);
}

/* 1 when some query at band positions [i_lo, i_hi] does not see some key row of [k_lo, k_hi)
 * (k_hi > k_lo): the mask's band crosses the tile (causal: a key after the first query; window:
 * a key at or before the last query − w) or documents cut it. Such a tile is masked per pair;
 * any other is visible to every pair in it. */
ATTN_HD_INLINE int piece_tile_masked(const piece_vis_t *pv, int64_t i_lo, int64_t i_hi, int64_t k_lo, int64_t k_hi) {
    return (pv->vis.mask != ATTN_MASK_NONE && k_hi - 1 > i_lo) ||
           (pv->vis.mask == ATTN_MASK_WINDOW && k_lo <= i_hi - pv->vis.window) ||
           piece_docs_cut(pv, i_lo, i_hi, k_lo, k_hi);
}
