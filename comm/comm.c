/* comm.c — the comm interface's entry points: timing and byte accounting around a transport's
 * point-to-point operations, dispatch of its steps through the table, and the reductions built
 * on its all-to-all (P ≤ 64 here, so O(P) messages per rank are fine). */
#include "comm/comm.h"

#include <stdlib.h>
#include <string.h>

#include "core/timing.h"

int comm_isend(attn_comm_t *c, const void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err) {
    double t0 = time_now_s();
    int rc = c->ops->isend(c, buf, bytes, peer, tag, req, err);
    c->stats.total_s += time_now_s() - t0;
    c->stats.bytes_sent += bytes;
    return rc;
}

int comm_irecv(attn_comm_t *c, void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err) {
    double t0 = time_now_s();
    int rc = c->ops->irecv(c, buf, bytes, peer, tag, req, err);
    c->stats.total_s += time_now_s() - t0;
    c->stats.bytes_recv += bytes;
    return rc;
}

int comm_wait(attn_comm_t *c, comm_req_t *req, attn_err_t *err) {
    if (!req->impl)
        return ATTN_OK;
    double t0 = time_now_s();
    int rc = c->ops->wait(c, req, err);
    double t = time_now_s() - t0;
    c->stats.total_s += t;
    c->stats.exposed_s += t;
    return rc;
}

void comm_stats_reset(attn_comm_t *c) { memset(&c->stats, 0, sizeof c->stats); }

void comm_compute_begin(attn_comm_t *c) {
    if (c->ops->compute_slot)
        c->ops->compute_slot(c, 1);
}

void comm_compute_end(attn_comm_t *c) {
    if (c->ops->compute_slot)
        c->ops->compute_slot(c, 0);
}

void comm_progress(attn_comm_t *c) {
    if (!c || !c->ops->progress)
        return;
    double t0 = time_now_s();
    c->ops->progress(c);
    c->stats.total_s += time_now_s() - t0;
}

int comm_shift(attn_comm_t *c, const comm_shift_part_t part[], int tag, comm_req_t pending[], attn_err_t *err) {
    return c->ops->shift(c, part, tag, pending, err);
}

int comm_alltoallv_ranks(attn_comm_t *c, const comm_a2a_part_t part[], int tag, attn_err_t *err) {
    return c->ops->alltoallv(c, part, tag, err);
}

int comm_alltoallv(attn_comm_t *c, const void *send, const size_t *send_bytes, const size_t *send_off, void *recv,
                   const size_t *recv_bytes, const size_t *recv_off, int tag, attn_err_t *err) {
    comm_a2a_part_t part = {send, send_bytes, send_off, recv, recv_bytes, recv_off};
    return c->ops->alltoallv(c, &part, tag, err);
}

int comm_sync(attn_comm_t *c, void *point, const char *what, attn_err_t *err) {
    return c->ops->sync(c, point, what, err);
}

int comm_ready(attn_comm_t *c, attn_err_t *err) { return c->ops->ready(c, err); }

void comm_abort(attn_comm_t *c, const char *why) { c->ops->abort(c, why); }

/* A handle that was never opened has no table yet: closing it is a no-op, like closing it twice. */
void comm_close(attn_comm_t *c) {
    if (c->ops)
        c->ops->close(c);
}

int comm_allreduce(attn_comm_t *c, double *values, int n, int op, int tag, attn_err_t *err) {
    int P = c->size;
    if (n < 1 || n > 4096)
        return attn_fail(err, ATTN_ERUNTIME, "allreduce of %d values (1..4096)", n);
    size_t bytes = (size_t)n * sizeof(double);
    double *send = malloc(bytes * (size_t)P), *recv = malloc(bytes * (size_t)P);
    size_t *counts = malloc(sizeof(size_t) * (size_t)P), *offs = malloc(sizeof(size_t) * (size_t)P);
    int rc = ATTN_OK;
    if (!send || !recv || !counts || !offs)
        rc = attn_fail(err, ATTN_ERUNTIME, "rank %d: out of memory in allreduce", c->rank);
    for (int q = 0; rc == ATTN_OK && q < P; q++) {
        memcpy(send + (size_t)q * n, values, bytes);
        counts[q] = bytes;
        offs[q] = bytes * (size_t)q;
    }
    if (rc == ATTN_OK)
        rc = comm_alltoallv(c, send, counts, offs, recv, counts, offs, tag, err);
    for (int i = 0; rc == ATTN_OK && i < n; i++) {
        double acc = recv[i];
        for (int q = 1; q < P; q++) {
            double x = recv[(size_t)q * n + i];
            acc = op == COMM_MAX ? (x > acc ? x : acc) : acc + x;
        }
        values[i] = acc;
    }
    free(send), free(recv), free(counts), free(offs);
    return rc;
}

int comm_barrier(attn_comm_t *c, int tag, attn_err_t *err) {
    double one = 1.0;
    return comm_allreduce(c, &one, 1, COMM_SUM, tag, err);
}
