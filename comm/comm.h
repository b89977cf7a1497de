/* comm.h — the one communication interface the distributed backends are written against: a
 * transport is a table of operations (`local`: ranks as threads; `mpi`: one process per rank),
 * and every blocking call fails after timeout_s naming the rank. Design: docs/comm.md. */
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

typedef struct {
    const char *name;
    int (*isend)(attn_comm_t *c, const void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err);
    int (*irecv)(attn_comm_t *c, void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err);
    /* Blocks until req completes, or fails after timeout_s without progress. */
    int (*wait)(attn_comm_t *c, comm_req_t *req, attn_err_t *err);
    /* Marks this rank failed so peers blocked on it return an error at once (best effort). */
    void (*abort)(attn_comm_t *c, const char *why);
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
    double timeout_s;
    int shared_memory; /* all ranks see one address space (local): whole tensors are readable by all */
    comm_stats_t stats;
    void *impl;
};

enum { COMM_SUM = 0, COMM_MAX };

int comm_isend(attn_comm_t *c, const void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err);
int comm_irecv(attn_comm_t *c, void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err);
int comm_wait(attn_comm_t *c, comm_req_t *req, attn_err_t *err);
/* Every rank sends send_bytes[q] bytes at send + send_off[q] to rank q and receives
 * recv_bytes[q] bytes into recv + recv_off[q] from it (the self part is a local copy). */
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
