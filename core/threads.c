/* threads.c — see threads.h. Threads are created per call: the calls this suite makes are
 * milliseconds to minutes long, so a ~50 µs spawn is noise and a persistent pool is not worth
 * its shutdown and fork-safety rules. */
#include "core/threads.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    parallel_fn fn;
    void *ctx;
    int64_t n_items;
    atomic_llong next;
} pool_t;

typedef struct {
    pool_t *pool;
    int worker;
} worker_arg_t;

static void run_worker(pool_t *pool, int worker) {
    for (;;) {
        int64_t item = atomic_fetch_add(&pool->next, 1);
        if (item >= pool->n_items)
            break;
        pool->fn(pool->ctx, item, worker);
    }
}

static void *thread_main(void *arg) {
    worker_arg_t *w = arg;
    run_worker(w->pool, w->worker);
    return NULL;
}

static int blas_threads = 1;

void parallel_set_blas_threads(int n) {
    blas_threads = n > 0 ? n : 1;
    openblas_set_num_threads(blas_threads);
}

void parallel_blas_single_begin(void) { openblas_set_num_threads(1); }
void parallel_blas_single_end(void) { openblas_set_num_threads(blas_threads); }

int parallel_for(int threads, int64_t n_items, parallel_fn fn, void *ctx) {
    if (threads < 1)
        threads = 1;
    if (threads > n_items)
        threads = (int)(n_items > 0 ? n_items : 1);
    pool_t pool = {.fn = fn, .ctx = ctx, .n_items = n_items};
    atomic_init(&pool.next, 0);
    if (threads == 1) {
        run_worker(&pool, 0);
        return 1;
    }
    parallel_blas_single_begin();
    pthread_t tid[threads];
    worker_arg_t args[threads];
    int started = 1;
    for (int w = 1; w < threads; w++) {
        args[w] = (worker_arg_t){&pool, w};
        if (pthread_create(&tid[w], NULL, thread_main, &args[w]) != 0)
            break; /* fewer workers still finish every item */
        started++;
    }
    run_worker(&pool, 0);
    for (int w = 1; w < started; w++)
        pthread_join(tid[w], NULL);
    parallel_blas_single_end();
    return started;
}

int threads_resolve(int requested) {
    if (requested > 0)
        return requested;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
