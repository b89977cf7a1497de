/* sinks_window.c — approximate attention (StreamingLLM's attention sinks): each query keeps the
 * first S keys (--sinks) and its local window of W keys (--window, i − W < j ≤ i), both within
 * what the mask lets it see, and attends exactly to those. Cost linear in n: S + W keys per row.
 * Declares itself approximate: the tasks report what it loses (docs/approximate.md). */
#include "core/backend.h"
#include "impls/cpu/sparse_engine.h"
#include "impls/cpu/tile_engine.h"

/* The mask's keys for positions [i_lo, i_hi] split into the sinks [0, S) and the window part
 * [S, n) (disjoint, so no key counts twice). */
static void sinks_ranges(const attn_problem_t *p, const attn_exec_t *x, int64_t i_lo, int64_t i_hi, int64_t lo[2],
                         int64_t hi[2]) {
    attn_span_t ks = problem_k_span(p);
    int64_t S = ATTN_MIN(x->sinks, p->n_k), wlo, whi;
    attn_vis_t v = problem_vis(p);
    mask_key_range(&v, i_lo, i_hi, ks, S, &lo[0], &hi[0]);
    mask_key_range(&v, i_lo, i_hi, ks, p->n_k, &lo[1], &hi[1]);
    mask_key_range(&(attn_vis_t){ATTN_MASK_WINDOW, x->approx_window, NULL, 0}, i_lo, i_hi, ks, p->n_k, &wlo, &whi);
    sparse_range_and(&lo[1], &hi[1], wlo, whi);
    sparse_range_and(&lo[1], &hi[1], S, p->n_k);
}

static void sinks_row_keys(const sparse_plan_t *s, int64_t i, int64_t lo[2], int64_t hi[2]) {
    sinks_ranges(s->p, s->x, i, i, lo, hi);
}

void sinks_window_request(const attn_problem_t *p, const attn_exec_t *x, int bk, int64_t r0, int rows,
                          sparse_req_t *rq) {
    attn_span_t qs = problem_q_span(p);
    int64_t lo[2], hi[2];
    sinks_ranges(p, x, qs.start + qs.stride * r0, qs.start + qs.stride * (r0 + rows - 1), lo, hi);
    for (int k = 0; k < 2; k++)
        sparse_tiles_of(lo[k], hi[k], bk, &rq->lo[k], &rq->hi[k]);
    rq->c_lo = rq->c_hi = rq->keep = 0;
}

sparse_rule_t sinks_window_rule(const attn_problem_t *p, const attn_exec_t *x) {
    return (sparse_rule_t){problem_vis(p), ATTN_MIN(x->sinks, p->n_k), x->approx_window, 1};
}

static int64_t sinks_tiles(const sparse_plan_t *s, int64_t bh, int64_t r0, int rows, const float *Q, void *scratch,
                           int64_t *out) {
    (void)bh, (void)Q, (void)scratch;
    sparse_req_t rq;
    sinks_window_request(s->p, s->x, tile_block_k(s->p), r0, rows, &rq);
    int64_t n = 0;
    for (int k = 0; k < 2; k++)
        n = sparse_tiles_add_range(out, n, rq.lo[k], rq.hi[k]);
    return n;
}

int sinks_window_lists(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, int64_t *counts,
                       int64_t *lists, attn_err_t *err) {
    sparse_plan_t s = {.p = p, .x = x, .tiles = sinks_tiles, .row_keys = sinks_row_keys};
    return sparse_lists(&s, io, counts, lists, err);
}

static int sinks_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                         attn_err_t *err) {
    (void)self;
    sparse_plan_t s = {.p = p, .x = x, .tiles = sinks_tiles, .row_keys = sinks_row_keys};
    ATTN_TRY(sparse_attend_f32(&s, io, io->keys_visited, err));
    problem_finish_rows(ATTN_F32, io->o, io->lse, problem_numel_lse(p), p->head_dim);
    return ATTN_OK;
}

static size_t sinks_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    return sparse_workspace_bytes(p, x, 0);
}

const attn_backend_t backend_cpu_sinks_window = {
    .name = "sinks_window",
    .device = "cpu",
    .description = "approximate: the first --sinks S keys plus the --window W most recent, exact over those; f32",
    .supports = sparse_supports,
    .forward = sinks_forward,
    .workspace_bytes = sinks_workspace,
    .approximate = 1,
};
