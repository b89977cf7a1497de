/* dense_cuda.cu — see dense_cuda.h. Row-major out (n, o) = x (n, i) · Wᵀ with W (o, i) is, in
 * cuBLAS's column-major terms, outᵀ (o × n) = op_T(W as i × o) · xᵀ (i × n). */
#include <stdlib.h>
#include <string.h>

#include "impls/cuda/cuda_util.cuh"
extern "C" {
#include "model/model.h"
}
#include "impls/cuda/dense_cuda.h"

namespace {

struct dense_ctx {
    int device, count;
    cublasHandle_t h;
    const float **host; /* the model's weights (host pointers: the lookup keys) */
    float **dev;        /* their device copies */
    float *x, *out;     /* activations, grown on demand */
    size_t x_cap, out_cap;
};

int grow(float **buf, size_t *cap, size_t floats, const char *what, attn_err_t *err) {
    if (floats <= *cap)
        return ATTN_OK;
    cuda_free(*buf);
    *buf = static_cast<float *>(cuda_alloc(floats * sizeof(float), err, what));
    *cap = *buf ? floats : 0;
    return *buf ? ATTN_OK : ATTN_ERUNTIME;
}

const float *weight_of(const dense_ctx *c, const float *w) {
    for (int i = 0; i < c->count; i++)
        if (c->host[i] == w)
            return c->dev[i];
    return nullptr;
}

/* out = x · Wᵀ with every array on the device. */
int gemm(dense_ctx *c, float *out, const float *x, const float *w, int64_t n, int64_t out_dim, int64_t in_dim,
         attn_err_t *err) {
    const float *wd = weight_of(c, w);
    if (!wd)
        return attn_fail(err, ATTN_EUSAGE, "GPU dense layers: a weight that is not the model's (%lld × %lld)",
                         (long long)out_dim, (long long)in_dim);
    if (n > INT32_MAX || out_dim > INT32_MAX || in_dim > INT32_MAX)
        return attn_fail(err, ATTN_EUSAGE, "GPU dense layers: %lld rows are beyond cuBLAS's int dimensions", (long long)n);
    CUDA_TRY(cudaSetDevice(c->device));
    const float one = 1.f, zero = 0.f;
    CUBLAS_TRY(cublasSgemm(c->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)out_dim, (int)n, (int)in_dim, &one, wd, (int)in_dim, x,
                           (int)in_dim, &zero, out, (int)out_dim));
    return ATTN_OK;
}

int dense_linear(const model_dense_t *d, float *out, const float *x, const float *w, int64_t n, int64_t out_dim,
                 int64_t in_dim, attn_err_t *err) {
    dense_ctx *c = static_cast<dense_ctx *>(d->ctx);
    CUDA_TRY(cudaSetDevice(c->device));
    ATTN_TRY(grow(&c->x, &c->x_cap, (size_t)(n * in_dim), "GPU dense layers: input rows", err));
    ATTN_TRY(grow(&c->out, &c->out_cap, (size_t)(n * out_dim), "GPU dense layers: output rows", err));
    CUDA_TRY(cudaMemcpy(c->x, x, (size_t)(n * in_dim) * sizeof(float), cudaMemcpyHostToDevice));
    ATTN_TRY(gemm(c, c->out, c->x, w, n, out_dim, in_dim, err));
    CUDA_TRY(cudaMemcpy(out, c->out, (size_t)(n * out_dim) * sizeof(float), cudaMemcpyDeviceToHost));
    return ATTN_OK;
}

void ctx_free(dense_ctx *c) {
    if (!c)
        return;
    for (int i = 0; c->dev && i < c->count; i++)
        cuda_free(c->dev[i]);
    cuda_free(c->x), cuda_free(c->out);
    if (c->h)
        cublasDestroy(c->h);
    free(c->host), free(c->dev), free(c);
}

} // namespace

extern "C" int cuda_dense_create(const model_t *m, int device, model_dense_t *d, attn_err_t *err) {
    memset(d, 0, sizeof *d);
    attn_exec_t x = exec_default();
    x.device = device;
    ATTN_TRY(cuda_begin(&x, err));
    int count = model_weight_count(&m->cfg);
    dense_ctx *c = static_cast<dense_ctx *>(calloc(1, sizeof *c));
    float **ptrs = static_cast<float **>(calloc((size_t)count, sizeof *ptrs));
    int64_t *numel = static_cast<int64_t *>(calloc((size_t)count, sizeof *numel));
    if (c) {
        c->device = device;
        c->host = static_cast<const float **>(calloc((size_t)count, sizeof *c->host));
        c->dev = static_cast<float **>(calloc((size_t)count, sizeof *c->dev));
    }
    int rc = c && ptrs && numel && c->host && c->dev ? ATTN_OK : attn_fail(err, ATTN_ERUNTIME, "GPU dense layers: out of memory");
    if (rc == ATTN_OK && cublasCreate(&c->h) != CUBLAS_STATUS_SUCCESS)
        rc = attn_fail(err, ATTN_ERUNTIME, "GPU dense layers: cublasCreate failed");
    /* Pedantic float32: no TF32 (its 10-bit mantissa would be a model difference, not attention's). */
    if (rc == ATTN_OK && cublasSetMathMode(c->h, CUBLAS_PEDANTIC_MATH) != CUBLAS_STATUS_SUCCESS)
        rc = attn_fail(err, ATTN_ERUNTIME, "GPU dense layers: cublasSetMathMode failed");
    int n = rc == ATTN_OK ? model_weights(m, ptrs, numel, count) : 0;
    for (int i = 0; rc == ATTN_OK && i < n; i++) {
        c->host[i] = ptrs[i];
        c->dev[i] = static_cast<float *>(cuda_alloc((size_t)numel[i] * sizeof(float), err, "GPU dense layers: a weight"));
        c->count = i + 1;
        if (!c->dev[i])
            rc = ATTN_ERUNTIME;
        else if (cudaMemcpy(c->dev[i], ptrs[i], (size_t)numel[i] * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess)
            rc = attn_fail(err, ATTN_ERUNTIME, "GPU dense layers: weight upload failed");
    }
    free(ptrs), free(numel);
    if (rc != ATTN_OK) {
        ctx_free(c);
        return rc;
    }
    d->linear = dense_linear;
    d->ctx = c;
    return ATTN_OK;
}

extern "C" void cuda_dense_free(model_dense_t *d) {
    ctx_free(static_cast<dense_ctx *>(d->ctx));
    memset(d, 0, sizeof *d);
}

extern "C" const float *cuda_dense_weight(const model_dense_t *d, const float *w) {
    return weight_of(static_cast<const dense_ctx *>(d->ctx), w);
}

extern "C" int cuda_dense_gemm(const model_dense_t *d, float *out, const float *x, const float *w, int64_t n,
                               int64_t out_dim, int64_t in_dim, attn_err_t *err) {
    return gemm(static_cast<dense_ctx *>(d->ctx), out, x, w, n, out_dim, in_dim, err);
}
