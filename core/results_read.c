/* results_read.c — results files read back and checked (results_read.h): one message naming the
 * file, the record and the problem for anything the readers (report, compare, --resume) could
 * not rely on: a value of the wrong type, a status or schema version this build does not know. */
#include "core/results_read.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/outfile.h"
#include "core/results.h"

/* string: a JSON string; nullable: or null (local_backend, reason and the run's gpu fields). */
static int is_str(json_t *o, const char *key, int nullable) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) || (nullable && json_is_null(v));
}

/* A metric, per-rank value or config value is a number, or null where the value was NaN. */
static int is_num_or_null(json_t *v) { return json_is_number(v) || json_is_null(v); }

static int check_schema(json_t *root, int *version, char *why, size_t cap) {
    json_t *schema = json_object_get(root, "schema");
    const char *s = json_is_string(schema) ? json_string_value(schema) : NULL;
    *version = results_schema_parse(s);
    if (*version)
        return 1;
    size_t k = strlen(ATTN_RESULTS_SCHEMA_PREFIX);
    if (s && !strncmp(s, ATTN_RESULTS_SCHEMA_PREFIX, k) && atoi(s + k) > results_schema_version())
        snprintf(why, cap, "schema \"%s\" is newer than this attnbench reads (%s and older)", s, results_schema_name());
    else if (results_schema_version() == 1)
        snprintf(why, cap, "schema is not \"%s\"", results_schema_name());
    else
        snprintf(why, cap, "schema is not \"%s1\" … \"%s\"", ATTN_RESULTS_SCHEMA_PREFIX, results_schema_name());
    return 0;
}

/* 1 when record r is as a writer of schema `version` makes it; else why names the field. */
static int check_record(json_t *r, int version, char *why, size_t cap) {
    if (!json_is_object(r))
        return snprintf(why, cap, "is not an object"), 0;
    static const char *const strs[] = {"task", "backend", "device", "transport", "layout", "status"};
    for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++)
        if (!is_str(r, strs[k], 0))
            return snprintf(why, cap, "lacks \"%s\" (or it is not a string)", strs[k]), 0;
    if (!is_str(r, "local_backend", 1) || (json_object_get(r, "reason") && !is_str(r, "reason", 1)))
        return snprintf(why, cap, "\"local_backend\" or \"reason\" is neither a string nor null"), 0;
    json_t *ranks = json_object_get(r, "ranks");
    if (!json_is_integer(ranks) || json_integer_value(ranks) < 1)
        return snprintf(why, cap, "\"ranks\" is not an integer ≥ 1"), 0;
    attn_status_t st;
    const char *sname = json_string_value(json_object_get(r, "status"));
    if (!status_parse(sname, version, &st))
        return snprintf(why, cap, "status \"%.40s\" is not one of schema /%d's statuses", sname, version), 0;
    json_t *peer = json_object_get(r, "peer"); /* schema 2 */
    if (peer && (version < 2 || !json_is_object(peer) || !is_str(peer, "name", 0) || !is_str(peer, "version", 0)))
        return snprintf(why, cap, "\"peer\" is not {\"name\": string, \"version\": string} of schema /2 or later"), 0;
    json_t *cfg = json_object_get(r, "config"), *met = json_object_get(r, "metrics"),
           *units = json_object_get(r, "units"), *pr = json_object_get(r, "per_rank"), *v;
    static const char *const objs[] = {"config", "metrics", "units"};
    for (size_t k = 0; k < sizeof objs / sizeof objs[0]; k++)
        if (!json_is_object(json_object_get(r, objs[k])))
            return snprintf(why, cap, "lacks \"%s\" (or it is not an object)", objs[k]), 0;
    const char *k;
    json_object_foreach(cfg, k, v) {
        if (!is_num_or_null(v) && !json_is_string(v))
            return snprintf(why, cap, "config \"%.40s\" is neither a number nor a string", k), 0;
    }
    json_object_foreach(met, k, v) {
        if (!is_num_or_null(v))
            return snprintf(why, cap, "metric \"%.40s\" is not a number (nor null)", k), 0;
        if (!is_str(units, k, 0))
            return snprintf(why, cap, "metric \"%.40s\" has no unit in \"units\"", k), 0;
    }
    if (pr && !json_is_object(pr))
        return snprintf(why, cap, "\"per_rank\" is not an object"), 0;
    json_object_foreach(pr, k, v) {
        size_t i;
        json_t *x;
        if (!json_is_array(v))
            return snprintf(why, cap, "per_rank \"%.40s\" is not an array", k), 0;
        json_array_foreach(v, i, x) {
            if (!is_num_or_null(x))
                return snprintf(why, cap, "per_rank \"%.40s\"[%zu] is not a number (nor null)", k, i), 0;
        }
    }
    return 1;
}

/* A file whose set (.json and .csv) stopped between its renames may sit beside a CSV of another
 * write: refused by name, unless the reader takes the JSON alone and rewrites the set. */
static int read_file(const char *path, int whole_set, json_t **root, attn_err_t *err) {
    char marker[PATH_MAX + 16];
    *root = NULL;
    if (whole_set && outfile_incomplete(path, marker, sizeof marker))
        return attn_fail(err, ATTN_EUSAGE, "%s: its write stopped between its files' renames (%s is beside it): it and "
                         "the CSV beside it may be from different writes; run again (needle: --resume rewrites the set), "
                         "or delete %s to read this file as it is", path, marker, marker);
    json_error_t je;
    *root = json_load_file(path, 0, &je);
    if (!*root)
        return attn_fail(err, ATTN_EUSAGE, "%s: not readable JSON: %s (line %d, column %d)", path, je.text, je.line,
                         je.column);
    json_t *run = json_object_get(*root, "run"), *recs = json_object_get(*root, "records");
    char why[400] = "";
    int version = 0, ok = json_is_object(*root) && check_schema(*root, &version, why, sizeof why);
    if (ok && (!json_is_object(run) || !is_str(run, "run_id", 0) || !is_str(run, "host", 1)))
        ok = 0, snprintf(why, sizeof why, "\"run\" lacks run_id or host");
    if (ok && !results_run_id_valid(json_string_value(json_object_get(run, "run_id"))))
        ok = 0, snprintf(why, sizeof why, "run_id \"%.64s\" is not a run id (YYYYMMDDTHHMMSSZ-xxxxxx)",
                         json_string_value(json_object_get(run, "run_id")));
    if (ok && !json_is_array(recs))
        ok = 0, snprintf(why, sizeof why, "\"records\" is not an array");
    size_t i;
    json_t *r;
    json_array_foreach(recs, i, r) {
        char rwhy[200];
        if (!ok)
            break;
        if (check_record(r, version, rwhy, sizeof rwhy))
            continue;
        ok = 0;
        const char *task = is_str(r, "task", 0) ? json_string_value(json_object_get(r, "task")) : "?",
                   *backend = is_str(r, "backend", 0) ? json_string_value(json_object_get(r, "backend")) : "?";
        if (json_is_object(r)) /* task and backend say which record, where the file has them */
            snprintf(why, sizeof why, "record %zu (%.32s %.48s) %s", i, task, backend, rwhy);
        else
            snprintf(why, sizeof why, "record %zu %s", i, rwhy);
    }
    if (!ok) {
        if (!why[0])
            snprintf(why, sizeof why, "the top level is not an object");
        json_decref(*root);
        *root = NULL;
        return attn_fail(err, ATTN_EUSAGE, "%s: not an attnbench results file: %s", path, why);
    }
    return ATTN_OK;
}

int results_file_version(json_t *root) {
    json_t *schema = json_object_get(root, "schema");
    return results_schema_parse(json_is_string(schema) ? json_string_value(schema) : NULL);
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

int results_read(const char *path, json_t **root, attn_err_t *err) { return read_file(path, 1, root, err); }

int results_read_json(const char *path, json_t **root, attn_err_t *err) { return read_file(path, 0, root, err); }
