/* ring_cuda_grad.h — the GPU ring family's backward (ring_cuda_grad.cu) as dist_cuda.cu's table
 * calls it: bf16 or f16, packed documents through piece_vis.h, on cuda_local (all P virtual ranks
 * from one thread) or nccl (dist_cuda.cu's per-process driver around ring_cuda_grad_ranks). */
#pragma once
#include "core/backend.h"
#include "impls/cuda/ring_cuda.h" /* gcomm, ring_cuda_stats_t */

/* 1 if the GPU ring backward takes p under x; otherwise 0 and the reason. The one place that
 * says so (the backends' backward supports hook calls it). */
int ring_cuda_grad_takes(const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len);
/* Device bytes rank `rank` allocates for the backward (inputs, gradients, workspace). */
size_t ring_cuda_grad_rank_bytes(const attn_problem_t *p, int ranks, int kind, int rank);
/* The query and key layouts of the backward over P ranks (plan_layouts of kind). */
int ring_cuda_grad_layouts(const attn_problem_t *p, int kind, int P, attn_layout_t *lq, attn_layout_t *lk,
                           attn_err_t *err);

/* Host float32 shards by local index i: Q, O, dO (B·H, local rows, d) and LSE (B·H, local rows)
 * in, K|V (K's B·H_kv × local rows × d, then V's) in; dQ and dK|dV (the same shapes) out. Freed
 * on destruction. */
struct ring_cuda_grad_host_t {
    float *q[ATTN_MAX_RANKS] = {}, *kv[ATTN_MAX_RANKS] = {}, *o[ATTN_MAX_RANKS] = {}, *d_o[ATTN_MAX_RANKS] = {},
          *lse[ATTN_MAX_RANKS] = {}, *dq[ATTN_MAX_RANKS] = {}, *dkv[ATTN_MAX_RANKS] = {};
    ring_cuda_grad_host_t() = default;
    ring_cuda_grad_host_t(const ring_cuda_grad_host_t &) = delete;
    ring_cuda_grad_host_t &operator=(const ring_cuda_grad_host_t &) = delete;
    ~ring_cuda_grad_host_t();
    /* The buffers of local index i, global rank r, under layouts lq, lk. */
    int alloc(const attn_problem_t *p, const attn_layout_t *lq, const attn_layout_t *lk, int i, int r,
              attn_err_t *err);
};

/* The P steps for the ranks g drives (layout `kind`, attn_layout_kind_t), from h's input shards
 * to its dQ and this rank's dK|dV. st (one per local index, zeroed by the caller) gets the
 * forward's figures for the backward: per-step compute (step 0 with the prep), K/V and dK/dV
 * transfer time, the part of it the next compute waited for, bytes, blocks, wall and device
 * bytes. Under nccl, gcomm_inputs_ready's barrier starts the timed region. */
int ring_cuda_grad_ranks(gcomm *g, const attn_problem_t *p, int kind, ring_cuda_grad_host_t &h,
                         ring_cuda_stats_t *st, attn_err_t *err);
/* cuda_local: dQ, dK, dV on P = exec_ranks(x) virtual ranks; st[r] per rank. */
int ring_cuda_backward_local(const attn_problem_t *p, const attn_exec_t *x, int kind, const attn_grad_io_t *g,
                             ring_cuda_stats_t *st, attn_err_t *err);
