/* softmax.h — the online-softmax step between a tile's two GEMMs (FlashAttention's inner loop).
 * With c = scale·log2(e) a row's weights are exp2((S − m)·c): one exp2 per score. The running
 * max m is a raw score, so S − m is exactly 0 at the max however large the scores are (an
 * m rounded after scaling can be hundreds off at |S·c| ~ 1e10 and overflow exp2). Non-finite
 * scores follow docs/nonfinite.md: a NaN score makes the row's l NaN. */
#pragma once

/* S (rows × cols, leading dimension ld) holds raw Q·Kᵀ dot products, masked entries −∞.
 * Per row r: m_new = max(m[r], max_j S[r][j]); S[r][j] ← exp2((S[r][j] − m_new)·c);
 * alpha[r] = exp2((m[r] − m_new)·c); l[r] ← l[r]·alpha[r] + Σ_j S[r][j]; m[r] ← m_new.
 * A row with m_new = −∞ (no finite score yet) gets S = 0, alpha = 1 and keeps l, unless one of
 * its scores is NaN: then l[r] becomes NaN (a NaN never counts as "nothing visible"). */
/* The cold path of a row with no finite score in a tile: zero its weights, and poison l with a
 * NaN score if there is one (NaN is dropped by the max, so it is looked for here). */
static inline void softmax_row_nothing(float *s, int cols, float *l) {
    for (int j = 0; j < cols; j++) {
        if (s[j] != s[j])
            *l = s[j];
        s[j] = 0.0f;
    }
}

typedef void (*softmax_tile_fn)(float *S, int rows, int cols, int ld, float c, float *m, float *l, float *alpha);

void softmax_tile_generic(float *S, int rows, int cols, int ld, float c, float *m, float *l, float *alpha);
void softmax_tile_avx512(float *S, int rows, int cols, int ld, float c, float *m, float *l, float *alpha);

/* The one instruction-set rule of the CPU kernels (softmax, probabilities, the fused tile): 1
 * when this CPU has AVX-512F (checked at run time) and ATTN_SIMD=generic is not in the
 * environment (it forces the portable paths; used by the tests). */
int cpu_simd_avx512(void);

/* The AVX-512 kernel when cpu_simd_avx512(), else the generic one. */
softmax_tile_fn softmax_tile_select(void);
const char *softmax_tile_name(softmax_tile_fn f);

/* The backward's recomputed probabilities (tile_grad.c): S[r][j] ← exp2(S[r][j]·c − l2[r]) with
 * l2[r] = LSE[r]·log2(e), one fused multiply-subtract per score; −∞ scores (masked) give 0. A row
 * with l2[r] = −∞ (it sees no key) gets all zeros. */
typedef void (*softmax_probs_fn)(float *S, int rows, int cols, int ld, float c, const float *l2);
void softmax_probs_generic(float *S, int rows, int cols, int ld, float c, const float *l2);
void softmax_probs_avx512(float *S, int rows, int cols, int ld, float c, const float *l2);
softmax_probs_fn softmax_probs_select(void);
