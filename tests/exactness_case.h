/* exactness_case.h — the C tests' way to run one exactness case the way users do: flags given
 * as "key=value ..." (the long flag names without --), parsed by opts_set on top of the
 * defaults, validated, and run through task_exactness into a fresh run. Header-only. */
#pragma once
#include <stdio.h>
#include <string.h>

#include "cli/options.h"
#include "core/results.h"
#include "tasks/task.h"

/* ATTN_OK with run filled (free it with results_run_free), or the error in err. */
static __attribute__((unused)) int exactness_case(const char *args_in, int threads, const char *name,
                                                  attn_run_t *run, attn_err_t *err) {
    char args[1024];
    snprintf(args, sizeof args, "%s", args_in);
    attn_opts_t o;
    opts_defaults(&o);
    o.threads = threads;
    o.repeats = 1;
    char *save = NULL;
    for (char *kv = strtok_r(args, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            return attn_fail(err, ATTN_EUSAGE, "bad test case: '%s' is not key=value", kv);
        *eq = '\0';
        ATTN_TRY(opts_set(&o, kv, eq + 1, err));
    }
    char *fake_argv[] = {(char *)name};
    ATTN_TRY(results_run_init(run, 1, fake_argv, o.seed, threads, err));
    int rc = settings_validate_run(&o, err);
    if (rc == ATTN_OK)
        rc = task_exactness(&o, run, err);
    if (rc != ATTN_OK)
        results_run_free(run);
    return rc;
}
