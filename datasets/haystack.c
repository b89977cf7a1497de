/* haystack.c — the token streams needles hide in (haystack.h): the tokenised corpus repeated
 * to length, or seeded noise that never holds a needle symbol. */
#include "datasets/haystack.h"

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

#ifndef ATTN_DATASETS_DIR
#define ATTN_DATASETS_DIR "build/datasets"
#endif

enum { RNG_STREAM_NOISE = 2101 };

const char *haystack_default_corpus(void) { return ATTN_DATASETS_DIR "/kjv.txt"; }
const char *haystack_default_tokenizer(void) { return ATTN_DATASETS_DIR "/kjv.model"; }

static int is_needle_piece(const char *piece) {
    return piece && piece[0] == '<' && (piece[1] == 'k' || piece[1] == 'v') && piece[2] >= '0' && piece[2] <= '9' &&
           strchr(piece, '>') && strchr(piece, '>')[1] == '\0';
}

/* The last corpus encoded: (tokenizer, path) → ids. */
static struct {
    const attn_tokenizer_t *tok;
    char path[1024];
    int32_t *ids;
    size_t n;
} cached;

static int encode_file(const attn_tokenizer_t *t, const char *path, attn_err_t *err) {
    if (cached.tok == t && !strcmp(cached.path, path))
        return ATTN_OK;
    FILE *f = fopen(path, "rb");
    if (!f)
        return attn_fail(err, ATTN_EUSAGE, "haystack %s: cannot open it", path);
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            char *grown = realloc(text, cap = 2 * cap + 65536);
            if (!grown) {
                free(text), fclose(f);
                return attn_fail(err, ATTN_ERUNTIME, "haystack %s: out of memory", path);
            }
            text = grown;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        return attn_fail(err, ATTN_EUSAGE, "haystack %s: read error", path);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = tok_encode(t, text, len, &ids, &n, err);
    free(text);
    if (rc != ATTN_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (is_needle_piece(tok_id_to_piece(t, ids[i]))) {
            attn_fail(err, ATTN_EUSAGE, "haystack %s: contains the needle symbol %s (token %zu)", path,
                      tok_id_to_piece(t, ids[i]), i);
            free(ids); /* after the message: it reads ids[i] */
            return ATTN_EUSAGE;
        }
    if (n == 0) {
        free(ids);
        return attn_fail(err, ATTN_EUSAGE, "haystack %s: empty (no tokens)", path);
    }
    free(cached.ids);
    cached.tok = t, cached.ids = ids, cached.n = n;
    snprintf(cached.path, sizeof cached.path, "%s", path);
    return ATTN_OK;
}

int haystack_corpus(const attn_tokenizer_t *t, const char *path, int64_t n, int32_t **ids, attn_err_t *err) {
    *ids = NULL;
    ATTN_TRY(encode_file(t, path, err));
    int32_t *out = malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
    if (!out)
        return attn_fail(err, ATTN_ERUNTIME, "haystack: out of memory for %lld ids", (long long)n);
    for (int64_t at = 0; at < n;) {
        size_t take = (size_t)ATTN_MIN((int64_t)cached.n, n - at);
        memcpy(out + at, cached.ids, take * sizeof *out);
        at += (int64_t)take;
    }
    *ids = out;
    return ATTN_OK;
}

int haystack_noise(const attn_tokenizer_t *t, int64_t n, uint64_t seed, int32_t **ids, attn_err_t *err) {
    *ids = NULL;
    int V = tok_vocab_size(t);
    int32_t *words = malloc((size_t)V * sizeof *words), *out = malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
    if (!words || !out) {
        free(words), free(out);
        return attn_fail(err, ATTN_ERUNTIME, "haystack: out of memory for %lld ids", (long long)n);
    }
    int nw = 0;
    for (int id = 0; id < V; id++) { /* whole-word pieces: "▁" (3 bytes in UTF-8) and at least a letter */
        const char *p = tok_id_to_piece(t, id);
        if (p && !strncmp(p, "\xe2\x96\x81", 3) && p[3] && !is_needle_piece(p))
            words[nw++] = id;
    }
    int32_t *dot;
    size_t n_dot;
    int rc = nw ? tok_encode(t, ".", 1, &dot, &n_dot, err)
                : attn_fail(err, ATTN_EUSAGE, "haystack noise: the tokenizer has no whole-word pieces");
    if (rc != ATTN_OK) {
        free(words), free(out);
        return rc;
    }
    int32_t period = n_dot ? dot[n_dot - 1] : words[0];
    free(dot);
    int64_t left = 8 + (int64_t)(rng_u64(seed, RNG_STREAM_NOISE, UINT64_MAX) % 13); /* words before a period */
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = rng_u64(seed, RNG_STREAM_NOISE, (uint64_t)i);
        if (left == 0) {
            out[i] = period;
            left = 8 + (int64_t)((r >> 40) % 13);
        } else {
            out[i] = words[r % (uint64_t)nw];
            left--;
        }
    }
    free(words);
    *ids = out;
    return ATTN_OK;
}
