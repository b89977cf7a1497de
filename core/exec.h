/* exec.h — how one attention call runs, apart from what it computes (core/problem.h): threads,
 * the GPU, the ranks and their transport, token layout, timeouts, and the tests' injected faults.
 * Every backend op takes the problem and this; neither changes the other's meaning. */
#pragma once
#include "core/common.h"

/* local, mpi: host transports of the CPU distributed backends. cuda_local (P virtual ranks on
 * one GPU) and nccl (one GPU per process under mpirun): the GPU distributed backends'. */
typedef enum { ATTN_TRANSPORT_LOCAL = 0, ATTN_TRANSPORT_MPI, ATTN_TRANSPORT_CUDA_LOCAL, ATTN_TRANSPORT_NCCL } attn_transport_t;
/* Injected faults (hidden --inject-fault, tests only). EXIT and STALL kill or freeze one rank,
 * SLOW delays one rank by fault_delay_s then lets it go on (within the timeout the run must still
 * succeed; beyond it the peers must fail it, and the late rank must not hang);
 * DROP_STEP and LOCAL_POSITIONS are wrong answers the needle tests must catch: the ring family
 * skips step fault_step's K/V block on every rank, or masks with rank-local positions. */
typedef enum {
    ATTN_FAULT_NONE = 0, ATTN_FAULT_EXIT, ATTN_FAULT_STALL, ATTN_FAULT_DROP_STEP, ATTN_FAULT_LOCAL_POSITIONS,
    ATTN_FAULT_SLOW
} attn_fault_t;

/* The precision a distributed backend merges its partial results in (--merge-dtype): float32, or
 * the running O rounded to bfloat16 after every merge (LSE float32), as peers that keep the output
 * in the input dtype between ring steps do: the drift the precision study shows. */
typedef enum { ATTN_MERGE_F32 = 0, ATTN_MERGE_BF16 } attn_merge_t;

/* The single-GPU forward kernel under the CUDA backends (--kernel): auto = wgmma (flash_sm90.cu)
 * on a compute capability 9.0 GPU when the shape has a kernel there, else mma (flash.cu). */
typedef enum { ATTN_KERNEL_AUTO = 0, ATTN_KERNEL_MMA, ATTN_KERNEL_WGMMA } attn_kernel_t;
static inline const char *kernel_name(int k) { return k == ATTN_KERNEL_MMA ? "mma" : k == ATTN_KERNEL_WGMMA ? "wgmma" : "auto"; }

typedef struct {
    int threads;          /* worker threads; 0 = all online cores */
    int device;           /* GPU backends: CUDA device ordinal (--device) */
    int ranks;            /* distributed backends: ranks P (0 or 1 = single rank) */
    double comm_timeout;  /* distributed backends: seconds without progress before failing */
    attn_transport_t transport;
    int layout;             /* ulysses: attn_layout_kind_t of the sequence shards; −1 = the backend's own */
    char local_backend[24]; /* ulysses: the single-rank backend run on each head shard; "" = blockwise */
    /* Hidden --inject-fault (tests only): rank fault_rank exits or stalls at step fault_step. */
    attn_fault_t fault;
    int fault_rank, fault_step;
    double fault_delay_s; /* SLOW: seconds the rank sleeps at fault_step */
    attn_merge_t merge;   /* ring family: the partial results' merge precision */
    int ulysses_degree;   /* usp: U of the U × R mesh (R = P / U); 0 = gcd(P, H_kv) */
    /* The key budget of the approximate backends (docs/approximate.md): sinks_window keeps the
     * first `sinks` keys; topk_blocks the `topk` best-bounded key tiles per query tile, or, when
     * topk_pct > 0, that percent of the tiles the query tile sees; both keep the local window of
     * approx_window keys (i − w < j ≤ i). */
    int64_t sinks, topk, approx_window;
    double topk_pct;
    /* Hidden --inject-fault …:backward: the fault fires in the backward's steps (ring_grad.c,
     * ulysses_grad.c) instead of the forward's; DROP_STEP then drops the dK/dV partial sum that
     * arrives at that step. */
    int fault_backward;
    int kernel; /* CUDA backends: attn_kernel_t (--kernel) */
    /* K and V (attn_io_t.k, .v) are already in the memory of GPU `device`, in the dtype's device
     * form (bf16: 2-byte bfloat16, f32: float), not host float32 arrays: a KV cache kept on the GPU
     * (model.h's model_memspace_t). Q, O and LSE stay host arrays. Only a backend with
     * attn_backend_t.device_kv takes it; backend_supports declines the others with the reason. */
    int kv_device;
    /* Q, O and LSE (attn_io_t.q, .o, .lse) are float32 arrays in that GPU's memory too (the
     * device-resident model forward, model/devops.h): nothing of the call is on the host. Only a
     * backend with attn_backend_t.device_qo takes it. */
    int qo_device;
} attn_exec_t;

/* The defaults of a single-rank call: all cores, device 0, one rank on `local`, the backend's
 * own layout, no fault. */
attn_exec_t exec_default(void);
/* Worker threads to use: x->threads, or every online core when it is 0. */
int exec_threads(const attn_exec_t *x);
/* The ranks P of a distributed call (1 when ranks is 0 or 1). */
static inline int exec_ranks(const attn_exec_t *x) { return x->ranks > 1 ? x->ranks : 1; }
/* ATTN_EUSAGE with a message when a field is out of its range. */
int exec_validate(const attn_exec_t *x, attn_err_t *err);

/* "local", "mpi", "cuda_local", "nccl"; transport_parse returns 1 on success. */
const char *transport_name(attn_transport_t t);
int transport_parse(const char *s, attn_transport_t *out);
/* 1 for the transports with one process per rank under mpirun (mpi, nccl): only rank 0 runs
 * the harness, the others serve its distributed calls. */
static inline int transport_over_mpi(attn_transport_t t) { return t == ATTN_TRANSPORT_MPI || t == ATTN_TRANSPORT_NCCL; }
