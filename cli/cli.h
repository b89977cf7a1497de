/* cli.h — the subcommands of the attnbench executable. Each parses its flags through the one
 * table of options.c, returns a status and fills err; main() prints and exits. */
#pragma once
#include "core/common.h"
#include "core/results.h"

struct attn_comm;

int cli_list(int argc, char **argv, attn_err_t *err);
int cli_run(int argc, char **argv, attn_err_t *err);
/* run --task needle with the needle defaults (window 4096, seq-len 4096) */
int cli_needle(int argc, char **argv, attn_err_t *err);
int cli_attend(int argc, char **argv, attn_err_t *err);
int cli_peak(int argc, char **argv, attn_err_t *err);
/* cli_comm.c: the transports' latency and bandwidth, the roofline of the overlap figures. */
int cli_comm(int argc, char **argv, attn_err_t *err);
/* cli_compare.c: two results files side by side; the regression gate of scheduled jobs. */
int cli_compare(int argc, char **argv, attn_err_t *err);
/* cli_report.c: results files → one self-contained HTML dashboard. */
int cli_report(int argc, char **argv, attn_err_t *err);
/* cli_simulate.c: time and memory per rank of the distributed schemes at any P (docs/simulate.md). */
int cli_simulate(int argc, char **argv, attn_err_t *err);
/* cli_placement.c: every rank's host, node-local rank, visible GPUs and Slurm job, gathered to
 * rank 0 (*out, n entries, malloc'ed; NULL on the other ranks) for the run metadata. */
int cli_gather_placement(struct attn_comm *c, attn_placement_t **out, int *n, attn_err_t *err);
