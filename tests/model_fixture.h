/* model_fixture.h — the small decoder the model tests share (test_model.c, test_model_bf16.c):
 * L = 2, hidden 128, H = 4, H_kv = 2, d = 32, vocab 211, seed 7, 300 seeded tokens, and the
 * relative L2 distance their logits are compared by (test_model_grad.c's gradients too), and
 * checkf. Header-only. */
#pragma once
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/rng.h"
#include "model/model.h"
#include "tests/check.h"

enum { MODEL_FIXTURE_N = 300 };

/* The model and its tokens (tok holds MODEL_FIXTURE_N); 0 and a message on failure. */
static inline int model_fixture_init(model_t *m, int32_t *tok) {
    model_config_t cfg;
    model_config_defaults(&cfg);
    cfg.hidden_size = 128, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 4, cfg.num_key_value_heads = 2;
    cfg.head_dim = 32, cfg.intermediate_size = 256, cfg.vocab_size = 211;
    attn_err_t err = {0};
    if (model_init_random(m, &cfg, 7, &err) != ATTN_OK) {
        printf("FAIL init: %s\n", err.msg);
        return 0;
    }
    for (int i = 0; i < MODEL_FIXTURE_N; i++)
        tok[i] = (int32_t)((rng_value(11, 99, (uint64_t)i) + 1.7320508) / 3.4641016 * cfg.vocab_size) % cfg.vocab_size;
    return 1;
}

static inline double model_fixture_rel_l2(const double *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* check() with the whole line formatted, measured values included, pass or fail. */
static void checkf(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static void checkf(int ok, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    check(ok, line, "outside the bound");
}
