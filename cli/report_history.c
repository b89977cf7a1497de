/* report_history.c — see report_history.h. The page charts what this computes; nothing about the
 * gate is decided in the page's script, so the history and `attnbench compare` cannot disagree. */
#include "cli/report_history.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/gate.h"

enum { MAX_LINES = 200, MAX_TIMES = 200 }; /* per night: the page shows a readable slice, and says so */

typedef struct {
    char *file;
    json_t *root;
} night_t;

static const char *run_str(json_t *root, const char *k) {
    json_t *v = json_object_get(json_object_get(root, "run"), k);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* The machine a night ran on: its host and GPU, as the page names machines. */
static void machine_of(json_t *root, char *out, size_t cap) {
    const char *gpu = run_str(root, "gpu_model");
    snprintf(out, cap, "%s%s%s", run_str(root, "host"), *gpu ? " / " : "", gpu);
}

static int night_cmp(const void *a, const void *b) {
    const night_t *x = a, *y = b;
    char mx[512], my[512];
    machine_of(x->root, mx, sizeof mx);
    machine_of(y->root, my, sizeof my);
    int c = strcmp(mx, my);
    if (!c)
        c = strcmp(run_str(x->root, "started_at"), run_str(y->root, "started_at"));
    return c ? c : strcmp(run_str(x->root, "run_id"), run_str(y->root, "run_id"));
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The names DIR/NAME.json, sorted (so the error for a bad file is the same on every machine). */
static int list_json(const char *dir, char ***names, int *n, attn_err_t *err) {
    DIR *d = opendir(dir);
    if (!d)
        return attn_fail(err, ATTN_EUSAGE, "--history %s: not a readable directory", dir);
    int cap = 0;
    *n = 0;
    *names = NULL;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json"))
            continue;
        if (*n == cap) {
            char **more = realloc(*names, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *more);
            if (!more) {
                closedir(d);
                return attn_fail(err, ATTN_ERUNTIME, "out of memory");
            }
            *names = more;
        }
        size_t need = strlen(dir) + l + 2;
        if (!((*names)[*n] = malloc(need))) {
            closedir(d);
            return attn_fail(err, ATTN_ERUNTIME, "out of memory");
        }
        snprintf((*names)[(*n)++], need, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (*n)
        qsort(*names, (size_t)*n, sizeof **names, name_cmp);
    return ATTN_OK;
}

static json_t *num_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* Keeps the lines a reader of the history needs: status changes and metrics with a verdict. */
static void keep_line(void *ctx, const gate_line_t *l) {
    json_t *lines = ctx;
    if (json_array_size(lines) >= MAX_LINES || !((l->kind == GATE_STATUS) || (l->kind == GATE_METRIC && l->verdict)))
        return;
    json_t *o = json_pack("{s:s, s:s, s:i}", "case", l->name, "metric", l->metric, "verdict", l->verdict);
    if (l->kind == GATE_STATUS) {
        json_object_set_new(o, "base", json_string(l->base_s));
        json_object_set_new(o, "new", json_string(l->new_s));
    } else {
        json_object_set_new(o, "base", num_or_null(l->base));
        json_object_set_new(o, "new", num_or_null(l->now));
        json_object_set_new(o, "ratio", num_or_null(l->ratio));
    }
    json_array_append_new(lines, o);
}

/* Median time_s of each passing record of a night, by case label (the first of a repeated label). */
static json_t *times_of(json_t *root) {
    json_t *times = json_object(), *rec;
    size_t i;
    json_array_foreach(json_object_get(root, "records"), i, rec) {
        json_t *t = json_object_get(json_object_get(rec, "metrics"), "time_s");
        json_t *st = json_object_get(rec, "status");
        char name[160];
        if (!json_is_number(t) || !json_is_string(st) || strcmp(json_string_value(st), "pass") ||
            json_object_size(times) >= MAX_TIMES)
            continue;
        gate_label(rec, name, sizeof name);
        if (!json_object_get(times, name))
            json_object_set_new(times, name, json_real(json_number_value(t)));
    }
    return times;
}

int report_history(const char *dir, double thr, json_t **out, attn_err_t *err) {
    char **names = NULL;
    int n = 0;
    *out = NULL;
    int rc = list_json(dir, &names, &n, err);
    night_t *nights = rc == ATTN_OK ? calloc((size_t)n + 1, sizeof *nights) : NULL;
    if (rc == ATTN_OK && !nights)
        rc = attn_fail(err, ATTN_ERUNTIME, "out of memory");
    if (rc == ATTN_OK && n < 2)
        rc = attn_fail(err, ATTN_EUSAGE, "--history %s: %d results file(s) (*.json); the gate's history needs two or more",
                       dir, n);
    for (int i = 0; rc == ATTN_OK && i < n; i++) {
        nights[i].file = names[i];
        rc = gate_load(names[i], &nights[i].root, err);
    }
    json_t *hist = NULL, *machines = NULL, *cur = NULL;
    char prev_machine[512] = "";
    if (rc == ATTN_OK) {
        qsort(nights, (size_t)n, sizeof *nights, night_cmp);
        hist = json_pack("{s:s, s:f, s:[]}", "dir", dir, "threshold", thr, "machines");
        machines = json_object_get(hist, "machines");
    }
    for (int i = 0; rc == ATTN_OK && i < n; i++) {
        char machine[512];
        machine_of(nights[i].root, machine, sizeof machine);
        int first = !cur || strcmp(machine, prev_machine);
        if (first) {
            cur = json_pack("{s:s, s:[]}", "machine", machine, "nights");
            json_array_append_new(machines, cur);
            snprintf(prev_machine, sizeof prev_machine, "%s", machine);
        }
        json_t *root = nights[i].root;
        json_t *night = json_pack("{s:s, s:s, s:s, s:s, s:I}", "run_id", run_str(root, "run_id"), "started_at",
                                  run_str(root, "started_at"), "git_sha", run_str(root, "git_sha"), "file",
                                  nights[i].file, "records", (json_int_t)json_array_size(json_object_get(root, "records")));
        json_object_set_new(night, "times", times_of(root));
        if (first) {
            json_object_set_new(night, "gate", json_null());
        } else {
            json_t *lines = json_array();
            gate_sum_t sum;
            rc = gate_run(nights[i - 1].root, root, thr, keep_line, lines, &sum, err);
            json_object_set_new(night, "gate",
                                json_pack("{s:s, s:i, s:i, s:i, s:i, s:b, s:o}", "base_run_id",
                                          run_str(nights[i - 1].root, "run_id"), "matched", sum.matched, "flips",
                                          sum.flips, "worse", sum.worse, "better", sum.better, "passed",
                                          !sum.flips && !sum.worse, "lines", lines));
        }
        json_array_append_new(json_object_get(cur, "nights"), night);
    }
    for (int i = 0; nights && i < n; i++)
        json_decref(nights[i].root);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names), free(nights);
    if (rc == ATTN_OK)
        *out = hist;
    else
        json_decref(hist);
    return rc;
}
