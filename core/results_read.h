/* results_read.h — reading results files back (report, compare, --resume): parse with jansson
 * and check them against the schema (docs/results-schema.md), so a malformed or foreign file
 * is one clear error naming the file, the record and what is wrong, never a crash later. */
#pragma once
#include <jansson.h>

#include "core/common.h"
#include "core/results.h"

/* *root: the parsed file (json_decref when done). ATTN_EUSAGE on a missing file, bad JSON,
 * another schema or a newer version, a run_id not of the generated shape, or a record whose
 * fields are missing or of the wrong type: identity strings, ranks ≥ 1, config values numbers
 * or strings, metrics and per-rank values numbers (or null), a unit per metric, and a status
 * of the file's schema version. */
int results_read(const char *path, json_t **root, attn_err_t *err);
/* Also refused by results_read: a file whose set's write stopped between renames (its
 * "<file>.partial" marker is beside it, core/outfile.h). results_read_json takes that file
 * whole, as renamed, for a reader that uses the JSON alone and writes the set anew (--resume). */
int results_read_json(const char *path, json_t **root, attn_err_t *err);
/* The schema version of a file results_read accepted. */
int results_file_version(json_t *root);

/* The identity a record is matched on across files: task, backend, local backend, device,
 * transport, ranks, layout and every config key (sorted), as one string. */
void results_record_key(json_t *rec, char *out, size_t cap);

/* The "config" object results_write puts in record r's JSON (core/results.c): for a reader that
 * compares a file's record with what this build would write (--resume). NULL: out of memory. */
json_t *results_config_json(const attn_record_t *r);
