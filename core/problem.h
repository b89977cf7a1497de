/* problem.h — what one attention call computes: shapes, mask, scale, dtype, tiling.
 * O = softmax(Q Kᵀ · scale + mask) V with query row r at absolute position n_k − n_q + r.
 * Compute kernels see rows through attn_span_t (global position = start + stride·r), so the
 * same kernel serves a whole sequence and a distributed rank's piece of it. */
#pragma once
#include "core/common.h"
#include "core/mask.h"

/* ATTN_BF16 (GPU backends): the host arrays are float32 like ATTN_F32; the backend rounds Q, K, V
 * to bfloat16 on the device, computes with float32 accumulation and returns O and LSE in float32. */
typedef enum { ATTN_F32 = 0, ATTN_F64, ATTN_BF16 } attn_dtype_t;
/* local, mpi: host transports of the CPU distributed backends. cuda_local (P virtual ranks on
 * one GPU) and nccl (one GPU per process under mpirun): the GPU distributed backends'. */
typedef enum { ATTN_TRANSPORT_LOCAL = 0, ATTN_TRANSPORT_MPI, ATTN_TRANSPORT_CUDA_LOCAL, ATTN_TRANSPORT_NCCL } attn_transport_t;
/* Injected faults (hidden --inject-fault, tests only). EXIT and STALL kill or freeze one rank;
 * DROP_STEP and LOCAL_POSITIONS are wrong answers the needle tests must catch: the ring family
 * skips step fault_step's K/V block on every rank, or masks with rank-local positions. */
typedef enum {
    ATTN_FAULT_NONE = 0, ATTN_FAULT_EXIT, ATTN_FAULT_STALL, ATTN_FAULT_DROP_STEP, ATTN_FAULT_LOCAL_POSITIONS
} attn_fault_t;

typedef struct {
    int64_t batch, heads, kv_heads, head_dim; /* B, H, H_kv, d */
    int64_t n_q, n_k;                         /* query rows, key rows */
    attn_mask_t mask;
    int64_t window;       /* w for ATTN_MASK_WINDOW: key j visible iff i − w < j ≤ i */
    double scale;         /* 0 means the default 1/√d */
    attn_dtype_t dtype;   /* element type of Q, K, V, O; LSE always matches it (bf16: see above) */
    int block_q, block_k; /* tile sizes for tiled backends; 0 = backend default */
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
} attn_problem_t;

enum { ATTN_MAX_RANKS = 64 };

/* Per-rank figures a distributed backend reports when asked (attn_io_t.dist non-NULL). */
typedef struct {
    int ranks;
    double compute_s[ATTN_MAX_RANKS];  /* thread CPU time in compute and merges */
    double comm_s[ATTN_MAX_RANKS];     /* wall time inside communication calls */
    double exposed_s[ATTN_MAX_RANKS];  /* wall time blocked waiting for communication */
    double bytes_sent[ATTN_MAX_RANKS], bytes_recv[ATTN_MAX_RANKS];
    double blocks_computed[ATTN_MAX_RANKS], blocks_skipped[ATTN_MAX_RANKS];
    double critical_path_s;            /* Σ over steps of the slowest rank's compute in that step */
    double wall_s;                     /* slowest rank's wall time from the start barrier to its last step */
    double device_bytes[ATTN_MAX_RANKS]; /* GPU backends: each rank's device buffers (0 on the CPU) */
} attn_dist_stats_t;

/* What a distributed backend's figures should be, from the problem alone (its `expect`). Work
 * is counted in visible (query, key) pairs, so masks and uneven shards are exact. */
typedef struct {
    double imbalance;     /* max/mean work over ranks */
    double critical_path; /* Σ over steps of the busiest rank's work, over mean work per rank (1 = ideal) */
    double bytes_sent[ATTN_MAX_RANKS], bytes_recv[ATTN_MAX_RANKS];
} attn_dist_expect_t;

/* Tensors of one call, row-major: Q (B,H,n_q,d), K,V (B,H_kv,n_k,d), O (B,H,n_q,d),
 * LSE (B,H,n_q) natural log. Element type is problem.dtype. */
typedef struct {
    const void *q, *k, *v;
    void *o, *lse;
    attn_dist_stats_t *dist; /* optional */
    /* forward_rank only: q, k, v, o, lse are this rank's shards under the backend's layout,
     * (outer, local rows, d) as dist_scatter leaves them, not the whole tensors — the model
     * under a distributed backend keeps its tokens sharded through every layer (dist_model.h). */
    int sharded;
    /* Optional: a GPU backend writes here the seconds its compute took on the device, timed with
     * CUDA events around the kernels only (inputs already on the device and converted; copies
     * excluded). The throughput task reports that figure for GPU backends. */
    double *device_s;
} attn_io_t;

double problem_scale(const attn_problem_t *p);
int problem_threads(const attn_problem_t *p);
/* "local", "mpi", "cuda_local", "nccl"; transport_parse returns 1 on success. */
const char *transport_name(attn_transport_t t);
int transport_parse(const char *s, attn_transport_t *out);
/* 1 for the transports with one process per rank under mpirun (mpi, nccl): only rank 0 runs
 * the harness, the others serve its distributed calls. */
static inline int transport_over_mpi(attn_transport_t t) { return t == ATTN_TRANSPORT_MPI || t == ATTN_TRANSPORT_NCCL; }
const char *dtype_name(attn_dtype_t t);
int dtype_parse(const char *s, attn_dtype_t *out);
/* Bytes of one element of the host arrays (bf16: 4, they hold float32). */
size_t dtype_size(attn_dtype_t t);

/* Shape checks every user problem must pass before any compute; ATTN_EUSAGE with a message. */
int problem_validate(const attn_problem_t *p, attn_err_t *err);

/* Default spans of a whole problem: queries at the end of the key sequence. */
attn_span_t problem_q_span(const attn_problem_t *p);
attn_span_t problem_k_span(const attn_problem_t *p);

/* Number of visible (query, key) pairs per (batch, head), for FLOP counting: 4·d per pair. */
double problem_visible_pairs(const attn_problem_t *p);
double problem_flops(const attn_problem_t *p);

/* Bytes of Q, K, V, O and LSE together. */
size_t problem_io_bytes(const attn_problem_t *p);
size_t problem_numel_q(const attn_problem_t *p);
size_t problem_numel_kv(const attn_problem_t *p);
size_t problem_numel_lse(const attn_problem_t *p);
