/* sparse_attn.cu — the CUDA approximate backends (sinks_window_cuda, topk_blocks_cuda): the CPU
 * ones' rule (impls/cpu/sparse_tiles.h, shared, replayed on the host by tests/test_sparse_tiles.c)
 * in three kernels: per K tile the per-channel min/max of K (summary), per (Q tile, head) the
 * sorted list of K tiles to visit (select: the min/max bound in float32 on CUDA cores, a bitonic
 * sort in shared memory), then tensor-core attention over each list (flash.cu's loop: mma.sync,
 * online softmax, LSE), in bf16 or f16. docs/approximate.md, "CUDA". */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "impls/cuda/cuda_util.cuh"
extern "C" {
#include "impls/cpu/sparse_engine.h"
}
#include "impls/cpu/sparse_tiles.h"
#include "impls/cuda/flash_frag.h"
#include "impls/cuda/mma_sm80.cuh"
#include "impls/cuda/flash_tile.cuh"
#include "impls/cuda/sparse_attn.h"

namespace {

using namespace mma80; /* bf16, f16, elem16, cp.async, ldmatrix, mma.sync: mma_sm80.cuh */

constexpr int BR = SPARSE_STEP, BC = SPARSE_STEP, WARPS = 4, THREADS = 32 * WARPS;
constexpr int DEFAULT_BQ = 128, DEFAULT_BK = 256; /* the CPU sgemm path's tiles (tile_engine.h) */
constexpr int64_t MAX_CANDIDATES = 16384;         /* a select block sorts ≤ this many keys in shared memory */

/* The element type's ops: mma80::elem16 (mma, packing, rounding, pairs, the non-finite test),
 * and one element as a float. */
template <typename T> using elem = elem16<T>;
__device__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(f16 x) { return __half2float(x); }

/* ---- summary: per (batch, kv head, K tile) mid and half of each channel, (B·H_kv, n_kt, d) ---- */

/* One block per tile, one thread per channel, rows in order as on the CPU (topk_blocks.c). */
template <typename T>
__global__ void summary_kernel(const T *k, float *mid, float *half, int64_t n_k, int d, int bk, int64_t n_kt,
                               int64_t t0) {
    const int64_t t = t0 + blockIdx.x, bkv = blockIdx.y, j0 = t * bk;
    const int c = threadIdx.x;
    const int64_t cols = min((int64_t)bk, n_k - j0);
    const T *K = k + (bkv * n_k + j0) * d; /* (cols, d) */
    float lo = to_float(K[c]), hi = lo;
    for (int64_t r = 1; r < cols; r++)
        sparse_minmax_add(to_float(K[r * d + c]), &lo, &hi);
    sparse_mid_half(lo, hi, &mid[(bkv * n_kt + t) * d + c], &half[(bkv * n_kt + t) * d + c]);
}

/* ---- select: per (Q tile, list head) the ascending list of K tiles to visit ---- */

constexpr int SEL_THREADS = 256, SEL_ROWS = 64, SEL_TILES = 64, SEL_CH = 32, SEL_PAD = SEL_CH + 1;

template <typename T> struct select_params {
    const T *q;              /* (B, H, n_q, d) */
    const float *mid, *half; /* (B·H_kv, n_kt, d) */
    const sparse_req_t *req; /* (n_qt) */
    int32_t *list, *count;   /* (list_heads, n_qt, cap), (list_heads, n_qt) */
    int64_t n_q, n_kt, cap;
    int n_qt, bq, d, heads, group;
};

/* A block: thread (ty, tx) = (tid / 16, tid % 16) accumulates rows ty·4 … +3 of a 64-row chunk
 * against tiles tx·4 … +3 of a 64-tile chunk, 32 channels at a time through shared memory; the
 * rows' bounds fold into one 64-bit key per tile by atomic max (sparse_tile_key orders as the
 * CPU ranks); a bitonic network sorts the keys descending; the first `keep` are kept with the
 * request's ranges, and warp 0 writes them ascending. */
template <typename T> __global__ void __launch_bounds__(SEL_THREADS) select_kernel(const select_params<T> p) {
    extern __shared__ __align__(16) unsigned char sel_smem[];
    uint64_t *keys = reinterpret_cast<uint64_t *>(sel_smem); /* pow2(n_cand) keys */
    __shared__ float stage[3 * SEL_ROWS * SEL_PAD];          /* Q, mid, half chunks; then flags */
    float *qs = stage, *ms = stage + SEL_ROWS * SEL_PAD, *hs = stage + 2 * SEL_ROWS * SEL_PAD;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, ty = tid / 16, tx = tid % 16;
    const int qt = blockIdx.x, lh = blockIdx.y;
    const sparse_req_t rq = p.req[qt];
    int32_t *list = p.list + ((int64_t)lh * p.n_qt + qt) * p.cap;
    int32_t *count = p.count + (int64_t)lh * p.n_qt + qt;
    if (rq.keep == 0) { /* nothing to choose: the ranges alone */
        if (tid == 0)
            *count = (int32_t)sparse_req_fixed_list(&rq, list);
        return;
    }
    const int64_t nt = rq.c_hi - rq.c_lo, n2 = sparse_pow2(nt), r0 = (int64_t)qt * p.bq;
    const int rows = (int)min((int64_t)p.bq, p.n_q - r0);
    const int b = lh / p.heads, kvh = (lh % p.heads) / p.group, kv_heads = p.heads / p.group;
    const T *Q = p.q + ((int64_t)lh * p.n_q + r0) * p.d; /* (rows, d) */
    const int64_t sum0 = ((int64_t)(b * kv_heads + kvh) * p.n_kt + rq.c_lo) * p.d;
    for (int64_t i = tid; i < n2; i += SEL_THREADS) /* kept-anyway tiles and padding: key 0, never chosen */
        keys[i] = i < nt && !sparse_req_holds(&rq, rq.c_lo + i) ? sparse_tile_key(-INFINITY, rq.c_lo + i) : 0;
    __syncthreads();

    for (int64_t tc = 0; tc < nt; tc += SEL_TILES)
        for (int rc = 0; rc < rows; rc += SEL_ROWS) {
            float s_mid[4][4] = {}, s_half[4][4] = {};
            for (int c0 = 0; c0 < p.d; c0 += SEL_CH) {
                for (int e = tid; e < SEL_ROWS * SEL_CH; e += SEL_THREADS) {
                    const int r = e / SEL_CH, c = e % SEL_CH;
                    const bool q_ok = rc + r < rows, t_ok = tc + r < nt;
                    qs[r * SEL_PAD + c] = q_ok ? to_float(Q[(int64_t)(rc + r) * p.d + c0 + c]) : 0.f;
                    ms[r * SEL_PAD + c] = t_ok ? p.mid[sum0 + (tc + r) * p.d + c0 + c] : 0.f;
                    hs[r * SEL_PAD + c] = t_ok ? p.half[sum0 + (tc + r) * p.d + c0 + c] : 0.f;
                }
                __syncthreads();
#pragma unroll 4
                for (int c = 0; c < SEL_CH; c++)
#pragma unroll
                    for (int a = 0; a < 4; a++) {
                        const float q = qs[(ty * 4 + a) * SEL_PAD + c];
#pragma unroll
                        for (int t = 0; t < 4; t++)
                            sparse_bound_add(q, ms[(tx * 4 + t) * SEL_PAD + c], hs[(tx * 4 + t) * SEL_PAD + c],
                                             &s_mid[a][t], &s_half[a][t]);
                    }
                __syncthreads();
            }
#pragma unroll
            for (int t = 0; t < 4; t++) {
                const int64_t i = tc + tx * 4 + t;
                if (i >= nt || sparse_req_holds(&rq, rq.c_lo + i))
                    continue;
                float m = -INFINITY;
#pragma unroll
                for (int a = 0; a < 4; a++)
                    if (rc + ty * 4 + a < rows)
                        m = sparse_fold(m, s_mid[a][t] + s_half[a][t]);
                atomicMax(reinterpret_cast<unsigned long long *>(&keys[i]),
                          (unsigned long long)sparse_tile_key(m, rq.c_lo + i));
            }
        }
    __syncthreads();

    for (int64_t k = 2; k <= n2; k <<= 1)
        for (int64_t j = k >> 1; j > 0; j >>= 1) {
            for (int64_t i = tid; i < n2; i += SEL_THREADS)
                sparse_bitonic_step(keys, i, k, j);
            __syncthreads();
        }

    unsigned char *flags = reinterpret_cast<unsigned char *>(stage); /* nt ≤ MAX_CANDIDATES bytes */
    for (int64_t i = tid; i < nt; i += SEL_THREADS)
        flags[i] = (unsigned char)sparse_req_holds(&rq, rq.c_lo + i);
    __syncthreads();
    for (int64_t i = tid; i < rq.keep; i += SEL_THREADS) /* keep < the candidates: these keys are real */
        flags[sparse_key_tile(keys[i]) - rq.c_lo] = 1;
    __syncthreads();
    if (warp == 0) {
        int64_t n = 0;
        for (int64_t i0 = 0; i0 < nt; i0 += 32) {
            const int64_t i = i0 + lane;
            const bool f = i < nt && flags[i];
            const unsigned votes = __ballot_sync(0xffffffffu, f);
            if (f)
                list[n + __popc(votes & ((1u << lane) - 1))] = (int32_t)(rq.c_lo + i);
            n += __popc(votes);
        }
        if (lane == 0)
            *count = (int32_t)n;
    }
}

/* ---- attention over the lists: flash.cu's loop, walking a list instead of a band ---- */

template <typename T> struct attn_params {
    const T *q, *k, *v;      /* Q (B,H,n_q,d), K/V (B,H_kv,n_k,d) */
    float *o, *lse;          /* O (B,H,n_q,d), LSE (B,H,n_q) */
    const int32_t *list, *count;
    unsigned long long *visited; /* (query, key) pairs kept, over batch × heads */
    int64_t n_q, n_k, q_off, cap;
    int heads, kv_heads, group, n_qt, bq, bk, list_heads, m_blocks;
    sparse_rule_t rule;
    float scale_log2;
};

template <typename T, int D> constexpr int attn_smem_bytes() { return ftile::shape<D>::SMEM; } /* Q, K and V ×2 */

using ftile::load_tile; /* the tile loop pieces flash.cu shares: flash_tile.cuh */
using ftile::tile_nonfinite;
static_assert(BR == ftile::TILE && THREADS == ftile::THREADS, "flash_tile.cuh's tile");
/* The kernel's key tile at D: SPARSE_STEP, or half of it at d = 256 (ftile::shape; each 64-key
 * step of the list walk is then two sub-steps, sparse_sub_key0). */
template <int D> constexpr int keys_of() { return ftile::shape<D>::KEYS; }
static_assert(BC == SPARSE_STEP && SPARSE_STEP % keys_of<256>() == 0, "whole sub-steps per step");

template <typename T, int D> __global__ void __launch_bounds__(THREADS) sparse_attn_kernel(const attn_params<T> p) {
    constexpr int KT = keys_of<D>(); /* keys per tile: 64, 32 at d = 256 */
    extern __shared__ __align__(128) unsigned char smem[];
    T *sQ = reinterpret_cast<T *>(smem); /* 64 × D */
    T *sK = sQ + BR * D;                 /* 2 stages × KT × D */
    T *sV = sK + 2 * KT * D;             /* 2 stages × KT × D */
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, tq = lane % 4;

    const int mb = p.m_blocks - 1 - blockIdx.x; /* last query blocks (most keys under causal) first */
    const int bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads, kvh = h / p.group;
    const int64_t r0 = (int64_t)mb * BR;
    const T *Q = p.q + (int64_t)bh * p.n_q * D;
    const T *K = p.k + (int64_t)(b * p.kv_heads + kvh) * p.n_k * D;
    const T *V = p.v + (int64_t)(b * p.kv_heads + kvh) * p.n_k * D;
    const int64_t at = (int64_t)(p.list_heads == 1 ? 0 : bh) * p.n_qt + sparse_block_qtile(r0, p.bq);
    const int32_t *list = p.list + at * p.cap;
    const int64_t steps = sparse_sub_steps(p.count[at], p.bk, KT);
    const int64_t i_lo = p.q_off + r0;

    load_tile<T, D>(sQ, Q, r0, p.n_q);
    cp_async_commit();
    int64_t key0 = steps > 0 ? sparse_sub_key0(list, 0, p.bk, KT) : 0;
    if (steps > 0) {
        load_tile<T, D, KT>(sK, K, key0, p.n_k);
        load_tile<T, D, KT>(sV, V, key0, p.n_k);
    }
    cp_async_commit();
    cp_async_wait<1>(); /* the Q group */
    __syncthreads();

    const ftile::q_frag<T, D> qf(sQ, warp, lane); /* this warp's 16 rows of Q as A fragments */

    float o[D / 8][4];
    ftile::zero(o);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}; /* rows g and g+8, base 2 */
    const int64_t row_pos[2] = {i_lo + warp * 16 + g, i_lo + warp * 16 + g + 8};
    const bool row_real[2] = {r0 + warp * 16 + g < p.n_q, r0 + warp * 16 + g + 8 < p.n_q};
    unsigned long long kept = 0;

    for (int64_t it = 0; it < steps; it++) {
        const int stage = (int)(it & 1);
        int64_t next = 0;
        if (it + 1 < steps) {
            next = sparse_sub_key0(list, it + 1, p.bk, KT);
            load_tile<T, D, KT>(sK + (stage ^ 1) * KT * D, K, next, p.n_k);
            load_tile<T, D, KT>(sV + (stage ^ 1) * KT * D, V, next, p.n_k);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T *k_s = sK + stage * KT * D, *v_s = sV + stage * KT * D;

        float s[KT / 8][4];
        ftile::scores<T, D>(s, qf, k_s, lane);

        /* Every key against the rule (a listed tile is kept whole only where the mask allows). */
        float mx[2] = {-INFINITY, -INFINITY};
        int dropped = 0;
#pragma unroll
        for (int n = 0; n < KT / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int64_t j = key0 + frag_col(lane, n, e);
                const int r = e >> 1;
                float x = s[n][e] * p.scale_log2;
                if (j >= p.n_k || !sparse_keeps(&p.rule, row_pos[r], j)) {
                    x = -INFINITY;
                    dropped = 1;
                } else {
                    kept += row_real[r];
                }
                s[n][e] = x;
                mx[r] = fmaxf(mx[r], x);
            }
        const bool any_dropped = __syncthreads_or(dropped) != 0;
        const bool v_bad = any_dropped && tile_nonfinite<T, D, KT>(v_s);

        ftile::softmax_step<D>(s, mx, m, l, o);

        if (v_bad)
            ftile::pv_kept<T, D>(o, s, v_s, lane, [=, &p](int key, int r) {
                const int64_t j = key0 + key;
                return j < p.n_k && sparse_keeps(&p.rule, row_pos[r], j);
            });
        else
            ftile::pv_mma<T, D>(o, s, v_s, lane);
        __syncthreads(); /* every warp is done with this stage before it is refilled */
        key0 = next;
    }

    /* The kept pairs, one atomic per warp. */
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
        kept += __shfl_xor_sync(0xffffffffu, kept, off);
    if (lane == 0 && kept)
        atomicAdd(p.visited, kept);

    /* Epilogue as flash.cu's: O / l and LSE = ln 2 · (m + log2 l); l = 0 → O = 0, LSE = −∞. */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] = ftile::quad_sum(l[r]);
        const int64_t row = r0 + warp * 16 + g + r * 8;
        if (row >= p.n_q)
            continue;
        ftile::store_row<D>(p.o + ((int64_t)bh * p.n_q + row) * D + 2 * tq, p.lse + (int64_t)bh * p.n_q + row, o, r,
                            l[r], m[r], tq);
    }
}

/* ---- host: the requests, the buffers, the launches ---- */

/* What a call needs beyond Q, K, V, O, LSE: the requests of its Q tiles, the lists' capacity,
 * the most candidates one Q tile sorts, and the K tiles some Q tile scores (summarised). */
struct plan {
    int bq = 0, bk = 0;
    int64_t n_qt = 0, n_kt = 0, cap = 1, max_cand = 0, t0 = 0, t1 = 0, list_heads = 1;
    sparse_req_t *req = nullptr; /* attn_alloc'd, n_qt */
    plan() = default;
    plan(const plan &) = delete;
    plan &operator=(const plan &) = delete;
    ~plan() { attn_free(req); }
};

int plan_of(const attn_problem_t *p, const attn_exec_t *x, int topk, plan *pl, attn_err_t *err) {
    char why[256];
    if (!cuda_sparse_tiles(p, &pl->bq, &pl->bk, why, sizeof why))
        return attn_fail(err, ATTN_EUSAGE, "%s_cuda %s", topk ? "topk_blocks" : "sinks_window", why);
    pl->n_qt = (p->n_q + pl->bq - 1) / pl->bq;
    pl->n_kt = (p->n_k + pl->bk - 1) / pl->bk;
    pl->list_heads = topk ? p->batch * p->heads : 1; /* sinks + window: one list per Q tile for all heads */
    pl->req = (sparse_req_t *)attn_alloc((size_t)pl->n_qt * sizeof(sparse_req_t), err, "sparse tile requests");
    if (!pl->req)
        return ATTN_ERUNTIME;
    pl->t0 = pl->n_kt;
    for (int64_t qt = 0; qt < pl->n_qt; qt++) {
        sparse_req_t *r = &pl->req[qt];
        int64_t r0 = qt * pl->bq;
        int rows = (int)ATTN_MIN((int64_t)pl->bq, p->n_q - r0);
        if (topk)
            topk_blocks_request(p, x, pl->bk, r0, rows, r);
        else
            sinks_window_request(p, x, pl->bk, r0, rows, r);
        pl->cap = ATTN_MAX(pl->cap, sparse_req_len_max(r));
        if (r->keep > 0) {
            pl->max_cand = ATTN_MAX(pl->max_cand, r->c_hi - r->c_lo);
            pl->t0 = ATTN_MIN(pl->t0, r->c_lo), pl->t1 = ATTN_MAX(pl->t1, r->c_hi);
        }
    }
    if (pl->t1 <= pl->t0)
        pl->t0 = pl->t1 = 0;
    return ATTN_OK;
}

size_t summary_floats(const attn_problem_t *p, const plan &pl) {
    return pl.max_cand > 0 ? attn_size_mul(attn_size_mul((size_t)(p->batch * p->kv_heads), (size_t)pl.n_kt),
                                           (size_t)p->head_dim)
                           : 0;
}

size_t list_ints(const plan &pl) { return attn_size_mul(attn_size_mul((size_t)pl.list_heads, (size_t)pl.n_qt), (size_t)pl.cap); }

template <typename T, int D> int launch_all(const attn_problem_t *p, const plan &pl, const T *q, const T *k, const T *v,
                                            float *mid, float *half, const sparse_req_t *req, int32_t *list,
                                            int32_t *count, unsigned long long *visited, float *o, float *lse,
                                            const sparse_rule_t &rule, cudaStream_t s, attn_err_t *err) {
    const int group = (int)(p->heads / p->kv_heads);
    if (pl.max_cand > 0 && pl.t1 > pl.t0) {
        dim3 grid((unsigned)(pl.t1 - pl.t0), (unsigned)(p->batch * p->kv_heads));
        summary_kernel<T><<<grid, (unsigned)D, 0, s>>>(k, mid, half, p->n_k, D, pl.bk, pl.n_kt, pl.t0);
        CUDA_TRY_LAUNCH();
    }
    select_params<T> sp = {q, mid, half, req, list, count, p->n_q, pl.n_kt, pl.cap, (int)pl.n_qt, pl.bq, D,
                           (int)p->heads, group};
    const int sel_smem = (int)(sparse_pow2(ATTN_MAX(pl.max_cand, 1)) * sizeof(uint64_t));
    CUDA_TRY(cudaFuncSetAttribute(select_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, sel_smem));
    select_kernel<T><<<dim3((unsigned)pl.n_qt, (unsigned)pl.list_heads), SEL_THREADS, sel_smem, s>>>(sp);
    CUDA_TRY_LAUNCH();

    attn_params<T> ap = {};
    ap.q = q, ap.k = k, ap.v = v, ap.o = o, ap.lse = lse, ap.list = list, ap.count = count, ap.visited = visited;
    ap.n_q = p->n_q, ap.n_k = p->n_k, ap.q_off = p->n_k - p->n_q, ap.cap = pl.cap;
    ap.heads = (int)p->heads, ap.kv_heads = (int)p->kv_heads, ap.group = group, ap.n_qt = (int)pl.n_qt;
    ap.bq = pl.bq, ap.bk = pl.bk, ap.list_heads = (int)pl.list_heads, ap.m_blocks = (int)((p->n_q + BR - 1) / BR);
    ap.rule = rule;
    ap.scale_log2 = (float)(problem_scale(p) * 1.4426950408889634);
    CUDA_TRY(cudaFuncSetAttribute(sparse_attn_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  attn_smem_bytes<T, D>()));
    dim3 grid((unsigned)ap.m_blocks, (unsigned)(p->batch * p->heads));
    sparse_attn_kernel<T, D><<<grid, THREADS, attn_smem_bytes<T, D>(), s>>>(ap);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

/* The device buffers of one call. */
struct sparse_bufs {
    const void *q, *k, *v; /* bf16 or f16 */
    float *mid, *half;
    const sparse_req_t *req;
    int32_t *list, *count;
    unsigned long long *visited;
    float *o, *lse;
};

template <typename T, int D>
int launch_typed(const attn_problem_t *p, const plan &pl, const sparse_bufs &b, const sparse_rule_t &rule,
                 cudaStream_t s, attn_err_t *err) {
    return launch_all<T, D>(p, pl, static_cast<const T *>(b.q), static_cast<const T *>(b.k),
                            static_cast<const T *>(b.v), b.mid, b.half, b.req, b.list, b.count, b.visited, b.o, b.lse,
                            rule, s, err);
}

} // namespace

extern "C" int cuda_sparse_tiles(const attn_problem_t *p, int *bq, int *bk, char *why, size_t len) {
    *bq = p->block_q > 0 ? p->block_q : DEFAULT_BQ;
    *bk = p->block_k > 0 ? p->block_k : DEFAULT_BK;
    if (*bq % SPARSE_STEP || *bk % SPARSE_STEP) {
        snprintf(why, len, "takes tiles of multiples of %d rows and keys (got --block-q %d --block-k %d)", SPARSE_STEP,
                 *bq, *bk);
        return 0;
    }
    return 1;
}

extern "C" int cuda_sparse_supports(const attn_problem_t *p, char *why, size_t len) {
    int bq, bk;
    if (p->dtype != ATTN_BF16 && p->dtype != ATTN_F16) {
        snprintf(why, len, "runs in bf16 or f16 on tensor cores only (got %s; use --dtype bf16)", dtype_name(p->dtype));
        return 0;
    }
    if (p->head_dim != 64 && p->head_dim != 128 && p->head_dim != 256) {
        snprintf(why, len, "has kernels for head dims 64, 128 and 256 only (got %lld)", (long long)p->head_dim);
        return 0;
    }
    if (!cuda_sparse_tiles(p, &bq, &bk, why, len))
        return 0;
    if ((p->n_k + bk - 1) / bk > MAX_CANDIDATES) {
        snprintf(why, len, "sorts at most %lld key tiles per query tile in shared memory (n_k %lld / %d keys)",
                 (long long)MAX_CANDIDATES, (long long)p->n_k, bk);
        return 0;
    }
    if (p->batch * p->heads > 65535 || (p->n_q + BR - 1) / BR > INT32_MAX) {
        snprintf(why, len, "grid too large: batch·heads must be ≤ 65535 (got %lld)", (long long)(p->batch * p->heads));
        return 0;
    }
    return 1;
}

/* Device bytes: Q, K, V in bf16 or f16, O and LSE in float32, the float32 upload staging (the larger of
 * Q and K), the requests, the lists and their counts, the visit counter, and for top-k the
 * summaries (mid and half, float32). */
extern "C" size_t cuda_sparse_device_bytes(const attn_problem_t *p, const attn_exec_t *x, int topk) {
    plan pl;
    attn_err_t err{};
    if (plan_of(p, x, topk, &pl, &err) != ATTN_OK)
        return SIZE_MAX;
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p), nl = problem_numel_lse(p);
    size_t bytes = attn_size_mul(attn_size_add(nq, attn_size_mul(2, nkv)), sizeof(bf16));
    bytes = attn_size_add(bytes, attn_size_mul(attn_size_add(attn_size_add(nq, nl), nq > nkv ? nq : nkv), sizeof(float)));
    bytes = attn_size_add(bytes, attn_size_mul((size_t)pl.n_qt, sizeof(sparse_req_t)));
    bytes = attn_size_add(bytes, attn_size_mul(attn_size_add(list_ints(pl), (size_t)(pl.list_heads * pl.n_qt)), sizeof(int32_t)));
    bytes = attn_size_add(bytes, sizeof(unsigned long long));
    return attn_size_add(bytes, attn_size_mul(2 * sizeof(float), summary_floats(p, pl)));
}

extern "C" int cuda_sparse_forward(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, int topk,
                                   attn_err_t *err) {
    ATTN_TRY(cuda_begin(x, err));
    char why[256];
    if (!cuda_sparse_supports(p, why, sizeof why))
        return attn_fail(err, ATTN_EUSAGE, "%s_cuda %s", topk ? "topk_blocks" : "sinks_window", why);
    plan pl;
    ATTN_TRY(plan_of(p, x, topk, &pl, err));
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p), nl = problem_numel_lse(p), ns = summary_floats(p, pl);
    dev_buf q, k, v, o, lse, staging, req, list, count, visited, mid, half;
    DEV_ALLOC(q, nq * sizeof(bf16), "sparse Q (16-bit)"); /* f16 is as wide */
    DEV_ALLOC(k, nkv * sizeof(bf16), "sparse K (16-bit)");
    DEV_ALLOC(v, nkv * sizeof(bf16), "sparse V (16-bit)");
    DEV_ALLOC(o, nq * sizeof(float), "sparse O");
    DEV_ALLOC(lse, nl * sizeof(float), "sparse LSE");
    DEV_ALLOC(staging, (nq > nkv ? nq : nkv) * sizeof(float), "sparse upload staging");
    DEV_ALLOC(req, (size_t)pl.n_qt * sizeof(sparse_req_t), "sparse tile requests");
    DEV_ALLOC(list, list_ints(pl) * sizeof(int32_t), "sparse tile lists");
    DEV_ALLOC(count, (size_t)(pl.list_heads * pl.n_qt) * sizeof(int32_t), "sparse tile list lengths");
    DEV_ALLOC(visited, sizeof(unsigned long long), "sparse visit counter");
    if (ns) {
        DEV_ALLOC(mid, ns * sizeof(float), "topk_blocks_cuda tile mids");
        DEV_ALLOC(half, ns * sizeof(float), "topk_blocks_cuda tile half-widths");
    }
    cudaStream_t s = 0;
    ATTN_TRY(cuda_upload(q.ptr, p->dtype, (const float *)io->q, nq, staging.as<float>(), s, err));
    ATTN_TRY(cuda_upload(k.ptr, p->dtype, (const float *)io->k, nkv, staging.as<float>(), s, err));
    ATTN_TRY(cuda_upload(v.ptr, p->dtype, (const float *)io->v, nkv, staging.as<float>(), s, err));
    CUDA_TRY(cudaMemcpyAsync(req.ptr, pl.req, (size_t)pl.n_qt * sizeof(sparse_req_t), cudaMemcpyHostToDevice, s));
    CUDA_TRY(cudaMemsetAsync(visited.ptr, 0, sizeof(unsigned long long), s));
    sparse_bufs bufs = {q.ptr, k.ptr, v.ptr, mid.as<float>(), half.as<float>(), req.as<sparse_req_t>(),
                        list.as<int32_t>(), count.as<int32_t>(), visited.as<unsigned long long>(), o.as<float>(),
                        lse.as<float>()};
    sparse_rule_t rule = topk ? topk_blocks_rule(p) : sinks_window_rule(p, x);
    rule.vis.doc = nullptr, rule.vis.n_docs = 0; /* one document (sparse_supports_rule) */

    event_pair ev;
    CUDA_TRY(cudaEventCreate(&ev.start));
    CUDA_TRY(cudaEventCreate(&ev.stop));
    CUDA_TRY(cudaEventRecord(ev.start, s));
    const int64_t d = p->head_dim;
    if (p->dtype == ATTN_F16)
        ATTN_TRY((d == 64    ? launch_typed<f16, 64>(p, pl, bufs, rule, s, err)
                  : d == 128 ? launch_typed<f16, 128>(p, pl, bufs, rule, s, err)
                             : launch_typed<f16, 256>(p, pl, bufs, rule, s, err)));
    else
        ATTN_TRY((d == 64    ? launch_typed<bf16, 64>(p, pl, bufs, rule, s, err)
                  : d == 128 ? launch_typed<bf16, 128>(p, pl, bufs, rule, s, err)
                             : launch_typed<bf16, 256>(p, pl, bufs, rule, s, err)));
    CUDA_TRY(cudaEventRecord(ev.stop, s));
    ATTN_TRY(cuda_finish(ev, o, lse, nq, nl, io, err));
    unsigned long long n_visited = 0;
    CUDA_TRY(cudaMemcpy(&n_visited, visited.ptr, sizeof n_visited, cudaMemcpyDeviceToHost));
    if (io->keys_visited)
        *io->keys_visited = (double)n_visited;
    return ATTN_OK;
}
