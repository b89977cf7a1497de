/* comm.h — the one communication interface of the distributed backends: a transport is a table
 * of operations (comm_ops_t) on a handle driving one or more local ranks; host transports (local,
 * mpi) here, GPU ones (cuda_local, nccl) in impls/cuda/gcomm.cuh. Design: docs/comm.md. */
#pragma once
#include "core/common.h"

typedef struct attn_comm attn_comm_t;

typedef struct {
    void *impl; /* transport's handle; NULL when the request is inactive */
} comm_req_t;

/* What a rank spent on communication; reset with comm_stats_reset. */
typedef struct {
    double total_s;   /* wall time inside comm calls: posting, copying, waiting */
    double exposed_s; /* wall time blocked in wait: communication compute did not hide */
    uint64_t bytes_sent, bytes_recv;
} comm_stats_t;

/* Local rank i's side of one ring step (comm_shift): send_bytes from send go to rank r + 1,
 * recv_bytes from rank r − 1 arrive in recv (mod P; with P = 1 the rank sends to itself), or,
 * when `peers` is 1, to send_to and from recv_from: a ring over a subset of the ranks (usp's
 * rings across its Ulysses groups); send_to = recv_from = r is a ring of one (a local copy). */
typedef struct {
    const void *send;
    size_t send_bytes;
    void *recv;
    size_t recv_bytes;
    /* GPU transports' ordering, a cudaEvent_t each or NULL: the receive waits for recv_free (the
     * compute that last read recv); `started` is recorded where the copy may begin. The host
     * transports order by program order and refuse them. */
    void *recv_free, *started;
    int peers; /* 0: r ± 1 (mod P); 1: the two ranks below */
    int send_to, recv_from;
} comm_shift_part_t;

/* Local rank i's side of an all-to-all with per-peer sizes (comm_alltoallv_ranks): send_bytes[q]
 * bytes at send + send_off[q] go to rank q, recv_bytes[q] bytes from it land at recv + recv_off[q]
 * (arrays of P; the self part is a local copy). */
typedef struct {
    const void *send;
    const size_t *send_bytes, *send_off;
    void *recv;
    const size_t *recv_bytes, *recv_off;
} comm_a2a_part_t;

/* Every transport fills every entry up to `close`; one that does not apply fails with a message
 * saying so. The three hooks after it are optional (NULL: nothing to do). Steps act for all
 * c->count local ranks of the handle at once, part[i] being rank c->rank + i's. */
typedef struct {
    const char *name;
    /* Point-to-point on host memory (host transports; the GPU ones refuse). */
    int (*isend)(attn_comm_t *c, const void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err);
    int (*irecv)(attn_comm_t *c, void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err);
    /* Blocks until req completes, or fails after timeout_s without progress. */
    int (*wait)(attn_comm_t *c, comm_req_t *req, attn_err_t *err);
    /* One ring step. GPU: enqueued on each rank's comm stream, in the order gcomm.cuh states;
     * pending must be NULL. Host: the receive, then the send, are posted and left in pending[2i]
     * (send) and pending[2i + 1] (receive) for comm_wait; pending NULL waits for both here. */
    int (*shift)(attn_comm_t *c, const comm_shift_part_t part[], int tag, comm_req_t pending[], attn_err_t *err);
    /* All-to-all. Host: complete on return. GPU: enqueued; every comm stream then waits for all
     * of it, so send buffers may be reused after it. */
    int (*alltoallv)(attn_comm_t *c, const comm_a2a_part_t part[], int tag, attn_err_t *err);
    /* Host wait for an ordering point, failing after timeout_s: a cudaEvent_t under the GPU
     * transports (`what` names it in errors), a comm_req_t * from shift under the host ones. */
    int (*sync)(attn_comm_t *c, void *point, const char *what, attn_err_t *err);
    /* Once every local rank's inputs are in place: the timed region starts together on every
     * rank (a barrier over the processes; nothing where one process drives every rank). */
    int (*ready)(attn_comm_t *c, attn_err_t *err);
    /* Marks this rank failed so peers blocked on it return an error at once (best effort). */
    void (*abort)(attn_comm_t *c, const char *why);
    /* Releases what the handle holds (GPU: streams, communicator). Host handles belong to their
     * world (comm_local_run, comm_mpi_finalize): nothing. Safe on a closed handle. */
    void (*close)(attn_comm_t *c);
    /* Optional: lets pending transfers advance while the rank computes (MPI moves a large
     * message only inside MPI calls; compute loops call this between tiles). */
    void (*progress)(attn_comm_t *c);
    /* Optional: 1 once any rank of the world has failed (lets a stalled rank notice). */
    int (*peer_failed)(attn_comm_t *c);
    /* Optional: take (1) or give back (0) one of the world's compute slots (see comm_compute_begin). */
    void (*compute_slot)(attn_comm_t *c, int take);
} comm_ops_t;

struct attn_comm {
    const comm_ops_t *ops;
    int rank, size;
    int count; /* local ranks the handle drives: rank .. rank + count − 1 (1 for the host transports) */
    double timeout_s;
    int shared_memory; /* all ranks see one address space (local): whole tensors are readable by all */
    comm_stats_t stats;
    void *impl;
};

enum { COMM_SUM = 0, COMM_MAX };
enum { COMM_TAG_READY = 1 << 21 }; /* comm_ready's barrier: above every ring step's tag, below dist.c's */

int comm_isend(attn_comm_t *c, const void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err);
int comm_irecv(attn_comm_t *c, void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err);
int comm_wait(attn_comm_t *c, comm_req_t *req, attn_err_t *err);
/* The table's steps (see comm_ops_t). */
int comm_shift(attn_comm_t *c, const comm_shift_part_t part[], int tag, comm_req_t pending[], attn_err_t *err);
int comm_alltoallv_ranks(attn_comm_t *c, const comm_a2a_part_t part[], int tag, attn_err_t *err);
int comm_sync(attn_comm_t *c, void *point, const char *what, attn_err_t *err);
int comm_ready(attn_comm_t *c, attn_err_t *err);
void comm_abort(attn_comm_t *c, const char *why);
void comm_close(attn_comm_t *c);
/* comm_alltoallv_ranks for a handle of one rank: every rank sends send_bytes[q] bytes at
 * send + send_off[q] to rank q and receives recv_bytes[q] bytes into recv + recv_off[q] from it. */
int comm_alltoallv(attn_comm_t *c, const void *send, const size_t *send_bytes, const size_t *send_off, void *recv,
                   const size_t *recv_bytes, const size_t *recv_off, int tag, attn_err_t *err);
/* In-place reduction of n doubles over all ranks (COMM_SUM or COMM_MAX); n ≤ 4096. */
int comm_allreduce(attn_comm_t *c, double *values, int n, int op, int tag, attn_err_t *err);
int comm_barrier(attn_comm_t *c, int tag, attn_err_t *err);
void comm_stats_reset(attn_comm_t *c);
/* Brackets a rank's compute. Under `local`, P ranks share the machine's cores: at most
 * `compute_slots` ranks compute at once, so a rank's thread CPU time is its work on a core of
 * its own, not inflated by time-slicing and cache refills that fade as other ranks finish
 * (which would flatten the measured load imbalance). Never held across a wait. */
void comm_compute_begin(attn_comm_t *c);
void comm_compute_end(attn_comm_t *c);
/* The transport's progress hook, timed as communication; a no-op where there is none. */
void comm_progress(attn_comm_t *c);

/* Runs fn on P ranks of the local transport (threads) and joins them; compute_slots ≥ 1 caps
 * the ranks inside comm_compute_begin/end at once (the cores to use). On failure, err holds
 * the first failing rank's message, prefixed with its rank. */
typedef int (*comm_rank_fn)(attn_comm_t *c, void *arg, attn_err_t *err);
int comm_local_run(int ranks, double timeout_s, int compute_slots, comm_rank_fn fn, void *arg, attn_err_t *err);

/* The host transports' tables, for tests (callers reach a table through their handle's ops);
 * comm_mpi_ops() is NULL in a build without MPI. */
const comm_ops_t *comm_local_ops(void);
const comm_ops_t *comm_mpi_ops(void);

/* The `mpi` transport (built when Open MPI is found; comm_mpi_available() says). One process
 * per rank: rank 0 runs the CLI and its tasks, the others serve distributed calls (dist_follow). */
int comm_mpi_available(void);
/* MPI_Init once (thread level FUNNELED: only a rank's main thread talks). */
int comm_mpi_init(int *argc, char ***argv, attn_err_t *err);
/* The world communicator after comm_mpi_init, else NULL. */
attn_comm_t *comm_mpi_world(void);
/* Control messages (rank 0 → others, commands of a few hundred bytes) on their own channel.
 * The receive waits without a timeout and mostly sleeping: an idle rank must not take a core
 * from rank 0's single-rank work, and rank 0 may compute for hours between commands. */
int comm_mpi_ctrl_send(int dst, const void *buf, size_t bytes, attn_err_t *err);
int comm_mpi_ctrl_recv(void *buf, size_t bytes, attn_err_t *err);
void comm_mpi_finalize(void);
/* The MPI library's name and version ("Open MPI v4.1.4"); "" without MPI. */
void comm_mpi_version(char *buf, size_t len);
/* Ends every process of the job with `code` after printing `why` (a failed rank under mpi). */
#ifdef __cplusplus
[[noreturn]] void comm_mpi_abort(int rank, const char *why, int code); /* included by the CUDA transports */
#else
_Noreturn void comm_mpi_abort(int rank, const char *why, int code);
#endif
