/* report_history.h — the regression gate's history for `attnbench report --history DIR`: every
 * results file of a directory of nightly runs, grouped by machine and ordered by start time, each
 * night gated against the one before it on the same machine with compare's rule (cli/gate.h). */
#pragma once
#include <jansson.h>

#include "core/common.h"

/* *out: {"dir", "threshold", "machines": [{"machine", "nights": [{run_id, started_at, git_sha, file,
 * records, "gate": null (the first night) | {base_run_id, matched, flips, worse, better, passed,
 * lines: [{case, metric, base, new, ratio, verdict}] (status changes and metrics with a verdict)},
 * "times": {case: time_s median} }]}]}. ATTN_EUSAGE: DIR unreadable, fewer than two results files,
 * or a file results_read refuses (named). */
int report_history(const char *dir, double thr, json_t **out, attn_err_t *err);
