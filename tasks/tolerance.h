/* tolerance.h — how close to the float64 reference a backend must be, in one table
 * (tolerance.c), and the error measures it is applied to. Derivation: docs/tolerances.md. */
#pragma once
#include "core/problem.h"

/* Errors of one output against the float64 reference. */
typedef struct {
    double max_abs;    /* max |O − O_ref| */
    double rel_l2;     /* ‖O − O_ref‖₂ / ‖O_ref‖₂ */
    double lse_max;    /* max |LSE − LSE_ref| over rows */
} attn_errors_t;

/* O/LSE of n_o and n_lse elements (dtype) against float64 references. Non-finite output counts
 * as an infinite error. */
attn_errors_t errors_measure(const void *o, const void *lse, attn_dtype_t dtype, const double *o_ref,
                             const double *lse_ref, size_t n_o, size_t n_lse);

/* The bound each error must stay within for `backend` at `dtype`, given the same-precision
 * naive baseline's own errors in the same case (naive f32 on the CPU for f32; naive_cuda in
 * bf16 / f16 for bf16 / f16; unused for f64) and the reference's magnitudes. */
attn_errors_t tolerance_bound(const char *backend, attn_dtype_t dtype, const attn_errors_t *naive32,
                              double o_ref_max, double lse_ref_max, int64_t n_k);
int errors_within(const attn_errors_t *e, const attn_errors_t *bound);
/* The shared model's bound on its logits' relative L2 error against the float64 reference model:
 * the attention rule's factor for `dtype` (float32: 4, bf16 and f16: 2) times the error of the same
 * model with the same-precision naive attention (naive float32; naive_cuda in bf16 / f16).
 * docs/tolerances.md. */
double tolerance_model_rel_l2(attn_dtype_t dtype, double naive_model_rel_l2);
