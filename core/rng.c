/* rng.c — splitmix64-style mixing of (seed, tensor, index) into a float (see rng.h), so every
 * element is a pure function of its global index. */
#include "core/rng.h"

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t rng_u64(uint64_t seed, uint32_t stream, uint64_t index) {
    uint64_t h = mix64(seed * 0x9e3779b97f4a7c15ULL + stream);
    return mix64(h ^ (index + 0x632be59bd9b4e019ULL));
}

float rng_value(uint64_t seed, uint32_t tensor, uint64_t index) {
    uint64_t h = rng_u64(seed, tensor, index);
    /* 24 random bits → exact float in [0, 1), then to [−√3, √3). */
    float u = (float)(h >> 40) * (1.0f / 16777216.0f);
    return (2.0f * u - 1.0f) * 1.7320508f;
}

void rng_fill(void *dst, attn_dtype_t dtype, uint64_t seed, uint32_t tensor, int64_t outer, int64_t rows,
              attn_span_t pos, int64_t n_total, int64_t d) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t r = 0; r < rows; r++) {
            uint64_t base = ((uint64_t)(o * n_total + pos.start + pos.stride * r)) * (uint64_t)d;
            size_t at = (size_t)((o * rows + r) * d);
            for (int64_t c = 0; c < d; c++) {
                float x = rng_value(seed, tensor, base + (uint64_t)c);
                if (dtype == ATTN_F64)
                    ((double *)dst)[at + c] = x;
                else
                    ((float *)dst)[at + c] = x;
            }
        }
}

void rng_fill_problem(const attn_problem_t *p, uint64_t seed, void *q, void *k, void *v) {
    int64_t d = p->head_dim;
    rng_fill(q, p->dtype, seed, RNG_TENSOR_Q, p->batch * p->heads, p->n_q, problem_q_span(p), p->n_k, d);
    rng_fill(k, p->dtype, seed, RNG_TENSOR_K, p->batch * p->kv_heads, p->n_k, problem_k_span(p), p->n_k, d);
    rng_fill(v, p->dtype, seed, RNG_TENSOR_V, p->batch * p->kv_heads, p->n_k, problem_k_span(p), p->n_k, d);
}
