/* test_model.c — the shared decoder: every backend's float32 logits against the float64 reference
 * model within 4× the float32 naive model's error (docs/tolerances.md); KV-cache decoding equals a
 * full forward; a future token never changes earlier logits; safetensors round trips bitwise.
 * usage: test_model SCRATCH_DIR */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/backend.h"
#include "impls/parallel/dist_model.h"
#include "model/model.h"
#include "core/threads.h"
#include "core/rng.h"
#include "model/safetensors.h"
#include "tests/check.h"
#include "tests/model_fixture.h"

static int forward(const model_t *m, const char *backend, attn_dtype_t dt, int ranks, attn_mask_t mask,
                   const int32_t *tok, int64_t n, int64_t n_logits, double *logits) {
    attn_problem_t t = {.mask = mask, .window = 48, .dtype = dt};
    attn_exec_t x = {.threads = 2, .ranks = ranks, .layout = -1, .comm_timeout = 60, .local_backend = "blockwise"};
    attn_err_t err = {0};
    if (dist_model_run(m, NULL, registry_find(backend), &t, &x, tok, n, n_logits, logits, &err) != ATTN_OK) {
        printf("FAIL %s: %s\n", backend, err.msg);
        check_failed++;
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *scratch = argc > 1 ? argv[1] : "/tmp";
    mkdir(scratch, 0777); /* may exist */
    parallel_set_blas_threads(2);
    enum { N = MODEL_FIXTURE_N };
    model_t m;
    int32_t tok[N];
    if (!model_fixture_init(&m, tok))
        return 1;
    const model_config_t cfg = m.cfg;
    attn_err_t err = {0};
    size_t nl = (size_t)N * cfg.vocab_size;
    double *ref = malloc(nl * sizeof *ref), *got = malloc(nl * sizeof *got), *base = malloc(nl * sizeof *base);

    struct { const char *backend; int ranks; } cases[] = {{"blockwise", 1}, {"ring", 3}, {"striped", 2},
                                                          {"zigzag", 4}, {"ulysses", 2}};
    for (int mk = 0; mk < 3; mk++) {
        attn_mask_t mask = (attn_mask_t)mk;
        if (forward(&m, "naive", ATTN_F64, 1, mask, tok, N, N, ref) || forward(&m, "naive", ATTN_F32, 1, mask, tok, N, N, base))
            continue;
        double e0 = model_fixture_rel_l2(base, ref, nl), tol = 4 * e0;
        checkf(e0 < 1e-5, "naive f32 model, mask %s: rel L2 %.3g vs the float64 model", mask_name(mask), e0);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            if (forward(&m, cases[c].backend, ATTN_F32, cases[c].ranks, mask, tok, N, N, got))
                continue;
            double e = model_fixture_rel_l2(got, ref, nl);
            checkf(e <= tol, "%-9s P=%d mask %-6s: logits rel L2 %.3g (tol %.3g)", cases[c].backend, cases[c].ranks,
                  mask_name(mask), e, tol);
        }
    }

    /* Causality, bitwise: a different last token leaves every earlier row's logits alone. */
    int32_t tok2[N];
    memcpy(tok2, tok, sizeof tok);
    tok2[N - 1] = (tok[N - 1] + 1) % cfg.vocab_size;
    if (!forward(&m, "blockwise", ATTN_F32, 1, ATTN_MASK_CAUSAL, tok, N, N, base) &&
        !forward(&m, "blockwise", ATTN_F32, 1, ATTN_MASK_CAUSAL, tok2, N, N, got)) {
        size_t rows_before = (size_t)(N - 1) * cfg.vocab_size;
        checkf(memcmp(base, got, rows_before * sizeof *got) == 0, "causal: changing token %d leaves rows 0..%d bitwise equal",
              N - 1, N - 2);
        checkf(memcmp(base + rows_before, got + rows_before, (size_t)cfg.vocab_size * sizeof *got) != 0,
              "causal: ... and changes row %d", N - 1);
    }

    /* KV cache: prefill N−4 tokens, decode 4 one at a time; each step's logits equal the full
     * forward's row (float32 rounding of a different summation order). */
    model_cache_t cache;
    attn_problem_t t = {.mask = ATTN_MASK_CAUSAL, .dtype = ATTN_F32};
    attn_exec_t x = {.threads = 2, .layout = -1};
    if (model_cache_init(&cache, &cfg, ATTN_F32, N, &err) == ATTN_OK) {
        const attn_backend_t *bw = registry_find("blockwise");
        double *step = malloc((size_t)cfg.vocab_size * sizeof *step);
        int rc = dist_model_run(&m, &cache, bw, &t, &x, tok, N - 4, 1, step, &err);
        double worst = 0;
        for (int i = N - 4; rc == ATTN_OK && i < N; i++) {
            rc = dist_model_run(&m, &cache, bw, &t, &x, tok + i, 1, 1, step, &err);
            worst = fmax(worst, model_fixture_rel_l2(step, base + (size_t)i * cfg.vocab_size, (size_t)cfg.vocab_size));
        }
        checkf(rc == ATTN_OK && worst < 1e-5 && cache.len == N, "decode with the KV cache: worst step rel L2 %.3g vs full forward%s%s",
              worst, rc ? ": " : "", rc ? err.msg : "");
        attn_err_t over = {0};
        checkf(dist_model_run(&m, &cache, bw, &t, &x, tok, 1, 1, step, &over) == ATTN_EUSAGE && strstr(over.msg, "KV cache"),
              "a full KV cache refuses more tokens: %s", over.msg);
        free(step);
        model_cache_free(&cache);
    }

    /* safetensors: save F32, load into a new model, bitwise-equal logits; BF16 loads and stays close. */
    char path[512];
    snprintf(path, sizeof path, "%s/model_f32.safetensors", scratch);
    model_t back;
    if (model_save_safetensors(&m, path, ST_F32, &err) == ATTN_OK && model_load_safetensors(&back, &cfg, path, &err) == ATTN_OK) {
        if (!forward(&back, "blockwise", ATTN_F32, 1, ATTN_MASK_CAUSAL, tok, N, N, got))
            checkf(memcmp(base, got, nl * sizeof *got) == 0, "safetensors F32 round trip: bitwise-equal logits");
        model_free(&back);
    } else {
        checkf(0, "safetensors round trip: %s", err.msg);
    }
    model_config_t wrong = cfg;
    wrong.intermediate_size = 255;
    attn_err_t serr = {0};
    checkf(model_load_safetensors(&back, &wrong, path, &serr) != ATTN_OK && strstr(serr.msg, "mlp.gate_proj"),
          "a config that disagrees with the file is refused: %s", serr.msg);

    model_free(&m);
    free(ref), free(got), free(base);
    return check_summary();
}
