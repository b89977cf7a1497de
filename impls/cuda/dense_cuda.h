/* dense_cuda.h — the shared model's dense layers on a GPU (model_dense_t, model/model.h): every
 * weight copied to the device once as float32, each linear a cuBLAS SGEMM in pedantic float32
 * math (no TF32), activations up and results down per call, so that with a GPU backend the
 * needle's 10⁶-token prefill is bounded by attention, not by the host's GEMMs. */
#pragma once
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills *d for model m on CUDA device `device` (weights uploaded now); ATTN_ERUNTIME without a
 * device or device memory. Free with cuda_dense_free; m must outlive it. */
int cuda_dense_create(const model_t *m, int device, model_dense_t *d, attn_err_t *err);
void cuda_dense_free(model_dense_t *d);
/* For the device-resident forward (model_dev.cu): the device copy of one of the model's weights
 * (NULL when w is not one), and out (n, out_dim) = x (n, in_dim) · Wᵀ on device buffers (the same
 * pedantic SGEMM as linear, no copies). */
const float *cuda_dense_weight(const model_dense_t *d, const float *w);
int cuda_dense_gemm(const model_dense_t *d, float *out, const float *x, const float *w, int64_t n, int64_t out_dim,
                    int64_t in_dim, attn_err_t *err);

#ifdef __cplusplus
}
#endif
