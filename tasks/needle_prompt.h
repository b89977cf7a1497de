/* needle_prompt.h — a needle-in-a-haystack prompt: haystack ids with k key → value facts
 * inserted, then a question that ends with the asked key (its value is the expected answer).
 * The token layout: docs/needle-model.md ("Prompt layout"). */
#pragma once
#include "tasks/needle_model.h"

typedef struct {
    int32_t key, value[NEEDLE_VALUE_LEN];
    int64_t key_pos; /* position of the key token in the context; its values follow it */
} needle_fact_t;

typedef struct {
    int32_t *ctx;                /* n_ctx ids: haystack and needles, no question */
    int64_t n_ctx, n;            /* n = n_ctx + question length */
    needle_fact_t *facts;        /* in the order drawn: facts[0] is the one at the grid's depth */
    int n_facts;
    int32_t *question;           /* qprefix then a placeholder for the asked key (last id) */
    int64_t n_question;
} needle_prompt_t;

typedef struct {
    const int32_t *intro, *outro, *qprefix;
    int64_t n_intro, n_outro, n_qprefix;
} needle_text_t;

/* hay must hold at least n ids. ATTN_EUSAGE when n is too short for k needles and a question. */
int needle_prompt_build(const int32_t *hay, int64_t n, double depth, int k, const needle_vocab_t *nv,
                        const needle_text_t *text, uint64_t seed, needle_prompt_t *out, attn_err_t *err);
/* The same prompt with `distractors` more needle sentences (same intro and outro, a key symbol
 * no fact uses, seeded values): text that shares all but its key and values with the asked
 * needle, the hard case for key selection (docs/approximate.md). 0 is needle_prompt_build. */
int needle_prompt_build_distracted(const int32_t *hay, int64_t n, double depth, int k, int64_t distractors,
                                   const needle_vocab_t *nv, const needle_text_t *text, uint64_t seed,
                                   needle_prompt_t *out, attn_err_t *err);
void needle_prompt_free(needle_prompt_t *p);

/* 1 when a sliding window of w keys (i − w < j ≤ i) reaches fact f's values at every decoding
 * step after the question: step m queries from n − 1 + m and needs key_pos + 1 + m, so the
 * condition key_pos + 1 > n − 1 − w is the same for every step. */
int needle_in_window(const needle_prompt_t *p, int f, int64_t w);
