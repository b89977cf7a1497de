/* mask.c — mask names and the range of keys a run of queries sees (mask.h); the per-pair rule
 * itself is mask_visible in the header, which C and CUDA both compile. */
#include "core/mask.h"

#include <string.h>

#include "core/common.h"

static const char *mask_names[] = {"none", "causal", "window"};
const char *mask_name(attn_mask_t m) { return mask_names[m]; }

int mask_parse(const char *s, attn_mask_t *out) {
    for (int i = 0; i < 3; i++)
        if (strcmp(s, mask_names[i]) == 0) {
            *out = (attn_mask_t)i;
            return 1;
        }
    return 0;
}

/* Smallest j ≥ 0 with start + stride·j ≥ x. */
static int64_t first_at_or_after(attn_span_t s, int64_t x) {
    if (x <= s.start)
        return 0;
    return (x - s.start + s.stride - 1) / s.stride;
}

void mask_key_range(const attn_vis_t *v, int64_t i_lo, int64_t i_hi, attn_span_t ks, int64_t n, int64_t *lo,
                    int64_t *hi) {
    int64_t a = 0, b = n;
    if (v->mask != ATTN_MASK_NONE) {
        b = ATTN_MIN(n, first_at_or_after(ks, i_hi + 1)); /* keys at positions ≤ i_hi */
        if (v->mask == ATTN_MASK_WINDOW)
            a = ATTN_MIN(n, first_at_or_after(ks, i_lo - v->window + 1)); /* positions > i_lo − w */
    }
    if (mask_has_docs(v)) { /* from i_lo's document's start to i_hi's document's end */
        a = ATTN_MAX(a, ATTN_MIN(n, first_at_or_after(ks, mask_doc_lo(v, i_lo))));
        b = ATTN_MIN(b, first_at_or_after(ks, mask_doc_hi(v, i_hi)));
    }
    *lo = a;
    *hi = b > a ? b : a;
}
