/* test_tokenizer.c — the SentencePiece wrapper and the haystacks: KJV round trip (up to the
 * whitespace normalisation, applied here too), deterministic training, bad model files as errors,
 * needle symbols as single ids, the corpus repeat rule, seeded noise without needle symbols.
 * usage: test_tokenizer MODEL CORPUS SCRATCH_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/haystack.h"
#include "tests/check.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc(*len + 1);
    if (s && fread(s, 1, *len, f) != *len)
        *len = 0;
    fclose(f);
    if (s)
        s[*len] = '\0';
    return s;
}

static int write_file(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* SentencePiece's default normaliser on ASCII text: whitespace runs become one space, leading
 * and trailing whitespace go. */
static char *collapse(const char *s) {
    char *out = malloc(strlen(s) + 1), *w = out;
    int space = 0;
    for (; *s; s++) {
        if (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') {
            space = w != out;
            continue;
        }
        if (space)
            *w++ = ' ';
        space = 0;
        *w++ = *s;
    }
    *w = '\0';
    return out;
}

static int is_symbol(const attn_tokenizer_t *t, int32_t id) {
    const char *p = tok_id_to_piece(t, id);
    return p && p[0] == '<' && (p[1] == 'k' || p[1] == 'v');
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: test_tokenizer MODEL CORPUS SCRATCH_DIR\n");
        return 2;
    }
    const char *model = argv[1], *corpus = argv[2], *scratch = argv[3];
    mkdir(scratch, 0755);
    attn_err_t err = {0};
    attn_tokenizer_t *t;
    if (!check(tok_load(model, &t, &err) == ATTN_OK, "load the set-up's tokenizer", "%s", err.msg))
        return check_summary();
    char line[512];
    snprintf(line, sizeof line, "vocabulary of %d pieces", tok_vocab_size(t));
    check(tok_vocab_size(t) == 8000, line, "expected 8000");

    /* Round trip on the whole corpus. */
    size_t len;
    char *text = slurp(corpus, &len);
    int32_t *ids = NULL;
    size_t n = 0;
    char *back = NULL;
    if (check(text && len > 4000000, "read the KJV corpus", "%s: %zu bytes", corpus, text ? len : 0) &&
        check(tok_encode(t, text, len, &ids, &n, &err) == ATTN_OK && tok_decode(t, ids, n, &back, &err) == ATTN_OK,
              "encode and decode the corpus", "%s", err.msg)) {
        char *want = collapse(text);
        snprintf(line, sizeof line, "decode(encode(KJV)) equals the whitespace-normalised text (%zu tokens)", n);
        check(!strcmp(back, want), line, "the texts differ");
        int sym = 0;
        for (size_t i = 0; i < n; i++)
            sym |= is_symbol(t, ids[i]);
        check(!sym, "no needle symbol in the encoded corpus", "found one");
        free(want);
    }

    /* Needle symbols: one id each, in order, also written back to back. */
    int all_single = 1;
    char piece[16];
    for (int i = 0; i < NEEDLE_KEYS + NEEDLE_VALUES; i++) {
        snprintf(piece, sizeof piece, i < NEEDLE_KEYS ? "<k%d>" : "<v%d>", i < NEEDLE_KEYS ? i : i - NEEDLE_KEYS);
        all_single &= tok_piece_to_id(t, piece) >= 0;
    }
    check(all_single, "all 80 needle symbols are pieces", "one is missing");
    check(tok_piece_to_id(t, "<k16>") == -1 && tok_piece_to_id(t, "no such piece") == -1,
          "pieces outside the vocabulary give -1", "got an id");
    int32_t *sy;
    size_t ns;
    const char *seq = "code is <k3><v17><v2><v40><v9>.";
    if (check(tok_encode(t, seq, strlen(seq), &sy, &ns, &err) == ATTN_OK, "encode a needle", "%s", err.msg)) {
        int found = 0;
        for (size_t i = 0; i + 4 < ns; i++)
            found |= sy[i] == tok_piece_to_id(t, "<k3>") && sy[i + 1] == tok_piece_to_id(t, "<v17>") &&
                     sy[i + 2] == tok_piece_to_id(t, "<v2>") && sy[i + 3] == tok_piece_to_id(t, "<v40>") &&
                     sy[i + 4] == tok_piece_to_id(t, "<v9>");
        check(found, "<k3><v17><v2><v40><v9> encodes to those five ids in a row", "not found");
        free(sy);
    }
    int32_t badid = 8000;
    char *bt;
    check(tok_decode(t, &badid, 1, &bt, &err) == ATTN_EUSAGE && strstr(err.msg, "outside the vocabulary"),
          "decoding an id outside the vocabulary is an error", "%s", err.msg);

    /* Training: the same corpus and prefix name in two directories give identical bytes and ids. */
    char dir[2][600], corpus_small[600], prefix[1300], mpath[2][1400];
    snprintf(corpus_small, sizeof corpus_small, "%s/small.txt", scratch);
    write_file(corpus_small, text, text && len > 300000 ? 300000 : 0);
    const char *syms[] = {"<k0>", "<v0>", "<v1>"};
    for (int i = 0; i < 2; i++) {
        snprintf(dir[i], sizeof dir[i], "%s/train%d", scratch, i);
        mkdir(dir[i], 0755);
        snprintf(prefix, sizeof prefix, "%s/tiny", dir[i]);
        snprintf(mpath[i], sizeof mpath[i], "%s.model", prefix);
        attn_err_t terr = {0};
        check(tok_train(corpus_small, prefix, 1000, syms, 3, &terr) == ATTN_OK, "train a 1000-piece model", "%s",
              terr.msg);
    }
    size_t l0, l1;
    char *m0 = slurp(mpath[0], &l0), *m1 = slurp(mpath[1], &l1);
    snprintf(line, sizeof line, "two trainings give byte-identical models (%zu bytes)", m0 ? l0 : 0);
    check(m0 && m1 && l0 == l1 && l0 > 0 && !memcmp(m0, m1, l0), line, "they differ");
    attn_tokenizer_t *a, *b;
    if (check(tok_load(mpath[0], &a, &err) == ATTN_OK && tok_load(mpath[1], &b, &err) == ATTN_OK,
              "load both trained models", "%s", err.msg)) {
        int32_t *ia, *ib;
        size_t na, nb;
        const char *s = "And God said, Let there be light <k0><v1>";
        tok_encode(a, s, strlen(s), &ia, &na, &err);
        tok_encode(b, s, strlen(s), &ib, &nb, &err);
        check(na == nb && na > 0 && !memcmp(ia, ib, na * sizeof *ia) && tok_vocab_size(a) == 1000,
              "trained → loaded models give the same ids", "ids differ");
        free(ia), free(ib);
        tok_free(a), tok_free(b);
    }
    attn_err_t terr = {0};
    check(tok_train(scratch, prefix, 1000, NULL, 0, &terr) != ATTN_OK && terr.msg[0], "training on a directory fails",
          "no error");

    /* Bad model files: missing, truncated, garbage, a directory: bad input, naming the path. */
    char bad[1400];
    snprintf(bad, sizeof bad, "%s/truncated.model", scratch);
    write_file(bad, m0, m0 ? l0 / 3 : 0);
    const char *cases[][2] = {{"/nonexistent/x.model", "missing"}, {bad, "truncated"}, {corpus_small, "a text file"},
                              {scratch, "a directory"}};
    for (int i = 0; i < 4; i++) {
        attn_tokenizer_t *x = (attn_tokenizer_t *)1;
        attn_err_t berr = {0};
        snprintf(line, sizeof line, "%s model file → error", cases[i][1]);
        check(tok_load(cases[i][0], &x, &berr) == ATTN_EUSAGE && !x && strstr(berr.msg, cases[i][0]), line, "%s",
              berr.msg);
    }
    free(m0), free(m1);

    /* Haystacks. */
    int32_t *h1, *h2;
    int64_t big = (int64_t)n + 5000;
    if (check(haystack_corpus(t, corpus, 1000, &h1, &err) == ATTN_OK, "corpus haystack of 1000", "%s", err.msg)) {
        check(!memcmp(h1, ids, 1000 * sizeof *h1), "a short haystack is the corpus's first ids", "differs");
        free(h1);
    }
    if (check(haystack_corpus(t, corpus, big, &h1, &err) == ATTN_OK, "corpus haystack longer than the corpus", "%s",
              err.msg)) {
        check(!memcmp(h1, ids, n * sizeof *h1) && !memcmp(h1 + n, ids, 5000 * sizeof *h1),
              "past the corpus's end the ids start again from its first", "the seam differs");
        free(h1);
    }
    snprintf(bad, sizeof bad, "%s/empty.txt", scratch);
    write_file(bad, "", 0);
    err = (attn_err_t){0};
    check(haystack_corpus(t, bad, 10, &h1, &err) == ATTN_EUSAGE && strstr(err.msg, "empty"), "an empty corpus is an error",
          "%s", err.msg);
    snprintf(bad, sizeof bad, "%s/needles.txt", scratch);
    write_file(bad, "hide <k1> here", 14);
    err = (attn_err_t){0};
    check(haystack_corpus(t, bad, 10, &h1, &err) == ATTN_EUSAGE && strstr(err.msg, "needle symbol"),
          "a corpus holding a needle symbol is an error", "%s", err.msg);
    if (check(haystack_noise(t, 100000, 5, &h1, &err) == ATTN_OK && haystack_noise(t, 100000, 5, &h2, &err) == ATTN_OK,
              "noise haystacks", "%s", err.msg)) {
        check(!memcmp(h1, h2, 100000 * sizeof *h1), "the same seed gives the same noise", "differs");
        free(h2);
        haystack_noise(t, 100000, 6, &h2, &err);
        check(memcmp(h1, h2, 100000 * sizeof *h1), "another seed gives other noise", "identical");
        int sym = 0, periods = 0;
        int32_t dot = tok_piece_to_id(t, ".");
        for (int i = 0; i < 100000; i++)
            sym |= is_symbol(t, h1[i]), periods += h1[i] == dot;
        snprintf(line, sizeof line, "noise: no needle symbol, a period every 9–21 tokens (%d in 100000)", periods);
        check(!sym && periods >= 100000 / 21 && periods <= 100000 / 9 + 1, line, "wrong");
        free(h1), free(h2);
    }
    free(ids), free(back), free(text);
    tok_free(t);
    return check_summary();
}
