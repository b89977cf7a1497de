/* softmax.h — the online-softmax step between a tile's two GEMMs (FlashAttention's inner loop).
 * Scores live in log2 units: with c = scale·log2(e), a row's weights are exp2(S·c − m), so the
 * exponential is one exp2 per score and the max is taken on raw scores (c > 0). */
#pragma once

/* S (rows × cols, leading dimension ld) holds raw Q·Kᵀ dot products, masked entries −∞.
 * Per row r: m_new = max(m[r], max_j S[r][j]·c); S[r][j] ← exp2(S[r][j]·c − m_new);
 * alpha[r] = exp2(m[r] − m_new); l[r] ← l[r]·alpha[r] + Σ_j S[r][j]; m[r] ← m_new.
 * A row with m_new = −∞ (nothing visible yet) gets S = 0, alpha = 1 and keeps l = 0. */
typedef void (*softmax_tile_fn)(float *S, int rows, int cols, int ld, float c, float *m, float *l, float *alpha);

void softmax_tile_generic(float *S, int rows, int cols, int ld, float c, float *m, float *l, float *alpha);
void softmax_tile_avx512(float *S, int rows, int cols, int ld, float c, float *m, float *l, float *alpha);

/* The AVX-512 kernel when this CPU has AVX-512F (checked at run time), else the generic one.
 * ATTN_SIMD=generic in the environment forces the portable path (used by the tests). */
softmax_tile_fn softmax_tile_select(void);
const char *softmax_tile_name(softmax_tile_fn f);
