/* exec.c — attn_exec_t's defaults, validation and transport names (exec.h): how a call runs, kept
 * apart from what it computes (problem.h). */
#include "core/exec.h"

#include <string.h>

#include "core/threads.h"

attn_exec_t exec_default(void) { return (attn_exec_t){.ranks = 1, .layout = -1}; }

int exec_threads(const attn_exec_t *x) { return threads_resolve(x->threads); }

int exec_validate(const attn_exec_t *x, attn_err_t *err) {
    if (x->device < 0 || x->device > 1023)
        return attn_fail(err, ATTN_EUSAGE, "device must be in 0..1023 (got %d)", x->device);
    if (x->threads < 0 || x->threads > 1024)
        return attn_fail(err, ATTN_EUSAGE, "threads must be in 0..1024 (got %d)", x->threads);
    if (x->sinks < 0 || x->topk < 0 || x->approx_window < 0 || !(x->topk_pct >= 0 && x->topk_pct <= 100))
        return attn_fail(err, ATTN_EUSAGE, "sinks, topk and window must be ≥ 0 and a topk percent in 0..100");
    return ATTN_OK;
}

static const char *transport_names[] = {"local", "mpi", "cuda_local", "nccl"};
const char *transport_name(attn_transport_t t) { return transport_names[t]; }
int transport_parse(const char *s, attn_transport_t *out) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, transport_names[i])) {
            *out = (attn_transport_t)i;
            return 1;
        }
    return 0;
}
