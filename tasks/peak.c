/* peak.c — the sgemm roofline: OpenBLAS sgemm GFLOP/s on the same threads as the backends.
 * Throughput figures are reported as a fraction of it, measured in the same run, because
 * absolute numbers on a shared, noisy machine mean little on their own. */
#include <cblas.h>

#include "parallel.h"
#include "task.h"
#include "timing.h"

static float *buf_a, *buf_b, *buf_c;
static int buf_n;

void peak_release(void) {
    attn_free(buf_a);
    attn_free(buf_b);
    attn_free(buf_c);
    buf_a = buf_b = buf_c = NULL;
    buf_n = 0;
}

double peak_sgemm_seconds(int n, int threads, attn_err_t *err) {
    if (n != buf_n) {
        peak_release();
        size_t bytes = (size_t)n * n * sizeof(float);
        buf_a = attn_alloc(bytes, err, "sgemm A");
        buf_b = attn_alloc(bytes, err, "sgemm B");
        buf_c = attn_alloc(bytes, err, "sgemm C");
        if (!buf_a || !buf_b || !buf_c) {
            peak_release();
            return -1;
        }
        for (size_t i = 0; i < (size_t)n * n; i++) {
            buf_a[i] = (float)(i % 7) * 0.01f;
            buf_b[i] = (float)(i % 5) * 0.01f;
        }
        buf_n = n;
    }
    parallel_set_blas_threads(threads);
    double t0 = time_now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, buf_a, n, buf_b, n, 0.0f, buf_c, n);
    return time_now_s() - t0;
}

int task_peak(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    static const int64_t default_sizes[] = {512, 1024, 2048, 4096};
    const int64_t *sizes = o->n_sizes ? o->sizes : default_sizes;
    int n_sizes = o->n_sizes ? o->n_sizes : 4;
    attn_problem_t none = {.threads = o->threads};
    int threads = problem_threads(&none);
    for (int s = 0; s < n_sizes; s++) {
        int n = (int)sizes[s];
        task_progress(s + 1, n_sizes, "peak sgemm %d×%d×%d on %d threads", n, n, n, threads);
        for (int w = 0; w < o->warmup; w++)
            if (peak_sgemm_seconds(n, threads, err) < 0)
                return ATTN_ERUNTIME;
        double gflops[o->repeats], secs[o->repeats];
        for (int r = 0; r < o->repeats; r++) {
            secs[r] = peak_sgemm_seconds(n, threads, err);
            if (secs[r] < 0)
                return ATTN_ERUNTIME;
            gflops[r] = 2.0 * n * (double)n * n / secs[r] / 1e9;
        }
        attn_problem_t cfg = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = n, .n_q = n, .n_k = n,
                              .threads = threads};
        attn_record_t *r = task_record(run, o, "peak", "sgemm", &cfg);
        record_timed(r, "gflops", gflops, o->repeats, "GFLOP/s");
        record_timed(r, "time_s", secs, o->repeats, "s");
        record_metric(r, "threads", threads, "1");
    }
    peak_release();
    return ATTN_OK;
}
