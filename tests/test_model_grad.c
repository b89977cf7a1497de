/* test_model_grad.c — the gradient through the shared decoder (model/backward.h): the float64
 * model's gradient w.r.t. the embedded rows against central differences of its own loss, its loss
 * against model_forward's logits, and every CPU backend's float32 gradient against the float64
 * one within 4× the float32 naive model's error (docs/backward.md "The model's gradient"). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/threads.h"
#include "model/backward.h"
#include "tests/check.h"
#include "tests/model_fixture.h"

enum { N = 23, KPOS = 4 };

static int grad(const model_t *m, const char *be, attn_dtype_t dt, int ranks, const attn_problem_t *shape,
                const double *emb, const model_loss_t *loss, double *l, double *d) {
    attn_problem_t t = *shape;
    t.dtype = dt;
    attn_exec_t x = {.threads = 2, .ranks = ranks, .layout = -1, .comm_timeout = 60, .local_backend = "blockwise"};
    model_attn_t att = {registry_find(be), &t, &x};
    attn_err_t err = {0};
    if (!att.be || model_loss_backward(m, &att, emb, N, loss, l, d, &err) != ATTN_OK) {
        printf("FAIL %s P=%d: %s\n", be, ranks, att.be ? err.msg : "no such backend");
        check_failed++;
        return 1;
    }
    return 0;
}

int main(void) {
    parallel_set_blas_threads(1);
    model_config_t cfg;
    model_config_defaults(&cfg);
    cfg.hidden_size = 32, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 4, cfg.num_key_value_heads = 2;
    cfg.head_dim = 8, cfg.intermediate_size = 48, cfg.vocab_size = 37, cfg.rotary_fraction = 0.5;
    model_t m;
    attn_err_t err = {0};
    if (model_init_random(&m, &cfg, 5, &err) != ATTN_OK) {
        printf("FAIL init: %s\n", err.msg);
        return 1;
    }
    int64_t D = cfg.hidden_size, nd = N * D, pos[KPOS] = {N - 1, 0, N / 2, N / 2};
    int32_t tok[N], target[KPOS];
    for (int i = 0; i < N; i++)
        tok[i] = (int32_t)(rng_u64(21, 1, (uint64_t)i) % (uint64_t)cfg.vocab_size);
    for (int j = 0; j < KPOS; j++)
        target[j] = (int32_t)(rng_u64(21, 2, (uint64_t)j) % (uint64_t)cfg.vocab_size);
    model_loss_t loss = {KPOS, pos, target};
    double *emb = malloc((size_t)nd * sizeof *emb), *ref = malloc((size_t)nd * sizeof *ref);
    double *base = malloc((size_t)nd * sizeof *base), *got = malloc((size_t)nd * sizeof *got);
    double *fd = malloc((size_t)nd * sizeof *fd), *logits = malloc((size_t)N * cfg.vocab_size * sizeof *logits);
    model_embed_rows(&m, tok, N, emb, &err);
    int64_t docs[] = {0, 1, 9, 17, N};
    attn_problem_t shapes[] = {{.mask = ATTN_MASK_CAUSAL}, {.mask = ATTN_MASK_NONE},
                               {.mask = ATTN_MASK_WINDOW, .window = 5}, {.mask = ATTN_MASK_CAUSAL, .n_docs = 4, .doc = docs}};
    const char *names[] = {"causal", "none", "window 5", "causal, 4 documents"};
    for (size_t sc = 0; sc < sizeof shapes / sizeof shapes[0]; sc++) {
        const attn_problem_t *sh = &shapes[sc];
        double l64;
        if (grad(&m, "naive", ATTN_F64, 1, sh, emb, &loss, &l64, ref))
            continue;
        /* The float64 gradient against central differences of the same loss: step 1e-4 on O(1)
         * inputs leaves truncation ~1e-8·|f'''| and rounding ~1e-16/1e-4, so 1e-6 has room for
         * both and none for a wrong term (a missing RoPE transpose or norm term is O(1)). */
        const double step = 1e-4;
        for (int64_t i = 0; i < nd; i++) {
            double keep = emb[i], lp, lm;
            emb[i] = keep + step;
            grad(&m, "naive", ATTN_F64, 1, sh, emb, &loss, &lp, NULL);
            emb[i] = keep - step;
            grad(&m, "naive", ATTN_F64, 1, sh, emb, &loss, &lm, NULL);
            emb[i] = keep;
            fd[i] = (lp - lm) / (2 * step);
        }
        double efd = model_fixture_rel_l2(ref, fd, (size_t)nd);
        checkf(efd < 1e-6, "%s: float64 model gradient vs central differences: rel L2 %.3g (bound 1e-6)", names[sc],
                    efd);
        /* The loss is the model's: cross-entropy of model_forward's float64 logits. */
        attn_problem_t t = *sh;
        t.dtype = ATTN_F64;
        attn_exec_t x1 = {.threads = 2, .ranks = 1, .layout = -1};
        if (model_forward(&m, NULL, registry_find("naive"), &t, &x1, tok, N, N, logits, &err) == ATTN_OK) {
            double ce = 0;
            for (int j = 0; j < KPOS; j++) {
                const double *z = logits + pos[j] * cfg.vocab_size;
                double mx = -INFINITY, s = 0;
                for (int i = 0; i < cfg.vocab_size; i++)
                    mx = fmax(mx, z[i]);
                for (int i = 0; i < cfg.vocab_size; i++)
                    s += exp(z[i] - mx);
                ce += (mx + log(s) - z[target[j]]) / KPOS;
            }
            checkf(fabs(ce - l64) <= 1e-12 * fabs(ce), "%s: loss %.15g equals model_forward's cross-entropy %.15g",
                        names[sc], l64, ce);
        } else {
            checkf(0, "%s: model_forward: %s", names[sc], err.msg);
        }
        /* Every backend's float32 gradient within 4× the float32 naive model's error. */
        if (grad(&m, "naive", ATTN_F32, 1, sh, emb, &loss, NULL, base))
            continue;
        double e0 = model_fixture_rel_l2(base, ref, (size_t)nd), tol = 4 * e0;
        checkf(e0 > 0 && e0 < 1e-5, "%s: naive f32 model gradient rel L2 %.3g vs float64", names[sc], e0);
        struct {
            const char *be;
            int ranks;
        } cases[] = {{"blockwise", 1}, {"sliding_window", 1}, {"ring", 2}, {"ring", 4}, {"striped", 2},
                     {"striped", 4}, {"zigzag", 2}, {"zigzag", 4}, {"zigzag_balanced", 2}, {"zigzag_balanced", 4},
                     {"ulysses", 2}, {"ulysses", 4}, {"usp", 2}, {"usp", 4}};
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            if (!strcmp(cases[c].be, "sliding_window") && sh->mask != ATTN_MASK_WINDOW)
                continue; /* the band only (test_grad checks it declines the rest) */
            if (grad(&m, cases[c].be, ATTN_F32, cases[c].ranks, sh, emb, &loss, NULL, got))
                continue;
            double e = model_fixture_rel_l2(got, ref, (size_t)nd);
            checkf(e <= tol, "%s: %-15s P=%d embedding gradient rel L2 %.3g (bound %.3g = 4 × %.3g)", names[sc],
                        cases[c].be, cases[c].ranks, e, tol, e0);
        }
    }
    /* Bad input is refused with a message, nothing run. */
    int64_t bad_pos[1] = {N};
    model_loss_t bad = {1, bad_pos, target};
    attn_problem_t t = {.mask = ATTN_MASK_CAUSAL, .dtype = ATTN_F64};
    attn_exec_t x1 = {.threads = 1, .ranks = 1, .layout = -1};
    model_attn_t att = {registry_find("naive"), &t, &x1};
    attn_err_t berr = {0};
    checkf(model_loss_backward(&m, &att, emb, N, &bad, NULL, got, &berr) == ATTN_EUSAGE &&
                    strstr(berr.msg, "out of range"),
                "a loss position past the sequence is refused: %s", berr.msg);
    model_free(&m);
    free(emb), free(ref), free(base), free(got), free(fd), free(logits);
    return check_summary();
}
