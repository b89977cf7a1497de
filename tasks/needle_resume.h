/* needle_resume.h — --resume for the needle grid: the records of an earlier (interrupted) run
 * are taken into this run, which keeps that run's id, so the grid goes on where it stopped and
 * the file that is rewritten holds old and new records together. */
#pragma once
#include "tasks/settings.h"
#include "core/backend.h"
#include "core/results.h"

/* Appends to run the record this run would write for backend be at context length n with n_q
 * query rows and needle depth (identity, config and extras; no metrics). NULL: out of memory. */
typedef attn_record_t *(*needle_case_fn)(attn_run_t *run, const attn_opts_t *o, const attn_backend_t *be, int64_t n,
                                         int64_t n_q, double depth);

/* The needle task's needle_case_fn (tasks/needle.c): what `attnbench needle` writes. */
attn_record_t *needle_case_record(attn_run_t *run, const attn_opts_t *o, const attn_backend_t *be, int64_t n,
                                  int64_t n_q, double depth);

/* Reads FILE.json and adds its records to run; run takes the file's run_id. The file must be a
 * needle run measured with this run's settings: every record is compared with what `expect`
 * makes for its (backend, length, depth), and must hold what a fresh run writes (a known status,
 * depth in 0 … 100, recall in 0 … 1, each case once). Anything else → ATTN_EUSAGE naming the
 * path and the record, and run is left for the caller to discard: no record is ever dropped. */
int needle_resume_load(const char *path, const attn_opts_t *o, needle_case_fn expect, attn_run_t *run,
                       attn_err_t *err);

/* The needle record of run for this case (backend, n, depth and o's needles, ask, mode,
 * haystack, ranks, window), or NULL. Errors and skips count as done too: --resume does not
 * retry them (delete them from the file to retry). */
const attn_record_t *needle_find(const attn_run_t *run, const char *backend, const attn_opts_t *o, int64_t n,
                                 double depth);
