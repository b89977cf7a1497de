/* local.c — the `local` transport (comm.h): P ranks as threads of one process, messages matched
 * by (source, destination, tag) like MPI and moved by one real copy. Design: docs/comm.md. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "comm/p2p.h"
#include "core/threads.h"

typedef struct local_msg {
    int src, dst, tag, is_send;
    void *buf;
    size_t bytes;
    int state; /* 0 posted, 1 matched (copy in progress), 2 done */
    struct local_msg *next, *partner;
} local_msg_t;

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    local_msg_t *unmatched; /* posted, not yet matched, oldest first */
    uint64_t progress;      /* bumps on every completion: "time without progress" is measured from it */
    int failed_rank;        /* −1, or the first rank that aborted */
    int free_slots;         /* compute slots not taken (comm_compute_begin) */
    pthread_cond_t slot_freed;
    char failed_why[512];
} local_world_t;

static local_world_t *world_of(attn_comm_t *c) { return c->impl; }

/* Finds and unlinks the oldest unmatched message that pairs with m. */
static local_msg_t *take_partner(local_world_t *w, const local_msg_t *m) {
    for (local_msg_t **pp = &w->unmatched; *pp; pp = &(*pp)->next) {
        local_msg_t *x = *pp;
        if (x->is_send != m->is_send && x->src == m->src && x->dst == m->dst && x->tag == m->tag) {
            *pp = x->next;
            return x;
        }
    }
    return NULL;
}

static int post(attn_comm_t *c, void *buf, size_t bytes, int peer, int tag, int is_send, comm_req_t *req,
                attn_err_t *err) {
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: bad peer %d", c->rank, peer);
    local_msg_t *m = calloc(1, sizeof *m);
    if (!m)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: out of memory posting a message", c->rank);
    *m = (local_msg_t){.src = is_send ? c->rank : peer, .dst = is_send ? peer : c->rank, .tag = tag,
                       .is_send = is_send, .buf = buf, .bytes = bytes};
    local_world_t *w = world_of(c);
    pthread_mutex_lock(&w->lock);
    local_msg_t *x = take_partner(w, m);
    if (!x) {
        local_msg_t **tail = &w->unmatched;
        while (*tail)
            tail = &(*tail)->next;
        *tail = m;
        pthread_mutex_unlock(&w->lock);
        req->impl = m;
        return ATTN_OK;
    }
    m->partner = x;
    x->partner = m;
    m->state = x->state = 1;
    pthread_mutex_unlock(&w->lock);
    local_msg_t *s = is_send ? m : x, *r = is_send ? x : m;
    int rc = ATTN_OK;
    if (s->bytes != r->bytes)
        rc = attn_fail(err, ATTN_ERUNTIME, "rank %d: message size mismatch with rank %d (tag %d): %zu sent, %zu expected",
                       c->rank, peer, tag, s->bytes, r->bytes);
    else
        memcpy(r->buf, s->buf, s->bytes);
    pthread_mutex_lock(&w->lock);
    m->state = x->state = 2;
    w->progress++;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
    req->impl = m;
    return rc;
}

static int local_isend(attn_comm_t *c, const void *buf, size_t bytes, int peer, int tag, comm_req_t *req,
                       attn_err_t *err) {
    return post(c, (void *)buf, bytes, peer, tag, 1, req, err);
}

static int local_irecv(attn_comm_t *c, void *buf, size_t bytes, int peer, int tag, comm_req_t *req, attn_err_t *err) {
    return post(c, buf, bytes, peer, tag, 0, req, err);
}

static int local_wait(attn_comm_t *c, comm_req_t *req, attn_err_t *err) {
    local_world_t *w = world_of(c);
    local_msg_t *m = req->impl;
    int rc = ATTN_OK;
    pthread_mutex_lock(&w->lock);
    uint64_t seen = w->progress;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)c->timeout_s;
    deadline.tv_nsec += (long)((c->timeout_s - (double)(time_t)c->timeout_s) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    while (m->state != 2) {
        if (w->failed_rank >= 0) {
            rc = attn_fail(err, ATTN_ERUNTIME, "rank %d: peer rank %d failed: %s", c->rank, w->failed_rank,
                           w->failed_why);
            break;
        }
        int t = pthread_cond_timedwait(&w->changed, &w->lock, &deadline);
        if (t == ETIMEDOUT) {
            if (w->progress != seen) { /* others moved: the clock restarts */
                seen = w->progress;
                clock_gettime(CLOCK_REALTIME, &deadline);
                deadline.tv_sec += (time_t)c->timeout_s;
                continue;
            }
            int peer = m->is_send ? m->dst : m->src;
            rc = attn_fail(err, ATTN_ERUNTIME, "rank %d: no progress from rank %d for %g s (%s, tag %d, %zu bytes)",
                           c->rank, peer, c->timeout_s, m->is_send ? "send" : "receive", m->tag, m->bytes);
            break;
        }
    }
    if (m->state == 2) {
        free(m); /* each side frees its own message; the partner is never touched after done */
    } else if (m->state == 0) { /* give up: unlink so no one copies into a buffer about to vanish */
        for (local_msg_t **pp = &w->unmatched; *pp; pp = &(*pp)->next)
            if (*pp == m) {
                *pp = m->next;
                free(m);
                break;
            }
    } /* state 1: the partner is mid-copy; leak m rather than free it under the copier */
    pthread_mutex_unlock(&w->lock);
    req->impl = NULL;
    return rc;
}

static void local_abort(attn_comm_t *c, const char *why) {
    local_world_t *w = world_of(c);
    pthread_mutex_lock(&w->lock);
    if (w->failed_rank < 0) {
        w->failed_rank = c->rank;
        snprintf(w->failed_why, sizeof w->failed_why, "%s", why);
    }
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
}

static int local_peer_failed(attn_comm_t *c) {
    local_world_t *w = world_of(c);
    pthread_mutex_lock(&w->lock);
    int failed = w->failed_rank >= 0;
    pthread_mutex_unlock(&w->lock);
    return failed;
}

/* A rank only waits for a slot while the holders compute, which never blocks on a peer. */
static void local_compute_slot(attn_comm_t *c, int take) {
    local_world_t *w = world_of(c);
    pthread_mutex_lock(&w->lock);
    if (take) {
        while (w->free_slots == 0)
            pthread_cond_wait(&w->slot_freed, &w->lock);
        w->free_slots--;
    } else {
        w->free_slots++;
        pthread_cond_signal(&w->slot_freed);
    }
    pthread_mutex_unlock(&w->lock);
}

static const comm_ops_t local_ops = {.name = "local", .isend = local_isend, .irecv = local_irecv, .wait = local_wait,
                                     .shift = comm_p2p_shift, .alltoallv = comm_p2p_alltoallv, .sync = comm_p2p_sync,
                                     .ready = comm_p2p_ready, .abort = local_abort, .close = comm_p2p_close,
                                     .peer_failed = local_peer_failed, .compute_slot = local_compute_slot};

const comm_ops_t *comm_local_ops(void) { return &local_ops; }

typedef struct {
    attn_comm_t comm;
    comm_rank_fn fn;
    void *arg;
    attn_err_t err;
    int rc;
} local_rank_t;

static void *rank_main(void *p) {
    local_rank_t *r = p;
    r->rc = r->fn(&r->comm, r->arg, &r->err);
    if (r->rc != ATTN_OK)
        r->comm.ops->abort(&r->comm, r->err.msg);
    return NULL;
}

int comm_local_run(int ranks, double timeout_s, int compute_slots, comm_rank_fn fn, void *arg, attn_err_t *err) {
    if (ranks < 1 || ranks > 64)
        return attn_fail(err, ATTN_EUSAGE, "the local transport runs 1..64 ranks (got %d)", ranks);
    local_world_t w = {.failed_rank = -1, .free_slots = compute_slots > 0 ? compute_slots : ranks};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.changed, NULL);
    pthread_cond_init(&w.slot_freed, NULL);
    local_rank_t *r = calloc((size_t)ranks, sizeof *r);
    pthread_t *tid = calloc((size_t)ranks, sizeof *tid);
    int rc = ATTN_OK, started = 0;
    parallel_blas_single_begin(); /* ranks are threads calling BLAS side by side */
    if (!r || !tid)
        rc = attn_fail(err, ATTN_ERUNTIME, "out of memory starting %d local ranks", ranks);
    for (int i = 0; rc == ATTN_OK && i < ranks; i++) {
        r[i] = (local_rank_t){.comm = {.ops = &local_ops, .rank = i, .size = ranks, .count = 1, .timeout_s = timeout_s,
                                       .shared_memory = 1, .impl = &w},
                              .fn = fn, .arg = arg};
        if (pthread_create(&tid[i], NULL, rank_main, &r[i]) != 0) {
            rc = attn_fail(err, ATTN_ERUNTIME, "cannot start the thread of local rank %d", i);
            local_abort(&r[i].comm, "its thread could not start");
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    parallel_blas_single_end();
    /* Report the rank that failed first, not the peers that then saw it fail. */
    for (int i = 0; rc == ATTN_OK && i < started; i++)
        if (r[i].rc != ATTN_OK && i == w.failed_rank)
            rc = attn_fail(err, r[i].rc, "%s", r[i].err.msg);
    for (int i = 0; rc == ATTN_OK && i < started; i++)
        if (r[i].rc != ATTN_OK)
            rc = attn_fail(err, r[i].rc, "%s", r[i].err.msg);
    free(r);
    free(tid);
    pthread_cond_destroy(&w.changed);
    pthread_cond_destroy(&w.slot_freed);
    pthread_mutex_destroy(&w.lock);
    return rc;
}
