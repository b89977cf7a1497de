/* exactness.c — every backend against the float64 naive reference on seeded inputs. The
 * reference (whole, or a seeded sample of rows where the whole does not fit: reference.h) and the
 * same-precision naive baseline on the same rows (whose error sets the tolerance, tolerance.c)
 * are computed once per case and shared by all backends of the case: naive f32 on the CPU for
 * f32 cases, naive_cuda in bf16 for bf16 cases. An approximate backend gets its error and key
 * fraction per budget (tasks/approx.h), status approximate, no verdict. */
#include "core/backend.h"
#include "impls/cpu/naive.h"
#include "tasks/task.h"
#include "core/tensors.h"
#include "tasks/approx.h"
#include "tasks/reference.h"
#include "tasks/tolerance.h"
#include "tasks/grad_check.h"

static void record_errors(attn_record_t *r, const attn_errors_t *e, const attn_errors_t *bound) {
    reference_record_errors(r, e);
    record_metric(r, "tol_rel_l2", bound->rel_l2, "1");
    record_metric(r, "tol_max_abs", bound->max_abs, "1");
    record_metric(r, "tol_lse", bound->lse_max, "1");
}

/* The bf16 / f16 baseline: naive_cuda in the case's dtype on its inputs, against the reference.
 * Returns REC_PASS with *out filled, or the status (skipped: no such backend or no device;
 * error: it failed) and the reason every record of the case then gets. */
static attn_status_t half_baseline(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *in,
                                   const attn_reference_t *ref, attn_errors_t *out, char *reason, size_t len) {
    const attn_backend_t *nb = registry_find("naive_cuda");
    char why[512];
    const char *dt = dtype_name(p->dtype);
    if (!nb) {
        snprintf(reason, len, "no %s baseline: this build has no naive_cuda (CUDA was not built)", dt);
        return REC_SKIPPED;
    }
    if (!backend_supports(nb, p, x, why, sizeof why)) {
        snprintf(reason, len, "no %s baseline: %.400s", dt, why);
        return REC_SKIPPED;
    }
    attn_tensors_t t = {0};
    attn_err_t berr = {0};
    if (tensors_alloc(p, 0, o->seed, &t, &berr) != ATTN_OK) {
        snprintf(reason, len, "%s baseline: %.400s", dt, berr.msg);
        return REC_ERROR;
    }
    attn_io_t io = *in;
    io.o = t.o;
    io.lse = t.lse;
    attn_status_t st = REC_PASS;
    if (nb->forward(nb, p, x, &io, &berr) != ATTN_OK ||
        reference_errors(ref, p, t.o, t.lse, p->dtype, out, &berr) != ATTN_OK) {
        snprintf(reason, len, "%s baseline naive_cuda failed: %.400s", dt, berr.msg);
        st = REC_ERROR;
    }
    tensors_free(&t);
    return st;
}

/* What the backends of one case share: the inputs, the reference, the baseline. */
typedef struct {
    attn_tensors_t *in64, *in32;
    attn_reference_t *ref;
    attn_errors_t naive32, base;
    attn_status_t base_status;
    const char *base_reason;
    double o_max, lse_max;
} exact_ctx_t;

/* One backend at one exec: an exact backend passes or fails against its tolerance; an
 * approximate one records its error and the keys it visited, status approximate. */
static int exactness_backend(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x,
                             const attn_backend_t *be, int index, int count, attn_run_t *run, const exact_ctx_t *c,
                             attn_err_t *err) {
    attn_record_t *r;
    int runs = task_start_backend(run, o, "exactness", be, p, x, index, count, &r);
    approx_record_config(r, be, x);
    reference_record(r, c->ref);
    if (!runs)
        return ATTN_OK;
    if (be == registry_find("naive") && p->dtype == ATTN_F64) {
        record_set_status(r, REC_SKIPPED, "naive in float64 is the reference itself");
        return ATTN_OK;
    }
    if (c->base_status != REC_PASS) {
        record_set_status(r, c->base_status, "%s", c->base_reason);
        return ATTN_OK;
    }
    attn_tensors_t out = {0};
    ATTN_TRY(tensors_alloc(p, 0, o->seed, &out, err));
    attn_io_t io = p->dtype == ATTN_F64 ? c->in64->io : c->in32->io;
    io.o = out.o;
    io.lse = out.lse;
    double visited = 0;
    io.keys_visited = be->approximate ? &visited : NULL;
    attn_err_t berr = {0};
    attn_errors_t e;
    double t;
    if (reference_run_forward(c->ref, be, p, x, &io, &e, &t, &berr) != ATTN_OK) {
        record_set_status(r, REC_ERROR, "%s", berr.msg);
    } else if (be->approximate) { /* what it loses, not a verdict: docs/approximate.md */
        reference_record_errors(r, &e);
        record_metric(r, "naive_f32_rel_l2", c->naive32.rel_l2, "1");
        approx_record_visits(r, p, visited);
        record_metric(r, "time_s", t, "s");
        record_set_status(r, REC_APPROXIMATE, NULL);
    } else {
        attn_errors_t bound = tolerance_bound(be->name, p->dtype, &c->base, c->o_max, c->lse_max, p->n_k);
        record_errors(r, &e, &bound);
        record_metric(r, "naive_f32_rel_l2", c->naive32.rel_l2, "1");
        if (dtype_is_16bit(p->dtype))
            record_metric(r, p->dtype == ATTN_F16 ? "naive_f16_rel_l2" : "naive_bf16_rel_l2", c->base.rel_l2, "1");
        record_metric(r, "time_s", t, "s");
        if (!errors_within(&e, &bound))
            record_set_status(r, REC_FAIL, "error above tolerance (rel_l2 %.3g > %.3g or max_abs %.3g > %.3g or lse %.3g > %.3g)",
                              e.rel_l2, bound.rel_l2, e.max_abs, bound.max_abs, e.lse_max, bound.lse_max);
    }
    tensors_free(&out);
    return ATTN_OK;
}

static int exactness_case(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, int index, int count,
                          attn_run_t *run, attn_err_t *err) {
    attn_problem_t p64 = *p;
    p64.dtype = ATTN_F64;
    char reason[512] = "";
    attn_tensors_t in64 = {0}, in32 = {0};
    attn_reference_t ref = {0};
    attn_errors_t naive32 = {0};
    /* the whole reference where it fits, else a seeded sample of rows (reference.h) */
    int rc = reference_prepare(p, x, o->seed, &in32, &ref, &naive32, err);
    if (rc == ATTN_OK && p->dtype == ATTN_F64)
        rc = tensors_alloc(&p64, 1, o->seed, &in64, err);
    if (rc != ATTN_OK) {
        tensors_free(&in32);
        reference_free(&ref);
        return rc;
    }
    /* base: the same-precision baseline the tolerance scales */
    exact_ctx_t ctx = {.in64 = &in64, .in32 = &in32, .ref = &ref, .naive32 = naive32, .base = naive32,
                       .base_status = REC_PASS, .base_reason = reason,
                       .o_max = reference_o_max(&ref, p), .lse_max = reference_lse_max(&ref, p)};
    if (dtype_is_16bit(p->dtype))
        ctx.base_status = half_baseline(o, p, x, &in32.io, &ref, &ctx.base, reason, sizeof reason);

    for (int b = 0; b < o->n_backends && rc == ATTN_OK; b++) {
        const attn_backend_t *be = registry_find(o->backends[b]);
        attn_exec_t budgets[OPTS_MAX_LIST];
        int n_budgets = approx_budgets(o, be, x, budgets);
        for (int k = 0; k < n_budgets && rc == ATTN_OK; k++)
            rc = exactness_backend(o, p, &budgets[k], be, index, count, run, &ctx, err);
    }
    tensors_free(&in64);
    tensors_free(&in32);
    reference_free(&ref);
    return rc;
}

/* ---- the backward (--direction backward|both): gradients against float64 (grad_check.h) ---- */

static void record_grad_errors(attn_record_t *r, const attn_grad_errors_t *e, const attn_grad_errors_t *t,
                               const attn_grad_errors_t *n32) {
    const char *names[3] = {"dq", "dk", "dv"};
    const attn_errors_t *es[3] = {&e->dq, &e->dk, &e->dv}, *ts[3] = {&t->dq, &t->dk, &t->dv},
                        *ns[3] = {&n32->dq, &n32->dk, &n32->dv};
    char key[64];
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "%s_rel_l2_err", names[i]);
        record_metric(r, key, es[i]->rel_l2, "1");
        snprintf(key, sizeof key, "%s_max_abs_err", names[i]);
        record_metric(r, key, es[i]->max_abs, "1");
        snprintf(key, sizeof key, "tol_%s_rel_l2", names[i]);
        record_metric(r, key, ts[i]->rel_l2, "1");
        snprintf(key, sizeof key, "tol_%s_max_abs", names[i]);
        record_metric(r, key, ts[i]->max_abs, "1");
        snprintf(key, sizeof key, "naive_f32_%s_rel_l2", names[i]);
        record_metric(r, key, ns[i]->rel_l2, "1");
    }
}

static int exactness_backward_case(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, int index,
                                   int count, attn_run_t *run, attn_err_t *err) {
    char reason[512] = "";
    attn_status_t none = REC_PASS; /* a reason every record of the case gets instead of running */
    if (p->dtype != ATTN_F32 && p->dtype != ATTN_BF16) {
        snprintf(reason, sizeof reason,
                 "the backward is checked in float32 or bf16 (got %s): float64 naive is its reference",
                 dtype_name(p->dtype));
        none = REC_SKIPPED;
    } else if (!grad_reference_fits(p, x, reason, sizeof reason)) {
        none = REC_SKIPPED;
    }
    grad_reference_t g = {0};
    int rc = ATTN_OK;
    attn_grad_errors_t bf16_base = {0}; /* bf16: the baseline its bound is 2× of (grad_check.h) */
    if (none == REC_PASS)
        rc = grad_reference_prepare(p, x, o->seed, &g, err);
    if (none == REC_PASS && rc == ATTN_OK && dtype_is_16bit(p->dtype)) /* bf16 or f16 (grad_check.h) */
        rc = grad_baseline16(&g, p->dtype, &bf16_base, err);
    for (int b = 0; b < o->n_backends && rc == ATTN_OK; b++) {
        const attn_backend_t *be = registry_find(o->backends[b]);
        attn_record_t *r;
        int runs = task_start_backward(run, o, "exactness", be, p, x, index, count, &r);
        if (!runs)
            continue;
        if (none != REC_PASS) {
            record_set_status(r, none, "%s", reason);
            continue;
        }
        size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p);
        float *dq = attn_alloc(nq * sizeof(float) + 1, err, "dQ"), *dk = attn_alloc(nkv * sizeof(float) + 1, err, "dK");
        float *dv = attn_alloc(nkv * sizeof(float) + 1, err, "dV");
        if (!dq || !dk || !dv) {
            attn_free(dq), attn_free(dk), attn_free(dv);
            rc = ATTN_ERUNTIME;
            break;
        }
        attn_err_t berr = {0};
        double fwd_s = 0, bwd_s = 0;
        g.p.dtype = p->dtype; /* the reference's float32 inputs, run as the case's dtype (bf16: host float32) */
        int brc = grad_run_backend(be, x, &g, dq, dk, dv, &fwd_s, &bwd_s, NULL, &berr);
        g.p.dtype = ATTN_F32;
        if (brc != ATTN_OK) {
            record_set_status(r, REC_ERROR, "%s", berr.msg);
        } else {
            attn_grad_errors_t e = grad_errors(&g, dq, dk, dv);
            attn_grad_errors_t t = dtype_is_16bit(p->dtype) ? grad_tolerance_bf16(&g, &bf16_base) : grad_tolerance(be->name, &g);
            record_grad_errors(r, &e, &t, &g.naive32);
            record_metric(r, "time_s", bwd_s, "s");
            if (!grad_within(&e, &t))
                record_set_status(r, REC_FAIL,
                                  "gradient error above tolerance (rel_l2 dq %.3g/%.3g dk %.3g/%.3g dv %.3g/%.3g; "
                                  "max_abs dq %.3g/%.3g dk %.3g/%.3g dv %.3g/%.3g)",
                                  e.dq.rel_l2, t.dq.rel_l2, e.dk.rel_l2, t.dk.rel_l2, e.dv.rel_l2, t.dv.rel_l2,
                                  e.dq.max_abs, t.dq.max_abs, e.dk.max_abs, t.dk.max_abs, e.dv.max_abs, t.dv.max_abs);
        }
        attn_free(dq), attn_free(dk), attn_free(dv);
    }
    grad_reference_free(&g);
    return rc;
}

static int exactness_any_case(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, int index, int count,
                              attn_run_t *run, attn_err_t *err) {
    if (o->direction != ATTN_DIR_BACKWARD)
        ATTN_TRY(exactness_case(o, p, x, index, count, run, err));
    if (o->direction != ATTN_DIR_FORWARD)
        ATTN_TRY(exactness_backward_case(o, p, x, index, count, run, err));
    return ATTN_OK;
}

int task_exactness(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    return task_for_each_case(o, run, exactness_any_case, err);
}
