/* usp_map.h — usp_cuda's index arithmetic, compiled by C and by nvcc alike so that
 * tests/test_usp_map.c replays on the host what the device does: which rows of a shard go to
 * which Ulysses group (row maps), where each row lands in a packed message and in a tensor
 * (usp_move_at, the copy kernel's one rule), per-peer byte counts and offsets of both
 * all-to-alls (bf16 in, float32 back), the device buffer sizes and the analytic bytes. */
#pragma once
#include <stddef.h>

#include "core/mask.h" /* ATTN_HD_INLINE */
#include "impls/parallel/plan.h"

/* One row move between a tensor (B, heads, count, W words) and a packed run (B, nh, rows, W):
 * packed row (b, h, i) is tensor row (b, h0 + h, idx[i]). */
typedef struct {
    int64_t B, heads, h0, nh, count, rows, W;
} usp_move_t;

ATTN_HD_INLINE int64_t usp_move_total(usp_move_t m) { return m.B * m.nh * m.rows * m.W; }

/* Word x of the packed run (0 ≤ x < usp_move_total): the packed run is dense in (b, h, i, w),
 * so its offset is x itself; the tensor offset goes through the row map. */
ATTN_HD_INLINE int64_t usp_move_at(usp_move_t m, const int64_t *idx, int64_t x) {
    int64_t w = x % m.W, i = (x / m.W) % m.rows, h = (x / (m.W * m.rows)) % m.nh, b = x / (m.W * m.rows * m.nh);
    return ((b * m.heads + m.h0 + h) * m.count + idx[i]) * m.W + w;
}

/* The ring's double buffer: step s computes on block buffer s % 2 while step s + 1's block
 * arrives in the other. */
ATTN_HD_INLINE int usp_ring_buffer(int step) { return step & 1; }

/* Row maps of one rank for n tokens (n_q or n_k): send side, its P-layout rows grouped by the
 * R-layout group g that holds them (ascending within a group) at send_li[send_start[g] ..
 * send_start[g + 1]); receive side, the rows of its group shard that peer r holds, in r's
 * ascending order, at recv_gi[recv_start[r] .. recv_start[r + 1]). The k-th row a sends to
 * group g is the k-th row g's members take from a. */
typedef struct {
    int64_t n_local, n_group;                /* the rank's P-shard rows, its group shard's rows */
    int64_t send_start[ATTN_MAX_RANKS + 1];  /* by group g < R */
    int64_t recv_start[ATTN_MAX_RANKS + 1];  /* by peer r < P */
    int64_t *send_li, *recv_gi;              /* n_local and n_group entries (caller's arrays) */
} usp_rows_t;

/* Sizes first (send_li, recv_gi NULL: counts only), then with arrays of n_local, n_group. */
int usp_rows_map(const plan_usp_mesh_t *m, int64_t n, int rank, usp_rows_t *out, attn_err_t *err);

/* Both exchanges of usp_cuda for one rank, in bytes: in = [Q | K | V] bf16 of the sender's rows
 * for the receiver's heads (one message per peer), out = [O | LSE] float32 back. Within an in
 * message, K starts at k_at[r] and V at v_at[r] (bytes from the message start). */
typedef struct {
    size_t sb_in[ATTN_MAX_RANKS], so_in[ATTN_MAX_RANKS], rb_in[ATTN_MAX_RANKS], ro_in[ATTN_MAX_RANKS];
    size_t sb_out[ATTN_MAX_RANKS], so_out[ATTN_MAX_RANKS], rb_out[ATTN_MAX_RANKS], ro_out[ATTN_MAX_RANKS];
    size_t send_k_at[ATTN_MAX_RANKS], send_v_at[ATTN_MAX_RANKS]; /* in message to r */
    size_t recv_k_at[ATTN_MAX_RANKS], recv_v_at[ATTN_MAX_RANKS]; /* in message from r */
    size_t in_send, in_recv, out_send, out_recv;                 /* totals */
} usp_cuda_a2a_t;

void usp_cuda_a2a(const plan_usp_t *u, usp_cuda_a2a_t *out);

/* Device bytes of one rank (each buffer + 16 bytes of pad): bf16 Q, K, V shards; float32 O, LSE
 * shards; the two staging buffers (the largest exchange, or the float32 upload of a shard);
 * bf16 group Q, two K|V blocks of the largest group shard; float32 group O, LSE and their
 * partials; the four row maps. */
typedef struct {
    size_t q, k, v, o, lse, stage, gq, kv, go, gl, go_part, gl_part, maps;
    size_t total;
} usp_cuda_sizes_t;

int usp_cuda_sizes(const attn_problem_t *p, const plan_usp_mesh_t *m, int rank, usp_cuda_sizes_t *out,
                   attn_err_t *err);

/* The analytic figures of usp_cuda: bytes per rank (bf16 Q, K, V and ring blocks; float32 O and
 * LSE), balance as plan_usp_expect. */
void usp_cuda_expect(const plan_usp_mesh_t *m, const attn_problem_t *p, attn_dist_expect_t *out);
