/* test_roofline.c — tasks/roofline.h with synthetic numbers, no timing: the least K/V traffic
 * of a call (visible rows only, GQA heads not counted twice), the compute/bandwidth bound, the
 * attainable roof, and the check that turns a figure above a measured roof into an error.
 * Table-driven; each failure names the case and prints expected vs got. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tests/check.h"
#include "core/device.h"
#include "tasks/roofline.h"

typedef struct {
    const char *name;
    attn_problem_t p;
    int64_t lo, hi; /* visible key rows */
    double bytes;
} kv_case_t;

static void test_kv_bytes(void) {
    const kv_case_t cases[] = {
        /* 2·B·H_kv·n_k·d·4: the 8 query heads share 2 kv heads, which are read once */
        {"none prefill GQA 8/2", {.batch = 2, .heads = 8, .kv_heads = 2, .head_dim = 64, .n_q = 1024, .n_k = 1024,
                                  .mask = ATTN_MASK_NONE}, 0, 1024, 2.0 * 2 * 2 * 1024 * 64 * 4},
        {"causal decode", {.batch = 1, .heads = 8, .kv_heads = 8, .head_dim = 64, .n_q = 1, .n_k = 16384,
                           .mask = ATTN_MASK_CAUSAL}, 0, 16384, 2.0 * 8 * 16384 * 64 * 4},
        /* the last query at 16383 sees (16383 − 256, 16383]: 256 rows */
        {"window decode", {.batch = 1, .heads = 4, .kv_heads = 4, .head_dim = 32, .n_q = 1, .n_k = 16384,
                           .mask = ATTN_MASK_WINDOW, .window = 256}, 16128, 16384, 2.0 * 4 * 256 * 32 * 4},
        /* queries at 900..999 see keys (900 − 50, 999]: 851..999 */
        {"window chunk", {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = 8, .n_q = 100, .n_k = 1000,
                          .mask = ATTN_MASK_WINDOW, .window = 50}, 851, 1000, 2.0 * 149 * 8 * 4},
        {"window prefill", {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = 8, .n_q = 1000, .n_k = 1000,
                            .mask = ATTN_MASK_WINDOW, .window = 50}, 0, 1000, 2.0 * 1000 * 8 * 4},
        {"f64 elements", {.batch = 1, .heads = 2, .kv_heads = 1, .head_dim = 16, .n_q = 10, .n_k = 10,
                          .mask = ATTN_MASK_CAUSAL, .dtype = ATTN_F64}, 0, 10, 2.0 * 10 * 16 * 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const kv_case_t *c = &cases[i];
        int64_t lo, hi;
        roofline_kv_rows(&c->p, &lo, &hi);
        char name[96];
        snprintf(name, sizeof name, "kv rows: %s", c->name);
        check(lo == c->lo && hi == c->hi, name, "expected [%lld, %lld), got [%lld, %lld)", (long long)c->lo,
              (long long)c->hi, (long long)lo, (long long)hi);
        snprintf(name, sizeof name, "kv bytes: %s", c->name);
        double got = roofline_kv_bytes(&c->p);
        check(got == c->bytes, name, "expected %.0f, got %.0f", c->bytes, got);
    }
}

typedef struct {
    double intensity, sgemm, read;
    int bound;
    double attainable;
} bound_case_t;

static void test_bound(void) {
    /* machine balance 100 GFLOP/s / 10 GB/s = 10 FLOP/B */
    const bound_case_t cases[] = {
        {0.5, 100, 10, 1, 5},     /* decode, H = H_kv: 4·d·n / (8·d·n) FLOP/B */
        {9.99, 100, 10, 1, 99.9}, /* just under the balance */
        {10, 100, 10, 0, 100},    /* at the balance: both roofs meet, called compute */
        {8192, 100, 10, 0, 100},  /* prefill n = 16384 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bound_case_t *c = &cases[i];
        char name[96];
        snprintf(name, sizeof name, "bound at %g FLOP/B, balance %g", c->intensity, c->sgemm / c->read);
        int b = roofline_bound(c->intensity, c->sgemm, c->read);
        double a = roofline_attainable_gflops(c->intensity, c->sgemm, c->read);
        check(b == c->bound && fabs(a - c->attainable) < 1e-9, name, "expected bound %d, roof %g; got %d, %g",
              c->bound, c->attainable, b, a);
    }
}

typedef struct {
    double frac_sgemm, frac_bw;
    int ok;
    const char *reason_has; /* NULL when ok */
} check_case_t;

static void test_check(void) {
    const check_case_t cases[] = {
        {0.55, 0.30, 1, NULL},
        {1.10, 1.10, 1, NULL}, /* the slack itself is allowed */
        {1.32, 0.20, 0, "1.32 × the sgemm roofline measured in this run: work was skipped or miscounted"},
        {0.01, 1.50, 0, "1.50 × the read bandwidth of the same K/V"},
        {2.00, 3.00, 0, "2.00 × the sgemm roofline and 3.00 × the read bandwidth"},
        {NAN, NAN, 1, NULL}, /* nothing measured: nothing to judge */
        {NAN, 1.20, 0, "1.20 × the read bandwidth"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const check_case_t *c = &cases[i];
        char name[96], reason[256] = "";
        snprintf(name, sizeof name, "check frac_of_sgemm %g, frac_of_bandwidth %g", c->frac_sgemm, c->frac_bw);
        int ok = roofline_check(c->frac_sgemm, c->frac_bw, reason, sizeof reason);
        check(ok == c->ok && (ok || strstr(reason, c->reason_has)), name, "expected %s '%s', got %s '%s'",
              c->ok ? "pass" : "error", c->reason_has ? c->reason_has : "", ok ? "pass" : "error", reason);
    }
}

/* The GPU roof's arithmetic: which GEMM a record is judged against, the K/V bytes at the device's
 * element size, TFLOP/s from a GEMM's time, and GFLOP/s as a fraction of TFLOP/s (a factor 1000
 * lost there would make every GPU record pass or every one impossible). */
static void test_gpu_roof(void) {
    check(roofline_gemm_kind(ATTN_BF16) == DEVICE_GEMM_BF16 && roofline_gemm_kind(ATTN_F32) == DEVICE_GEMM_F32,
          "gpu roof: bf16 records against the bf16 GEMM, f32 against f32", "bf16 %d f32 %d",
          roofline_gemm_kind(ATTN_BF16), roofline_gemm_kind(ATTN_F32));
    /* bf16 H = H_kv = 16, n = 16384, d = 128: 2·16·16384·128·2 B = 134217728 B on the device,
     * where the float32 host arrays hold twice that */
    attn_problem_t p = {.batch = 1, .heads = 16, .kv_heads = 16, .head_dim = 128, .n_q = 16384, .n_k = 16384,
                        .mask = ATTN_MASK_CAUSAL, .dtype = ATTN_BF16};
    check(roofline_device_kv_bytes(&p) == 134217728.0 && roofline_kv_bytes(&p) == 2 * 134217728.0,
          "gpu roof: bf16 K/V bytes at 2 B an element", "device %.0f host %.0f", roofline_device_kv_bytes(&p),
          roofline_kv_bytes(&p));
    p.dtype = ATTN_F32;
    check(roofline_device_kv_bytes(&p) == roofline_kv_bytes(&p), "gpu roof: f32 K/V bytes as on the host",
          "device %.0f host %.0f", roofline_device_kv_bytes(&p), roofline_kv_bytes(&p));
    /* 8192³ in 1.4 ms: 2·8192³ / 1.4e-3 = 785.4 TFLOP/s (an H200's bf16 GEMM) */
    double t = roofline_gemm_tflops(8192, 1.4e-3);
    check(fabs(t - 2.0 * 8192 * 8192 * 8192 / 1.4e-3 / 1e12) < 1e-9 && fabs(t - 785.4) < 0.1,
          "gpu roof: 8192³ GEMM in 1.4 ms is 785 TFLOP/s", "got %.3f", t);
    check(isnan(roofline_gemm_tflops(8192, 0)) && isnan(roofline_gemm_tflops(8192, -1)),
          "gpu roof: no time, no figure", "got %g %g", roofline_gemm_tflops(8192, 0), roofline_gemm_tflops(8192, -1));
    /* 290 TFLOP/s = 290000 GFLOP/s against 785.4 TFLOP/s → 0.369; against 4 such GPUs 0.0923 */
    double f = roofline_frac_of_peak(290000, 785.4, 1), f4 = roofline_frac_of_peak(290000, 785.4, 4);
    check(fabs(f - 290000 / 785400.0) < 1e-12 && fabs(f4 - f / 4) < 1e-12,
          "gpu roof: frac_of_peak in GFLOP/s over TFLOP/s, per device", "got %g and %g", f, f4);
    /* the impossible-figure check is the CPU's: 1.2 × the GEMM is an error, 1.05 is noise */
    char why[256] = "";
    check(!roofline_check(roofline_frac_of_peak(942000, 785.4, 1), 0.5, why, sizeof why) &&
              roofline_check(roofline_frac_of_peak(824000, 785.4, 1), 0.5, why, sizeof why),
          "gpu roof: 1.2 × the measured GEMM is impossible, 1.05 × is not", "%s", why);
    /* on a GPU the message names the GPU roof, not the CPU's sgemm */
    check(!roofline_check_roof(1.2, 0.5, "GPU roof (cuBLAS bf16 GEMM)", why, sizeof why) &&
              strstr(why, "1.20 × the GPU roof (cuBLAS bf16 GEMM) measured") && !strstr(why, "sgemm"),
          "gpu roof: the impossible-figure message names the GPU roof", "%s", why);
}

/* The compute roof of the impossible-figure check: the larger of sgemm and the FMA peak, sgemm
 * alone when the FMA peak was not measured (NaN). */
static void test_compute_roof(void) {
    check(roofline_compute_roof(200, 230) == 230 && roofline_compute_roof(200, 180) == 200 &&
              roofline_compute_roof(200, NAN) == 200,
          "compute roof: max(sgemm, fma), sgemm without fma", "got %g %g %g", roofline_compute_roof(200, 230),
          roofline_compute_roof(200, 180), roofline_compute_roof(200, NAN));
    /* a fused kernel at 1.15 × sgemm but 0.92 of the cores' peak is possible; 1.2 × the peak is not */
    char why[256] = "";
    check(roofline_check(230 / roofline_compute_roof(200, 250), 0.5, why, sizeof why) &&
              !roofline_check(300 / roofline_compute_roof(200, 250), 0.5, why, sizeof why),
          "compute roof: above sgemm but under the FMA peak passes, above both is impossible", "%s", why);
}

int main(void) {
    test_compute_roof();
    test_kv_bytes();
    test_bound();
    test_check();
    test_gpu_roof();
    return check_summary();
}
