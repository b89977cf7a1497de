/* needle_run.c — running one needle prompt (needle_run.h): the context through the model, then
 * each question with greedy decoding of the value. */
#include "tasks/needle_run.h"
#include "impls/parallel/dist_model.h"

#include <stdlib.h>
#include <string.h>

#include "core/timing.h"

static int32_t argmax(const double *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

int needle_cache_init(const model_t *m, const needle_prompt_t *pr, attn_dtype_t dtype,
                      const model_memspace_t *space, model_cache_t *cache, attn_err_t *err) {
    return model_cache_init_in(cache, &m->cfg, dtype_is_16bit(dtype) ? dtype : ATTN_F32, pr->n + NEEDLE_VALUE_LEN,
                               space, err);
}

int needle_context(const model_t *m, const needle_margins_t *mg, const needle_prompt_t *pr,
                   const needle_run_opts_t *ro, model_cache_t *cache, double *seconds, attn_err_t *err) {
    if (pr->n + NEEDLE_VALUE_LEN > mg->n_max)
        return attn_fail(err, ATTN_EUSAGE, "needle: a %lld-token prompt needs a model built for ≥ %lld positions (%lld)",
                         (long long)pr->n, (long long)(pr->n + NEEDLE_VALUE_LEN), (long long)mg->n_max);
    double t0 = time_now_s();
    cache->len = 0;
    int rc;
    if (ro->mode == NEEDLE_PREFILL) { /* one logit row: the last layer's attention runs everywhere */
        double *logits = malloc((size_t)m->cfg.vocab_size * sizeof *logits);
        model_t md = *m; /* the same weights, dense layers where the backend's attention is */
        md.dense = ro->dense, md.devops = ro->devops;
        rc = logits ? dist_model_run(&md, cache, ro->be, &ro->tmpl, &ro->x, pr->ctx, pr->n_ctx, 1, logits, err)
                    : attn_fail(err, ATTN_ERUNTIME, "needle: out of memory");
        free(logits);
    } else {
        /* The band on the host in float32 (host dense layers), or with ro->band in the run's
         * dtype and ro->dense: on the GPU, where a device cache is. */
        const attn_backend_t *band = ro->band ? ro->band : registry_find("sliding_window");
        ATTN_ASSERT(band && m->cfg.num_hidden_layers == 2);
        attn_problem_t bt = {0};
        bt.mask = ATTN_MASK_WINDOW, bt.window = mg->band;
        bt.dtype = ro->band ? cache->dtype : ATTN_F32;
        attn_exec_t bx = {.threads = ro->x.threads, .device = ro->x.device, .layout = -1};
        model_attn_t att[2] = {{band, &bt, &bx}, {band, &bt, &bx}}; /* layer 1 only stores its K/V */
        model_t md = *m;
        md.dense = ro->band ? ro->dense : NULL;
        md.devops = ro->band ? ro->devops : NULL;
        int64_t chunk = ro->chunk > 0 ? ro->chunk : 65536;
        rc = ATTN_OK;
        for (int64_t at = 0; at < pr->n_ctx && rc == ATTN_OK; at += chunk)
            rc = model_forward_layers(&md, cache, att, pr->ctx + at, ATTN_MIN(chunk, pr->n_ctx - at), 0, NULL, err);
    }
    *seconds = time_now_s() - t0;
    return rc;
}

int needle_ask(const model_t *m, const needle_prompt_t *pr, const needle_run_opts_t *ro, model_cache_t *cache,
               needle_outcome_t *out, attn_err_t *err) {
    int64_t V = m->cfg.vocab_size, ctx_len = cache->len;
    model_t md = *m; /* the same weights, dense layers where the backend's attention is */
    md.dense = ro->dense, md.devops = ro->devops;
    m = &md;
    double *logits = malloc((size_t)V * sizeof *logits);
    int32_t *q = malloc((size_t)pr->n_question * sizeof *q);
    int rc = logits && q ? ATTN_OK : attn_fail(err, ATTN_ERUNTIME, "needle: out of memory");
    double t0 = time_now_s();
    int asked = ro->ask_all ? pr->n_facts : 1;
    out->asked = out->correct = out->in_window = 0;
    for (int f = 0; f < asked && rc == ATTN_OK; f++) {
        const needle_fact_t *fa = &pr->facts[f];
        cache->len = ctx_len; /* every question continues the same context */
        memcpy(q, pr->question, (size_t)(pr->n_question - 1) * sizeof *q);
        q[pr->n_question - 1] = fa->key;
        rc = dist_model_run(m, cache, ro->be, &ro->tmpl, &ro->x, q, pr->n_question, 1, logits, err);
        int ok = 1;
        for (int v = 0; v < NEEDLE_VALUE_LEN && rc == ATTN_OK; v++) {
            int32_t got = argmax(logits, V);
            ok &= got == fa->value[v];
            if (v + 1 < NEEDLE_VALUE_LEN) /* greedy: the model's own token goes back in */
                rc = dist_model_run(m, cache, ro->be, &ro->tmpl, &ro->x, &got, 1, 1, logits, err);
        }
        out->asked++;
        out->correct += rc == ATTN_OK && ok;
        out->in_window += ro->tmpl.mask != ATTN_MASK_WINDOW || needle_in_window(pr, f, ro->tmpl.window);
    }
    cache->len = ctx_len;
    out->question_s = time_now_s() - t0;
    free(logits), free(q);
    return rc;
}

int needle_run_prompt(const model_t *m, const needle_margins_t *mg, const needle_prompt_t *pr,
                      const needle_run_opts_t *ro, needle_outcome_t *out, attn_err_t *err) {
    memset(out, 0, sizeof *out);
    model_cache_t cache;
    ATTN_TRY(needle_cache_init(m, pr, ro->tmpl.dtype, ro->kv_space, &cache, err));
    int rc = needle_context(m, mg, pr, ro, &cache, &out->context_s, err);
    if (rc == ATTN_OK)
        rc = needle_ask(m, pr, ro, &cache, out, err);
    model_cache_free(&cache);
    return rc;
}
