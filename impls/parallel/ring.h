/* ring.h — the ring loop of ring.c, shared by the ring family (one ring of all P ranks) and usp
 * (a ring across its Ulysses groups, per member): R steps on the ring plan (plan_ring_step),
 * each computing on the K/V block held while the next one moves, merged by log-sum-exp. */
#pragma once
#include "comm/comm.h"
#include "impls/parallel/dist.h"
#include "impls/parallel/plan.h"

typedef struct {
    const attn_problem_t *p; /* what the ring computes: its heads, the global n_q and n_k, the mask */
    attn_layout_kind_t kind; /* the token layout over the R positions */
    int R, pos;              /* the ring's size and this rank's position on it */
    int send_to, recv_from;  /* comm ranks of positions pos + 1 and pos − 1 */
    /* Non-NULL: the block holds expand->kvn kv heads that do not line up with p's heads
     * (plan_heads_t.lines_up = 0); each is copied to the query heads reading it before compute,
     * so the wire carries kvn heads and p->kv_heads = p->heads. group = H / H_kv of the whole. */
    const plan_heads_t *expand;
    int64_t group;
    const float *q;          /* (B·H, q rows of pos, d) */
    float *kv;               /* pos's own block, K then V, each (B·H_kv, k rows, d); room for the largest block */
    float *o, *lse;          /* out: (B·H, q rows, d) and (B·H, q rows) */
} ring_loop_t;

/* Runs the R steps; fills stats (step_compute must hold R entries). The comm stats go on
 * counting from where the caller left them (it resets them where its measured region starts).
 * The merged rows are not finished (problem_finish_rows) here: the caller does it. */
int ring_loop(attn_comm_t *c, const attn_exec_t *x, const ring_loop_t *L, dist_rank_stats_t *stats,
              double *step_compute, attn_err_t *err);
/* The largest query and key shard (rows) of p over exec_ranks(x) ranks under a ring-family
 * backend's layout (its ctx); 0 when the layout cannot take p. The forward's and the
 * backward's workspace figures start from it. */
int ring_max_shards(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, int64_t *nq,
                    int64_t *nk);
/* Bytes ring_loop allocates beyond L's buffers for a query shard of nq rows, K/V blocks of kmax rows. */
size_t ring_loop_workspace(const attn_problem_t *p, int64_t wire_kv_heads, int64_t nq, int64_t kmax);
/* acc ← acc ⊕ part over query rows [r0, r0 + rows) of every (batch, head) of p, q_rows rows per
 * head: the log-sum-exp merge a ring step runs after each piece (simulate times it). */
void ring_merge_rows(const attn_problem_t *p, attn_merge_t merge, int64_t q_rows, int64_t r0, int64_t rows, float *o_acc,
                     float *l_acc, const float *o_part, const float *l_part);

/* The backward's ring loop (ring_grad.c), shared by the ring family and usp: R steps on the same
 * plan, K/V rotating as in ring_loop and each block's dK/dV accumulator one hop behind it. */
typedef struct {
    const attn_problem_t *p; /* heads, global n_q and n_k, mask */
    attn_layout_kind_t kind;
    int R, pos, send_to, recv_from;
    const plan_heads_t *expand; /* as in ring_loop_t: non-NULL when the wire's kv heads do not line up */
    int64_t group;
    const float *q, *d_o, *lse, *D; /* (B·H, q rows of pos, d), LSE and D = rowsum(dO∘O) (B·H, q rows) */
    float *dq;                      /* (B·H, q rows, d), accumulated: zero it first */
    float *kv;                      /* pos's own K | V block (wire heads), room for the largest block */
    float *dkv_home;                /* out: pos's own block's dK | dV (wire heads), every position's share */
    const attn_exec_t *x;           /* the injected faults (dist_fault_point_backward); NULL: none */
} ring_grad_loop_t;

int ring_grad_loop(attn_comm_t *c, const ring_grad_loop_t *L, dist_rank_stats_t *stats, double *step_compute,
                   attn_err_t *err);
/* Bytes ring_grad_loop allocates for a query shard of nq rows, K/V blocks of kmax rows. */
size_t ring_grad_loop_workspace(const attn_problem_t *p, int64_t wire_kv_heads, int64_t nq, int64_t kmax);
/* ring_grad.c's analytic figures of the backward: the forward's (self->expect: the same pairs,
 * each 2.5× the work, and the K/V bytes) plus the float32 dK/dV hops, n_k rows of 2·B·H_kv·d
 * floats sent and received per rank. The GPU ring backends (dist_cuda.cu) use it too: their dK/dV
 * hops are float32 as well, their K/V bytes the forward's 16-bit ones. */
void ring_backward_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                          attn_dist_expect_t *out);
