/* outfile.h — the one way attnbench writes an output file: a regular file (or a new path, or a
 * symlink to either) is written to a temporary beside the resolved target and renamed over it;
 * a device, FIFO or socket is written through, every error reported. Rules: docs/outputs.md. */
#pragma once

#include <stdio.h>

#include "core/common.h"

/* Writes one file's bytes to f; returns 0, or −1 with errno set (as stdio leaves it). */
typedef int (*outfile_fill_fn)(FILE *f, void *ctx);

typedef struct {
    const char *path; /* as the user named it: messages say this */
    outfile_fill_fn fill;
    void *ctx;
} outfile_job_t;

/* Would a write to path succeed? Refuses a directory, a missing or unwritable parent, a symlink
 * loop; for a file target it creates and removes a probe beside it. Call before computing. */
int outfile_check(const char *path, attn_err_t *err);

/* outfile_check for each of up to 8 outputs of one command, and no two of them the same file
 * (after symlinks and "./"): all are checked before the compute. */
int outfile_check_all(const char *const *paths, int n, attn_err_t *err);

/* mkdir -p. */
int outfile_make_dirs(const char *dir, attn_err_t *err);

/* The results directory: created if missing (mkdir -p), must be a directory we can create
 * files in (probed). Call before computing. */
int outfile_check_dir(const char *dir, attn_err_t *err);

/* All or none (two jobs naming one file are refused): every file target is staged (temporary, fsync), then every write-through target
 * is written, then the staged files are renamed into place. On a failure the temporaries are
 * removed and no file target is touched (a device already written cannot be unwritten, which is
 * why devices go after staging). */
int outfile_write_all(const outfile_job_t *jobs, int n, attn_err_t *err);

/* outfile_write_all for one file. Every failure here is ATTN_ERUNTIME (exit 1) naming the path. */
int outfile_write(const char *path, outfile_fill_fn fill, void *ctx, attn_err_t *err);
