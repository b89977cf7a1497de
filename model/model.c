/* model.c — the shared decoder's weights (seeded or safetensors, one table of llama tensor
 * names drives init, load and save), its KV cache, and the forward pass instantiated for
 * float and double from forward.inc. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/rng.h"
#include "model/backward.h"
#include "model/devops.h"
#include "model/rope.h"
#include "model/safetensors.h"

/* One weight tensor: its llama name, where it lives in the model, shape, and init scale. */
typedef struct {
    char name[96];
    float **slot;
    int ndim;
    int64_t shape[2];
    double std; /* 0: a norm weight, initialised to 1 */
} weight_spec_t;

/* The model's tensors in file order; returns how many (≤ cap). */
static int weight_specs(model_t *m, weight_spec_t *s, int cap) {
    const model_config_t *c = &m->cfg;
    int64_t D = c->hidden_size, q = (int64_t)c->num_attention_heads * c->head_dim,
            kv = (int64_t)c->num_key_value_heads * c->head_dim, F = c->intermediate_size, V = c->vocab_size;
    double out_scale = 1.0 / sqrt(2.0 * c->num_hidden_layers); /* residual branches: GPT-2 style */
    int n = 0;
#define SPEC(NAME, SLOT, ND, S0, S1, STD)                                                     \
    do {                                                                                      \
        if (n < cap) {                                                                        \
            s[n] = (weight_spec_t){.slot = (SLOT), .ndim = (ND), .shape = {(S0), (S1)}, .std = (STD)}; \
            snprintf(s[n].name, sizeof s[n].name, "%s", (NAME));                              \
        }                                                                                     \
        n++;                                                                                  \
    } while (0)
    SPEC("model.embed_tokens.weight", &m->embed, 2, V, D, 1.0);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        model_layer_t *w = &m->layers[l];
        char p[64], name[96];
        snprintf(p, sizeof p, "model.layers.%d.", l);
#define LAYER(SUFFIX, SLOT, ND, S0, S1, STD)         \
    snprintf(name, sizeof name, "%s%s", p, SUFFIX); \
    SPEC(name, SLOT, ND, S0, S1, STD)
        LAYER("input_layernorm.weight", &w->attn_norm, 1, D, 0, 0);
        LAYER("self_attn.q_proj.weight", &w->wq, 2, q, D, 1 / sqrt((double)D));
        LAYER("self_attn.k_proj.weight", &w->wk, 2, kv, D, 1 / sqrt((double)D));
        LAYER("self_attn.v_proj.weight", &w->wv, 2, kv, D, 1 / sqrt((double)D));
        LAYER("self_attn.o_proj.weight", &w->wo, 2, D, q, out_scale / sqrt((double)q));
        LAYER("post_attention_layernorm.weight", &w->mlp_norm, 1, D, 0, 0);
        LAYER("mlp.gate_proj.weight", &w->w_gate, 2, F, D, 1 / sqrt((double)D));
        LAYER("mlp.up_proj.weight", &w->w_up, 2, F, D, 1 / sqrt((double)D));
        LAYER("mlp.down_proj.weight", &w->w_down, 2, D, F, out_scale / sqrt((double)F));
#undef LAYER
    }
    SPEC("model.norm.weight", &m->final_norm, 1, D, 0, 0);
    SPEC("lm_head.weight", &m->lm_head, 2, V, D, 1 / sqrt((double)D));
#undef SPEC
    return n;
}

/* Embedding, final norm, LM head, and nine tensors per layer: the length of weight_specs' table. */
static int weight_count(const model_config_t *c) { return 3 + 9 * c->num_hidden_layers; }

static int64_t numel(const weight_spec_t *s) {
    size_t n = s->ndim == 1 ? attn_size_i64(s->shape[0]) : attn_size_prod4(s->shape[0], s->shape[1], 1, 1);
    return n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n; /* INT64_MAX: attn_alloc refuses the bytes */
}

int model_weight_count(const model_config_t *cfg) { return weight_count(cfg); }

int model_weights(const model_t *m, float **ptrs, int64_t *numels, int cap) {
    int count = weight_count(&m->cfg);
    weight_spec_t *s = calloc((size_t)count, sizeof *s);
    if (!s)
        return 0;
    int n = weight_specs((model_t *)m, s, count);
    for (int i = 0; i < n && i < cap; i++)
        ptrs[i] = *s[i].slot, numels[i] = numel(&s[i]);
    free(s);
    return n < cap ? n : cap;
}

size_t model_param_count(const model_config_t *cfg) {
    /* Saturates at ATTN_SIZE_OVERFLOW for a configuration too large to count. */
    size_t D = attn_size_i64(cfg->hidden_size), F = attn_size_i64(cfg->intermediate_size);
    size_t q = attn_size_prod4(cfg->num_attention_heads, cfg->head_dim, 1, 1);
    size_t kv = attn_size_prod4(cfg->num_key_value_heads, cfg->head_dim, 1, 1);
    size_t proj = attn_size_mul(attn_size_add(attn_size_add(attn_size_mul(2, q), attn_size_mul(2, kv)), attn_size_mul(3, F)), D);
    size_t layer = attn_size_add(attn_size_mul(2, D), proj);
    size_t embed = attn_size_add(attn_size_mul(attn_size_mul(2, attn_size_i64(cfg->vocab_size)), D), D);
    return attn_size_add(embed, attn_size_mul(attn_size_i64(cfg->num_hidden_layers), layer));
}

/* Allocates every tensor of the table (the layers array first). */
static int model_alloc(model_t *m, const model_config_t *cfg, weight_spec_t **specs, int *n, attn_err_t *err) {
    static uint64_t next_id;
    memset(m, 0, sizeof *m);
    ATTN_TRY(model_config_validate(cfg, err));
    m->cfg = *cfg;
    m->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layers);
    int count = weight_count(cfg);
    *specs = calloc((size_t)count, sizeof **specs);
    if (!m->layers || !*specs) {
        free(m->layers), free(*specs);
        return attn_fail(err, ATTN_ERUNTIME, "out of memory for the model's tables");
    }
    *n = weight_specs(m, *specs, count);
    for (int i = 0; i < *n; i++) {
        *(*specs)[i].slot = attn_alloc(attn_size_mul((size_t)numel(&(*specs)[i]), sizeof(float)), err, (*specs)[i].name);
        if (!*(*specs)[i].slot) {
            free(*specs);
            model_free(m);
            return ATTN_ERUNTIME;
        }
    }
    return ATTN_OK;
}

enum { RNG_TENSOR_WEIGHTS = 1000 }; /* weight i draws from stream 1000 + i, away from Q/K/V */

int model_init_zero(model_t *m, const model_config_t *cfg, attn_err_t *err) {
    weight_spec_t *s;
    int n;
    ATTN_TRY(model_alloc(m, cfg, &s, &n, err));
    for (int i = 0; i < n; i++)
        memset(*s[i].slot, 0, (size_t)numel(&s[i]) * sizeof(float));
    free(s);
    return ATTN_OK;
}

int model_init_random(model_t *m, const model_config_t *cfg, uint64_t seed, attn_err_t *err) {
    weight_spec_t *s;
    int n;
    ATTN_TRY(model_alloc(m, cfg, &s, &n, err));
    for (int i = 0; i < n; i++) {
        float *w = *s[i].slot;
        for (int64_t j = 0; j < numel(&s[i]); j++)
            w[j] = s[i].std == 0 ? 1.0f : (float)(s[i].std * rng_value(seed, RNG_TENSOR_WEIGHTS + (uint32_t)i, (uint64_t)j));
    }
    free(s);
    return ATTN_OK;
}

int model_load_safetensors(model_t *m, const model_config_t *cfg, const char *path, attn_err_t *err) {
    weight_spec_t *s;
    int n;
    ATTN_TRY(model_alloc(m, cfg, &s, &n, err));
    st_file_t f;
    int rc = st_open(path, &f, err);
    for (int i = 0; rc == ATTN_OK && i < n; i++)
        rc = st_read_f32(&f, s[i].name, s[i].ndim, s[i].shape, *s[i].slot, err);
    if (rc == ATTN_OK || f.map)
        st_close(&f);
    free(s);
    if (rc != ATTN_OK)
        model_free(m);
    return rc;
}

int model_save_safetensors(const model_t *m, const char *path, int dtype, attn_err_t *err) {
    model_t view = *m; /* weight_specs takes slots; nothing is written through them here */
    int count = weight_count(&m->cfg);
    weight_spec_t *s = calloc((size_t)count, sizeof *s);
    st_item_t *items = calloc((size_t)count, sizeof *items);
    if (!s || !items) {
        free(s), free(items);
        return attn_fail(err, ATTN_ERUNTIME, "out of memory saving %s", path);
    }
    int n = weight_specs(&view, s, count);
    for (int i = 0; i < n; i++) {
        items[i] = (st_item_t){.name = s[i].name, .ndim = s[i].ndim, .data = *s[i].slot};
        items[i].shape[0] = s[i].shape[0], items[i].shape[1] = s[i].shape[1];
    }
    int rc = st_write(path, items, n, (st_dtype_t)dtype, err);
    free(s), free(items);
    return rc;
}

void model_free(model_t *m) {
    if (!m->layers && !m->embed)
        return;
    attn_free(m->embed), attn_free(m->final_norm), attn_free(m->lm_head);
    for (int l = 0; m->layers && l < m->cfg.num_hidden_layers; l++) {
        model_layer_t *w = &m->layers[l];
        float *all[] = {w->attn_norm, w->wq, w->wk, w->wv, w->wo, w->mlp_norm, w->w_gate, w->w_up, w->w_down};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            attn_free(all[i]);
    }
    free(m->layers);
    memset(m, 0, sizeof *m);
}

float model_round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) /* finite: round the low 16 bits away, ties to even */
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

float model_round_f16(float x) {
    if (!isfinite(x))
        return x;
    float a = fabsf(x);
    if (a >= 65520.0f) /* 65504 + half its ulp (32): the tie goes to even, which is the next power, inf */
        return copysignf(INFINITY, x);
    if (a < 0x1p-14f) /* subnormal binary16: multiples of 2⁻²⁴; a·2²⁴ is exact in float32 */
        return copysignf(rintf(a * 0x1p24f) * 0x1p-24f, x); /* rintf: ties to even (default mode) */
    uint32_t u; /* normal: 11 significant bits, round the low 13 away, ties to even */
    memcpy(&u, &x, sizeof u);
    u = (u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

float model_round_dtype(attn_dtype_t t, float x) {
    return t == ATTN_BF16 ? model_round_bf16(x) : t == ATTN_F16 ? model_round_f16(x) : x;
}


#define REAL float
#define GEMM cblas_sgemm
#define SUFFIX f32
#define DTYPE ATTN_F32
#define rope_apply_f32 rope_apply
#define rope_unapply_f32 rope_unapply
#include "model/forward.inc"
#include "model/backward.inc"
#undef REAL
#undef GEMM
#undef SUFFIX
#undef DTYPE

#define REAL double
#define GEMM cblas_dgemm
#define SUFFIX f64
#define DTYPE ATTN_F64
#include "model/forward.inc"
#include "model/backward.inc"
#undef REAL
#undef GEMM
#undef SUFFIX
#undef DTYPE

int model_forward_layers(const model_t *m, model_cache_t *cache, const model_attn_t *att, const int32_t *tokens,
                         int64_t n, int64_t n_logits, double *logits, attn_err_t *err) {
    attn_dtype_t dt = att[0].tmpl->dtype;
    if (n < 1 || n_logits < 0 || n_logits > n || (n_logits == 0 && !cache))
        return attn_fail(err, ATTN_EUSAGE,
                         "model: %lld tokens, %lld logit rows (need 1 ≤ logit rows ≤ tokens; 0 only to fill a KV cache)",
                         (long long)n, (long long)n_logits);
    for (int l = 1; l < m->cfg.num_hidden_layers; l++)
        if (att[l].tmpl->dtype != dt)
            return attn_fail(err, ATTN_EUSAGE, "model: layer %d runs in %s, layer 0 in %s (one dtype per forward)", l,
                             dtype_name(att[l].tmpl->dtype), dtype_name(dt));
    /* A float32 forward may fill a bf16 or f16 cache (its K/V rounded as they are stored): the
     * needle's query-tail context runs its band layer on the CPU, the questions on the GPU. */
    if (cache && cache->dtype != dt && !(dtype_is_16bit(cache->dtype) && dt == ATTN_F32))
        return attn_fail(err, ATTN_EUSAGE, "model: the KV cache is %s but the attention runs in %s (make the cache in "
                         "the attention's dtype)", dtype_name(cache->dtype), dtype_name(dt));
    if (cache && cache->space && (cache->dtype != dt || dt == ATTN_F64))
        return attn_fail(err, ATTN_EUSAGE, "model: the KV cache in device memory is %s but the attention runs in %s "
                         "(a device cache is filled only by a forward in its own dtype, f32, bf16 or f16)",
                         dtype_name(cache->dtype), dtype_name(dt));
    for (int l = 0; cache && cache->space && l < m->cfg.num_hidden_layers; l++)
        if (att[l].x->device != cache->space->device)
            return attn_fail(err, ATTN_EUSAGE, "model: layer %d runs on device %d but the KV cache is on device %d", l,
                             att[l].x->device, cache->space->device);
    if (cache && cache->len + n > cache->capacity)
        return attn_fail(err, ATTN_EUSAGE, "model: the KV cache holds %lld of %lld positions (%s); %lld more do not fit",
                         (long long)cache->len, (long long)cache->capacity, dtype_name(cache->dtype), (long long)n);
    if (m->devops && cache && cache->space && dt != ATTN_F64 && m->devops->device == cache->space->device)
        return model_forward_device(m, cache, att, tokens, n, n_logits, logits, err);
    return dt == ATTN_F64 ? forward_f64(m, cache, att, tokens, n, n_logits, logits, NULL, err)
                          : forward_f32(m, cache, att, tokens, n, n_logits, logits, NULL, err);
}

/* One backend for every layer: the per-layer table model_forward_layers takes (free it). */
static model_attn_t *same_attention(const model_t *m, const attn_backend_t *be, const attn_problem_t *tmpl,
                                    const attn_exec_t *x, attn_err_t *err) {
    int L = m->cfg.num_hidden_layers;
    model_attn_t *att = malloc((size_t)L * sizeof *att);
    if (!att) {
        attn_fail(err, ATTN_ERUNTIME, "model: out of memory for %d layers", L);
        return NULL;
    }
    for (int l = 0; l < L; l++)
        att[l] = (model_attn_t){be, tmpl, x};
    return att;
}

int model_forward_rank(const model_t *m, const model_shard_t *sh, const attn_backend_t *be, const attn_problem_t *tmpl,
                       const attn_exec_t *x, const int32_t *tokens_local, int64_t n_local, int64_t n_logits, double *logits, attn_err_t *err) {
    model_attn_t *att = same_attention(m, be, tmpl, x, err);
    if (!att)
        return ATTN_ERUNTIME;
    int rc = forward_f32(m, NULL, att, tokens_local, n_local, n_logits, logits, sh, err);
    free(att);
    return rc;
}

int model_forward(const model_t *m, model_cache_t *cache, const attn_backend_t *be, const attn_problem_t *tmpl,
                  const attn_exec_t *x, const int32_t *tokens, int64_t n, int64_t n_logits, double *logits, attn_err_t *err) {
    if (n_logits < 1 || n_logits > n)
        return attn_fail(err, ATTN_EUSAGE, "model: %lld logit rows (need 1 ≤ logit rows ≤ tokens)", (long long)n_logits);
    model_attn_t *att = same_attention(m, be, tmpl, x, err);
    if (!att)
        return ATTN_ERUNTIME;
    int rc = model_forward_layers(m, cache, att, tokens, n, n_logits, logits, err);
    free(att);
    return rc;
}

int model_embed_rows(const model_t *m, const int32_t *tokens, int64_t n, double *emb, attn_err_t *err) {
    int64_t D = m->cfg.hidden_size;
    for (int64_t r = 0; r < n; r++) {
        if (tokens[r] < 0 || tokens[r] >= m->cfg.vocab_size)
            return attn_fail(err, ATTN_EUSAGE, "model: token %d at row %lld is outside the vocabulary (0..%d)",
                             tokens[r], (long long)r, m->cfg.vocab_size - 1);
        for (int64_t i = 0; i < D; i++)
            emb[r * D + i] = m->embed[(int64_t)tokens[r] * D + i];
    }
    return ATTN_OK;
}

int model_loss_backward(const model_t *m, const model_attn_t *att, const double *emb, int64_t n,
                        const model_loss_t *loss, double *loss_out, double *d_emb, attn_err_t *err) {
    attn_dtype_t dt = att->tmpl->dtype;
    if (n < 1 || loss->count < 1 || loss->count > n)
        return attn_fail(err, ATTN_EUSAGE, "model backward: %lld tokens, %lld loss positions (need 1 ≤ positions ≤ "
                         "tokens)", (long long)n, (long long)loss->count);
    if (dt != ATTN_F32 && dt != ATTN_F64)
        return attn_fail(err, ATTN_EUSAGE, "model backward: runs in f32 or f64, not %s", dtype_name(dt));
    model_t host = *m; /* the backward's dense layers run on the host: so does its forward */
    host.dense = NULL, host.devops = NULL;
    return dt == ATTN_F64 ? loss_backward_f64(&host, att, emb, n, loss, loss_out, d_emb, err)
                          : loss_backward_f32(&host, att, emb, n, loss, loss_out, d_emb, err);
}
