/* softmax_avx512.c — AVX-512 online-softmax step, compiled with a target attribute so the rest
 * of the build stays baseline x86-64; softmax_tile_select() calls it only on AVX-512F CPUs.
 * exp2 is exp2_avx512.h's polynomial. Operand order matters: vmaxps returns its second
 * operand when either is NaN, so the running max drops NaN scores (they reach l through the
 * exponential instead). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "impls/cpu/exp2_avx512.h"
#include "impls/cpu/softmax.h"

#define AVX512 ATTN_AVX512

AVX512 void softmax_tile_avx512(float *S, int rows, int cols, int ld, float c, float *m, float *l, float *alpha) {
    const __m512 vc = _mm512_set1_ps(c);
    int full = cols & ~15;
    __mmask16 tail = (__mmask16)((1u << (cols & 15)) - 1u);
    for (int r = 0; r < rows; r++) {
        float *s = S + (size_t)r * ld;
        __m512 vmax = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j < full; j += 16)
            vmax = _mm512_max_ps(_mm512_loadu_ps(s + j), vmax);
        if (tail)
            vmax = _mm512_mask_max_ps(vmax, tail, _mm512_maskz_loadu_ps(tail, s + full), vmax);
        float m_new = fmaxf(m[r], _mm512_reduce_max_ps(vmax));
        if (m_new == -INFINITY) {
            softmax_row_nothing(s, cols, &l[r]);
            alpha[r] = 1.0f;
            continue;
        }
        __m512 vm = _mm512_set1_ps(m_new), vsum = _mm512_setzero_ps();
        for (int j = 0; j < full; j += 16) {
            __m512 e = exp2_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(s + j), vm), vc));
            _mm512_storeu_ps(s + j, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        if (tail) {
            __m512 e = exp2_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + full), vm), vc));
            e = _mm512_maskz_mov_ps(tail, e);
            _mm512_mask_storeu_ps(s + full, tail, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        alpha[r] = exp2f((m[r] - m_new) * c);
        l[r] = l[r] * alpha[r] + _mm512_reduce_add_ps(vsum);
        m[r] = m_new;
    }
}

AVX512 void softmax_probs_avx512(float *S, int rows, int cols, int ld, float c, const float *l2) {
    const __m512 vc = _mm512_set1_ps(c);
    int full = cols & ~15;
    __mmask16 tail = (__mmask16)((1u << (cols & 15)) - 1u);
    for (int r = 0; r < rows; r++) {
        float *s = S + (size_t)r * ld;
        if (l2[r] == -INFINITY) {
            memset(s, 0, sizeof(float) * (size_t)cols);
            continue;
        }
        __m512 vl = _mm512_set1_ps(l2[r]);
        for (int j = 0; j < full; j += 16)
            _mm512_storeu_ps(s + j, exp2_ps(_mm512_fmsub_ps(_mm512_loadu_ps(s + j), vc, vl)));
        if (tail)
            _mm512_mask_storeu_ps(s + full, tail, exp2_ps(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(tail, s + full), vc, vl)));
    }
}
