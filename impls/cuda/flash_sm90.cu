/* flash_sm90.cu — the Hopper (sm_90a) forward in the FlashAttention-3 design: TMA loads into
 * 128B-swizzled shared memory, wgmma for S = Q·Kᵀ and O += P·V (P from registers), one producer
 * warpgroup and two ping-ponging consumer warpgroups over an mbarrier K/V pipeline. Every index
 * it computes comes from sm90_layout.h (host-tested); design and what is unverified:
 * docs/gpu-kernels.md. Same call, output and LSE convention as flash.cu's cuda_flash_launch. */
#include <cuda.h> /* CUtensorMap and its enums only: the encoder comes through the runtime */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <atomic>
#include <type_traits>

#include "core/mask.h"
#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/flash_frag.h"
#include "impls/cuda/sm90_layout.h"
#include "impls/cuda/wgmma_sm90.cuh"

namespace {

constexpr int THREADS = 384; /* warpgroup 0 produces, 1 and 2 consume */
constexpr int BAR_TURN = 1;  /* named barriers 1, 2: the consumers' turns (0 is __syncthreads) */

struct sm90_params {
    float *o, *lse;
    int64_t n_q, n_k, q_off, q_ld;
    int64_t g_q0, g_k0, g_stride; /* global positions of query row 0, key 0, and their stride (piece_vis.h) */
    int heads, kv_heads, group;
    attn_vis_t vis;
    float scale_log2;
    int m_blocks;
};

__device__ __forceinline__ piece_vis_t sm90_pv(const sm90_params &p) {
    return piece_vis_t{p.vis, p.q_off, p.g_q0, p.g_k0, p.g_stride};
}

/* ---- PTX: mbarriers, TMA, wgmma fences, named barriers, register reallocation ---------------- */

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbar_init(uint64_t *b, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(b)), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t *b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(b)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *b, uint32_t parity) {
    asm volatile("{\n.reg .pred done;\nwait_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra wait_%=;\n}\n" ::"r"(smem_u32(b)),
                 "r"(parity)
                 : "memory");
}
/* One box {64 columns, rows, 1} of a 3-D tensor map (columns, rows, slab) into shared memory,
 * completing its bytes on mbarrier b. */
__device__ __forceinline__ void tma_load(void *dst, const CUtensorMap *map, int col, int row, int slab, uint64_t *b) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(
                     smem_u32(dst)),
                 "l"(map), "r"(col), "r"(row), "r"(slab), "r"(smem_u32(b))
                 : "memory");
}
__device__ __forceinline__ void named_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void named_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }

__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_wait_all() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}
/* Keeps the compiler from moving accumulator reads or writes across an asynchronous wgmma. */
template <int N> __device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++)
        asm volatile("" : "+f"(r[i])::"memory");
}
template <int REGS> __device__ __forceinline__ void regs_dec() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGS));
#endif
}
template <int REGS> __device__ __forceinline__ void regs_inc() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGS));
#endif
}

/* The element type's wgmma (bf16 or f16) and packing, N = 64/128/256 columns. */
template <typename T, int N> struct mma;
#define SM90_MMA(TY, TAG, NN)                                                                                    \
    template <> struct mma<TY, NN> {                                                                             \
        static __device__ __forceinline__ void ss(float (&d)[NN / 2], uint64_t a, uint64_t b, int acc) {          \
            sm90::wgmma_ss_##TAG##_n##NN(d, a, b, acc);                                                          \
        }                                                                                                        \
        static __device__ __forceinline__ void rs(float (&d)[NN / 2], const uint32_t (&a)[4], uint64_t b, int acc) { \
            sm90::wgmma_rs_##TAG##_n##NN(d, a, b, acc);                                                          \
        }                                                                                                        \
    };
SM90_MMA(__nv_bfloat16, bf16, 64)
SM90_MMA(__nv_bfloat16, bf16, 128)
SM90_MMA(__nv_bfloat16, bf16, 256)
SM90_MMA(__half, f16, 64)
SM90_MMA(__half, f16, 128)
SM90_MMA(__half, f16, 256)
#undef SM90_MMA

template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    if constexpr (std::is_same<T, __half>::value) {
        __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    } else {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
}
template <typename T> __device__ __forceinline__ float half_of(uint32_t w, int hi) {
    uint16_t b = (uint16_t)(hi ? w >> 16 : w & 0xFFFFu);
    if constexpr (std::is_same<T, __half>::value)
        return __half2float(__ushort_as_half(b));
    else
        return __bfloat162float(__ushort_as_bfloat16(b));
}
/* 1 when either 16-bit half of w is ±∞ or NaN in T (exponent all ones). */
template <typename T> __device__ __forceinline__ int nonfinite2(uint32_t w) {
    if constexpr (std::is_same<T, __half>::value)
        return (w & 0x7C00u) == 0x7C00u || (w & 0x7C000000u) == 0x7C000000u;
    else
        return frag_bf16x2_nonfinite(w);
}

/* Warp-uniform (and, every warp scanning the same bytes, warpgroup-uniform): does the V tile hold
 * a ±∞ or NaN? Only then can a hidden key's V meet a weight 0 (docs/nonfinite.md). */
template <typename T, int BN, int D> __device__ __forceinline__ bool tile_nonfinite(const unsigned char *tile, int lane) {
    const uint4 *c = reinterpret_cast<const uint4 *>(tile);
    int bad = 0;
    for (int i = lane; i < BN * D * 2 / 16; i += 32) {
        const uint4 w = c[i];
        bad |= nonfinite2<T>(w.x) | nonfinite2<T>(w.y) | nonfinite2<T>(w.z) | nonfinite2<T>(w.w);
    }
    return __any_sync(0xffffffffu, bad) != 0;
}

/* O += P·V over visible keys only, scalar from shared memory (the non-finite-V edge tile): P(row,
 * key) sits in the quad lane (key % 8) / 2, accumulator 4(key / 8) + 2·half + key % 2, which is
 * pa[kk][r] half h with 8kk + 2r + h that index (sm90_pa_src). A run-time loop over keys, the
 * register picked by an unrolled select: this path is rare and must stay small in code. */
template <typename T, int BN, int D>
__device__ __forceinline__ void pv_visible_only(float (&o)[D / 2], const uint32_t (&pa)[BN / 16][4],
                                             const unsigned char *v_s, const sm90_params &p, int64_t key0,
                                             const int64_t (&row_pos)[2], int ctid) {
    const int lane = ctid % 32;
    const piece_vis_t pv = sm90_pv(p);
#pragma unroll 1
    for (int key = 0; key < BN; key++) {
        const int j = key / 8, src = (key % 8) / 2, kb = key & 1;
        float w[2];
        bool vis[2];
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            uint32_t mine = 0;
#pragma unroll
            for (int q = 0; q < BN / 16; q++)
#pragma unroll
                for (int r = 0; r < 4; r++)
                {
                    /* opaque copy: keeps the compiler from turning the select into a run-time
                     * indexed load, which would move pa to local memory for the whole kernel */
                    uint32_t cand;
                    asm("mov.b32 %0, %1;" : "=r"(cand) : "r"(pa[q][r]));
                    mine = q == j / 2 && r == 2 * (j % 2) + hr ? cand : mine;
                }
            w[hr] = half_of<T>(__shfl_sync(0xffffffffu, mine, (lane & ~3) + src), kb);
            vis[hr] = key0 + key < p.n_k && piece_visible(&pv, row_pos[hr], key0 + key);
        }
#pragma unroll
        for (int i = 0; i < D / 2; i++)
            if (vis[(i >> 1) & 1])
                o[i] += w[(i >> 1) & 1] *
                        half_of<T>(*reinterpret_cast<const uint16_t *>(v_s + sm90_tile_offset(BN, key, sm90_acc_col(ctid, i))), 0);
    }
}

template <typename T, int D, int BN>
__global__ void __launch_bounds__(THREADS, 1)
    flash_sm90(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
               const __grid_constant__ CUtensorMap tv, const sm90_params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ unsigned char smem_raw[];
    /* 1024-aligned base: the swizzle atom, and base offset 0 in every descriptor */
    unsigned char *smem = (unsigned char *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    constexpr int QB = SM90_BM * D * 2, KB = BN * D * 2;
    unsigned char *sQ = smem, *sK = smem + QB, *sV = smem + QB + SM90_STAGES * KB;
    uint64_t *bar = reinterpret_cast<uint64_t *>(smem + QB + 2 * SM90_STAGES * KB);
    uint64_t *q_full = bar, *full_k = bar + 1, *full_v = full_k + SM90_STAGES, *empty = full_v + SM90_STAGES;

    const int wg = threadIdx.x / 128, ctid = threadIdx.x % 128, warp = ctid / 32, lane = threadIdx.x % 32;
    const int mb = p.m_blocks - 1 - blockIdx.x; /* last query blocks (most keys under causal) first */
    const int bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads, kv_slab = b * p.kv_heads + h / p.group;
    const int64_t r0 = (int64_t)mb * SM90_BM;
    const int64_t i_lo = p.q_off + r0, i_hi = p.q_off + min(r0 + SM90_BM, p.n_q) - 1;
    int64_t t_lo, t_hi;
    const piece_vis_t pv = sm90_pv(p);
    sm90_key_tiles(&pv, i_lo, i_hi, p.n_k, BN, &t_lo, &t_hi);
    const int64_t NT = t_hi - t_lo; /* key tiles */

    if (threadIdx.x == 0) {
        mbar_init(q_full, 1);
        for (int s = 0; s < SM90_STAGES; s++) {
            mbar_init(&full_k[s], 1), mbar_init(&full_v[s], 1);
            mbar_init(&empty[s], SM90_EMPTY_ARRIVALS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) { /* producer: one thread issues every copy */
        regs_dec<SM90_REGS_PRODUCER>();
        if (ctid == 0) {
            mbar_expect_tx(q_full, QB);
            for (int c = 0; c < D / SM90_PANEL; c++)
                tma_load(sQ + c * SM90_BM * 128, &tq, c * SM90_PANEL, (int)r0, bh, q_full);
            for (int64_t it = 0; it < NT; it++) {
                const int st = sm90_stage(it), key0 = (int)((t_lo + it) * BN);
                mbar_wait(&empty[st], sm90_empty_parity(it));
                mbar_expect_tx(&full_k[st], KB);
                for (int c = 0; c < D / SM90_PANEL; c++)
                    tma_load(sK + st * KB + c * BN * 128, &tk, c * SM90_PANEL, key0, kv_slab, &full_k[st]);
                mbar_expect_tx(&full_v[st], KB);
                for (int c = 0; c < D / SM90_PANEL; c++)
                    tma_load(sV + st * KB + c * BN * 128, &tv, c * SM90_PANEL, key0, kv_slab, &full_v[st]);
            }
        }
        return;
    }

    regs_inc<SM90_REGS_CONSUMER>();
    const int c = wg - 1; /* this consumer's 64 rows: r0 + 64c … */
    const int64_t w_lo = i_lo + SM90_WG_ROWS * c, w_hi = min(w_lo + SM90_WG_ROWS - 1, i_hi);
    const int64_t row_pos[2] = {w_lo + sm90_acc_row(ctid, 0), w_lo + sm90_acc_row(ctid, 2)};
    const uint32_t q_base = smem_u32(sQ), k_base = smem_u32(sK), v_base = smem_u32(sV);

    float o[D / 2], s[BN / 2];
#pragma unroll
    for (int i = 0; i < D / 2; i++)
        o[i] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    uint32_t pa[BN / 16][4]; /* P of the previous tile, as A registers */
    bool prev_masked = false;
    const int64_t turns = NT > 0 ? NT + 1 : 0;
    if (sm90_pp_initial_arrive(c, turns))
        named_arrive(BAR_TURN + 0);
    mbar_wait(q_full, 0);

    for (int64_t it = 0; it < turns; it++) {
        const int st = sm90_stage(it);
        if (it < NT)
            mbar_wait(&full_k[st], sm90_full_parity(it));
        named_sync(BAR_TURN + c); /* this warpgroup's turn on the tensor cores */
        /* The non-finite-V edge tile takes the scalar path after the stage has drained: a
         * non-wgmma definition of o anywhere between a stage's first wgmma and its wait (even on
         * another branch) serialises every wgmma of the kernel (ptxas C7515). */
        bool scalar_pv = false;
        if (it > 0) { /* O += P·V of the previous tile */
            const int ps = sm90_stage(it - 1);
            mbar_wait(&full_v[ps], sm90_full_parity(it - 1));
            scalar_pv = prev_masked && tile_nonfinite<T, BN, D>(sV + ps * KB, lane);
            if (!scalar_pv) {
                fence_regs(o); /* before the fence: inside the stage only wgmma may define o */
                wgmma_fence();
#pragma unroll
                for (int kk = 0; kk < BN / 16; kk++)
                    mma<T, D>::rs(o, pa[kk], sm90_desc_mnmajor(v_base + ps * KB, BN, kk), 1);
                wgmma_commit();
            }
        }
        if (it < NT) { /* S = Q·Kᵀ of this tile */
            /* no fence_regs(s) here: P·V's wgmmas are still in flight, and a non-wgmma definition of
             * an accumulator inside an open stage serialises every wgmma (ptxas C7515) */
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++)
                mma<T, BN>::ss(s, sm90_desc_kmajor(q_base, SM90_BM, SM90_WG_ROWS * c, kk),
                               sm90_desc_kmajor(k_base + st * KB, BN, 0, kk), kk > 0);
            wgmma_commit();
        }
        wgmma_wait_all();
        fence_regs(o);
        fence_regs(s);
        if (sm90_pp_end_arrive(c, it, turns))
            named_arrive(BAR_TURN + (1 - c));
        if (scalar_pv) /* CUDA cores only: the tensor-core turn is already handed on */
            pv_visible_only<T, BN, D>(o, pa, sV + sm90_stage(it - 1) * KB, p, (t_lo + it - 1) * BN, row_pos, ctid);
        if (it > 0) {
            __syncwarp();
            if (lane == 0)
                mbar_arrive(&empty[sm90_stage(it - 1)]); /* this warp is done with the stage */
        }
        if (it == NT)
            break;

        /* Online softmax of this tile in base 2, under the other warpgroup's GEMMs. */
        const int64_t key0 = (t_lo + it) * BN;
        const bool edge = sm90_tile_edge(&pv, w_lo, w_hi, key0, BN, p.n_k);
        /* hidden by the mask or documents (not merely past n_k, where TMA read zeros) */
        prev_masked = edge && sm90_tile_edge(&pv, w_lo, w_hi, key0, BN, INT64_MAX);
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int i = 0; i < BN / 2; i++) {
            float x = s[i] * p.scale_log2;
            const int hr = (i >> 1) & 1;
            if (edge) {
                const int64_t j = key0 + sm90_acc_col(ctid, i);
                if (j >= p.n_k || !piece_visible(&pv, row_pos[hr], j))
                    x = -INFINITY;
            }
            s[i] = x;
            mx[hr] = fmaxf(mx[hr], x);
        }
        float alpha[2], m_use[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            const float m_new = fmaxf(m[r], mx[r]);
            m_use[r] = m_new == -INFINITY ? 0.f : m_new; /* a row with nothing visible yet stays at 0 */
            alpha[r] = exp2f(m[r] - m_use[r]);
            m[r] = m_new;
        }
        float rowsum[2] = {0.f, 0.f};
#pragma unroll
        for (int i = 0; i < BN / 2; i++) {
            const int hr = (i >> 1) & 1;
            s[i] = exp2f(s[i] - m_use[hr]);
            rowsum[hr] += s[i];
        }
#pragma unroll
        for (int r = 0; r < 2; r++)
            l[r] = l[r] * alpha[r] + rowsum[r];
#pragma unroll
        for (int i = 0; i < D / 2; i++)
            o[i] *= alpha[(i >> 1) & 1];
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++)
#pragma unroll
            for (int r = 0; r < 4; r++)
                pa[kk][r] = pack2<T>(s[sm90_pa_src(kk, r)], s[sm90_pa_src(kk, r) + 1]);
    }

    /* Epilogue, as flash.cu: whole-row sums, O / l, LSE = ln 2 · (m + log2 l); padding rows skipped. */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        const int64_t row = r0 + SM90_WG_ROWS * c + sm90_acc_row(ctid, 2 * r);
        if (row >= p.n_q)
            continue;
        const float inv = l[r] == 0.f ? 0.f : 1.f / l[r];
        float *out = p.o + ((int64_t)bh * p.q_ld + row) * D;
#pragma unroll
        for (int i = 0; i < D / 2; i += 2)
            if (((i >> 1) & 1) == r)
                *reinterpret_cast<float2 *>(out + sm90_acc_col(ctid, i)) = make_float2(o[i] * inv, o[i + 1] * inv);
        if (ctid % 4 == 0)
            p.lse[(int64_t)bh * p.q_ld + row] = l[r] == 0.f ? -INFINITY : (m[r] + log2f(l[r])) * 0.6931471805599453f;
    }
    (void)warp;
#endif
}

/* cuTensorMapEncodeTiled through the runtime's driver entry point: no -lcuda at link time. */
typedef CUresult (*encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                              const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

int encoder(encode_fn *fn, attn_err_t *err) {
    static encode_fn cached = nullptr;
    if (!cached) {
        void *f = nullptr;
        cudaDriverEntryPointQueryResult q;
        CUDA_TRY(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
        if (q != cudaDriverEntryPointSuccess || !f)
            return attn_fail(err, ATTN_ERUNTIME, "wgmma kernel: the driver has no cuTensorMapEncodeTiled");
        cached = (encode_fn)f;
    }
    *fn = cached;
    return ATTN_OK;
}

/* A 3-D map (d columns, n rows, slabs ld rows apart) of 2-byte elements, boxes {64, rows, 1},
 * 128B swizzle; rows past n read as zeros (padded keys add 0·V, never NaN). */
int make_map(CUtensorMap *map, CUtensorMapDataType ty, const void *base, int d, int64_t n, int64_t ld, int64_t slabs,
             int box_rows, attn_err_t *err) {
    encode_fn enc = nullptr;
    ATTN_TRY(encoder(&enc, err));
    const cuuint64_t dims[3] = {(cuuint64_t)d, (cuuint64_t)n, (cuuint64_t)slabs};
    const cuuint64_t strides[2] = {(cuuint64_t)d * 2, (cuuint64_t)ld * d * 2};
    const cuuint32_t box[3] = {SM90_PANEL, (cuuint32_t)box_rows, 1}, one[3] = {1, 1, 1};
    CUresult r = enc(map, ty, 3, const_cast<void *>(base), dims, strides, box, one, CU_TENSOR_MAP_INTERLEAVE_NONE,
                     CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return attn_fail(err, ATTN_ERUNTIME, "wgmma kernel: cuTensorMapEncodeTiled failed (%d)", (int)r);
    return ATTN_OK;
}

template <typename T, int D>
int launch(const attn_problem_t *pb, const cuda_flash_call *c, const sm90_params &prm, cudaStream_t s, attn_err_t *err) {
    constexpr int BN = D <= 128 ? 128 : 64;
    if (BN != sm90_bn(D))
        return attn_fail(err, ATTN_ERUNTIME, "wgmma kernel: tile width disagrees with sm90_layout.h");
    const CUtensorMapDataType ty =
        std::is_same<T, __half>::value ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
    CUtensorMap tq, tk, tv;
    ATTN_TRY(make_map(&tq, ty, c->q, D, c->n_q, c->q_ld, pb->batch * pb->heads, SM90_BM, err));
    ATTN_TRY(make_map(&tk, ty, c->k, D, c->n_k, c->kv_ld, pb->batch * pb->kv_heads, BN, err));
    ATTN_TRY(make_map(&tv, ty, c->v, D, c->n_k, c->kv_ld, pb->batch * pb->kv_heads, BN, err));
    const int smem = sm90_smem_bytes(D);
    CUDA_TRY(cudaFuncSetAttribute(flash_sm90<T, D, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    dim3 grid((unsigned)prm.m_blocks, (unsigned)(pb->batch * pb->heads));
    flash_sm90<T, D, BN><<<grid, THREADS, smem, s>>>(tq, tk, tv, prm);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

template <typename T>
int launch_dims(const attn_problem_t *pb, const cuda_flash_call *c, const sm90_params &prm, cudaStream_t s, attn_err_t *err) {
    switch (pb->head_dim) {
    case 64:
        return launch<T, 64>(pb, c, prm, s, err);
    case 128:
        return launch<T, 128>(pb, c, prm, s, err);
    case 256:
        return launch<T, 256>(pb, c, prm, s, err);
    }
    return attn_fail(err, ATTN_EUSAGE, "wgmma kernel: head dim %lld has no kernel (64, 128, 256)",
                     (long long)pb->head_dim);
}

} // namespace

int cuda_sm90_launch(const attn_problem_t *p, const cuda_flash_call *c, cudaStream_t s, attn_err_t *err) {
    if (c->n_q <= 0)
        return ATTN_OK;
    sm90_params prm = {};
    prm.o = c->o, prm.lse = c->lse, prm.n_q = c->n_q, prm.n_k = c->n_k, prm.q_off = c->q_off, prm.q_ld = c->q_ld;
    prm.heads = (int)p->heads, prm.kv_heads = (int)p->kv_heads, prm.group = (int)(p->heads / p->kv_heads);
    prm.vis = attn_vis_t{(attn_mask_t)c->mask, c->window, c->doc, c->doc ? c->n_docs : 0};
    /* stride 0: one contiguous problem, band positions are the global ones (as flash.cu) */
    prm.g_q0 = c->stride ? c->q0 : c->q_off, prm.g_k0 = c->stride ? c->k0 : 0, prm.g_stride = c->stride ? c->stride : 1;
    prm.scale_log2 = (float)(problem_scale(p) * 1.4426950408889634);
    prm.m_blocks = (int)((c->n_q + SM90_BM - 1) / SM90_BM);
    switch (p->dtype) {
    case ATTN_BF16:
        return launch_dims<__nv_bfloat16>(p, c, prm, s, err);
    case ATTN_F16:
        return launch_dims<__half>(p, c, prm, s, err);
    default:
        return attn_fail(err, ATTN_EUSAGE, "wgmma kernel: dtype %s is not built (bf16, f16)", dtype_name(p->dtype));
    }
}

int cuda_sm90_supports(const attn_problem_t *p, char *why, size_t len) {
    if (p->dtype != ATTN_BF16 && p->dtype != ATTN_F16) {
        snprintf(why, len, "the wgmma kernel runs bf16 and f16 only (got %s)", dtype_name(p->dtype));
        return 0;
    }
    if (p->head_dim != 64 && p->head_dim != 128 && p->head_dim != 256) {
        snprintf(why, len, "the wgmma kernel has head dims 64, 128 and 256 only (got %lld)", (long long)p->head_dim);
        return 0;
    }
    /* TMA coordinates are 32-bit; grid y is at most 65535 */
    if (p->n_q > INT32_MAX - SM90_BM || p->n_k > INT32_MAX - 256 || p->batch * p->heads > 65535) {
        snprintf(why, len, "the wgmma kernel needs n < 2^31 and batch·heads ≤ 65535");
        return 0;
    }
    return 1;
}

/* ---- the choice between this kernel and flash.cu's --------------------------------------------- */

static std::atomic<int> kernel_requested{ATTN_KERNEL_AUTO};

void cuda_kernel_request(int kernel) { kernel_requested.store(kernel); }

/* 1 when this build holds sm_90a code for the kernel (CMake: 90 in CMAKE_CUDA_ARCHITECTURES). */
static int sm90_built(void) {
#ifdef ATTN_SM90A
    return 1;
#else
    return 0;
#endif
}

static int pick(int ordinal, int requested, const attn_problem_t *p, int *use, char *why, size_t len) {
    *use = 0;
    if (requested == ATTN_KERNEL_MMA)
        return 1;
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ordinal) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, ordinal) != cudaSuccess) {
        snprintf(why, len, "--kernel: cannot read device %d's compute capability", ordinal);
        return 0;
    }
    char shape[200] = "";
    const int hopper = major == 9 && minor == 0, fits = cuda_sm90_supports(p, shape, sizeof shape);
    if (requested == ATTN_KERNEL_WGMMA) {
        if (!hopper)
            snprintf(why, len, "--kernel wgmma needs a compute capability 9.0 GPU (H100/H200); device %d is %d.%d",
                     ordinal, major, minor);
        else if (!sm90_built())
            snprintf(why, len, "--kernel wgmma: this build has no sm_90a code (configure with 90 in "
                               "CMAKE_CUDA_ARCHITECTURES)");
        else if (!fits)
            snprintf(why, len, "--kernel wgmma: %s", shape);
        else
            return *use = 1;
        return 0;
    }
    *use = hopper && sm90_built() && fits;
    return 1;
}

int cuda_flash_pick(const attn_problem_t *p, int *use_wgmma, attn_err_t *err) {
    int dev = 0;
    CUDA_TRY(cudaGetDevice(&dev));
    char why[256];
    if (!pick(dev, kernel_requested.load(), p, use_wgmma, why, sizeof why))
        return attn_fail(err, ATTN_EUSAGE, "%s", why);
    return ATTN_OK;
}

extern "C" const char *device_flash_kernel(int ordinal, int requested, const void *problem) {
    int use = 0, n = 0;
    char why[256];
    if (cudaGetDeviceCount(&n) != cudaSuccess || ordinal >= n)
        return NULL;
    if (!pick(ordinal, requested, (const attn_problem_t *)problem, &use, why, sizeof why))
        return NULL;
    return use ? "wgmma" : "mma";
}
