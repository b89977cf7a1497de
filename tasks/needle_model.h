/* needle_model.h — the retrieval model of the needle task: a shared-transformer instance whose
 * weights are constructed so that answering needs attention to reach the needle (layer 0 a
 * previous-token head, layer 1 a key-match head). The math: docs/needle-model.md. */
#pragma once
#include "model/model.h"

enum { NEEDLE_VALUE_LEN = 4 }; /* value symbols per needle */

typedef struct {
    int vocab;                                 /* the tokenizer's size */
    int32_t key_ids[16], value_ids[64];        /* ids of <k0>…<k15>, <v0>…<v63> */
    int32_t filler_id;                         /* what "no needle found" decodes to */
} needle_vocab_t;

typedef struct {
    int64_t n_max;   /* the longest sequence (prompt + answer) the margins hold for */
    double min_gap;  /* layer 0: min over Δ ≠ 1 of ḡ(Δ) = (1/F)·Σ_f (1 − cos θ_f(Δ − 1)) */
    double sigma;    /* layer 0: logit(Δ = 1) − logit(Δ) = σ·ḡ(Δ) */
    double leak;     /* layer 0: Σ_{Δ≠1, Δ<n_max} e^(−σ·ḡ(Δ)), the weight off the previous token */
    double beta;     /* layer 1: key-match logit over a non-match, ln(n_max) + ln 8 + 1 */
    int band;        /* keys i−band < j ≤ i hold all but `leak` of layer 0's weight */
} needle_margins_t;

/* Builds the model for sequences up to n_max tokens: config (hidden 256, 2 layers, 2 heads of
 * 128, 1 kv head, RoPE θ 10⁴ on 32 dims, vocab nv->vocab) and weights; fills *mg. Ids must be
 * distinct and inside the vocabulary. */
int needle_model_build(model_t *m, const needle_vocab_t *nv, int64_t n_max, needle_margins_t *mg, attn_err_t *err);

/* The float32 resolution the layer-0 leak is held under: 2^−26, a quarter of the half-ulp of 1. */
#define NEEDLE_LEAK_BOUND (1.0 / 67108864.0)
