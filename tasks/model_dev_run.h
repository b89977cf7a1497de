/* model_dev_run.h — `--task model`'s forward for a GPU backend: the model resident on the device
 * (model/devops.h) over a KV cache in that device's memory, so its tokens/s measure the GPU path,
 * not the host's dense layers and a per-call upload (docs/device-model.md). */
#pragma once
#include "model/devops.h"

/* The device's ops and KV memory space of a run (the GPU's: impls/cuda/model_dev.h and
 * kv_device.h; a test's host stand-in); NULL members: no device path. */
typedef struct {
    const model_devops_t *ops;
    const model_memspace_t *space;
} model_dev_path_t;

/* 1 when be's forward of n tokens shaped like tmpl runs resident under x: d has a path, be reads
 * a device cache (device_kv) and takes the layer's call with it (backend_supports), the dtype is
 * bf16 or f16 (the cache's), and every rank is in this process (not mpi/nccl). Else 0: the host
 * path (model_forward without a cache). */
int model_dev_takes(const model_dev_path_t *d, const model_t *m, const attn_backend_t *be, const attn_problem_t *tmpl,
                    const attn_exec_t *x, int64_t n);

/* One forward of n tokens from position 0 on d, logits of the last n_logits rows. *cache is made
 * in d->space on the first call (capacity n, tmpl's dtype) and emptied before each: the caller
 * frees it with model_cache_free once (cache->k non-NULL). */
int model_dev_run(const model_t *m, const model_dev_path_t *d, model_cache_t *cache, const attn_backend_t *be,
                  const attn_problem_t *tmpl, const attn_exec_t *x, const int32_t *tokens, int64_t n, int64_t n_logits,
                  double *logits, attn_err_t *err);
