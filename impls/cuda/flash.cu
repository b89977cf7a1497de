/* flash.cu — FlashAttention-2-style forward on tensor cores (bf16 or f16 in: templated on the
 * element type, elem16<T>; float32 accumulate and out), the kernel behind blockwise_cuda, sliding_window_cuda and the GPU distributed backends.
 * Tiling, mask-driven tile ranges and mma fragment layouts: docs/gpu-kernels.md. */
#include <cuda_bf16.h>
#include <math.h>

#include "core/mask.h"
#include "impls/parallel/piece_vis.h"
#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/flash_decode.h"
#include "impls/cuda/mma_sm80.cuh"
#include "impls/cuda/flash_tile.cuh"
#include "impls/cuda/flash_frag.h"

namespace {

constexpr int BR = 64, WARPS = 4, THREADS = 32 * WARPS; /* the key tile BC depends on D: ftile::shape */

struct flash_params {
    const void *q, *k, *v; /* Q (B,H,n_q,d), K/V (B,H_kv,n_k,d): elements of the kernel's T */
    float *o, *lse;        /* O (B,H,n_q,d), LSE (B,H,n_q) */
    int64_t n_q, n_k, q_off; /* query row r sits at position q_off + r (q_off may be negative) */
    int64_t q_ld, kv_ld;     /* rows between (batch, head) slabs: of Q, O, LSE and of K, V */
    int heads, kv_heads, group;
    attn_vis_t vis; /* mask and window in these positions; (device) document offsets in global ones */
    int64_t g_q0, g_k0, g_stride; /* global positions of query row 0, key 0, and their stride (piece_vis.h) */
    float scale_log2; /* scale · log2(e) */
    int m_blocks;
};

template <int D> constexpr int smem_bytes() { return ftile::shape<D>::SMEM; } /* Q, K and V ×2: 2-byte elements */

using namespace mma80; /* cp.async, ldmatrix, mma.sync, 16-bit packing, elem16<T>: mma_sm80.cuh */

using ftile::load_tile;      /* the shared tile loop pieces: flash_tile.cuh */
using ftile::tile_nonfinite;
static_assert(BR == ftile::TILE && THREADS == ftile::THREADS, "flash_tile.cuh's tile");

/* The visibility of this call's pairs: band positions for the mask, global ones for documents. */
__device__ __forceinline__ piece_vis_t flash_pv(const flash_params &p) {
    return piece_vis_t{p.vis, p.q_off, p.g_q0, p.g_k0, p.g_stride};
}

template <typename T, int D> __global__ void __launch_bounds__(THREADS) flash_fwd(const flash_params p) {
    constexpr int BC = ftile::shape<D>::KEYS; /* 64, 32 at d = 256 */
    extern __shared__ __align__(128) unsigned char smem[];
    T *sQ = reinterpret_cast<T *>(smem); /* 64 × D */
    T *sK = sQ + BR * D;                 /* 2 stages × BC × D */
    T *sV = sK + 2 * BC * D;             /* 2 stages × BC × D */
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, tq = lane % 4;

    const int mb = p.m_blocks - 1 - blockIdx.x; /* last query blocks (most keys under causal) first */
    const int bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads, kvh = h / p.group;
    const int64_t r0 = (int64_t)mb * BR;
    const T *Q = static_cast<const T *>(p.q) + (int64_t)bh * p.q_ld * D;
    const T *K = static_cast<const T *>(p.k) + (int64_t)(b * p.kv_heads + kvh) * p.kv_ld * D;
    const T *V = static_cast<const T *>(p.v) + (int64_t)(b * p.kv_heads + kvh) * p.kv_ld * D;

    /* Key tiles this query block can see: positions of its first and last real row. */
    const int64_t i_lo = p.q_off + r0, i_hi = p.q_off + min(r0 + BR, p.n_q) - 1;
    /* The mask's band, cut to the first row's document start and the last row's document end
     * (each row's range is an interval whose ends never decrease with the row: core/mask.h). */
    const piece_vis_t pv = flash_pv(p);
    int64_t k_lo, k_hi;
    piece_key_range(&pv, i_lo, i_hi, p.n_k, &k_lo, &k_hi);
    const int64_t t_lo = k_lo / BC, t_hi = k_hi > k_lo ? (k_hi + BC - 1) / BC : t_lo; /* none: no tile */

    load_tile<T, D>(sQ, Q, r0, p.n_q);
    cp_async_commit();
    if (t_lo < t_hi) {
        load_tile<T, D, BC>(sK, K, t_lo * BC, p.n_k);
        load_tile<T, D, BC>(sV, V, t_lo * BC, p.n_k);
    }
    cp_async_commit();
    cp_async_wait<1>(); /* the Q group */
    __syncthreads();

    const ftile::q_frag<T, D> qf(sQ, warp, lane); /* this warp's 16 rows of Q as A fragments */

    float o[D / 8][4]; /* O accumulators: 16 rows × D per warp */
    ftile::zero(o);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}; /* rows g and g+8, base-2 running max and sum */
    const int64_t row_pos[2] = {i_lo + warp * 16 + g, i_lo + warp * 16 + g + 8};

    for (int64_t t = t_lo; t < t_hi; t++) {
        const int stage = (int)((t - t_lo) & 1);
        if (t + 1 < t_hi) {
            load_tile<T, D, BC>(sK + (stage ^ 1) * BC * D, K, (t + 1) * BC, p.n_k);
            load_tile<T, D, BC>(sV + (stage ^ 1) * BC * D, V, (t + 1) * BC, p.n_k);
            cp_async_commit();
            cp_async_wait<1>(); /* tile t is in; t+1 may still be in flight */
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T *k_s = sK + stage * BC * D, *v_s = sV + stage * BC * D;
        /* Block-uniform: does this tile cross a mask edge (some key hidden from some row), or n_k? */
        const int64_t key0 = t * BC;
        const bool masked = piece_tile_masked(&pv, i_lo, i_hi, key0, key0 + BC);
        const bool edge = masked || key0 + BC > p.n_k;
        /* Only there can a hidden key's non-finite V meet a weight 0 (docs/nonfinite.md). */
        const bool v_bad = masked && tile_nonfinite<T, D, BC>(v_s);

        float s[BC / 8][4]; /* S = Q·Kᵀ: 16 rows × BC keys per warp */
        ftile::scores<T, D>(s, qf, k_s, lane);

        /* Scale to base 2; mask only where this tile crosses a mask edge or n_k. */
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int n = 0; n < BC / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = s[n][e] * p.scale_log2;
                if (edge) {
                    int64_t j = key0 + n * 8 + 2 * tq + (e & 1);
                    if (j >= p.n_k || !piece_visible(&pv, row_pos[e >> 1], j))
                        x = -INFINITY;
                }
                s[n][e] = x;
                mx[e >> 1] = fmaxf(mx[e >> 1], x);
            }
        ftile::softmax_step<D>(s, mx, m, l, o);

        /* O += P·V, P rounded to T (bf16 or f16) straight from the S accumulators. */
        if (v_bad)
            ftile::pv_kept<T, D>(o, s, v_s, lane, [=, &p](int key, int r) {
                const int64_t j = key0 + key;
                return j < p.n_k && piece_visible(&pv, row_pos[r], j);
            });
        else
            ftile::pv_mma<T, D>(o, s, v_s, lane);
        __syncthreads(); /* every warp is done with this stage before it is refilled */
    }

    /* Epilogue: whole-row sums, O / l and LSE = ln 2 · (m + log2 l); rows past n_q are padding. */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] = ftile::quad_sum(l[r]);
        const int64_t row = r0 + warp * 16 + g + r * 8;
        if (row >= p.n_q)
            continue;
        /* l = 0 (O = 0, LSE = −∞): problem_finish_rows makes a whole row NaN. */
        ftile::store_row<D>(p.o + ((int64_t)bh * p.q_ld + row) * D + 2 * tq, p.lse + (int64_t)bh * p.q_ld + row, o, r,
                            l[r], m[r], tq);
    }
}

template <typename T, int D> int launch(const flash_params &prm, int64_t bh, cudaStream_t s, attn_err_t *err) {
    CUDA_TRY(cudaFuncSetAttribute(flash_fwd<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes<D>()));
    dim3 grid((unsigned)prm.m_blocks, (unsigned)bh);
    flash_fwd<T, D><<<grid, THREADS, smem_bytes<D>(), s>>>(prm);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

} // namespace

int cuda_flash_launch(const attn_problem_t *p, const cuda_flash_call *c, cudaStream_t s, attn_err_t *err) {
    if (c->n_q <= 0)
        return ATTN_OK;
    int wgmma;
    ATTN_TRY(cuda_flash_pick(p, &wgmma, err));
    if (wgmma)
        return cuda_sm90_launch(p, c, s, err);
    flash_params prm = {};
    prm.q = c->q, prm.k = c->k, prm.v = c->v, prm.o = c->o, prm.lse = c->lse;
    prm.n_q = c->n_q, prm.n_k = c->n_k, prm.q_off = c->q_off, prm.q_ld = c->q_ld, prm.kv_ld = c->kv_ld;
    prm.heads = (int)p->heads, prm.kv_heads = (int)p->kv_heads, prm.group = (int)(p->heads / p->kv_heads);
    prm.vis = attn_vis_t{(attn_mask_t)c->mask, c->window, c->doc, c->doc ? c->n_docs : 0};
    /* stride 0: one contiguous problem, band positions are the global ones */
    prm.g_q0 = c->stride ? c->q0 : c->q_off, prm.g_k0 = c->stride ? c->k0 : 0, prm.g_stride = c->stride ? c->stride : 1;
    prm.scale_log2 = (float)(problem_scale(p) * 1.4426950408889634);
    prm.m_blocks = (int)((c->n_q + BR - 1) / BR);
    const bool h = p->dtype == ATTN_F16; /* else bf16: cuda_flash_supports admits only these two */
    if (p->head_dim == 64)
        return h ? launch<f16, 64>(prm, p->batch * p->heads, s, err) : launch<bf16, 64>(prm, p->batch * p->heads, s, err);
    if (p->head_dim == 128)
        return h ? launch<f16, 128>(prm, p->batch * p->heads, s, err) : launch<bf16, 128>(prm, p->batch * p->heads, s, err);
    if (p->head_dim == 256)
        return h ? launch<f16, 256>(prm, p->batch * p->heads, s, err) : launch<bf16, 256>(prm, p->batch * p->heads, s, err);
    return attn_fail(err, ATTN_EUSAGE, "flash kernel: head dim %lld has no kernel (64, 128, 256)", (long long)p->head_dim);
}

extern "C" int cuda_flash_supports(const attn_problem_t *p, char *why, size_t len) {
    if (!dtype_is_16bit(p->dtype)) {
        snprintf(why, len, "runs in bf16 or f16 on tensor cores only (got %s; use --dtype bf16 or f16)",
                 dtype_name(p->dtype));
        return 0;
    }
    if (p->head_dim != 64 && p->head_dim != 128 && p->head_dim != 256) {
        snprintf(why, len, "has kernels for head dims 64, 128 and 256 only (got %lld)", (long long)p->head_dim);
        return 0;
    }
    if (p->batch * p->heads > 65535 || (p->n_q + BR - 1) / BR > INT32_MAX) {
        snprintf(why, len, "grid too large: batch·heads must be ≤ 65535 (got %lld)", (long long)(p->batch * p->heads));
        return 0;
    }
    return 1;
}

/* Device bytes: Q, K, V in bf16 or f16 (2 bytes each), O and LSE in float32, and the float32
 * staging buffer the upload converts through (the largest of Q and K). Linear in n: no n_q × n_k
 * buffer. */
extern "C" size_t cuda_flash_device_bytes(const attn_problem_t *p) {
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p), nl = problem_numel_lse(p);
    size_t qkv = attn_size_mul(attn_size_add(nq, attn_size_mul(2, nkv)), sizeof(bf16));
    size_t bytes = attn_size_add(attn_size_add(qkv, attn_size_mul(attn_size_add(attn_size_add(nq, nl), nq > nkv ? nq : nkv), sizeof(float))),
                                 cuda_vis_bytes(p));
    decode_plan_t pl; /* short queries: the decode split path's partials (flash_decode.cu) */
    return cuda_decode_plan(p, &pl) ? attn_size_add(bytes, cuda_decode_part_bytes(p, &pl)) : bytes;
}

extern "C" int cuda_flash_forward(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err) {
    ATTN_TRY(cuda_begin(x, err));
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p), nl = problem_numel_lse(p);
    dev_buf q, k, v, o, lse, staging;
    DEV_ALLOC(q, nq * sizeof(bf16), "blockwise_cuda Q (16-bit)"); /* bf16 or f16: 2 bytes */
    DEV_ALLOC(k, nkv * sizeof(bf16), "blockwise_cuda K (16-bit)");
    DEV_ALLOC(v, nkv * sizeof(bf16), "blockwise_cuda V (16-bit)");
    DEV_ALLOC(o, nq * sizeof(float), "blockwise_cuda O");
    DEV_ALLOC(lse, nl * sizeof(float), "blockwise_cuda LSE");
    DEV_ALLOC(staging, (nq > nkv ? nq : nkv) * sizeof(float), "blockwise_cuda upload staging");
    cudaStream_t s = 0;
    dev_buf docs;
    attn_vis_t vis;
    ATTN_TRY(cuda_vis_upload(p, docs, &vis, s, err));
    ATTN_TRY(cuda_upload(q.ptr, p->dtype, (const float *)io->q, nq, staging.as<float>(), s, err));
    ATTN_TRY(cuda_upload(k.ptr, p->dtype, (const float *)io->k, nkv, staging.as<float>(), s, err));
    ATTN_TRY(cuda_upload(v.ptr, p->dtype, (const float *)io->v, nkv, staging.as<float>(), s, err));

    cuda_flash_call call = {q.ptr, k.ptr, v.ptr, o.as<float>(), lse.as<float>(), p->n_q, p->n_k, p->n_q, p->n_k,
                            p->n_k - p->n_q, p->window, (int)p->mask, vis.doc, vis.n_docs, 0, 0, 0};
    return cuda_flash_run_timed(p, &call, o, lse, nq, nl, io, s, err);
}

int cuda_flash_launch_timed(const attn_problem_t *p, const cuda_flash_call *c, dev_buf &part, event_pair &ev,
                            cudaStream_t s, attn_err_t *err) {
    decode_plan_t pl; /* short queries: split the keys across blocks instead (flash_decode.cu) */
    const int decode = cuda_decode_plan(p, &pl);
    if (decode && pl.split > 1)
        DEV_ALLOC(part, cuda_decode_part_bytes(p, &pl), "blockwise_cuda decode partials");
    CUDA_TRY(cudaEventCreate(&ev.start));
    CUDA_TRY(cudaEventCreate(&ev.stop));
    CUDA_TRY(cudaEventRecord(ev.start, s));
    if (decode)
        ATTN_TRY(cuda_decode_launch(p, &pl, c, part.as<float>(), s, err));
    else
        ATTN_TRY(cuda_flash_launch(p, c, s, err));
    CUDA_TRY(cudaEventRecord(ev.stop, s));
    return ATTN_OK;
}

int cuda_flash_run_timed(const attn_problem_t *p, const cuda_flash_call *c, const dev_buf &o, const dev_buf &lse,
                         size_t nq, size_t nl, const attn_io_t *io, cudaStream_t s, attn_err_t *err) {
    dev_buf part;
    event_pair ev;
    ATTN_TRY(cuda_flash_launch_timed(p, c, part, ev, s, err));
    return cuda_finish(ev, o, lse, nq, nl, io, err);
}
