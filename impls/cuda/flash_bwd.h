/* flash_bwd.h — the FlashAttention-2-style backward on tensor cores (flash_bwd.cu): blockwise_cuda's
 * backward, and the per-step kernel a GPU ring backward calls on data already on the device.
 * Design and what is verified: docs/backward.md (GPU section). */
#pragma once
#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* blockwise_cuda's backward: host float32 tensors in and out, bf16 or f16 (p->dtype) on the device. */
int cuda_flash_backward(const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g, attn_err_t *err);
/* Device bytes the backward allocates (all of them: inputs, gradients and workspace; O(n)). */
size_t cuda_flash_bwd_device_bytes(const attn_problem_t *p);

#ifdef __cplusplus
}
#include <cuda_runtime.h>
/* One backward pass on device data, positions as in cuda_flash_call (cuda_backends.h): query row
 * r at q_off + r, key j at j, slabs q_ld / kv_ld rows apart. q, k, v, d_o are of p->dtype (bf16
 * or f16). lse2 and
 * delta come from cuda_flash_bwd_prep (rows of the q slabs). dq_acc (float32, unscaled dS·K) is
 * added to with atomics; dk (scaled) and dv are written, or added to when accumulate is set. */
struct cuda_flash_bwd_call {
    const void *q, *k, *v, *d_o;
    const float *lse2, *delta;
    float *dq_acc, *dk, *dv;
    int64_t n_q, n_k, q_ld, kv_ld, q_off, window;
    int mask;
    const int64_t *doc;
    int64_t n_docs;
    int accumulate;
    /* A ring piece pair (piece_vis.h): global positions of query row 0 and key 0 and their stride,
     * where documents are looked up (mask and window stay in the band positions above); stride 0
     * (the default): one contiguous problem, documents at the band positions. */
    int64_t q0, k0, stride;
};
int cuda_flash_bwd_launch(const attn_problem_t *p, const cuda_flash_bwd_call *c, cudaStream_t s, attn_err_t *err);
/* Per row (rows rows of d columns): delta = Σ dO∘O (float32 O, dO), dO → t (bf16 or f16, the
 * launch's p->dtype) into do16, and lse2 = LSE·log2(e), +∞ where LSE = −∞ (the row then
 * contributes nothing), in place. */
int cuda_flash_bwd_prep(const float *o, const float *d_o, float *lse2, float *delta, void *do16, int64_t rows,
                        int d, attn_dtype_t t, cudaStream_t s, attn_err_t *err);
/* dq[i] = dq_acc[i]·scale for n elements (may alias). */
int cuda_flash_bwd_scale(float *dq, const float *dq_acc, size_t n, float scale, cudaStream_t s, attn_err_t *err);
#endif
