/* ring_cuda_grad_plan.h — the step logic of the GPU ring backward (ring_cuda_grad.cu) as plain
 * index functions, compiled by nvcc and by C so tests/test_ring_cuda_grad_plan.c checks them on the
 * host against plan_ring_step (the plan ring_grad.c and the GPU forward run). */
#pragma once
#include "core/mask.h" /* ATTN_HD_INLINE */
#include "impls/parallel/plan.h"

/* The flash_bwd launch of one piece pair: local row offsets into the rank's Q/dO/LSE/D/dQ slabs
 * and into the held K/V block and its dK/dV accumulator, row counts, and the band (query row r at
 * band position q_off + r, key row j at j; window in band units). */
typedef struct {
    int64_t q_row0, k_row0, n_q, n_k, q_off, window;
} ring_grad_launch_t;

ATTN_HD_INLINE ring_grad_launch_t ring_grad_launch_of(const plan_pair_t *pr) {
    ring_grad_launch_t l;
    l.q_row0 = pr->q.local_start, l.k_row0 = pr->k.local_start, l.n_q = pr->q.count, l.n_k = pr->k.count;
    l.q_off = pr->q_off, l.window = pr->win;
    return l;
}

/* Ring position whose K/V block (and whose dK/dV accumulator) position pos holds at step s: the
 * blocks move one position on per step, so src = pos − s (mod R). */
ATTN_HD_INLINE int ring_grad_block_at(int pos, int s, int R) { return ((pos - s) % R + R) % R; }

/* The accumulator position pos receives after step s's hop: its left neighbour's partial sum of
 * block (pos − 1) − s, which is the block pos holds at step s + 1; after the last step (s = R − 1)
 * that is pos's own block, every position's share summed. */
ATTN_HD_INLINE int ring_grad_recv_block(int pos, int s, int R) { return ring_grad_block_at(pos, s + 1, R); }

/* Which of the two accumulators step s computes into: the other one is the source of step s − 1's
 * hop (still in flight while step s computes); this one's hop (step s − 2) is over once step
 * s − 1's K/V block has arrived (ring_cuda_grad.cu says why). */
ATTN_HD_INLINE int ring_grad_acc_buffer(int s) { return s & 1; }

/* What rank pos moves at step s of R, in bytes (ps: its plan_ring_step; row: elements of one key
 * row of a K|V block, 2·B·H_kv·d; hop_recv_rows: rows of the block whose sum its hop brings,
 * layout_local_count of ring_grad_recv_block): the next K/V block in 16-bit elements while
 * s < R − 1, and the dK/dV hop in float32 when R > 1. Summed over the steps, the figures
 * ring_backward_expect counts (the record fails a rank whose bytes differ). */
typedef struct {
    int64_t kv_sent, kv_recv, hop_sent, hop_recv;
} ring_grad_bytes_t;

ATTN_HD_INLINE ring_grad_bytes_t ring_grad_step_bytes(const plan_ring_step_t *ps, int s, int R, int64_t row,
                                                      int64_t hop_recv_rows) {
    ring_grad_bytes_t b = {0, 0, 0, 0};
    if (s < R - 1)
        b.kv_sent = row * ps->rows_sent * 2, b.kv_recv = row * ps->rows_recv * 2;
    if (R > 1)
        b.hop_sent = row * ps->k_rows * 4, b.hop_recv = row * hop_recv_rows * 4;
    return b;
}
