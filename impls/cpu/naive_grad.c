/* naive_grad.c — the backward pass written as its matrix formulas, one (batch, kv head) at a
 * time: P = exp(S·s − LSE), dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P∘(dP − D) with D = rowsum(dO∘O),
 * dQ = s·dS·K, dK = s·dSᵀ·Q. In float64 it is the gradient reference (docs/backward.md); each
 * worker materialises one n_q × n_k matrix (P, then dS in place): n² memory, as the forward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/threads.h"
#include "impls/cpu/naive.h"

typedef struct {
    const attn_problem_t *p;
    const attn_grad_io_t *g;
    int magnitude; /* float64 only: the error scale of each gradient instead of the gradient */
    void **scratch; /* per worker: P/dS (n_q × n_k), then Kᵀ and Vᵀ (d × n_k each), element type of p */
} naive_grad_job_t;

/* Loops are ordered so that every innermost loop is an axpy over a contiguous row (vectorised
 * without reassociating a sum) or a plain dot product in index order: the rounding stays that
 * of the formulas. A key a row does not see gets P = 0 and dS = 0 and is never read: with a
 * non-finite input a hidden pair contributes nothing, a visible one by IEEE arithmetic even at
 * P = 0 (0·∞ = NaN), as docs/nonfinite.md's backward rule says. */
#define NAIVE_GRAD_HEAD(NAME, T, EXP, MAG, COMB, PFAC)                                                                  \
    static void naive_grad_kv_##NAME(const naive_grad_job_t *j, int64_t bkv, T *Pm, T *Kt, T *Vt) { \
        const attn_problem_t *p = j->p;                                                         \
        const attn_grad_io_t *g = j->g;                                                         \
        int64_t d = p->head_dim, nq = p->n_q, nk = p->n_k, group = p->heads / p->kv_heads;      \
        int64_t b = bkv / p->kv_heads, kvh = bkv % p->kv_heads, off = p->n_k - p->n_q;          \
        const attn_vis_t vis = problem_vis(p);                                                  \
        const T *K = (const T *)g->k + bkv * nk * d, *V = (const T *)g->v + bkv * nk * d;       \
        T *dK = (T *)g->dk + bkv * nk * d, *dV = (T *)g->dv + bkv * nk * d;                     \
        T scale = (T)problem_scale(p);                                                          \
        memset(dK, 0, sizeof(T) * (size_t)(nk * d));                                           \
        memset(dV, 0, sizeof(T) * (size_t)(nk * d));                                            \
        for (int64_t r = 0; r < nk; r++)                                                        \
            for (int64_t c = 0; c < d; c++) {                                                   \
                Kt[c * nk + r] = K[r * d + c];                                                  \
                Vt[c * nk + r] = V[r * d + c];                                                  \
            }                                                                                   \
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {                             \
            int64_t bh = b * p->heads + h;                                                      \
            const T *Q = (const T *)g->q + bh * nq * d, *O = (const T *)g->o + bh * nq * d;     \
            const T *dO = (const T *)g->d_o + bh * nq * d, *L = (const T *)g->lse + bh * nq;    \
            T *dQ = (T *)g->dq + bh * nq * d;                                                   \
            /* P = exp(Q·Kᵀ·s − LSE) on the keys each row sees, 0 elsewhere */                  \
            for (int64_t r = 0; r < nq; r++) {                                                  \
                T *pr = Pm + r * nk;                                                            \
                memset(pr, 0, sizeof(T) * (size_t)nk);                                          \
                for (int64_t c = 0; c < d; c++) {                                               \
                    T qc = Q[r * d + c];                                                        \
                    for (int64_t col = 0; col < nk; col++)                                      \
                        pr[col] += qc * Kt[c * nk + col];                                       \
                }                                                                               \
                for (int64_t col = 0; col < nk; col++)                                          \
                    pr[col] = L[r] != -INFINITY && mask_visible(&vis, off + r, col)            \
                                  ? EXP(pr[col] * scale - L[r]) * PFAC(pr[col] * scale, L[r])   \
                                  : 0;                                                          \
            }                                                                                   \
            /* dV += Pᵀ·dO */                                                                   \
            for (int64_t r = 0; r < nq; r++)                                                    \
                for (int64_t col = 0; col < nk; col++) {                                        \
                    T w = Pm[r * nk + col];                                                     \
                    if (L[r] != -INFINITY && mask_visible(&vis, off + r, col))                  \
                        for (int64_t c = 0; c < d; c++)                                         \
                            dV[col * d + c] += w * MAG(dO[r * d + c]);                               \
                }                                                                               \
            /* dS = P∘(dO·Vᵀ − D), in place of P */                                             \
            T *dp = Kt + d * nk * 2; /* one row of dP after Kᵀ and Vᵀ */                         \
            for (int64_t r = 0; r < nq; r++) {                                                  \
                T D = 0;                                                                        \
                for (int64_t c = 0; c < d; c++)                                                 \
                    D += MAG(dO[r * d + c]) * MAG(O[r * d + c]);                                          \
                memset(dp, 0, sizeof(T) * (size_t)nk);                                          \
                for (int64_t c = 0; c < d; c++) {                                               \
                    T gc = MAG(dO[r * d + c]);                                                       \
                    for (int64_t col = 0; col < nk; col++)                                      \
                        dp[col] += gc * MAG(Vt[c * nk + col]);                                       \
                }                                                                               \
                for (int64_t col = 0; col < nk; col++)                                          \
                    Pm[r * nk + col] = L[r] != -INFINITY && mask_visible(&vis, off + r, col)    \
                                           ? Pm[r * nk + col] * (dp[col] COMB D)                \
                                           : 0;                                                 \
            }                                                                                   \
            /* dQ = s·dS·K, dK += s·dSᵀ·Q */                                                    \
            for (int64_t r = 0; r < nq; r++) {                                                  \
                T *dq = dQ + r * d;                                                             \
                memset(dq, 0, sizeof(T) * (size_t)d);                                           \
                for (int64_t col = 0; col < nk; col++) {                                        \
                    T w = Pm[r * nk + col] * scale;                                             \
                    if (L[r] == -INFINITY || !mask_visible(&vis, off + r, col))                 \
                        continue;                                                               \
                    for (int64_t c = 0; c < d; c++) {                                           \
                        dq[c] += w * MAG(K[col * d + c]);                                            \
                        dK[col * d + c] += w * MAG(Q[r * d + c]);                                    \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

#define NAIVE_SAME(x) (x)
#define NAIVE_ONE(a, b) 1
NAIVE_GRAD_HEAD(float, float, expf, NAIVE_SAME, -, NAIVE_ONE)
NAIVE_GRAD_HEAD(double, double, exp, NAIVE_SAME, -, NAIVE_ONE)
/* The magnitudes the rounding errors scale with (docs/backward.md): every product of the
 * formulas taken in absolute value, dP − D as |dP| + |D|, and P as P·(1 + |S·s| + |LSE|) (the
 * rounding of exp's argument, relative to P, grows with the argument's terms). */
#define NAIVE_PFAC(a, b) (1 + fabs(a) + fabs(b))
NAIVE_GRAD_HEAD(magnitude, double, exp, fabs, +, NAIVE_PFAC)

static size_t naive_grad_scratch_bytes(const attn_problem_t *p) {
    size_t s = attn_size_mul(attn_size_i64(p->n_q), attn_size_i64(p->n_k));
    size_t t = attn_size_prod4(2 * p->head_dim + 1, p->n_k, 1, 1);
    return attn_size_mul(attn_size_add(s, t), dtype_size(p->dtype));
}

static int naive_grad_workers(const attn_problem_t *p, int threads) {
    return (int)ATTN_MIN((int64_t)threads_resolve(threads), p->batch * p->kv_heads);
}

static void naive_grad_item(void *ctx, int64_t bkv, int worker) {
    const naive_grad_job_t *j = ctx;
    size_t s_elems = (size_t)(j->p->n_q * j->p->n_k), t_elems = (size_t)(j->p->head_dim * j->p->n_k);
    if (j->p->dtype == ATTN_F64) {
        double *S = j->scratch[worker];
        if (j->magnitude)
            naive_grad_kv_magnitude(j, bkv, S, S + s_elems, S + s_elems + t_elems);
        else
            naive_grad_kv_double(j, bkv, S, S + s_elems, S + s_elems + t_elems);
    } else {
        float *S = j->scratch[worker];
        naive_grad_kv_float(j, bkv, S, S + s_elems, S + s_elems + t_elems);
    }
}

static int naive_grad_run(const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g, int magnitude,
                          attn_err_t *err) {
    int workers = naive_grad_workers(p, x->threads);
    void *scratch[workers];
    int rc = ATTN_OK, got = 0;
    for (; got < workers; got++)
        if (!(scratch[got] = attn_alloc(naive_grad_scratch_bytes(p), err, "naive backward score matrix"))) {
            rc = ATTN_ERUNTIME;
            break;
        }
    naive_grad_job_t job = {.p = p, .g = g, .magnitude = magnitude, .scratch = scratch};
    if (rc == ATTN_OK)
        parallel_for(workers, p->batch * p->kv_heads, naive_grad_item, &job);
    for (int w = 0; w < got; w++)
        attn_free(scratch[w]);
    return rc;
}

int naive_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g,
                   attn_err_t *err) {
    (void)self;
    return naive_grad_run(p, x, g, 0, err);
}

int naive_backward_magnitude(const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g, attn_err_t *err) {
    ATTN_ASSERT(p->dtype == ATTN_F64);
    return naive_grad_run(p, x, g, 1, err);
}

size_t naive_backward_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    return attn_size_mul((size_t)naive_grad_workers(p, x->threads), naive_grad_scratch_bytes(p));
}
