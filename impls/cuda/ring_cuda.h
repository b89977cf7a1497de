/* ring_cuda.h — the GPU ring loop (ring_cuda.cu) as the backend glue (dist_cuda.cu) calls it:
 * on the ranks a gcomm drives, from host float32 shards to host float32 outputs. */
#pragma once
#include "impls/cuda/gcomm.cuh"

extern "C" {
#include "comm/layout.h"
}

/* Host shards by local index: Q (B·H, local rows, d), K and V (B·H_kv, local rows, d) as
 * float32; O and LSE written back the same way. */
struct ring_cuda_host_t {
    const float *q[ATTN_MAX_RANKS], *k[ATTN_MAX_RANKS], *v[ATTN_MAX_RANKS];
    float *o[ATTN_MAX_RANKS], *lse[ATTN_MAX_RANKS];
    /* kv_device under cuda_local (exec.h): K and V of the whole problem (B·H_kv, n_k, d) already
     * on the device in the dtype's 2-byte form, each rank's shard (kv_layout's pieces) copied
     * from there on the device instead of k/v going up. NULL: host shards in k and v. */
    const void *k_dev, *v_dev;
    const attn_layout_t *kv_layout;
    /* qo_device under cuda_local (exec.h): Q (B·H, n_q, d) float32 and O, LSE of the whole
     * problem in device memory (the device-resident model forward); each rank's Q shard is cut
     * from q_dev (q_layout's pieces) and converted on the device, and its O/LSE shard written
     * back into o_dev/lse_dev there. NULL: host shards in q, o and lse. */
    const float *q_dev;
    float *o_dev, *lse_dev;
    const attn_layout_t *q_layout;
};

/* Rank `rank`'s shard (outer, local rows, d) of elements of `elem` bytes ↔ the whole tensor
 * (outer, n, d), both in device memory, on stream s: one cudaMemcpy2DAsync per run of
 * dist_shard_runs (dist_run_copy2d); whole → shard when to_shard, else back. */
int ring_cuda_shard_dev(void *shard, void *whole, const attn_layout_t *l, int rank, int64_t outer, int64_t d,
                        size_t elem, int to_shard, cudaStream_t s, attn_err_t *err);
/* A rank's Q shard of n elements into dst in p's dtype on stream s: from the host shard h->q[i]
 * through staging (n floats), or, with h->q_dev, cut from it into staging and converted there. */
int ring_cuda_q_in(void *dst, const attn_problem_t *p, const ring_cuda_host_t *h, int i, int rank, size_t n,
                   float *staging, cudaStream_t s, attn_err_t *err);
/* A rank's merged O (rows, d) and LSE (rows = B·H · its local rows) on the device, finished
 * (rows without a visible key → NaN) and written to h->o[i]/h->lse[i] on the host or, with
 * h->o_dev, into the whole device O/LSE. Synchronous (the caller's buffers may go next). */
int ring_cuda_ol_out(const ring_cuda_host_t *h, int i, int rank, float *o, float *lse, int64_t rows, int64_t d,
                     cudaStream_t s, attn_err_t *err);

/* A rank's K (which 0) or V (1) shard of n elements into device memory dst on stream s: from
 * the host shard h->k[i] / h->v[i] through staging, or, with h->k_dev, device to device from the
 * whole tensors (dist_shard_runs of global rank `rank`). */
int ring_cuda_kv_in(void *dst, const attn_problem_t *p, const ring_cuda_host_t *h, int i, int rank, int which,
                    size_t n, float *staging, cudaStream_t s, attn_err_t *err);

/* What one rank measured, from CUDA events on its streams (seconds) and its byte counts. */
struct ring_cuda_stats_t {
    double compute_s, comm_s, exposed_s, wall_s, bytes_sent, bytes_recv, blocks_computed, blocks_skipped;
    double device_bytes; /* the rank's device buffers: its share of the GPU's memory */
    double step_compute_s[ATTN_MAX_RANKS];
    int n_steps;
};

/* Device bytes rank `rank` allocates for p under layout `kind` (attn_layout_kind_t). */
extern "C" size_t ring_cuda_rank_bytes(const attn_problem_t *p, int ranks, int kind, int rank);
/* Runs the P ring steps for the ranks g drives; st must be zeroed by the caller. */
int ring_cuda_ranks(gcomm *g, const attn_problem_t *p, int kind, const ring_cuda_host_t *h, ring_cuda_stats_t *st,
                    attn_err_t *err);

/* One local rank's part in a ring of R positions over device buffers (ring_cuda: the ranks;
 * usp_cuda: the R groups, one ring per member): its position, its neighbours (peers 0: rank
 * ± 1), its heads and kv heads (0: p's), bf16 Q (B·heads, q rows, d), two bf16 K|V blocks
 * (kv[0] holds its own), float32 O and LSE (O 0, LSE −∞ before the ring) and their partials. */
struct ring_cuda_member_t {
    int pos, peers, send_to, recv_from;
    int64_t heads, kv_heads;
    const void *q;
    void *kv[2];
    float *o, *lse, *o_part, *lse_part;
    const int64_t *doc; /* device copy of p's document offsets (cuda_vis_upload); NULL without documents */
};
/* The R steps of plan_ring_step(kind, …, R, pos) on problem p (heads per member as above), step
 * s computing on kv[usp_ring_buffer(s)]: Q and kv[0] must be ready on both of each rank's
 * streams. Records done[i] on compute[i] after the last step and waits for it; adds the step
 * figures and ring bytes to st (wall_s and device_bytes are the caller's). */
int ring_cuda_loop(gcomm *g, const attn_problem_t *p, attn_layout_kind_t kind, int R, const ring_cuda_member_t m[],
                   const cudaEvent_t done[], ring_cuda_stats_t *st, attn_err_t *err);
/* O ← 0 (o_n floats), LSE ← −∞ (lse_n floats) on stream s: the merge's starting point. */
int ring_cuda_fill(float *o, float *lse, int64_t o_n, int64_t lse_n, cudaStream_t s, attn_err_t *err);
