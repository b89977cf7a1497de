/* peak.c — the machine's roofline: OpenBLAS sgemm GFLOP/s and STREAM-like memory bandwidth on
 * the same threads as the backends, and on a machine with a GPU its roof too: cuBLAS bf16, f16
 * and f32 GEMM TFLOP/s and the read-only bandwidth of device memory (gpu_peak.cu). Throughput figures are reported as fractions of both,
 * measured in the same run, because absolute numbers on a shared, noisy machine mean little on
 * their own. The read kernel is also what the throughput task times over each call's K/V. */
#include <cblas.h>
#include <stdatomic.h>
#include <string.h>

#include "core/device.h"
#include "core/memory.h"
#include "core/threads.h"
#include "tasks/roofline.h"
#include "tasks/task.h"
#include "core/timing.h"

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

/* ---- memory bandwidth ----------------------------------------------------------------------- */

/* Bytes per work item: large enough that handing items out costs nothing, small enough that a
 * thread slowed by a neighbour on the shared machine leaves the rest to the others. */
enum { STREAM_CHUNK = 1 << 20, STREAM_WORKER_BYTES = 8 << 20 };

/* The kernels are built for AVX-512, AVX2 and baseline x86-64, picked at load time, optimised
 * and free of sanitizer checks in every build type: a read slower than the CPU's widest loads
 * would understate the bandwidth of cache-resident K/V, and the throughput task would then call
 * an honest decode impossible (OpenBLAS runs at full speed in Debug and ASan builds too). */
#ifdef __clang__ /* clang (the fuzz build, docs/fuzzing.md) refuses no_sanitize beside target_clones */
#define STREAM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define STREAM_CLONES                                                                                                \
    __attribute__((target_clones("avx512f", "avx2", "default"), optimize("O3"), no_sanitize("address", "undefined")))
#endif

/* Sum of 32-bit words: integer adds are associative, so the compiler vectorises the reduction
 * without -ffast-math, and any bit pattern (float, double) is a valid input. 64 lanes give the
 * loop independent accumulators; memcpy keeps the type-punned loads defined. */
STREAM_CLONES static uint32_t stream_sum_words(const unsigned char *p, size_t words) {
    uint32_t acc[64] = {0}, s = 0;
    size_t i = 0;
    for (; i + 64 <= words; i += 64)
        for (int j = 0; j < 64; j++) {
            uint32_t x;
            memcpy(&x, p + 4 * (i + j), 4);
            acc[j] += x;
        }
    for (; i < words; i++) {
        uint32_t x;
        memcpy(&x, p + 4 * i, 4);
        s += x;
    }
    for (int j = 0; j < 64; j++)
        s += acc[j];
    return s;
}

STREAM_CLONES static void stream_triad_kernel(float *restrict a, const float *restrict b, const float *restrict c,
                                              float s, size_t n) {
    for (size_t i = 0; i < n; i++)
        a[i] = b[i] + s * c[i];
}

/* Reads of `runs` runs of `len` bytes in each of two buffers, run i at base + i·stride. */
typedef struct {
    const unsigned char *base[2];
    size_t stride, len;
    int64_t runs, chunks; /* chunks: items per run */
    atomic_uint sink;
} read_ctx_t;

static volatile unsigned read_sink; /* where the sums end up, so no compiler can drop the reads */

static void read_item(void *ctx, int64_t item, int worker) {
    (void)worker;
    read_ctx_t *c = ctx;
    int64_t per_buf = c->runs * c->chunks, which = item / per_buf, rest = item % per_buf;
    size_t off = (size_t)(rest % c->chunks) * STREAM_CHUNK;
    size_t n = c->len - off < STREAM_CHUNK ? c->len - off : STREAM_CHUNK;
    const unsigned char *p = c->base[which] + (size_t)(rest / c->chunks) * c->stride + off;
    atomic_fetch_add_explicit(&c->sink, stream_sum_words(p, n / 4), memory_order_relaxed);
}

double peak_read_seconds(const void *a, const void *b, int64_t runs, size_t stride, size_t len, int threads,
                         int passes) {
    if (runs < 1 || len < 4)
        return 0;
    read_ctx_t c = {.base = {a, b}, .stride = stride, .len = len, .runs = runs,
                    .chunks = (int64_t)((len + STREAM_CHUNK - 1) / STREAM_CHUNK)};
    atomic_init(&c.sink, 0);
    /* Starting a thread (~50 µs) costs as much as one core reading a few MiB from cache: each
     * worker gets at least STREAM_WORKER_BYTES, so a small read runs on fewer threads and
     * measures faster than with all of them, never slower (measured: docs/roofline.md). */
    double total = 2.0 * (double)runs * (double)len;
    int workers = total / STREAM_WORKER_BYTES + 1 < threads ? (int)(total / STREAM_WORKER_BYTES) + 1 : threads;
    double best = -1;
    for (int i = 0; i < passes || best < 0; i++) {
        double t0 = time_now_s();
        parallel_for(workers, 2 * runs * c.chunks, read_item, &c);
        double t = time_now_s() - t0;
        best = best < 0 || t < best ? t : best;
    }
    read_sink = atomic_load(&c.sink);
    return best;
}

typedef struct {
    float *a, *b, *c;
    size_t n;
    int init; /* 1: first touch (fill b, c; zero a) on the workers that will stream them */
} triad_ctx_t;

static void triad_item(void *ctx, int64_t item, int worker) {
    (void)worker;
    triad_ctx_t *t = ctx;
    size_t per = STREAM_CHUNK / sizeof(float), lo = (size_t)item * per;
    size_t n = t->n - lo < per ? t->n - lo : per;
    if (t->init) {
        for (size_t i = lo; i < lo + n; i++) {
            t->a[i] = 0.0f;
            t->b[i] = (float)(i % 7);
            t->c[i] = (float)(i % 5);
        }
        return;
    }
    stream_triad_kernel(t->a + lo, t->b + lo, t->c + lo, 3.0f, n);
}

/* Bytes of one stream array: --stream-mib (256 MiB by default, far beyond the 32 MiB L3 a core
 * of this EPYC shares), but the three arrays together at most 3/8 of available memory. */
static size_t stream_array_bytes(int64_t stream_mib) {
    uint64_t want = (uint64_t)stream_mib << 20, avail = mem_available_bytes();
    if (avail > 0 && want > avail / 8)
        want = avail / 8;
    return (size_t)(want / STREAM_CHUNK > 0 ? want / STREAM_CHUNK * STREAM_CHUNK : STREAM_CHUNK);
}

/* Triad a = b + s·c counts 3·4 B per element and the read (of b and c) 2·4 B: STREAM's
 * convention, which leaves out the write-allocate read of a that a cache without streaming
 * stores adds (true triad traffic 4·4 B), so triad is a lower figure than the machine moves. */
static int peak_stream(const attn_opts_t *o, int threads, double sgemm_gflops, attn_run_t *run, attn_err_t *err) {
    size_t bytes = stream_array_bytes(o->stream_mib), n = bytes / sizeof(float);
    triad_ctx_t t = {.n = n, .init = 1};
    t.a = attn_alloc(bytes, err, "stream a");
    t.b = attn_alloc(bytes, err, "stream b");
    t.c = attn_alloc(bytes, err, "stream c");
    int rc = t.a && t.b && t.c ? ATTN_OK : ATTN_ERUNTIME;
    int64_t items = (int64_t)(bytes / STREAM_CHUNK);
    if (rc == ATTN_OK) {
        task_progress(1, 1, "peak stream: 3 arrays of %zu MiB on %d threads", bytes >> 20, threads);
        parallel_for(threads, items, triad_item, &t);
        t.init = 0;
        double triad[o->repeats], read[o->repeats];
        for (int r = -o->warmup; r < o->repeats; r++) {
            double t0 = time_now_s();
            parallel_for(threads, items, triad_item, &t);
            double ts = time_now_s() - t0;
            double tr = peak_read_seconds(t.b, t.c, 1, 0, bytes, threads, 1);
            if (r >= 0) {
                triad[r] = 3.0 * (double)bytes / ts / 1e9;
                read[r] = 2.0 * (double)bytes / tr / 1e9;
            }
        }
        attn_problem_t cfg = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = 1, .n_q = (int64_t)n,
                              .n_k = (int64_t)n};
        attn_exec_t x = {.threads = threads};
        attn_record_t *r = task_record(run, o, "peak", "stream", &cfg, &x);
        record_timed(r, "stream_triad_gbps", triad, o->repeats, "GB/s");
        record_timed(r, "stream_read_gbps", read, o->repeats, "GB/s");
        record_metric(r, "array_bytes", (double)bytes, "B");
        record_metric(r, "threads", threads, "1");
        record_extra_str(r, "bytes_counted", "triad 12 B/element, read 8 B/element, no write-allocate");
        double med, lo, hi;
        stats_summary(read, o->repeats, &med, &lo, &hi);
        if (sgemm_gflops > 0) /* FLOP per byte where the two roofs meet */
            record_metric(r, "machine_balance", sgemm_gflops / med, "FLOP/B");
    }
    attn_free(t.a);
    attn_free(t.b);
    attn_free(t.c);
    return rc;
}

/* The GPU's roof, on --device: GEMMs of PEAK_GEMM_N³ in each dtype and a read of PEAK_READ_BYTES
 * (far beyond the 50 MiB L2 of an H100/H200), each repeated; nothing without a device. */
enum { PEAK_GEMM_N = 8192 };
#define PEAK_READ_BYTES ((size_t)2 << 30)

static int peak_gpu(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    int ordinal = settings_exec(o).device;
    if (device_count(NULL, 0) <= ordinal)
        return ATTN_OK;
    static const struct {
        int kind;
        const char *name;
    } gemms[] = {{DEVICE_GEMM_BF16, "gemm_bf16"}, {DEVICE_GEMM_F16, "gemm_f16"}, {DEVICE_GEMM_F32, "gemm_f32"}};
    attn_exec_t x = settings_exec(o);
    char why[256] = "";
    double best = 0; /* bf16's median: the compute roof of the machine balance */
    for (int g = 0; g < 3; g++) {
        task_progress(g + 1, 4, "peak %s %d³ on cuda:%d", gemms[g].name, PEAK_GEMM_N, ordinal);
        double tflops[o->repeats], secs[o->repeats];
        int ok = 1;
        for (int r = -o->warmup; r < o->repeats && ok; r++) {
            double t = device_peak_gemm_seconds(ordinal, gemms[g].kind, PEAK_GEMM_N, why, sizeof why);
            ok = t > 0;
            if (ok && r >= 0)
                secs[r] = t, tflops[r] = roofline_gemm_tflops(PEAK_GEMM_N, t);
        }
        attn_problem_t cfg = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = PEAK_GEMM_N, .n_q = PEAK_GEMM_N,
                              .n_k = PEAK_GEMM_N, .dtype = gemms[g].kind == DEVICE_GEMM_BF16  ? ATTN_BF16
                                       : gemms[g].kind == DEVICE_GEMM_F16 ? ATTN_F16
                                                                          : ATTN_F32};
        attn_record_t *rec = task_record(run, o, "peak", gemms[g].name, &cfg, &x);
        snprintf(rec->device, sizeof rec->device, "cuda:%u", (unsigned)ordinal & 0xffffu);
        if (!ok) {
            record_set_status(rec, REC_ERROR, "%s", why);
            continue;
        }
        record_timed(rec, "tflops", tflops, o->repeats, "TFLOP/s");
        record_timed(rec, "time_s", secs, o->repeats, "s");
        record_extra_str(rec, "gemm_dtype", gemms[g].name + 5); /* config dtype has no f16 yet */
        double med, lo, hi;
        stats_summary(tflops, o->repeats, &med, &lo, &hi);
        if (g == 0)
            best = med;
    }
    uint64_t free_b = 0, total_b = 0;
    device_mem_info(ordinal, &free_b, &total_b);
    size_t bytes = free_b / 4 < PEAK_READ_BYTES ? (size_t)(free_b / 4) : PEAK_READ_BYTES;
    task_progress(4, 4, "peak device read of %zu MiB on cuda:%d", bytes >> 20, ordinal);
    double gbps[o->repeats];
    int ok = bytes >= 16;
    for (int r = -o->warmup; r < o->repeats && ok; r++) {
        double t = device_peak_read_seconds(ordinal, bytes, why, sizeof why);
        ok = t > 0;
        if (ok && r >= 0)
            gbps[r] = (double)bytes / t / 1e9;
    }
    attn_problem_t cfg = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = 1, .n_q = (int64_t)bytes,
                          .n_k = (int64_t)bytes};
    attn_record_t *rec = task_record(run, o, "peak", "device_read", &cfg, &x);
    snprintf(rec->device, sizeof rec->device, "cuda:%u", (unsigned)ordinal & 0xffffu);
    if (!ok) {
        record_set_status(rec, REC_ERROR, "%s", bytes < 16 ? "no free device memory to read" : why);
    } else {
        record_timed(rec, "read_gbps", gbps, o->repeats, "GB/s");
        record_metric(rec, "array_bytes", (double)bytes, "B");
        double med, lo, hi;
        stats_summary(gbps, o->repeats, &med, &lo, &hi);
        if (best > 0) /* FLOP per byte where the GPU's two roofs meet */
            record_metric(rec, "machine_balance", best * 1e3 / med, "FLOP/B");
    }
    device_peak_release();
    (void)err;
    return ATTN_OK;
}

int task_peak(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    static const int64_t default_sizes[] = {512, 1024, 2048, 4096};
    const int64_t *sizes = o->n_sizes ? o->sizes : default_sizes;
    int n_sizes = o->n_sizes ? o->n_sizes : 4;
    int threads = threads_resolve(o->threads);
    double best = 0; /* the best median sgemm: the compute roof of the machine balance */
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
        attn_problem_t cfg = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = n, .n_q = n, .n_k = n};
        attn_exec_t x = {.threads = threads};
        attn_record_t *r = task_record(run, o, "peak", "sgemm", &cfg, &x);
        record_timed(r, "gflops", gflops, o->repeats, "GFLOP/s");
        record_timed(r, "time_s", secs, o->repeats, "s");
        record_metric(r, "threads", threads, "1");
        double med, lo, hi;
        stats_summary(gflops, o->repeats, &med, &lo, &hi);
        best = med > best ? med : best;
    }
    peak_release();
    ATTN_TRY(peak_stream(o, threads, best, run, err));
    return peak_gpu(o, run, err);
}
