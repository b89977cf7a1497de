/* needle_resume.h — --resume for the needle grid: the records of an earlier (interrupted) run
 * are taken into this run, which keeps that run's id, so the grid goes on where it stopped and
 * the file that is rewritten holds old and new records together. */
#pragma once
#include "tasks/settings.h"
#include "core/results.h"

/* Reads FILE.json (schema attnbench.results/1) and adds its needle records to run; run takes
 * the file's run_id. A missing, malformed or foreign file → ATTN_EUSAGE naming the path. */
int needle_resume_load(const char *path, attn_run_t *run, attn_err_t *err);

/* The needle record of run for this case (backend, n, depth and o's needles, ask, mode,
 * haystack, ranks, window), or NULL. Errors and skips count as done too: --resume does not
 * retry them (delete them from the file to retry). */
const attn_record_t *needle_find(const attn_run_t *run, const char *backend, const attn_opts_t *o, int64_t n,
                                 double depth);
