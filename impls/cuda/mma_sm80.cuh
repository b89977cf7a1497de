/* mma_sm80.cuh — the PTX wrappers the tensor-core attention kernels share: cp.async 16-byte
 * copies, ldmatrix, the m16n8k16 bf16 and f16 mmas with float32 accumulators, 16-bit packing, and
 * elem16<T>, which the kernels are templated on (flash.cu and flash_decode.cu). Fragment layouts:
 * impls/cuda/flash_frag.h, docs/gpu-kernels.md. */
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "impls/cuda/flash_frag.h"

namespace mma80 {

typedef __nv_bfloat16 bf16;
typedef __half f16;

__device__ __forceinline__ unsigned smem_addr(const void *p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

/* 16 bytes global → shared, asynchronously; zero-filled when !valid. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(unsigned (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

/* c += a·b for one m16n8k16 tile. */
__device__ __forceinline__ void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* .x = lo sits in the low half */
    return *reinterpret_cast<unsigned *>(&v);
}

/* The f16 forms: same fragment layout (the m16n8k16 shapes and registers do not depend on which
 * 16-bit type), IEEE binary16 operands. */
__device__ __forceinline__ void mma_f16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned pack_f16(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi); /* .x = lo sits in the low half */
    return *reinterpret_cast<unsigned *>(&v);
}

/* What a kernel templated on its element type T (bf16 or f16) does with it: the mma, packing two
 * floats (P) into an A fragment word, rounding a float as that packing does, reading two adjacent
 * elements as floats, and the non-finite test of a word holding two. */
template <typename T> struct elem16;
template <> struct elem16<bf16> {
    static __device__ __forceinline__ void mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
        mma_bf16(c, a, b0, b1);
    }
    static __device__ __forceinline__ unsigned pack(float lo, float hi) { return pack_bf16(lo, hi); }
    static __device__ __forceinline__ float round(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }
    static __device__ __forceinline__ float2 load2(const bf16 *p) {
        return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p));
    }
    static __device__ __forceinline__ int nonfinite2(uint32_t w) { return frag_bf16x2_nonfinite(w); }
};
template <> struct elem16<f16> {
    static __device__ __forceinline__ void mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
        mma_f16(c, a, b0, b1);
    }
    static __device__ __forceinline__ unsigned pack(float lo, float hi) { return pack_f16(lo, hi); }
    static __device__ __forceinline__ float round(float x) { return __half2float(__float2half_rn(x)); }
    static __device__ __forceinline__ float2 load2(const f16 *p) {
        return __half22float2(*reinterpret_cast<const __half2 *>(p));
    }
    static __device__ __forceinline__ int nonfinite2(uint32_t w) { return frag_f16x2_nonfinite(w); }
};

} // namespace mma80
