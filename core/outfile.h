/* outfile.h — the one way attnbench writes an output file: a regular file (or a new path, or a
 * symlink to either) is written to a temporary beside the resolved target and renamed over it;
 * a device, FIFO or socket is written through, every error reported. Rules: docs/outputs.md. */
#pragma once

#include <stddef.h>
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

/* All or none (two jobs naming one file are refused): every file target is staged (temporary,
 * fsync), then every write-through target is written, then the staged files are renamed into
 * place in job order. On a failure before the renames the temporaries are removed and no file
 * target is touched (a device already written cannot be unwritten, which is why devices go after
 * staging). Two or more file targets are a set: each gets a marker "<target>.partial" before the
 * first rename, removed after the last (SIGINT/TERM/HUP/QUIT held meanwhile), so a set that a
 * kill, crash or failed rename left half old, half new is recognisably incomplete: every file of
 * it is marked (outfile_incomplete). Rules: docs/outputs.md. */
int outfile_write_all(const outfile_job_t *jobs, int n, attn_err_t *err);

#define OUTFILE_PARTIAL ".partial"

/* 1 when path (through its symlinks) is a file of a set whose write stopped between renames:
 * its marker exists (its path into marker, when not NULL). A reader must not take it as one
 * set with the files written beside it. */
int outfile_incomplete(const char *path, char *marker, size_t size);

/* outfile_write_all for one file. Every failure here is ATTN_ERUNTIME (exit 1) naming the path. */
int outfile_write(const char *path, outfile_fill_fn fill, void *ctx, attn_err_t *err);
