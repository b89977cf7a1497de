/* docs.c — see docs.h. Layouts are kept in a list that lives until the process ends (never
 * freed: records and ranks hold problems that point at them); a mutex guards the list because
 * local ranks are threads. */
#include "core/docs.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/npy.h"
#include "core/rng.h"

enum { RNG_STREAM_DOCS = 3001 };

typedef struct kept {
    struct kept *next;
    int64_t n;
    int64_t v[];
} kept_t;
static kept_t *kept_head;
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

/* A kept copy of v[0..n): an equal array kept before is returned instead of a second copy. */
const int64_t *docs_keep(const int64_t *v, int64_t n, attn_err_t *err) {
    pthread_mutex_lock(&kept_lock);
    kept_t *k = kept_head;
    while (k && !(k->n == n && !memcmp(k->v, v, (size_t)n * sizeof *v)))
        k = k->next;
    if (!k && (k = malloc(sizeof *k + (size_t)n * sizeof *v)) != NULL) {
        k->n = n;
        memcpy(k->v, v, (size_t)n * sizeof *v);
        k->next = kept_head, kept_head = k;
    }
    pthread_mutex_unlock(&kept_lock);
    if (!k)
        attn_fail(err, ATTN_ERUNTIME, "out of memory keeping a document layout of %lld values", (long long)n);
    return k ? k->v : NULL;
}

static int parse_num(const char *s, char **end, double *x) {
    errno = 0;
    *x = strtod(s, end);
    return *end != s && errno == 0 && isfinite(*x);
}

int docs_parse_spec(const char *s, docs_spec_t *out, attn_err_t *err) {
    const char *c = strchr(s, ':');
    char *e1, *e2;
    double a, b;
    size_t kl = c ? (size_t)(c - s) : 0;
    docs_dist_t d = c && kl == 7 && !strncmp(s, "uniform", 7)     ? DOCS_UNIFORM
                    : c && kl == 9 && !strncmp(s, "lognormal", 9) ? DOCS_LOGNORMAL
                                                                 : DOCS_NONE;
    if (d == DOCS_NONE || !parse_num(c + 1, &e1, &a) || *e1 != ':' || !parse_num(e1 + 1, &e2, &b) || *e2)
        return attn_fail(err, ATTN_EUSAGE, "--docs '%s': expected uniform:MIN:MAX or lognormal:MEAN:SIGMA", s);
    if (d == DOCS_UNIFORM && !(a >= 1 && b >= a && a == floor(a) && b == floor(b) && b <= 1e15))
        return attn_fail(err, ATTN_EUSAGE, "--docs '%s': need whole lengths 1 ≤ MIN ≤ MAX", s);
    if (d == DOCS_LOGNORMAL && !(b >= 0 && a <= 40 && b <= 10))
        return attn_fail(err, ATTN_EUSAGE, "--docs '%s': need SIGMA ≥ 0 (≤ 10) and MEAN ≤ 40 (log lengths)", s);
    *out = (docs_spec_t){d, a, b};
    return ATTN_OK;
}

int docs_parse_lens(const char *s, const int64_t **lens, int64_t *count, attn_err_t *err) {
    int64_t cap = 1;
    for (const char *c = s; *c; c++)
        cap += *c == ',';
    int64_t *v = malloc((size_t)cap * sizeof *v), n = 0;
    if (!v)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory reading --doc-lens");
    const char *c = s;
    int rc = ATTN_OK;
    for (; rc == ATTN_OK; n++) {
        char *end;
        errno = 0;
        long long x = strtoll(c, &end, 10);
        if (end == c || errno || x < 1 || (*end && *end != ','))
            rc = attn_fail(err, ATTN_EUSAGE, "--doc-lens: document %lld is '%.20s'; need lengths ≥ 1 separated by commas",
                           (long long)n + 1, c);
        else
            v[n] = x;
        if (rc == ATTN_OK && !*end) {
            n++;
            break;
        }
        c = end + 1;
    }
    if (rc == ATTN_OK && (*lens = docs_keep(v, n, err)) == NULL)
        rc = ATTN_ERUNTIME;
    *count = n;
    free(v);
    return rc;
}

static int keep_offsets(const int64_t *off, int64_t n_docs, int64_t n, const int64_t **out, int64_t *n_out,
                        attn_err_t *err) {
    ATTN_TRY(problem_check_docs(off, n_docs, n, err));
    if ((*out = docs_keep(off, n_docs + 1, err)) == NULL)
        return ATTN_ERUNTIME;
    *n_out = n_docs;
    return ATTN_OK;
}

int docs_from_lens(const int64_t *lens, int64_t count, int64_t n, const int64_t **off, int64_t *n_docs,
                   attn_err_t *err) {
    int64_t sum = 0;
    for (int64_t d = 0; d < count; d++)
        sum += lens[d] > 0 && sum <= n ? lens[d] : 0;
    if (sum != n)
        return attn_fail(err, ATTN_EUSAGE, "--doc-lens: the %lld lengths sum to %lld, but seq-len is %lld",
                         (long long)count, (long long)sum, (long long)n);
    int64_t *o = malloc((size_t)(count + 1) * sizeof *o);
    if (!o)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory for %lld document offsets", (long long)count + 1);
    o[0] = 0;
    for (int64_t d = 0; d < count; d++)
        o[d + 1] = o[d] + lens[d];
    int rc = keep_offsets(o, count, n, off, n_docs, err);
    free(o);
    return rc;
}

int docs_from_npy(const char *path, int64_t n, const int64_t **off, int64_t *n_docs, attn_err_t *err) {
    int64_t *v;
    size_t len;
    ATTN_TRY(npy_read_i64(path, &v, &len, err));
    int rc = len < 2 ? attn_fail(err, ATTN_EUSAGE, "%s: --cu-seqlens needs at least 2 offsets (0 and seq-len), got %zu",
                                 path, len)
                     : ATTN_OK;
    attn_err_t why = {0};
    if (rc == ATTN_OK && problem_check_docs(v, (int64_t)len - 1, n, &why) != ATTN_OK)
        rc = attn_fail(err, ATTN_EUSAGE, "%s: %s", path, why.msg);
    if (rc == ATTN_OK)
        rc = keep_offsets(v, (int64_t)len - 1, n, off, n_docs, err);
    attn_free(v);
    return rc;
}

/* Uniform on [0, 1) from 53 bits of draw i. */
static double unit(uint64_t seed, uint64_t i) { return (double)(rng_u64(seed, RNG_STREAM_DOCS, i) >> 11) * 0x1p-53; }

int docs_random(const docs_spec_t *s, int64_t n, uint64_t seed, const int64_t **off, int64_t *n_docs,
                attn_err_t *err) {
    int64_t cap = 64, count = 0;
    int64_t *o = malloc((size_t)cap * sizeof *o);
    if (!o)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory for a document layout");
    o[0] = 0;
    for (uint64_t i = 0; o[count] < n; i++) {
        double len;
        if (s->dist == DOCS_UNIFORM) {
            len = s->a + floor(unit(seed, i) * (s->b - s->a + 1));
        } else { /* Box–Muller: one normal from two uniforms (the first kept away from 0) */
            double u1 = 1.0 - unit(seed, 2 * i), u2 = unit(seed, 2 * i + 1);
            double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
            len = round(exp(s->a + s->b * z));
        }
        int64_t l = len < 1 ? 1 : len > (double)(n - o[count]) ? n - o[count] : (int64_t)len;
        if (count + 2 > cap) {
            int64_t *g = realloc(o, (size_t)(cap *= 2) * sizeof *o);
            if (!g) {
                free(o);
                return attn_fail(err, ATTN_ERUNTIME, "out of memory for a document layout");
            }
            o = g;
        }
        o[count + 1] = o[count] + l;
        count++;
    }
    int rc = keep_offsets(o, count, n, off, n_docs, err);
    free(o);
    return rc;
}

docs_summary_t docs_summary(const int64_t *off, int64_t n_docs) {
    docs_summary_t s = {.count = n_docs, .min = INT64_MAX, .max = 0, .hash = 0xcbf29ce484222325ull};
    for (int64_t d = 0; d <= n_docs; d++) {
        uint64_t x = (uint64_t)off[d];
        for (int b = 0; b < 8; b++)
            s.hash = (s.hash ^ ((x >> (8 * b)) & 0xff)) * 0x100000001b3ull;
        if (d < n_docs) {
            int64_t l = off[d + 1] - off[d];
            s.min = l < s.min ? l : s.min, s.max = l > s.max ? l : s.max;
        }
    }
    s.mean = n_docs > 0 ? (double)(off[n_docs] - off[0]) / (double)n_docs : 0;
    if (n_docs < 1)
        s.min = 0;
    return s;
}
