/* rng.h — counter-based inputs: every element is a pure function of (seed, tensor, global
 * index), so any rank or test can regenerate any slice of Q, K or V without gathering.
 * Values are uniform on [−√3, √3) (unit variance), rounded to float32 so that the float32
 * backends and the float64 reference see exactly the same numbers. */
#pragma once
#include "core/problem.h"

enum { RNG_TENSOR_Q = 1, RNG_TENSOR_K = 2, RNG_TENSOR_V = 3 };

float rng_value(uint64_t seed, uint32_t tensor, uint64_t index);
/* The same mixing, all 64 bits: draws for the needle task (positions, keys, values). */
uint64_t rng_u64(uint64_t seed, uint32_t stream, uint64_t index);
enum { RNG_STREAM_NEEDLE_KEYS = 2001, RNG_STREAM_NEEDLE_VALUES = 2002, RNG_STREAM_NEEDLE_POS = 2003,
       RNG_STREAM_NEEDLE_DISTRACTORS = 2004 /* needle distractors: positions, keys, values */ };

/* Fills dst (outer, rows, d) where row r of outer block o is global row rows.start + stride·r of
 * a (outer, n_total, d) tensor: dst[o][r][c] = rng_value(seed, tensor, (o·n_total + pos)·d + c).
 * dtype selects float or double storage of the same float32-rounded values. */
void rng_fill(void *dst, attn_dtype_t dtype, uint64_t seed, uint32_t tensor, int64_t outer, int64_t rows,
              attn_span_t pos, int64_t n_total, int64_t d);

/* Q, K, V of a whole problem at its default spans (queries at the end of the sequence). */
void rng_fill_problem(const attn_problem_t *p, uint64_t seed, void *q, void *k, void *v);
