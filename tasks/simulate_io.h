/* simulate_io.h — simulate's constants (simulate.h): a profile or links file, a links fit to an
 * `attnbench comm` results file, the tile measured here, or the named defaults. */
#pragma once
#include <jansson.h>

#include "tasks/simulate.h"

/* The links when nothing is given: named constants, marked assumed (docs/simulate.md). */
#define SIM_DEFAULT_LATENCY_S 5e-6
#define SIM_DEFAULT_BANDWIDTH_BPS 10e9

/* {"name", "source", "device", "elem_bytes", "memory_bytes", "points": [[rows, flops_per_s], ...],
 *  optional "tiles": {"bq", "bk", "head_dim", "part_s", "merge_row_s", "call_s", "points": [[krows, full_s], ...]}} */
int sim_profile_load(const char *path, sim_profile_t *pr, attn_err_t *err);
/* {"name", "source", "node_size", "intra": {"latency_s", "bandwidth_Bps"[, "oneway": [[bytes, s], ...],
 * "exchange": [[bytes per peer, s], ...], "exchange_ranks"]}, "inter": {...}}, or an attnbench
 * results file with task comm records: one measured tier, its tables the file's ping-pong and
 * all-to-all times per size. */
/* A comma-separated list of comm results files: per size the median of their times. */
enum { SIM_MAX_LINK_FILES = 16 };
int sim_links_load(const char *path, sim_links_t *l, attn_err_t *err);
void sim_links_default(sim_links_t *l);
/* The tile engine's costs here (sim_tiles_t: full micro-tiles against krows[i] keys (rising),
 * a partially masked one, a call, a merged row), one head of dimension d, one thread; the FLOP/s
 * points are the full micro-tile's. */
int sim_profile_measure(int64_t d, const int64_t *krows, int n_rows, sim_profile_t *pr, attn_err_t *err);
