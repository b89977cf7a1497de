/* naive.h — the naive kernel on arbitrary pieces (global positions through spans); the
 * exactness task calls it in float64 as the reference. */
#pragma once
#include "core/problem.h"

/* Q (B,H,n_q,d), K/V (B,H_kv,n_k,d), O (B,H,n_q,d), LSE (B,H,n_q) in p->dtype. */
int naive_attend(const attn_problem_t *p, int threads, attn_span_t qs, int64_t n_q, attn_span_t ks, int64_t n_k,
                 const attn_io_t *io, attn_err_t *err);
