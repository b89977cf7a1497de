/* model.h — the shared llama-style decoder every backend runs inside (README "The shared
 * model"): only the attention call differs between backends, so a difference in logits is a
 * difference in attention. The float64 reference model runs the same code in double. */
#pragma once
#include "core/backend.h"
#include "model/config.h"

typedef struct {
    float *attn_norm, *wq, *wk, *wv, *wo; /* wq (H·hd, hidden), wk/wv (H_kv·hd, hidden), wo (hidden, H·hd) */
    float *mlp_norm, *w_gate, *w_up, *w_down; /* gate/up (inter, hidden), down (hidden, inter) */
} model_layer_t;

/* Where the float32 forward's dense layers run when not on the host's cblas (the GPU: cuBLAS in
 * float32 without TF32, impls/cuda/dense_cuda.cu): out (n, out_dim) = x (n, in_dim) · Wᵀ for W one
 * of the model's weights (w is its host copy, the key to a device copy made once). */
typedef struct model_dense {
    int (*linear)(const struct model_dense *d, float *out, const float *x, const float *w, int64_t n, int64_t out_dim,
                  int64_t in_dim, attn_err_t *err);
    void *ctx;
} model_dense_t;

typedef struct {
    model_config_t cfg;
    float *embed, *final_norm, *lm_head; /* embed, lm_head (vocab, hidden) */
    model_layer_t *layers;
    uint64_t id; /* distinct for every model this process builds: which one MPI followers hold */
    /* NULL: dense layers on the host. Set on a shallow copy (weights shared, never model_free'd)
     * to run one model's dense layers elsewhere; the float64 reference path ignores it. */
    const model_dense_t *dense;
    /* NULL: as above. Set (the same way): a forward whose KV cache is in a memspace on this
     * device keeps every activation there (model/devops.h); the others use `dense`. */
    const struct model_devops *devops;
} model_t;

/* Seeded weights, N(0, 1/fan_in)-like (uniform, unit variance, scaled), output projections
 * further by 1/√(2L) so the residual stream stays O(1) through L layers; norms are 1. */
int model_init_random(model_t *m, const model_config_t *cfg, uint64_t seed, attn_err_t *err);
/* Every weight 0, norms included: the start of a constructed model (tasks/needle_model.c). */
int model_init_zero(model_t *m, const model_config_t *cfg, attn_err_t *err);
/* Llama tensor names (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, …,
 * model.norm.weight, lm_head.weight); shapes checked against cfg. */
int model_load_safetensors(model_t *m, const model_config_t *cfg, const char *path, attn_err_t *err);
int model_save_safetensors(const model_t *m, const char *path, int dtype /* st_dtype_t */, attn_err_t *err);
void model_free(model_t *m);
size_t model_param_count(const model_config_t *cfg);

/* Where a KV cache lives when not in host memory: a GPU's (impls/cuda/kv_device.h), or a test's
 * host stand-in that counts what moves. Offsets and counts are in elements of the cache's dtype in
 * the space's own form (elem_bytes: the GPU keeps bf16 and f16 in 2 bytes). Rows go in once, as they are
 * appended (put); the attention then reads them where they are (attn_exec_t.kv_device). */
typedef struct model_memspace {
    size_t (*elem_bytes)(const struct model_memspace *s, attn_dtype_t dt);
    void *(*alloc)(const struct model_memspace *s, size_t bytes, attn_err_t *err);
    void (*release)(const struct model_memspace *s, void *p);
    /* dst[at … at + n) ← host float32 src[0 … n), rounded to dt (bf16, f16: to nearest, ties to even). */
    int (*put)(const struct model_memspace *s, void *dst, int64_t at, const float *src, int64_t n, attn_dtype_t dt,
               attn_err_t *err);
    /* dst[dst_at … + n) ← src[src_at … + n), both in the space. */
    int (*copy)(const struct model_memspace *s, void *dst, int64_t dst_at, const void *src, int64_t src_at, int64_t n,
                attn_dtype_t dt, attn_err_t *err);
    int device; /* the attn_exec_t.device whose memory this is */
    void *ctx;
} model_memspace_t;

/* KV cache for decoding: per layer K and V (H_kv, capacity, hd) in the attention's dtype. A bf16
 * or f16 cache stores float32 arrays holding bf16 / f16 values (problem.h's host convention): K/V
 * are rounded as they are appended, as the GPU rounds them on upload; a float32 forward may fill it.
 * With a space, k and v are that space's memory (its form of the dtype): only the float path's
 * forward in that very dtype (f32, bf16, f16) fills it, and the attention gets them with kv_device set. */
typedef struct {
    attn_dtype_t dtype;
    int layers;
    int64_t capacity, len;
    void **k, **v; /* [layer] */
    const model_memspace_t *space; /* NULL: host memory */
} model_cache_t;

int model_cache_init(model_cache_t *c, const model_config_t *cfg, attn_dtype_t dtype, int64_t capacity,
                     attn_err_t *err);
/* model_cache_init in `space` (NULL: host). model/cache_space.c. */
int model_cache_init_in(model_cache_t *c, const model_config_t *cfg, attn_dtype_t dtype, int64_t capacity,
                        const model_memspace_t *space, attn_err_t *err);
/* A space cache's part of a forward (model/cache_space.c): store appends n rows (n, heads·hd)
 * of layer l's K and V at c->len (scratch: n·hd floats, for one head's rows at a time); gather
 * copies the first n_k rows of every head into K and V (heads, n_k, hd) in the space, for when the
 * cache's rows per head are not the attention's contiguous slab. */
int model_cache_store(const model_cache_t *c, int l, const float *k, const float *v, int64_t n, int64_t heads,
                      int64_t hd, float *scratch, attn_err_t *err);
int model_cache_gather(const model_cache_t *c, int l, int64_t n_k, int64_t heads, int64_t hd, void *K, void *V,
                       attn_err_t *err);
void model_cache_free(model_cache_t *c);
/* x to the nearest bfloat16 (ties to even), kept in a float; ±∞ and NaN unchanged. */
float model_round_bf16(float x);
/* x to the nearest IEEE binary16 (ties to even; subnormals kept, multiples of 2⁻²⁴; |x| ≥ 65520
 * overflows to ±∞, as the GPU's __float2half_rn does), kept in a float; ±∞ and NaN unchanged. */
float model_round_f16(float x);
/* x rounded to dtype t's values: bf16, f16; f32 and f64 unchanged. */
float model_round_dtype(attn_dtype_t t, float x);

/* Runs n tokens at positions cache->len … (0 … without a cache) through the model, attention
 * by `be` on problems shaped like `tmpl` (mask, window, tiles; the shapes come from the
 * model), run as x says (threads, ranks, transport). tmpl->dtype picks float32 or the float64 reference path.
 * Writes logits (n_logits, vocab) of the last n_logits tokens as double; n_logits ≤ n. */
int model_forward(const model_t *m, model_cache_t *cache, const attn_backend_t *be, const attn_problem_t *tmpl,
                  const attn_exec_t *x, const int32_t *tokens, int64_t n, int64_t n_logits, double *logits,
                  attn_err_t *err);

/* One layer's attention: backend and problem template (mask, window, ranks, …; shapes are the
 * model's). model_forward uses one for every layer; the needle task's context build runs its
 * previous-token layer as a narrow band (docs/needle-model.md says why that is exact). */
typedef struct {
    const attn_backend_t *be;
    const attn_problem_t *tmpl;
    const attn_exec_t *x;
} model_attn_t;

/* model_forward with att[l] for layer l (one dtype throughout). With a cache, n_logits may be 0:
 * then the tokens only fill the cache, and the last layer stops once its K/V are stored. */
int model_forward_layers(const model_t *m, model_cache_t *cache, const model_attn_t *att, const int32_t *tokens,
                         int64_t n, int64_t n_logits, double *logits, attn_err_t *err);

/* One rank's part of a forward under a distributed backend (impls/parallel/dist_model.c): the
 * rank's rows are up to two pieces of the sequence (layout.h) in local order, RoPE is applied at
 * their global positions, attention runs through the backend's forward_rank on sharded tensors
 * (attend), and the final normed rows are gathered into `whole` (n_total, hidden) on the root,
 * which computes the logits. Float32 only, no KV cache. */
typedef struct {
    int n_pieces;
    attn_span_t pos[2];
    int64_t count[2], local_start[2];
    int64_t n_total;
    int root;
    float *whole; /* the root's (n_total, hidden) rows; shared by every rank under `local` */
    int (*attend)(void *ctx, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err);
    int (*gather)(void *ctx, const float *rows, float *whole, int64_t width, attn_err_t *err);
    void *ctx;
} model_shard_t;

int model_forward_rank(const model_t *m, const model_shard_t *sh, const attn_backend_t *be, const attn_problem_t *tmpl,
                       const attn_exec_t *x, const int32_t *tokens_local, int64_t n_local, int64_t n_logits, double *logits, attn_err_t *err);

/* The model's tensors in file order: pointers and element counts (≤ cap); returns the count. */
int model_weights(const model_t *m, float **ptrs, int64_t *numel, int cap);
int model_weight_count(const model_config_t *cfg);
