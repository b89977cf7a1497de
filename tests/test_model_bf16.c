/* test_model_bf16.c — the shared model in bf16 without a GPU: the model-level bf16 tolerance
 * (tolerance_model_rel_l2: 2 × the error of the model with naive attention in bf16, against the
 * float64 model; docs/tolerances.md) applied to CPU backends in bf16 emulation (tests/bf16_emu.h),
 * shown to pass the exact backends and to fail a wrong mask; and the bf16 KV cache: decoding
 * from it equals the full forward, a dtype mismatch is named as such. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/threads.h"
#include "impls/parallel/dist_model.h"
#include "model/model.h"
#include "tasks/tolerance.h"
#include "tests/bf16_emu.h"
#include "tests/check.h"

static double rel_l2(const double *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static int run(const model_t *m, model_cache_t *cache, const attn_backend_t *be, attn_dtype_t dt, attn_mask_t mask,
               const int32_t *tok, int64_t n, int64_t rows, double *logits, attn_err_t *err) {
    attn_problem_t t = {.mask = mask, .window = 48, .dtype = dt};
    attn_exec_t x = {.threads = 2, .layout = -1};
    return dist_model_run(m, cache, be, &t, &x, tok, n, rows, logits, err);
}

int main(void) {
    parallel_set_blas_threads(2);
    model_config_t cfg;
    model_config_defaults(&cfg);
    cfg.hidden_size = 128, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 4, cfg.num_key_value_heads = 2;
    cfg.head_dim = 32, cfg.intermediate_size = 256, cfg.vocab_size = 211;
    model_t m;
    attn_err_t err = {0};
    if (model_init_random(&m, &cfg, 7, &err) != ATTN_OK) {
        printf("FAIL init: %s\n", err.msg);
        return 1;
    }
    enum { N = 300 };
    int32_t tok[N];
    for (int i = 0; i < N; i++)
        tok[i] = (int32_t)((rng_value(11, 99, (uint64_t)i) + 1.7320508) / 3.4641016 * cfg.vocab_size) % cfg.vocab_size;
    size_t nl = (size_t)N * cfg.vocab_size;
    double *ref = malloc(nl * sizeof *ref), *base = malloc(nl * sizeof *base), *got = malloc(nl * sizeof *got);
    bf16_emu_t naive_bf, block_bf, window_bf;
    if (!bf16_emu_init(&naive_bf, "naive") || !bf16_emu_init(&block_bf, "blockwise") ||
        !bf16_emu_init(&window_bf, "sliding_window"))
        return printf("FAIL: CPU backends missing\n"), 1;
    const attn_backend_t *naive = registry_find("naive");

    for (int mk = 1; mk < 3; mk++) { /* causal and window: the model's masks */
        attn_mask_t mask = (attn_mask_t)mk;
        char name[160];
        if (!check(run(&m, NULL, naive, ATTN_F64, mask, tok, N, N, ref, &err) == ATTN_OK &&
                       run(&m, NULL, naive, ATTN_F32, mask, tok, N, N, got, &err) == ATTN_OK &&
                       run(&m, NULL, &naive_bf.be, ATTN_BF16, mask, tok, N, N, base, &err) == ATTN_OK,
                   "reference and baselines", "%s", err.msg))
            continue;
        double e32 = rel_l2(got, ref, nl), e0 = rel_l2(base, ref, nl), tol = tolerance_model_rel_l2(ATTN_BF16, e0);
        /* The bf16 baseline measures bf16 rounding: far above float32's, below 16 u (a-priori bound). */
        snprintf(name, sizeof name, "mask %s: naive bf16 model rel L2 %.3g vs f32 %.3g", mask_name(mask), e0, e32);
        check(e0 > 30 * e32 && e0 < 0.0625, name, "not a bf16-sized error");
        const attn_backend_t *cands[] = {&block_bf.be, &window_bf.be};
        for (int c = 0; c < 2; c++) {
            if (c == 1 && mask != ATTN_MASK_WINDOW)
                continue;
            if (!check(run(&m, NULL, cands[c], ATTN_BF16, mask, tok, N, N, got, &err) == ATTN_OK, cands[c]->name, "%s", err.msg))
                continue;
            double e = rel_l2(got, ref, nl);
            snprintf(name, sizeof name, "%s mask %s: logits rel L2 %.3g within %.3g (2 × %.3g)", cands[c]->name,
                     mask_name(mask), e, tol, e0);
            check(e <= tol, name, "outside the bound");
        }
        /* A wrong mask (window under a causal model, causal under a window model) must fail it. */
        attn_mask_t wrong = mask == ATTN_MASK_CAUSAL ? ATTN_MASK_WINDOW : ATTN_MASK_CAUSAL;
        if (run(&m, NULL, &block_bf.be, ATTN_BF16, wrong, tok, N, N, got, &err) == ATTN_OK) {
            double e = rel_l2(got, ref, nl);
            snprintf(name, sizeof name, "mask %s, run with %s: rel L2 %.3g fails %.3g", mask_name(mask), mask_name(wrong), e, tol);
            check(e > tol, name, "a wrong mask passes the bf16 bound");
        }
    }

    /* bf16 KV cache: prefill N − 4, decode 4 (the decode split path); each step equals the full
     * bf16 forward's row up to float32 summation order (the cache's rounding is the upload's). */
    model_cache_t cache;
    if (check(model_cache_init(&cache, &cfg, ATTN_BF16, N, &err) == ATTN_OK, "bf16 cache", "%s", err.msg) &&
        check(run(&m, NULL, &block_bf.be, ATTN_BF16, ATTN_MASK_CAUSAL, tok, N, N, base, &err) == ATTN_OK, "full bf16 forward",
              "%s", err.msg)) {
        double *step = malloc((size_t)cfg.vocab_size * sizeof *step), worst = 0;
        int rc = run(&m, &cache, &block_bf.be, ATTN_BF16, ATTN_MASK_CAUSAL, tok, N - 4, 1, step, &err);
        for (int i = N - 4; rc == ATTN_OK && i < N; i++) {
            rc = run(&m, &cache, &block_bf.be, ATTN_BF16, ATTN_MASK_CAUSAL, tok + i, 1, 1, step, &err);
            worst = fmax(worst, rel_l2(step, base + (size_t)i * cfg.vocab_size, (size_t)cfg.vocab_size));
        }
        char name[160];
        snprintf(name, sizeof name, "decode from the bf16 KV cache: worst step rel L2 %.3g vs the full forward", worst);
        check(rc == ATTN_OK && worst < 1e-5, name, "%s", rc ? err.msg : "too far");
        /* A float32 forward may fill a bf16 cache (the query-tail context build); a bf16 forward
         * into a float32 cache is refused, and the message names the dtypes, not the capacity. */
        cache.len = 0;
        check(run(&m, &cache, naive, ATTN_F32, ATTN_MASK_CAUSAL, tok, 8, 1, step, &err) == ATTN_OK && cache.len == 8,
              "a float32 forward fills a bf16 cache", "%s", err.msg);
        model_cache_free(&cache);
        attn_err_t e2 = {0};
        if (model_cache_init(&cache, &cfg, ATTN_F32, N, &err) == ATTN_OK) {
            int bad = run(&m, &cache, &block_bf.be, ATTN_BF16, ATTN_MASK_CAUSAL, tok, 4, 1, step, &e2);
            check(bad == ATTN_EUSAGE && strstr(e2.msg, "is f32 but the attention runs in bf16") && !strstr(e2.msg, "fit"),
                  "bf16 attention on a float32 cache names the dtype", "got: %s", e2.msg);
            model_cache_free(&cache);
        }
        free(step);
    }
    model_free(&m);
    free(ref), free(base), free(got);
    return check_summary();
}
