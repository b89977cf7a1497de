/* backend.c — the checks every backend shares before its own supports(): a single-rank backend
 * runs on one rank, and the tensors plus the declared workspace must fit in available memory. */
#include "core/backend.h"

#include <inttypes.h>
#include <stdio.h>

#include "core/memory.h"

/* A single-rank backend ignores --ranks and --transport: it runs on one rank (rank 0 under
 * mpi), so a run can time blockwise beside ring on the same problem. */
int backend_supports(const attn_backend_t *b, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    if (x->kv_device && !b->device_kv) {
        snprintf(reason, len, "%s takes K/V only as host arrays, not from a KV cache kept in device memory", b->name);
        return 0;
    }
    if (x->qo_device && !b->device_qo) {
        snprintf(reason, len, "%s takes Q/O only as host arrays, not in device memory", b->name);
        return 0;
    }
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

int backend_supports_backward(const attn_backend_t *b, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                              size_t len) {
    if (!b->backward) {
        snprintf(reason, len, "%s has no backward pass (it computes the forward only)", b->name);
        return 0;
    }
    if (!backend_supports(b, p, x, reason, len))
        return 0;
    if (b->supports_backward) { /* single-rank backends see one rank, as in backend_supports */
        attn_exec_t one = *x;
        if (!b->forward_rank)
            one.ranks = 1;
        if (!b->supports_backward(b, p, &one, reason, len))
            return 0;
    }
    size_t ws = b->backward_workspace_bytes ? b->backward_workspace_bytes(b, p, x) : 0;
    size_t need_sz = attn_size_add(attn_size_add(problem_io_bytes(p), problem_grad_bytes(p)), ws);
    if (need_sz == ATTN_SIZE_OVERFLOW) {
        snprintf(reason, len, "%s backward is too large: its tensors plus workspace overflow 64 bits", b->name);
        return 0;
    }
    uint64_t avail = mem_available_bytes();
    if (avail > 0 && (uint64_t)need_sz > avail) {
        snprintf(reason, len,
                 "%s backward would need %" PRIu64 " bytes (%.1f GiB: %" PRIu64 " workspace + %" PRIu64
                 " tensors and gradients) but only %" PRIu64 " bytes (%.1f GiB) are available",
                 b->name, (uint64_t)need_sz, need_sz / 1073741824.0, (uint64_t)ws,
                 (uint64_t)(need_sz - ws), avail, avail / 1073741824.0);
        return 0;
    }
    return 1;
}
