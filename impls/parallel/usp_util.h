/* usp_util.h — what usp.c (the forward) and usp_grad.c (the backward) share: the layout, and the
 * rows a rank holds of a group's shard and their moves. */
#pragma once
#include "comm/layout.h"
#include "core/backend.h"
#include "impls/parallel/plan.h"

/* --layout, zigzag by default. */
attn_layout_kind_t usp_layout_of(const attn_exec_t *x);
/* The mesh of p over P ranks with x's --layout and --ulysses-degree. */
int usp_mesh_of(const attn_problem_t *p, const attn_exec_t *x, int P, plan_usp_mesh_t *m, attn_err_t *err);
/* usp_mesh_of and the token layouts: over the P ranks (lq, lk) and over the mesh's R groups
 * (rq, rk), for Q and for K/V. */
int usp_layouts(const attn_problem_t *p, const attn_exec_t *x, int P, plan_usp_mesh_t *m, attn_layout_t *lq,
                attn_layout_t *lk, attn_layout_t *rq, attn_layout_t *rk, attn_err_t *err);
/* Rank a's rows (P-rank layout lp) that belong to group g's shard (R-rank layout lr): their local
 * indices in a's shard (li) and in g's (gi), ascending; either may be NULL (not wanted). Returns
 * how many. The one row rule of usp, usp_grad and usp_cuda's maps (usp_map.c, where it lives). */
int64_t usp_group_rows(const attn_layout_t *lp, const attn_layout_t *lr, int a, int g, int64_t *li, int64_t *gi);
/* Rows idx[0..rows) of heads [h0, h0 + nh) of a tensor (B, heads, count, w) to or from a packed
 * run (B, nh, rows, w). */
void usp_move_rows(int64_t B, int64_t heads, int64_t h0, int64_t nh, int64_t count, int64_t w, const int64_t *idx,
                   int64_t rows, float *tensor, float *packed, int to_packed);

/* What a usp rank holds, per pass: each (batch, query head) row of the shards and of the group
 * buffers holds q_vecs·d + shard_scalars (resp. group_scalars) floats, the K/V side kv_tensors
 * tensors of (B, kv heads, rows, d); `loop` is the ring loop's own workspace. */
typedef struct {
    int q_vecs, shard_scalars, group_scalars, kv_tensors;
    size_t (*loop)(const attn_problem_t *p, int64_t wire_kv_heads, int64_t nq, int64_t kmax);
} usp_held_t;
/* Bytes over every rank: the shards, staging twice the larger of a shard and a group shard, the
 * group buffers and the loop's workspace, for the pass h describes. 0 when the mesh or layout
 * cannot take p. */
size_t usp_workspace_of(const attn_problem_t *p, const attn_exec_t *x, const usp_held_t *h);

/* usp_grad.c: the backward. */
int usp_backward_rank(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, struct attn_comm *c,
                      const attn_grad_io_t *g, attn_err_t *err);
void usp_backward_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                         attn_dist_expect_t *out);
size_t usp_backward_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x);
