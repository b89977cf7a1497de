/* exp2_avx512.h — the AVX-512 exp2 that the online softmax (softmax_avx512.c) and the fused tile
 * kernel (tile_avx512.c) share, so both round alike. A degree-6 polynomial on the reduced
 * argument f ∈ [−½, ½] (relative error 2.2e-9, far below float32's 6e-8 rounding) scaled by 2ⁿ
 * with vscalefps, which flushes to 0 cleanly. Include only from files built for AVX-512F. */
#pragma once
#include <immintrin.h>

#define ATTN_AVX512 __attribute__((target("avx512f")))

/* vmaxps returns its second operand when either is NaN, so the clamp keeps a NaN argument:
 * NaN in, NaN out. −∞ → 2^−150 → 0 after scalef. */
ATTN_AVX512 static inline __m512 exp2_ps(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-150.0f), x);
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(1.537071015e-04f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339985307e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618373264e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550329023e-02f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264846e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472056e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}
