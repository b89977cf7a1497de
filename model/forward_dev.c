/* forward_dev.c — the float32 forward with every activation in a device's memory (devops.h): the
 * same steps as forward.inc's, each an op of m->devops, so what crosses to the host is counted
 * in one place (up/down). Only a cache in a memspace takes this path: its K/V are stored there
 * from device rows and the attention reads them there (kv_device). */
#include "model/devops.h"

#include <stdlib.h>
#include <string.h>

enum { B_TOK, B_X, B_H, B_Q, B_K, B_V, B_QH, B_O, B_LSE, B_ATTN, B_GATE, B_UP, B_LOGIT, B_KG, B_VG, B_COUNT };

/* The problem of layer l (shapes from the model) and its exec: K/V in the cache's space, Q/O/LSE
 * there too when the backend takes them (device_qo). */
static void layer_call(const model_t *m, const model_attn_t *a, int64_t n, int64_t n_k, attn_problem_t *p,
                       attn_exec_t *x) {
    const model_config_t *c = &m->cfg;
    *p = *a->tmpl;
    p->batch = 1, p->heads = c->num_attention_heads, p->kv_heads = c->num_key_value_heads;
    p->head_dim = c->head_dim, p->n_q = n, p->n_k = n_k;
    *x = *a->x;
    x->kv_device = 1;
    x->qo_device = a->be->device_qo;
}

int model_forward_device(const model_t *m, model_cache_t *cache, const model_attn_t *att, const int32_t *tokens,
                         int64_t n, int64_t n_logits, double *logits, attn_err_t *err) {
    const model_devops_t *o = m->devops;
    const model_config_t *c = &m->cfg;
    const model_memspace_t *space = cache->space;
    ATTN_ASSERT(o && space && o->device == space->device);
    int64_t D = c->hidden_size, H = c->num_attention_heads, Hkv = c->num_key_value_heads, hd = c->head_dim;
    int64_t F = c->intermediate_size, V = c->vocab_size, L = c->num_hidden_layers;
    int64_t pos0 = cache->len, n_k = pos0 + n;
    for (int64_t l = 0; l < L; l++) { /* every layer's problem is checked before anything runs */
        attn_problem_t p;
        attn_exec_t xl;
        layer_call(m, &att[l], n, n_k, &p, &xl);
        ATTN_TRY(problem_validate(&p, err));
        char reason[512];
        if (!backend_supports(att[l].be, &p, &xl, reason, sizeof reason))
            return attn_fail(err, ATTN_EUSAGE, "model: layer %lld: %s", (long long)l, reason);
    }
    for (int64_t r = 0; r < n; r++)
        if (tokens[r] < 0 || tokens[r] >= V)
            return attn_fail(err, ATTN_EUSAGE, "model: token %d at row %lld is outside the vocabulary (0..%lld)",
                             tokens[r], (long long)r, (long long)V - 1);
    /* One kv head, or a cache exactly as long as the sequence: its slabs are the attention's. */
    int direct = cache->capacity == n_k || Hkv == 1;
    size_t f = sizeof(float), kv_bytes = (size_t)(n_k * Hkv * hd) * space->elem_bytes(space, cache->dtype);
    size_t bytes[B_COUNT] = {
        [B_TOK] = (size_t)n * sizeof(int32_t), [B_X] = (size_t)(n * D) * f, [B_H] = (size_t)(n * D) * f,
        [B_Q] = (size_t)(n * H * hd) * f, [B_K] = (size_t)(n * Hkv * hd) * f, [B_V] = (size_t)(n * Hkv * hd) * f,
        [B_QH] = (size_t)(n * H * hd) * f, [B_O] = (size_t)(n * H * hd) * f, [B_LSE] = (size_t)(n * H) * f,
        [B_ATTN] = (size_t)(n * H * hd) * f, [B_GATE] = (size_t)(n * F) * f, [B_UP] = (size_t)(n * F) * f,
        [B_LOGIT] = (size_t)(n_logits * V) * f + f, [B_KG] = direct ? 0 : kv_bytes, [B_VG] = direct ? 0 : kv_bytes};
    void *b[B_COUNT] = {0};
    int rc = ATTN_OK;
    for (int i = 0; i < B_COUNT && rc == ATTN_OK; i++)
        if (bytes[i] && !(b[i] = i == B_KG || i == B_VG ? space->alloc(space, bytes[i], err) : o->alloc(o, bytes[i], err)))
            rc = err->code ? err->code : attn_fail(err, ATTN_ERUNTIME, "model: out of device memory");
    /* Host buffers only for an attention that takes Q/O on the host (no device_qo) and the logits. */
    int host_qo = 0;
    for (int64_t l = 0; l < L; l++)
        host_qo |= !att[l].be->device_qo;
    float *hq = NULL, *ho = NULL, *hl = NULL, *hlog = NULL;
    if (rc == ATTN_OK && host_qo) {
        hq = attn_alloc(bytes[B_QH], err, "model Q heads (host)");
        ho = attn_alloc(bytes[B_O], err, "model O heads (host)");
        hl = attn_alloc(bytes[B_LSE], err, "model LSE (host)");
        rc = hq && ho && hl ? ATTN_OK : ATTN_ERUNTIME;
    }
    if (rc == ATTN_OK && !(hlog = attn_alloc(bytes[B_LOGIT], err, "model logits (host)")))
        rc = ATTN_ERUNTIME;
    float *x = b[B_X], *h = b[B_H], *q = b[B_Q], *k = b[B_K], *v = b[B_V], *Q = b[B_QH], *O = b[B_O];
    float *attn = b[B_ATTN], *gate = b[B_GATE], *up = b[B_UP];
#define DO(call) (rc = rc == ATTN_OK ? (call) : rc)
    DO(o->up(o, b[B_TOK], tokens, bytes[B_TOK], err));
    DO(o->embed(o, x, b[B_TOK], n, err));
    rope_t rope;
    rope_init(&rope, (int)hd, c->rope_theta, c->rotary_fraction);
    for (int64_t l = 0; rc == ATTN_OK && l < L; l++) {
        const model_layer_t *w = &m->layers[l];
        DO(o->rmsnorm(o, h, x, w->attn_norm, n, D, c->rms_norm_eps, err));
        DO(o->linear(o, k, h, w->wk, n, Hkv * hd, D, err));
        DO(o->linear(o, v, h, w->wv, n, Hkv * hd, D, err));
        DO(o->rope(o, k, n, Hkv, &rope, pos0, err));
        DO(o->kv_store(o, cache->k[l], cache->dtype, cache->capacity, pos0, k, n, Hkv, hd, err));
        DO(o->kv_store(o, cache->v[l], cache->dtype, cache->capacity, pos0, v, n, Hkv, hd, err));
        /* The last layer's attention and MLP feed only the logits (forward.inc's kv_only). */
        if (rc != ATTN_OK || (l == L - 1 && n_logits == 0))
            break;
        DO(o->linear(o, q, h, w->wq, n, H * hd, D, err));
        DO(o->rope(o, q, n, H, &rope, pos0, err));
        DO(o->to_heads(o, Q, q, n, H, hd, err));
        void *K = cache->k[l], *Vv = cache->v[l];
        if (!direct) {
            DO(model_cache_gather(cache, (int)l, n_k, Hkv, hd, b[B_KG], b[B_VG], err));
            K = b[B_KG], Vv = b[B_VG];
        }
        attn_problem_t p;
        attn_exec_t xl;
        layer_call(m, &att[l], n, n_k, &p, &xl);
        if (xl.qo_device) {
            attn_io_t io = {.q = Q, .k = K, .v = Vv, .o = O, .lse = b[B_LSE]};
            DO(att[l].be->forward(att[l].be, &p, &xl, &io, err));
        } else { /* Q down, O up: the one pair per layer such a backend costs */
            attn_io_t io = {.q = hq, .k = K, .v = Vv, .o = ho, .lse = hl};
            DO(o->down(o, hq, Q, bytes[B_QH], err));
            DO(att[l].be->forward(att[l].be, &p, &xl, &io, err));
            DO(o->up(o, O, ho, bytes[B_O], err));
        }
        DO(o->from_heads(o, attn, O, n, H, hd, err));
        DO(o->linear(o, h, attn, w->wo, n, D, H * hd, err));
        DO(o->add(o, x, h, n * D, err));
        DO(o->rmsnorm(o, h, x, w->mlp_norm, n, D, c->rms_norm_eps, err));
        DO(o->linear(o, gate, h, w->w_gate, n, F, D, err));
        DO(o->linear(o, up, h, w->w_up, n, F, D, err));
        DO(o->swiglu(o, gate, up, n * F, err));
        DO(o->linear(o, h, gate, w->w_down, n, D, F, err));
        DO(o->add(o, x, h, n * D, err));
    }
    if (rc == ATTN_OK && n_logits > 0) {
        DO(o->rmsnorm(o, h, x + (n - n_logits) * D, m->final_norm, n_logits, D, c->rms_norm_eps, err));
        DO(o->linear(o, b[B_LOGIT], h, m->lm_head, n_logits, V, D, err));
        DO(o->down(o, hlog, b[B_LOGIT], (size_t)(n_logits * V) * f, err));
        for (int64_t i = 0; rc == ATTN_OK && i < n_logits * V; i++)
            logits[i] = (double)hlog[i];
    }
#undef DO
    if (rc == ATTN_OK)
        cache->len = n_k;
    for (int i = 0; i < B_COUNT; i++)
        if (b[i])
            i == B_KG || i == B_VG ? space->release(space, b[i]) : o->release(o, b[i]);
    attn_free(hq), attn_free(ho), attn_free(hl), attn_free(hlog);
    return rc;
}
