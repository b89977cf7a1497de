/* model_dev_run.c — see model_dev_run.h: --task model through the device-resident forward. */
#include "tasks/model_dev_run.h"

#include <string.h>

int model_dev_takes(const model_dev_path_t *d, const model_t *m, const attn_backend_t *be, const attn_problem_t *tmpl,
                    const attn_exec_t *x, int64_t n) {
    if (!d || !d->ops || !d->space || !be->device_kv || !dtype_is_16bit(tmpl->dtype) || transport_over_mpi(x->transport))
        return 0;
    const model_config_t *c = &m->cfg;
    attn_problem_t p = *tmpl; /* the layer's call as model_forward_device makes it */
    p.batch = 1, p.heads = c->num_attention_heads, p.kv_heads = c->num_key_value_heads, p.head_dim = c->head_dim;
    p.n_q = p.n_k = n;
    attn_exec_t xd = *x;
    xd.kv_device = 1, xd.qo_device = be->device_qo;
    char why[512];
    return backend_supports(be, &p, &xd, why, sizeof why);
}

int model_dev_run(const model_t *m, const model_dev_path_t *d, model_cache_t *cache, const attn_backend_t *be,
                  const attn_problem_t *tmpl, const attn_exec_t *x, const int32_t *tokens, int64_t n, int64_t n_logits,
                  double *logits, attn_err_t *err) {
    if (!cache->k)
        ATTN_TRY(model_cache_init_in(cache, &m->cfg, tmpl->dtype, n, d->space, err));
    cache->len = 0; /* every forward from position 0, as the host path's */
    model_t md = *m;
    md.devops = d->ops, md.dense = NULL;
    return model_forward(&md, cache, be, tmpl, x, tokens, n, n_logits, logits, err);
}
