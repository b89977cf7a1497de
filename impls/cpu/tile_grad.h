/* tile_grad.h — FlashAttention-2's backward on the CPU, shared by the blockwise and
 * sliding_window backends and the ring family's backward step: P is recomputed per tile from
 * the forward's LSE, nothing of size n_q × n_k is ever held. Design and memory: docs/backward.md. */
#pragma once
#include "impls/cpu/tile_engine.h"

/* Buffers of one backward call, laid out as tile_io_t: each (batch, head) owns q_rows rows of Q,
 * dO, LSE, D and dQ, each (batch, kv head) k_rows rows of K, V, dK and dV; the call's rows start
 * at the pointers. The gradients are accumulated (+=), so a ring step adds its share. */
typedef struct {
    const float *q, *k, *v, *d_o; /* Q, dO (B,H,q_rows,d); K, V (B,H_kv,k_rows,d) */
    const float *lse, *delta;     /* (B,H,q_rows): the whole forward's LSE, D = rowsum(dO∘O) */
    float *dq;                    /* (B,H,q_rows,d), += */
    float *dk, *dv;               /* (B,H_kv,k_rows,d), += (summed over each group's query heads) */
    int64_t q_rows, k_rows;
} tile_grad_io_t;

/* Gradient contributions of n_q query rows at positions qs against n_k key rows at positions ks.
 * Work items are (batch, kv head, K tile): an item owns its dK/dV rows and walks every query
 * head of its group and every Q tile that sees the K tile (walk TILE_BAND_ONLY: counts only
 * those); dQ rows are shared between items, so each item's dQ share is added under a per-Q-tile
 * lock (no lock on one thread). stats may be NULL. */
int tile_grad_f32(const attn_problem_t *p, int threads, attn_span_t qs, int64_t n_q, attn_span_t ks, int64_t n_k,
                  const tile_grad_io_t *io, tile_walk_t walk, tile_stats_t *stats, attn_err_t *err);
/* Workspace tile_grad_f32 allocates on `threads` threads (0 = all cores) for n_q × n_k. */
size_t tile_grad_workspace_bytes(const attn_problem_t *p, int threads, int64_t n_q, int64_t n_k);
/* D[r] = Σ_c dO[r][c]·O[r][c] over `rows` rows of width d (summed in double). */
void tile_grad_delta(const float *o, const float *d_o, int64_t rows, int64_t d, float *D);

/* The whole-problem backward of blockwise and sliding_window: zeroes dQ/dK/dV, computes D, runs
 * tile_grad_f32 with `walk`. Its workspace: D plus the engine's. */
int tile_backward_whole(const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g, tile_walk_t walk,
                        attn_err_t *err);
struct attn_backend;
size_t tile_backward_workspace(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x);
