/* kv_device.cu — see kv_device.h: the GPU memory space of a device-resident KV cache and the
 * flash forward that reads K/V from it (the rest as in flash.cu's cuda_flash_forward). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdlib.h>
#include <string.h>

#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/flash_decode.h"
extern "C" {
#include "model/model.h"
}
#include "impls/cuda/kv_device.h"

namespace {

struct space_ctx {
    int device;
    float *staging; /* float32 rows on their way to bf16, grown on demand */
    size_t staging_cap;
    double bytes_put;
};

/* Rows go up in pieces of at most this many elements: the staging buffer stays at 64 MiB. */
constexpr int64_t PUT_PIECE = (int64_t)16 << 20;

size_t elem_bytes(const model_memspace_t *s, attn_dtype_t dt) {
    (void)s;
    return dtype_is_16bit(dt) ? sizeof(__nv_bfloat16) : sizeof(float); /* bf16 and f16: 2 bytes */
}

void *space_alloc(const model_memspace_t *s, size_t bytes, attn_err_t *err) {
    space_ctx *c = static_cast<space_ctx *>(s->ctx);
    cudaError_t e = cudaSetDevice(c->device);
    if (e != cudaSuccess) {
        cuda_fail(err, e, "cudaSetDevice", __FILE__, __LINE__);
        return nullptr;
    }
    return cuda_alloc(bytes, err, "KV cache in device memory");
}

void space_release(const model_memspace_t *s, void *p) {
    (void)s;
    cuda_free(p);
}

int space_put(const model_memspace_t *s, void *dst, int64_t at, const float *src, int64_t n, attn_dtype_t dt,
              attn_err_t *err) {
    space_ctx *c = static_cast<space_ctx *>(s->ctx);
    CUDA_TRY(cudaSetDevice(c->device));
    size_t es = elem_bytes(s, dt), piece = (size_t)(n < PUT_PIECE ? n : PUT_PIECE);
    if (dtype_is_16bit(dt) && piece > c->staging_cap) {
        cuda_free(c->staging);
        c->staging = static_cast<float *>(cuda_alloc(piece * sizeof(float), err, "KV cache upload staging"));
        c->staging_cap = c->staging ? piece : 0;
        if (!c->staging)
            return ATTN_ERUNTIME;
    }
    for (int64_t i = 0; i < n; i += PUT_PIECE) {
        size_t k = (size_t)(n - i < PUT_PIECE ? n - i : PUT_PIECE);
        ATTN_TRY(cuda_upload(static_cast<char *>(dst) + (size_t)(at + i) * es, dt, src + i, k, c->staging, 0, err));
    }
    CUDA_TRY(cudaStreamSynchronize(0)); /* the staging buffer is reused by the next put */
    c->bytes_put += (double)n * (double)sizeof(float);
    return ATTN_OK;
}

int space_copy(const model_memspace_t *s, void *dst, int64_t dst_at, const void *src, int64_t src_at, int64_t n,
               attn_dtype_t dt, attn_err_t *err) {
    space_ctx *c = static_cast<space_ctx *>(s->ctx);
    CUDA_TRY(cudaSetDevice(c->device));
    size_t es = elem_bytes(s, dt);
    CUDA_TRY(cudaMemcpy(static_cast<char *>(dst) + (size_t)dst_at * es, static_cast<const char *>(src) + (size_t)src_at * es,
                        (size_t)n * es, cudaMemcpyDeviceToDevice));
    return ATTN_OK;
}

typedef __nv_bfloat16 bf16;

/* Q (float32, on the device: the device-resident model forward) to the attention's 16 bits. */
__global__ void q_to_16(void *dst, const float *src, int64_t n, int f16) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        if (f16)
            static_cast<__half *>(dst)[i] = __float2half_rn(src[i]);
        else
            static_cast<bf16 *>(dst)[i] = __float2bfloat16_rn(src[i]);
    }
}

/* problem_finish_rows on the device: a row whose LSE is −∞ (no visible key) becomes NaN. */
__global__ void finish_rows(float *o, float *lse, int64_t rows, int64_t d) {
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x)
        if (lse[r] == -INFINITY) {
            for (int64_t c = 0; c < d; c++)
                o[r * d + c] = NAN;
            lse[r] = NAN;
        }
}

/* x->qo_device: Q, O and LSE are the caller's device arrays; nothing crosses to the host. The
 * same kernels and decode split as cuda_flash_run_timed, O and LSE written in place. */
int forward_qo_device(const attn_problem_t *p, const attn_io_t *io, attn_err_t *err) {
    size_t nq = problem_numel_q(p), nl = problem_numel_lse(p);
    dev_buf q, docs, part;
    DEV_ALLOC(q, nq * sizeof(bf16) + 16, "blockwise_cuda Q (16-bit)");
    cudaStream_t s = 0;
    attn_vis_t vis;
    ATTN_TRY(cuda_vis_upload(p, docs, &vis, s, err));
    q_to_16<<<1024, 256, 0, s>>>(q.ptr, static_cast<const float *>(io->q), (int64_t)nq, p->dtype == ATTN_F16);
    CUDA_TRY_LAUNCH();
    float *o = static_cast<float *>(io->o), *lse = static_cast<float *>(io->lse);
    cuda_flash_call call = {q.ptr, io->k, io->v, o, lse, p->n_q, p->n_k, p->n_q, p->n_k, p->n_k - p->n_q, p->window,
                            (int)p->mask, vis.doc, vis.n_docs, 0, 0, 0}; /* stride 0: one contiguous problem */
    event_pair ev;
    ATTN_TRY(cuda_flash_launch_timed(p, &call, part, ev, s, err));
    if (nl) {
        finish_rows<<<256, 256, 0, s>>>(o, lse, (int64_t)nl, (int64_t)(nq / nl));
        CUDA_TRY_LAUNCH();
    }
    CUDA_TRY(cudaEventSynchronize(ev.stop));
    float ms = 0;
    CUDA_TRY(cudaEventElapsedTime(&ms, ev.start, ev.stop));
    if (io->device_s)
        *io->device_s = ms / 1e3;
    CUDA_TRY(cudaStreamSynchronize(s));
    return ATTN_OK;
}

} // namespace

int cuda_to_dtype_device(void *dst, attn_dtype_t t, const float *src, size_t n, cudaStream_t s, attn_err_t *err) {
    if (!n)
        return ATTN_OK;
    if (!dtype_is_16bit(t)) {
        CUDA_TRY(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, s));
        return ATTN_OK;
    }
    q_to_16<<<1024, 256, 0, s>>>(dst, src, (int64_t)n, t == ATTN_F16);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

int cuda_finish_rows_device(float *o, float *lse, int64_t rows, int64_t d, cudaStream_t s, attn_err_t *err) {
    if (rows <= 0)
        return ATTN_OK;
    finish_rows<<<256, 256, 0, s>>>(o, lse, rows, d);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

extern "C" int cuda_kv_space_create(int device, model_memspace_t *s, attn_err_t *err) {
    memset(s, 0, sizeof *s);
    attn_exec_t x = exec_default();
    x.device = device;
    ATTN_TRY(cuda_begin(&x, err));
    space_ctx *c = static_cast<space_ctx *>(calloc(1, sizeof *c));
    if (!c)
        return attn_fail(err, ATTN_ERUNTIME, "KV cache in device memory: out of memory");
    c->device = device;
    s->elem_bytes = elem_bytes, s->alloc = space_alloc, s->release = space_release, s->put = space_put,
    s->copy = space_copy, s->device = device, s->ctx = c;
    return ATTN_OK;
}

extern "C" void cuda_kv_space_free(model_memspace_t *s) {
    space_ctx *c = static_cast<space_ctx *>(s->ctx);
    if (c)
        cuda_free(c->staging);
    free(c);
    memset(s, 0, sizeof *s);
}

extern "C" double cuda_kv_space_bytes_put(const model_memspace_t *s) {
    return s->ctx ? static_cast<const space_ctx *>(s->ctx)->bytes_put : 0;
}

extern "C" int cuda_flash_forward_kv(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err) {
    if (!dtype_is_16bit(p->dtype))
        return attn_fail(err, ATTN_EUSAGE, "blockwise_cuda reads device K/V in bf16 or f16 only (got %s)",
                         dtype_name(p->dtype));
    ATTN_TRY(cuda_begin(x, err));
    if (x->qo_device)
        return forward_qo_device(p, io, err);
    size_t nq = problem_numel_q(p), nl = problem_numel_lse(p);
    dev_buf q, o, lse, staging, docs;
    DEV_ALLOC(q, nq * sizeof(bf16), "blockwise_cuda Q (16-bit)"); /* bf16 or f16: 2 bytes */
    DEV_ALLOC(o, nq * sizeof(float), "blockwise_cuda O");
    DEV_ALLOC(lse, nl * sizeof(float), "blockwise_cuda LSE");
    DEV_ALLOC(staging, nq * sizeof(float), "blockwise_cuda upload staging");
    cudaStream_t s = 0;
    attn_vis_t vis;
    ATTN_TRY(cuda_vis_upload(p, docs, &vis, s, err));
    ATTN_TRY(cuda_upload(q.ptr, p->dtype, (const float *)io->q, nq, staging.as<float>(), s, err));
    /* K/V slabs are n_k rows apart: the cache's rows of one kv head, or a gathered slab. */
    cuda_flash_call call = {q.ptr, io->k, io->v, o.as<float>(), lse.as<float>(), p->n_q, p->n_k, p->n_q, p->n_k,
                            p->n_k - p->n_q, p->window, (int)p->mask, vis.doc, vis.n_docs, 0, 0, 0};
    return cuda_flash_run_timed(p, &call, o, lse, nq, nl, io, s, err);
}
