/* test_roofline.c — tasks/roofline.h with synthetic numbers, no timing: the least K/V traffic
 * of a call (visible rows only, GQA heads not counted twice), the compute/bandwidth bound, the
 * attainable roof, and the check that turns a figure above a measured roof into an error.
 * Table-driven; each failure names the case and prints expected vs got. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tests/check.h"
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

int main(void) {
    test_kv_bytes();
    test_bound();
    test_check();
    return check_summary();
}
