/* backend.h — the one interface every attention backend implements (ggml-style vtable).
 * The CLI and the tasks know backends only through this struct and the registry table in
 * impls/registry.c; adding a backend is one file plus one line there. */
#pragma once
#include "core/problem.h"

struct attn_comm;

typedef struct attn_backend {
    const char *name;
    const char *device;      /* "cpu" or "cuda" */
    const char *description; /* one line for `attnbench list` */
    const char *layout;      /* distributed backends: token layout name; NULL for single-rank ones */
    /* 1 if the backend can run p; otherwise 0 and a reason ("declines mask causal: ..."). */
    int (*supports)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                    size_t len);
    /* Computes O and LSE for the whole problem. p has passed problem_validate and supports(). */
    int (*forward)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                   attn_err_t *err);
    /* Distributed backends: one rank's part of forward, on communicator c (impls/parallel/dist.h). */
    int (*forward_rank)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x,
                        struct attn_comm *c, const attn_io_t *io, attn_err_t *err);
    /* Distributed backends: the analytic figures the measured ones are reported beside. */
    void (*expect)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x, attn_dist_expect_t *out);
    /* Bytes the backend allocates beyond Q, K, V, O, LSE for p (the analytic memory figure). */
    size_t (*workspace_bytes)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x);
    const void *ctx; /* backend-private constant data */
    /* Backends from outside the binary (--plugin, exec: peers; impls/plugin.c, impls/exec.c):
     * what their records name as the implementation measured (record field `peer`). NULL for
     * the built-in ones. */
    const char *peer_kind, *peer_name, *peer_version; /* kind "plugin" | "exec" */
    /* Optional, exec: peers: the backend times itself on inputs it makes from `seed` (the
     * throughput task): `warmup` untimed calls, then secs[0 … repeats−1]; *timing names the
     * clock ("cuda_events", "wall"). NULL for backends the harness times. */
    int (*time_self)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x, uint64_t seed,
                     int warmup, int repeats, double *secs, char *timing, size_t timing_len, attn_err_t *err);
    /* 1 for a backend that approximates the problem on purpose (sinks_window, topk_blocks): the
     * tasks record its error and the fraction of keys it visited with status `approximate`,
     * never pass/fail against the exact tolerance (docs/approximate.md). */
    int approximate;
    /* The backward ops come after ctx: the CUDA backends initialise the fields above by position
     * (C++), and those without a backward leave these NULL. */
    /* The backward pass (NULL: the backend has none and declines backward cases): dQ, dK, dV
     * from Q, K, V, O, LSE, dO (attn_grad_io_t), overwriting them. p has passed
     * backend_supports_backward. Distributed backends: backward runs backward_rank on P ranks. */
    int (*backward)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x,
                    const attn_grad_io_t *g, attn_err_t *err);
    int (*backward_rank)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x,
                         struct attn_comm *c, const attn_grad_io_t *g, attn_err_t *err);
    /* Distributed backends with backward_rank: the analytic figures of the backward. */
    void (*backward_expect)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x,
                            attn_dist_expect_t *out);
    /* Bytes backward allocates beyond Q, K, V, O, LSE, dO, dQ, dK, dV (NULL: none). */
    size_t (*backward_workspace_bytes)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x);
    /* Optional, last so that positional initialisers stay valid: the key splits of the
     * decode plan (docs/decode.md) the backend runs p with, recorded in the record's config as
     * `split`; 0 when p takes no split plan. */
    int (*decode_split)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x);
    /* 1: forward reads K/V from device memory when x->kv_device says they are there (exec.h);
     * 0 (every CPU backend, and the GPU ones that take only host shards): declined. */
    int device_kv;
    /* 1: forward also takes Q, O and LSE in device memory when x->qo_device says so (exec.h). */
    int device_qo;
    /* Optional, last (positional initialisers stay valid): 1 if the backward takes p under x,
     * else 0 and the reason in why. NULL: the backward takes whatever the forward takes.
     * backend_supports_backward calls it, so every task records a decline as `skipped` with
     * the reason instead of the backward failing at run time. */
    int (*supports_backward)(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x,
                             char *why, size_t len);
} attn_backend_t;

const attn_backend_t *registry_find(const char *name);
/* b->supports, after the checks every backend shares (a single-rank backend declines ranks > 1). */
int backend_supports(const attn_backend_t *b, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len);
/* backend_supports for a backward case: declines, with the reason, a backend without a
 * backward pass or whose supports_backward declines p, and checks the backward's own memory
 * (tensors, gradients, workspace). */
int backend_supports_backward(const attn_backend_t *b, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                              size_t len);
int registry_count(void);
const attn_backend_t *registry_get(int i);
/* Adds a backend loaded at run time (a plugin's, an exec: peer's) after the built-in ones;
 * ATTN_EUSAGE when its name is taken or the table is full. b must outlive the process. */
int registry_add(const attn_backend_t *b, attn_err_t *err);

/* Refuses up front (ATTN_ERUNTIME, message naming the bytes) when the backend's workspace plus
 * the tensors would not fit in available memory. */
int backend_check_memory(const attn_backend_t *b, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                         size_t len);
