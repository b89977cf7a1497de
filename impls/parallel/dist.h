/* dist.h — what every distributed backend shares, so that a backend is only its rank function
 * (forward_rank): running it on P ranks, scattering and gathering each rank's shard outside the
 * measured region, the per-rank figures, and the tests' injected faults. Design: docs/comm.md. */
#pragma once
#include "core/backend.h"
#include "comm/comm.h"
#include "comm/layout.h"
#include "model/config.h"

/* The forward of every distributed backend. Under mpi it runs on rank 0, which first tells
 * the other ranks (waiting in dist_follow) to run the same forward_rank. */
int dist_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err);

/* The backward of every distributed backend with backward_rank, run like dist_forward. */
int dist_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g,
                  attn_err_t *err);

/* Under mpi, what rank 0 sends its followers before a model forward (dist_model.c fills it,
 * dist.c carries it inside its command). */
typedef struct {
    uint64_t model_id;
    int weights_follow; /* 1: the model is new to the followers, its tensors come next */
    model_config_t cfg;
    int64_t n, n_logits;
} dist_model_cmd_t;

/* A follower's side of one model forward (dist_model_follow), passed in by the caller so the
 * rank loop here does not reach up into the model code built on it. */
typedef int (*dist_model_follow_fn)(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x,
                                    const dist_model_cmd_t *mc, attn_err_t *err);

/* Under mpi, the loop of ranks 1..P−1: run each distributed call rank 0 announces (a model
 * forward through on_model), until it says stop. A failure there ends the whole job
 * (comm_mpi_abort): its peers are stuck. */
int dist_follow(dist_model_follow_fn on_model, attn_err_t *err);
/* Under mpi, rank 0 tells the followers a model forward follows (dist_model.c). */
int dist_announce_model(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x,
                        const dist_model_cmd_t *mc, attn_err_t *err);
/* Rank 0: tell the followers to stop (call once, on every exit path, before MPI_Finalize). */
void dist_stop_followers(void);

/* Local copy between rank `rank`'s shard (outer, local_count, d) and the rows of its pieces in
 * `whole` (outer, n, d): whole → shard when to_shard, else back. */
void dist_shard_copy(const attn_layout_t *l, int rank, int64_t outer, int64_t d, float *shard, float *whole,
                     int to_shard);
/* dist_shard_copy's whole → shard direction as strided runs, for a copy engine that moves a run
 * in one call (cudaMemcpy2D: the GPU backends' shards of a KV cache kept on the device): run i
 * moves `rows` rows of d elements from whole[src + r·src_pitch] to shard[dst + r·d] (element
 * offsets). Fills at most cap runs (outer × the rank's 1 or 2 pieces) and returns the count, or
 * −1 when cap is too small. */
typedef struct {
    int64_t dst, src, src_pitch, rows;
} dist_run_t;
int dist_shard_runs(const attn_layout_t *l, int rank, int64_t outer, int64_t d, dist_run_t *runs, int cap);
/* Run r as one 2-D copy's byte arguments (cudaMemcpy2D's, for elements of `elem` bytes):
 * to_shard, whole → shard (K/V and Q shards cut from device tensors); else shard → whole (O, LSE
 * written back: d = 1 for the LSE). The GPU backends and the host tests both go through it. */
typedef struct {
    size_t dst, dpitch, src, spitch, width, height;
} dist_copy2d_t;
dist_copy2d_t dist_run_copy2d(const dist_run_t *r, int64_t d, size_t elem, int to_shard);

/* Collective: each rank receives its shard (outer, local_count, d) of the (outer, n, d) tensor
 * `whole` under layout l; whole is read on rank 0 only unless the comm is shared-memory. */
int dist_scatter(attn_comm_t *c, const attn_layout_t *l, int64_t outer, int64_t d, const float *whole,
                 float *shard, attn_err_t *err);
/* The reverse: each rank's shard lands in `whole` (on rank 0, or shared). */
int dist_gather(attn_comm_t *c, const attn_layout_t *l, int64_t outer, int64_t d, const float *shard,
                float *whole, attn_err_t *err);

/* This rank's Q, K and V shards ((BH, nq, d) and (BHkv, nk, d) local rows under lq and lk):
 * copied when the caller already holds shards (io->sharded, the sharded model), else scattered
 * from the whole tensors. dist_store_ol is the way back for O and LSE. */
int dist_load_qkv(attn_comm_t *c, const attn_io_t *io, const attn_layout_t *lq, const attn_layout_t *lk, int64_t BH,
                  int64_t BHkv, int64_t d, float *q, float *k, float *v, attn_err_t *err);
int dist_store_ol(attn_comm_t *c, const attn_io_t *io, const attn_layout_t *lq, int64_t BH, int64_t d, const float *o,
                  const float *lse, attn_err_t *err);

/* What one rank measured. step_compute holds n_steps per-step compute times (n_steps ≤ 64). */
typedef struct {
    double compute_s, blocks_computed, blocks_skipped, wall_s;
    const double *step_compute;
    int n_steps;
} dist_rank_stats_t;
/* Collective: combines every rank's figures and its comm stats (taken now, so call it before
 * dist_gather) into *out on rank 0; out may be NULL on other ranks. */
int dist_report(attn_comm_t *c, const dist_rank_stats_t *mine, attn_dist_stats_t *out, attn_err_t *err);

/* Where a test's injected fault fires: at step `step`, rank x->fault_rank returns an error
 * (local; the thread "exits") or ends its process (mpi), or stalls without communicating. */
int dist_fault_point(attn_comm_t *c, const attn_exec_t *x, int step, attn_err_t *err);
/* The same in the backward's steps: fires only for a fault given with ":backward" (exec.h), which
 * dist_fault_point then leaves alone. */
int dist_fault_point_backward(attn_comm_t *c, const attn_exec_t *x, int step, attn_err_t *err);

/* supports() checks every distributed backend shares: rank count, transport, dtype, memory. */
int dist_supports_common(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len);

/* The ring family's analytic figures (work balance, critical path, bytes per rank) for K/V
 * elements of elem_bytes bytes (4 on the CPU, 2 for the GPU backends' bf16). */
void dist_ring_expect(attn_layout_kind_t kind, const attn_problem_t *p, int ranks, double elem_bytes, attn_dist_expect_t *out);

