/* flash_decode.cu — decode and short queries on the GPU (flash-decoding): the split plan of
 * impls/cpu/decode_plan.h as a split kernel (one block per key chunk × packed query tile × batch ·
 * kv head: the query heads that share a KV head in one 64-row tile, online softmax over the chunk
 * on mma.sync bf16 or f16 tensor cores (templated on the element type, elem16<T>), partial O and
 * LSE in float32) and a merge kernel (one warp per row, the log-sum-exp rule). blockwise_cuda takes it for n_q ≤ 64 or a grid that would not fill
 * the GPU. The index arithmetic is the plan's, checked on the host by tests/test_decode.c. */
#include <math.h>
#include <stdint.h>

#include "core/mask.h"
#include "impls/cpu/decode_plan.h"
#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/flash_decode.h"
#include "impls/cuda/flash_frag.h"
#include "impls/cuda/mma_sm80.cuh"
#include "impls/cuda/flash_tile.cuh"

namespace {

using namespace mma80;

constexpr int BR = 64, WARPS = 4, THREADS = 32 * WARPS; /* the key tile depends on D: ftile::shape */

struct decode_params {
    const void *q, *k, *v; /* Q (B,H,q_ld,d), K/V (B,H_kv,kv_ld,d): elements of the kernel's T */
    float *o, *lse;        /* O (B,H,q_ld,d), LSE (B,H,q_ld): written directly when split = 1 */
    float *o_part, *lse_part; /* (B·H_kv, split, rows, d), (B·H_kv, split, rows) when split > 1 */
    int64_t kv_ld;
    attn_span_t qs, ks; /* query row r at qs.start + qs.stride·r, key j at ks.start + ks.stride·j */
    attn_vis_t vis; /* mask, window and (device) document offsets */
    float scale_log2;
    decode_plan_t pl;
};

template <int D> constexpr int smem_bytes() { return ftile::shape<D>::SMEM; } /* Q, K and V ×2: 2-byte elements */

using ftile::load_tile; /* the tile loop pieces flash.cu shares: flash_tile.cuh */
using ftile::tile_nonfinite;
static_assert(BR == ftile::TILE && THREADS == ftile::THREADS, "flash_tile.cuh's tile");

/* Packed rows [r0, r0 + 64) of (batch b, kv head g): each from its own head's Q row. */
template <typename T, int D>
__device__ __forceinline__ void load_q_packed(T *tile, const decode_params &p, int64_t b, int64_t g, int64_t r0) {
    constexpr int CHUNKS = D / 8, PER_THREAD = 64 * CHUNKS / THREADS;
#pragma unroll
    for (int i = 0; i < PER_THREAD; i++) {
        int idx = threadIdx.x + i * THREADS, row = idx / CHUNKS, col = (idx % CHUNKS) * 8;
        bool valid = r0 + row < p.pl.rows;
        const T *src = static_cast<const T *>(p.q) + (valid ? decode_out_row(&p.pl, b, g, r0 + row) * D + col : 0);
        cp_async16(tile + frag_swz(D, row, col), src, valid);
    }
}

/* Is key j (chunk-relative tile start key0 + key) hidden from a row at position pos? */
__device__ __forceinline__ bool hidden(const decode_params &p, int64_t c_hi, int64_t pos, int64_t j) {
    return j >= c_hi || !mask_visible(&p.vis, pos, p.ks.start + p.ks.stride * j);
}

/* grid (q_tiles, split, B·H_kv): block (t, s, bg) runs query tile t of (b, g) over chunk s. The
 * query tiles of one chunk are launched side by side, so the second reads the chunk's K/V from L2
 * (n_q = 16 at G = 8: 128 packed rows, two tiles) instead of HBM. */
template <typename T, int D> __global__ void __launch_bounds__(THREADS) decode_split_kernel(const decode_params p) {
    constexpr int BC = ftile::shape<D>::KEYS; /* 64, 32 at d = 256: the plan's tile_keys */
    extern __shared__ __align__(128) unsigned char smem[];
    T *sQ = reinterpret_cast<T *>(smem); /* 64 × D */
    T *sK = sQ + BR * D;                 /* 2 stages × BC × D */
    T *sV = sK + 2 * BC * D;             /* 2 stages × BC × D */
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g4 = lane / 4, tq = lane % 4;
    const int t = blockIdx.x, s = blockIdx.y;
    const int64_t bg = blockIdx.z, b = bg / p.pl.kv_heads, g = bg % p.pl.kv_heads;
    const int64_t r0 = (int64_t)t * BR;
    const T *K = static_cast<const T *>(p.k) + bg * p.kv_ld * D; /* (b·H_kv + g) = bg */
    const T *V = static_cast<const T *>(p.v) + bg * p.kv_ld * D;
    int64_t c_lo, c_hi;
    decode_chunk(&p.pl, t, s, &c_lo, &c_hi);
    const int64_t n_t = c_hi > c_lo ? (c_hi - c_lo + BC - 1) / BC : 0;
    /* Warp-uniform: a warp whose 16 rows are all padding computes nothing (n_q = 1: 8 rows). */
    const bool active = r0 + warp * 16 < p.pl.rows;

    load_q_packed<T, D>(sQ, p, b, g, r0);
    cp_async_commit();
    if (n_t > 0) {
        load_tile<T, D, BC>(sK, K, c_lo, c_hi);
        load_tile<T, D, BC>(sV, V, c_lo, c_hi);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    const ftile::q_frag<T, D> qf(sQ, warp, lane);

    float o[D / 8][4];
    ftile::zero(o);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    int64_t row_pos[2];
#pragma unroll
    for (int r = 0; r < 2; r++)
        row_pos[r] = p.qs.start + p.qs.stride * decode_qrow_of(&p.pl, r0 + warp * 16 + g4 + 8 * r);
    const int64_t full_lo = p.pl.full_lo[t], full_hi = min(p.pl.full_hi[t], c_hi);

    for (int64_t it = 0; it < n_t; it++) {
        const int stage = (int)(it & 1);
        const int64_t key0 = c_lo + it * BC;
        if (it + 1 < n_t) {
            load_tile<T, D, BC>(sK + (stage ^ 1) * BC * D, K, key0 + BC, c_hi);
            load_tile<T, D, BC>(sV + (stage ^ 1) * BC * D, V, key0 + BC, c_hi);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T *k_s = sK + stage * BC * D, *v_s = sV + stage * BC * D;
        /* Block-uniform: every row sees every key of the tile (the plan's full range) or not. */
        const bool edge = !(full_lo <= key0 && key0 + BC <= full_hi);
        const bool v_bad = edge && tile_nonfinite<T, D, BC>(v_s);

        if (active) {
            float sc[BC / 8][4];
            ftile::scores<T, D>(sc, qf, k_s, lane);
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int n = 0; n < BC / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float x = sc[n][e] * p.scale_log2;
                    if (edge && hidden(p, c_hi, row_pos[e >> 1], key0 + frag_col(lane, n, e)))
                        x = -INFINITY;
                    sc[n][e] = x;
                    mx[e >> 1] = fmaxf(mx[e >> 1], x);
                }
            ftile::softmax_step<D>(sc, mx, m, l, o);
            if (v_bad)
                ftile::pv_kept<T, D>(o, sc, v_s, lane,
                                     [&](int key, int r) { return !hidden(p, c_hi, row_pos[r], key0 + key); });
            else
                ftile::pv_mma<T, D>(o, sc, v_s, lane);
        }
        __syncthreads();
    }
    if (!active)
        return;

    /* Epilogue: O / l and LSE of this chunk, to the output itself (split 1) or to the partials. */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        const int64_t row = r0 + warp * 16 + g4 + r * 8;
        if (row >= p.pl.rows)
            continue;
        const bool direct = p.pl.split == 1;
        const int64_t at = direct ? decode_out_row(&p.pl, b, g, row) : decode_part_row(&p.pl, b, g, s, row);
        float *out = (direct ? p.o : p.o_part) + at * D + 2 * tq;
        const float inv = l[r] == 0.f ? 0.f : 1.f / l[r];
#pragma unroll
        for (int n = 0; n < D / 8; n++)
            *reinterpret_cast<float2 *>(out + n * 8) = make_float2(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
        if (tq == 0)
            (direct ? p.lse : p.lse_part)[at] = l[r] == 0.f ? -INFINITY : (m[r] + log2f(l[r])) * 0.6931471805599453f;
    }
}

/* One warp per packed row of every (b, g): the log-sum-exp merge of its `split` partials. */
template <int D> __global__ void decode_merge_kernel(const decode_params p) {
    const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (w >= p.pl.batch * p.pl.kv_heads * p.pl.rows)
        return;
    const int64_t r = w % p.pl.rows, bg = w / p.pl.rows, b = bg / p.pl.kv_heads, g = bg % p.pl.kv_heads;
    const int64_t first = decode_part_row(&p.pl, b, g, 0, r), stride = p.pl.rows;
    float mx, sum;
    const float lse = decode_merge_lse(p.lse_part + first, stride, p.pl.split, &mx, &sum);
    float acc[D / 32];
#pragma unroll
    for (int c = 0; c < D / 32; c++)
        acc[c] = 0.f;
    for (int s = 0; s < p.pl.split; s++) {
        const float wt = decode_merge_weight(p.lse_part[first + s * stride], mx, sum);
        if (wt == 0.f)
            continue; /* saw nothing: never let a 0 weight meet a non-finite partial */
        const float *op = p.o_part + (first + s * stride) * D;
#pragma unroll
        for (int c = 0; c < D / 32; c++)
            acc[c] += wt * op[lane + 32 * c];
    }
    const int64_t at = decode_out_row(&p.pl, b, g, r);
#pragma unroll
    for (int c = 0; c < D / 32; c++)
        p.o[at * D + lane + 32 * c] = acc[c];
    if (lane == 0)
        p.lse[at] = lse;
}

template <typename T, int D> int launch(const decode_params &prm, cudaStream_t st, attn_err_t *err) {
    CUDA_TRY(cudaFuncSetAttribute(decode_split_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes<D>()));
    dim3 grid((unsigned)prm.pl.q_tiles, (unsigned)prm.pl.split, (unsigned)(prm.pl.batch * prm.pl.kv_heads));
    decode_split_kernel<T, D><<<grid, THREADS, smem_bytes<D>(), st>>>(prm);
    CUDA_TRY_LAUNCH();
    if (prm.pl.split > 1) {
        const int64_t warps = prm.pl.batch * prm.pl.kv_heads * prm.pl.rows, per_block = 256 / 32;
        decode_merge_kernel<D><<<(unsigned)((warps + per_block - 1) / per_block), 256, 0, st>>>(prm);
        CUDA_TRY_LAUNCH();
    }
    return ATTN_OK;
}

/* Resident split blocks of one instantiation per SM (shared memory bounds it: 2 at d 128, 5 at 64;
 * 2 at 256 on sm_90, 1 on sm_80). */
template <typename T, int D> int blocks_per_sm_of() {
    int n = 0;
    cudaError_t e = cudaFuncSetAttribute(decode_split_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes<D>());
    if (e == cudaSuccess)
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_split_kernel<T, D>, THREADS, smem_bytes<D>());
    return e == cudaSuccess && n > 0 ? n : 1;
}

/* ... of the kernel p runs: head dim and element type (f16, else bf16). */
int blocks_per_sm(const attn_problem_t *p) {
    const bool h = p->dtype == ATTN_F16;
    if (p->head_dim == 64)
        return h ? blocks_per_sm_of<f16, 64>() : blocks_per_sm_of<bf16, 64>();
    if (p->head_dim == 256)
        return h ? blocks_per_sm_of<f16, 256>() : blocks_per_sm_of<bf16, 256>();
    return h ? blocks_per_sm_of<f16, 128>() : blocks_per_sm_of<bf16, 128>();
}

} // namespace

/* The plan blockwise_cuda runs p with on the current device, or 0 when p takes the prefill kernel:
 * decode (n_q ≤ 64) or B·H·⌈n_q / 64⌉ blocks fewer than the SMs; two waves of resident blocks. */
extern "C" int cuda_decode_plan(const attn_problem_t *p, decode_plan_t *pl) {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        return 0;
    if (p->n_q > 64 && p->batch * p->heads * ((p->n_q + BR - 1) / BR) >= sms)
        return 0;
    const attn_vis_t vis = problem_vis(p); /* host offsets: the plan is made on the host */
    return decode_plan_make(pl, p->batch, p->heads, p->kv_heads, p->n_q, p->n_q, p->n_k, &vis,
                            problem_q_span(p), problem_k_span(p), BR, FRAG_KEYS((int)p->head_dim), sms, 2 * blocks_per_sm(p), 0);
}

extern "C" size_t cuda_decode_part_bytes(const attn_problem_t *p, const decode_plan_t *pl) {
    if (pl->split <= 1)
        return 0;
    size_t rows = attn_size_mul(attn_size_mul((size_t)(p->batch * p->kv_heads), (size_t)pl->split), (size_t)pl->rows);
    return attn_size_mul(attn_size_mul(rows, (size_t)p->head_dim + 1), sizeof(float));
}

extern "C" int cuda_decode_split(const attn_problem_t *p, const attn_exec_t *x) {
    decode_plan_t pl;
    char why[160];
    if (!cuda_flash_supports(p, why, sizeof why) || cudaSetDevice(x->device) != cudaSuccess)
        return 0;
    return cuda_decode_plan(p, &pl) ? pl.split : 0;
}

int cuda_decode_launch(const attn_problem_t *p, const decode_plan_t *pl, const cuda_flash_call *c, float *part,
                       cudaStream_t st, attn_err_t *err) {
    float *o_part = part, *lse_part = part ? part + (size_t)(pl->batch * pl->kv_heads * pl->split * pl->rows) * p->head_dim
                                           : nullptr;
    decode_params prm = {};
    prm.q = c->q, prm.k = c->k, prm.v = c->v, prm.o = c->o, prm.lse = c->lse;
    prm.o_part = o_part, prm.lse_part = lse_part, prm.kv_ld = c->kv_ld;
    prm.qs = attn_span_t{c->q_off, 1}, prm.ks = attn_span_t{0, 1};
    prm.vis = attn_vis_t{(attn_mask_t)c->mask, c->window, c->doc, c->doc ? c->n_docs : 0};
    prm.scale_log2 = (float)(problem_scale(p) * 1.4426950408889634);
    prm.pl = *pl;
    const bool h = p->dtype == ATTN_F16; /* else bf16: cuda_flash_supports admits only these two */
    if (p->head_dim == 64)
        return h ? launch<f16, 64>(prm, st, err) : launch<bf16, 64>(prm, st, err);
    if (p->head_dim == 128)
        return h ? launch<f16, 128>(prm, st, err) : launch<bf16, 128>(prm, st, err);
    if (p->head_dim == 256)
        return h ? launch<f16, 256>(prm, st, err) : launch<bf16, 256>(prm, st, err);
    return attn_fail(err, ATTN_EUSAGE, "decode kernel: head dim %lld has no kernel (64, 128, 256)", (long long)p->head_dim);
}
