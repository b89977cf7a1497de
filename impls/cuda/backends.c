/* backends.c — the CUDA backends' table entries (naive_cuda, blockwise_cuda,
 * sliding_window_cuda; the work is in naive.cu and flash.cu, kv_device.cu for K/V already on the
 * device). Without a device each declines, and its workspace_bytes are device bytes. Details:
 * docs/gpu-kernels.md. */
#include "core/backend.h"
#include "impls/cuda/cuda_backends.h"
#include "impls/cuda/flash_decode.h"
#include "impls/cuda/flash_bwd.h"
#include "impls/cuda/kv_device.h"

static int naive_cuda_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    if (p->dtype != ATTN_F32 && !dtype_is_16bit(p->dtype)) {
        snprintf(reason, len, "%s runs in f32, bf16 or f16 only (got %s)", self->name, dtype_name(p->dtype));
        return 0;
    }
    return cuda_supports_device(self, x, cuda_naive_device_bytes(p), reason, len);
}

static int naive_cuda_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                              attn_err_t *err) {
    (void)self;
    return cuda_naive_forward(p, x, io, err);
}

static size_t naive_cuda_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self, (void)x;
    return cuda_naive_device_bytes(p);
}

const attn_backend_t backend_cuda_naive = {
    .name = "naive_cuda",
    .device = "cuda",
    .description = "cuBLAS S = QKᵀ into an n_q×n_k matrix, softmax kernel, cuBLAS PV; f32 (no TF32), bf16 or f16",
    .supports = naive_cuda_supports,
    .forward = naive_cuda_forward,
    .workspace_bytes = naive_cuda_workspace,
    .device_kv = 1,
};

static int flash_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    char why[256];
    if (!cuda_flash_supports(p, why, sizeof why)) {
        snprintf(reason, len, "%s %s", self->name, why);
        return 0;
    }
    return cuda_supports_device(self, x, cuda_flash_device_bytes(p), reason, len);
}

static int window_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    if (p->mask != ATTN_MASK_WINDOW) {
        snprintf(reason, len, "%s declines mask %s: it computes only the window band (use --mask window)",
                 self->name, mask_name(p->mask));
        return 0;
    }
    return flash_supports(self, p, x, reason, len);
}

static int flash_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err) {
    (void)self; /* K/V of a KV cache kept on the device are read there (kv_device.cu) */
    return x->kv_device ? cuda_flash_forward_kv(p, x, io, err) : cuda_flash_forward(p, x, io, err);
}

static size_t flash_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self, (void)x;
    return cuda_flash_device_bytes(p);
}

/* The backward (flash_bwd.cu); its workspace figure is all the device bytes it allocates. */
static int flash_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                          const attn_grad_io_t *g, attn_err_t *err) {
    (void)self;
    return cuda_flash_backward(p, x, g, err);
}

/* What flash_bwd.cu instantiates: bf16, f16 and head dims 64, 128 (cuda_flash_bwd_launch). */
static int flash_supports_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                                   char *why, size_t len) {
    (void)x;
    if (!dtype_is_16bit(p->dtype)) {
        snprintf(why, len, "%s's backward runs in bf16 or f16 only (got %s)", self->name, dtype_name(p->dtype));
        return 0;
    }
    if (p->head_dim != 64 && p->head_dim != 128) {
        snprintf(why, len, "%s's backward has kernels for head dims 64 and 128 only (got %lld)", self->name,
                 (long long)p->head_dim);
        return 0;
    }
    return 1;
}

static size_t flash_bwd_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self, (void)x;
    return cuda_flash_bwd_device_bytes(p);
}

static int flash_split(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    return cuda_decode_split(p, x);
}

const attn_backend_t backend_cuda_blockwise = {
    .name = "blockwise_cuda",
    .device = "cuda",
    .description = "FlashAttention-2-style: mma.sync tensor cores, cp.async K/V tiles, online softmax, "
                   "masked tiles skipped (wgmma kernel on compute capability 9.0); bf16 or f16, d 64/128/256 (backward 64/128)",
    .supports = flash_supports,
    .forward = flash_forward,
    .workspace_bytes = flash_workspace,
    .backward = flash_backward,
    .backward_workspace_bytes = flash_bwd_workspace,
    .decode_split = flash_split,
    .device_kv = 1,
    .device_qo = 1, /* Q, O, LSE of the device-resident model forward read and written in place */
    .supports_backward = flash_supports_backward,
};

/* The GPU kernel already visits only the key tiles a query block can see, so the window
 * backend is that kernel restricted to window masks: the band, linear in n. */
const attn_backend_t backend_cuda_sliding_window = {
    .name = "sliding_window_cuda",
    .device = "cuda",
    .description = "window mask only; the tensor-core kernel over just the band of K/V tiles; bf16 or f16, d 64/128/256 (backward 64/128)",
    .supports = window_supports,
    .forward = flash_forward,
    .workspace_bytes = flash_workspace,
    .backward = flash_backward,
    .backward_workspace_bytes = flash_bwd_workspace,
    .decode_split = flash_split,
    .device_kv = 1,
    .device_qo = 1, /* Q, O, LSE of the device-resident model forward read and written in place */
    .supports_backward = flash_supports_backward,
};
