/* task.h — the tasks `attnbench run --task NAME` runs, each appending records to a run.
 * A task returns ATTN_OK even when cases fail or are skipped (that is what records are for);
 * an error return means the run itself could not go on. */
#pragma once
#include "tasks/settings.h"
#include "core/backend.h"
#include "core/results.h"

typedef struct {
    const char *name;
    const char *description;
    int (*run)(const attn_opts_t *o, attn_run_t *run, attn_err_t *err);
} attn_task_t;

const attn_task_t *task_find(const char *name);
int task_count(void);
const attn_task_t *task_get(int i);

int task_exactness(const attn_opts_t *o, attn_run_t *run, attn_err_t *err);
int task_throughput(const attn_opts_t *o, attn_run_t *run, attn_err_t *err);
int task_memory(const attn_opts_t *o, attn_run_t *run, attn_err_t *err);
int task_model(const attn_opts_t *o, attn_run_t *run, attn_err_t *err);
int task_capacity(const attn_opts_t *o, attn_run_t *run, attn_err_t *err);
int task_needle(const attn_opts_t *o, attn_run_t *run, attn_err_t *err);
int task_precision(const attn_opts_t *o, attn_run_t *run, attn_err_t *err);

/* `attnbench peak`: sgemm GFLOP/s at sizes o->sizes and STREAM-like triad and read GB/s over
 * arrays of o->stream_mib MiB (the roofline the other figures are compared with). */
int task_peak(const attn_opts_t *o, attn_run_t *run, attn_err_t *err);
/* One timed n×n×n sgemm on `threads` threads, in seconds; buffers are reused between calls. */
double peak_sgemm_seconds(int n, int threads, attn_err_t *err);
void peak_release(void);
/* GFLOP/s of register-only FMA chains on `threads` threads (peak_fma.c): the cores' peak, which
 * no correct code exceeds; NaN on a CPU without AVX-512F or AVX2 + FMA. */
double peak_fma_gflops(int threads);
/* Best of `passes` timed reads, in seconds, of `runs` runs of `len` bytes in each of buffers a
 * and b (run i at base + i·stride) on up to `threads` threads: the bandwidth roof of exactly
 * the bytes a call must read. Allocates nothing, so it cannot fail. */
double peak_read_seconds(const void *a, const void *b, int64_t runs, size_t stride, size_t len, int threads,
                         int passes);

/* Progress on stderr: "[i/n] what", one line per case; on by default, off for the tests. */
void task_set_progress(int on);
void task_progress(int i, int n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Calls fn once per case of the run's (seq-len × q-len × mask) grid with its problem. */
typedef int (*case_fn)(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, int index, int count,
                       attn_run_t *run, attn_err_t *err);
int task_for_each_case(const attn_opts_t *o, attn_run_t *run, case_fn fn, attn_err_t *err);
/* Starts backend be on case p: a progress line, its record (returned in *rec), and its
 * supports() check. Returns 0, with the record marked skipped and the reason, when be
 * declines p. */
int task_start_backend(attn_run_t *run, const attn_opts_t *o, const char *task, const attn_backend_t *be,
                       const attn_problem_t *p, const attn_exec_t *x, int index, int count, attn_record_t **rec);
/* The throughput rates of reps timed calls, in this order: time_s (secs), tokens_per_s (B·n_q
 * query tokens per second) and gflops (the caller's: its FLOP count is its own). */
void task_record_rates(attn_record_t *r, const attn_problem_t *p, const double *secs, const double *gflops, int reps);
/* throughput_backward.c: one backend's backward on p (a record; direction "backward"). */
int throughput_backward_one(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x,
                            const attn_backend_t *be, int index, int count, attn_run_t *run, attn_err_t *err);
/* dist_record.c: a distributed backend's per-rank figures of its forward (beside its expect)
 * and of its backward (beside its backward_expect). */
void task_record_dist(attn_record_t *r, const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x,
                      const attn_dist_stats_t *d);
void task_record_dist_backward(attn_record_t *r, const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x,
                               const attn_dist_stats_t *d);
/* task_start_backend for the backward pass (--direction backward|both): the record carries
 * direction "backward" and the check is backend_supports_backward. */
int task_start_backward(attn_run_t *run, const attn_opts_t *o, const char *task, const attn_backend_t *be,
                        const attn_problem_t *p, const attn_exec_t *x, int index, int count, attn_record_t **rec);
/* Appends a record for backend b on p and fills config extras shared by tasks. */
attn_record_t *task_record(attn_run_t *run, const attn_opts_t *o, const char *task, const char *backend,
                           const attn_problem_t *p, const attn_exec_t *x);
