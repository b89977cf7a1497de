/* cuda_backends.h — the entry points the C backend table (backends.c) calls in the CUDA files.
 * Host arrays are float32 (ATTN_F32, ATTN_BF16 and ATTN_F16 alike); each call copies Q, K, V to the
 * device, converts them to the compute type there, runs, and copies O and LSE back as float32.
 * io->device_s, when set, receives the event-timed seconds of the compute kernels alone. */
#pragma once
#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* naive.cu: cuBLAS S = Q·Kᵀ into an n_q × n_k float32 matrix per head, a mask + softmax kernel,
 * cuBLAS O = P·V. f32 (pedantic float32 GEMMs, no TF32), bf16 or f16 (16-bit inputs, f32 accumulate). */
int cuda_naive_forward(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err);
size_t cuda_naive_device_bytes(const attn_problem_t *p);

/* flash.cu: the FlashAttention-2-style tensor-core kernel (bf16 or f16, head dims 64, 128 and 256). */
int cuda_flash_supports(const attn_problem_t *p, char *why, size_t len);
int cuda_flash_forward(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err);
size_t cuda_flash_device_bytes(const attn_problem_t *p);

#ifdef __cplusplus
}
#include <cuda_runtime.h>
/* The kernel on data already on the device (Q, K, V in p->dtype: bf16 or f16): rows [0, n_q) of every (batch,
 * head) slab of q, slabs q_ld rows apart (O and LSE likewise); query row r at position q_off + r
 * (negative allowed), key j at position j, K/V slabs kv_ld rows apart; mask and window as in
 * attn_problem_t but in these positions. Batch, heads, kv_heads, head_dim and scale come from p
 * (its doc pointer is host memory and is not read here). doc: n_docs + 1 document offsets in
 * device memory, in these positions, or NULL (one document; always so for band coordinates).
 * The distributed GPU backends call it once per (query piece, key block). */
struct cuda_flash_call {
    const void *q, *k, *v;
    float *o, *lse;
    int64_t n_q, n_k, q_ld, kv_ld, q_off, window;
    int mask;
    const int64_t *doc;
    int64_t n_docs;
    /* Documents of a ring piece pair (impls/parallel/piece_vis.h): the global positions of query
     * row 0 and key 0 and their stride. stride 0: query row r sits at q_off + r globally. */
    int64_t q0, k0, stride;
};
int cuda_flash_launch(const attn_problem_t *p, const cuda_flash_call *c, cudaStream_t s, attn_err_t *err);
/* flash_sm90.cu: the sm_90a kernel on the same call (bf16; head dims 64, 128, 256), whether it
 * can run p, and the choice between it and flash.cu's: cuda_kernel_request records --kernel
 * (cuda_begin), cuda_flash_pick resolves it on the current device (an error for wgmma off
 * compute capability 9.0 or on a shape it lacks). */
int cuda_sm90_launch(const attn_problem_t *p, const cuda_flash_call *c, cudaStream_t s, attn_err_t *err);
int cuda_sm90_supports(const attn_problem_t *p, char *why, size_t len);
void cuda_kernel_request(int kernel);
int cuda_flash_pick(const attn_problem_t *p, int *use_wgmma, attn_err_t *err);
extern "C" {
#endif

/* device.cu: see cuda_util.cuh. */
int cuda_supports_device(const attn_backend_t *self, const attn_exec_t *x, size_t device_bytes, char *reason,
                         size_t len);

#ifdef __cplusplus
}
#endif
