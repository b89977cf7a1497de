/* usp_cuda.h — the GPU Ulysses × ring (usp_cuda.cu) as dist_cuda.cu calls it, on the ranks a
 * gcomm drives. Mesh and schedule: docs/usp.md; index arithmetic: impls/parallel/usp_map.h. */
#pragma once
#include "impls/cuda/ring_cuda.h"

extern "C" {
#include "impls/parallel/usp_map.h"
}

/* 1 when usp_cuda takes the mesh: U | P, U | H and every member's query heads read whole kv heads
 * of its own in the kernel's GQA order (plan_ulysses_kernel_heads over U); else 0 with why. */
int usp_cuda_takes(const attn_problem_t *p, int kind, int U, int ranks, char *why, size_t len);
/* Device bytes rank `rank` allocates (usp_cuda_sizes' total); 0 when the mesh is refused. */
size_t usp_cuda_rank_bytes(const attn_problem_t *p, int kind, int U, int ranks, int rank);
/* The in all-to-all, the ring over the R groups, the out all-to-all for the ranks g drives
 * (shards under layout `kind` over P); st zeroed by the caller. */
int usp_cuda_ranks(gcomm *g, const attn_problem_t *p, int kind, int U, const ring_cuda_host_t *h, ring_cuda_stats_t *st,
                   attn_err_t *err);
