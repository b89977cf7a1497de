/* sparse_engine.h — the CPU engine of the approximate backends (sinks_window, topk_blocks): the
 * tile engine's loop (S = Q·Kᵀ sgemm, online softmax, O += P·V sgemm) over a chosen list of K
 * tiles per Q tile instead of a contiguous band, each row keeping only its chosen key ranges.
 * Within what it visits it is exact, so with a budget that covers every key it is exact attention. */
#pragma once
#include "core/problem.h"
#include "impls/cpu/sparse_tiles.h"

/* What one approximate backend chooses. Positions are global (spans of problem.h). */
typedef struct sparse_plan {
    const attn_problem_t *p;
    const attn_exec_t *x;
    const void *ctx;         /* the backend's own data (topk: the key tile summaries) */
    size_t scratch_bytes;    /* per worker, for `tiles` */
    /* The ascending, distinct K tile indices (tiles of bk keys) Q tile rows [r0, r0 + rows) of
     * (batch, head) bh visit; Q (rows, d) those rows. Returns their count. */
    int64_t (*tiles)(const struct sparse_plan *s, int64_t bh, int64_t r0, int rows, const float *Q, void *scratch,
                     int64_t *out);
    /* The key rows query position i keeps: up to two ranges [lo[k], hi[k]) (empty when lo ≥ hi),
     * always within what the mask lets i see (mask_key_range). */
    void (*row_keys)(const struct sparse_plan *s, int64_t i, int64_t lo[2], int64_t hi[2]);
} sparse_plan_t;

/* Float32 attention of the whole problem (io: attn_io_t's tensors, f32) over the plan's keys.
 * *visited (may be NULL) gets the (query, key) pairs attended, over batch × heads. Rows that keep
 * no key get O = 0, LSE = −∞ (problem_finish_rows then makes them NaN, as for exact backends). */
int sparse_attend_f32(const sparse_plan_t *s, const attn_io_t *io, double *visited, attn_err_t *err);

/* Workspace sparse_attend_f32 allocates for s (the analytic memory figure). */
/* The supports of both approximate backends: a local window ≥ 1, one document, float32, memory. */
struct attn_backend;
int sparse_supports(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                    size_t len);
/* The part of it that is the rule's, not the engine's (the CUDA versions share it): the window
 * and the documents. */
int sparse_supports_rule(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x,
                         char *reason, size_t len);
size_t sparse_workspace_bytes(const attn_problem_t *p, const attn_exec_t *x, size_t scratch_bytes);

/* The request (sparse_tiles.h) of the Q tile of rows [r0, r0 + rows) under K tiles of bk keys:
 * what each backend's tile list is made of, so that the CUDA versions list what these list. */
void sinks_window_request(const attn_problem_t *p, const attn_exec_t *x, int bk, int64_t r0, int rows,
                          sparse_req_t *rq);
void topk_blocks_request(const attn_problem_t *p, const attn_exec_t *x, int bk, int64_t r0, int rows,
                         sparse_req_t *rq);
/* sparse_tiles.h's keep rule of each backend at x (topk_blocks: what the mask lets a row see). */
sparse_rule_t sinks_window_rule(const attn_problem_t *p, const attn_exec_t *x);
sparse_rule_t topk_blocks_rule(const attn_problem_t *p);

/* The K tile lists a backend attends at x on io's Q and K (f32), for tests that hold the CUDA
 * versions to them: counts (B·H, n_qt) and lists (B·H, n_qt, n_kt), tiles tile_block_q/k(p). */
int sinks_window_lists(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, int64_t *counts,
                       int64_t *lists, attn_err_t *err);
int topk_blocks_lists(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, int64_t *counts,
                      int64_t *lists, attn_err_t *err);
/* What both run on: every (batch·head, Q tile)'s list of plan s, Q being io's (f32). */
int sparse_lists(const sparse_plan_t *s, const attn_io_t *io, int64_t *counts, int64_t *lists, attn_err_t *err);

/* Appends tiles [t_lo, t_hi) to a sorted list of n distinct tiles, keeping it sorted and distinct
 * (lists here are short: a window band, the sinks, the top-k). Returns the new count. */
int64_t sparse_tiles_add_range(int64_t *list, int64_t n, int64_t t_lo, int64_t t_hi);
/* The K tiles [*t_lo, *t_hi) that key rows [lo, hi) touch (empty when lo ≥ hi). */
void sparse_tiles_of(int64_t lo, int64_t hi, int bk, int64_t *t_lo, int64_t *t_hi);
/* Intersection of [a_lo, a_hi) and [b_lo, b_hi) into a. */
static inline void sparse_range_and(int64_t *a_lo, int64_t *a_hi, int64_t b_lo, int64_t b_hi) {
    *a_lo = *a_lo > b_lo ? *a_lo : b_lo;
    *a_hi = *a_hi < b_hi ? *a_hi : b_hi;
}
