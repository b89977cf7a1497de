/* ulysses_cuda_grad.h — ulysses_cuda's backward (ulysses_cuda_grad.cu) as dist_cuda.cu's table calls
 * it: bf16, head dims 64 and 128, on cuda_local (all P virtual ranks from this thread) or nccl
 * (dist_cuda.cu's per-process driver around ulysses_cuda_grad_ranks). */
#pragma once
extern "C" { /* C++ only (gcomm below); the core headers keep C linkage whatever comes first */
#include "core/backend.h"
}

/* 1 if the GPU Ulysses backward takes p under x (the forward's head split assumed); else 0 and why. */
int ulysses_cuda_grad_takes(const attn_problem_t *p, const attn_exec_t *x, char *why, size_t len);
/* Device bytes rank `rank` allocates for the backward (shards, its heads' tokens, staging); 0
 * when the heads do not split over the ranks. */
size_t ulysses_cuda_grad_rank_bytes(const attn_problem_t *p, int ranks, int rank);
/* The backward's analytic figures: balanced (every rank computes H/P heads over all tokens) and
 * the bytes of both exchanges (ulysses_grad_traffic); zeros when the heads do not split. */
void ulysses_cuda_grad_expect(const attn_problem_t *p, int ranks, attn_dist_expect_t *out);

#include "impls/cuda/ring_cuda.h" /* gcomm, ring_cuda_stats_t */
/* Host float32 contiguous shards of the ranks a gcomm drives, by local index: inputs q, k, v, o,
 * d_o, lse; outputs dq, dk, dv. Freed on destruction. */
struct ulysses_grad_host {
    float *q[ATTN_MAX_RANKS] = {}, *k[ATTN_MAX_RANKS] = {}, *v[ATTN_MAX_RANKS] = {}, *o[ATTN_MAX_RANKS] = {},
          *d_o[ATTN_MAX_RANKS] = {}, *lse[ATTN_MAX_RANKS] = {}, *dq[ATTN_MAX_RANKS] = {}, *dk[ATTN_MAX_RANKS] = {},
          *dv[ATTN_MAX_RANKS] = {};
    ulysses_grad_host() = default;
    ulysses_grad_host(const ulysses_grad_host &) = delete;
    ulysses_grad_host &operator=(const ulysses_grad_host &) = delete;
    ~ulysses_grad_host();
    /* The buffers of local index i, global rank r of P (contiguous layouts of p's n_q and n_k). */
    int alloc(const attn_problem_t *p, int P, int i, int r, attn_err_t *err);
};
/* Both exchanges and the compute for the ranks g drives (any gcomm: ulysses_cuda_backward_local
 * drives all P; dist_cuda.cu's nccl driver scatters and gathers around one). st (one per local
 * index, zeroed by the caller) gets the forward's figures: one step whose compute is the prep and
 * the kernel, both exchanges as exposed communication, bytes to other ranks, wall, device bytes.
 * Under nccl, gcomm_inputs_ready's barrier starts the timed region. */
int ulysses_cuda_grad_ranks(gcomm *g, const attn_problem_t *p, const ulysses_grad_host *h, ring_cuda_stats_t *st,
                            attn_err_t *err);
/* cuda_local: dQ, dK, dV on P = exec_ranks(x) virtual ranks: the all-to-all to heads, flash_bwd
 * on every token of each rank's heads, the all-to-all of the gradients back (dK/dV summed, GQA);
 * st[r] per rank. */
int ulysses_cuda_backward_local(const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g,
                                ring_cuda_stats_t *st, attn_err_t *err);
