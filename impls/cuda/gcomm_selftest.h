/* gcomm_selftest.h — byte-exact checks of the GPU transports (gcomm_selftest.cu), callable
 * from C tests. Each returns ATTN_OK or an error naming the first wrong byte. */
#pragma once
#include "core/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cuda_local with `ranks` virtual ranks on `device`: a full ring rotation, an uneven all-to-all. */
int gcomm_selftest_local(int ranks, int device, attn_err_t *err);
/* nccl, one rank, bootstrapped through the file `path` (no MPI): the same two exchanges. */
int gcomm_selftest_nccl_file(const char *path, int device, attn_err_t *err);

#ifdef __cplusplus
}
#endif
