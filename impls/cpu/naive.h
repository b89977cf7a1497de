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

/* naive_grad.c: the naive backward pass (backend op) and its workspace; in float64 it is the
 * gradient reference. */
struct attn_backend;
int naive_backward(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x,
                   const attn_grad_io_t *g, attn_err_t *err);
size_t naive_backward_workspace(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x);
/* The error scale of each gradient (float64, p->dtype = ATTN_F64): the same formulas with every
 * product in absolute value and dP − D as |dP| + |D|, written to g->dq/dk/dv. The tolerance of a
 * gradient is a multiple of ε times this (docs/backward.md), so a gradient that cancels to
 * nearly 0 is not held to a relative error its inputs cannot give. */
int naive_backward_magnitude(const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g, attn_err_t *err);
