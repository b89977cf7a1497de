/* ring_cuda_grad.h — the GPU ring family's backward (ring_cuda_grad.cu) as dist_cuda.cu's table
 * calls it: bf16 or f16, packed documents through piece_vis.h. */
#pragma once
#include "core/backend.h"

/* 1 if the GPU ring backward takes p under x; otherwise 0 and the reason. */
int ring_cuda_grad_takes(const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len);
/* dQ, dK, dV on P = exec_ranks(x) virtual ranks of layout `kind` (attn_layout_kind_t). */
int ring_cuda_backward_local(const attn_problem_t *p, const attn_exec_t *x, int kind, const attn_grad_io_t *g,
                             attn_err_t *err);
/* Device bytes rank `rank` allocates for the backward (inputs, gradients, workspace). */
size_t ring_cuda_grad_rank_bytes(const attn_problem_t *p, int ranks, int kind, int rank);
