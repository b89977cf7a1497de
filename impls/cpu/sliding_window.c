/* sliding_window.c — attention under a window mask (i − w < j ≤ i) that visits only the band of
 * K/V tiles the window touches, so its cost is linear in n. It shares blockwise's tile engine
 * and declines every other mask: a window backend running "causal" would be a different
 * (and quadratic) computation under its name. */
#include "core/backend.h"
#include "impls/cpu/tile_engine.h"
#include "impls/cpu/tile_grad.h"

static int window_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    if (p->mask != ATTN_MASK_WINDOW) {
        snprintf(reason, len, "%s declines mask %s: it computes only the window band (use --mask window)",
                 self->name, mask_name(p->mask));
        return 0;
    }
    return tile_backend_supports_dtype(self, p, reason, len) && backend_check_memory(self, p, x, reason, len);
}

static int window_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err) {
    (void)self;
    tile_io_t t = {io->q, io->k, io->v, io->o, io->lse, p->n_q, p->n_k};
    ATTN_TRY(tile_attend_f32(p, x->threads, problem_q_span(p), p->n_q, problem_k_span(p), p->n_k, &t, TILE_BAND_ONLY, NULL, err));
    problem_finish_rows(ATTN_F32, io->o, io->lse, problem_numel_lse(p), p->head_dim);
    return ATTN_OK;
}

static int window_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                           const attn_grad_io_t *g, attn_err_t *err) {
    (void)self;
    return tile_backward_whole(p, x, g, TILE_BAND_ONLY, err);
}

const attn_backend_t backend_cpu_sliding_window = {
    .name = "sliding_window",
    .device = "cpu",
    .description = "window mask only; visits just the band of tiles: cost linear in n; f32",
    .supports = window_supports,
    .forward = window_forward,
    .workspace_bytes = tile_backend_workspace,
    .backward = window_backward,
    .backward_workspace_bytes = tile_backward_workspace,
};
