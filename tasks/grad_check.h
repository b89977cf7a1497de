/* grad_check.h — the backward's exactness machinery, shared by `exactness --direction backward`
 * and the tests: seeded inputs and dO, the float64 gradient reference (naive forward then naive
 * backward in float64), a backend's gradients from its own forward, their errors and the bound
 * they must stay within. Derivation of the bound: docs/backward.md. */
#pragma once
#include "core/backend.h"
#include "core/tensors.h"
#include "tasks/tolerance.h"

/* Errors of dQ, dK, dV (lse_max unused: 0). */
typedef struct {
    attn_errors_t dq, dk, dv;
} attn_grad_errors_t;

typedef struct {
    attn_problem_t p;          /* the case, dtype f32 */
    attn_tensors_t in;         /* its seeded float32 Q, K, V (O, LSE: scratch) */
    float *d_o;                /* seeded float32 dO (B,H,n_q,d) */
    double *dq, *dk, *dv;      /* the float64 reference gradients */
    /* per gradient: ‖ref‖₂, and ‖m‖₂ and max m of its error scale m (naive_backward_magnitude) */
    double ref_l2[3], mag_l2[3], mag_max[3];
    attn_grad_errors_t naive32; /* naive float32's own errors (forward and backward in float32) */
} grad_reference_t;

/* 1 when the float64 gradient reference of p fits in memory (no sampled form exists: every
 * query row feeds dK and dV); else 0 and the reason. */
int grad_reference_fits(const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len);
/* Builds the reference and the naive float32 baseline of p (any dtype: run as f32). */
int grad_reference_prepare(const attn_problem_t *p, const attn_exec_t *x, uint64_t seed, grad_reference_t *g,
                           attn_err_t *err);
void grad_reference_free(grad_reference_t *g);

/* Runs be's forward then its backward on g's inputs (float32) into dq, dk, dv (problem sizes);
 * the two wall times come back in fwd_s and bwd_s (either may be NULL); dist, when non-NULL,
 * receives the backward's per-rank figures. */
int grad_run_backend(const attn_backend_t *be, const attn_exec_t *x, const grad_reference_t *g, float *dq, float *dk,
                     float *dv, double *fwd_s, double *bwd_s, attn_dist_stats_t *dist, attn_err_t *err);
attn_grad_errors_t grad_errors(const grad_reference_t *g, const float *dq, const float *dk, const float *dv);
/* The bound of each gradient's errors for `backend` (docs/backward.md). */
attn_grad_errors_t grad_tolerance(const char *backend, const grad_reference_t *g);
int grad_within(const attn_grad_errors_t *e, const attn_grad_errors_t *bound);

/* bf16 cases (the GPU backends): the error of a naive bf16 backward — plain loops in float64
 * that round what the tensor-core kernels round: Q, K, V, dO to bf16, P before P·V in the
 * forward and before Pᵀ·dO, dS before dS·K and dSᵀ·Q — on g's inputs, against the reference. */
int grad_bf16_baseline(const grad_reference_t *g, attn_grad_errors_t *out, attn_err_t *err);
/* The same for either 16-bit type t (ATTN_BF16 or ATTN_F16: inputs, P and dS rounded to t), so
 * that the f16 bound is the bf16 rule at f16's unit roundoff 2⁻¹¹ (as the forward's f16 rule). */
int grad_baseline16(const grad_reference_t *g, attn_dtype_t t, attn_grad_errors_t *out, attn_err_t *err);
/* The forward's tiled bf16 rule carried to the gradients (either 16-bit type, given that type's
 * baseline): 2 × that baseline, plus a floor of 4
 * float32 ulps of the error scale (docs/backward.md, GPU section). */
attn_grad_errors_t grad_tolerance_bf16(const grad_reference_t *g, const attn_grad_errors_t *base);
