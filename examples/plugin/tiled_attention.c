/* tiled_attention.c — an example attnbench plugin (include/attnbench/backend.h, ABI 1): plain
 * tiled attention with an online softmax, one query row at a time against key tiles of block_k
 * rows, and a plain-loop backward; float64 accumulation, f32 and f64, packed documents through
 * attnb_visible. Build: cc -shared -fPIC -I include tiled_attention.c -o tiled.so -lm; run:
 * attnbench run --plugin ./tiled.so --backends tiled_example ... */
#include <attnbench/backend.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#ifndef TILED_BACKEND_NAME /* the tests build a second copy under the same name: a duplicate */
#define TILED_BACKEND_NAME "tiled_example"
#endif

static int64_t tile_k(const attnb_problem_t *p) { return p->block_k > 0 ? p->block_k : 64; }

static int tiled_supports(const attnb_problem_t *p, char *reason, size_t len) {
    if (p->dtype != ATTNB_F32 && p->dtype != ATTNB_F64) {
        snprintf(reason, len, "computes in f32 or f64 only (no bf16)");
        return 0;
    }
    return 1;
}

/* One tile of scores and one output row, in double. */
static size_t tiled_workspace(const attnb_problem_t *p) {
    return (size_t)(tile_k(p) + p->head_dim) * sizeof(double);
}

static double at(const void *x, int f64, size_t i) { return f64 ? ((const double *)x)[i] : ((const float *)x)[i]; }

static int tiled_forward(const attnb_problem_t *p, attnb_call_t *c, char *msg, size_t len) {
    if (!c->workspace || c->workspace_bytes < tiled_workspace(p)) {
        snprintf(msg, len, "workspace of %zu bytes, needed %zu", c->workspace_bytes, tiled_workspace(p));
        return 1;
    }
    const int f64 = p->dtype == ATTNB_F64;
    const int64_t d = p->head_dim, bk = tile_k(p), group = p->heads / p->kv_heads;
    double *s = c->workspace, *acc = s + bk;
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t h = 0; h < p->heads; h++) {
            size_t qo = (size_t)((b * p->heads + h) * p->n_q) * d; /* Q, O (B, H, n_q, d) */
            size_t ko = (size_t)((b * p->kv_heads + h / group) * p->n_k) * d; /* K, V (B, H_kv, n_k, d) */
            for (int64_t r = 0; r < p->n_q; r++) {
                double m = -INFINITY, l = 0; /* running max and sum of exp(score − m) */
                memset(acc, 0, (size_t)d * sizeof *acc);
                for (int64_t t0 = 0; t0 < p->n_k; t0 += bk) {
                    int64_t t1 = t0 + bk < p->n_k ? t0 + bk : p->n_k;
                    double tile_max = -INFINITY;
                    for (int64_t j = t0; j < t1; j++) {
                        double dot = 0;
                        for (int64_t e = 0; e < d; e++)
                            dot += at(c->q, f64, qo + r * d + e) *
                                   at(c->k, f64, ko + j * d + e);
                        s[j - t0] = attnb_visible(p, r, j) ? dot * p->scale : -INFINITY;
                        tile_max = s[j - t0] > tile_max ? s[j - t0] : tile_max;
                    }
                    if (tile_max == -INFINITY)
                        continue; /* nothing visible in this tile */
                    double m_new = tile_max > m ? tile_max : m, rescale = exp(m - m_new);
                    l *= rescale;
                    for (int64_t e = 0; e < d; e++)
                        acc[e] *= rescale;
                    for (int64_t j = t0; j < t1; j++) {
                        double w = exp(s[j - t0] - m_new);
                        l += w;
                        for (int64_t e = 0; e < d; e++)
                            acc[e] += w * at(c->v, f64, ko + j * d + e);
                    }
                    m = m_new;
                }
                size_t row = (size_t)((b * p->heads + h) * p->n_q + r);
                double lse = l > 0 ? m + log(l) : -INFINITY;
                for (int64_t e = 0; e < d; e++) {
                    double o = l > 0 ? acc[e] / l : 0;
                    if (f64)
                        ((double *)c->o)[row * d + e] = o;
                    else
                        ((float *)c->o)[row * d + e] = (float)o;
                }
                if (f64)
                    ((double *)c->lse)[row] = lse;
                else
                    ((float *)c->lse)[row] = (float)lse;
            }
        }
    return 0;
}

#ifndef TILED_FORWARD_ONLY /* the tests build one copy without a backward, which must decline */
static void put(void *x, int f64, size_t i, double v) {
    if (f64)
        ((double *)x)[i] = v;
    else
        ((float *)x)[i] = (float)v;
}

/* dK and dV of one kv head (summed over its group's query heads), then one dQ row, in double. */
static size_t tiled_backward_workspace(const attnb_problem_t *p) {
    return (size_t)(2 * p->n_k + 1) * (size_t)p->head_dim * sizeof(double);
}

/* The backward from its definition (header, attnb_grad_call_t), row by row: P from the
 * forward's LSE, D = rowsum(dO ∘ O), then dS = P(dP − D) feeds dQ, dK; P feeds dV. */
static int tiled_backward(const attnb_problem_t *p, attnb_grad_call_t *c, char *msg, size_t len) {
    if (!c->workspace || c->workspace_bytes < tiled_backward_workspace(p)) {
        snprintf(msg, len, "backward workspace of %zu bytes, needed %zu", c->workspace_bytes,
                 tiled_backward_workspace(p));
        return 1;
    }
    const int f64 = p->dtype == ATTNB_F64;
    const int64_t d = p->head_dim, nk = p->n_k, group = p->heads / p->kv_heads;
    double *dk = c->workspace, *dv = dk + nk * d, *dq = dv + nk * d;
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t kh = 0; kh < p->kv_heads; kh++) {
            size_t ko = (size_t)((b * p->kv_heads + kh) * nk) * d;
            memset(dk, 0, (size_t)(2 * nk * d) * sizeof *dk);
            for (int64_t h = kh * group; h < (kh + 1) * group; h++)
                for (int64_t r = 0; r < p->n_q; r++) {
                    size_t row = (size_t)((b * p->heads + h) * p->n_q + r), qo = row * d;
                    double lse = at(c->lse, f64, row), dsum = 0;
                    memset(dq, 0, (size_t)d * sizeof *dq);
                    for (int64_t e = 0; e < d && lse != -INFINITY; e++)
                        dsum += at(c->d_o, f64, qo + e) * at(c->o, f64, qo + e);
                    for (int64_t j = 0; j < nk && lse != -INFINITY; j++) {
                        if (!attnb_visible(p, r, j))
                            continue;
                        double s = 0, dp = 0;
                        for (int64_t e = 0; e < d; e++) {
                            s += at(c->q, f64, qo + e) * at(c->k, f64, ko + j * d + e);
                            dp += at(c->d_o, f64, qo + e) * at(c->v, f64, ko + j * d + e);
                        }
                        double pr = exp(s * p->scale - lse), ds = pr * (dp - dsum) * p->scale;
                        for (int64_t e = 0; e < d; e++) {
                            dv[j * d + e] += pr * at(c->d_o, f64, qo + e);
                            dk[j * d + e] += ds * at(c->q, f64, qo + e);
                            dq[e] += ds * at(c->k, f64, ko + j * d + e);
                        }
                    }
                    for (int64_t e = 0; e < d; e++)
                        put(c->dq, f64, qo + e, dq[e]);
                }
            for (int64_t i = 0; i < nk * d; i++) {
                put(c->dk, f64, ko + i, dk[i]);
                put(c->dv, f64, ko + i, dv[i]);
            }
        }
    return 0;
}
#endif

static const attnb_backend_t backends[] = {{
    .name = TILED_BACKEND_NAME,
    .device = "cpu",
    .description = "example plugin (examples/plugin): tiled attention, online softmax, loop backward, "
                   "documents; f64 accumulation",
    .supports = tiled_supports,
    .workspace = tiled_workspace,
    .forward = tiled_forward,
#ifndef TILED_FORWARD_ONLY
    .backward = tiled_backward,
    .backward_workspace = tiled_backward_workspace,
#endif
}};

#ifndef TILED_ABI_VERSION /* the tests build one copy with a wrong version, which must be refused */
#define TILED_ABI_VERSION ATTNBENCH_ABI_VERSION
#endif
static const attnb_plugin_t plugin = {
    .abi_version = TILED_ABI_VERSION,
    .name = "tiled_example",
    .version = "1.0",
    .n_backends = 1,
    .backends = backends,
};

const attnb_plugin_t *attnbench_plugin(void) { return &plugin; }
