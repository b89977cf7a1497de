/* grad_check.c — see grad_check.h. */
#include "tasks/grad_check.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "core/timing.h"
#include "impls/cpu/naive.h"
#include "model/model.h" /* model_round_bf16 */

int grad_reference_fits(const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    attn_problem_t p64 = *p;
    p64.dtype = ATTN_F64;
    char why[512];
    if (backend_supports_backward(registry_find("naive"), &p64, x, why, sizeof why))
        return 1;
    snprintf(reason, len, "no float64 gradient reference: %.400s", why);
    return 0;
}

static double *widen(const float *x, size_t n, attn_err_t *err, const char *what) {
    double *y = attn_alloc(n * sizeof(double) + 1, err, what);
    for (size_t i = 0; y && i < n; i++)
        y[i] = x[i];
    return y;
}

static double l2(const double *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i] * x[i];
    return sqrt(s);
}

static double abs_max(const double *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = isfinite(x[i]) ? fmax(m, fabs(x[i])) : m;
    return m;
}

/* naive's forward then backward in the dtype of p on the given inputs (of that dtype). */
static int naive_both(const attn_problem_t *p, const attn_exec_t *x, const void *q, const void *k, const void *v,
                      const void *d_o, void *dq, void *dk, void *dv, grad_reference_t *mag, attn_err_t *err) {
    const attn_backend_t *nb = registry_find("naive");
    size_t es = dtype_size(p->dtype);
    void *o = attn_alloc(problem_numel_q(p) * es + 1, err, "naive O");
    void *lse = attn_alloc(problem_numel_lse(p) * es + 1, err, "naive LSE");
    int rc = o && lse ? ATTN_OK : ATTN_ERUNTIME;
    attn_io_t io = {.q = q, .k = k, .v = v, .o = o, .lse = lse};
    if (rc == ATTN_OK)
        rc = nb->forward(nb, p, x, &io, err);
    attn_grad_io_t g = {.q = q, .k = k, .v = v, .o = o, .lse = lse, .d_o = d_o, .dq = dq, .dk = dk, .dv = dv};
    if (rc == ATTN_OK)
        rc = nb->backward(nb, p, x, &g, err);
    if (rc == ATTN_OK && mag) { /* the error scales, in dQ/dK/dV's place after their norms are taken */
        size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p);
        mag->ref_l2[0] = l2(dq, nq), mag->ref_l2[1] = l2(dk, nkv), mag->ref_l2[2] = l2(dv, nkv);
        size_t n3[3] = {nq, nkv, nkv};
        double *m3[3] = {attn_alloc(nq * sizeof(double) + 1, err, "dQ error scale"),
                         attn_alloc(nkv * sizeof(double) + 1, err, "dK error scale"),
                         attn_alloc(nkv * sizeof(double) + 1, err, "dV error scale")};
        g.dq = m3[0], g.dk = m3[1], g.dv = m3[2];
        rc = m3[0] && m3[1] && m3[2] ? naive_backward_magnitude(p, x, &g, err) : ATTN_ERUNTIME;
        for (int i = 0; i < 3 && rc == ATTN_OK; i++)
            mag->mag_l2[i] = l2(m3[i], n3[i]), mag->mag_max[i] = abs_max(m3[i], n3[i]);
        for (int i = 0; i < 3; i++)
            attn_free(m3[i]);
    }
    attn_free(o), attn_free(lse);
    return rc;
}

int grad_reference_prepare(const attn_problem_t *p_in, const attn_exec_t *x, uint64_t seed, grad_reference_t *g,
                           attn_err_t *err) {
    memset(g, 0, sizeof *g);
    g->p = *p_in;
    g->p.dtype = ATTN_F32;
    attn_problem_t *p = &g->p, p64 = *p;
    p64.dtype = ATTN_F64;
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p);
    ATTN_TRY(tensors_alloc(p, 1, seed, &g->in, err));
    g->d_o = attn_alloc(nq * sizeof(float) + 1, err, "dO");
    g->dq = attn_alloc(nq * sizeof(double) + 1, err, "reference dQ");
    g->dk = attn_alloc(nkv * sizeof(double) + 1, err, "reference dK");
    g->dv = attn_alloc(nkv * sizeof(double) + 1, err, "reference dV");
    float *dq32 = attn_alloc(nq * sizeof(float) + 1, err, "naive f32 dQ");
    float *dk32 = attn_alloc(nkv * sizeof(float) + 1, err, "naive f32 dK");
    float *dv32 = attn_alloc(nkv * sizeof(float) + 1, err, "naive f32 dV");
    double *q64 = NULL, *k64 = NULL, *v64 = NULL, *do64 = NULL;
    int rc = g->d_o && g->dq && g->dk && g->dv && dq32 && dk32 && dv32 ? ATTN_OK : ATTN_ERUNTIME;
    if (rc == ATTN_OK) {
        rng_fill(g->d_o, ATTN_F32, seed, RNG_TENSOR_DO, p->batch * p->heads, p->n_q, problem_q_span(p), p->n_k,
                 p->head_dim);
        q64 = widen(g->in.q, nq, err, "Q f64"), k64 = widen(g->in.k, nkv, err, "K f64");
        v64 = widen(g->in.v, nkv, err, "V f64"), do64 = widen(g->d_o, nq, err, "dO f64");
        rc = q64 && k64 && v64 && do64 ? ATTN_OK : ATTN_ERUNTIME;
    }
    if (rc == ATTN_OK)
        rc = naive_both(&p64, x, q64, k64, v64, do64, g->dq, g->dk, g->dv, g, err);
    if (rc == ATTN_OK)
        rc = naive_both(p, x, g->in.q, g->in.k, g->in.v, g->d_o, dq32, dk32, dv32, NULL, err);
    if (rc == ATTN_OK) {
        g->naive32 = grad_errors(g, dq32, dk32, dv32);
    }
    attn_free(q64), attn_free(k64), attn_free(v64), attn_free(do64);
    attn_free(dq32), attn_free(dk32), attn_free(dv32);
    if (rc != ATTN_OK)
        grad_reference_free(g);
    return rc;
}

void grad_reference_free(grad_reference_t *g) {
    tensors_free(&g->in);
    attn_free(g->d_o), attn_free(g->dq), attn_free(g->dk), attn_free(g->dv);
    memset(g, 0, sizeof *g);
}

int grad_run_backend(const attn_backend_t *be, const attn_exec_t *x, const grad_reference_t *g, float *dq, float *dk,
                     float *dv, double *fwd_s, double *bwd_s, attn_dist_stats_t *dist, attn_err_t *err) {
    const attn_problem_t *p = &g->p;
    float *o = attn_alloc(problem_numel_q(p) * sizeof(float) + 1, err, "O");
    float *lse = attn_alloc(problem_numel_lse(p) * sizeof(float) + 1, err, "LSE");
    int rc = o && lse ? ATTN_OK : ATTN_ERUNTIME;
    attn_io_t io = {.q = g->in.q, .k = g->in.k, .v = g->in.v, .o = o, .lse = lse};
    double t0 = time_now_s();
    if (rc == ATTN_OK)
        rc = be->forward(be, p, x, &io, err);
    double t1 = time_now_s();
    attn_grad_io_t gio = {.q = g->in.q, .k = g->in.k, .v = g->in.v, .o = o, .lse = lse, .d_o = g->d_o,
                          .dq = dq, .dk = dk, .dv = dv, .dist = dist};
    if (rc == ATTN_OK)
        rc = be->backward(be, p, x, &gio, err);
    if (fwd_s)
        *fwd_s = t1 - t0;
    if (bwd_s)
        *bwd_s = time_now_s() - t1;
    attn_free(o), attn_free(lse);
    return rc;
}

static attn_errors_t measure(const float *x, const double *ref, size_t n) {
    attn_errors_t e = {0};
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double diff = isfinite(x[i]) ? fabs(x[i] - ref[i]) : INFINITY;
        e.max_abs = fmax(e.max_abs, diff);
        num += diff * diff;
        den += ref[i] * ref[i];
    }
    e.rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
    return e;
}

attn_grad_errors_t grad_errors(const grad_reference_t *g, const float *dq, const float *dk, const float *dv) {
    size_t nq = problem_numel_q(&g->p), nkv = problem_numel_kv(&g->p);
    return (attn_grad_errors_t){measure(dq, g->dq, nq), measure(dk, g->dk, nkv), measure(dv, g->dv, nkv)};
}

/* docs/backward.md. m is an element's error scale (naive_backward_magnitude): any float32
 * algorithm rounds dP and D to float32 before dS = P∘(dP − D), which alone costs up to ε·m, so
 * one ε·m is the floor of every backend. Naive float32 is bounded a priori by (2 + √N)·ε·m with
 * N the longest sum behind the gradient (n_k for dQ, group·n_q for dK and dV; √N: the
 * rounding of long sums grows like a random walk); every other float32 backend by 4× naive
 * float32's own error in the same case plus the ε·m floor, as the forward's table does. In rel
 * L2 the floor is ε·‖m‖/‖ref‖: a gradient that cancels (‖ref‖ ≪ ‖m‖) gets the room its inputs
 * leave, and no more. */
static attn_errors_t bound_one(int naive, const attn_errors_t *n32, double N, const grad_reference_t *g, int i) {
    double ulps = naive ? 2.0 + sqrt(N) : 1.0, factor = naive ? 0.0 : 4.0;
    double floor_eps = ulps * FLT_EPSILON, ref = g->ref_l2[i] > 0 ? g->ref_l2[i] : 1e-300;
    return (attn_errors_t){.max_abs = factor * n32->max_abs + floor_eps * g->mag_max[i],
                           .rel_l2 = factor * n32->rel_l2 + floor_eps * fmin(g->mag_l2[i] / ref, 1e300)};
}

attn_grad_errors_t grad_tolerance(const char *backend, const grad_reference_t *g) {
    const attn_problem_t *p = &g->p;
    int naive = !strcmp(backend, "naive");
    double group = (double)(p->heads / p->kv_heads);
    return (attn_grad_errors_t){bound_one(naive, &g->naive32.dq, (double)p->n_k, g, 0),
                                bound_one(naive, &g->naive32.dk, group * (double)p->n_q, g, 1),
                                bound_one(naive, &g->naive32.dv, group * (double)p->n_q, g, 2)};
}

int grad_within(const attn_grad_errors_t *e, const attn_grad_errors_t *b) {
    return errors_within(&e->dq, &b->dq) && errors_within(&e->dk, &b->dk) && errors_within(&e->dv, &b->dv);
}

/* docs/backward.md, GPU section: the rounding is the case's 16-bit type (bf16 or f16). */
static double round16(attn_dtype_t t, double x) { return model_round_dtype(t, (float)x); }

int grad_bf16_baseline(const grad_reference_t *g, attn_grad_errors_t *out, attn_err_t *err) {
    return grad_baseline16(g, ATTN_BF16, out, err);
}

int grad_baseline16(const grad_reference_t *g, attn_dtype_t t, attn_grad_errors_t *out, attn_err_t *err) {
    if (!dtype_is_16bit(t))
        return attn_fail(err, ATTN_EUSAGE, "the 16-bit gradient baseline takes bf16 or f16 (got %s)", dtype_name(t));
    const attn_problem_t *p = &g->p;
    attn_vis_t vis = problem_vis(p);
    int64_t d = p->head_dim, nq = p->n_q, nk = p->n_k, group = p->heads / p->kv_heads, off = nk - nq;
    size_t nqe = problem_numel_q(p), nkv = problem_numel_kv(p);
    double s = problem_scale(p);
    double *P = attn_alloc(sizeof(double) * (size_t)nk + 8, err, "bf16 baseline P row");
    double *O = attn_alloc(sizeof(double) * (size_t)d + 8, err, "bf16 baseline O row");
    float *dq = attn_alloc(sizeof(float) * nqe + 4, err, "bf16 baseline dQ");
    float *dk = attn_alloc(sizeof(float) * nkv + 4, err, "bf16 baseline dK");
    float *dv = attn_alloc(sizeof(float) * nkv + 4, err, "bf16 baseline dV");
    double *dq64 = attn_alloc(sizeof(double) * nqe + 8, err, "bf16 baseline dQ (f64)");
    double *dk64 = attn_alloc(sizeof(double) * nkv + 8, err, "bf16 baseline dK (f64)");
    double *dv64 = attn_alloc(sizeof(double) * nkv + 8, err, "bf16 baseline dV (f64)");
    if (!P || !O || !dq || !dk || !dv || !dq64 || !dk64 || !dv64) {
        attn_free(P), attn_free(O), attn_free(dq), attn_free(dk), attn_free(dv);
        attn_free(dq64), attn_free(dk64), attn_free(dv64);
        return ATTN_ERUNTIME;
    }
    memset(dq64, 0, sizeof(double) * nqe), memset(dk64, 0, sizeof(double) * nkv), memset(dv64, 0, sizeof(double) * nkv);
    const float *q = g->in.q, *k = g->in.k, *v = g->in.v;
    for (int64_t bh = 0; bh < p->batch * p->heads; bh++) {
        int64_t bkv = (bh / p->heads) * p->kv_heads + (bh % p->heads) / group;
        const float *K = k + bkv * nk * d, *V = v + bkv * nk * d;
        for (int64_t r = 0; r < nq; r++) {
            const float *Q = q + (bh * nq + r) * d, *G = g->d_o + (bh * nq + r) * d;
            double mx = -INFINITY, l = 0, D = 0, lse;
            for (int64_t j = 0; j < nk; j++) {
                double x = 0;
                for (int64_t c = 0; c < d; c++)
                    x += round16(t, Q[c]) * round16(t, K[j * d + c]);
                P[j] = mask_visible(&vis, off + r, j) ? x * s : -INFINITY;
                mx = fmax(mx, P[j]);
            }
            for (int64_t j = 0; j < nk; j++)
                l += P[j] == -INFINITY ? 0 : exp(P[j] - mx);
            lse = mx + log(l);
            for (int64_t j = 0; j < nk; j++)
                P[j] = P[j] == -INFINITY ? 0 : exp(P[j] - lse);
            for (int64_t c = 0; c < d; c++) {
                O[c] = 0;
                for (int64_t j = 0; j < nk; j++)
                    O[c] += round16(t, P[j]) * round16(t, V[j * d + c]);
                D += O[c] * round16(t, G[c]);
            }
            for (int64_t j = 0; j < nk; j++) {
                if (P[j] == 0)
                    continue;
                double dp = 0;
                for (int64_t c = 0; c < d; c++)
                    dp += round16(t, G[c]) * round16(t, V[j * d + c]),
                        dv64[(bkv * nk + j) * d + c] += round16(t, P[j]) * round16(t, G[c]);
                double ds = round16(t, P[j] * (dp - D));
                for (int64_t c = 0; c < d; c++) {
                    dq64[(bh * nq + r) * d + c] += s * ds * round16(t, K[j * d + c]);
                    dk64[(bkv * nk + j) * d + c] += s * ds * round16(t, Q[c]);
                }
            }
        }
    }
    for (size_t i = 0; i < nqe; i++)
        dq[i] = (float)dq64[i];
    for (size_t i = 0; i < nkv; i++)
        dk[i] = (float)dk64[i], dv[i] = (float)dv64[i];
    *out = grad_errors(g, dq, dk, dv);
    attn_free(P), attn_free(O), attn_free(dq), attn_free(dk), attn_free(dv);
    attn_free(dq64), attn_free(dk64), attn_free(dv64);
    return ATTN_OK;
}

static attn_errors_t bound_bf16(const attn_errors_t *base, const grad_reference_t *g, int i) {
    double ref = g->ref_l2[i] > 0 ? g->ref_l2[i] : 1e-300;
    return (attn_errors_t){.max_abs = 2 * base->max_abs + 4 * FLT_EPSILON * g->mag_max[i],
                           .rel_l2 = 2 * base->rel_l2 + 4 * FLT_EPSILON * fmin(g->mag_l2[i] / ref, 1e300)};
}

attn_grad_errors_t grad_tolerance_bf16(const grad_reference_t *g, const attn_grad_errors_t *base) {
    return (attn_grad_errors_t){bound_bf16(&base->dq, g, 0), bound_bf16(&base->dk, g, 1), bound_bf16(&base->dv, g, 2)};
}
