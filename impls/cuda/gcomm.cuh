/* gcomm.cuh — the GPU transports of comm/comm.h's table (cuda_local: P virtual ranks on one GPU;
 * nccl: a rank per process and GPU) for ring_cuda, striped_cuda, zigzag_cuda and ulysses_cuda;
 * each wrapper states the ordering it guarantees. Design: docs/gpu-transports.md. */
#pragma once
#include <cuda_runtime.h>

extern "C" {
#include "comm/comm.h"
#include "core/common.h"
#include "core/problem.h"
#include "core/timing.h"
#include "impls/cuda/gcomm_ops.h"
}

/* A GPU transport's handle: the comm handle (ops, rank, size = P, count, timeout_s: gcomm_sync
 * gives up and aborts an nccl communicator after it) and what the transport drives. */
struct gcomm : attn_comm_t {
    int first;        /* ranks driven here: first .. first + count − 1; equal to rank (the opens set
                       * both), kept under the name the GPU loops use */
    int device;       /* CUDA device ordinal of this process's ranks */
    cudaStream_t compute[ATTN_MAX_RANKS], comm[ATTN_MAX_RANKS]; /* by local index */
    void *nccl;       /* ncclComm_t under nccl */
    attn_comm_t *world; /* nccl: the MPI world of this call (gcomm_inputs_ready's barrier) */
};

/* P virtual ranks on device `device` (already current): streams created non-blocking. */
int gcomm_local_open(gcomm *g, int ranks, int device, double timeout_s, attn_err_t *err);

/* Without nccl.h at build time every nccl function fails with a message saying so.
 * The nccl transport for this process's rank of the MPI world `world` (rank 0 creates the
 * unique id and sends it to every rank through world): one rank per process, on `device`.
 * Communicator creation is nonblocking and fails after timeout_s (a peer that never arrives). */
int gcomm_nccl_open_mpi(gcomm *g, attn_comm_t *world, int device, double timeout_s, attn_err_t *err);
/* The same without MPI: rank 0 writes the unique id to `path` (through a temporary file and a
 * rename, so a reader never sees half of it); the other ranks wait up to timeout_s for it. */
int gcomm_nccl_open_file(gcomm *g, const char *path, int rank, int ranks, int device, double timeout_s,
                         attn_err_t *err);

/* Streams destroyed, the communicator destroyed (or aborted after an error). Safe on a zeroed g. */
inline void gcomm_close(gcomm *g) { comm_close(g); }
/* After an error: abort the communicator (nccl) so peers blocked on this rank fail instead of hanging. */
inline void gcomm_abort(gcomm *g) {
    if (g->ops)
        comm_abort(g, "aborted after an error");
}

/* One ring step for every rank driven here: rank r sends send[i] (send_bytes[i] bytes) to rank
 * r + 1 and receives recv_bytes[i] bytes into recv[i] from rank r − 1 (mod P), enqueued on
 * comm[i]. Ordering it guarantees under cuda_local: a copy starts after everything enqueued
 * earlier on the sender's and the receiver's comm streams (the previous step's copies, which
 * fill the send buffer and read the buffer now received into). recv_free[i], when not null, is
 * an event after which recv[i] may be overwritten (the compute that last read it): only rank
 * i's receive waits for it, so a slow rank's compute never delays its neighbours' copies.
 * started[i], when not null, is recorded on comm[i] after those waits, where the copy starts. */
inline int gcomm_shift(gcomm *g, void *const send[], const size_t send_bytes[], void *const recv[],
                       const size_t recv_bytes[], const cudaEvent_t recv_free[], const cudaEvent_t started[],
                       attn_err_t *err) {
    comm_shift_part_t part[ATTN_MAX_RANKS];
    for (int i = 0; i < g->count; i++)
        part[i] = {send[i], send_bytes[i], recv[i], recv_bytes[i], recv_free ? (void *)recv_free[i] : nullptr,
                   started ? (void *)started[i] : nullptr, 0, 0, 0}; /* peers 0: the ring r ± 1 */
    return comm_shift(g, part, 0, nullptr, err);
}

/* All-to-all with per-peer sizes, for every rank driven here: local rank i sends
 * send_bytes[i][q] bytes from send[i] + send_off[i][q] to rank q and receives recv_bytes[i][q]
 * bytes into recv[i] + recv_off[i][q] from rank q (the self part is a copy too), enqueued on
 * comm[i]. Starts after everything enqueued earlier on every participating comm stream and
 * ends with every comm stream waiting for all of it (so send buffers may be reused after it). */
typedef size_t gcomm_sizes_t[ATTN_MAX_RANKS][ATTN_MAX_RANKS];
inline int gcomm_alltoallv(gcomm *g, const void *const send[], const gcomm_sizes_t send_bytes,
                           const gcomm_sizes_t send_off, void *const recv[], const gcomm_sizes_t recv_bytes,
                           const gcomm_sizes_t recv_off, attn_err_t *err) {
    comm_a2a_part_t part[ATTN_MAX_RANKS];
    for (int i = 0; i < g->count; i++)
        part[i] = {send[i], send_bytes[i], send_off[i], recv[i], recv_bytes[i], recv_off[i]};
    return comm_alltoallv_ranks(g, part, 0, err);
}

/* Host wait for event ev, polling: returns the CUDA error if the device failed, the NCCL
 * asynchronous error if the communicator failed (then aborting it), or a timeout error naming
 * `what` after timeout_s without completion (aborting the communicator). */
inline int gcomm_sync(gcomm *g, cudaEvent_t ev, const char *what, attn_err_t *err) {
    return comm_sync(g, (void *)ev, what, err);
}

/* Called once every local rank's inputs are on its device (uploads synchronised): under nccl a
 * barrier over g->world, so every rank's timed region starts together and no rank's step 0
 * absorbs a peer's upload time; nothing under cuda_local, whose ranks are all here. */
inline int gcomm_inputs_ready(gcomm *g, attn_err_t *err) { return comm_ready(g, err); }

/* The pause between polls of a host wait loop (polls counted from 0): none while the wait is
 * young, for latency, then 200 µs so a waiting host thread does not burn a core. */
void gcomm_poll_pause(long polls);

/* What both tables share (gcomm.cu): the host wait for an event, polling the transport with
 * `poll` (may be null) and saying `on_timeout` when it gives up; the streams' teardown; the
 * refusals of host point-to-point messages and of host requests in a ring step. */
int gcomm_event_wait(gcomm *g, cudaEvent_t ev, const char *what, int (*poll)(gcomm *, attn_err_t *),
                     const char *on_timeout, attn_err_t *err);
void gcomm_streams_destroy(gcomm *g);
int gcomm_no_isend(attn_comm_t *c, const void *, size_t, int, int, comm_req_t *, attn_err_t *err);
int gcomm_no_irecv(attn_comm_t *c, void *, size_t, int, int, comm_req_t *, attn_err_t *err);
int gcomm_no_wait(attn_comm_t *c, comm_req_t *, attn_err_t *err);
int gcomm_no_pending(const gcomm *g, const comm_req_t pending[], attn_err_t *err);

/* gcomm_nccl.cu's internals that its table and open functions share. */
/* ATTN_OK, or the communicator's asynchronous error (the communicator is then aborted). */
int gcomm_nccl_poll(gcomm *g, attn_err_t *err);
/* Destroys (or, after an error, aborts) the communicator; the streams are gcomm_close's. */
void gcomm_nccl_close(gcomm *g, int abort);
