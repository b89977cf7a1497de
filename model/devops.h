/* devops.h — the float32 forward with its activations resident on a device (model_forward_device,
 * model/forward_dev.c): the hidden state, norms, projections, RoPE, attention in/out, MLP and
 * residuals stay in the device's memory for the whole forward; only the tokens go up and the
 * logit rows come down. The host forward (forward.inc) stays the reference. docs/device-model.md. */
#pragma once
#include "model/model.h"
#include "model/rope.h"

/* A device's memory and the forward's operations on float32 arrays in it (the GPU's:
 * impls/cuda/model_dev.h; a test's host stand-in that counts what moves). Pointers are the
 * space's; w/norm arguments are the model's host weights, the keys to the device's copies made
 * once. Every op returns ATTN_OK or fails with err set; row-major like the host forward. */
typedef struct model_devops {
    void *(*alloc)(const struct model_devops *o, size_t bytes, attn_err_t *err);
    void (*release)(const struct model_devops *o, void *p);
    /* The only host↔device traffic of a forward: tokens up, logit rows down (and, for an
     * attention backend without device_qo, Q down and O up per layer). */
    int (*up)(const struct model_devops *o, void *dst, const void *src, size_t bytes, attn_err_t *err);
    int (*down)(const struct model_devops *o, void *dst, const void *src, size_t bytes, attn_err_t *err);
    /* x (n, hidden) ← the model's embedding rows of tokens (device int32, each in the vocabulary). */
    int (*embed)(const struct model_devops *o, float *x, const int32_t *tokens, int64_t n, attn_err_t *err);
    /* out (n, out_dim) = x (n, in_dim) · Wᵀ (float32, no TF32 on a GPU). */
    int (*linear)(const struct model_devops *o, float *out, const float *x, const float *w, int64_t n, int64_t out_dim,
                  int64_t in_dim, attn_err_t *err);
    /* out = x / rms(x) · w per row of dim values (sum of squares in double, as the host). */
    int (*rmsnorm)(const struct model_devops *o, float *out, const float *x, const float *w, int64_t n, int64_t dim,
                   double eps, attn_err_t *err);
    /* RoPE (rope.h) in place on rows (n, heads·hd), row r at position pos0 + r. */
    int (*rope)(const struct model_devops *o, float *x, int64_t n, int64_t heads, const rope_t *r, int64_t pos0,
                attn_err_t *err);
    /* rows (n, heads·hd) → head-major (heads, n, hd), and back. */
    int (*to_heads)(const struct model_devops *o, float *dst, const float *src, int64_t n, int64_t heads, int64_t hd,
                    attn_err_t *err);
    int (*from_heads)(const struct model_devops *o, float *dst, const float *src, int64_t n, int64_t heads, int64_t hd,
                      attn_err_t *err);
    int (*add)(const struct model_devops *o, float *x, const float *h, int64_t count, attn_err_t *err);
    /* gate ← silu(gate) · up, elementwise. */
    int (*swiglu)(const struct model_devops *o, float *gate, const float *up, int64_t count, attn_err_t *err);
    /* A KV cache slab (heads, capacity, hd) in a memspace on this device, in dt's form there
     * (model_memspace_t.elem_bytes) ← rows (n, heads·hd) at positions at … at + n − 1, rounded to dt. */
    int (*kv_store)(const struct model_devops *o, void *slab, attn_dtype_t dt, int64_t capacity, int64_t at,
                    const float *rows, int64_t n, int64_t heads, int64_t hd, attn_err_t *err);
    int device; /* the attn_exec_t.device (and KV cache memspace) it runs on */
    void *ctx;
} model_devops_t;

/* model_forward_layers' path when m->devops is set and the cache is in a memspace on its device
 * (model_forward_layers has checked dtypes, devices and capacity): float32 dense layers, the
 * attention in the cache's dtype with kv_device, and qo_device for the backends that take it
 * (attn_backend_t.device_qo); the others get Q down and O up, still one pair per layer. */
int model_forward_device(const model_t *m, model_cache_t *cache, const model_attn_t *att, const int32_t *tokens,
                         int64_t n, int64_t n_logits, double *logits, attn_err_t *err);
