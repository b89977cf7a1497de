/* sparse_backends.c — the table entries of the CUDA approximate backends (sinks_window_cuda,
 * topk_blocks_cuda; the work is in sparse_attn.cu). They keep what the CPU sinks_window and
 * topk_blocks keep (the same rule, impls/cpu/sparse_tiles.h) and decline what those decline.
 * Without a device each declines; workspace_bytes are device bytes. docs/approximate.md. */
#include <string.h>

#include "core/backend.h"
#include "impls/cpu/sparse_engine.h"
#include "impls/cuda/cuda_backends.h"
#include "impls/cuda/sparse_attn.h"

static int is_topk(const attn_backend_t *self) { return !strcmp(self->name, "topk_blocks_cuda"); }

static int sparse_cuda_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                                size_t len) {
    char why[256];
    if (!sparse_supports_rule(self, p, x, reason, len))
        return 0;
    if (!cuda_sparse_supports(p, why, sizeof why)) {
        snprintf(reason, len, "%s %s", self->name, why);
        return 0;
    }
    return cuda_supports_device(self, x, cuda_sparse_device_bytes(p, x, is_topk(self)), reason, len);
}

static int sparse_cuda_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                               const attn_io_t *io, attn_err_t *err) {
    return cuda_sparse_forward(p, x, io, is_topk(self), err);
}

static size_t sparse_cuda_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    return cuda_sparse_device_bytes(p, x, is_topk(self));
}

const attn_backend_t backend_cuda_sinks_window = {
    .name = "sinks_window_cuda",
    .device = "cuda",
    .description = "approximate: sinks_window on tensor cores (the first --sinks S keys plus the --window W); bf16, "
                   "f16, d 64/128/256",
    .supports = sparse_cuda_supports,
    .forward = sparse_cuda_forward,
    .workspace_bytes = sparse_cuda_workspace,
    .approximate = 1,
};

const attn_backend_t backend_cuda_topk_blocks = {
    .name = "topk_blocks_cuda",
    .device = "cuda",
    .description = "approximate: topk_blocks on the GPU (min/max tile bound, bitonic top-k, tensor-core attention "
                   "over the kept tiles); bf16, f16, d 64/128/256",
    .supports = sparse_cuda_supports,
    .forward = sparse_cuda_forward,
    .workspace_bytes = sparse_cuda_workspace,
    .approximate = 1,
};
