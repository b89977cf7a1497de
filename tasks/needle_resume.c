/* needle_resume.c — reading back an earlier run's needle records (needle_resume.h), so the
 * grid goes on where it stopped. A file is taken only when it is a needle run of these settings
 * whose records are as a fresh run writes them: the resumed file is rewritten whole, so
 * anything taken on trust here would be carried on (or lost) silently. */
#include "tasks/needle_resume.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/outfile.h"
#include "core/results_read.h"
#include "tasks/approx.h"

static const char *str_of(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Numbers compare by value (a file may write 25 or 25.0), strings by text; null equals nothing. */
static int same(json_t *a, json_t *b) {
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_is_string(a) && json_is_string(b) && !strcmp(json_string_value(a), json_string_value(b));
}

/* The first key where the file's record jr differs from the expected record r, with both
 * values, into why; 1 when they agree. seq_len_q is the prompt's length, not a setting. */
static int same_case(json_t *jr, const attn_record_t *r, char *why, size_t cap) {
    char ranks[16];
    snprintf(ranks, sizeof ranks, "%d", r->ranks);
    const char *lb = json_is_string(json_object_get(jr, "local_backend")) ? str_of(jr, "local_backend") : "";
    const struct { const char *key, *file, *want; } ids[] = {
        {"local_backend", lb, r->local_backend}, {"device", str_of(jr, "device"), r->device},
        {"transport", str_of(jr, "transport"), r->transport}, {"layout", str_of(jr, "layout"), r->layout}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (strcmp(ids[i].file, ids[i].want))
            return snprintf(why, cap, "%s \"%s\", this run \"%s\"", ids[i].key, ids[i].file, ids[i].want), 0;
    if (json_integer_value(json_object_get(jr, "ranks")) != r->ranks)
        return snprintf(why, cap, "ranks %" JSON_INTEGER_FORMAT ", this run %d",
                        json_integer_value(json_object_get(jr, "ranks")), r->ranks), 0;
    json_t *want = results_config_json(r), *cfg = json_object_get(jr, "config");
    if (!want)
        return snprintf(why, cap, "(out of memory)"), 0;
    int ok = 1;
    for (int pass = 0; pass < 2 && ok; pass++) { /* keys of the expected config, then the file's own */
        const char *k;
        json_t *v;
        json_object_foreach(pass ? cfg : want, k, v) {
            json_t *f = json_object_get(cfg, k), *w = json_object_get(want, k);
            if (!strcmp(k, "seq_len_q") || same(f, w))
                continue;
            char *fs = f ? json_dumps(f, JSON_ENCODE_ANY) : NULL, *ws = w ? json_dumps(w, JSON_ENCODE_ANY) : NULL;
            snprintf(why, cap, "%s %.60s, this run %.60s", k, fs ? fs : "(none)", ws ? ws : "(none)");
            free(fs), free(ws);
            ok = 0;
            break;
        }
    }
    json_decref(want);
    return ok;
}

static int int_in(json_t *o, const char *key, int64_t lo, int64_t *v) {
    json_t *x = json_object_get(o, key);
    *v = json_is_integer(x) ? (int64_t)json_integer_value(x) : lo - 1;
    return *v >= lo;
}

/* Metrics, per-rank values, status and reason of jr onto r; 0 with why when they are not what
 * a fresh needle run writes. results_read has checked their JSON types already. */
static int take_outcome(json_t *jr, int version, attn_record_t *r, char *why, size_t cap) {
    json_t *met = json_object_get(jr, "metrics"), *units = json_object_get(jr, "units"), *v;
    attn_status_t s;
    status_parse(str_of(jr, "status"), version, &s);
    if (s == REC_PASS || s == REC_FAIL || s == REC_APPROXIMATE) /* measured: recall and what the mask allows */
        for (int i = 0; i < 2; i++) {
            json_t *x = json_object_get(met, i ? "recall_expected" : "recall");
            if (!json_is_number(x) || !(json_number_value(x) >= 0 && json_number_value(x) <= 1))
                return snprintf(why, cap, "is %s without a %s in 0 … 1", status_name(s),
                                i ? "recall_expected" : "recall"), 0;
        }
    const char *k;
    json_object_foreach(met, k, v) /* JSON null is a metric that had no value: NaN again */
        record_metric(r, k, json_is_number(v) ? json_number_value(v) : NAN, str_of(units, k));
    json_object_foreach(json_object_get(jr, "per_rank"), k, v) {
        size_t n = json_array_size(v);
        double *vals = malloc((n ? n : 1) * sizeof *vals);
        if (!vals)
            return snprintf(why, cap, "(out of memory)"), 0;
        for (size_t i = 0; i < n; i++)
            vals[i] = json_is_number(json_array_get(v, i)) ? json_number_value(json_array_get(v, i)) : NAN;
        record_per_rank(r, k, str_of(units, k), vals, (int)n);
        free(vals);
    }
    const char *reason = str_of(jr, "reason");
    if (s != REC_PASS || reason[0])
        record_set_status(r, s, reason[0] ? "%s" : NULL, reason);
    return 1;
}

/* The file's seed as a uint64 (an integer, or a decimal string above INT64_MAX); 0 if neither. */
static int file_seed(json_t *jrun, uint64_t *seed) {
    json_t *v = json_object_get(jrun, "seed");
    char *end = NULL;
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        return *seed = (uint64_t)json_integer_value(v), 1;
    if (json_is_string(v))
        *seed = strtoull(json_string_value(v), &end, 10);
    return end && end != json_string_value(v) && !*end;
}

/* o narrowed to the budget a file's record of backend be names in its config (sinks, topk or
 * topk_pct), so that the record this run expects, and finds, is that budget's. A budget this run
 * does not list is like a backend it does not name: kept. */
static void record_budget(const attn_opts_t *o, const attn_backend_t *be, json_t *cfg, attn_opts_t *out) {
    *out = *o;
    if (!be->approximate)
        return;
    json_t *s = json_object_get(cfg, "sinks"), *k = json_object_get(cfg, "topk"), *pct = json_object_get(cfg, "topk_pct");
    if (json_is_number(s))
        out->sinks[0] = (int64_t)json_number_value(s), out->n_sinks = 1;
    if (json_is_number(pct))
        out->topk_pct[0] = json_number_value(pct), out->topk[0] = 0, out->n_topk = 1;
    else if (json_is_number(k))
        out->topk[0] = (int64_t)json_number_value(k), out->topk_pct[0] = 0, out->n_topk = 1;
}

int needle_resume_load(const char *path, const attn_opts_t *o, needle_case_fn expect, attn_run_t *run,
                       attn_err_t *err) {
    json_t *root;
    attn_err_t rerr = {0};
    char marker[PATH_MAX + 16];
    if (outfile_incomplete(path, marker, sizeof marker)) /* the JSON is whole as renamed; this run rewrites both */
        fprintf(stderr, "note: --resume %s: the write of its set stopped between renames (%s): going on from this "
                "JSON, which was renamed whole (this run writes its set anew)\n", path, marker);
    if (results_read_json(path, &root, &rerr) != ATTN_OK) /* its message starts with the path: say which flag */
        return attn_fail(err, rerr.code, "--resume %s", rerr.msg);
    json_t *recs = json_object_get(root, "records"), *jrun = json_object_get(root, "run");
    int version = results_file_version(root), rc = ATTN_OK, first = run->n_records;
    uint64_t seed = 0;
    if (json_array_size(recs) == 0)
        rc = attn_fail(err, ATTN_EUSAGE, "--resume %s: not a needle run: it has no records", path);
    else if (!file_seed(jrun, &seed) || seed != o->seed) /* the prompts are drawn from the seed */
        rc = attn_fail(err, ATTN_EUSAGE, "--resume %s: measured with --seed %" PRIu64 ", this run %" PRIu64
                       ": resume with the settings the file was measured with", path, seed, o->seed);
    size_t i;
    json_t *jr;
    json_array_foreach(recs, i, jr) {
        if (rc != ATTN_OK)
            break;
        const char *task = str_of(jr, "task"), *bname = str_of(jr, "backend");
        json_t *cfg = json_object_get(jr, "config"), *jd = json_object_get(cfg, "depth");
        const attn_backend_t *be = registry_find(bname);
        int64_t n = 0, n_q = 0;
        double depth = json_is_number(jd) ? json_number_value(jd) : NAN;
        char why[256] = "";
        attn_record_t *r = NULL;
        if (strcmp(task, "needle")) {
            rc = attn_fail(err, ATTN_EUSAGE, "--resume %s: not a needle run: record %zu has task \"%s\" (--resume "
                           "continues a file written by attnbench needle)", path, i, task);
            break;
        }
        if (!be)
            snprintf(why, sizeof why, "backend \"%.48s\" is not in this build", bname);
        else if (!int_in(cfg, "seq_len_k", 1, &n) || !int_in(cfg, "seq_len_q", 1, &n_q))
            snprintf(why, sizeof why, "has no seq_len_k and seq_len_q (integers ≥ 1)");
        else if (!(depth >= 0 && depth <= 100))
            snprintf(why, sizeof why, "has no depth (a number in 0 … 100)");
        attn_opts_t ob = *o; /* an approximate backend's record: this run narrowed to the file's budget */
        if (be && !why[0])
            record_budget(o, be, cfg, &ob);
        if (why[0])
            (void)0; /* why says it */
        else if (!(r = expect(run, &ob, be, n, n_q, depth)))
            snprintf(why, sizeof why, "(out of memory)");
        else if (!same_case(jr, r, why, sizeof why))
            rc = attn_fail(err, ATTN_EUSAGE, "--resume %s: record %zu (needle %s n=%" PRId64 " depth %g) was measured "
                           "with %s: resume with the settings the file was measured with", path, i, bname, n, depth,
                           why);
        const attn_record_t *dup = why[0] || rc != ATTN_OK ? NULL : needle_find(run, bname, &ob, n, depth);
        if (dup && dup != r) /* the settings agree (same_case), so the first match is an earlier record */
            snprintf(why, sizeof why, "repeats the case of record %d", (int)(dup - run->records) - first);
        else if (!why[0] && rc == ATTN_OK)
            take_outcome(jr, version, r, why, sizeof why);
        if (why[0] && rc == ATTN_OK)
            rc = attn_fail(err, ATTN_EUSAGE, "--resume %s: record %zu (needle %s) %s", path, i, bname, why);
    }
    if (rc == ATTN_OK)
        snprintf(run->run_id, sizeof run->run_id, "%s", str_of(jrun, "run_id"));
    json_decref(root);
    return rc;
}

static double extra_num(const attn_record_t *r, const char *key) {
    for (int i = 0; i < r->n_extra; i++)
        if (!strcmp(r->extra[i].key, key) && r->extra[i].is_num)
            return r->extra[i].num;
    return NAN;
}

static const char *extra_str(const attn_record_t *r, const char *key) {
    for (int i = 0; i < r->n_extra; i++)
        if (!strcmp(r->extra[i].key, key) && !r->extra[i].is_num)
            return r->extra[i].str;
    return "";
}

const attn_record_t *needle_find(const attn_run_t *run, const char *backend, const attn_opts_t *o, int64_t n,
                                 double depth) {
    const attn_backend_t *be = registry_find(backend);
    int dist = be && be->layout, sw = !strncmp(backend, "sliding_window", 14);
    const char *hay = o->haystack[0] ? o->haystack : "kjv";
    for (int i = 0; i < run->n_records; i++) {
        const attn_record_t *r = &run->records[i];
        /* !(≤): a depth that is not a number matches no case */
        if (strcmp(r->task, "needle") || strcmp(r->backend, backend) || r->config.n_k != n ||
            !(fabs(extra_num(r, "depth") - depth) <= 1e-9) || extra_num(r, "needles") != o->needles ||
            strcmp(extra_str(r, "mode"), o->mode) || strcmp(extra_str(r, "ask"), o->ask) ||
            strcmp(extra_str(r, "haystack"), hay) || (dist && r->ranks != o->ranks) ||
            (sw && r->config.window != o->window) || (be && !approx_record_matches(r, be, o)) ||
            (isnan(extra_num(r, "distractors")) ? 0 : extra_num(r, "distractors")) != (double)o->distractors)
            continue;
        return r;
    }
    return NULL;
}
