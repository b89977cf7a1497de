/* problem.c — validation, element and byte counts, and FLOP counting (visible pairs) of
 * attn_problem_t; the mask geometry it counts with is mask.c's. */
#include "core/problem.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

double problem_scale(const attn_problem_t *p) {
    return p->scale != 0.0 ? p->scale : 1.0 / sqrt((double)p->head_dim);
}

const char *dtype_name(attn_dtype_t t) {
    return t == ATTN_F64 ? "f64" : t == ATTN_BF16 ? "bf16" : t == ATTN_F16 ? "f16" : "f32";
}
int dtype_parse(const char *s, attn_dtype_t *out) {
    if (strcmp(s, "f32") == 0 || strcmp(s, "float32") == 0) {
        *out = ATTN_F32;
        return 1;
    }
    if (strcmp(s, "f64") == 0 || strcmp(s, "float64") == 0) {
        *out = ATTN_F64;
        return 1;
    }
    if (strcmp(s, "bf16") == 0 || strcmp(s, "bfloat16") == 0) {
        *out = ATTN_BF16;
        return 1;
    }
    if (strcmp(s, "f16") == 0 || strcmp(s, "fp16") == 0 || strcmp(s, "float16") == 0) {
        *out = ATTN_F16;
        return 1;
    }
    return 0;
}
int dtype_is_16bit(attn_dtype_t t) { return t == ATTN_BF16 || t == ATTN_F16; }
size_t dtype_size(attn_dtype_t t) { return t == ATTN_F64 ? 8 : 4; }

int problem_validate(const attn_problem_t *p, attn_err_t *err) {
    if (p->batch < 1)
        return attn_fail(err, ATTN_EUSAGE, "batch must be ≥ 1 (got %lld)", (long long)p->batch);
    if (p->heads < 1)
        return attn_fail(err, ATTN_EUSAGE, "heads must be ≥ 1 (got %lld)", (long long)p->heads);
    if (p->kv_heads < 1)
        return attn_fail(err, ATTN_EUSAGE, "kv-heads must be ≥ 1 (got %lld)", (long long)p->kv_heads);
    if (p->heads % p->kv_heads != 0)
        return attn_fail(err, ATTN_EUSAGE, "heads (%lld) must be a multiple of kv-heads (%lld)",
                         (long long)p->heads, (long long)p->kv_heads);
    if (p->head_dim < 1 || p->head_dim > 256)
        return attn_fail(err, ATTN_EUSAGE, "head-dim must be in 1..256 (got %lld)", (long long)p->head_dim);
    if (p->n_k < 1)
        return attn_fail(err, ATTN_EUSAGE, "seq-len must be ≥ 1 (got %lld)", (long long)p->n_k);
    if (p->n_q < 1 || p->n_q > p->n_k)
        return attn_fail(err, ATTN_EUSAGE, "q-len must be in 1..seq-len (got q-len %lld, seq-len %lld)",
                         (long long)p->n_q, (long long)p->n_k);
    if (p->mask == ATTN_MASK_WINDOW && p->window < 1)
        return attn_fail(err, ATTN_EUSAGE, "window must be ≥ 1 (got %lld)", (long long)p->window);
    if (!(p->scale >= 0.0) || !isfinite(p->scale))
        return attn_fail(err, ATTN_EUSAGE, "scale must be a finite positive number (got %g)", p->scale);
    if (p->block_q < 0 || p->block_k < 0 || p->block_q > 4096 || p->block_k > 4096)
        return attn_fail(err, ATTN_EUSAGE, "block sizes must be in 1..4096");
    /* Every size below is computed checked; one that overflows is refused here, before any
     * memory estimate, so the kernels' int64 index arithmetic cannot overflow either. */
    char what[128];
    snprintf(what, sizeof what, "the problem (batch %lld × heads %lld × seq-len %lld × head-dim %lld)",
             (long long)p->batch, (long long)ATTN_MAX(p->heads, p->kv_heads), (long long)p->n_k, (long long)p->head_dim);
    ATTN_TRY(attn_size_check(problem_io_bytes(p), err, what));
    if (p->doc || p->n_docs) {
        if (!p->doc)
            return attn_fail(err, ATTN_EUSAGE, "documents: %lld of them but no offsets", (long long)p->n_docs);
        ATTN_TRY(problem_check_docs(p->doc, p->n_docs, p->n_k, err));
    }
    /* Queries sit at the end, so with causal or window masks every row sees at least itself:
     * position n_k − n_q + r ≥ 0 is a key, in the row's own document. Nothing else can leave a
     * row empty. */
    return ATTN_OK;
}

int problem_check_docs(const int64_t *off, int64_t n_docs, int64_t n_k, attn_err_t *err) {
    if (n_docs < 1)
        return attn_fail(err, ATTN_EUSAGE, "documents: need at least one (2 offsets), got %lld offsets",
                         (long long)n_docs + 1);
    if (off[0] != 0 || off[n_docs] != n_k)
        return attn_fail(err, ATTN_EUSAGE, "document offsets must run from 0 to seq-len %lld (got %lld … %lld)",
                         (long long)n_k, (long long)off[0], (long long)off[n_docs]);
    for (int64_t d = 0; d < n_docs; d++)
        if (off[d + 1] < off[d])
            return attn_fail(err, ATTN_EUSAGE, "document offsets must not decrease (offset %lld is %lld, then %lld)",
                             (long long)d, (long long)off[d], (long long)off[d + 1]);
    return ATTN_OK;
}

attn_span_t problem_q_span(const attn_problem_t *p) { return (attn_span_t){p->n_k - p->n_q, 1}; }
attn_span_t problem_k_span(const attn_problem_t *p) {
    (void)p;
    return (attn_span_t){0, 1};
}

double problem_visible_pairs(const attn_problem_t *p) {
    double pairs = 0;
    int64_t off = p->n_k - p->n_q;
    attn_vis_t v = problem_vis(p);
    for (int64_t r = 0; r < p->n_q; r++) {
        int64_t i = off + r, lo, hi;
        mask_key_range(&v, i, i, problem_k_span(p), p->n_k, &lo, &hi);
        pairs += (double)(hi - lo);
    }
    return pairs;
}

double problem_flops(const attn_problem_t *p) {
    return 4.0 * (double)p->head_dim * problem_visible_pairs(p) * (double)(p->batch * p->heads);
}

void problem_finish_rows(attn_dtype_t t, void *o, void *lse, size_t rows, int64_t d) {
    for (size_t r = 0; r < rows; r++) {
        if (t == ATTN_F64 ? ((double *)lse)[r] != -INFINITY : ((float *)lse)[r] != -INFINITY)
            continue;
        for (int64_t c = 0; c <= d; c++) { /* c == d: the LSE */
            double nan = NAN;
            if (t == ATTN_F64)
                *(c < d ? (double *)o + r * (size_t)d + c : (double *)lse + r) = nan;
            else
                *(c < d ? (float *)o + r * (size_t)d + c : (float *)lse + r) = (float)nan;
        }
    }
}

size_t problem_numel_q(const attn_problem_t *p) { return attn_size_prod4(p->batch, p->heads, p->n_q, p->head_dim); }
size_t problem_numel_kv(const attn_problem_t *p) { return attn_size_prod4(p->batch, p->kv_heads, p->n_k, p->head_dim); }
size_t problem_numel_lse(const attn_problem_t *p) { return attn_size_prod4(p->batch, p->heads, p->n_q, 1); }
size_t problem_io_bytes(const attn_problem_t *p) {
    size_t n = attn_size_add(attn_size_mul(2, problem_numel_q(p)), attn_size_mul(2, problem_numel_kv(p)));
    return attn_size_mul(attn_size_add(n, problem_numel_lse(p)), dtype_size(p->dtype));
}

size_t problem_grad_bytes(const attn_problem_t *p) {
    size_t n = attn_size_add(attn_size_mul(2, problem_numel_q(p)), attn_size_mul(2, problem_numel_kv(p)));
    return attn_size_mul(n, dtype_size(p->dtype));
}

double problem_backward_flops(const attn_problem_t *p) { return 2.5 * problem_flops(p); }
