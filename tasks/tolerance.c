/* tolerance.c — the tolerance table and error measures (see tolerance.h): a backend passes within
 * a small multiple of the same-precision naive baseline's own error plus a floor of a few ulps.
 * The derivation of every number: docs/tolerances.md. The numbers below are set from that
 * reasoning, not from observed failures, and must not be raised to make a case pass. */
#include "tasks/tolerance.h"

#include <float.h>
#include <math.h>
#include <string.h>

typedef struct {
    const char *backend; /* "*" matches any backend not listed before it */
    attn_dtype_t dtype;
    double naive_factor; /* multiple of naive-f32's own error in the same case */
    double floor_ulps;   /* plus this many epsilons, times the reference magnitude */
    int sqrt_n_growth;   /* floor is max(floor_ulps, √n_k): sequential sums over n_k terms */
    double eps;          /* the epsilon of floor_ulps */
} tol_rule_t;

#define BF16_U 0.00390625   /* 2⁻⁸, unit roundoff of bfloat16 (8 significant bits) */
#define F16_U 0.00048828125 /* 2⁻¹¹, unit roundoff of IEEE binary16 (11 significant bits) */

static const tol_rule_t rules[] = {
    {"naive", ATTN_F32, 0.0, 64.0, 1, FLT_EPSILON},
    {"*", ATTN_F32, 4.0, 4.0, 0, FLT_EPSILON},
    {"*", ATTN_F64, 0.0, 1024.0, 1, DBL_EPSILON}, /* float64 backends: a priori, 2e-13 relative */
    {"naive_cuda", ATTN_BF16, 0.0, 16.0, 0, BF16_U},
    {"*", ATTN_BF16, 2.0, 4.0, 0, FLT_EPSILON},
    {"naive_cuda", ATTN_F16, 0.0, 16.0, 0, F16_U}, /* the bf16 rules one unit roundoff down */
    {"*", ATTN_F16, 2.0, 4.0, 0, FLT_EPSILON},
};

static const tol_rule_t *rule_for(const char *backend, attn_dtype_t dtype) {
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (rules[i].dtype == dtype && (strcmp(rules[i].backend, "*") == 0 || strcmp(rules[i].backend, backend) == 0))
            return &rules[i];
    return &rules[sizeof rules / sizeof rules[0] - 1];
}

attn_errors_t tolerance_bound(const char *backend, attn_dtype_t dtype, const attn_errors_t *naive32,
                              double o_ref_max, double lse_ref_max, int64_t n_k) {
    const tol_rule_t *r = rule_for(backend, dtype);
    double eps = r->eps;
    double ulps = r->sqrt_n_growth ? fmax(r->floor_ulps, sqrt((double)n_k)) : r->floor_ulps;
    double floor_eps = ulps * eps;
    return (attn_errors_t){
        .max_abs = r->naive_factor * naive32->max_abs + floor_eps * fmax(o_ref_max, 1e-30),
        .rel_l2 = r->naive_factor * naive32->rel_l2 + floor_eps,
        .lse_max = r->naive_factor * naive32->lse_max + floor_eps * fmax(lse_ref_max, 1.0),
    };
}

double tolerance_model_rel_l2(attn_dtype_t dtype, double naive_model_rel_l2) {
    return rule_for("*", dtype)->naive_factor * naive_model_rel_l2;
}

int errors_within(const attn_errors_t *e, const attn_errors_t *b) {
    return e->max_abs <= b->max_abs && e->rel_l2 <= b->rel_l2 && e->lse_max <= b->lse_max;
}

/* bf16 and f16 host arrays hold float32 (problem.h). */
static double elem(const void *x, attn_dtype_t t, size_t i) {
    return t == ATTN_F64 ? ((const double *)x)[i] : (double)((const float *)x)[i];
}

attn_errors_t errors_measure(const void *o, const void *lse, attn_dtype_t dtype, const double *o_ref,
                             const double *lse_ref, size_t n_o, size_t n_lse) {
    attn_errors_t e = {0};
    double num = 0, den = 0;
    for (size_t i = 0; i < n_o; i++) {
        double x = elem(o, dtype, i), diff = fabs(x - o_ref[i]);
        if (!isfinite(x))
            diff = INFINITY;
        e.max_abs = fmax(e.max_abs, diff);
        num += diff * diff;
        den += o_ref[i] * o_ref[i];
    }
    e.rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
    for (size_t i = 0; i < n_lse; i++) {
        double x = elem(lse, dtype, i), diff = fabs(x - lse_ref[i]);
        if (isinf(lse_ref[i]) && x == lse_ref[i])
            diff = 0; /* both −∞: a row with no visible key */
        else if (!isfinite(x) || !isfinite(diff))
            diff = INFINITY;
        e.lse_max = fmax(e.lse_max, diff);
    }
    return e;
}
