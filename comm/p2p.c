/* p2p.c — comm_ops_t's steps for the host transports, on their point-to-point messages through
 * comm.c's timed wrappers (so stats count them like any message). A host handle drives one rank:
 * part[0] is its side; the caller's thread is its stream, so steps order by program order. */
#include "comm/p2p.h"

#include <stdlib.h>
#include <string.h>

static int one_rank(const attn_comm_t *c, const char *what, attn_err_t *err) {
    if (c->count == 1)
        return ATTN_OK;
    return attn_fail(err, ATTN_ERUNTIME, "%s: rank %d: a %s on a handle of %d local ranks (host handles drive one)",
                     c->ops->name, c->rank, what, c->count);
}

int comm_p2p_shift(attn_comm_t *c, const comm_shift_part_t part[], int tag, comm_req_t pending[], attn_err_t *err) {
    ATTN_TRY(one_rank(c, "ring step", err));
    const comm_shift_part_t *m = &part[0];
    if (m->recv_free || m->started)
        return attn_fail(err, ATTN_ERUNTIME,
                         "%s: rank %d: a ring step with GPU ordering events (host steps order by program order)",
                         c->ops->name, c->rank);
    int P = c->size, me = c->rank;
    int to = m->peers ? m->send_to : (me + 1) % P, from = m->peers ? m->recv_from : (me - 1 + P) % P;
    if (to < 0 || to >= P || from < 0 || from >= P)
        return attn_fail(err, ATTN_ERUNTIME, "%s: rank %d: ring step to rank %d from rank %d of %d", c->ops->name, me,
                         to, from, P);
    if (to == me || from == me) { /* the ring closes on this rank */
        if (to != from)
            return attn_fail(err, ATTN_ERUNTIME, "%s: rank %d: a ring step to rank %d from rank %d (a ring of one "
                             "sends to itself only)", c->ops->name, me, to, from);
        if (m->recv_bytes != m->send_bytes)
            return attn_fail(err, ATTN_ERUNTIME, "%s: rank %d expects %zu bytes but sends itself %zu", c->ops->name,
                             me, m->recv_bytes, m->send_bytes);
        if (m->recv_bytes && m->recv != m->send)
            memcpy(m->recv, m->send, m->recv_bytes);
        if (pending)
            pending[0] = pending[1] = (comm_req_t){0};
        return ATTN_OK;
    }
    comm_req_t local[2] = {{0}}, *req = pending ? pending : local;
    req[0] = req[1] = (comm_req_t){0};
    /* The receive first: a transport that matches on arrival finds it posted. */
    int rc = comm_irecv(c, m->recv, m->recv_bytes, from, tag, &req[1], err);
    if (rc == ATTN_OK)
        rc = comm_isend(c, m->send, m->send_bytes, to, tag, &req[0], err);
    if (pending)
        return rc;
    attn_err_t werr = {0};
    int w1 = comm_wait(c, &req[0], &werr), w2 = comm_wait(c, &req[1], &werr); /* both, even after an error */
    if (rc == ATTN_OK && (w1 != ATTN_OK || w2 != ATTN_OK))
        rc = attn_fail(err, ATTN_ERUNTIME, "%s", werr.msg);
    return rc;
}

int comm_p2p_alltoallv(attn_comm_t *c, const comm_a2a_part_t part[], int tag, attn_err_t *err) {
    ATTN_TRY(one_rank(c, "all-to-all", err));
    const void *send = part[0].send;
    void *recv = part[0].recv;
    const size_t *send_bytes = part[0].send_bytes, *send_off = part[0].send_off;
    const size_t *recv_bytes = part[0].recv_bytes, *recv_off = part[0].recv_off;
    int P = c->size, me = c->rank, rc = ATTN_OK;
    comm_req_t *reqs = calloc((size_t)(2 * P), sizeof *reqs);
    if (!reqs)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: out of memory in all-to-all", me);
    /* Peers in rotated order (me+1, me+2, …) so no rank is everyone's first partner. */
    for (int i = 1; i < P && rc == ATTN_OK; i++) {
        int from = (me - i + P) % P;
        if (recv_bytes[from])
            rc = comm_irecv(c, (char *)recv + recv_off[from], recv_bytes[from], from, tag, &reqs[from], err);
    }
    for (int i = 1; i < P && rc == ATTN_OK; i++) {
        int to = (me + i) % P;
        if (send_bytes[to])
            rc = comm_isend(c, (const char *)send + send_off[to], send_bytes[to], to, tag, &reqs[P + to], err);
    }
    if (rc == ATTN_OK && send_bytes[me])
        memcpy((char *)recv + recv_off[me], (const char *)send + send_off[me], send_bytes[me]);
    for (int i = 0; i < 2 * P; i++) { /* waited even after an error: no request may outlive its buffer */
        attn_err_t sub = {0};
        int w = comm_wait(c, &reqs[i], &sub);
        if (w != ATTN_OK && rc == ATTN_OK)
            rc = attn_fail(err, w, "%s", sub.msg);
    }
    free(reqs);
    return rc;
}

int comm_p2p_sync(attn_comm_t *c, void *point, const char *what, attn_err_t *err) {
    (void)what; /* the transport's wait names the peer, tag and size already */
    return point ? comm_wait(c, (comm_req_t *)point, err) : ATTN_OK;
}

int comm_p2p_ready(attn_comm_t *c, attn_err_t *err) { return comm_barrier(c, COMM_TAG_READY, err); }

void comm_p2p_close(attn_comm_t *c) { (void)c; }
