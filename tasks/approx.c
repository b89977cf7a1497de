/* approx.c — see approx.h. Which flag is whose budget is by backend name: two rules, one knob
 * each (sinks_window and sinks_window_cuda: --sinks, topk_blocks and topk_blocks_cuda: --topk);
 * all keep the --window. */
#include "tasks/approx.h"

#include "core/timing.h"

#include <math.h>
#include <string.h>

/* name is family, or family_cuda (the GPU version of the same rule) */
static int of_family(const attn_backend_t *be, const char *family) {
    size_t n = strlen(family);
    return !strncmp(be->name, family, n) && (!be->name[n] || !strcmp(be->name + n, "_cuda"));
}
static int uses_sinks(const attn_backend_t *be) { return of_family(be, "sinks_window"); }
static int uses_topk(const attn_backend_t *be) { return of_family(be, "topk_blocks"); }

int approx_budgets(const attn_opts_t *o, const attn_backend_t *be, const attn_exec_t *x,
                   attn_exec_t out[OPTS_MAX_LIST]) {
    out[0] = *x;
    if (!be->approximate)
        return 1;
    int n = uses_sinks(be) ? o->n_sinks : uses_topk(be) ? o->n_topk : 0;
    for (int i = 0; i < n; i++) {
        out[i] = *x;
        if (uses_sinks(be))
            out[i].sinks = o->sinks[i];
        else
            out[i].topk = o->topk[i], out[i].topk_pct = o->topk_pct[i];
    }
    return n ? n : 1;
}

void approx_record_config(attn_record_t *r, const attn_backend_t *be, const attn_exec_t *x) {
    if (!r || !be->approximate)
        return;
    if (uses_sinks(be))
        record_extra_num(r, "sinks", (double)x->sinks);
    if (uses_topk(be)) {
        if (x->topk_pct > 0)
            record_extra_num(r, "topk_pct", x->topk_pct);
        else
            record_extra_num(r, "topk", (double)x->topk);
    }
    record_extra_num(r, "approx_window", (double)x->approx_window);
}

double approx_key_fraction(const attn_problem_t *p, double visited) {
    double all = (double)(p->batch * p->heads) * problem_visible_pairs(p);
    return all > 0 ? visited / all : 0;
}

void approx_record_visits(attn_record_t *r, const attn_problem_t *p, double visited) {
    record_metric(r, "keys_visited", visited, "pairs");
    record_metric(r, "key_fraction", approx_key_fraction(p, visited), "fraction");
}

int approx_budget_count(const attn_opts_t *o, const attn_backend_t *be) {
    int n = !be->approximate ? 1 : uses_sinks(be) ? o->n_sinks : uses_topk(be) ? o->n_topk : 1;
    return n ? n : 1;
}

void approx_opts_at(const attn_opts_t *o, const attn_backend_t *be, int i, attn_opts_t *out) {
    *out = *o;
    if (!be->approximate)
        return;
    if (uses_sinks(be) && i < o->n_sinks)
        out->sinks[0] = o->sinks[i], out->n_sinks = 1;
    if (uses_topk(be) && i < o->n_topk)
        out->topk[0] = o->topk[i], out->topk_pct[0] = o->topk_pct[i], out->n_topk = 1;
}

/* The numeric extra `key` of r, or NaN. */
static double extra_of(const attn_record_t *r, const char *key) {
    for (int i = 0; i < r->n_extra; i++)
        if (!strcmp(r->extra[i].key, key) && r->extra[i].is_num)
            return r->extra[i].num;
    return NAN;
}

int approx_record_matches(const attn_record_t *r, const attn_backend_t *be, const attn_opts_t *o) {
    if (!be->approximate)
        return 1;
    attn_exec_t x = settings_exec(o);
    if (extra_of(r, "approx_window") != (double)x.approx_window)
        return 0;
    if (uses_sinks(be))
        return extra_of(r, "sinks") == (double)x.sinks;
    if (uses_topk(be))
        return x.topk_pct > 0 ? extra_of(r, "topk_pct") == x.topk_pct && isnan(extra_of(r, "topk"))
                              : extra_of(r, "topk") == (double)x.topk && isnan(extra_of(r, "topk_pct"));
    return 1;
}

static int probe_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                         attn_err_t *err) {
    approx_probe_t *pr = (approx_probe_t *)self;
    attn_io_t in = *io;
    double visited = 0;
    in.keys_visited = &visited;
    ATTN_TRY(pr->inner->forward(pr->inner, p, x, &in, err));
    pr->visited += visited;
    pr->visible += (double)(p->batch * p->heads) * problem_visible_pairs(p);
    const attn_backend_t *exact = registry_find("blockwise");
    if (p->dtype != ATTN_F32 || !exact)
        return ATTN_OK;
    double t0 = time_now_s();
    size_t n_o = problem_numel_q(p), n_l = problem_numel_lse(p);
    float *o = attn_alloc((n_o + n_l) * sizeof *o, err, "exact output beside an approximate one");
    if (!o)
        return ATTN_ERUNTIME;
    attn_io_t ex = *io;
    ex.o = o, ex.lse = o + n_o, ex.keys_visited = NULL;
    int rc = exact->forward(exact, p, x, &ex, err);
    for (size_t i = 0; rc == ATTN_OK && i < n_o; i++) {
        double a = ((const float *)io->o)[i], b = o[i];
        pr->err2 += (a - b) * (a - b);
        pr->ref2 += b * b;
    }
    attn_free(o);
    pr->ref_s += time_now_s() - t0;
    return rc;
}

void approx_probe_init(approx_probe_t *pr, const attn_backend_t *inner) {
    *pr = (approx_probe_t){.be = *inner, .inner = inner};
    pr->be.forward = probe_forward;
}
