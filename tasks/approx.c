/* approx.c — see approx.h. Which flag is whose budget is by backend name: two backends, one knob
 * each (sinks_window: --sinks, topk_blocks: --topk); both also keep the --window. */
#include "tasks/approx.h"

#include <string.h>

static int uses_sinks(const attn_backend_t *be) { return !strcmp(be->name, "sinks_window"); }
static int uses_topk(const attn_backend_t *be) { return !strcmp(be->name, "topk_blocks"); }

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
