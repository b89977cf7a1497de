/* test_model_bf16.c — the shared model in bf16 or f16 without a GPU (argument: bf16 | f16): the
 * model-level tolerance (tolerance_model_rel_l2: 2 × the error of the model with naive attention
 * in that dtype, against the float64 model; docs/tolerances.md) applied to CPU backends in 16-bit
 * emulation (tests/bf16_emu.h), shown to pass the exact backends and to fail a wrong mask; and the
 * 16-bit KV cache: decoding from it equals the full forward, a dtype mismatch is named as such. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"
#include "impls/parallel/dist_model.h"
#include "model/model.h"
#include "tasks/tolerance.h"
#include "tests/bf16_emu.h"
#include "tests/check.h"
#include "tests/model_fixture.h"

static int run(const model_t *m, model_cache_t *cache, const attn_backend_t *be, attn_dtype_t dt, attn_mask_t mask,
               const int32_t *tok, int64_t n, int64_t rows, double *logits, attn_err_t *err) {
    attn_problem_t t = {.mask = mask, .window = 48, .dtype = dt};
    attn_exec_t x = {.threads = 2, .layout = -1};
    return dist_model_run(m, cache, be, &t, &x, tok, n, rows, logits, err);
}

int main(int argc, char **argv) {
    attn_dtype_t dt = ATTN_BF16;
    if (argc > 1 && (!dtype_parse(argv[1], &dt) || !dtype_is_16bit(dt)))
        return printf("usage: test_model_bf16 [bf16|f16]\n"), 2;
    const double u = dt == ATTN_F16 ? 0x1p-11 : 0x1p-8; /* unit roundoff */
    const char *dn = dtype_name(dt);
    parallel_set_blas_threads(2);
    enum { N = MODEL_FIXTURE_N };
    model_t m;
    int32_t tok[N];
    if (!model_fixture_init(&m, tok))
        return 1;
    const model_config_t cfg = m.cfg;
    attn_err_t err = {0};
    size_t nl = (size_t)N * cfg.vocab_size;
    double *ref = malloc(nl * sizeof *ref), *base = malloc(nl * sizeof *base), *got = malloc(nl * sizeof *got);
    bf16_emu_t naive_bf, block_bf, window_bf;
    if (!bf16_emu_init(&naive_bf, "naive") || !bf16_emu_init(&block_bf, "blockwise") ||
        !bf16_emu_init(&window_bf, "sliding_window"))
        return printf("FAIL: CPU backends missing\n"), 1;
    const attn_backend_t *naive = registry_find("naive");
    double e0_causal = 0;

    for (int mk = 1; mk < 3; mk++) { /* causal and window: the model's masks */
        attn_mask_t mask = (attn_mask_t)mk;
        char name[200];
        if (!check(run(&m, NULL, naive, ATTN_F64, mask, tok, N, N, ref, &err) == ATTN_OK &&
                       run(&m, NULL, naive, ATTN_F32, mask, tok, N, N, got, &err) == ATTN_OK &&
                       run(&m, NULL, &naive_bf.be, dt, mask, tok, N, N, base, &err) == ATTN_OK,
                   "reference and baselines", "%s", err.msg))
            continue;
        double e32 = model_fixture_rel_l2(got, ref, nl), e0 = model_fixture_rel_l2(base, ref, nl), tol = tolerance_model_rel_l2(dt, e0);
        if (mask == ATTN_MASK_CAUSAL)
            e0_causal = e0;
        /* The baseline measures 16-bit rounding: far above float32's, below 16 u (a-priori bound). */
        snprintf(name, sizeof name, "mask %s: naive %s model rel L2 %.3g vs f32 %.3g (16 u = %.3g)", mask_name(mask), dn,
                 e0, e32, 16 * u);
        check(e0 > 30 * e32 && e0 < 16 * u, name, "not a %s-sized error", dn);
        const attn_backend_t *cands[] = {&block_bf.be, &window_bf.be};
        for (int c = 0; c < 2; c++) {
            if (c == 1 && mask != ATTN_MASK_WINDOW)
                continue;
            if (!check(run(&m, NULL, cands[c], dt, mask, tok, N, N, got, &err) == ATTN_OK, cands[c]->name, "%s", err.msg))
                continue;
            double e = model_fixture_rel_l2(got, ref, nl);
            snprintf(name, sizeof name, "%s %s mask %s: logits rel L2 %.3g within %.3g (2 × %.3g)", cands[c]->name, dn,
                     mask_name(mask), e, tol, e0);
            check(e <= tol, name, "outside the bound");
        }
        /* A wrong mask (window under a causal model, causal under a window model) must fail it. */
        attn_mask_t wrong = mask == ATTN_MASK_CAUSAL ? ATTN_MASK_WINDOW : ATTN_MASK_CAUSAL;
        if (run(&m, NULL, &block_bf.be, dt, wrong, tok, N, N, got, &err) == ATTN_OK) {
            double e = model_fixture_rel_l2(got, ref, nl);
            snprintf(name, sizeof name, "mask %s, run with %s: rel L2 %.3g fails %.3g", mask_name(mask), mask_name(wrong), e, tol);
            check(e > tol, name, "a wrong mask passes the %s bound", dn);
        }
    }
    if (dt == ATTN_F16) { /* the other 16-bit format, same model and inputs: f16 keeps 3 more bits */
        double eb = 0;
        if (run(&m, NULL, &naive_bf.be, ATTN_BF16, ATTN_MASK_CAUSAL, tok, N, N, base, &err) == ATTN_OK &&
            run(&m, NULL, naive, ATTN_F64, ATTN_MASK_CAUSAL, tok, N, N, ref, &err) == ATTN_OK)
            eb = model_fixture_rel_l2(base, ref, nl);
        char name[200];
        snprintf(name, sizeof name, "naive f16 model %.3g below naive bf16 %.3g / 3 (u ratio 8)", e0_causal, eb);
        check(e0_causal > 0 && e0_causal < eb / 3, name, "f16 is not the more precise format here");
    }

    /* 16-bit KV cache: prefill N − 4, decode 4 (the decode split path); each step equals the full
     * forward's row up to float32 summation order (the cache's rounding is the upload's). */
    model_cache_t cache;
    if (check(model_cache_init(&cache, &cfg, dt, N, &err) == ATTN_OK, "16-bit cache", "%s", err.msg) &&
        check(run(&m, NULL, &block_bf.be, dt, ATTN_MASK_CAUSAL, tok, N, N, base, &err) == ATTN_OK, "full 16-bit forward",
              "%s", err.msg)) {
        double *step = malloc((size_t)cfg.vocab_size * sizeof *step), worst = 0;
        int rc = run(&m, &cache, &block_bf.be, dt, ATTN_MASK_CAUSAL, tok, N - 4, 1, step, &err);
        for (int i = N - 4; rc == ATTN_OK && i < N; i++) {
            rc = run(&m, &cache, &block_bf.be, dt, ATTN_MASK_CAUSAL, tok + i, 1, 1, step, &err);
            worst = fmax(worst, model_fixture_rel_l2(step, base + (size_t)i * cfg.vocab_size, (size_t)cfg.vocab_size));
        }
        char name[200];
        snprintf(name, sizeof name, "decode from the %s KV cache: worst step rel L2 %.3g vs the full forward", dn, worst);
        check(rc == ATTN_OK && worst < 1e-5, name, "%s", rc ? err.msg : "too far");
        /* The cache holds values of its dtype: every stored K is its own rounding. */
        int exact = 1;
        for (int64_t i = 0; i < cache.len * cfg.num_key_value_heads * cfg.head_dim && exact; i++) {
            float k = ((const float *)cache.k[0])[i];
            exact = model_round_dtype(dt, k) == k;
        }
        snprintf(name, sizeof name, "the %s cache holds %s values", dn, dn);
        check(exact, name, "a stored K is not representable");
        /* A float32 forward may fill a 16-bit cache (the query-tail context build); a 16-bit forward
         * into a float32 cache is refused, and the message names the dtypes, not the capacity. */
        cache.len = 0;
        snprintf(name, sizeof name, "a float32 forward fills a %s cache", dn);
        check(run(&m, &cache, naive, ATTN_F32, ATTN_MASK_CAUSAL, tok, 8, 1, step, &err) == ATTN_OK && cache.len == 8, name,
              "%s", err.msg);
        model_cache_free(&cache);
        attn_err_t e2 = {0};
        if (model_cache_init(&cache, &cfg, ATTN_F32, N, &err) == ATTN_OK) {
            int bad = run(&m, &cache, &block_bf.be, dt, ATTN_MASK_CAUSAL, tok, 4, 1, step, &e2);
            char want[80];
            snprintf(want, sizeof want, "is f32 but the attention runs in %s", dn);
            snprintf(name, sizeof name, "%s attention on a float32 cache names the dtype", dn);
            check(bad == ATTN_EUSAGE && strstr(e2.msg, want) && !strstr(e2.msg, "fit"), name, "got: %s", e2.msg);
            model_cache_free(&cache);
        }
        free(step);
    }
    model_free(&m);
    free(ref), free(base), free(got);
    return check_summary();
}
