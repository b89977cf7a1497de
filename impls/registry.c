/* registry.c — the static table of backends: the CPU and host-distributed ones always, the
 * CUDA ones behind ATTN_HAVE_CUDA. Adding a backend is one line here. Backends loaded at run
 * time (--plugin, --exec-spec) follow them in a second, append-only table. */
#include "core/backend.h"

#include <string.h>


extern const attn_backend_t backend_cpu_naive;
extern const attn_backend_t backend_cpu_blockwise;
extern const attn_backend_t backend_cpu_blockwise_blas;
extern const attn_backend_t backend_cpu_naive_blas;
extern const attn_backend_t backend_cpu_sliding_window;
extern const attn_backend_t backend_cpu_sinks_window;
extern const attn_backend_t backend_cpu_topk_blocks;
extern const attn_backend_t backend_dist_ring;
extern const attn_backend_t backend_dist_striped;
extern const attn_backend_t backend_dist_zigzag;
extern const attn_backend_t backend_dist_zigzag_balanced;
extern const attn_backend_t backend_dist_ulysses;
extern const attn_backend_t backend_dist_usp;
#ifdef ATTN_HAVE_CUDA
extern const attn_backend_t backend_cuda_naive;
extern const attn_backend_t backend_cuda_blockwise;
extern const attn_backend_t backend_cuda_sliding_window;
extern const attn_backend_t backend_cuda_ring;
extern const attn_backend_t backend_cuda_striped;
extern const attn_backend_t backend_cuda_zigzag;
extern const attn_backend_t backend_cuda_ulysses;
extern const attn_backend_t backend_cuda_usp;
extern const attn_backend_t backend_cuda_sinks_window;
extern const attn_backend_t backend_cuda_topk_blocks;
#endif

static const attn_backend_t *const backends[] = {
    &backend_cpu_naive,
    &backend_cpu_blockwise,
    &backend_cpu_blockwise_blas,
    &backend_cpu_naive_blas,
    &backend_cpu_sliding_window,
    &backend_cpu_sinks_window,
    &backend_cpu_topk_blocks,
    &backend_dist_ring,
    &backend_dist_striped,
    &backend_dist_zigzag,
    &backend_dist_zigzag_balanced,
    &backend_dist_ulysses,
    &backend_dist_usp,
#ifdef ATTN_HAVE_CUDA
    &backend_cuda_naive,
    &backend_cuda_blockwise,
    &backend_cuda_sliding_window,
    &backend_cuda_ring,
    &backend_cuda_striped,
    &backend_cuda_zigzag,
    &backend_cuda_ulysses,
    &backend_cuda_usp,
    &backend_cuda_sinks_window,
    &backend_cuda_topk_blocks,
#endif
};

enum { N_BUILTIN = sizeof backends / sizeof backends[0], MAX_LOADED = 64 };
static const attn_backend_t *loaded[MAX_LOADED];
static int n_loaded;

int registry_count(void) { return N_BUILTIN + n_loaded; }
const attn_backend_t *registry_get(int i) { return i < N_BUILTIN ? backends[i] : loaded[i - N_BUILTIN]; }

const attn_backend_t *registry_find(const char *name) {
    for (int i = 0; i < registry_count(); i++)
        if (strcmp(registry_get(i)->name, name) == 0)
            return registry_get(i);
    return NULL;
}

int registry_add(const attn_backend_t *b, attn_err_t *err) {
    const attn_backend_t *had = registry_find(b->name);
    if (had)
        return attn_fail(err, ATTN_EUSAGE, "backend '%s' is already defined (%s%s%s)", b->name,
                         had->peer_kind ? had->peer_kind : "built in", had->peer_name ? " " : "",
                         had->peer_name ? had->peer_name : "");
    if (n_loaded == MAX_LOADED)
        return attn_fail(err, ATTN_EUSAGE, "backend '%s': at most %d loaded backends", b->name, MAX_LOADED);
    loaded[n_loaded++] = b;
    return ATTN_OK;
}
