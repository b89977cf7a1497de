/* usp_cuda_grad.h — usp_cuda's backward (usp_cuda_grad.cu) as dist_cuda.cu's table calls it: cuda_local
 * only, the GPU ring backward (ring_cuda_grad.h) over the R groups on each Ulysses member's heads. */
#pragma once
#include "core/backend.h"
#include "impls/cuda/ring_cuda.h"

/* 1 if usp_cuda's backward takes p under x (layout `kind`, Ulysses degree U: the forward's mesh);
 * otherwise 0 and the reason. */
int usp_cuda_grad_takes(const attn_problem_t *p, const attn_exec_t *x, int kind, int U, char *why, size_t len);
/* Device bytes at the peak: the largest member's ring of R ranks (one ring at a time). */
size_t usp_cuda_grad_bytes(const attn_problem_t *p, int kind, int U, int ranks);
/* dQ, dK, dV on P = exec_ranks(x) virtual ranks of the U × R mesh; *device_s: the rings' device
 * seconds, added over the U members (they run one after another). */
int usp_cuda_backward_local(const attn_problem_t *p, const attn_exec_t *x, int kind, int U, const attn_grad_io_t *g,
                            double *device_s, attn_err_t *err);
