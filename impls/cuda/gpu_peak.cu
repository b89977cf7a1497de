/* gpu_peak.cu — the GPU roofline (device.h device_peak_*): one cuBLAS GEMM, n×n×n in bf16, f16 or
 * f32 (no TF32) with fp32 accumulation, and one read-only pass over device memory, each timed by
 * CUDA events. `attnbench peak` reports them, and the throughput task measures them beside every
 * GPU record so that frac_of_peak and the impossible-figure check use the same run's roof
 * (docs/roofline.md). Buffers are cached between calls until device_peak_release. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdio.h>

#include "impls/cuda/cuda_util.cuh"

static struct {
    int ordinal = -1, kind = -1, n = 0;
    void *a = nullptr, *b = nullptr, *c = nullptr; /* the GEMM's operands */
    void *r = nullptr;                              /* the read buffer */
    size_t r_bytes = 0;
    unsigned *sink = nullptr;
    cublasHandle_t h = nullptr;
} pk;

extern "C" void device_peak_release(void) {
    cuda_free(pk.a), cuda_free(pk.b), cuda_free(pk.c), cuda_free(pk.r), cuda_free(pk.sink);
    if (pk.h)
        cublasDestroy(pk.h);
    pk.a = pk.b = pk.c = pk.r = nullptr;
    pk.sink = nullptr;
    pk.h = nullptr;
    pk.r_bytes = 0;
    pk.n = 0;
    pk.kind = pk.ordinal = -1;
}

static size_t elem_bytes(int kind) { return kind == DEVICE_GEMM_F32 ? 4 : 2; }

/* Values in [−1, 1) from the index: a GEMM of zeros (or one repeated value) draws less power and
 * can run faster than real data, which would overstate the roof. */
__global__ void peak_fill(void *x, size_t n, int kind) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u;
        h ^= h >> 15;
        float v = (float)(h & 0xffff) / 32768.0f - 1.0f;
        if (kind == DEVICE_GEMM_BF16)
            ((__nv_bfloat16 *)x)[i] = __float2bfloat16(v);
        else if (kind == DEVICE_GEMM_F16)
            ((__half *)x)[i] = __float2half(v);
        else
            ((float *)x)[i] = v;
    }
}

/* 16-byte read-only loads, a grid-stride loop; the sum is stored only when it equals a value it
 * practically never has, so the loads cannot be dropped and nothing is written. */
__global__ void peak_read(const uint4 *__restrict__ p, size_t n, unsigned *sink) {
    unsigned acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = __ldg(p + i);
        acc += v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u)
        *sink = acc;
}

static int use_device(int ordinal, attn_err_t *err) {
    if (ordinal != pk.ordinal) {
        device_peak_release();
        pk.ordinal = ordinal;
    }
    CUDA_TRY(cudaSetDevice(ordinal));
    return ATTN_OK;
}

static int grid_for(int ordinal, attn_err_t *err, int *blocks) {
    int sms = 0;
    CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ordinal));
    *blocks = sms * 8;
    return ATTN_OK;
}

/* Times `launch` between two events on the default stream; seconds, or −1 with err set. */
template <typename F> static double timed(F launch, attn_err_t *err) {
    cudaEvent_t e0, e1;
    float ms = -1;
    if (cudaEventCreate(&e0) != cudaSuccess)
        return cuda_fail(err, cudaGetLastError(), "cudaEventCreate", __FILE__, __LINE__), -1;
    if (cudaEventCreate(&e1) != cudaSuccess) {
        cudaEventDestroy(e0);
        return cuda_fail(err, cudaGetLastError(), "cudaEventCreate", __FILE__, __LINE__), -1;
    }
    cudaEventRecord(e0);
    int rc = launch();
    cudaEventRecord(e1);
    cudaError_t e = cudaEventSynchronize(e1);
    if (rc == ATTN_OK && e == cudaSuccess)
        e = cudaEventElapsedTime(&ms, e0, e1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    if (rc != ATTN_OK)
        return -1;
    if (e != cudaSuccess)
        return cuda_fail(err, e, "timing the peak kernel", __FILE__, __LINE__), -1;
    return ms / 1e3;
}

static int gemm_setup(int ordinal, int kind, int n, attn_err_t *err) {
    ATTN_TRY(use_device(ordinal, err));
    if (!pk.h)
        CUBLAS_TRY(cublasCreate(&pk.h));
    if (pk.kind == kind && pk.n == n)
        return ATTN_OK;
    cuda_free(pk.a), cuda_free(pk.b), cuda_free(pk.c);
    pk.a = pk.b = pk.c = nullptr;
    pk.n = 0;
    size_t count = (size_t)n * n, bytes = count * elem_bytes(kind);
    if (!(pk.a = cuda_alloc(bytes, err, "peak GEMM A")) || !(pk.b = cuda_alloc(bytes, err, "peak GEMM B")) ||
        !(pk.c = cuda_alloc(bytes, err, "peak GEMM C")))
        return ATTN_ERUNTIME;
    int blocks = 0;
    ATTN_TRY(grid_for(ordinal, err, &blocks));
    peak_fill<<<blocks, 256>>>(pk.a, count, kind);
    peak_fill<<<blocks, 256>>>(pk.b, count, kind);
    CUDA_TRY_LAUNCH();
    /* one untimed GEMM: cuBLAS picks and loads its kernel on the first call of a shape */
    cudaDataType_t t = kind == DEVICE_GEMM_BF16 ? CUDA_R_16BF : kind == DEVICE_GEMM_F16 ? CUDA_R_16F : CUDA_R_32F;
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_TRY(cublasGemmEx(pk.h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, pk.a, t, n, pk.b, t, n, &zero, pk.c, t, n,
                            kind == DEVICE_GEMM_F32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
    CUDA_TRY(cudaDeviceSynchronize());
    pk.kind = kind, pk.n = n;
    return ATTN_OK;
}

extern "C" double device_peak_gemm_seconds(int ordinal, int kind, int n, char *why, size_t len) {
    attn_err_t e{}, *err = &e;
    double s = -1;
    if (gemm_setup(ordinal, kind, n, err) == ATTN_OK) {
        cudaDataType_t t = kind == DEVICE_GEMM_BF16 ? CUDA_R_16BF : kind == DEVICE_GEMM_F16 ? CUDA_R_16F : CUDA_R_32F;
        /* f32 is measured as the f32 backends run (naive_cuda: no TF32), bf16/f16 on tensor cores */
        cublasComputeType_t ct = kind == DEVICE_GEMM_F32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
        s = timed(
            [&]() -> int {
                const float one = 1.0f, zero = 0.0f;
                CUBLAS_TRY(cublasGemmEx(pk.h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, pk.a, t, n, pk.b, t, n,
                                        &zero, pk.c, t, n, ct, CUBLAS_GEMM_DEFAULT));
                return ATTN_OK;
            },
            err);
    }
    if (s < 0 && why && len)
        snprintf(why, len, "%s", e.msg);
    return s;
}

extern "C" double device_peak_read_seconds(int ordinal, size_t bytes, char *why, size_t len) {
    attn_err_t e{}, *err = &e;
    double s = -1;
    bytes = (bytes + 15) / 16 * 16;
    int blocks = 0;
    int rc = use_device(ordinal, err);
    if (rc == ATTN_OK && pk.r_bytes < bytes) {
        cuda_free(pk.r);
        pk.r_bytes = 0;
        if (!(pk.r = cuda_alloc(bytes, err, "peak read buffer")))
            rc = ATTN_ERUNTIME;
        else if ((rc = grid_for(ordinal, err, &blocks)) == ATTN_OK) {
            peak_fill<<<blocks, 256>>>(pk.r, bytes / 4, DEVICE_GEMM_F32);
            cudaError_t ce = cudaDeviceSynchronize();
            rc = ce == cudaSuccess ? (pk.r_bytes = bytes, ATTN_OK) : cuda_fail(err, ce, "peak_fill", __FILE__, __LINE__);
        }
    }
    if (rc == ATTN_OK && !pk.sink && !(pk.sink = (unsigned *)cuda_alloc(sizeof(unsigned), err, "peak read sink")))
        rc = ATTN_ERUNTIME;
    if (rc == ATTN_OK)
        rc = grid_for(ordinal, err, &blocks);
    if (rc == ATTN_OK)
        s = timed(
            [&]() -> int {
                peak_read<<<blocks, 512>>>((const uint4 *)pk.r, bytes / 16, pk.sink);
                CUDA_TRY_LAUNCH();
                return ATTN_OK;
            },
            err);
    if (s < 0 && why && len)
        snprintf(why, len, "%s", e.msg);
    return s;
}
