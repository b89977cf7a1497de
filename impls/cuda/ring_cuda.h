/* ring_cuda.h — the GPU ring loop (ring_cuda.cu) as the backend glue (dist_cuda.cu) calls it:
 * on the ranks a gcomm drives, from host float32 shards to host float32 outputs. */
#pragma once
#include "impls/cuda/gcomm.cuh"

/* Host shards by local index: Q (B·H, local rows, d), K and V (B·H_kv, local rows, d) as
 * float32; O and LSE written back the same way. */
struct ring_cuda_host_t {
    const float *q[ATTN_MAX_RANKS], *k[ATTN_MAX_RANKS], *v[ATTN_MAX_RANKS];
    float *o[ATTN_MAX_RANKS], *lse[ATTN_MAX_RANKS];
};

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
