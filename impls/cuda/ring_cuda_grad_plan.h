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
 * hop; this one's hop (step s − 2) is over once step s − 1's has arrived. */
ATTN_HD_INLINE int ring_grad_acc_buffer(int s) { return s & 1; }
