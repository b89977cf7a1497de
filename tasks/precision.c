/* precision.c — `--task precision`: each backend's error against the float64 reference as P,
 * n, dtype and merge dtype vary (issue 20). Distributed backends (those with forward_rank) run
 * at every P of --precision-ranks, single-rank ones once at P = 1 (the single-device baseline);
 * after a backend's sweep one more record carries the least-squares slope of its error vs
 * log2 P. Metrics, fit and gate: docs/precision.md. */
#include <math.h>
#include <string.h>

#include "core/backend.h"
#include "core/tensors.h"
#include "tasks/reference.h"
#include "tasks/task.h"
#include "tasks/tolerance.h"

/* What one backend's sweep over P gave, for the fit. */
typedef struct {
    int n;
    double log2p[OPTS_MAX_LIST], rel_l2[OPTS_MAX_LIST], max_abs[OPTS_MAX_LIST];
    int ranks[OPTS_MAX_LIST];
} sweep_t;

/* Least-squares slope of y against x over n points (n ≥ 2, x not all equal). */
static double ls_slope(const double *x, const double *y, int n) {
    double mx = 0, my = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) {
        mx += x[i] / n;
        my += y[i] / n;
    }
    for (int i = 0; i < n; i++) {
        sxx += (x[i] - mx) * (x[i] - mx);
        sxy += (x[i] - mx) * (y[i] - my);
    }
    return sxx > 0 ? sxy / sxx : NAN;
}

/* The record of the fit: slope of rel_l2 and max_abs per doubling of P, the slope relative to
 * the error at the smallest P, and the error at the largest P over that at the smallest. */
static void record_slope(attn_run_t *run, const attn_opts_t *o, const attn_backend_t *be, const attn_problem_t *p,
                         const attn_exec_t *x, const sweep_t *s) {
    attn_exec_t xl = *x;
    xl.ranks = s->n ? s->ranks[s->n - 1] : x->ranks;
    attn_record_t *r = task_record(run, o, "precision", be->name, p, &xl);
    if (!r)
        return;
    record_extra_str(r, "fit", "slope_vs_log2p");
    if (s->n < 2 || s->log2p[0] == s->log2p[s->n - 1]) {
        record_set_status(r, REC_SKIPPED, "no slope: %d measured P value(s) (needs two distinct P)", s->n);
        return;
    }
    double slope = ls_slope(s->log2p, s->rel_l2, s->n);
    record_extra_num(r, "p_min", s->ranks[0]);
    record_extra_num(r, "p_max", s->ranks[s->n - 1]);
    record_metric(r, "rel_l2_slope", slope, "1/log2P");
    record_metric(r, "max_abs_slope", ls_slope(s->log2p, s->max_abs, s->n), "1/log2P");
    record_metric(r, "rel_l2_slope_rel", s->rel_l2[0] > 0 ? slope / s->rel_l2[0] : NAN, "1/log2P");
    record_metric(r, "rel_l2_ratio_pmax", s->rel_l2[0] > 0 ? s->rel_l2[s->n - 1] / s->rel_l2[0] : NAN, "1");
    record_metric(r, "points", s->n, "1");
}

typedef struct {
    const attn_reference_t *ref;
    const attn_errors_t *naive32;
    double o_max, lse_max;
    const attn_io_t *in; /* f32 inputs (bf16 and f16 host arrays hold f32 too) */
    attn_tensors_t *out;
} case_ctx_t;

/* One backend at one P: its record, with errors and (f32 compute and merge) the f32 tolerance. */
static int run_point(attn_run_t *run, const attn_opts_t *o, const attn_backend_t *be, const attn_problem_t *p,
                     const attn_exec_t *x, const case_ctx_t *c, sweep_t *s, attn_err_t *err) {
    attn_record_t *r = task_record(run, o, "precision", be->name, p, x);
    if (!r)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory adding a record");
    reference_record(r, c->ref);
    char reason[512];
    if (!backend_supports(be, p, x, reason, sizeof reason)) {
        record_set_status(r, REC_SKIPPED, "%s", reason);
        return ATTN_OK;
    }
    memset(c->out->o, 0, problem_numel_q(p) * dtype_size(p->dtype));
    memset(c->out->lse, 0, problem_numel_lse(p) * dtype_size(p->dtype));
    attn_io_t io = *c->in;
    io.o = c->out->o;
    io.lse = c->out->lse;
    attn_err_t berr = {0};
    attn_errors_t e;
    double t;
    if (reference_run_forward(c->ref, be, p, x, &io, &e, &t, &berr) != ATTN_OK) {
        record_set_status(r, REC_ERROR, "%s", berr.msg);
        return ATTN_OK;
    }
    reference_record_errors(r, &e);
    record_metric(r, "ref_rows", (double)c->ref->m, "1");
    record_metric(r, "naive_f32_rel_l2", c->naive32->rel_l2, "1");
    record_metric(r, "time_s", t, "s");
    /* The f32 gate applies where the suite's own precision is used; a bf16 merge or bf16
     * compute is measured, not gated (a finding). */
    if (p->dtype == ATTN_F32 && x->merge == ATTN_MERGE_F32) {
        attn_errors_t bound = tolerance_bound(be->name, p->dtype, c->naive32, c->o_max, c->lse_max, p->n_k);
        record_metric(r, "tol_rel_l2", bound.rel_l2, "1");
        if (!errors_within(&e, &bound))
            record_set_status(r, REC_FAIL, "error above the f32 tolerance (rel_l2 %.3g > %.3g or max_abs %.3g > %.3g "
                              "or lse %.3g > %.3g)", e.rel_l2, bound.rel_l2, e.max_abs, bound.max_abs, e.lse_max,
                              bound.lse_max);
    }
    int k = s->n++;
    s->ranks[k] = exec_ranks(x);
    s->log2p[k] = log2((double)exec_ranks(x));
    s->rel_l2[k] = e.rel_l2;
    s->max_abs[k] = e.max_abs;
    return ATTN_OK;
}

static int precision_case(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, int index, int count,
                          attn_run_t *run, attn_err_t *err) {
    attn_tensors_t in = {0}, out = {0};
    attn_reference_t ref = {0};
    attn_errors_t naive32 = {0};
    int rc = reference_prepare(p, x, o->seed, &in, &ref, &naive32, err);
    if (rc == ATTN_OK && p->dtype != ATTN_F32 && !dtype_is_16bit(p->dtype))
        rc = attn_fail(err, ATTN_EUSAGE, "--task precision measures f32, bf16 and f16 backends (got --dtype %s)",
                       dtype_name(p->dtype));
    if (rc == ATTN_OK)
        rc = tensors_alloc(p, 0, o->seed, &out, err);
    case_ctx_t c = {.ref = &ref, .naive32 = &naive32, .in = &in.io, .out = &out};
    if (rc == ATTN_OK) {
        c.o_max = reference_o_max(&ref, p);
        c.lse_max = reference_lse_max(&ref, p);
    }
    for (int b = 0; b < o->n_backends && rc == ATTN_OK; b++) {
        const attn_backend_t *be = registry_find(o->backends[b]);
        int dist = be->forward_rank != NULL, n_p = dist ? o->n_precision_ranks : 1;
        sweep_t s = {0};
        for (int i = 0; i < n_p && rc == ATTN_OK; i++) {
            attn_exec_t xp = *x;
            xp.ranks = dist ? (int)o->precision_ranks[i] : 1;
            task_progress(index + 1, count, "precision %s P=%d n_k=%lld n_q=%lld mask=%s merge=%s", be->name,
                          exec_ranks(&xp), (long long)p->n_k, (long long)p->n_q, mask_name(p->mask),
                          x->merge == ATTN_MERGE_BF16 ? "bf16" : "f32");
            rc = run_point(run, o, be, p, &xp, &c, &s, err);
        }
        if (rc == ATTN_OK && dist)
            record_slope(run, o, be, p, x, &s);
    }
    tensors_free(&in);
    tensors_free(&out);
    reference_free(&ref);
    return rc;
}

int task_precision(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    return task_for_each_case(o, run, precision_case, err);
}
