/* needle_model.c — the constructed retrieval model (needle_model.h): embedding, the two
 * attention layers' projections and the LM head, with the residual stream laid out as in
 * docs/needle-model.md ("Shape"), where the derivation is. */
#include "tasks/needle_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/rope.h"

enum {
    HIDDEN = 256, HEAD_DIM = 128, HEADS = 2, ROT = 32, F = ROT / 2,
    N_SYM = 16 + 64 + 1, OTHER = N_SYM - 1,
    CONST = 0, A0 = 1, B0 = A0 + N_SYM, C0 = B0 + N_SYM,
    CONTENT = ROT, /* first non-rotary dim of a head: layer 1's q and k live there */
};
_Static_assert(C0 + N_SYM <= HIDDEN, "residual layout fits");
_Static_assert(CONTENT + N_SYM <= HEAD_DIM, "symbols fit the non-rotary dims");

#define THETA 10000.0

static double freq(int f) { return pow(THETA, -2.0 * f / ROT); }

/* ḡ(Δ) = (1/F)·Σ_f (1 − cos θ_f(Δ − 1)), the normalised layer-0 logit deficit of offset Δ. */
static double gap(const double *theta, int64_t delta) {
    double s = 0;
    for (int f = 0; f < F; f++)
        s += 1 - cos(theta[f] * (double)(delta - 1));
    return s / F;
}

static double leak_of(const double *g, int64_t n, double sigma) {
    double s = 0;
    for (int64_t d = 0; d < n; d++)
        if (d != 1)
            s += exp(-sigma * g[d]);
    return s;
}

/* The smallest σ (to 1 %) whose total leak over offsets 0 … n_max − 1 is under the bound, then
 * the band: the offsets past which what is left over is under the bound as well. */
static int margins(int64_t n_max, needle_margins_t *mg, attn_err_t *err) {
    double *g = malloc((size_t)n_max * sizeof *g);
    if (!g)
        return attn_fail(err, ATTN_ERUNTIME, "needle model: out of memory for %lld offsets", (long long)n_max);
    double gmin = INFINITY, theta[F];
    for (int f = 0; f < F; f++)
        theta[f] = freq(f);
    for (int64_t d = 0; d < n_max; d++) {
        g[d] = d == 1 ? 0 : gap(theta, d);
        if (d != 1 && g[d] < gmin)
            gmin = g[d];
    }
    double lo = 0, hi = 1;
    while (leak_of(g, n_max, hi) > NEEDLE_LEAK_BOUND)
        lo = hi, hi *= 2;
    while (hi - lo > 0.01 * hi) {
        double mid = 0.5 * (lo + hi);
        if (leak_of(g, n_max, mid) > NEEDLE_LEAK_BOUND)
            lo = mid;
        else
            hi = mid;
    }
    mg->n_max = n_max, mg->min_gap = gmin, mg->sigma = hi, mg->leak = leak_of(g, n_max, hi);
    /* The band only has to contain Δ = 1; a wider one costs the same tiles and holds more. */
    mg->band = 64;
    mg->beta = log((double)n_max) + log(8.0) + 1.0;
    free(g);
    return ATTN_OK;
}

static float *at(float *w, int64_t cols, int64_t row, int64_t col) { return w + row * cols + col; }

int needle_model_build(model_t *m, const needle_vocab_t *nv, int64_t n_max, needle_margins_t *mg, attn_err_t *err) {
    if (n_max < 2)
        return attn_fail(err, ATTN_EUSAGE, "needle model: sequence length %lld (need ≥ 2)", (long long)n_max);
    int *sym = malloc((size_t)nv->vocab * sizeof *sym);
    if (!sym)
        return attn_fail(err, ATTN_ERUNTIME, "needle model: out of memory");
    for (int t = 0; t < nv->vocab; t++)
        sym[t] = OTHER;
    int rc = ATTN_OK;
    for (int s = 0; s < OTHER && rc == ATTN_OK; s++) {
        int32_t id = s < 16 ? nv->key_ids[s] : nv->value_ids[s - 16];
        if (id < 0 || id >= nv->vocab || sym[id] != OTHER || id == nv->filler_id)
            rc = attn_fail(err, ATTN_EUSAGE, "needle model: symbol %d has id %d: outside the vocabulary (%d) or not unique",
                           s, id, nv->vocab);
        else
            sym[id] = s;
    }
    if (rc == ATTN_OK && (nv->filler_id < 0 || nv->filler_id >= nv->vocab))
        rc = attn_fail(err, ATTN_EUSAGE, "needle model: filler id %d outside the vocabulary", nv->filler_id);
    if (rc == ATTN_OK)
        rc = margins(n_max, mg, err);
    model_config_t c = {.hidden_size = HIDDEN, .num_hidden_layers = 2, .num_attention_heads = HEADS,
                        .num_key_value_heads = 1, .intermediate_size = 8, .vocab_size = nv->vocab,
                        .head_dim = HEAD_DIM, .rope_theta = THETA, .rotary_fraction = (double)ROT / HEAD_DIM,
                        .rms_norm_eps = 1e-6, .max_position_embeddings = 0};
    if (rc == ATTN_OK)
        rc = model_config_validate(&c, err);
    if (rc == ATTN_OK)
        rc = model_init_zero(m, &c, err);
    if (rc != ATTN_OK) {
        free(sym);
        return rc;
    }
    for (int t = 0; t < nv->vocab; t++) {
        m->embed[(int64_t)t * HIDDEN + CONST] = 1;
        m->embed[(int64_t)t * HIDDEN + A0 + sym[t]] = 1;
    }
    double scale = 1 / sqrt((double)HEAD_DIM); /* the backends' default */
    /* RMSNorm multiplies a row with k unit entries by 1/√(k/D + ε); the projections undo it. */
    double rms0 = sqrt(2.0 / HIDDEN + c.rms_norm_eps), rms1 = sqrt(3.0 / HIDDEN + c.rms_norm_eps);
    for (int l = 0; l < 2; l++) {
        model_layer_t *w = &m->layers[l];
        for (int i = 0; i < HIDDEN; i++)
            w->attn_norm[i] = w->mlp_norm[i] = 1;
        double rms = l == 0 ? rms0 : rms1;
        for (int j = 0; j < N_SYM; j++) { /* v = the token's own symbol, in dims 0 … 80 */
            *at(w->wv, HIDDEN, j, A0 + j) = (float)rms;
            for (int h = 0; h < HEADS; h++) /* the two heads agree; o averages them */
                *at(w->wo, HEADS * HEAD_DIM, (l == 0 ? B0 : C0) + j, h * HEAD_DIM + j) = 0.5f;
        }
    }
    /* Layer 0: q = a·e^{−iθ_f}, k = a in every rotary pair f (dims f, f + F), from CONST, so
     * scale·q_i·k_j = σ/F · Σ_f cos θ_f(i − j − 1): largest at Δ = 1, short by σ·ḡ(Δ) elsewhere. */
    double a = sqrt(mg->sigma / (scale * F));
    model_layer_t *w0 = &m->layers[0], *w1 = &m->layers[1];
    for (int f = 0; f < F; f++) {
        for (int h = 0; h < HEADS; h++) {
            *at(w0->wq, HIDDEN, h * HEAD_DIM + f, CONST) = (float)(a * cos(freq(f)) * rms0);
            *at(w0->wq, HIDDEN, h * HEAD_DIM + f + F, CONST) = (float)(-a * sin(freq(f)) * rms0);
        }
        *at(w0->wk, HIDDEN, f, CONST) = (float)(a * rms0);
    }
    /* Layer 1: q = β/scale on the current symbol, k = the previous symbol (B), in the
     * non-rotary dims: a logit of β where they agree and 0 elsewhere. "other" takes no part. */
    for (int s = 0; s < OTHER; s++) {
        for (int h = 0; h < HEADS; h++)
            *at(w1->wq, HIDDEN, h * HEAD_DIM + CONTENT + s, A0 + s) = (float)(mg->beta / scale * rms1);
        *at(w1->wk, HIDDEN, CONTENT + s, B0 + s) = (float)rms1;
    }
    for (int i = 0; i < HIDDEN; i++)
        m->final_norm[i] = 1;
    for (int t = 0; t < nv->vocab; t++)
        if (sym[t] != OTHER)
            m->lm_head[(int64_t)t * HIDDEN + C0 + sym[t]] = 1;
    m->lm_head[(int64_t)nv->filler_id * HIDDEN + C0 + OTHER] = 1;
    free(sym);
    return ATTN_OK;
}
