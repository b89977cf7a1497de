/* tile_engine.h — the FlashAttention-style CPU engine shared by the blockwise and sliding_window
 * backends and, later, by every distributed backend's local step. A Q tile (block_q rows) walks
 * K/V tiles (block_k rows): S = Q·Kᵀ (sgemm), online softmax (softmax.h), O += P·V (sgemm).
 * Memory beyond the tensors is one S tile and three row vectors per worker: O(n) in total. */
#pragma once
#include "problem.h"

enum { TILE_DEFAULT_BQ = 128, TILE_DEFAULT_BK = 256 };

typedef enum {
    TILE_SCAN_ALL,  /* visit every K tile, skip (and count) the ones the mask hides */
    TILE_BAND_ONLY, /* visit only the K tiles inside the mask's band: cost linear in n */
} tile_walk_t;

typedef struct {
    int64_t tiles_computed, tiles_skipped;
} tile_stats_t;

/* Float32 attention of n_q query rows at positions qs against n_k key rows at positions ks.
 * Q (B,H,n_q,d), K/V (B,H_kv,n_k,d), O (B,H,n_q,d), LSE (B,H,n_q). Rows that see no key in this
 * piece get O = 0 and LSE = −∞. stats may be NULL. */
int tile_attend_f32(const attn_problem_t *p, attn_span_t qs, int64_t n_q, attn_span_t ks, int64_t n_k,
                    const float *Q, const float *K, const float *V, float *O, float *LSE, tile_walk_t walk,
                    tile_stats_t *stats, attn_err_t *err);

/* What the blockwise and sliding_window backends share: they run float32 only, and their
 * workspace is the engine's. */
struct attn_backend;
int tile_backend_supports_dtype(const struct attn_backend *self, const attn_problem_t *p, char *reason, size_t len);
size_t tile_backend_workspace(const struct attn_backend *self, const attn_problem_t *p);

/* Workspace tile_attend_f32 allocates for a piece of n_q rows. */
size_t tile_workspace_bytes(const attn_problem_t *p, int64_t n_q);
int tile_block_q(const attn_problem_t *p);
int tile_block_k(const attn_problem_t *p);
