/* simulate_io.h — simulate's constants (simulate.h): a profile or links file, a links fit to an
 * `attnbench comm` results file, the tile measured here, or the named defaults. */
#pragma once
#include <jansson.h>

#include "tasks/simulate.h"

/* The links when nothing is given: named constants, marked assumed (docs/simulate.md). */
#define SIM_DEFAULT_LATENCY_S 5e-6
#define SIM_DEFAULT_BANDWIDTH_BPS 10e9

/* {"name", "source", "device", "elem_bytes", "memory_bytes", "points": [[rows, flops_per_s], ...]} */
int sim_profile_load(const char *path, sim_profile_t *pr, attn_err_t *err);
/* {"name", "source", "node_size", "intra": {"latency_s", "bandwidth_Bps"}, "inter": {...}}, or an
 * attnbench results file with task comm ping-pong records (one tier, fit to them). */
int sim_links_load(const char *path, sim_links_t *l, attn_err_t *err);
void sim_links_default(sim_links_t *l);
/* The blockwise tile on rows[i] × rows[i] (rising), one head of dimension d, one thread. */
int sim_profile_measure(int64_t d, const int64_t *rows, int n_rows, sim_profile_t *pr, attn_err_t *err);
