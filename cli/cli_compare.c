/* cli_compare.c — `attnbench compare BASE.json NEW.json [--threshold 5%]`, the gate of the
 * scheduled jobs: exit 1 when a record that passed fails, or a timed metric is worse by more than
 * the threshold beyond both runs' spreads (so noise does not flap the gate). The rule in full:
 * README "Dashboards and the regression gate". */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "core/results_read.h"

typedef struct {
    json_t *rec;
    char key[4096];
    int used;
} entry_t;

static int load(const char *path, json_t **root, entry_t **out, size_t *n, attn_err_t *err) {
    ATTN_TRY(results_read(path, root, err));
    json_t *recs = json_object_get(*root, "records");
    *n = json_array_size(recs);
    if (*n == 0) /* a gate that compares nothing must not pass */
        return attn_fail(err, ATTN_EUSAGE, "%s: no records: nothing to compare", path);
    *out = calloc(*n + 1, sizeof **out);
    if (!*out)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    for (size_t i = 0; i < *n; i++) {
        (*out)[i].rec = json_array_get(recs, i);
        results_record_key((*out)[i].rec, (*out)[i].key, sizeof (*out)[i].key);
    }
    return ATTN_OK;
}

static const char *str(json_t *r, const char *k) {
    json_t *v = json_object_get(r, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* A short name for a case: task backend n_k [n_q] mask [P] plus needle depth; a comm record
 * is named by its message size and transport instead. */
static void label(json_t *r, char *out, size_t cap) {
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

int cli_compare(int argc, char **argv, attn_err_t *err) {
    if (opts_wants_help(argc, argv)) {
        opts_print_help(stdout, CMD_COMPARE,
                        "usage: attnbench compare BASE.json NEW.json [--threshold 5%]\n\n"
                        "Matches records on (task, backend, device, transport, ranks, layout, config) and prints\n"
                        "NEW/BASE per metric. Exit 1 when a record that passed in BASE fails or errors in NEW, or\n"
                        "when a timed metric is worse by more than the threshold beyond both runs' spreads (NEW's\n"
                        "best repeat against BASE's worst). Records without a match are listed, and so is a\n"
                        "metric one file lacks. Exit 2: bad usage, a file that is not an attnbench results file\n"
                        "(docs/results-schema.md: a status or value it cannot read), or one with no records.\n");
        return ATTN_OK;
    }
    cli_opts_t c;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    int nf = 0;
    if (!files)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    opts_init(&c, CMD_COMPARE);
    int rc = opts_parse_argv(&c, CMD_COMPARE, argc, argv, files, &nf, err);
    double thr = c.threshold;
    if (rc == ATTN_OK && nf > 2)
        rc = attn_fail(err, ATTN_EUSAGE, "compare takes two files, BASE and NEW; '%s' is a third", files[2]);
    if (rc == ATTN_OK && nf != 2)
        rc = attn_fail(err, ATTN_EUSAGE, "compare needs two files: BASE.json NEW.json");
    if (rc != ATTN_OK) {
        free(files);
        return rc;
    }
    json_t *broot = NULL, *nroot = NULL;
    entry_t *be = NULL, *ne = NULL;
    size_t nb = 0, nn = 0;
    rc = load(files[0], &broot, &be, &nb, err);
    if (rc == ATTN_OK)
        rc = load(files[1], &nroot, &ne, &nn, err);
    int worse = 0, better = 0, flips = 0, matched = 0;
    if (rc == ATTN_OK) {
        printf("compare %s (%s) → %s (%s), threshold %.3g%% beyond the spreads\n\n", files[0],
               str(json_object_get(broot, "run"), "host"), files[1], str(json_object_get(nroot, "run"), "host"),
               100 * thr);
        printf("%-52s %-22s %14s %14s %9s  %s\n", "case", "metric", "base", "new", "new/base", "verdict");
    }
    for (size_t i = 0; rc == ATTN_OK && i < nn; i++) {
        entry_t *b = NULL;
        for (size_t j = 0; j < nb && !b; j++)
            if (!be[j].used && !strcmp(be[j].key, ne[i].key))
                b = &be[j];
        if (!b)
            continue;
        b->used = ne[i].used = 1;
        matched++;
        char name[160];
        label(ne[i].rec, name, sizeof name);
        const char *bs = str(b->rec, "status"), *ns = str(ne[i].rec, "status");
        int flip = !strcmp(bs, "pass") && (!strcmp(ns, "fail") || !strcmp(ns, "error"));
        flips += flip;
        if (strcmp(bs, ns))
            printf("%-52.52s %-22s %14s %14s %9s  %s\n", name, "status", bs, ns, "", flip ? "REGRESSED" : "changed");
        json_t *bm = json_object_get(b->rec, "metrics"), *nm = json_object_get(ne[i].rec, "metrics"),
               *units = json_object_get(ne[i].rec, "units");
        const char *m;
        json_t *v;
        for (int side = 0; side < 2; side++) /* a metric one file lacks or has no value for is said, not dropped */
            json_object_foreach(side ? bm : nm, m, v) {
                double x = 0, y = 0;
                int hb = num(bm, m, &x), hn = num(nm, m, &y);
                if (spread_name(m) || (side && json_object_get(nm, m)) || (hb && hn))
                    continue;
                char bs_[32] = "-", ns_[32] = "-";
                if (hb)
                    snprintf(bs_, sizeof bs_, "%.6g", x);
                if (hn)
                    snprintf(ns_, sizeof ns_, "%.6g", y);
                printf("%-52.52s %-22.22s %14s %14s %9s  %s\n", name, m, bs_, ns_, "",
                       !json_object_get(bm, m) ? "only in NEW" : !json_object_get(nm, m) ? "only in BASE" : "no value");
            }
        json_object_foreach(nm, m, v) {
            double x, y;
            if (spread_name(m) || !num(nm, m, &y) || !num(bm, m, &x))
                continue;
            int vd = verdict(bm, nm, m, str(units, m), thr);
            worse += vd > 0, better += vd < 0;
            char ratio[32] = "";
            if (x != 0 && isfinite(x) && isfinite(y))
                snprintf(ratio, sizeof ratio, "%.3f", y / x);
            printf("%-52.52s %-22.22s %14.6g %14.6g %9s  %s\n", name, m, x, y, ratio,
                   vd > 0 ? "REGRESSED" : vd < 0 ? "improved" : "");
        }
    }
    for (int side = 0; rc == ATTN_OK && side < 2; side++) {
        entry_t *e = side ? ne : be;
        size_t n = side ? nn : nb;
        for (size_t i = 0; i < n; i++)
            if (!e[i].used) {
                char name[160];
                label(e[i].rec, name, sizeof name);
                printf("only in %s: %s (%s)\n", side ? "NEW " : "BASE", name, str(e[i].rec, "status"));
            }
    }
    if (rc == ATTN_OK) {
        printf("\n%d matched record(s): %d status regression(s), %d timed metric(s) worse, %d better\n", matched, flips,
               worse, better);
        if (flips || worse)
            rc = attn_fail(err, ATTN_ERUNTIME, "%d status regression(s) and %d timed metric(s) worse than %s allows",
                           flips, worse, "the threshold beyond the spreads");
    }
    free(be), free(ne), free(files);
    json_decref(broot), json_decref(nroot);
    return rc;
}
