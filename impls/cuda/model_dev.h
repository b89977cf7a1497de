/* model_dev.h — the shared model's forward resident on a GPU (model/devops.h's ops): the dense
 * layers as dense_cuda.h's cuBLAS float32 SGEMMs (no TF32) on device buffers, norms, RoPE,
 * transposes, SwiGLU and residuals as kernels, K/V stored into a kv_device.h cache from device
 * rows. Only the tokens go up and the logit rows come down. docs/device-model.md. */
#pragma once
#include "model/devops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills *o for model m, whose weights `dense` holds on CUDA device `device` (cuda_dense_create
 * for m); both must outlive it. Free with cuda_devops_free. */
int cuda_devops_create(const model_t *m, const model_dense_t *dense, int device, model_devops_t *o, attn_err_t *err);
void cuda_devops_free(model_devops_t *o);

#ifdef __cplusplus
}
#endif
