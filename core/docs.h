/* docs.h — packed-document layouts: the offsets (cu_seqlens) of the documents one sequence of n
 * tokens packs, from a list of lengths (--doc-lens), a .npy file (--cu-seqlens) or a seeded
 * distribution (--docs uniform:MIN:MAX | lognormal:MEAN:SIGMA), checked and kept for the life of
 * the process so that problems (attn_problem_t.doc) and their copies may point at them. */
#pragma once
#include "core/problem.h"

/* A random layout: lengths uniform on [a, b] (integers), or lognormal: round(exp(a + b·z)),
 * z standard normal (a, b: mean and sigma of the log length, numpy's lognormal(mean, sigma)),
 * at least 1. Lengths are drawn until they cover n; the last is cut to fit. */
typedef enum { DOCS_NONE = 0, DOCS_UNIFORM, DOCS_LOGNORMAL } docs_dist_t;
typedef struct {
    docs_dist_t dist;
    double a, b;
} docs_spec_t;

/* "uniform:MIN:MAX" (1 ≤ MIN ≤ MAX) or "lognormal:MEAN:SIGMA" (SIGMA ≥ 0); ATTN_EUSAGE otherwise. */
int docs_parse_spec(const char *s, docs_spec_t *out, attn_err_t *err);
/* "100,3000,7" (each ≥ 1) into kept lengths *lens, *count of them; ATTN_EUSAGE otherwise. */
int docs_parse_lens(const char *s, const int64_t **lens, int64_t *count, attn_err_t *err);

/* The kept offsets (count + 1 of them, 0 … n) of documents of these lengths; ATTN_EUSAGE when
 * they do not sum to n. */
int docs_from_lens(const int64_t *lens, int64_t count, int64_t n, const int64_t **off, int64_t *n_docs,
                   attn_err_t *err);
/* Offsets from a 1-D int32/int64 .npy file (0 first, n last, non-decreasing); ATTN_EUSAGE otherwise. */
int docs_from_npy(const char *path, int64_t n, const int64_t **off, int64_t *n_docs, attn_err_t *err);
/* A seeded random layout of n tokens (the same for the same spec, n and seed on every rank). */
int docs_random(const docs_spec_t *s, int64_t n, uint64_t seed, const int64_t **off, int64_t *n_docs,
                attn_err_t *err);

/* A kept copy of n values (an equal array kept before is shared); NULL when out of memory. */
const int64_t *docs_keep(const int64_t *v, int64_t n, attn_err_t *err);

/* What a record says about a layout: count, min / mean / max length, and a hash of the offsets
 * (FNV-1a over their int64 values) that tells two layouts apart. */
typedef struct {
    int64_t count, min, max;
    double mean;
    uint64_t hash;
} docs_summary_t;
docs_summary_t docs_summary(const int64_t *off, int64_t n_docs);
