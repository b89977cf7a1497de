/* approx_records.h — the check test_approx.c and test_approx_cuda.c make of an exactness run over
 * an exact backend and the approximate ones at two budgets each: status approximate with no
 * tolerance; at the full budget every key and an error within the exact backend's tolerance, at
 * the partial one under half the keys and an error over it. Header-only. */
#pragma once
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/results.h"
#include "tests/check.h"

static __attribute__((unused)) double metric_value(const attn_record_t *r, const char *name) {
    for (int m = 0; m < r->n_metrics; m++)
        if (!strcmp(r->metrics[m].name, name))
            return r->metrics[m].value;
    return NAN;
}

/* run: 1 record of `exact` + 2 budgets (partial, full) of 2 approximate backends; a record is the
 * full budget when its topk_pct is 100 or its sinks is all_keys. Frees the run. */
static __attribute__((unused)) void check_approx_records(attn_run_t *run, const char *exact, double all_keys) {
    check(run->n_records == 5, "one record per budget", "%d records (want 1 + 2 + 2)", run->n_records);
    double tol = NAN;
    for (int i = 0; i < run->n_records; i++)
        if (!strcmp(run->records[i].backend, exact))
            tol = metric_value(&run->records[i], "tol_rel_l2");
    for (int i = 0; i < run->n_records; i++) {
        const attn_record_t *r = &run->records[i];
        if (!strcmp(r->backend, exact))
            continue;
        double frac = metric_value(r, "key_fraction"), e = metric_value(r, "rel_l2_err");
        int full = 0;
        for (int x = 0; x < r->n_extra; x++)
            full |= (!strcmp(r->extra[x].key, "topk_pct") && r->extra[x].num == 100) ||
                    (!strcmp(r->extra[x].key, "sinks") && r->extra[x].num == all_keys);
        char name[96];
        snprintf(name, sizeof name, "%s record (%s budget)", r->backend, full ? "full" : "partial");
        check(r->status == REC_APPROXIMATE && isnan(metric_value(r, "tol_rel_l2")), name,
              "status %s, tol_rel_l2 %s (want approximate, no tolerance)", status_name(r->status),
              isnan(metric_value(r, "tol_rel_l2")) ? "absent" : "present");
        if (full)
            check(frac == 1 && e <= tol, name, "key_fraction %.3g (want 1), rel_l2 %.3g (%s tol %.3g)", frac, e, exact,
                  tol);
        else
            check(frac > 0 && frac < 0.5 && e > tol, name, "key_fraction %.3g (want in (0, 0.5)), rel_l2 %.3g > %.3g",
                  frac, e, tol);
    }
    results_run_free(run);
}
