/* ulysses_cuda_grad.h — ulysses_cuda's backward (ulysses_cuda_grad.cu) as dist_cuda.cu's table calls
 * it: cuda_local only (all P virtual ranks from this thread), bf16, head dims 64 and 128. */
#pragma once
extern "C" { /* C++ only (gcomm below); the core headers keep C linkage whatever comes first */
#include "core/backend.h"
}

/* 1 if the GPU Ulysses backward takes p under x (the forward's head split assumed); else 0 and why. */
int ulysses_cuda_grad_takes(const attn_problem_t *p, const attn_exec_t *x, char *why, size_t len);
/* dQ, dK, dV on P = exec_ranks(x) virtual ranks: the all-to-all to heads, flash_bwd on every
 * token of each rank's heads, the all-to-all of the gradients back (dK/dV summed, GQA). */
int ulysses_cuda_backward_local(const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g,
                                attn_err_t *err);
/* Device bytes rank `rank` allocates for the backward (shards, its heads' tokens, staging); 0
 * when the heads do not split over the ranks. */
size_t ulysses_cuda_grad_rank_bytes(const attn_problem_t *p, int ranks, int rank);

#include "impls/cuda/gcomm.cuh"
/* Host float32 contiguous shards of the ranks a gcomm drives, by local index: inputs q, k, v, o,
 * d_o, lse; outputs dq, dk, dv. */
struct ulysses_grad_host {
    float *q[ATTN_MAX_RANKS], *k[ATTN_MAX_RANKS], *v[ATTN_MAX_RANKS], *o[ATTN_MAX_RANKS], *d_o[ATTN_MAX_RANKS],
        *lse[ATTN_MAX_RANKS], *dq[ATTN_MAX_RANKS], *dk[ATTN_MAX_RANKS], *dv[ATTN_MAX_RANKS];
};
/* Both exchanges and the compute for the ranks g drives (any gcomm: the cuda_local driver is
 * ulysses_cuda_backward_local; an nccl one would scatter and gather around this call);
 * *device_s: the slowest driven rank's prep-to-end seconds. */
int ulysses_cuda_grad_ranks(gcomm *g, const attn_problem_t *p, const ulysses_grad_host *h, double *device_s,
                            attn_err_t *err);
