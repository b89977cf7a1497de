/* dist_model.h — the shared decoder under a distributed backend, every layer sharded over the
 * ranks by the backend's layout; callers run dist_model_run, which falls back to model_forward
 * with a KV cache. Design: docs/comm.md. */
#pragma once
#include "impls/parallel/dist.h"
#include "model/model.h"

/* The forward a caller runs: the sharded one above for a distributed backend without a cache
 * (P > 1, f32, n ≥ 2P); model_forward otherwise (with a cache, the layers stay on rank 0 and only
 * the attention is distributed). */
int dist_model_run(const model_t *m, model_cache_t *cache, const attn_backend_t *be, const attn_problem_t *tmpl,
                   const attn_exec_t *x, const int32_t *tokens, int64_t n, int64_t n_logits, double *logits,
                   attn_err_t *err);

int dist_model_forward(const model_t *m, const attn_backend_t *be, const attn_problem_t *tmpl, const attn_exec_t *x,
                       const int32_t *tokens,
                       int64_t n, int64_t n_logits, double *logits, attn_err_t *err);

/* A follower's side of one model forward: the handler the CLI gives dist_follow. */
int dist_model_follow(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x, const dist_model_cmd_t *mc,
                      attn_err_t *err);
