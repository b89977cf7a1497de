/* blockwise.c — FlashAttention-style tiled attention on the CPU (float32): every K/V tile is
 * considered and the ones the mask hides are skipped, O(n) extra memory (tile_engine.c); short
 * queries take the decode split plan instead (decode.c, docs/decode.md). blockwise computes a
 * tile with the fused AVX-512 kernel where the CPU has one, blockwise_blas always with OpenBLAS
 * sgemm, the portable path, so both can be compared in one run (docs/cpu-kernel.md). */
#include "core/backend.h"
#include "impls/cpu/decode.h"
#include "impls/cpu/tile_engine.h"
#include "impls/cpu/tile_grad.h"

static int blockwise_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    return tile_backend_supports_dtype(self, p, reason, len) && backend_check_memory(self, p, x, reason, len);
}

static int blockwise_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err) {
    const tile_impl_t *impl = self->ctx;
    tile_io_t t = {io->q, io->k, io->v, io->o, io->lse, p->n_q, p->n_k};
    decode_plan_t pl;
    if (decode_plan_cpu(p, x->threads, &pl))
        ATTN_TRY(decode_attend_f32(p, x->threads, &pl, problem_q_span(p), problem_k_span(p), &t, err));
    else
        ATTN_TRY(tile_attend_f32_with(*impl, p, x->threads, problem_q_span(p), p->n_q, problem_k_span(p), p->n_k,
                                      &t, TILE_SCAN_ALL, NULL, err));
    problem_finish_rows(ATTN_F32, io->o, io->lse, problem_numel_lse(p), p->head_dim);
    return ATTN_OK;
}

static size_t blockwise_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    const tile_impl_t *impl = self->ctx;
    decode_plan_t pl;
    if (decode_plan_cpu(p, x->threads, &pl))
        return decode_workspace_bytes(p, x->threads, &pl);
    return tile_workspace_bytes_with(*impl, p, x->threads, p->n_q);
}

static int blockwise_split(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    decode_plan_t pl;
    return decode_plan_cpu(p, x->threads, &pl) ? pl.split : 0;
}

static int blockwise_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                              const attn_grad_io_t *g, attn_err_t *err) {
    (void)self;
    return tile_backward_whole(p, x, g, TILE_SCAN_ALL, err);
}

static const tile_impl_t impl_auto = TILE_IMPL_AUTO, impl_blas = TILE_IMPL_BLAS;

const attn_backend_t backend_cpu_blockwise = {
    .name = "blockwise",
    .device = "cpu",
    .description = "FlashAttention-style tiles, online softmax; fused AVX-512 kernel (else sgemm); f32",
    .supports = blockwise_supports,
    .forward = blockwise_forward,
    .workspace_bytes = blockwise_workspace,
    .backward = blockwise_backward,
    .backward_workspace_bytes = tile_backward_workspace,
    .decode_split = blockwise_split,
    .ctx = &impl_auto,
};

const attn_backend_t backend_cpu_blockwise_blas = {
    .name = "blockwise_blas",
    .device = "cpu",
    .description = "blockwise with OpenBLAS sgemm per tile + AVX-512 exp (the portable path); f32",
    .supports = blockwise_supports,
    .forward = blockwise_forward,
    .workspace_bytes = blockwise_workspace,
    .backward = blockwise_backward,
    .backward_workspace_bytes = tile_backward_workspace,
    .decode_split = blockwise_split,
    .ctx = &impl_blas,
};
