/* plugin.h — backends loaded at run time: shared objects built against the public ABI
 * (include/attnbench/backend.h, loaded by impls/plugin.c) and external programs named by an exec
 * spec (impls/exec.c). Each lands in the registry and is then a backend like any other. */
#pragma once
#include "core/common.h"

/* dlopens path and registers its backends; a path already loaded is a no-op. ATTN_EUSAGE, with
 * one message naming the file, when it cannot be loaded, lacks the symbol, was built for another
 * ABI version, or defines a backend whose name is taken or malformed. */
int plugin_load(const char *path, attn_err_t *err);
/* Every path of $ATTNBENCH_PLUGINS (colon-separated; empty items skipped). */
int plugin_load_env(attn_err_t *err);

/* Reads an exec spec (JSON: name, command, dtype, peer, version, max_bytes, timeout_s) and
 * registers backend "exec:NAME"; a spec already loaded is a no-op. ATTN_EUSAGE on a bad spec. */
int exec_spec_load(const char *path, attn_err_t *err);
