/* naive.h — the naive kernel on arbitrary pieces (global positions through spans); the
 * exactness task calls it in float64 as the reference. */
#pragma once
#include "core/problem.h"

/* Q (B,H,n_q,d), K/V (B,H_kv,n_k,d), O (B,H,n_q,d), LSE (B,H,n_q) in p->dtype. */
int naive_attend(const attn_problem_t *p, int threads, attn_span_t qs, int64_t n_q, attn_span_t ks, int64_t n_k,
                 const attn_io_t *io, attn_err_t *err);
/* The same kernel on m chosen query rows of the whole problem p (its K/V whole, all n_k keys):
 * row r has global position pos[r]; q holds those rows only, (B,H,m,d), and O (B,H,m,d),
 * LSE (B,H,m) are written for them. Each row comes out bit for bit as naive_attend computes it;
 * scores are held for a bounded chunk of rows at a time (tasks/reference.h: the sampled
 * float64 reference). */
int naive_attend_rows(const attn_problem_t *p, int threads, const int64_t *pos, int64_t m, const attn_io_t *io,
                      attn_err_t *err);
