/* ulysses_cuda.h — the GPU Ulysses exchange (ulysses_cuda.cu) as dist_cuda.cu calls it,
 * on the ranks a gcomm drives. Design: docs/ulysses.md. */
#pragma once
#include "impls/cuda/ring_cuda.h"

extern "C" {
#include "impls/parallel/plan.h"
}

/* Rank q's heads after the re-shard: query heads [q0, q0 + hq), K/V heads [kv0, kv0 + kvn). */
typedef plan_heads_t ulysses_heads_t;
/* Device bytes rank `rank` allocates (shards, its heads' full sequence, two staging buffers). */
size_t ulysses_cuda_rank_bytes(const attn_problem_t *p, int ranks, int rank);
/* Both all-to-alls and the compute for the ranks g drives (contiguous shards); st zeroed. */
int ulysses_cuda_ranks(gcomm *g, const attn_problem_t *p, const ring_cuda_host_t *h, ring_cuda_stats_t *st,
                       attn_err_t *err);
/* Analytic bytes per rank (bf16 out, float32 back); imbalance and critical path 1. */
void ulysses_cuda_expect(const attn_problem_t *p, int ranks, attn_dist_expect_t *out);
