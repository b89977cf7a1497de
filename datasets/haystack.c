/* haystack.c — the token streams needles hide in (haystack.h): the tokenised corpus repeated
 * to length, or seeded noise that never holds a needle symbol. */
#include "datasets/haystack.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"

#ifndef ATTN_DATASETS_DIR
#define ATTN_DATASETS_DIR "build/datasets"
#endif

enum { RNG_STREAM_NOISE = 2101 };

/* The build tree's file; when the build tree is gone (an installed attnbench, cmake/package.cmake),
 * the copy installed beside the executable: <prefix>/bin/attnbench → <prefix>/share/attnbench/datasets. */
static const char *dataset_path(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", ATTN_DATASETS_DIR, name);
    if (access(buf, R_OK) == 0)
        return buf;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = '\0';
        char installed[4200];
        snprintf(installed, sizeof installed, "%s/../share/attnbench/datasets/%s", exe, name);
        if (access(installed, R_OK) == 0 && strlen(installed) < cap)
            snprintf(buf, cap, "%s", installed);
    }
    return buf;
}
const char *haystack_default_corpus(void) {
    static char path[4200];
    return dataset_path("kjv.txt", path, sizeof path);
}
const char *haystack_default_tokenizer(void) {
    static char path[4200];
    return dataset_path("kjv.model", path, sizeof path);
}

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

int haystack_encode(const attn_tokenizer_t *t, const char *name, const char *text, size_t len, int32_t **ids,
                    size_t *n, attn_err_t *err) {
    *ids = NULL;
    *n = 0;
    ATTN_TRY(tok_encode(t, text, len, ids, n, err));
    for (size_t i = 0; i < *n; i++)
        if (is_needle_piece(tok_id_to_piece(t, (*ids)[i]))) {
            attn_fail(err, ATTN_EUSAGE, "haystack %s: contains the needle symbol %s (token %zu)", name,
                      tok_id_to_piece(t, (*ids)[i]), i);
            free(*ids); /* after the message: it reads ids[i] */
            *ids = NULL;
            return ATTN_EUSAGE;
        }
    if (*n == 0) {
        free(*ids);
        *ids = NULL;
        return attn_fail(err, ATTN_EUSAGE, "haystack %s: empty (no tokens)", name);
    }
    return ATTN_OK;
}

/* The whole file, after checking it is a regular file under the cap. O_NONBLOCK: opening a FIFO
 * with no writer would otherwise block before fstat could refuse it. */
static int read_text(const char *path, char **text, size_t *len, attn_err_t *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return attn_fail(err, ATTN_EUSAGE, "haystack %s: cannot open it: %s", path, strerror(errno));
    struct stat st = {0};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > HAYSTACK_MAX_BYTES) {
        char what[64] = "it is not a regular file";
        if (S_ISREG(st.st_mode))
            snprintf(what, sizeof what, "it has %lld bytes", (long long)st.st_size);
        close(fd);
        return attn_fail(err, ATTN_EUSAGE, "haystack %s: must be a regular file of at most %lld MiB (%s)", path,
                         HAYSTACK_MAX_BYTES >> 20, what);
    }
    size_t cap = (size_t)st.st_size, got = 0;
    char *buf = malloc(cap ? cap : 1);
    if (!buf) {
        close(fd);
        return attn_fail(err, ATTN_ERUNTIME, "haystack %s: out of memory", path);
    }
    while (got < cap) { /* a file that shrinks meanwhile ends early; one that grows is cut at its size */
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf), close(fd);
            return attn_fail(err, ATTN_EUSAGE, "haystack %s: read error: %s", path, strerror(errno));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *text = buf;
    *len = got;
    return ATTN_OK;
}

static int encode_file(const attn_tokenizer_t *t, const char *path, attn_err_t *err) {
    if (cached.tok == t && !strcmp(cached.path, path))
        return ATTN_OK;
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    ATTN_TRY(read_text(path, &text, &len, err));
    int rc = haystack_encode(t, path, text, len, &ids, &n, err);
    free(text);
    if (rc != ATTN_OK)
        return rc;
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
