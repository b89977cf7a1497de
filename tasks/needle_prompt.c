/* needle_prompt.c — assembling a needle prompt (needle_prompt.h): needles at the requested
 * and seeded depths, keys and values drawn without repetition. */
#include "tasks/needle_prompt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

void needle_prompt_free(needle_prompt_t *p) {
    free(p->ctx), free(p->facts), free(p->question);
    memset(p, 0, sizeof *p);
}

/* A seeded draw of `count` distinct indices below `pool` (partial Fisher–Yates). */
static void draw_distinct(uint64_t seed, uint32_t stream, int pool, int count, int *out) {
    int idx[64];
    for (int i = 0; i < pool; i++)
        idx[i] = i;
    for (int i = 0; i < count; i++) {
        int j = i + (int)(rng_u64(seed, stream, (uint64_t)i) % (uint64_t)(pool - i));
        int t = idx[i];
        idx[i] = idx[j], idx[j] = t;
        out[i] = idx[i];
    }
}

int needle_prompt_build(const int32_t *hay, int64_t n, double depth, int k, const needle_vocab_t *nv,
                        const needle_text_t *text, uint64_t seed, needle_prompt_t *out, attn_err_t *err) {
    return needle_prompt_build_distracted(hay, n, depth, k, 0, nv, text, seed, out, err);
}

int needle_prompt_build_distracted(const int32_t *hay, int64_t n, double depth, int k, int64_t distractors,
                                   const needle_vocab_t *nv, const needle_text_t *text, uint64_t seed,
                                   needle_prompt_t *out, attn_err_t *err) {
    memset(out, 0, sizeof *out);
    if (k < 1 || k > 16)
        return attn_fail(err, ATTN_EUSAGE, "needles: %d (1 … 16: there are 16 keys and 64 value symbols)", k);
    if (!(depth >= 0 && depth <= 100))
        return attn_fail(err, ATTN_EUSAGE, "needle depth %g%% (0 … 100)", depth);
    int64_t needle_len = text->n_intro + 1 + NEEDLE_VALUE_LEN + text->n_outro;
    int64_t q_len = text->n_qprefix + 1, hay_len = n - q_len - (k + distractors) * needle_len;
    if (hay_len < 0)
        return attn_fail(err, ATTN_EUSAGE,
                         "needle: %lld tokens cannot hold %d needle(s) and %lld distractor(s) of %lld and a question of %lld",
                         (long long)n, k, (long long)distractors, (long long)needle_len, (long long)q_len);
    out->n = n, out->n_ctx = n - q_len, out->n_facts = k, out->n_question = q_len;
    out->ctx = malloc((size_t)out->n_ctx * sizeof *out->ctx);
    out->facts = calloc((size_t)k, sizeof *out->facts);
    out->question = malloc((size_t)q_len * sizeof *out->question);
    if (!out->ctx || !out->facts || !out->question) {
        needle_prompt_free(out);
        return attn_fail(err, ATTN_ERUNTIME, "needle: out of memory for a %lld-token prompt", (long long)n);
    }
    int keys[16], vals[64];
    draw_distinct(seed, RNG_STREAM_NEEDLE_KEYS, 16, k, keys);
    draw_distinct(seed, RNG_STREAM_NEEDLE_VALUES, 64, k * NEEDLE_VALUE_LEN, vals);
    /* Insertion points in the haystack; facts placed in point order, ties in draw order. */
    int64_t at[16];
    int order[16];
    for (int f = 0; f < k; f++) {
        at[f] = f == 0 ? (int64_t)llround(depth / 100.0 * (double)hay_len)
                       : (int64_t)(rng_u64(seed, RNG_STREAM_NEEDLE_POS, (uint64_t)f) % (uint64_t)(hay_len + 1));
        order[f] = f;
        out->facts[f].key = nv->key_ids[keys[f]];
        for (int v = 0; v < NEEDLE_VALUE_LEN; v++)
            out->facts[f].value[v] = nv->value_ids[vals[f * NEEDLE_VALUE_LEN + v]];
    }
    for (int i = 1; i < k; i++) /* insertion sort: k ≤ 16 */
        for (int j = i; j > 0 && at[order[j]] < at[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    /* Distractors: the needle sentence with a key and values no fact uses, one at a seeded
     * point in each of D equal spans of the haystack; a fact at the same point goes first. */
    int spare[16], n_spare = 0, spare_v[64], n_spare_v = 0;
    for (int s = 0; s < 16; s++) {
        int used = 0;
        for (int f = 0; f < k; f++)
            used |= keys[f] == s;
        if (!used)
            spare[n_spare++] = s;
    }
    /* nor a value symbol of a fact: decoding asks for the token after each value it produced */
    for (int s = 0; s < 64; s++) {
        int used = 0;
        for (int f = 0; f < k * NEEDLE_VALUE_LEN; f++)
            used |= vals[f] == s;
        if (!used)
            spare_v[n_spare_v++] = s;
    }
    int64_t w = 0, h = 0, d = 0;
    int i = 0;
    for (;;) {
        int64_t next_f = i < k ? at[order[i]] : hay_len + 1;
        int64_t next_d = hay_len + 1;
        if (d < distractors && n_spare && n_spare_v) { /* stratified: distractor d in the d-th of D equal spans */
            double u = (double)(rng_u64(seed, RNG_STREAM_NEEDLE_DISTRACTORS, (uint64_t)d) >> 11) * 0x1p-53;
            next_d = ATTN_MIN((int64_t)(((double)d + u) / (double)distractors * (double)(hay_len + 1)), hay_len);
        }
        int fact = next_f <= next_d;
        int64_t upto = fact ? next_f : next_d;
        if (upto > hay_len)
            break;
        memcpy(out->ctx + w, hay + h, (size_t)(upto - h) * sizeof *hay);
        w += upto - h, h = upto;
        memcpy(out->ctx + w, text->intro, (size_t)text->n_intro * sizeof *hay);
        w += text->n_intro;
        if (fact) {
            needle_fact_t *fa = &out->facts[order[i++]];
            fa->key_pos = w;
            out->ctx[w++] = fa->key;
            memcpy(out->ctx + w, fa->value, sizeof fa->value);
            w += NEEDLE_VALUE_LEN;
        } else {
            uint64_t r = rng_u64(seed, RNG_STREAM_NEEDLE_DISTRACTORS, (uint64_t)(distractors + d));
            out->ctx[w++] = nv->key_ids[spare[r % (uint64_t)n_spare]];
            for (int v = 0; v < NEEDLE_VALUE_LEN; v++)
                out->ctx[w++] = nv->value_ids[spare_v[(r >> (8 + 8 * v)) % (uint64_t)n_spare_v]];
            d++;
        }
        memcpy(out->ctx + w, text->outro, (size_t)text->n_outro * sizeof *hay);
        w += text->n_outro;
    }
    memcpy(out->ctx + w, hay + h, (size_t)(hay_len - h) * sizeof *hay);
    w += hay_len - h;
    ATTN_ASSERT(w == out->n_ctx);
    memcpy(out->question, text->qprefix, (size_t)text->n_qprefix * sizeof *hay);
    out->question[q_len - 1] = out->facts[0].key;
    return ATTN_OK;
}

int needle_in_window(const needle_prompt_t *p, int f, int64_t w) { return p->facts[f].key_pos + 1 > p->n - 1 - w; }
