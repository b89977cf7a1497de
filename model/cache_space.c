/* cache_space.c — the model's KV cache: in host memory, or kept outside it (model.h's
 * model_memspace_t): allocated in its space once, each new row put there once as it is appended,
 * gathered within the space when the attention needs a contiguous slab. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

int model_cache_init(model_cache_t *c, const model_config_t *cfg, attn_dtype_t dtype, int64_t capacity,
                     attn_err_t *err) {
    memset(c, 0, sizeof *c);
    *c = (model_cache_t){.dtype = dtype, .layers = cfg->num_hidden_layers, .capacity = capacity};
    c->k = calloc((size_t)c->layers, sizeof *c->k);
    c->v = calloc((size_t)c->layers, sizeof *c->v);
    size_t bytes = attn_size_prod4(cfg->num_key_value_heads, capacity, cfg->head_dim, (int64_t)dtype_size(dtype));
    int ok = c->k && c->v;
    for (int l = 0; ok && l < c->layers; l++) {
        c->k[l] = attn_alloc(bytes, err, "KV cache (K)");
        c->v[l] = attn_alloc(bytes, err, "KV cache (V)");
        ok = c->k[l] && c->v[l];
    }
    if (!ok) {
        model_cache_free(c);
        return err->code ? err->code : attn_fail(err, ATTN_ERUNTIME, "out of memory for the KV cache");
    }
    return ATTN_OK;
}

void model_cache_free(model_cache_t *c) {
    for (int l = 0; c->k && c->v && l < c->layers; l++) {
        if (c->space) { /* memory of that space (model/cache_space.c) */
            if (c->k[l])
                c->space->release(c->space, c->k[l]);
            if (c->v[l])
                c->space->release(c->space, c->v[l]);
        } else {
            attn_free(c->k[l]), attn_free(c->v[l]);
        }
    }
    free(c->k), free(c->v);
    memset(c, 0, sizeof *c);
}

int model_cache_init_in(model_cache_t *c, const model_config_t *cfg, attn_dtype_t dtype, int64_t capacity,
                        const model_memspace_t *space, attn_err_t *err) {
    if (!space)
        return model_cache_init(c, cfg, dtype, capacity, err);
    memset(c, 0, sizeof *c);
    if (dtype != ATTN_F32 && !dtype_is_16bit(dtype))
        return attn_fail(err, ATTN_EUSAGE, "model: a KV cache in device memory holds f32, bf16 or f16 (got %s)",
                         dtype_name(dtype));
    *c = (model_cache_t){.dtype = dtype, .layers = cfg->num_hidden_layers, .capacity = capacity, .space = space};
    c->k = calloc((size_t)c->layers, sizeof *c->k);
    c->v = calloc((size_t)c->layers, sizeof *c->v);
    size_t bytes = attn_size_prod4(cfg->num_key_value_heads, capacity, cfg->head_dim,
                                   (int64_t)space->elem_bytes(space, dtype));
    int ok = c->k && c->v && bytes != ATTN_SIZE_OVERFLOW;
    for (int l = 0; ok && l < c->layers; l++) {
        c->k[l] = space->alloc(space, bytes, err);
        c->v[l] = space->alloc(space, bytes, err);
        ok = c->k[l] && c->v[l];
    }
    if (!ok) {
        model_cache_free(c);
        return err->code ? err->code : attn_fail(err, ATTN_ERUNTIME, "out of memory for the KV cache");
    }
    return ATTN_OK;
}

int model_cache_store(const model_cache_t *c, int l, const float *k, const float *v, int64_t n, int64_t heads,
                      int64_t hd, float *scratch, attn_err_t *err) {
    ATTN_ASSERT(c->space && c->len + n <= c->capacity);
    const float *rows[2] = {k, v};
    void *dst[2] = {c->k[l], c->v[l]};
    for (int t = 0; t < 2; t++)
        for (int64_t h = 0; h < heads; h++) {
            const float *src = rows[t] + h * hd; /* rows (n, heads·hd): this head's hd values per row */
            if (heads > 1) {
                for (int64_t r = 0; r < n; r++)
                    memcpy(scratch + r * hd, rows[t] + (r * heads + h) * hd, (size_t)hd * sizeof *scratch);
                src = scratch;
            }
            ATTN_TRY(c->space->put(c->space, dst[t], (h * c->capacity + c->len) * hd, src, n * hd, c->dtype, err));
        }
    return ATTN_OK;
}

int model_cache_gather(const model_cache_t *c, int l, int64_t n_k, int64_t heads, int64_t hd, void *K, void *V,
                       attn_err_t *err) {
    for (int64_t h = 0; h < heads; h++) {
        ATTN_TRY(c->space->copy(c->space, K, h * n_k * hd, c->k[l], h * c->capacity * hd, n_k * hd, c->dtype, err));
        ATTN_TRY(c->space->copy(c->space, V, h * n_k * hd, c->v[l], h * c->capacity * hd, n_k * hd, c->dtype, err));
    }
    return ATTN_OK;
}
