/* gate.c — the regression gate's rule (gate.h), moved out of cli_compare.c so that the report's
 * gate history applies exactly the rule `attnbench compare` applies. */
#include "cli/gate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/results_read.h"

typedef struct {
    json_t *rec;
    char key[4096];
    int used;
} entry_t;

int gate_load(const char *path, json_t **root, attn_err_t *err) {
    ATTN_TRY(results_read(path, root, err));
    if (json_array_size(json_object_get(*root, "records")) == 0) {
        json_decref(*root);
        *root = NULL;
        return attn_fail(err, ATTN_EUSAGE, "%s: no records: nothing to compare", path);
    }
    return ATTN_OK;
}

static entry_t *entries(json_t *root, size_t *n) {
    json_t *recs = json_object_get(root, "records");
    *n = json_array_size(recs);
    entry_t *e = calloc(*n + 1, sizeof *e);
    for (size_t i = 0; e && i < *n; i++) {
        e[i].rec = json_array_get(recs, i);
        results_record_key(e[i].rec, e[i].key, sizeof e[i].key);
    }
    return e;
}

static const char *str(json_t *r, const char *k) {
    json_t *v = json_object_get(r, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

void gate_label(json_t *r, char *out, size_t cap) {
    json_t *c = json_object_get(r, "config"), *bytes = json_object_get(c, "message_bytes");
    if (json_is_number(bytes)) {
        snprintf(out, cap, "%s %s %.0f B %s P=%d", str(r, "task"), str(r, "backend"), json_number_value(bytes),
                 str(r, "transport"), (int)json_number_value(json_object_get(r, "ranks")));
        return;
    }
    long long nk = (long long)json_number_value(json_object_get(c, "seq_len_k")),
              nq = (long long)json_number_value(json_object_get(c, "seq_len_q"));
    int P = (int)json_number_value(json_object_get(r, "ranks"));
    int at = snprintf(out, cap, "%s %s n=%lld", str(r, "task"), str(r, "backend"), nk);
    if (nq != nk && at < (int)cap)
        at += snprintf(out + at, cap - (size_t)at, "/%lld", nq);
    if (at < (int)cap)
        at += snprintf(out + at, cap - (size_t)at, " %s", str(c, "mask"));
    if (P > 1 && at < (int)cap)
        at += snprintf(out + at, cap - (size_t)at, " P=%d", P);
    json_t *depth = json_object_get(c, "depth");
    if (json_is_number(depth) && at < (int)cap)
        snprintf(out + at, cap - (size_t)at, " depth=%g", json_number_value(depth));
}

static int num(json_t *metrics, const char *name, double *v) {
    json_t *x = json_object_get(metrics, name);
    if (!json_is_number(x))
        return 0;
    *v = json_number_value(x);
    return 1;
}

/* name_min and name_max are read with name, not shown on their own. */
static int spread_name(const char *m) {
    size_t l = strlen(m);
    return l > 4 && (!strcmp(m + l - 4, "_min") || !strcmp(m + l - 4, "_max"));
}

/* 1 worse, -1 better, 0 within the spreads and threshold; needs name_min and name_max in both. */
static int verdict(json_t *bm, json_t *nm, const char *name, const char *unit, double thr) {
    char lo[96], hi[96];
    snprintf(lo, sizeof lo, "%s_min", name);
    snprintf(hi, sizeof hi, "%s_max", name);
    double bl, bh, nl, nh;
    if (!num(bm, lo, &bl) || !num(bm, hi, &bh) || !num(nm, lo, &nl) || !num(nm, hi, &nh))
        return 0;
    if (!strcmp(unit, "s")) /* lower is better */
        return nl > bh * (1 + thr) ? 1 : nh < bl * (1 - thr) ? -1 : 0;
    return nh < bl * (1 - thr) ? 1 : nl > bh * (1 + thr) ? -1 : 0;
}

/* The lines of one matched pair: its status, the metrics one side lacks, then every shared one. */
static void pair_lines(json_t *brec, json_t *nrec, const char *name, double thr, gate_line_fn fn, void *ctx,
                       gate_sum_t *sum) {
    const char *bs = str(brec, "status"), *ns = str(nrec, "status");
    int flip = !strcmp(bs, "pass") && (!strcmp(ns, "fail") || !strcmp(ns, "error"));
    sum->flips += flip;
    if (strcmp(bs, ns))
        fn(ctx, &(gate_line_t){.kind = GATE_STATUS, .name = name, .metric = "status", .base_s = bs, .new_s = ns,
                               .ratio = NAN, .verdict = flip, .note = flip ? "REGRESSED" : "changed"});
    json_t *bm = json_object_get(brec, "metrics"), *nm = json_object_get(nrec, "metrics"),
           *units = json_object_get(nrec, "units");
    const char *m;
    json_t *v;
    for (int side = 0; side < 2; side++) /* a metric one file lacks or has no value for is said, not dropped */
        json_object_foreach(side ? bm : nm, m, v) {
            double x = 0, y = 0;
            int hb = num(bm, m, &x), hn = num(nm, m, &y);
            if (spread_name(m) || (side && json_object_get(nm, m)) || (hb && hn))
                continue;
            char bt[32] = "-", nt[32] = "-";
            if (hb)
                snprintf(bt, sizeof bt, "%.6g", x);
            if (hn)
                snprintf(nt, sizeof nt, "%.6g", y);
            fn(ctx, &(gate_line_t){.kind = GATE_LACKS, .name = name, .metric = m, .base_s = bt, .new_s = nt,
                                   .ratio = NAN,
                                   .note = !json_object_get(bm, m)   ? "only in NEW"
                                           : !json_object_get(nm, m) ? "only in BASE"
                                                                     : "no value"});
        }
    json_object_foreach(nm, m, v) {
        double x, y;
        if (spread_name(m) || !num(nm, m, &y) || !num(bm, m, &x))
            continue;
        int vd = verdict(bm, nm, m, str(units, m), thr);
        sum->worse += vd > 0, sum->better += vd < 0;
        double ratio = x != 0 && isfinite(x) && isfinite(y) ? y / x : NAN;
        fn(ctx, &(gate_line_t){.kind = GATE_METRIC, .name = name, .metric = m, .base = x, .now = y, .ratio = ratio,
                               .verdict = vd});
    }
}

int gate_run(json_t *base, json_t *now, double thr, gate_line_fn fn, void *ctx, gate_sum_t *sum, attn_err_t *err) {
    memset(sum, 0, sizeof *sum);
    size_t nb, nn;
    entry_t *be = entries(base, &nb), *ne = entries(now, &nn);
    int rc = be && ne ? ATTN_OK : attn_fail(err, ATTN_ERUNTIME, "out of memory");
    for (size_t i = 0; rc == ATTN_OK && i < nn; i++) {
        entry_t *b = NULL;
        for (size_t j = 0; j < nb && !b; j++)
            if (!be[j].used && !strcmp(be[j].key, ne[i].key))
                b = &be[j];
        if (!b)
            continue;
        b->used = ne[i].used = 1;
        sum->matched++;
        char name[160];
        gate_label(ne[i].rec, name, sizeof name);
        pair_lines(b->rec, ne[i].rec, name, thr, fn, ctx, sum);
    }
    for (int side = 0; rc == ATTN_OK && side < 2; side++) {
        entry_t *e = side ? ne : be;
        size_t n = side ? nn : nb;
        for (size_t i = 0; i < n; i++)
            if (!e[i].used) {
                char name[160];
                gate_label(e[i].rec, name, sizeof name);
                fn(ctx, &(gate_line_t){.kind = GATE_ONLY, .name = name, .ratio = NAN, .note = str(e[i].rec, "status"),
                                       .side = side});
            }
    }
    free(be), free(ne);
    return rc;
}
