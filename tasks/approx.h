/* approx.h — what the tasks share about approximate backends (attn_backend_t.approximate): the
 * key budgets one runs at (a --sinks or --topk list is a sweep), the budget in its record's
 * config, and the fraction of keys it visited. Exact backends run once, at the given exec. */
#pragma once
#include "core/backend.h"
#include "core/results.h"
#include "tasks/settings.h"

/* The execs backend be runs a case at: one per --sinks value (sinks_window) or --topk value
 * (topk_blocks), the rest of x unchanged; just x for any other backend. Returns the count. */
int approx_budgets(const attn_opts_t *o, const attn_backend_t *be, const attn_exec_t *x,
                   attn_exec_t out[OPTS_MAX_LIST]);
/* An approximate backend's budget into its record's config (sinks or topk / topk_pct, window). */
void approx_record_config(attn_record_t *r, const attn_backend_t *be, const attn_exec_t *x);
/* The metrics keys_visited (pairs, over batch × heads) and key_fraction: visited over the pairs
 * the mask lets the problem see (B·H·problem_visible_pairs). */
double approx_key_fraction(const attn_problem_t *p, double visited);
void approx_record_visits(attn_record_t *r, const attn_problem_t *p, double visited);
