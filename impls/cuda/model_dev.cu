/* model_dev.cu — see model_dev.h. Each op is one kernel (or one SGEMM) on the default stream of
 * the model's device; the arithmetic is the host forward's (forward.inc) in the same precision —
 * sums of squares and the RoPE angles and rotation in double, SwiGLU in double — so the two differ
 * by float32 rounding (summation order, libm's last bit), checked by tests/test_cuda_model_dev.c. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "impls/cuda/cuda_util.cuh"
extern "C" {
#include "model/devops.h"
}
#include "impls/cuda/dense_cuda.h"
#include "impls/cuda/model_dev.h"
#include "impls/cuda/model_dev_index.h"

namespace {

struct devops_ctx {
    const model_t *m; /* its embedding is the key to the device copy */
    const model_dense_t *dense;
    int device;
};

const devops_ctx *ctx_of(const model_devops_t *o) { return static_cast<const devops_ctx *>(o->ctx); }

unsigned blocks_for(int64_t n, int per = 256) {
    int64_t b = (n + per - 1) / per;
    return (unsigned)(b < 1 ? 1 : b > 65535 * 16 ? 65535 * 16 : b);
}

#define GRID_LOOP(i, n) for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__global__ void embed_kernel(float *x, const float *E, const int32_t *tok, int64_t n, int64_t D) {
    GRID_LOOP(i, n * D) x[i] = E[(int64_t)tok[i / D] * D + i % D];
}

/* One block per row: Σx² in double (as the host), then x · inv · w with inv rounded to float. */
__global__ void rmsnorm_kernel(float *out, const float *x, const float *w, int64_t dim, double eps) {
    __shared__ double part[256];
    const float *xr = x + (int64_t)blockIdx.x * dim;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        ss += (double)xr[i] * xr[i];
    part[threadIdx.x] = ss;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s /= 2) {
        if ((int)threadIdx.x < s)
            part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    float inv = (float)(1.0 / sqrt(part[0] / (double)dim + eps));
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        out[(int64_t)blockIdx.x * dim + i] = xr[i] * inv * w[i];
}

/* rows (n, heads·hd): pair i < half of every head rotated by (pos0 + r)·θ^(−2i/rot), in double. */
__global__ void rope_kernel(float *x, int64_t n, int64_t heads, int hd, int half, double theta, int rot, int64_t pos0) {
    GRID_LOOP(t, n * heads * half) {
        int64_t rh, r;
        int i;
        mdev_rope_at(t, heads, half, &rh, &i, &r);
        double f = pow(theta, -(double)(2 * i) / rot), s, c;
        sincos((double)(pos0 + r) * f, &s, &c);
        float *x1 = x + rh * hd, *x2 = x1 + half;
        double u = x1[i], v = x2[i];
        x1[i] = (float)(u * c - v * s);
        x2[i] = (float)(v * c + u * s);
    }
}

/* dir 0: rows (n, heads·hd) → (heads, n, hd); dir 1: back. */
__global__ void heads_kernel(float *dst, const float *src, int64_t n, int64_t heads, int64_t hd, int dir) {
    GRID_LOOP(t, n * heads * hd) { /* t indexes the rows form */
        int64_t r, h, i;
        mdev_rows_at(t, heads, hd, &r, &h, &i);
        int64_t hm = mdev_head_major(n, hd, r, h, i);
        if (dir == 0)
            dst[hm] = src[t];
        else
            dst[t] = src[hm];
    }
}

__global__ void add_kernel(float *x, const float *h, int64_t n) { GRID_LOOP(i, n) x[i] += h[i]; }

__global__ void swiglu_kernel(float *gate, const float *up, int64_t n) {
    GRID_LOOP(i, n) {
        float g = gate[i];
        gate[i] = (float)((double)g / (1 + exp(-(double)g)) * (double)up[i]);
    }
}

/* rows (n, heads·hd) → slab (heads, cap, hd) at row `at`, in T (bf16 / f16 round to nearest even). */
template <typename T>
__global__ void kv_store_kernel(T *slab, const float *rows, int64_t cap, int64_t at, int64_t n, int64_t heads, int64_t hd) {
    GRID_LOOP(t, n * heads * hd) {
        int64_t r, h, i;
        mdev_rows_at(t, heads, hd, &r, &h, &i);
        float v = rows[t];
        T *d = slab + mdev_slab(cap, at, hd, r, h, i);
        if constexpr (sizeof(T) == sizeof(float))
            *d = v;
        else if constexpr (std::is_same<T, __half>::value)
            *d = __float2half_rn(v);
        else
            *d = __float2bfloat16_rn(v);
    }
}

#define LAUNCHED() CUDA_TRY_LAUNCH()

void *op_alloc(const model_devops_t *o, size_t bytes, attn_err_t *err) {
    cudaError_t e = cudaSetDevice(ctx_of(o)->device);
    if (e != cudaSuccess) {
        cuda_fail(err, e, "cudaSetDevice", __FILE__, __LINE__);
        return nullptr;
    }
    return cuda_alloc(bytes, err, "model activations in device memory");
}

void op_release(const model_devops_t *o, void *p) {
    (void)o;
    cuda_free(p);
}

int op_up(const model_devops_t *o, void *dst, const void *src, size_t bytes, attn_err_t *err) {
    CUDA_TRY(cudaSetDevice(ctx_of(o)->device));
    CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    return ATTN_OK;
}

int op_down(const model_devops_t *o, void *dst, const void *src, size_t bytes, attn_err_t *err) {
    CUDA_TRY(cudaSetDevice(ctx_of(o)->device));
    CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    return ATTN_OK;
}

const float *weight(const model_devops_t *o, const float *w, attn_err_t *err) {
    const float *d = cuda_dense_weight(ctx_of(o)->dense, w);
    if (!d)
        attn_fail(err, ATTN_EUSAGE, "GPU model: a weight that is not the model's");
    return d;
}

int op_embed(const model_devops_t *o, float *x, const int32_t *tok, int64_t n, attn_err_t *err) {
    const float *E = weight(o, ctx_of(o)->m->embed, err);
    if (!E)
        return err->code;
    int64_t D = ctx_of(o)->m->cfg.hidden_size;
    embed_kernel<<<blocks_for(n * D), 256>>>(x, E, tok, n, D);
    LAUNCHED();
    return ATTN_OK;
}

int op_linear(const model_devops_t *o, float *out, const float *x, const float *w, int64_t n, int64_t out_dim,
              int64_t in_dim, attn_err_t *err) {
    return cuda_dense_gemm(ctx_of(o)->dense, out, x, w, n, out_dim, in_dim, err);
}

int op_rmsnorm(const model_devops_t *o, float *out, const float *x, const float *w, int64_t n, int64_t dim, double eps,
               attn_err_t *err) {
    const float *wd = weight(o, w, err);
    if (!wd)
        return err->code;
    if (n > 0) {
        rmsnorm_kernel<<<(unsigned)n, 256>>>(out, x, wd, dim, eps);
        LAUNCHED();
    }
    return ATTN_OK;
}

int op_rope(const model_devops_t *o, float *x, int64_t n, int64_t heads, const rope_t *r, int64_t pos0, attn_err_t *err) {
    (void)o;
    int half = r->rot_dims / 2;
    rope_kernel<<<blocks_for(n * heads * half), 256>>>(x, n, heads, r->head_dim, half, r->theta, r->rot_dims, pos0);
    LAUNCHED();
    return ATTN_OK;
}

int op_to_heads(const model_devops_t *o, float *dst, const float *src, int64_t n, int64_t heads, int64_t hd,
                attn_err_t *err) {
    (void)o;
    heads_kernel<<<blocks_for(n * heads * hd), 256>>>(dst, src, n, heads, hd, 0);
    LAUNCHED();
    return ATTN_OK;
}

int op_from_heads(const model_devops_t *o, float *dst, const float *src, int64_t n, int64_t heads, int64_t hd,
                  attn_err_t *err) {
    (void)o;
    heads_kernel<<<blocks_for(n * heads * hd), 256>>>(dst, src, n, heads, hd, 1);
    LAUNCHED();
    return ATTN_OK;
}

int op_add(const model_devops_t *o, float *x, const float *h, int64_t count, attn_err_t *err) {
    (void)o;
    add_kernel<<<blocks_for(count), 256>>>(x, h, count);
    LAUNCHED();
    return ATTN_OK;
}

int op_swiglu(const model_devops_t *o, float *gate, const float *up, int64_t count, attn_err_t *err) {
    (void)o;
    swiglu_kernel<<<blocks_for(count), 256>>>(gate, up, count);
    LAUNCHED();
    return ATTN_OK;
}

/* The cache's form on the GPU is kv_device.cu's: bf16 and f16 in 2 bytes, f32 in 4. */
int op_kv_store(const model_devops_t *o, void *slab, attn_dtype_t dt, int64_t cap, int64_t at, const float *rows,
                int64_t n, int64_t heads, int64_t hd, attn_err_t *err) {
    (void)o;
    unsigned g = blocks_for(n * heads * hd);
    if (dt == ATTN_BF16)
        kv_store_kernel<<<g, 256>>>(static_cast<__nv_bfloat16 *>(slab), rows, cap, at, n, heads, hd);
    else if (dt == ATTN_F16)
        kv_store_kernel<<<g, 256>>>(static_cast<__half *>(slab), rows, cap, at, n, heads, hd);
    else if (dt == ATTN_F32)
        kv_store_kernel<<<g, 256>>>(static_cast<float *>(slab), rows, cap, at, n, heads, hd);
    else
        return attn_fail(err, ATTN_EUSAGE, "GPU model: a KV cache in %s", dtype_name(dt));
    LAUNCHED();
    return ATTN_OK;
}

} // namespace

extern "C" int cuda_devops_create(const model_t *m, const model_dense_t *dense, int device, model_devops_t *o,
                                  attn_err_t *err) {
    memset(o, 0, sizeof *o);
    devops_ctx *c = static_cast<devops_ctx *>(calloc(1, sizeof *c));
    if (!c)
        return attn_fail(err, ATTN_ERUNTIME, "GPU model: out of memory");
    *c = devops_ctx{m, dense, device};
    *o = model_devops_t{op_alloc, op_release, op_up, op_down, op_embed, op_linear, op_rmsnorm, op_rope,
                        op_to_heads, op_from_heads, op_add, op_swiglu, op_kv_store, device, c};
    return ATTN_OK;
}

extern "C" void cuda_devops_free(model_devops_t *o) {
    free(o->ctx);
    memset(o, 0, sizeof *o);
}
