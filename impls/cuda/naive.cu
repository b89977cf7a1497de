/* naive.cu — textbook attention on the GPU (cuBLAS GEMMs around a materialised n_q × n_k
 * softmax): the peer the tensor-core kernel is measured against and, in bf16 or f16, the
 * baseline whose own error sets that dtype's tolerance. Details: docs/gpu-kernels.md. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "core/mask.h"
#include "impls/cuda/cuda_util.cuh"

namespace {

typedef __nv_bfloat16 bf16;
typedef __half f16;

__device__ __forceinline__ void store16(bf16 *p, float x) { *p = __float2bfloat16_rn(x); }
__device__ __forceinline__ void store16(f16 *p, float x) { *p = __float2half_rn(x); }

constexpr int SOFTMAX_THREADS = 256;

/* Max (op 0) or sum (op 1) over the block; every thread gets the result. */
__device__ float block_reduce(float x, int op, float *scratch) {
    for (int off = 16; off > 0; off /= 2) {
        float y = __shfl_xor_sync(0xffffffffu, x, off);
        x = op == 0 ? (y != y ? y : fmaxf(x, y)) : x + y;
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads(); /* scratch may still be read from the previous call */
    if (lane == 0)
        scratch[warp] = x;
    __syncthreads();
    x = scratch[0];
    for (int w = 1; w < SOFTMAX_THREADS / 32; w++)
        x = op == 0 ? (scratch[w] != scratch[w] ? scratch[w] : fmaxf(x, scratch[w])) : x + scratch[w];
    return x;
}

/* Row r of S (n_k scores, one block per row): mask, scale, softmax. P goes back into S (f32)
 * or into P16 (bf16 or f16, rounded to nearest even) when P16 is non-NULL; LSE = m + log(l). */
template <typename T16>
__global__ void __launch_bounds__(SOFTMAX_THREADS)
    softmax_rows(float *S, T16 *P16, float *lse, int64_t n_k, int64_t q_off, const attn_vis_t vis, float scale) {
    __shared__ float scratch[SOFTMAX_THREADS / 32];
    const int64_t r = blockIdx.x, i = q_off + r;
    float *s = S + r * n_k;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < n_k; j += SOFTMAX_THREADS) {
        float x = mask_visible(&vis, i, j) ? s[j] * scale : -INFINITY;
        s[j] = x;
        m = x != x ? x : fmaxf(m, x); /* fmaxf drops NaN; the max must carry it (docs/nonfinite.md) */
    }
    m = block_reduce(m, 0, scratch);
    float l = 0.f;
    if (m != -INFINITY)
        for (int64_t j = threadIdx.x; j < n_k; j += SOFTMAX_THREADS)
            l += expf(s[j] - m);
    l = block_reduce(l, 1, scratch);
    const float inv = l == 0.f ? 0.f : 1.f / l; /* no visible key: P = 0, so O = 0; NaN l stays NaN */
    for (int64_t j = threadIdx.x; j < n_k; j += SOFTMAX_THREADS) {
        float pj = m == -INFINITY ? 0.f : expf(s[j] - m) * inv;
        if (P16)
            store16(P16 + r * n_k + j, pj);
        else
            s[j] = pj;
    }
    if (threadIdx.x == 0)
        lse[r] = l == 0.f ? -INFINITY : m + logf(l);
}

__device__ __forceinline__ float as_float(float x) { return x; }
__device__ __forceinline__ float as_float(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float as_float(f16 x) { return __half2float(x); }

/* Sets *flag when any of the n values is ±∞ or NaN. */
template <typename T> __global__ void any_nonfinite(const T *x, size_t n, int *flag) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        if (!isfinite(as_float(x[i]))) {
            *flag = 1;
            return;
        }
}

/* O = P·V of one (batch, head) over the keys each row sees, for when a key the mask hides holds a
 * non-finite V: the GEMM would add its weight 0 times ∞ (NaN) to a row that never sees it
 * (docs/nonfinite.md). One block per row r, threads over the d columns; all row-major. */
template <typename TP, typename TV>
__global__ void pv_visible(const TP *P, const TV *V, float *O, int64_t n_k, int64_t d, int64_t q_off,
                           const attn_vis_t vis) {
    const int64_t r = blockIdx.x, i = q_off + r;
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
        float acc = 0.f;
        for (int64_t j = 0; j < n_k; j++)
            if (mask_visible(&vis, i, j))
                acc += as_float(P[r * n_k + j]) * as_float(V[j * d + c]);
        O[r * d + c] = acc;
    }
}

struct cublas_owner {
    cublasHandle_t h = nullptr;
    ~cublas_owner() {
        if (h)
            cublasDestroy(h);
    }
};

/* A device pointer the call reads but does not own (K/V of a device KV cache, or its own dev_buf's). */
struct dev_view {
    void *ptr;
    template <class T> T *as() const { return static_cast<T *>(ptr); }
};

/* cuBLAS's own workspace, handed to it explicitly so the tracked peak counts it; 32 MiB is
 * cuBLAS's documented recommendation for Hopper (4 MiB suffices before it). */
constexpr size_t CUBLAS_WORKSPACE = (size_t)32 << 20;

} // namespace

extern "C" size_t cuda_naive_device_bytes(const attn_problem_t *p) {
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p), nl = problem_numel_lse(p);
    const int h16 = dtype_is_16bit(p->dtype); /* bf16 or f16: 2-byte elements either way */
    size_t es = h16 ? sizeof(bf16) : sizeof(float);
    /* Checked: n_q·n_k can overflow for a problem whose tensors fit (core/common.h). */
    size_t scores = attn_size_prod4(p->n_q, p->n_k, (int64_t)(sizeof(float) + (h16 ? sizeof(bf16) : 0)), 1);
    size_t staging = h16 ? attn_size_mul(nq > nkv ? nq : nkv, sizeof(float)) : 0;
    size_t tensors = attn_size_add(attn_size_mul(attn_size_add(nq, attn_size_mul(2, nkv)), es),
                                   attn_size_mul(attn_size_add(nq, nl), sizeof(float)));
    return attn_size_add(attn_size_add(attn_size_add(tensors, scores), attn_size_add(staging, CUBLAS_WORKSPACE)),
                         cuda_vis_bytes(p));
}

extern "C" int cuda_naive_forward(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err) {
    ATTN_TRY(cuda_begin(x, err));
    const int bf = dtype_is_16bit(p->dtype), f16in = p->dtype == ATTN_F16; /* bf: any 16-bit dtype */
    const cudaDataType_t ct = f16in ? CUDA_R_16F : CUDA_R_16BF;
    const int64_t d = p->head_dim, nq_rows = p->n_q, nk_rows = p->n_k;
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p), nl = problem_numel_lse(p);
    size_t es = bf ? sizeof(bf16) : sizeof(float);
    dev_buf q, k, v, o, lse, staging, S, P16, ws, docs; /* declared before the handle, so they outlive it */
    DEV_ALLOC(q, nq * es, "naive_cuda Q");
    const int kv_dev = x->kv_device; /* K/V already in device memory (exec.h): read there */
    if (!kv_dev) {
        DEV_ALLOC(k, nkv * es, "naive_cuda K");
        DEV_ALLOC(v, nkv * es, "naive_cuda V");
    }
    const dev_view kd{kv_dev ? const_cast<void *>(io->k) : k.ptr}, vd{kv_dev ? const_cast<void *>(io->v) : v.ptr};
    DEV_ALLOC(o, nq * sizeof(float), "naive_cuda O");
    DEV_ALLOC(lse, nl * sizeof(float), "naive_cuda LSE");
    if (bf)
        DEV_ALLOC(staging, (nq > nkv ? nq : nkv) * sizeof(float), "naive_cuda upload staging");
    DEV_ALLOC(S, attn_size_prod4(nq_rows, nk_rows, (int64_t)sizeof(float), 1), "naive_cuda score matrix");
    if (bf)
        DEV_ALLOC(P16, attn_size_prod4(nq_rows, nk_rows, (int64_t)sizeof(bf16), 1), "naive_cuda 16-bit probabilities");
    cudaStream_t s = 0;
    ATTN_TRY(cuda_upload(q.ptr, p->dtype, (const float *)io->q, nq, staging.as<float>(), s, err));
    if (!kv_dev) {
        ATTN_TRY(cuda_upload(k.ptr, p->dtype, (const float *)io->k, nkv, staging.as<float>(), s, err));
        ATTN_TRY(cuda_upload(v.ptr, p->dtype, (const float *)io->v, nkv, staging.as<float>(), s, err));
    }
    attn_vis_t vis;
    ATTN_TRY(cuda_vis_upload(p, docs, &vis, s, err));

    /* A non-finite V matters apart only when the mask hides some key (docs/nonfinite.md): looked
     * for once, before the timed region, with S (not yet written) holding the flag. */
    int v_bad = 0;
    if ((p->mask != ATTN_MASK_NONE || mask_has_docs(&vis)) && nkv > 0) {
        CUDA_TRY(cudaMemsetAsync(S.ptr, 0, sizeof(int), s));
        if (f16in)
            any_nonfinite<<<256, 256, 0, s>>>(vd.as<f16>(), nkv, S.as<int>());
        else if (bf)
            any_nonfinite<<<256, 256, 0, s>>>(vd.as<bf16>(), nkv, S.as<int>());
        else
            any_nonfinite<<<256, 256, 0, s>>>(vd.as<float>(), nkv, S.as<int>());
        CUDA_TRY_LAUNCH();
        CUDA_TRY(cudaMemcpyAsync(&v_bad, S.ptr, sizeof(int), cudaMemcpyDeviceToHost, s));
        CUDA_TRY(cudaStreamSynchronize(s));
    }

    DEV_ALLOC(ws, CUBLAS_WORKSPACE, "naive_cuda cuBLAS workspace");
    cublas_owner cb;
    CUBLAS_TRY(cublasCreate(&cb.h));
    CUBLAS_TRY(cublasSetStream(cb.h, s)); /* resets the workspace to cuBLAS's pool: set ours after it */
    CUBLAS_TRY(cublasSetWorkspace(cb.h, ws.ptr, CUBLAS_WORKSPACE));
    /* Float32 means float32: no TF32 even where the environment would allow it. */
    CUBLAS_TRY(cublasSetMathMode(cb.h, bf ? CUBLAS_DEFAULT_MATH : CUBLAS_PEDANTIC_MATH));

    event_pair ev;
    CUDA_TRY(cudaEventCreate(&ev.start));
    CUDA_TRY(cudaEventCreate(&ev.stop));
    CUDA_TRY(cudaEventRecord(ev.start, s));
    const float one = 1.f, zero = 0.f, scale = (float)problem_scale(p);
    const int M = (int)nk_rows, N = (int)nq_rows, Kd = (int)d;
    for (int64_t bh = 0; bh < p->batch * p->heads; bh++) {
        int64_t b = bh / p->heads, kvh = (bh % p->heads) / (p->heads / p->kv_heads);
        size_t q_at = (size_t)(bh * nq_rows * d), kv_at = (size_t)((b * p->kv_heads + kvh) * nk_rows * d);
        /* Row-major S (n_q × n_k) is column-major Sᵀ = K·Qᵀ: K row-major (n_k × d) is the
         * column-major d × n_k matrix Kᵀ, taken transposed; Q row-major is column-major Qᵀ. The
         * 16-bit offsets are in 2-byte elements, bf16 and f16 alike (ct names which). */
        if (bf)
            CUBLAS_TRY(cublasGemmEx(cb.h, CUBLAS_OP_T, CUBLAS_OP_N, M, N, Kd, &one, kd.as<bf16>() + kv_at, ct,
                                    Kd, q.as<bf16>() + q_at, ct, Kd, &zero, S.ptr, CUDA_R_32F, M,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        else
            CUBLAS_TRY(cublasSgemm(cb.h, CUBLAS_OP_T, CUBLAS_OP_N, M, N, Kd, &one, kd.as<float>() + kv_at, Kd,
                                   q.as<float>() + q_at, Kd, &zero, S.as<float>(), M));
        if (f16in)
            softmax_rows<<<(unsigned)nq_rows, SOFTMAX_THREADS, 0, s>>>(S.as<float>(), P16.as<f16>(),
                                                                      lse.as<float>() + bh * nq_rows, nk_rows,
                                                                      nk_rows - nq_rows, vis, scale);
        else
            softmax_rows<<<(unsigned)nq_rows, SOFTMAX_THREADS, 0, s>>>(S.as<float>(), bf ? P16.as<bf16>() : nullptr,
                                                                      lse.as<float>() + bh * nq_rows, nk_rows,
                                                                      nk_rows - nq_rows, vis, scale);
        CUDA_TRY_LAUNCH();
        /* Row-major O (n_q × d) is column-major Oᵀ = Vᵀ·Pᵀ, both already column-major as stored. */
        const unsigned pv_threads = d < 128 ? (unsigned)d : 128u;
        if (v_bad && f16in)
            pv_visible<<<(unsigned)nq_rows, pv_threads, 0, s>>>(P16.as<f16>(), vd.as<f16>() + kv_at,
                                                                o.as<float>() + q_at, nk_rows, d, nk_rows - nq_rows,
                                                                vis);
        else if (v_bad && bf)
            pv_visible<<<(unsigned)nq_rows, pv_threads, 0, s>>>(P16.as<bf16>(), vd.as<bf16>() + kv_at,
                                                                o.as<float>() + q_at, nk_rows, d, nk_rows - nq_rows,
                                                                vis);
        else if (v_bad)
            pv_visible<<<(unsigned)nq_rows, pv_threads, 0, s>>>(S.as<float>(), vd.as<float>() + kv_at,
                                                                o.as<float>() + q_at, nk_rows, d, nk_rows - nq_rows,
                                                                vis);
        else if (bf)
            CUBLAS_TRY(cublasGemmEx(cb.h, CUBLAS_OP_N, CUBLAS_OP_N, Kd, N, M, &one, vd.as<bf16>() + kv_at, ct,
                                    Kd, P16.ptr, ct, M, &zero, o.as<float>() + q_at, CUDA_R_32F, Kd,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        else
            CUBLAS_TRY(cublasSgemm(cb.h, CUBLAS_OP_N, CUBLAS_OP_N, Kd, N, M, &one, vd.as<float>() + kv_at, Kd,
                                   S.as<float>(), M, &zero, o.as<float>() + q_at, Kd));
        if (v_bad)
            CUDA_TRY_LAUNCH();
    }
    CUDA_TRY(cudaEventRecord(ev.stop, s));
    return cuda_finish(ev, o, lse, nq, nl, io, err);
}
