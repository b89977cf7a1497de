/* mpi.c — the `mpi` transport (comm.h): one process per rank under mpirun (Open MPI), waits that
 * poll and give the core back, comm_progress so transfers overlap compute. Design: docs/comm.md. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "comm/p2p.h"
#include "core/timing.h"

typedef struct {
    MPI_Request req;
    int peer, tag, is_send;
    size_t bytes;
} mpi_req_t;

static attn_comm_t world;
static MPI_Comm data_comm = MPI_COMM_NULL, ctrl_comm = MPI_COMM_NULL;
static int initialized;

static int mpi_fail(attn_comm_t *c, int mpi_rc, const char *what, int peer, attn_err_t *err) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(mpi_rc, text, &len);
    return attn_fail(err, ATTN_ERUNTIME, "rank %d: %s with rank %d failed: %s", c->rank, what, peer, text);
}

static int post(attn_comm_t *c, void *buf, size_t bytes, int peer, int tag, int is_send, comm_req_t *req,
                attn_err_t *err) {
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: bad peer %d", c->rank, peer);
    if (bytes > INT_MAX)
        return attn_fail(err, ATTN_ERUNTIME,
                         "rank %d: a %zu-byte message exceeds MPI's int count (2 GiB); use more ranks", c->rank, bytes);
    mpi_req_t *m = malloc(sizeof *m);
    if (!m)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: out of memory posting a message", c->rank);
    *m = (mpi_req_t){.peer = peer, .tag = tag, .is_send = is_send, .bytes = bytes};
    int rc = is_send ? MPI_Isend(buf, (int)bytes, MPI_BYTE, peer, tag, data_comm, &m->req)
                     : MPI_Irecv(buf, (int)bytes, MPI_BYTE, peer, tag, data_comm, &m->req);
    if (rc != MPI_SUCCESS) {
        free(m);
        return mpi_fail(c, rc, is_send ? "send" : "receive", peer, err);
    }
    req->impl = m;
    return ATTN_OK;
}

static int mpi_isend(attn_comm_t *c, const void *buf, size_t bytes, int peer, int tag, comm_req_t *req,
                     attn_err_t *err) {
    return post(c, (void *)buf, bytes, peer, tag, 1, req, err);
}

static int mpi_irecv(attn_comm_t *c, void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err) {
    return post(c, buf, bytes, peer, tag, 0, req, err);
}

static void nap(long ns) {
    struct timespec t = {0, ns};
    nanosleep(&t, NULL);
}

/* Polls until the request completes: spin for the first 200 µs, then 50 µs naps, and 1 ms
 * naps after 20 ms (an idle rank waiting for rank 0 must cost next to nothing). */
static int poll_request(MPI_Request *r, double timeout_s, int *timed_out) {
    double t0 = time_now_s();
    *timed_out = 0;
    for (;;) {
        int done = 0, rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS || done)
            return rc;
        double waited = time_now_s() - t0;
        if (timeout_s > 0 && waited > timeout_s) {
            *timed_out = 1;
            return MPI_SUCCESS;
        }
        if (waited > 2e-2)
            nap(1000000);
        else if (waited > 2e-4)
            nap(50000);
    }
}

static int mpi_wait(attn_comm_t *c, comm_req_t *req, attn_err_t *err) {
    mpi_req_t *m = req->impl;
    int timed_out, rc = poll_request(&m->req, c->timeout_s, &timed_out), out = ATTN_OK;
    if (rc != MPI_SUCCESS)
        out = mpi_fail(c, rc, m->is_send ? "send" : "receive", m->peer, err);
    else if (timed_out) /* the request stays posted: the caller aborts the job, nothing reuses its buffer */
        out = attn_fail(err, ATTN_ERUNTIME, "rank %d: no progress from rank %d for %g s (%s, tag %d, %zu bytes)",
                        c->rank, m->peer, c->timeout_s, m->is_send ? "send" : "receive", m->tag, m->bytes);
    if (out == ATTN_OK)
        free(m);
    req->impl = NULL;
    return out;
}

static void mpi_abort_op(attn_comm_t *c, const char *why) { comm_mpi_abort(c->rank, why, 1); }

static void mpi_progress(attn_comm_t *c) {
    (void)c;
    int flag;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, data_comm, &flag, MPI_STATUS_IGNORE);
}

static const comm_ops_t mpi_ops = {.name = "mpi", .isend = mpi_isend, .irecv = mpi_irecv, .wait = mpi_wait,
                                   .shift = comm_p2p_shift, .alltoallv = comm_p2p_alltoallv, .sync = comm_p2p_sync,
                                   .ready = comm_p2p_ready, .abort = mpi_abort_op, .close = comm_p2p_close,
                                   .progress = mpi_progress};

const comm_ops_t *comm_mpi_ops(void) { return &mpi_ops; }

int comm_mpi_available(void) { return 1; }

int comm_mpi_init(int *argc, char ***argv, attn_err_t *err) {
    if (initialized)
        return ATTN_OK;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return attn_fail(err, ATTN_ERUNTIME, "MPI_Init_thread failed (is this run under mpirun?)");
    MPI_Comm_dup(MPI_COMM_WORLD, &data_comm);
    MPI_Comm_dup(MPI_COMM_WORLD, &ctrl_comm);
    /* Errors come back as return codes and become messages naming the rank. */
    MPI_Comm_set_errhandler(data_comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(ctrl_comm, MPI_ERRORS_RETURN);
    world = (attn_comm_t){.ops = &mpi_ops, .count = 1, .timeout_s = 300.0};
    MPI_Comm_rank(data_comm, &world.rank);
    MPI_Comm_size(data_comm, &world.size);
    initialized = 1;
    return ATTN_OK;
}

attn_comm_t *comm_mpi_world(void) { return initialized ? &world : NULL; }

int comm_mpi_ctrl_send(int dst, const void *buf, size_t bytes, attn_err_t *err) {
    int rc = MPI_Send(buf, (int)bytes, MPI_BYTE, dst, 0, ctrl_comm);
    return rc == MPI_SUCCESS ? ATTN_OK : mpi_fail(&world, rc, "command", dst, err);
}

int comm_mpi_ctrl_recv(void *buf, size_t bytes, attn_err_t *err) {
    MPI_Request r;
    int rc = MPI_Irecv(buf, (int)bytes, MPI_BYTE, 0, 0, ctrl_comm, &r), timed_out;
    if (rc == MPI_SUCCESS)
        rc = poll_request(&r, 0, &timed_out);
    return rc == MPI_SUCCESS ? ATTN_OK : mpi_fail(&world, rc, "waiting for a command", 0, err);
}

void comm_mpi_finalize(void) {
    if (!initialized)
        return;
    MPI_Comm_free(&data_comm);
    MPI_Comm_free(&ctrl_comm);
    MPI_Finalize();
    initialized = 0;
}

_Noreturn void comm_mpi_abort(int rank, const char *why, int code) {
    (void)rank; /* the messages of this layer already name their rank */
    fprintf(stderr, "attnbench: error: %s\n", why);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code); /* not reached: MPI_Abort ends the job */
}

void comm_mpi_version(char *buf, size_t len) {
    char text[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    MPI_Get_library_version(text, &n); /* allowed before MPI_Init */
    text[strcspn(text, ",\n")] = '\0'; /* "Open MPI v4.1.4, package: …" → "Open MPI v4.1.4" */
    snprintf(buf, len, "%s", text);
}
