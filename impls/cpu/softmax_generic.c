/* softmax_generic.c — portable online-softmax step (libm exp2f); the fallback when the CPU
 * lacks AVX-512, and the yardstick the AVX-512 kernel is tested against. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "impls/cpu/softmax.h"

void softmax_tile_generic(float *S, int rows, int cols, int ld, float c, float *m, float *l, float *alpha) {
    for (int r = 0; r < rows; r++) {
        float *s = S + (size_t)r * ld;
        float mx = -INFINITY;
        for (int j = 0; j < cols; j++)
            mx = s[j] > mx ? s[j] : mx;
        float m_new = fmaxf(m[r], mx);
        if (m_new == -INFINITY) {
            softmax_row_nothing(s, cols, &l[r]);
            alpha[r] = 1.0f;
            continue;
        }
        float sum = 0.0f;
        for (int j = 0; j < cols; j++) {
            s[j] = exp2f((s[j] - m_new) * c);
            sum += s[j];
        }
        alpha[r] = exp2f((m[r] - m_new) * c);
        l[r] = l[r] * alpha[r] + sum;
        m[r] = m_new;
    }
}

int cpu_simd_avx512(void) {
    const char *force = getenv("ATTN_SIMD");
    if (force && strcmp(force, "generic") == 0)
        return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
}

softmax_tile_fn softmax_tile_select(void) { return cpu_simd_avx512() ? softmax_tile_avx512 : softmax_tile_generic; }

const char *softmax_tile_name(softmax_tile_fn f) { return f == softmax_tile_avx512 ? "avx512" : "generic"; }

void softmax_probs_generic(float *S, int rows, int cols, int ld, float c, const float *l2) {
    for (int r = 0; r < rows; r++) {
        float *s = S + (size_t)r * ld;
        if (l2[r] == -INFINITY) {
            memset(s, 0, sizeof(float) * (size_t)cols);
            continue;
        }
        for (int j = 0; j < cols; j++)
            s[j] = exp2f(fmaf(s[j], c, -l2[r]));
    }
}

softmax_probs_fn softmax_probs_select(void) {
    return cpu_simd_avx512() ? softmax_probs_avx512 : softmax_probs_generic;
}
