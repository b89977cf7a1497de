/* fuzz_haystack.c — fuzz target: any bytes as haystack text through the set-up's SentencePiece
 * tokenizer (datasets/tokenizer.cc) and haystack_encode (datasets/haystack.c), then needles
 * inserted into it (tasks/needle_prompt.c) and the prompt decoded back. The first 4 bytes choose
 * the context length, depth, needle count and seed; the rest is the text. The tokenizer:
 * $ATTN_FUZZ_TOKENIZER, else the build's datasets/kjv.model. */
#include <stdlib.h>
#include <string.h>

#include "datasets/haystack.h"
#include "tasks/needle_prompt.h"
#include "fuzz.h"

static attn_tokenizer_t *tok;
static needle_vocab_t nv;
static needle_text_t text;

static int32_t *encode(const char *s, int64_t *n) {
    int32_t *ids;
    size_t m;
    attn_err_t err = {0};
    if (tok_encode(tok, s, strlen(s), &ids, &m, &err) != ATTN_OK) {
        fprintf(stderr, "fuzz_haystack: %s\n", err.msg);
        abort();
    }
    *n = (int64_t)m;
    return ids;
}

/* Once: the tokenizer and the needle vocabulary, as tasks/needle.c sets them up. */
static void setup(void) {
    const char *path = getenv("ATTN_FUZZ_TOKENIZER") ? getenv("ATTN_FUZZ_TOKENIZER") : haystack_default_tokenizer();
    attn_err_t err = {0};
    if (tok_load(path, &tok, &err) != ATTN_OK) {
        fprintf(stderr, "fuzz_haystack: %s (build the datasets target or set ATTN_FUZZ_TOKENIZER)\n", err.msg);
        abort();
    }
    nv.vocab = tok_vocab_size(tok);
    char piece[16];
    for (int i = 0; i < NEEDLE_KEYS; i++)
        snprintf(piece, sizeof piece, "<k%d>", i), nv.key_ids[i] = tok_piece_to_id(tok, piece);
    for (int i = 0; i < NEEDLE_VALUES; i++)
        snprintf(piece, sizeof piece, "<v%d>", i), nv.value_ids[i] = tok_piece_to_id(tok, piece);
    int64_t nd;
    int32_t *dot = encode(".", &nd);
    nv.filler_id = nd ? dot[nd - 1] : 0;
    free(dot);
    text.intro = encode("The special magic code is", &text.n_intro);
    text.outro = encode(".", &text.n_outro);
    text.qprefix = encode("What is the special magic code? The special magic code is", &text.n_qprefix);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok)
        setup();
    if (size < 4)
        return 0;
    int64_t n = 1 + (int64_t)data[0] * 8; /* 1 … 2041: short contexts reach the "too short" refusals */
    double depth = data[1] / 255.0;
    int k = 1 + data[2] % 8;
    uint64_t seed = data[3];
    const char *body = (const char *)data + 4;
    size_t len = size - 4;

    /* Raw bytes as ids: decoding refuses the ones outside the vocabulary, never reads past it. */
    int32_t raw[16];
    size_t nraw = len / 4 < 16 ? len / 4 : 16;
    memcpy(raw, body, nraw * 4);
    char *dec = NULL;
    attn_err_t e0 = {0};
    if (tok_decode(tok, raw, nraw, &dec, &e0) == ATTN_OK)
        free(dec);

    int32_t *ids;
    size_t m;
    attn_err_t err = {0};
    if (haystack_encode(tok, "fuzz", body, len, &ids, &m, &err) != ATTN_OK)
        return 0;
    int32_t *hay = malloc((size_t)n * sizeof *hay); /* the repeat rule of haystack_corpus */
    for (int64_t at = 0; at < n; at++)
        hay[at] = ids[(size_t)at % m];
    needle_prompt_t p;
    attn_err_t e2 = {0};
    if (needle_prompt_build(hay, n, depth, k, &nv, &text, seed, &p, &e2) == ATTN_OK) {
        attn_err_t e3 = {0};
        if (tok_decode(tok, p.ctx, (size_t)p.n_ctx, &dec, &e3) == ATTN_OK)
            free(dec);
        needle_in_window(&p, 0, n / 2);
        needle_prompt_free(&p);
    }
    free(hay);
    free(ids);
    return 0;
}
