/* model_backward.c — see model_backward.h. The reference is the float64 model (naive float64
 * attention); the yardstick the float32 model with naive attention; a backend passes within
 * tolerance_model_rel_l2 (4×) of the yardstick's relative L2, the forward's rule. */
#include "tasks/model_backward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/threads.h"
#include "core/timing.h"
#include "model/backward.h"
#include "tasks/tolerance.h"

enum { MAX_LOSS_POS = 8, RNG_TENSOR_TOKENS = 900, RNG_LOSS_POS = 901, RNG_LOSS_TARGET = 902 };

void model_task_tokens(uint64_t seed, int vocab, int64_t n, int32_t *tok) {
    for (int64_t i = 0; i < n; i++) /* rng_value is uniform on ±√3: shifted and scaled to [0, vocab) */
        tok[i] = (int32_t)fmin(vocab - 1, (rng_value(seed, RNG_TENSOR_TOKENS, (uint64_t)i) / 3.4641016151377544 + 0.5) * vocab);
}

static double rel_l2(const double *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = isfinite(a[i]) ? a[i] - ref[i] : INFINITY;
        num += d * d, den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static int run_one(const model_t *m, const attn_backend_t *be, const attn_problem_t *tmpl, const attn_exec_t *x,
                   const double *emb, int64_t n, const model_loss_t *loss, double *l, double *d, attn_err_t *err) {
    model_attn_t att = {be, tmpl, x};
    return model_loss_backward(m, &att, emb, n, loss, l, d, err);
}

int model_backward_case(const model_t *m, const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x,
                        int index, int count, attn_run_t *run, attn_err_t *err) {
    const model_config_t *c = &m->cfg;
    int64_t n = p->n_k, D = c->hidden_size, K = n < MAX_LOSS_POS ? n : MAX_LOSS_POS;
    size_t nd = (size_t)(n * D);
    int32_t *tok = malloc((size_t)n * sizeof *tok), target[MAX_LOSS_POS];
    int64_t pos[MAX_LOSS_POS];
    double *emb = malloc(nd * sizeof *emb), *ref = malloc(nd * sizeof *ref), *base = malloc(nd * sizeof *base),
           *got = malloc(nd * sizeof *got);
    if (!tok || !emb || !ref || !base || !got) {
        free(tok), free(emb), free(ref), free(base), free(got);
        return attn_fail(err, ATTN_ERUNTIME, "out of memory for %lld tokens' embedding gradients", (long long)n);
    }
    model_task_tokens(o->seed, c->vocab_size, n, tok);
    pos[0] = n - 1; /* the last row, then seeded ones (a repeat sums, as it should) */
    for (int64_t j = 0; j < K; j++) {
        if (j > 0)
            pos[j] = (int64_t)(rng_u64(o->seed, RNG_LOSS_POS, (uint64_t)j) % (uint64_t)n);
        target[j] = (int32_t)(rng_u64(o->seed, RNG_LOSS_TARGET, (uint64_t)j) % (uint64_t)c->vocab_size);
    }
    model_loss_t loss = {K, pos, target};
    int rc = model_embed_rows(m, tok, n, emb, err);
    attn_problem_t mp = *p; /* the model's attention problem, for supports() and the records */
    mp.heads = c->num_attention_heads, mp.kv_heads = c->num_key_value_heads, mp.head_dim = c->head_dim;
    mp.n_q = n, mp.batch = 1;
    attn_problem_t p64 = mp, p32 = mp;
    p64.dtype = ATTN_F64, p32.dtype = ATTN_F32;
    attn_exec_t one = *x;
    one.ranks = 1;
    const attn_backend_t *naive = registry_find("naive");
    char why[1024] = "";
    int have_ref = mp.dtype == ATTN_F32;
    if (!have_ref)
        snprintf(why, sizeof why, "the model's backward runs in f32 (against f64), not %s", dtype_name(mp.dtype));
    else
        have_ref = backend_supports_backward(naive, &p64, &one, why, sizeof why) &&
                   backend_supports_backward(naive, &p32, &one, why, sizeof why);
    double e0 = 0, l64 = 0;
    attn_err_t rerr = {0};
    int threads = exec_threads(x);
    parallel_set_blas_threads(threads);
    if (rc == ATTN_OK && have_ref) {
        task_progress(index + 1, count, "model backward reference (float64) n=%lld mask=%s", (long long)n,
                      mask_name(p->mask));
        if (run_one(m, naive, &p64, &one, emb, n, &loss, &l64, ref, &rerr) != ATTN_OK ||
            run_one(m, naive, &p32, &one, emb, n, &loss, NULL, base, &rerr) != ATTN_OK) {
            have_ref = 0;
            snprintf(why, sizeof why, "no float64 model gradient: %.900s", rerr.msg);
        } else {
            e0 = rel_l2(base, ref, nd);
        }
    }
    for (int b = 0; rc == ATTN_OK && b < o->n_backends; b++) {
        const attn_backend_t *be = registry_find(o->backends[b]);
        attn_record_t *r;
        if (!task_start_backward(run, o, "model", be, &mp, x, index, count, &r))
            continue;
        record_extra_num(r, "layers", c->num_hidden_layers);
        record_extra_num(r, "hidden", c->hidden_size);
        record_extra_num(r, "vocab", c->vocab_size);
        if (!have_ref) {
            record_set_status(r, REC_SKIPPED, "%s", why);
            continue;
        }
        attn_err_t berr = {0};
        double l32 = 0, t0 = time_now_s();
        if (run_one(m, be, &p32, x, emb, n, &loss, &l32, got, &berr) != ATTN_OK) {
            record_set_status(r, REC_ERROR, "%s", berr.msg);
            continue;
        }
        record_metric(r, "time_s", time_now_s() - t0, "s");
        double e = rel_l2(got, ref, nd), tol = tolerance_model_rel_l2(ATTN_F32, e0);
        record_metric(r, "loss_positions", (double)K, "1");
        record_metric(r, "loss", l32, "1");
        record_metric(r, "loss_f64", l64, "1");
        record_metric(r, "d_emb_rel_l2_err", e, "1");
        record_metric(r, "naive_f32_d_emb_rel_l2", e0, "1");
        if (be->approximate) { /* what it loses, no verdict (docs/approximate.md) */
            record_set_status(r, REC_APPROXIMATE, NULL);
            continue;
        }
        record_metric(r, "tol_d_emb_rel_l2", tol, "1");
        if (!(e <= tol))
            record_set_status(r, REC_FAIL, "embedding gradient rel L2 %.3g > %.3g (%.0f × the naive f32 model's %.3g)", e,
                              tol, tolerance_model_rel_l2(ATTN_F32, 1.0), e0);
    }
    free(tok), free(emb), free(ref), free(base), free(got);
    return rc;
}
