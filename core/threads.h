/* threads.h — a minimal dynamic parallel-for over pthreads: items are handed out one at a time
 * from an atomic counter, so uneven work (causal tiles) balances itself. The caller's thread is
 * worker 0. BLAS is switched to one thread for the duration, since the workers call it. */
#pragma once
#include <stdint.h>

/* The worker count a thread setting means: `requested`, or every online core when it is 0. */
int threads_resolve(int requested);

typedef void (*parallel_fn)(void *ctx, int64_t item, int worker);

/* Runs fn(ctx, item, worker) for item in [0, n_items) on up to `threads` workers
 * (worker ∈ [0, threads)). Returns the number of workers used. */
int parallel_for(int threads, int64_t n_items, parallel_fn fn, void *ctx);

/* BLAS thread count outside parallel_for (the CLI and the tasks set it to --threads). */
void parallel_set_blas_threads(int n);
/* While threads of ours call BLAS concurrently, BLAS itself must not fork: these bracket such
 * a region (parallel_for does it itself; the local transport's ranks need it too). */
void parallel_blas_single_begin(void);
void parallel_blas_single_end(void);
