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

/* The needle task's sweep (its records are found by settings, not by exec): how many budgets
 * backend be runs at (1 for an exact backend), and o narrowed to budget i of be: its --sinks or
 * --topk list cut to that one value. */
int approx_budget_count(const attn_opts_t *o, const attn_backend_t *be);
void approx_opts_at(const attn_opts_t *o, const attn_backend_t *be, int i, attn_opts_t *out);
/* 1 when record r of approximate backend be was measured at o's (first) budget and --window; 1
 * for any record of an exact backend. */
int approx_record_matches(const attn_record_t *r, const attn_backend_t *be, const attn_opts_t *o);

/* A backend that runs `inner` (approximate) and, on the same call, exact blockwise, adding up the
 * pairs inner visited, the pairs the mask allows, ‖O − O_exact‖² and ‖O_exact‖²: the needle task's
 * key fraction and output error on the model's own Q/K/V. ref_s is the time the exact calls took
 * (to be left out of the inner backend's time). Pass &probe.be where a backend is wanted. */
typedef struct {
    attn_backend_t be; /* first: a pointer to it is a pointer to the probe */
    const attn_backend_t *inner;
    double visited, visible, err2, ref2, ref_s;
} approx_probe_t;
void approx_probe_init(approx_probe_t *pr, const attn_backend_t *inner);
