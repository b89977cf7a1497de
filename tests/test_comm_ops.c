/* test_comm_ops.c — comm_ops_t on its own: every transport's table fills every required entry
 * (host ones always, GPU ones in a CUDA build), and the host steps move exact bytes on P threads
 * of `local`: blocking and pending ring steps and an all-to-all, all with uneven sizes (zeros
 * included), every byte checked and the guard bytes around each part left untouched. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "tests/check.h"
#ifdef ATTN_HAVE_CUDA
#include "impls/cuda/gcomm_ops.h"
#endif

/* Receive buffers start as SENTINEL, send buffers carry SEND_FILL past their data: a copy one
 * byte too long changes a guard byte whichever buffer it overruns. */
enum { GUARD = 16, SENTINEL = 0xA5, SEND_FILL = 0x5A };

/* Byte b of the block rank r starts with: no other rank or offset repeats it soon. */
static unsigned char pattern(int r, size_t b) { return (unsigned char)(r * 37 + b * 7 + (b >> 8)); }
/* Ring blocks: rank r's is uneven in size, and empty for r = 2. */
static size_t ring_size(int r) { return r == 2 ? 0 : 1000 * (size_t)(r + 1) + 5; }
/* All-to-all parts r → q: uneven, not multiples of 8, zero where r + q is a multiple of 5. */
static size_t a2a_size(int r, int q) { return (r + q) % 5 == 0 ? 0 : 1000 * (size_t)(r + 1) + 8 * (size_t)q + 3; }

typedef struct {
    int bad;
    char msg[256];
} rank_result_t;

typedef struct {
    rank_result_t res[64];
} world_result_t;

/* Keeps a rank's first failure (ranks are threads: check() counts only from the main thread). */
static void note(rank_result_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(rank_result_t *r, const char *fmt, ...) {
    if (r->bad++)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
}

/* Checks `bytes` of pattern `seed` (the block rank `from` sent) at got, then GUARD sentinel bytes after it. */
static void expect_block(rank_result_t *res, const char *what, const unsigned char *got, size_t bytes, int seed,
                         int from, int me) {
    for (size_t b = 0; b < bytes; b++)
        if (got[b] != pattern(seed, b)) {
            note(res, "%s: rank %d: byte %zu from rank %d is %d, want %d", what, me, b, from, got[b], pattern(seed, b));
            return;
        }
    for (size_t b = bytes; b < bytes + GUARD; b++)
        if (got[b] != SENTINEL) {
            note(res, "%s: rank %d: guard byte %zu after the %zu bytes from rank %d is %d, want %d", what, me,
                 b - bytes, bytes, from, got[b], SENTINEL);
            return;
        }
}

/* The largest ring block of P ranks. */
static size_t ring_cap(int P) {
    size_t cap = 0;
    for (int q = 0; q < P; q++)
        cap = ring_size(q) > cap ? ring_size(q) : cap;
    return cap;
}

static unsigned char *block(int owner, size_t cap) {
    unsigned char *p = malloc(cap + GUARD);
    memset(p, SEND_FILL, cap + GUARD);
    for (size_t b = 0; b < ring_size(owner); b++)
        p[b] = pattern(owner, b);
    return p;
}

/* One blocking step: rank r receives rank r − 1's block; stats count the bytes. */
static void shift_blocking(attn_comm_t *c, rank_result_t *res, attn_err_t *err) {
    int P = c->size, me = c->rank, from = (me - 1 + P) % P;
    size_t cap = ring_cap(P);
    unsigned char *send = block(me, cap), *recv = malloc(cap + GUARD);
    memset(recv, SENTINEL, cap + GUARD);
    comm_stats_reset(c);
    comm_shift_part_t part = {send, ring_size(me), recv, ring_size(from), NULL, NULL, 0, 0, 0};
    if (comm_shift(c, &part, 7, NULL, err) != ATTN_OK)
        note(res, "rank %d: blocking shift failed: %s", me, err->msg);
    else
        expect_block(res, "blocking shift", recv, ring_size(from), from, from, me);
    uint64_t want_sent = P > 1 ? ring_size(me) : 0, want_recv = P > 1 ? ring_size(from) : 0;
    if (c->stats.bytes_sent != want_sent || c->stats.bytes_recv != want_recv)
        note(res, "rank %d: stats count %llu bytes sent and %llu received, want %llu and %llu", me,
             (unsigned long long)c->stats.bytes_sent, (unsigned long long)c->stats.bytes_recv,
             (unsigned long long)want_sent, (unsigned long long)want_recv);
    free(send), free(recv);
}

/* Rings over subsets (peers set, as usp's rings across its Ulysses groups): the ranks ≡ m mod U
 * form ring m, each sending to r + U and receiving from r − U; U = P is a ring of one (a local
 * copy, no bytes counted). */
static void shift_subring(attn_comm_t *c, rank_result_t *res, int U, attn_err_t *err) {
    int P = c->size, me = c->rank, to = (me + U) % P, from = (me - U + P) % P;
    size_t cap = ring_cap(P);
    unsigned char *send = block(me, cap), *recv = malloc(cap + GUARD);
    memset(recv, SENTINEL, cap + GUARD);
    comm_stats_reset(c);
    comm_shift_part_t part = {send, ring_size(me), recv, ring_size(from), NULL, NULL, 1, to, from};
    comm_req_t pending[2] = {{0}};
    int rc = comm_shift(c, &part, 11 + U, pending, err);
    int w1 = comm_sync(c, &pending[0], "send", err), w2 = comm_sync(c, &pending[1], "receive", err);
    if (rc != ATTN_OK || w1 != ATTN_OK || w2 != ATTN_OK)
        note(res, "rank %d: sub-ring shift (U = %d) failed: %s", me, U, err->msg);
    else
        expect_block(res, "sub-ring shift", recv, ring_size(from), from, from, me);
    uint64_t want_sent = to != me ? ring_size(me) : 0, want_recv = to != me ? ring_size(from) : 0;
    if (c->stats.bytes_sent != want_sent || c->stats.bytes_recv != want_recv)
        note(res, "rank %d: sub-ring (U = %d) stats count %llu bytes sent and %llu received, want %llu and %llu", me,
             U, (unsigned long long)c->stats.bytes_sent, (unsigned long long)c->stats.bytes_recv,
             (unsigned long long)want_sent, (unsigned long long)want_recv);
    free(send), free(recv);
}

/* A full rotation, P − 1 pending steps on double buffers, each waited through comm_sync and
 * checked: after step s rank r holds rank r − s − 1's block. */
static void shift_rotation(attn_comm_t *c, rank_result_t *res, attn_err_t *err) {
    int P = c->size, me = c->rank, cur = 0;
    size_t cap = ring_cap(P);
    unsigned char *buf[2] = {block(me, cap), malloc(cap + GUARD)};
    for (int s = 0; s < P - 1 && !res->bad; s++, cur = 1 - cur) {
        int held = (me - s + P) % P, next = (me - s - 1 + P) % P;
        memset(buf[1 - cur], SENTINEL, cap + GUARD);
        comm_shift_part_t part = {buf[cur], ring_size(held), buf[1 - cur], ring_size(next), NULL, NULL, 0, 0, 0};
        comm_req_t pending[2] = {{0}};
        int rc = comm_shift(c, &part, s, pending, err);
        int w1 = comm_sync(c, &pending[0], "send", err), w2 = comm_sync(c, &pending[1], "receive", err);
        if (rc != ATTN_OK || w1 != ATTN_OK || w2 != ATTN_OK) {
            note(res, "rank %d: pending shift of step %d failed: %s", me, s, err->msg);
            break;
        }
        expect_block(res, "rotation", buf[1 - cur], ring_size(next), next, next, me);
        memset(buf[1 - cur] + ring_size(next), SEND_FILL, cap + GUARD - ring_size(next)); /* it is sent next */
    }
    free(buf[0]), free(buf[1]);
}

/* Parts laid out with GUARD sentinel bytes between them, so an over-long copy shows. */
static void all_to_all(attn_comm_t *c, rank_result_t *res, attn_err_t *err) {
    int P = c->size, me = c->rank;
    size_t sb[64], so[64], rb[64], ro[64], os = 0, orr = 0;
    for (int q = 0; q < P; q++) {
        sb[q] = a2a_size(me, q), so[q] = os, os += sb[q] + GUARD;
        rb[q] = a2a_size(q, me), ro[q] = orr, orr += rb[q] + GUARD;
    }
    unsigned char *send = malloc(os + 1), *recv = malloc(orr + 1);
    memset(send, SEND_FILL, os + 1), memset(recv, SENTINEL, orr + 1);
    for (int q = 0; q < P; q++)
        for (size_t b = 0; b < sb[q]; b++)
            send[so[q] + b] = pattern(me * 64 + q, b);
    comm_a2a_part_t part = {send, sb, so, recv, rb, ro};
    if (comm_alltoallv_ranks(c, &part, 11, err) != ATTN_OK)
        note(res, "rank %d: all-to-all failed: %s", me, err->msg);
    else
        for (int q = 0; q < P; q++)
            expect_block(res, "all-to-all", recv + ro[q], rb[q], q * 64 + me, q, me);
    free(send), free(recv);
}

/* What does not apply is refused with a message, not a crash: GPU ordering events on a host step. */
static void refusals(attn_comm_t *c, rank_result_t *res) {
    unsigned char a[4] = {0}, b[4] = {0};
    int ev = 0;
    comm_shift_part_t part = {a, 4, b, 4, &ev, NULL, 0, 0, 0};
    attn_err_t e = {0};
    if (comm_shift(c, &part, 3, NULL, &e) == ATTN_OK || !strstr(e.msg, "GPU ordering events"))
        note(res, "rank %d: a host shift with a GPU event was not refused (message \"%s\")", c->rank, e.msg);
}

static int rank_main(attn_comm_t *c, void *arg, attn_err_t *err) {
    rank_result_t *res = &((world_result_t *)arg)->res[c->rank];
    if (c->count != 1)
        note(res, "rank %d: a local handle drives %d ranks, want 1", c->rank, c->count);
    if (comm_ready(c, err) != ATTN_OK)
        note(res, "rank %d: ready failed: %s", c->rank, err->msg);
    shift_blocking(c, res, err);
    shift_rotation(c, res, err);
    if (c->size % 2 == 0)
        shift_subring(c, res, 2, err);
    shift_subring(c, res, c->size, err);
    all_to_all(c, res, err);
    refusals(c, res);
    comm_close(c); /* a host handle belongs to its world: nothing to release, and it stays usable */
    return comm_ready(c, err);
}

static void check_local(int P) {
    world_result_t *w = calloc(1, sizeof *w);
    attn_err_t err = {0};
    char name[64];
    snprintf(name, sizeof name, "local P=%d shift, rotation, all-to-all", P);
    int rc = comm_local_run(P, 30, P, rank_main, w, &err);
    int bad = 0;
    for (int r = 0; r < P; r++)
        if (w->res[r].bad && !bad++)
            check(0, name, "%s (%d errors on this rank)", w->res[r].msg, w->res[r].bad);
    if (!bad)
        check(rc == ATTN_OK, name, "the run failed: %s", err.msg);
    free(w);
}

static void check_table(const char *want_name, const comm_ops_t *t) {
    char name[64];
    snprintf(name, sizeof name, "table %s fills every required entry", want_name);
    if (!t) {
        check(0, name, "no table");
        return;
    }
    const char *missing = !t->isend ? "isend" : !t->irecv ? "irecv" : !t->wait ? "wait" : !t->shift ? "shift"
                        : !t->alltoallv ? "alltoallv" : !t->sync ? "sync" : !t->ready ? "ready"
                        : !t->abort ? "abort" : !t->close ? "close" : NULL;
    check(!missing && t->name && !strcmp(t->name, want_name), name, "name %s, missing %s", t->name ? t->name : "(null)",
          missing ? missing : "nothing");
}

#ifdef ATTN_HAVE_CUDA
/* A GPU table refuses host point-to-point messages by name (no device needed to say so). */
static void check_gpu_refuses(const comm_ops_t *t) {
    attn_comm_t c = {.ops = t, .rank = 0, .size = 2, .count = 1, .timeout_s = 1};
    comm_req_t req = {0};
    attn_err_t e = {0};
    char buf[4] = {0}, name[64];
    snprintf(name, sizeof name, "table %s refuses host messages", t->name);
    int rc = t->isend(&c, buf, sizeof buf, 1, 0, &req, &e);
    check(rc != ATTN_OK && strstr(e.msg, t->name) && !req.impl, name, "rc %d, message \"%s\"", rc, e.msg);
}
#endif

int main(void) {
    check_table("local", comm_local_ops());
    if (comm_mpi_available())
        check_table("mpi", comm_mpi_ops());
    else
        check(comm_mpi_ops() == NULL, "no mpi table without MPI", "a table in a build without MPI");
#ifdef ATTN_HAVE_CUDA
    check_table("cuda_local", gcomm_cuda_local_ops());
    check_table("nccl", gcomm_nccl_ops());
    check_gpu_refuses(gcomm_cuda_local_ops());
    check_gpu_refuses(gcomm_nccl_ops());
#endif
    int Ps[] = {1, 2, 3, 4, 5, 8};
    for (size_t i = 0; i < sizeof Ps / sizeof *Ps; i++)
        check_local(Ps[i]);
    return check_summary();
}
