/* needle_resume.c — reading back an earlier run's needle records (needle_resume.h), so the
 * grid goes on where it stopped. */
#include "tasks/needle_resume.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "core/backend.h"

static const char *str_of(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* A number outside int64's range (1e300) is no count a results file holds; converting it would
 * be undefined, so it reads as 0, like a missing one. */
static int64_t int_of(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    double x = json_is_number(v) ? json_number_value(v) : 0;
    return x > -9.2e18 && x < 9.2e18 ? (int64_t)x : 0;
}

static int fixed_config_key(const char *k) {
    static const char *const fixed[] = {"batch",     "heads", "kv_heads", "head_dim", "seq_len_q", "seq_len_k",
                                        "mask",      "window", "dtype",   "block_q",  "block_k"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!strcmp(k, fixed[i]))
            return 1;
    return 0;
}

static int add_record(json_t *jr, attn_run_t *run) {
    json_t *cfg = json_object_get(jr, "config"), *met = json_object_get(jr, "metrics"),
           *units = json_object_get(jr, "units");
    if (!json_is_object(cfg) || !json_is_object(met) || !json_is_object(units))
        return 0;
    attn_problem_t p = {.batch = int_of(cfg, "batch"), .heads = int_of(cfg, "heads"), .kv_heads = int_of(cfg, "kv_heads"),
                        .head_dim = int_of(cfg, "head_dim"), .n_q = int_of(cfg, "seq_len_q"),
                        .n_k = int_of(cfg, "seq_len_k"), .window = int_of(cfg, "window"),
                        .block_q = (int)int_of(cfg, "block_q"), .block_k = (int)int_of(cfg, "block_k")};
    if (!mask_parse(str_of(cfg, "mask"), &p.mask) || !dtype_parse(str_of(cfg, "dtype"), &p.dtype))
        return 0;
    attn_record_t *r = results_add(run, "needle", str_of(jr, "backend"), &p);
    if (!r)
        return 0;
    snprintf(r->local_backend, sizeof r->local_backend, "%s", str_of(jr, "local_backend"));
    snprintf(r->device, sizeof r->device, "%s", str_of(jr, "device"));
    snprintf(r->transport, sizeof r->transport, "%s", str_of(jr, "transport"));
    snprintf(r->layout, sizeof r->layout, "%s", str_of(jr, "layout"));
    r->ranks = (int)int_of(jr, "ranks");
    const char *k;
    json_t *v;
    json_object_foreach(cfg, k, v) {
        if (fixed_config_key(k))
            continue;
        if (json_is_number(v))
            record_extra_num(r, k, json_number_value(v));
        else if (json_is_string(v))
            record_extra_str(r, k, json_string_value(v));
    }
    json_object_foreach(met, k, v) /* JSON null is a metric that had no value: NaN again */
        record_metric(r, k, json_is_number(v) ? json_number_value(v) : NAN, str_of(units, k));
    const char *st = str_of(jr, "status"), *reason = str_of(jr, "reason");
    attn_status_t s = !strcmp(st, "fail") ? REC_FAIL : !strcmp(st, "skipped") ? REC_SKIPPED
                    : !strcmp(st, "error") ? REC_ERROR : REC_PASS;
    if (s != REC_PASS || reason[0])
        record_set_status(r, s, reason[0] ? "%s" : NULL, reason);
    return 1;
}

int needle_resume_load(const char *path, attn_run_t *run, attn_err_t *err) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return attn_fail(err, ATTN_EUSAGE, "--resume %s: %s (line %d)", path, je.text, je.line);
    json_t *recs = json_object_get(root, "records"), *jrun = json_object_get(root, "run");
    int rc = ATTN_OK;
    if (strcmp(str_of(root, "schema"), "attnbench.results/1") || !json_is_array(recs) || !json_is_object(jrun) ||
        !str_of(jrun, "run_id")[0])
        rc = attn_fail(err, ATTN_EUSAGE, "--resume %s: not an attnbench results file (schema attnbench.results/1)", path);
    size_t i;
    json_t *jr;
    json_array_foreach(recs, i, jr) {
        if (rc != ATTN_OK)
            break;
        if (strcmp(str_of(jr, "task"), "needle"))
            continue;
        if (!add_record(jr, run))
            rc = attn_fail(err, ATTN_EUSAGE, "--resume %s: record %zu is malformed", path, i);
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
        if (strcmp(r->task, "needle") || strcmp(r->backend, backend) || r->config.n_k != n ||
            fabs(extra_num(r, "depth") - depth) > 1e-9 || extra_num(r, "needles") != o->needles ||
            strcmp(extra_str(r, "mode"), o->mode) || strcmp(extra_str(r, "ask"), o->ask) ||
            strcmp(extra_str(r, "haystack"), hay) || (dist && r->ranks != o->ranks) ||
            (sw && r->config.window != o->window))
            continue;
        return r;
    }
    return NULL;
}
