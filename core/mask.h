/* mask.h — the attention mask: its kinds, names, and the one visibility rule, compiled by C and
 * by nvcc alike (the CUDA kernels call mask_visible on the device), plus the key range a run of
 * queries can see. Positions are global: query i sees key j under the rule below. */
#pragma once
#include <stdint.h>

typedef enum { ATTN_MASK_NONE = 0, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW } attn_mask_t;

/* Global positions of a run of rows: row r sits at start + stride·r (stride ≥ 1). */
typedef struct {
    int64_t start, stride;
} attn_span_t;

#ifdef __CUDACC__
#define ATTN_HD_INLINE static __host__ __device__ __forceinline__
#else
#define ATTN_HD_INLINE static inline
#endif

/* Key position j visible from query position i: causal j ≤ i; window w also i − w < j. */
ATTN_HD_INLINE int mask_visible(attn_mask_t m, int64_t w, int64_t i, int64_t j) {
    return m == ATTN_MASK_NONE || (j <= i && (m != ATTN_MASK_WINDOW || j > i - w));
}

/* "none", "causal", "window"; mask_parse returns 1 on success. */
const char *mask_name(attn_mask_t m);
int mask_parse(const char *s, attn_mask_t *out);

/* Range [lo, hi) of local key rows (positions ks.start + ks.stride·j, 0 ≤ j < n) visible from
 * at least one query position in [i_lo, i_hi]; empty range when lo ≥ hi. */
void mask_key_range(attn_mask_t m, int64_t w, int64_t i_lo, int64_t i_hi, attn_span_t ks, int64_t n,
                    int64_t *lo, int64_t *hi);
