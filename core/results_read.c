/* results_read.c — results files read back and checked (results_read.h): one message naming the
 * file and the problem for anything the report and compare readers could not rely on. */
#include "core/results_read.h"

#include <stdlib.h>
#include <string.h>

static int has(json_t *o, const char *key, int type) {
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (type == JSON_INTEGER)
        return json_is_number(v);
    if (type == JSON_STRING) /* local_backend and gpu fields may be null */
        return json_is_string(v) || json_is_null(v);
    return json_typeof(v) == (json_type)type;
}

int results_read(const char *path, json_t **root, attn_err_t *err) {
    json_error_t je;
    *root = json_load_file(path, 0, &je);
    if (!*root)
        return attn_fail(err, ATTN_EUSAGE, "%s: not readable JSON: %s (line %d, column %d)", path, je.text, je.line,
                         je.column);
    json_t *schema = json_object_get(*root, "schema"), *run = json_object_get(*root, "run"),
           *recs = json_object_get(*root, "records");
    const char *why = NULL;
    if (!json_is_string(schema) || strcmp(json_string_value(schema), "attnbench.results/1"))
        why = "schema is not \"attnbench.results/1\"";
    else if (!json_is_object(run) || !has(run, "run_id", JSON_STRING) || !has(run, "host", JSON_STRING))
        why = "\"run\" lacks run_id or host";
    else if (!json_is_array(recs))
        why = "\"records\" is not an array";
    size_t i;
    json_t *r;
    char buf[128];
    json_array_foreach(recs, i, r) {
        if (why)
            break;
        static const struct { const char *key; int type; } need[] = {
            {"task", JSON_STRING},     {"backend", JSON_STRING}, {"device", JSON_STRING},
            {"transport", JSON_STRING}, {"ranks", JSON_INTEGER}, {"layout", JSON_STRING},
            {"config", JSON_OBJECT},   {"metrics", JSON_OBJECT}, {"status", JSON_STRING}};
        for (size_t k = 0; k < sizeof need / sizeof need[0] && !why; k++)
            if (!json_is_object(r) || !has(r, need[k].key, need[k].type)) {
                snprintf(buf, sizeof buf, "record %zu lacks \"%s\" (or it has the wrong type)", i, need[k].key);
                why = buf;
            }
    }
    if (why) {
        json_decref(*root);
        *root = NULL;
        return attn_fail(err, ATTN_EUSAGE, "%s: not an attnbench results file: %s", path, why);
    }
    return ATTN_OK;
}

static void put(char *out, size_t cap, size_t *at, const char *s) {
    size_t n = strlen(s);
    if (*at + n + 1 < cap) {
        memcpy(out + *at, s, n + 1);
        *at += n;
    }
}

void results_record_key(json_t *rec, char *out, size_t cap) {
    size_t at = 0;
    out[0] = '\0';
    static const char *const id[] = {"task", "backend", "local_backend", "device", "transport", "ranks", "layout"};
    for (size_t i = 0; i < sizeof id / sizeof id[0]; i++) {
        char *s = json_dumps(json_object_get(rec, id[i]) ? json_object_get(rec, id[i]) : json_null(),
                             JSON_ENCODE_ANY | JSON_COMPACT);
        put(out, cap, &at, s ? s : "?");
        put(out, cap, &at, "|");
        free(s);
    }
    /* repeats and warmup say how a case was timed, not which case it is */
    json_t *cfg = json_deep_copy(json_object_get(rec, "config"));
    json_object_del(cfg, "repeats");
    json_object_del(cfg, "warmup");
    char *s = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
    put(out, cap, &at, s ? s : "?");
    free(s);
    json_decref(cfg);
}
