/* mask.h — the attention mask: its kinds, names, and the one visibility rule, compiled by C and
 * by nvcc alike (the CUDA kernels call mask_visible on the device), plus the key range a run of
 * queries can see. Positions are global: query i sees key j under the rule below, which packed
 * documents (attn_vis_t.doc) narrow to the query's own document. */
#pragma once
#include <stdint.h>

typedef enum { ATTN_MASK_NONE = 0, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW } attn_mask_t;

/* Global positions of a run of rows: row r sits at start + stride·r (stride ≥ 1). */
typedef struct {
    int64_t start, stride;
} attn_span_t;

/* Everything the visibility of a (query, key) pair depends on: the mask, its window, and the
 * packed documents: doc[0..n_docs] are non-decreasing global offsets 0 … n_k (FlashAttention's
 * cu_seqlens), document d holding positions [doc[d], doc[d+1]); doc NULL or n_docs ≤ 1 is one
 * document. On a GPU, doc must point to device memory. problem_vis (problem.h) builds it. */
typedef struct {
    attn_mask_t mask;
    int64_t window;
    const int64_t *doc;
    int64_t n_docs;
} attn_vis_t;

#ifdef __CUDACC__
#define ATTN_HD_INLINE static __host__ __device__ __forceinline__
#else
#define ATTN_HD_INLINE static inline
#endif

ATTN_HD_INLINE int mask_has_docs(const attn_vis_t *v) { return v->doc && v->n_docs > 1; }

/* The largest k < count with off[k] ≤ x in non-decreasing off[0 … count) (0 when none is):
 * among equal offsets the last, so an empty interval is never the answer. Binary search. */
ATTN_HD_INLINE int64_t mask_last_at_or_before(const int64_t *off, int64_t count, int64_t x) {
    int64_t a = 0, b = count - 1; /* invariant: off[a] ≤ x or a == 0; the answer is in [a, b] */
    while (a < b) {
        int64_t mid = a + (b - a + 1) / 2;
        if (off[mid] <= x)
            a = mid;
        else
            b = mid - 1;
    }
    return a;
}

/* The document holding position i: the largest d with doc[d] ≤ i (an empty document is never
 * the answer); positions outside 0 … n_k clamp to the first or last. */
ATTN_HD_INLINE int64_t mask_doc_of(const attn_vis_t *v, int64_t i) {
    return mask_last_at_or_before(v->doc, v->n_docs, i);
}
/* First and one-past-last position of position i's document (the whole line without documents). */
ATTN_HD_INLINE int64_t mask_doc_lo(const attn_vis_t *v, int64_t i) {
    return mask_has_docs(v) ? v->doc[mask_doc_of(v, i)] : INT64_MIN;
}
ATTN_HD_INLINE int64_t mask_doc_hi(const attn_vis_t *v, int64_t i) {
    return mask_has_docs(v) ? v->doc[mask_doc_of(v, i) + 1] : INT64_MAX;
}

/* Key position j visible from query position i: causal j ≤ i; window w also i − w < j; with
 * documents, j also in i's document. */
ATTN_HD_INLINE int mask_visible(const attn_vis_t *v, int64_t i, int64_t j) {
    attn_mask_t m = v->mask;
    if (!(m == ATTN_MASK_NONE || (j <= i && (m != ATTN_MASK_WINDOW || j > i - v->window))))
        return 0;
    if (!mask_has_docs(v))
        return 1;
    int64_t d = mask_doc_of(v, i);
    return j >= v->doc[d] && j < v->doc[d + 1];
}

/* 1 when the documents hide some key position of [k0, k1) from some query position of
 * [i_lo, i_hi] (both in one document otherwise): a tile the kernels must mask. Monotone ends
 * make two lookups enough: the last row's document starts latest, the first row's ends earliest. */
ATTN_HD_INLINE int mask_docs_cut(const attn_vis_t *v, int64_t i_lo, int64_t i_hi, int64_t k0, int64_t k1) {
    return mask_has_docs(v) && (k0 < mask_doc_lo(v, i_hi) || k1 > mask_doc_hi(v, i_lo));
}

/* "none", "causal", "window"; mask_parse returns 1 on success. */
const char *mask_name(attn_mask_t m);
int mask_parse(const char *s, attn_mask_t *out);

/* Range [lo, hi) of local key rows (positions ks.start + ks.stride·j, 0 ≤ j < n) visible from
 * at least one query position in [i_lo, i_hi]; empty range when lo ≥ hi. Each position's
 * visible keys are one interval whose ends never decrease with the position, and neighbours'
 * intervals touch, so the union is [first of i_lo, end of i_hi): documents keep that shape. */
void mask_key_range(const attn_vis_t *v, int64_t i_lo, int64_t i_hi, attn_span_t ks, int64_t n, int64_t *lo,
                    int64_t *hi);
