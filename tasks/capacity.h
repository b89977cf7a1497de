/* capacity.h — analytic memory figures: the bytes one attention call needs, the KV cache of a
 * decoder, and the longest sequence a backend fits in a byte budget. The capacity task
 * (tasks/capacity.c) reports them; the memory task checks the first against a measurement. */
#pragma once
#include "core/backend.h"
#include "model/config.h"
#include "tasks/settings.h"

/* Q, K, V, O, LSE plus be's declared workspace: what one forward call of p holds at its peak. */
uint64_t capacity_case_bytes(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x);

/* KV cache of n tokens: K and V, each (layers, kv_heads, n, head_dim) of elem_bytes, i.e.
 * 2·n·L·H_kv·d·elem (model_cache_init allocates exactly this for capacity n). */
uint64_t kv_cache_bytes(const model_config_t *c, int64_t n, size_t elem_bytes);

/* Largest n = n_q = n_k, a power of two up to 2^30, with capacity_case_bytes ≤ budget for p's
 * other fields; 0 when n = 1 already exceeds it. *refined (may be NULL) gets the largest
 * integer n with the same property (n ≤ refined < 2n; the bytes grow with n). */
int64_t capacity_max_seq_len(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x, uint64_t budget,
                             int64_t *refined);

/* The model `--task model` builds for these flags: --model-config, or the shape flags with
 * hidden = heads · head-dim, --layers and --vocab over model_config_defaults. */
int capacity_model_config(const attn_opts_t *o, model_config_t *c, attn_err_t *err);
