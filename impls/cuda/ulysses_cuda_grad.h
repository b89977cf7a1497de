/* ulysses_cuda_grad.h — ulysses_cuda's backward (ulysses_cuda_grad.cu) as dist_cuda.cu's table calls
 * it: cuda_local only (all P virtual ranks from this thread), bf16, head dims 64 and 128. */
#pragma once
#include "core/backend.h"

/* 1 if the GPU Ulysses backward takes p under x (the forward's head split assumed); else 0 and why. */
int ulysses_cuda_grad_takes(const attn_problem_t *p, const attn_exec_t *x, char *why, size_t len);
/* dQ, dK, dV on P = exec_ranks(x) virtual ranks: the all-to-all to heads, flash_bwd on every
 * token of each rank's heads, the all-to-all of the gradients back (dK/dV summed, GQA). */
int ulysses_cuda_backward_local(const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g,
                                attn_err_t *err);
/* Device bytes rank `rank` allocates for the backward (shards, its heads' tokens, staging); 0
 * when the heads do not split over the ranks. */
size_t ulysses_cuda_grad_rank_bytes(const attn_problem_t *p, int ranks, int rank);
