/* test_memory.c — the memory figures: attn_alloc's accounting, the analytic formulas against
 * arithmetic written out here, the capacity search, and each backend's measured workspace against
 * its declaration (within 15 %; for ulysses, an upper bound, at most 15 % over). See docs/memory.md. */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "tests/check.h"
#include "core/memory.h"
#include "model/model.h"
#include "cli/options.h"
#include "tasks/capacity.h"
#include "impls/cpu/tile_kernel.h"
#include "tasks/task.h"
#include "core/tensors.h"

static const double TOL = 0.15; /* the memory task's bound (tasks/memory_task.c) */

/* ---- accounting ---------------------------------------------------------------------------- */

static void test_accounting(void) {
    attn_err_t err = {0};
    size_t base = attn_alloc_current_bytes();
    attn_alloc_reset_peak();
    check(attn_alloc_peak_bytes() == base, "reset: peak = current", "peak %zu, current %zu", attn_alloc_peak_bytes(),
          base);
    const size_t sizes[] = {1, 63, 64, 65, 1000, 4096, 1 << 20};
    void *p[sizeof sizes / sizeof sizes[0]];
    size_t sum = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        p[i] = attn_alloc(sizes[i], &err, "test block");
        sum += sizes[i];
        char name[64];
        snprintf(name, sizeof name, "alloc %zu: 64-byte aligned", sizes[i]);
        check(p[i] && (uintptr_t)p[i] % 64 == 0, name, "got %p", p[i]);
        if (p[i])
            memset(p[i], 0xab, sizes[i]); /* the whole block is writable (ASan would object otherwise) */
        snprintf(name, sizeof name, "alloc %zu: current grows by the size", sizes[i]);
        check(attn_alloc_current_bytes() == base + sum, name, "expected %zu, got %zu", base + sum,
              attn_alloc_current_bytes());
    }
    check(attn_alloc_peak_bytes() == base + sum, "peak = all blocks", "expected %zu, got %zu", base + sum,
          attn_alloc_peak_bytes());
    attn_free(p[6]); /* the 1 MiB block */
    check(attn_alloc_current_bytes() == base + sum - sizes[6], "free: current shrinks by the size",
          "expected %zu, got %zu", base + sum - sizes[6], attn_alloc_current_bytes());
    check(attn_alloc_peak_bytes() == base + sum, "free: peak stays", "expected %zu, got %zu", base + sum,
          attn_alloc_peak_bytes());
    attn_alloc_reset_peak();
    check(attn_alloc_peak_bytes() == base + sum - sizes[6], "reset after free: peak = current",
          "expected %zu, got %zu", base + sum - sizes[6], attn_alloc_peak_bytes());
    for (int i = 0; i < 6; i++)
        attn_free(p[i]);
    attn_free(NULL);
    check(attn_alloc_current_bytes() == base, "all freed (and attn_free(NULL)): back to the baseline",
          "expected %zu, got %zu", base, attn_alloc_current_bytes());
    void *z = attn_alloc(0, &err, "empty");
    check(z && (uintptr_t)z % 64 == 0 && attn_alloc_current_bytes() == base, "alloc 0: aligned, counts 0 bytes",
          "got %p, current %zu", z, attn_alloc_current_bytes());
    attn_free(z);
    attn_err_t big = {0};
    void *huge = attn_alloc(SIZE_MAX - 10, &big, "impossible");
    check(!huge && big.code == ATTN_ERUNTIME && strstr(big.msg, "impossible") && attn_alloc_current_bytes() == base,
          "alloc SIZE_MAX - 10: refused with a message, nothing counted", "got %p, '%s'", huge, big.msg);
}

enum { THREADS = 4, ROUNDS = 20000, MAX_BLOCK = 4096 };

static void *churn(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    attn_err_t err = {0};
    for (int i = 0; i < ROUNDS; i++) {
        size_t n = 1 + (size_t)(rand_r(&seed) % MAX_BLOCK);
        unsigned char *b = attn_alloc(n, &err, "churn");
        if (!b)
            return NULL;
        b[0] = b[n - 1] = 1;
        attn_free(b);
    }
    return arg;
}

/* Each thread holds at most one block at a time, so the peak over them is at most THREADS
 * blocks; a lost update would leave current off the baseline. */
static void test_accounting_threads(void) {
    size_t base = attn_alloc_current_bytes();
    attn_alloc_reset_peak();
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1));
    int ok = 1;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        ok &= r != NULL;
    }
    size_t peak = attn_alloc_peak_bytes() - base;
    check(ok && attn_alloc_current_bytes() == base, "threads: current back to the baseline",
          "expected %zu, got %zu", base, attn_alloc_current_bytes());
    check(peak >= MAX_BLOCK / 2 && peak <= (size_t)THREADS * MAX_BLOCK, "threads: peak within one block per thread",
          "expected %d..%d, got %zu", MAX_BLOCK / 2, THREADS * MAX_BLOCK, peak);
}

/* ---- analytic formulas --------------------------------------------------------------------- */

static void test_kv_cache(void) {
    model_config_t seven;
    model_config_defaults(&seven);
    seven.num_hidden_layers = 32, seven.num_attention_heads = 32, seven.num_key_value_heads = 32;
    seven.head_dim = 128, seven.hidden_size = 4096;
    const struct {
        int64_t n;
        uint64_t want; /* 2 · n · 32 · 32 · 128 · 2 = n · 524288 */
    } cases[] = {{4096, UINT64_C(2147483648)}, {32768, UINT64_C(17179869184)},
                 {131072, UINT64_C(68719476736)}, {1048576, UINT64_C(549755813888)}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "kv_cache 7B-class f16 n=%" PRId64, cases[i].n);
        uint64_t got = kv_cache_bytes(&seven, cases[i].n, 2);
        check(got == cases[i].want, name, "expected %" PRIu64 ", got %" PRIu64, cases[i].want, got);
    }
    /* The formula is what model_cache_init really allocates. */
    model_config_t c;
    model_config_defaults(&c);
    const attn_dtype_t dts[] = {ATTN_F32, ATTN_F64};
    for (int i = 0; i < 2; i++) {
        attn_err_t err = {0};
        model_cache_t cache;
        size_t before = attn_alloc_current_bytes();
        int rc = model_cache_init(&cache, &c, dts[i], 1000, &err);
        uint64_t got = attn_alloc_current_bytes() - before, want = kv_cache_bytes(&c, 1000, dtype_size(dts[i]));
        char name[64];
        snprintf(name, sizeof name, "model_cache_init %s allocates kv_cache_bytes", dtype_name(dts[i]));
        check(rc == ATTN_OK && got == want, name, "expected %" PRIu64 ", got %" PRIu64 " (%s)", want, got, err.msg);
        if (rc == ATTN_OK)
            model_cache_free(&cache);
    }
}

typedef struct {
    const char *backend;
    attn_problem_t p;
    attn_exec_t x;
    uint64_t want;       /* worked out by hand in the comment: the sgemm tile path */
    uint64_t want_fused; /* the same where the fused tile kernel runs (tile_kernel.h); 0: as want */
} ws_case_t;

static const ws_case_t ws_cases[] = {
    /* naive: min(threads, B·H) workers, each S (n_q·n_k) and Kᵀ (d·n_k): 2·(300·300 + 32·300)·4 */
    {"naive", {.batch = 1, .heads = 4, .kv_heads = 2, .head_dim = 32, .n_q = 300, .n_k = 300}, {.threads = 2, .layout = -1},
     796800, 0},
    /* min(8, 6) = 6 workers in f64: 6·(50·120 + 16·120)·8 */
    {"naive", {.batch = 2, .heads = 3, .kv_heads = 1, .head_dim = 16, .n_q = 50, .n_k = 120,
               .dtype = ATTN_F64}, {.threads = 8, .layout = -1}, 380160, 0},
    /* naive_blas: one S (n_q·n_k) and three row vectors: (200·300 + 3·200)·4 */
    {"naive_blas", {.batch = 1, .heads = 4, .kv_heads = 2, .head_dim = 32, .n_q = 200, .n_k = 300},
     {.threads = 2, .layout = -1}, 242400, 0},
    /* blockwise: min(threads, B·H·⌈n_q/128⌉) = min(2, 16) workers of 128·(256 + 3) floats.
     * Fused (96 × 128 tiles, 48-row strips): min(2, 2·⌈1000/96⌉) = 2 workers of
     * 2 strips·48·(2·64 + 4) + 128·48 = 18816 floats */
    {"blockwise", {.batch = 1, .heads = 2, .kv_heads = 2, .head_dim = 64, .n_q = 1000, .n_k = 1000},
     {.threads = 2, .layout = -1}, 265216, 150528},
    {"blockwise_blas", {.batch = 1, .heads = 2, .kv_heads = 2, .head_dim = 64, .n_q = 1000, .n_k = 1000},
     {.threads = 2, .layout = -1}, 265216, 265216},
    /* 16×32 tiles, ⌈80/16⌉ = 5 items for 2 threads: 2 workers of 16·35 floats. Fused: one
     * 48-row strip·(2·8 + 4) + 32·48 = 2496 floats a worker */
    {"blockwise", {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = 8, .n_q = 80, .n_k = 100, .block_q = 16,
                   .block_k = 32}, {.threads = 2, .layout = -1}, 4480, 19968},
    /* n_q = 20 ≤ 64: the decode split plan (docs/decode.md), fused kernel or not. Causal keys [0, 40): 2 key
     * tiles, 2 query tiles, 4 threads × 2 waves want 4 splits but a chunk keeps ≥ 4 key tiles: split 1.
     * Partials 20 rows × (8 + 1) floats, and min(4, 2 items) = 2 workers of 16·(2·8 + 32 + 3) floats */
    {"blockwise", {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = 8, .n_q = 20, .n_k = 40, .block_q = 16,
                   .block_k = 32, .mask = ATTN_MASK_CAUSAL}, {.threads = 4, .layout = -1}, 7248, 0},
    {"sliding_window", {.batch = 1, .heads = 2, .kv_heads = 2, .head_dim = 64, .n_q = 1000, .n_k = 1000,
                        .mask = ATTN_MASK_WINDOW, .window = 100}, {.threads = 2, .layout = -1}, 265216, 150528},
    /* ring, P = 2, 256 rows a rank: Q, O, partial O (3·4·256·32), two LSEs (2·4·256), two K/V
     * blocks (4·2·256·32), in floats, plus one single-thread tile workspace (128·259·4), ×2 ranks.
     * Fused: the tile workspace is 2 strips·48·(2·32 + 4) + 128·48 = 12672 floats */
    {"ring", {.batch = 1, .heads = 4, .kv_heads = 2, .head_dim = 32, .n_q = 512, .n_k = 512},
     {.threads = 2, .ranks = 2, .layout = -1}, 1592320, 1428480},
    {"striped", {.batch = 1, .heads = 4, .kv_heads = 2, .head_dim = 32, .n_q = 512, .n_k = 512},
     {.threads = 2, .ranks = 2, .layout = -1}, 1592320, 1428480},
    {"zigzag", {.batch = 1, .heads = 4, .kv_heads = 2, .head_dim = 32, .n_q = 512, .n_k = 512},
     {.threads = 2, .ranks = 2, .layout = -1}, 1592320, 1428480},
};

static uint64_t ws_want(const ws_case_t *c) { return tile_kernel_select() && c->want_fused ? c->want_fused : c->want; }

static void test_workspace_formulas(void) {
    for (size_t i = 0; i < sizeof ws_cases / sizeof ws_cases[0]; i++) {
        const ws_case_t *c = &ws_cases[i];
        const attn_backend_t *be = registry_find(c->backend);
        uint64_t got = be ? be->workspace_bytes(be, &c->p, &c->x) : 0;
        char name[96];
        snprintf(name, sizeof name, "workspace_bytes %s case %zu", c->backend, i);
        check(got == ws_want(c), name, "expected %" PRIu64 ", got %" PRIu64, ws_want(c), got);
    }
}

/* ---- measured against declared ------------------------------------------------------------- */

/* The workspace alone: the accounting's peak during forward over what was outstanding once the
 * tensors existed. */
static void test_measured_workspace(void) {
    ws_case_t extra[] = {
        {"ulysses", {.batch = 1, .heads = 4, .kv_heads = 2, .head_dim = 32, .n_q = 512, .n_k = 512},
         {.threads = 2, .ranks = 2, .layout = -1, .local_backend = "blockwise"}, 0, 0},
        {"ulysses", {.batch = 1, .heads = 4, .kv_heads = 4, .head_dim = 16, .n_q = 300, .n_k = 300},
         {.threads = 2, .ranks = 2, .layout = -1, .local_backend = "naive"}, 0, 0},
    };
    size_t n_ws = sizeof ws_cases / sizeof ws_cases[0], n = n_ws + sizeof extra / sizeof extra[0];
    for (size_t i = 0; i < n; i++) {
        ws_case_t c = i < n_ws ? ws_cases[i] : extra[i - n_ws];
        if (!c.x.local_backend[0])
            strcpy(c.x.local_backend, "blockwise");
        if (c.p.mask == ATTN_MASK_NONE && i % 2) /* a mask on some cases: it must not change the memory */
            c.p.mask = ATTN_MASK_CAUSAL;
        const attn_backend_t *be = registry_find(c.backend);
        attn_err_t err = {0};
        char reason[256] = "", name[128];
        attn_tensors_t t;
        if (!be || !backend_supports(be, &c.p, &c.x, reason, sizeof reason) ||
            tensors_alloc(&c.p, 1, 42, &t, &err) != ATTN_OK) {
            check(0, c.backend, "case %zu cannot run: %s%s", i, reason, err.msg);
            continue;
        }
        attn_alloc_reset_peak();
        size_t before = attn_alloc_current_bytes();
        int rc = be->forward(be, &c.p, &c.x, &t.io, &err);
        double got = (double)(attn_alloc_peak_bytes() - before), want = (double)be->workspace_bytes(be, &c.p, &c.x);
        tensors_free(&t);
        int upper_only = !strcmp(c.backend, "ulysses"); /* declares every rank's local workspace at once */
        snprintf(name, sizeof name, "measured workspace %s case %zu: %.0f of %.0f declared bytes (%.4f)", c.backend, i,
                 got, want, got / want);
        check(rc == ATTN_OK && got <= want * (1 + TOL) && (upper_only || got >= want * (1 - TOL)), name,
              "outside %s of the declaration (%s)", upper_only ? "+15 %" : "±15 %", rc == ATTN_OK ? "ran" : err.msg);
    }
}

/* The memory task end to end: blockwise, where the tensors dominate, and naive, where its
 * score matrices do; alloc_to_analytic within 15 % and the record passing. */
static double metric(const attn_record_t *r, const char *name) {
    for (int m = 0; m < r->n_metrics; m++)
        if (!strcmp(r->metrics[m].name, name))
            return r->metrics[m].value;
    return -1;
}

static void test_memory_task(void) {
    attn_opts_t o;
    opts_defaults(&o);
    attn_err_t err = {0};
    const char *kv[][2] = {{"backends", "blockwise,naive"}, {"seq-len", "1024"}, {"heads", "4"}, {"kv-heads", "2"},
                           {"head-dim", "32"}, {"mask", "none,causal"}, {"threads", "2"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (opts_set(&o, kv[i][0], kv[i][1], &err) != ATTN_OK) {
            check(0, "memory task options", "%s", err.msg);
            return;
        }
    attn_run_t run;
    char *argv[] = {"test_memory"};
    if (!check(results_run_init(&run, 1, argv, o.seed, 2, &err) == ATTN_OK && task_memory(&o, &run, &err) == ATTN_OK,
               "memory task runs", "%s", err.msg))
        return;
    check(run.n_records == 4, "memory task: one record per backend and mask", "expected 4, got %d", run.n_records);
    for (int i = 0; i < run.n_records; i++) {
        const attn_record_t *r = &run.records[i];
        double ratio = metric(r, "alloc_to_analytic");
        char name[96];
        snprintf(name, sizeof name, "memory task %s %s: alloc_to_analytic %.4f", r->backend, mask_name(r->config.mask),
                 ratio);
        check(r->status == REC_PASS && ratio >= 1 - TOL && ratio <= 1 + TOL, name, "%.4f, status %s %s", ratio,
              status_name(r->status), r->reason);
    }
    results_run_free(&run);
}

/* ---- capacity -------------------------------------------------------------------------------- */

static void test_capacity_search(void) {
    /* blockwise_blas: the sgemm tile path, whose workspace the arithmetic below writes out */
    const attn_backend_t *bw = registry_find("blockwise_blas"), *nv = registry_find("naive");
    attn_problem_t p = {.batch = 1, .heads = 8, .kv_heads = 8, .head_dim = 64, .n_q = 1, .n_k = 1};
    attn_exec_t x = {.threads = 2, .layout = -1};
    /* blockwise at n: 4 tensors of 8·n·64 floats, an LSE of 8·n, and the tiles of 2 workers
     * (B·H·⌈n/128⌉ ≥ 8 items from n = 1): 8224·n + 265216 bytes. */
    const struct {
        const attn_backend_t *be;
        uint64_t budget;
        int64_t n, refined;
    } cases[] = {
        {bw, 8224 * UINT64_C(4096) + 265216, 4096, 4096},
        {bw, 8224 * UINT64_C(5000) + 265216, 4096, 5000},
        {bw, 8224 * UINT64_C(5000) + 265215, 4096, 4999},
        {bw, 265216, 0, 0},
        /* naive: 8224·n + 2·(n² + 64·n)·4 = 8·n² + 8736·n; at 1000: 16736000 */
        {nv, 16736000, 512, 1000},
        {nv, 16735999, 512, 999},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t refined = -1, n = capacity_max_seq_len(cases[i].be, &p, &x, cases[i].budget, &refined);
        char name[96];
        snprintf(name, sizeof name, "capacity %s budget %" PRIu64, cases[i].be->name, cases[i].budget);
        check(n == cases[i].n && refined == cases[i].refined, name, "expected n %" PRId64 " refined %" PRId64
              ", got %" PRId64 " and %" PRId64, cases[i].n, cases[i].refined, n, refined);
    }
    /* Large budgets: the answer's bytes fit, twice it do not. */
    const uint64_t budgets[] = {UINT64_C(1) << 34, UINT64_C(1) << 40};
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < 2; k++) {
            const attn_backend_t *be = k ? nv : bw;
            int64_t n = capacity_max_seq_len(be, &p, &x, budgets[b], NULL);
            attn_problem_t at = p, twice = p;
            at.n_q = at.n_k = n, twice.n_q = twice.n_k = 2 * n;
            char name[96];
            snprintf(name, sizeof name, "capacity %s 2^%d bytes: n fits, 2n does not", be->name, b ? 40 : 34);
            check(n > 0 && capacity_case_bytes(be, &at, &x) <= budgets[b] && capacity_case_bytes(be, &twice, &x) > budgets[b],
                  name, "n = %" PRId64 ": %" PRIu64 " and %" PRIu64 " bytes", n, capacity_case_bytes(be, &at, &x),
                  capacity_case_bytes(be, &twice, &x));
        }
}

static void test_confirm(void) {
    attn_err_t err = {0};
    size_t base = attn_alloc_current_bytes();
    attn_alloc_reset_peak();
    int rc = mem_confirm(UINT64_C(200) << 20, 0, 2, &err);
    check(rc == ATTN_OK && attn_alloc_peak_bytes() - base == (size_t)200 << 20 && attn_alloc_current_bytes() == base,
          "mem_confirm 200 MiB: allocated through attn_alloc, freed", "rc %d, peak %zu (%s)", rc,
          attn_alloc_peak_bytes() - base, err.msg);
    attn_err_t no = {0};
    rc = mem_confirm(UINT64_C(8) << 20, UINT64_MAX / 2, 2, &no); /* a reserve no machine has */
    check(rc == ATTN_ERUNTIME && strstr(no.msg, "not there") && attn_alloc_current_bytes() == base,
          "mem_confirm stops before the reserve, with a message, nothing kept", "rc %d, '%s'", rc, no.msg);
}

/* The kv_cache rows of the capacity task, with no backends (so nothing is allocated). */
static void test_kv_records(void) {
    attn_opts_t o;
    opts_defaults(&o);
    o.n_backends = 0;
    attn_err_t err = {0};
    attn_run_t run;
    char *argv[] = {"test_memory"};
    if (!check(results_run_init(&run, 1, argv, o.seed, 2, &err) == ATTN_OK && task_capacity(&o, &run, &err) == ATTN_OK,
               "capacity task (kv rows only) runs", "%s", err.msg))
        return;
    model_config_t own;
    capacity_model_config(&o, &own, &err);
    const struct {
        int i;
        uint64_t want;
    } rows[] = {{0, UINT64_C(2147483648)}, {3, UINT64_C(549755813888)}, {4, kv_cache_bytes(&own, 4096, 4)}};
    check(run.n_records == 8, "kv rows: 4 lengths × 2 configs", "expected 8, got %d", run.n_records);
    for (size_t k = 0; k < sizeof rows / sizeof rows[0] && run.n_records == 8; k++) {
        const attn_record_t *r = &run.records[rows[k].i];
        char name[96];
        snprintf(name, sizeof name, "kv row %s n=%" PRId64, r->backend, r->config.n_k);
        check(metric(r, "kv_cache_bytes") == (double)rows[k].want, name, "expected %" PRIu64 ", got %.0f",
              rows[k].want, metric(r, "kv_cache_bytes"));
    }
    /* The default run model: 4 layers, 8 kv heads (the --kv-heads default) of 64, f32: 16 KiB a token. */
    check(kv_cache_bytes(&own, 1, 4) == 2 * 4 * 8 * 64 * 4, "run model: bytes per token", "expected %d, got %" PRIu64,
          2 * 4 * 8 * 64 * 4, kv_cache_bytes(&own, 1, 4));
    results_run_free(&run);
}

int main(void) {
    task_set_progress(0);
    test_accounting();
    test_accounting_threads();
    test_kv_cache();
    test_workspace_formulas();
    test_measured_workspace();
    test_memory_task();
    test_capacity_search();
    test_confirm();
    test_kv_records();
    return check_summary();
}
