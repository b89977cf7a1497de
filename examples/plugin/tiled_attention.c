/* tiled_attention.c — an example attnbench plugin (include/attnbench/backend.h): plain tiled
 * attention with an online softmax, one query row at a time against key tiles of block_k rows,
 * float64 accumulation, f32 and f64. Build: cc -shared -fPIC -I include tiled_attention.c -o
 * tiled.so -lm; run: attnbench run --plugin ./tiled.so --backends tiled_example ... */
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

static const attnb_backend_t backends[] = {{
    .name = TILED_BACKEND_NAME,
    .device = "cpu",
    .description = "example plugin (examples/plugin): tiled attention, online softmax, f64 accumulation",
    .supports = tiled_supports,
    .workspace = tiled_workspace,
    .forward = tiled_forward,
}};

#ifndef TILED_ABI_VERSION /* the tests build one copy with a wrong version, which must be refused */
#define TILED_ABI_VERSION ATTNBENCH_ABI_VERSION
#endif
static const attnb_plugin_t plugin = {
    .abi_version = TILED_ABI_VERSION,
    .name = "tiled_example",
    .version = "0.1",
    .n_backends = 1,
    .backends = backends,
};

const attnb_plugin_t *attnbench_plugin(void) { return &plugin; }
