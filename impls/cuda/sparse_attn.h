/* sparse_attn.h — the entry points of sparse_attn.cu, the CUDA approximate backends
 * (sinks_window_cuda, topk_blocks_cuda; table entries in sparse_backends.c). `topk` picks the
 * backend: 0 sinks + window, 1 top-k key tiles. docs/approximate.md, "CUDA". */
#pragma once
#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The selection tiles: Q tiles of *bq rows, K tiles of *bk keys (--block-q/--block-k, else 128
 * and 256, the CPU sgemm path's). 0 with the reason when the kernel cannot take them. */
int cuda_sparse_tiles(const attn_problem_t *p, int *bq, int *bk, char *why, size_t len);
/* What the kernels take: bf16, head dim 64 or 128, the tiles above, the grid. */
int cuda_sparse_supports(const attn_problem_t *p, char *why, size_t len);
size_t cuda_sparse_device_bytes(const attn_problem_t *p, const attn_exec_t *x, int topk);
int cuda_sparse_forward(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, int topk, attn_err_t *err);

#ifdef __cplusplus
}
#endif
