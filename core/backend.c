/* backend.c — the checks every backend shares before its own supports(): a single-rank backend
 * runs on one rank, and the tensors plus the declared workspace must fit in available memory. */
#include "core/backend.h"

#include <inttypes.h>
#include <stdio.h>

#include "core/memory.h"

/* A single-rank backend ignores --ranks and --transport: it runs on one rank (rank 0 under
 * mpi), so a run can time blockwise beside ring on the same problem. */
int backend_supports(const attn_backend_t *b, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    if (b->forward_rank)
        return b->supports(b, p, x, reason, len);
    attn_exec_t one = *x;
    one.ranks = 1;
    return b->supports(b, p, &one, reason, len);
}

int backend_check_memory(const attn_backend_t *b, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                         size_t len) {
    size_t need_sz = attn_size_add(problem_io_bytes(p), b->workspace_bytes(b, p, x));
    if (need_sz == ATTN_SIZE_OVERFLOW) {
        snprintf(reason, len, "%s is too large: its tensors plus workspace overflow 64 bits", b->name);
        return 0;
    }
    uint64_t need = (uint64_t)need_sz;
    uint64_t avail = mem_available_bytes();
    if (avail > 0 && need > avail) {
        snprintf(reason, len,
                 "%s would need %" PRIu64 " bytes (%.1f GiB: %" PRIu64 " workspace + %" PRIu64
                 " tensors) but only %" PRIu64 " bytes (%.1f GiB) are available",
                 b->name, need, need / 1073741824.0, (uint64_t)b->workspace_bytes(b, p, x),
                 (uint64_t)problem_io_bytes(p), avail, avail / 1073741824.0);
        return 0;
    }
    return 1;
}
