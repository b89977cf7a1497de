/* registry.c — the static table of backends: the CPU and host-distributed ones always, the
 * CUDA ones behind ATTN_HAVE_CUDA. Adding a backend is one line here. */
#include "core/backend.h"

#include <string.h>


extern const attn_backend_t backend_cpu_naive;
extern const attn_backend_t backend_cpu_blockwise;
extern const attn_backend_t backend_cpu_blockwise_blas;
extern const attn_backend_t backend_cpu_naive_blas;
extern const attn_backend_t backend_cpu_sliding_window;
extern const attn_backend_t backend_dist_ring;
extern const attn_backend_t backend_dist_striped;
extern const attn_backend_t backend_dist_zigzag;
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
#endif

static const attn_backend_t *const backends[] = {
    &backend_cpu_naive,
    &backend_cpu_blockwise,
    &backend_cpu_blockwise_blas,
    &backend_cpu_naive_blas,
    &backend_cpu_sliding_window,
    &backend_dist_ring,
    &backend_dist_striped,
    &backend_dist_zigzag,
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
#endif
};

int registry_count(void) { return (int)(sizeof backends / sizeof backends[0]); }
const attn_backend_t *registry_get(int i) { return backends[i]; }

const attn_backend_t *registry_find(const char *name) {
    for (int i = 0; i < registry_count(); i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}
