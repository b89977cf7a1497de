/* ulysses_util.h — what ulysses.c (the forward) and ulysses_grad.c (the backward) share: the
 * local backend a rank runs and how, the shards' layout, head slicing and all-to-all counts. */
#pragma once
#include "comm/layout.h"
#include "core/backend.h"

/* One rank, one thread, local transport: how the local backend runs inside a rank. */
attn_exec_t local_exec(const attn_exec_t *x);
/* --local-backend, blockwise by default. */
const attn_backend_t *local_backend(const attn_exec_t *x);
/* The sequence shards' layout: --layout, contiguous by default. */
attn_layout_kind_t layout_of(const attn_exec_t *x);
/* Heads [h0, h0 + nh) of a shard (B, heads, count, width) to (to_pack) or from a packed run
 * (B, nh, count, width). */
void slice_heads(int64_t B, int64_t heads, int64_t h0, int64_t nh, int64_t count, int64_t width, float *shard,
                 float *pack, int to_pack);

/* Byte counts and offsets of one all-to-all, per peer; totals in floats. */
typedef struct {
    size_t sb[ATTN_MAX_RANKS], so[ATTN_MAX_RANKS], rb[ATTN_MAX_RANKS], ro[ATTN_MAX_RANKS];
    size_t send_total, recv_total;
} a2a_plan_t;
/* One exchange from per-peer counts and offsets in floats. */
void a2a_from_plan(a2a_plan_t *a, int P, const int64_t *send, const int64_t *send_off, const int64_t *recv,
                   const int64_t *recv_off);

/* ulysses_grad.c: the backward. */
int ulysses_backward_rank(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                          struct attn_comm *c, const attn_grad_io_t *g, attn_err_t *err);
void ulysses_backward_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                             attn_dist_expect_t *out);
size_t ulysses_backward_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x);
