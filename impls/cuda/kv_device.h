/* kv_device.h — a KV cache kept in GPU memory (model.h's model_memspace_t: rows put once as they
 * are appended, bf16 and f16 in 2 bytes) and blockwise_cuda's forward on K/V already there
 * (attn_exec_t.kv_device): only Q goes up per call. docs/needle-model.md ("On a GPU"). */
#pragma once
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills *s for CUDA device `device`; ATTN_ERUNTIME without one. s->ctx counts the bytes put
 * (cuda_kv_space_bytes_put). Free with cuda_kv_space_free once every cache in it is freed. */
int cuda_kv_space_create(int device, model_memspace_t *s, attn_err_t *err);
void cuda_kv_space_free(model_memspace_t *s);
double cuda_kv_space_bytes_put(const model_memspace_t *s);

/* blockwise_cuda and sliding_window_cuda with x->kv_device: bf16/f16 K/V (B, H_kv, n_k, d) in device
 * memory, read where they are (the same kernels and decode split as cuda_flash_forward). */
int cuda_flash_forward_kv(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err);

#ifdef __cplusplus
}
#endif
