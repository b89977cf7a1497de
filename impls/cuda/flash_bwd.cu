/* flash_bwd.cu — FlashAttention-2-style backward on tensor cores (bf16 or f16 in, templated on the
 * element type as flash.cu is; float32 accumulate): a prep kernel (D = rowsum(dO∘O), dO → the
 * element type, LSE → base 2), the main kernel (one block per
 * (batch, kv head, 64-key tile), walking the query heads of its group and their query tiles,
 * P recomputed from LSE), and a scale kernel for dQ. Index arithmetic: flash_bwd_frag.h, replayed
 * on the host by tests/test_flash_bwd.c. Design: docs/backward.md (GPU section). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "core/mask.h"
#include "impls/parallel/piece_vis.h"
#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/flash_bwd.h"
#include "impls/cuda/flash_bwd_frag.h"
#include "impls/cuda/mma_sm80.cuh"
#include "impls/cuda/flash_tile.cuh"

/* The element type's MMA and packing: mma_sm80.cuh's elem16<T> (bf16 or f16, as flash.cu's
 * forward), plus the one conversion the backward adds (a float to T, for dO and dS). */
namespace flash_bwd_elem {
template <class T> struct elem;
template <> struct elem<__nv_bfloat16> : mma80::elem16<__nv_bfloat16> {
    static __device__ __forceinline__ __nv_bfloat16 from(float x) { return __float2bfloat16_rn(x); }
};
template <> struct elem<__half> : mma80::elem16<__half> {
    static __device__ __forceinline__ __half from(float x) { return __float2half_rn(x); }
};
} // namespace flash_bwd_elem

namespace {

using flash_bwd_elem::elem;
using mma80::cp_async16;
using mma80::cp_async_commit;
using mma80::cp_async_wait;
using mma80::ldsm_x4;
using mma80::ldsm_x4_trans;

constexpr int BR = BWD_BR, BC = BWD_BC, THREADS = BWD_THREADS;

template <class T> struct bwd_params {
    const T *q, *k, *v, *d_o;
    const float *lse2, *delta;
    float *dq_acc, *dk, *dv;
    int64_t n_q, n_k, q_off, q_ld, kv_ld;
    int heads, kv_heads, group, accumulate;
    attn_vis_t vis;               /* mask and window in band positions; (device) document offsets in global ones */
    int64_t g_q0, g_k0, g_stride; /* global positions of query row 0, key 0, and their stride (piece_vis.h) */
    float scale_log2, scale;
    int n_blocks; /* key tiles */
};

template <int D> constexpr int smem_bytes(int elem_size) { return (2 * BC + 2 * BR) * D * elem_size + BR * BC * elem_size + 2 * BR * 4; }

/* Rows [row0, row0 + 64) of an (n × D) matrix into a swizzled tile: flash_tile.cuh's. */
static_assert(BR == ftile::TILE && BC == ftile::TILE && THREADS == ftile::THREADS, "flash_tile.cuh's tile");
template <int D, class T> __device__ __forceinline__ void load_tile(T *tile, const T *src, int64_t row0, int64_t n) {
    ftile::load_tile<T, D>(tile, src, row0, n);
}

/* acc[16 rows × 64 cols] (8 n-tiles) += A(16 × D, rows row0.. of tile a) · B(64 × D, tile b)ᵀ:
 * the forward's S = Q·Kᵀ with other operands (Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ). */
template <int D, class T>
__device__ __forceinline__ void mma_abt(float (&acc)[BR / 8][4], const T *a, int row0, const T *b, int lane) {
#pragma unroll
    for (int n = 0; n < BR / 8; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        unsigned fa[4];
        ldsm_x4(fa, a + frag_swz(D, row0 + bwd_ldsm_a_row(lane), kk * 16 + bwd_ldsm_a_col(lane)));
#pragma unroll
        for (int np = 0; np < BR / 16; np++) {
            unsigned fb[4];
            ldsm_x4(fb, b + frag_swz(D, np * 16 + bwd_ldsm_b_row(lane), kk * 16 + bwd_ldsm_b_col(lane)));
            elem<T>::mma(acc[2 * np], fa, fb[0], fb[1]);
            elem<T>::mma(acc[2 * np + 1], fa, fb[2], fb[3]);
        }
    }
}

/* out[16 × D] += X(16 × 64, accumulators) · B(64 × D, tile b, read with .trans): dV += Pᵀ·dO and
 * dK += dSᵀ·Q, X packed to the element type as the forward packs P. */
template <int D, class T>
__device__ __forceinline__ void mma_xb(float (&out)[D / 8][4], const float (&x)[BR / 8][4], const T *b, int lane) {
#pragma unroll
    for (int kk = 0; kk < BR / 16; kk++) {
        unsigned fa[4];
#pragma unroll
        for (int i = 0; i < 4; i++)
            fa[i] = elem<T>::pack(x[bwd_pack_n(kk, i)][bwd_pack_e(i, 0)], x[bwd_pack_n(kk, i)][bwd_pack_e(i, 1)]);
#pragma unroll
        for (int dp = 0; dp < D / 16; dp++) {
            unsigned fb[4];
            ldsm_x4_trans(fb, b + frag_swz(D, kk * 16 + bwd_ldsm_a_row(lane), dp * 16 + bwd_ldsm_a_col(lane)));
            elem<T>::mma(out[2 * dp], fa, fb[0], fb[1]);
            elem<T>::mma(out[2 * dp + 1], fa, fb[2], fb[3]);
        }
    }
}

/* The visibility of this call's pairs: band positions for the mask, global ones for documents
 * (flash.cu's flash_pv). */
template <class T> __device__ __forceinline__ piece_vis_t bwd_pv(const bwd_params<T> &p) {
    return piece_vis_t{p.vis, p.q_off, p.g_q0, p.g_k0, p.g_stride};
}

template <int D, class T> __global__ void __launch_bounds__(THREADS) flash_bwd(const bwd_params<T> p) {
    extern __shared__ __align__(128) unsigned char smem[];
    T *sK = reinterpret_cast<T *>(smem), *sV = sK + BC * D, *sQ = sV + BC * D, *sdO = sQ + BR * D;
    T *sdS = sdO + BR * D;                                   /* 64 queries × 64 keys, swizzled as d = 64 */
    float *sL = reinterpret_cast<float *>(sdS + BR * BC), *sD = sL + BR; /* LSE·log2e and D of the tile's rows */
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

    const int kt = p.n_blocks - 1 - blockIdx.x; /* high key tiles first: under causal they see fewest queries */
    const int bkv = blockIdx.y, b = bkv / p.kv_heads, kvh = bkv % p.kv_heads;
    const int64_t key0 = (int64_t)kt * BC;
    const T *K = p.k + (int64_t)bkv * p.kv_ld * D, *V = p.v + (int64_t)bkv * p.kv_ld * D;
    load_tile<D>(sK, K, key0, p.n_k);
    load_tile<D>(sV, V, key0, p.n_k);
    cp_async_commit();

    float dk[D / 8][4], dv[D / 8][4]; /* this warp's 16 keys × D */
#pragma unroll
    for (int n = 0; n < D / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dk[n][e] = dv[n][e] = 0.f;
    const int64_t n_qt = (p.n_q + BR - 1) / BR;
    const piece_vis_t pvis = bwd_pv(p); /* `pv` below is a probability */

    for (int j = 0; j < p.group; j++) {
        const int64_t slab = bwd_q_slab(b, p.heads, kvh, p.group, j);
        const T *Q = p.q + slab * p.q_ld * D, *dO = p.d_o + slab * p.q_ld * D;
        for (int64_t qt = 0; qt < n_qt; qt++) {
            const int64_t r0 = qt * BR;
            const int kind = bwd_tile_kind(&pvis, r0, p.n_q, key0, p.n_k); /* block-uniform */
            if (kind == 0)
                continue;
            __syncthreads(); /* the previous tile's readers of sQ, sdO, sdS, sL, sD are done */
            load_tile<D>(sQ, Q, r0, p.n_q);
            load_tile<D>(sdO, dO, r0, p.n_q);
            cp_async_commit();
            if (threadIdx.x < BR) {
                const int64_t r = r0 + threadIdx.x;
                /* rows past n_q: P = exp2(x − ∞) = 0, so they add nothing */
                sL[threadIdx.x] = r < p.n_q ? p.lse2[slab * p.q_ld + r] : INFINITY;
                sD[threadIdx.x] = r < p.n_q ? p.delta[slab * p.q_ld + r] : 0.f;
            }
            cp_async_wait<0>();
            __syncthreads();

            float s[BR / 8][4]; /* Sᵀ then Pᵀ then dSᵀ: this warp's 16 keys × 64 queries */
            mma_abt<D>(s, sK, warp * 16, sQ, lane);
#pragma unroll
            for (int n = 0; n < BR / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int qr = frag_col(lane, n, e);
                    float pv = exp2f(s[n][e] * p.scale_log2 - sL[qr]);
                    if (kind == 2) {
                        const int64_t key = key0 + warp * 16 + frag_row(lane, e);
                        if (key >= p.n_k || !piece_visible(&pvis, p.q_off + r0 + qr, key))
                            pv = 0.f;
                    }
                    s[n][e] = pv;
                }
            mma_xb<D>(dv, s, sdO, lane); /* dV += Pᵀ·dO */
            float dp[BR / 8][4];
            mma_abt<D>(dp, sV, warp * 16, sdO, lane); /* dPᵀ = V·dOᵀ */
#pragma unroll
            for (int n = 0; n < BR / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    s[n][e] = s[n][e] * (dp[n][e] - sD[frag_col(lane, n, e)]); /* dSᵀ = Pᵀ∘(dPᵀ − D) */
                    sdS[bwd_ds_store(warp, lane, n, e)] = elem<T>::from(s[n][e]);
                }
            mma_xb<D>(dk, s, sQ, lane); /* dK += dSᵀ·Q (scaled at the end) */
            __syncthreads();            /* all of dS is in sdS */

            /* dQ += dS·K for the warp's 16 query rows, 16 columns at a time into the float32
             * workspace (unscaled; cuda_flash_bwd_scale applies the scale). */
#pragma unroll
            for (int dp2 = 0; dp2 < D / 16; dp2++) {
                float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
                for (int kk = 0; kk < BC / 16; kk++) {
                    unsigned fa[4], fb[4];
                    ldsm_x4(fa, sdS + frag_swz(BC, warp * 16 + bwd_ldsm_a_row(lane), kk * 16 + bwd_ldsm_a_col(lane)));
                    ldsm_x4_trans(fb, sK + frag_swz(D, kk * 16 + bwd_ldsm_a_row(lane), dp2 * 16 + bwd_ldsm_a_col(lane)));
                    elem<T>::mma(acc[0], fa, fb[0], fb[1]);
                    elem<T>::mma(acc[1], fa, fb[2], fb[3]);
                }
#pragma unroll
                for (int h = 0; h < 2; h++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (r0 + warp * 16 + frag_row(lane, e) < p.n_q)
                            atomicAdd(p.dq_acc + bwd_dq_index(slab, p.q_ld, r0, warp, lane, 2 * dp2 + h, e, D),
                                      acc[h][e]);
            }
        }
    }

    cp_async_wait<0>(); /* a block that visited no query tile still has K/V copies in flight */
    /* Epilogue: this block alone owns these dK, dV rows (all query heads of the group summed). */
#pragma unroll
    for (int n = 0; n < D / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int64_t key = key0 + warp * 16 + frag_row(lane, e);
            if (key >= p.n_k)
                continue;
            const int64_t at = ((int64_t)bkv * p.kv_ld + key) * D + frag_col(lane, n, e);
            const float k_v = dk[n][e] * p.scale, v_v = dv[n][e];
            p.dk[at] = p.accumulate ? p.dk[at] + k_v : k_v;
            p.dv[at] = p.accumulate ? p.dv[at] + v_v : v_v;
        }
}

template <class T> __global__ void prep_kernel(const float *o, const float *d_o, float *lse2, float *delta, T *dob,
                                               int64_t rows, int d) {
    const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (w >= rows)
        return;
    float s = 0.f;
    for (int c = lane; c < d; c += 32) {
        const float g = d_o[w * d + c];
        s += g * o[w * d + c];
        dob[w * d + c] = elem<T>::from(g);
    }
#pragma unroll
    for (int off = 16; off; off >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) {
        const float l = lse2[w];
        /* LSE −∞: the row saw no key; +∞ makes its P 0 and D 0 keeps its dS 0 (O is 0 or NaN there). */
        lse2[w] = l == -INFINITY ? INFINITY : l * 1.4426950408889634f;
        delta[w] = l == -INFINITY ? 0.f : s;
    }
}

__global__ void scale_kernel(float *dq, const float *acc, size_t n, float scale) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dq[i] = acc[i] * scale;
}

template <int D, class T> int launch(const bwd_params<T> &prm, int64_t bkv, cudaStream_t s, attn_err_t *err) {
    const int bytes = smem_bytes<D>((int)sizeof(T));
    CUDA_TRY(cudaFuncSetAttribute(flash_bwd<D, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    dim3 grid((unsigned)prm.n_blocks, (unsigned)bkv);
    flash_bwd<D, T><<<grid, THREADS, bytes, s>>>(prm);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

typedef __nv_bfloat16 bf16;
typedef __half f16;

template <class T> int launch_d(const attn_problem_t *p, const cuda_flash_bwd_call *c, cudaStream_t s, attn_err_t *err) {
    bwd_params<T> prm = {};
    prm.q = (const T *)c->q, prm.k = (const T *)c->k, prm.v = (const T *)c->v, prm.d_o = (const T *)c->d_o;
    prm.lse2 = c->lse2, prm.delta = c->delta, prm.dq_acc = c->dq_acc, prm.dk = c->dk, prm.dv = c->dv;
    prm.n_q = c->n_q, prm.n_k = c->n_k, prm.q_off = c->q_off, prm.q_ld = c->q_ld, prm.kv_ld = c->kv_ld;
    prm.heads = (int)p->heads, prm.kv_heads = (int)p->kv_heads, prm.group = (int)(p->heads / p->kv_heads);
    prm.accumulate = c->accumulate;
    prm.vis = attn_vis_t{(attn_mask_t)c->mask, c->window, c->doc, c->doc ? c->n_docs : 0};
    /* stride 0: one contiguous problem, band positions are the global ones (as cuda_flash_launch) */
    prm.g_q0 = c->stride ? c->q0 : c->q_off, prm.g_k0 = c->stride ? c->k0 : 0, prm.g_stride = c->stride ? c->stride : 1;
    prm.scale = (float)problem_scale(p);
    prm.scale_log2 = (float)(problem_scale(p) * 1.4426950408889634);
    prm.n_blocks = (int)((c->n_k + BC - 1) / BC);
    const int64_t bkv = p->batch * p->kv_heads;
    if (p->head_dim == 64)
        return launch<64>(prm, bkv, s, err);
    if (p->head_dim == 128)
        return launch<128>(prm, bkv, s, err);
    return attn_fail(err, ATTN_EUSAGE, "flash backward: head dim %lld has no kernel (64, 128)", (long long)p->head_dim);
}

} // namespace

int cuda_flash_bwd_launch(const attn_problem_t *p, const cuda_flash_bwd_call *c, cudaStream_t s, attn_err_t *err) {
    if (c->n_k <= 0)
        return ATTN_OK;
    if (p->dtype == ATTN_F16)
        return launch_d<f16>(p, c, s, err);
    if (p->dtype == ATTN_BF16)
        return launch_d<bf16>(p, c, s, err);
    return attn_fail(err, ATTN_EUSAGE, "flash backward: runs in bf16 or f16 (got %s)", dtype_name(p->dtype));
}

int cuda_flash_bwd_prep(const float *o, const float *d_o, float *lse2, float *delta, void *do16, int64_t rows, int d,
                        attn_dtype_t t, cudaStream_t s, attn_err_t *err) {
    if (rows <= 0)
        return ATTN_OK;
    const int per = 256 / 32;
    const unsigned grid = (unsigned)((rows + per - 1) / per);
    if (t == ATTN_F16)
        prep_kernel<f16><<<grid, 256, 0, s>>>(o, d_o, lse2, delta, (f16 *)do16, rows, d);
    else if (t == ATTN_BF16)
        prep_kernel<bf16><<<grid, 256, 0, s>>>(o, d_o, lse2, delta, (bf16 *)do16, rows, d);
    else
        return attn_fail(err, ATTN_EUSAGE, "flash backward prep: bf16 or f16 (got %s)", dtype_name(t));
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

int cuda_flash_bwd_scale(float *dq, const float *dq_acc, size_t n, float scale, cudaStream_t s, attn_err_t *err) {
    if (n == 0)
        return ATTN_OK;
    scale_kernel<<<1024, 256, 0, s>>>(dq, dq_acc, n, scale);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

/* Device bytes: Q, K, V, dO in bf16 or f16 (2 bytes); O and dO in float32 (O's buffer then holds the dQ
 * accumulator); LSE and D; dK and dV in float32; the upload staging (the largest of Q and K)
 * and the document offsets. Linear in n. */
extern "C" size_t cuda_flash_bwd_device_bytes(const attn_problem_t *p) {
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p), nl = problem_numel_lse(p);
    size_t e16 = attn_size_mul(attn_size_add(attn_size_mul(2, nq), attn_size_mul(2, nkv)), sizeof(bf16));
    size_t f32 = attn_size_add(attn_size_add(attn_size_mul(2, nq), attn_size_mul(2, nl)), attn_size_mul(2, nkv));
    f32 = attn_size_add(f32, nq > nkv ? nq : nkv);
    return attn_size_add(attn_size_add(e16, attn_size_mul(f32, sizeof(float))), cuda_vis_bytes(p));
}

extern "C" int cuda_flash_backward(const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g,
                                   attn_err_t *err) {
    if (!dtype_is_16bit(p->dtype)) /* the kernel is instantiated for bf16 and f16 */
        return attn_fail(err, ATTN_EUSAGE, "blockwise_cuda's backward runs in bf16 or f16 only (got %s)",
                         dtype_name(p->dtype));
    ATTN_TRY(cuda_begin(x, err));
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p), nl = problem_numel_lse(p);
    dev_buf q, k, v, dob, o32, do32, lse2, delta, dk, dv, staging, docs;
    DEV_ALLOC(q, nq * sizeof(bf16), "blockwise_cuda backward Q (16-bit)"); /* bf16 or f16: 2 bytes */
    DEV_ALLOC(k, nkv * sizeof(bf16), "blockwise_cuda backward K (16-bit)");
    DEV_ALLOC(v, nkv * sizeof(bf16), "blockwise_cuda backward V (16-bit)");
    DEV_ALLOC(dob, nq * sizeof(bf16), "blockwise_cuda backward dO (16-bit)");
    DEV_ALLOC(o32, nq * sizeof(float), "blockwise_cuda backward O, then the dQ accumulator");
    DEV_ALLOC(do32, nq * sizeof(float), "blockwise_cuda backward dO (float32)");
    DEV_ALLOC(lse2, nl * sizeof(float), "blockwise_cuda backward LSE");
    DEV_ALLOC(delta, nl * sizeof(float), "blockwise_cuda backward D = rowsum(dO∘O)");
    DEV_ALLOC(dk, nkv * sizeof(float), "blockwise_cuda backward dK");
    DEV_ALLOC(dv, nkv * sizeof(float), "blockwise_cuda backward dV");
    DEV_ALLOC(staging, (nq > nkv ? nq : nkv) * sizeof(float), "blockwise_cuda backward upload staging");
    cudaStream_t s = 0;
    attn_vis_t vis;
    ATTN_TRY(cuda_vis_upload(p, docs, &vis, s, err));
    ATTN_TRY(cuda_upload(q.ptr, p->dtype, (const float *)g->q, nq, staging.as<float>(), s, err));
    ATTN_TRY(cuda_upload(k.ptr, p->dtype, (const float *)g->k, nkv, staging.as<float>(), s, err));
    ATTN_TRY(cuda_upload(v.ptr, p->dtype, (const float *)g->v, nkv, staging.as<float>(), s, err));
    CUDA_TRY(cudaMemcpyAsync(o32.ptr, g->o, nq * sizeof(float), cudaMemcpyHostToDevice, s));
    CUDA_TRY(cudaMemcpyAsync(do32.ptr, g->d_o, nq * sizeof(float), cudaMemcpyHostToDevice, s));
    CUDA_TRY(cudaMemcpyAsync(lse2.ptr, g->lse, nl * sizeof(float), cudaMemcpyHostToDevice, s));
    event_pair ev; /* the kernels alone, as the forward's device time (inputs already converted) */
    CUDA_TRY(cudaEventCreate(&ev.start));
    CUDA_TRY(cudaEventCreate(&ev.stop));
    CUDA_TRY(cudaEventRecord(ev.start, s));
    ATTN_TRY(cuda_flash_bwd_prep(o32.as<float>(), do32.as<float>(), lse2.as<float>(), delta.as<float>(), dob.ptr,
                                 (int64_t)nl, (int)p->head_dim, p->dtype, s, err));
    CUDA_TRY(cudaMemsetAsync(o32.ptr, 0, nq * sizeof(float), s)); /* O is spent: now dQ's accumulator */
    cuda_flash_bwd_call call = {q.ptr, k.ptr, v.ptr, dob.ptr, lse2.as<float>(), delta.as<float>(), o32.as<float>(),
                                dk.as<float>(), dv.as<float>(), p->n_q, p->n_k, p->n_q, p->n_k, p->n_k - p->n_q,
                                p->window, (int)p->mask, vis.doc, vis.n_docs, 0, 0, 0, 0}; /* stride 0: contiguous */
    ATTN_TRY(cuda_flash_bwd_launch(p, &call, s, err));
    ATTN_TRY(cuda_flash_bwd_scale(do32.as<float>(), o32.as<float>(), nq, (float)problem_scale(p), s, err));
    CUDA_TRY(cudaEventRecord(ev.stop, s));
    CUDA_TRY(cudaMemcpyAsync(g->dq, do32.ptr, nq * sizeof(float), cudaMemcpyDeviceToHost, s));
    CUDA_TRY(cudaMemcpyAsync(g->dk, dk.ptr, nkv * sizeof(float), cudaMemcpyDeviceToHost, s));
    CUDA_TRY(cudaMemcpyAsync(g->dv, dv.ptr, nkv * sizeof(float), cudaMemcpyDeviceToHost, s));
    CUDA_TRY(cudaStreamSynchronize(s));
    if (g->device_s)
        *g->device_s = seconds_between(ev.start, ev.stop);
    return ATTN_OK;
}
