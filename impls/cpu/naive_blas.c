/* naive_blas.c — the textbook attention a user would write on OpenBLAS (S = Q·Kᵀ and O = P·V as
 * multi-threaded sgemm around a materialised n_q × n_k softmax, float32 only): the peer blockwise
 * must beat. Its softmax uses blockwise's AVX-512 exp2, so the comparison is about tiling. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "core/backend.h"
#include "core/threads.h"
#include "impls/cpu/softmax.h"
#include "impls/cpu/tile_engine.h"

enum { ROWS_PER_ITEM = 64 };

typedef struct {
    const attn_problem_t *p;
    float *S, *m, *l, *alpha;
    int64_t n_q, n_k, q0; /* q0: absolute position of query row 0 */
    float c;
    softmax_tile_fn softmax;
} softmax_job_t;

/* Mask (where the mask can hide anything) and softmax of ROWS_PER_ITEM rows. */
static void softmax_rows(void *ctx, int64_t item, int worker) {
    (void)worker;
    const softmax_job_t *j = ctx;
    const attn_vis_t vis = problem_vis(j->p);
    int64_t r0 = item * ROWS_PER_ITEM, rows = ATTN_MIN((int64_t)ROWS_PER_ITEM, j->n_q - r0);
    for (int64_t r = r0; r < r0 + rows; r++) {
        j->m[r] = -INFINITY;
        j->l[r] = 0;
        if (j->p->mask == ATTN_MASK_NONE && !mask_has_docs(&vis))
            continue;
        int64_t lo, hi;
        attn_span_t ks = {0, 1};
        mask_key_range(&vis, j->q0 + r, j->q0 + r, ks, j->n_k, &lo, &hi);
        float *s = j->S + r * j->n_k;
        for (int64_t col = 0; col < lo; col++)
            s[col] = -INFINITY;
        for (int64_t col = hi > lo ? hi : lo; col < j->n_k; col++)
            s[col] = -INFINITY;
    }
    j->softmax(j->S + r0 * j->n_k, (int)rows, (int)j->n_k, (int)j->n_k, j->c, j->m + r0, j->l + r0, j->alpha + r0);
}

/* O = P·V over the keys each row sees only, for a V holding ±∞ or NaN under a mask that hides
 * keys: a hidden key's weight 0 times ∞ would be NaN in the GEMM (docs/nonfinite.md). Rare. */
static void pv_visible(const softmax_job_t *j, const float *V, float *O, int64_t d) {
    const attn_vis_t vis = problem_vis(j->p);
    for (int64_t r = 0; r < j->n_q; r++) {
        int64_t lo, hi;
        mask_key_range(&vis, j->q0 + r, j->q0 + r, (attn_span_t){0, 1}, j->n_k, &lo, &hi);
        float *o = O + r * d;
        memset(o, 0, sizeof(float) * (size_t)d);
        for (int64_t col = lo; col < hi; col++)
            for (int64_t c = 0; c < d; c++)
                o[c] += j->S[r * j->n_k + col] * V[col * d + c];
    }
}

static int naive_blas_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                              attn_err_t *err) {
    (void)self;
    int64_t d = p->head_dim, nq = p->n_q, nk = p->n_k;
    float *S = attn_alloc(attn_size_prod4(nq, nk, sizeof(float), 1), err, "naive_blas score matrix");
    float *vec = attn_alloc((size_t)(3 * nq) * sizeof(float), err, "naive_blas row statistics");
    if (!S || !vec) {
        attn_free(S), attn_free(vec);
        return ATTN_ERUNTIME;
    }
    softmax_job_t j = {.p = p, .S = S, .m = vec, .l = vec + nq, .alpha = vec + 2 * nq, .n_q = nq, .n_k = nk,
                       .q0 = nk - nq, .c = (float)(problem_scale(p) * M_LOG2E), .softmax = softmax_tile_select()};
    int threads = exec_threads(x);
    /* Does the mask hide any key from any row? Visibility is monotone in the position, so the
     * first row's range ends earliest and the last row's starts latest. */
    int64_t lo_first, hi_first, lo_last, hi_last;
    const attn_vis_t vis = problem_vis(p);
    mask_key_range(&vis, nk - nq, nk - nq, (attn_span_t){0, 1}, nk, &lo_first, &hi_first);
    mask_key_range(&vis, nk - 1, nk - 1, (attn_span_t){0, 1}, nk, &lo_last, &hi_last);
    int masks_some = hi_first < nk || lo_last > 0;
    for (int64_t bh = 0; bh < p->batch * p->heads; bh++) {
        int64_t b = bh / p->heads, kvh = (bh % p->heads) / (p->heads / p->kv_heads);
        const float *Q = (const float *)io->q + bh * nq * d;
        const float *K = (const float *)io->k + (b * p->kv_heads + kvh) * nk * d;
        const float *V = (const float *)io->v + (b * p->kv_heads + kvh) * nk * d;
        float *O = (float *)io->o + bh * nq * d, *L = (float *)io->lse + bh * nq;
        parallel_set_blas_threads(threads);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)d, 1.0f, Q, (int)d, K, (int)d,
                    0.0f, S, (int)nk);
        parallel_for(threads, (nq + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM, softmax_rows, &j);
        if (masks_some && !tile_all_finite(V, (size_t)(nk * d)))
            pv_visible(&j, V, O, d);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)d, (int)nk, 1.0f, S, (int)nk, V,
                        (int)d, 0.0f, O, (int)d);
        for (int64_t r = 0; r < nq; r++) { /* every row sees a key; l = 0 (only −∞ scores) is finished below */
            if (j.l[r] != j.l[r]) { /* a NaN score: sscal by 1/NaN can leave a zero O at 0 */
                for (int64_t c = 0; c < d; c++)
                    O[r * d + c] = j.l[r];
                L[r] = j.l[r];
                continue;
            }
            cblas_sscal((int)d, j.l[r] != 0.0f ? 1.0f / j.l[r] : 0.0f, O + r * d, 1);
            L[r] = j.l[r] != 0.0f ? (float)((double)j.m[r] * j.c * M_LN2 + log((double)j.l[r])) : -INFINITY;
        }
    }
    attn_free(S), attn_free(vec);
    problem_finish_rows(ATTN_F32, io->o, io->lse, problem_numel_lse(p), p->head_dim);
    return ATTN_OK;
}

static int naive_blas_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    return tile_backend_supports_dtype(self, p, reason, len) && backend_check_memory(self, p, x, reason, len);
}

static size_t naive_blas_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self, (void)x;
    size_t s = attn_size_add(attn_size_prod4(p->n_q, p->n_k, 1, 1), attn_size_prod4(3, p->n_q, 1, 1));
    return attn_size_mul(s, sizeof(float));
}

const attn_backend_t backend_cpu_naive_blas = {
    .name = "naive_blas",
    .device = "cpu",
    .description = "textbook attention on OpenBLAS: S = QKᵀ sgemm, softmax, PV sgemm; the peer for blockwise; f32",
    .supports = naive_blas_supports,
    .forward = naive_blas_forward,
    .workspace_bytes = naive_blas_workspace,
};
