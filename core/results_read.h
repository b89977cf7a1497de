/* results_read.h — reading results files back (report, compare): parse with jansson and check
 * the parts of schema attnbench.results/1 the readers rely on, so a malformed or foreign file
 * is one clear error naming the file and what is wrong, never a crash later. */
#pragma once
#include <jansson.h>

#include "core/common.h"

/* *root: the parsed file (json_decref when done). ATTN_EUSAGE on a missing file, bad JSON,
 * another schema, or a record lacking task, backend, device, transport, ranks, layout,
 * config, metrics or status of the right JSON type. */
int results_read(const char *path, json_t **root, attn_err_t *err);

/* The identity a record is matched on across files: task, backend, local backend, device,
 * transport, ranks, layout and every config key (sorted), as one string. */
void results_record_key(json_t *rec, char *out, size_t cap);
