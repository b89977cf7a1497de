/* tile_engine.h — the FlashAttention-style CPU engine shared by the blockwise and sliding_window
 * backends and by the ring family's local step (ring.c). A Q tile (block_q rows) walks
 * K/V tiles (block_k rows): S = Q·Kᵀ, online softmax, O += P·V, either fused in one AVX-512
 * kernel (tile_kernel.h) or as sgemm, softmax.h, sgemm. Memory beyond the tensors is one
 * tile's state per worker: O(n) in total. */
#pragma once
#include "core/problem.h"

/* Default tile of the sgemm path; the fused kernel has its own (tile_kernel_t). */
enum { TILE_DEFAULT_BQ = 128, TILE_DEFAULT_BK = 256 };

/* How a tile is computed: AUTO = the fused kernel when the CPU has one and the call has at least
 * its min_rows query rows, else sgemm; BLAS = sgemm always (the portable path, kept measurable
 * as the backend blockwise_blas). */
typedef enum { TILE_IMPL_AUTO, TILE_IMPL_BLAS } tile_impl_t;

typedef enum {
    TILE_SCAN_ALL,  /* visit every K tile, skip (and count) the ones the mask hides */
    TILE_BAND_ONLY, /* visit only the K tiles inside the mask's band: cost linear in n */
} tile_walk_t;

typedef struct {
    int64_t tiles_computed, tiles_skipped;
} tile_stats_t;

/* Buffers of one call. Each (batch, head) owns q_rows rows of Q, O, LSE and k_rows rows of K, V;
 * the call's n_q / n_k rows start at the given pointers, so a piece may be a sub-range of a
 * rank's shard (a zigzag chunk) without a copy. */
typedef struct {
    const float *q, *k, *v; /* Q (B,H,q_rows,d), K and V (B,H_kv,k_rows,d) */
    float *o, *lse;         /* O (B,H,q_rows,d), LSE (B,H,q_rows) */
    int64_t q_rows, k_rows;
} tile_io_t;

/* Float32 attention of n_q query rows at positions qs against n_k key rows at positions ks.
 * Rows that see no key in this piece get O = 0 and LSE = −∞. stats may be NULL. */
int tile_attend_f32(const attn_problem_t *p, int threads, attn_span_t qs, int64_t n_q, attn_span_t ks, int64_t n_k,
                    const tile_io_t *io, tile_walk_t walk, tile_stats_t *stats, attn_err_t *err);

int tile_attend_f32_with(tile_impl_t impl, const attn_problem_t *p, int threads, attn_span_t qs, int64_t n_q,
                         attn_span_t ks, int64_t n_k, const tile_io_t *io, tile_walk_t walk, tile_stats_t *stats,
                         attn_err_t *err);
/* "avx512" or "blas": what impl runs on this CPU. */
const char *tile_impl_name(tile_impl_t impl);

/* A hook the calling thread's engine calls between work items (one Q tile against its K
 * tiles): a distributed rank passes its transport's progress here so that a message in
 * flight keeps moving while the rank computes. NULL clears it. Per thread. */
void tile_set_progress(void (*fn)(void *arg), void *arg);

/* What the blockwise and sliding_window backends share: they run float32 only, and their
 * workspace is the engine's. */
struct attn_backend;
int tile_backend_supports_dtype(const struct attn_backend *self, const attn_problem_t *p, char *reason, size_t len);
size_t tile_backend_workspace(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x);

/* 1 if no element of x[0..n) is ±∞ or NaN: an integer test of the exponent bits, which the
 * compiler vectorises (a float sum would stay serial). */
static inline int tile_all_finite(const float *x, size_t n) {
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned u;
        __builtin_memcpy(&u, x + i, sizeof u);
        bad |= (~u & 0x7f800000u) == 0;
    }
    return !bad;
}

/* Workspace tile_attend_f32 allocates for a piece of n_q rows on `threads` threads (0 = all cores). */
size_t tile_workspace_bytes(const attn_problem_t *p, int threads, int64_t n_q);
size_t tile_workspace_bytes_with(tile_impl_t impl, const attn_problem_t *p, int threads, int64_t n_q);
/* The tile shape: the problem's block_q / block_k, else the default of what computes a call of
 * p->n_q rows. */
int tile_block_q(const attn_problem_t *p);
int tile_block_k(const attn_problem_t *p);
int tile_block_q_with(tile_impl_t impl, const attn_problem_t *p);
int tile_block_k_with(tile_impl_t impl, const attn_problem_t *p);
