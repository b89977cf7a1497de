/* exec_process.h — running one external program for the exec: backends (impls/exec.c): in a
 * private temporary directory, stdin /dev/null, stdout and stderr to files there, in a process
 * group of its own, killed with the group when it overruns its timeout. */
#pragma once
#include "core/common.h"

/* The exit status by which a program says it cannot run on this machine (its package or device is
 * missing): from `--version`, every case is then declined with its stderr as the reason. */
enum { EXEC_MAX_ARGS = 32, EXEC_UNAVAILABLE = 77 };

typedef struct {
    const char *who;          /* the backend, for messages */
    char *const *argv;        /* the command */
    int argc;                 /* ≤ EXEC_MAX_ARGS */
    double timeout_s;
    const char *timeout_from; /* where the timeout was set, for the message */
} exec_cmd_t;

/* Runs argv + extra in dir (stdout and stderr go to dir/stdout, dir/stderr). ATTN_OK on exit 0;
 * EXEC_UNAVAILABLE (with the program's stderr as the message) on exit 77; otherwise ATTN_ERUNTIME
 * naming the exit status or signal and quoting the end of its stderr, or the timeout. */
int exec_process_run(const exec_cmd_t *cmd, const char *const *extra, int n_extra, const char *dir, attn_err_t *err);
/* A fresh private directory (mode 0700) under $TMPDIR or /tmp, and its removal with the files
 * the protocol names (a directory the program left other files in stays). */
int exec_dir_make(const char *who, char *dir, size_t cap, attn_err_t *err);
void exec_dir_remove(const char *dir);
/* The last cap − 1 bytes of a file as one line (newlines become ";"). */
void exec_file_tail(const char *path, char *out, size_t cap);
