/* cli_comm.c — `attnbench comm`: the transport's roofline, nccl-tests style: ping-pong latency
 * and bandwidth, all-to-all algbw per message size, as records (task comm) through results.c.
 * Method: docs/comm.md. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "comm/comm.h"
#include "core/memory.h"
#include "core/outfile.h"
#include "cli/options.h"
#include "core/results.h"
#include "core/timing.h"

/* Tags of their own: every rank runs the same sequence, so same-tag messages match in order. */
enum { COMM_MAX_SIZES = OPTS_MAX_LIST, TAG_PING = 101, TAG_PONG, TAG_A2A, TAG_SYNC };
#define COMM_MAX_BYTES (INT64_C(1) << 30) /* under MPI's int count, and far past any K/V block */

typedef struct {
    attn_opts_t o; /* transport, ranks, repeats, warmup, comm_timeout, out_dir */
    int ranks_given, sizes_given;
    int64_t sizes[COMM_MAX_SIZES];
    int n_sizes;
    /* Records are added by rank 0 only and read after the ranks finished. */
    attn_run_t run;
} comm_bench_t;

/* One rank's buffers: slot q of send (recv) is the message to (from) rank q. */
typedef struct {
    uint8_t *send, *recv; /* (P, size) each, allocated for the largest size */
    size_t *bytes, *offs; /* alltoallv counts and offsets, P each */
    double *times;        /* one per timed iteration */
} comm_bufs_t;

/* ---- flags --------------------------------------------------------------------------------- */

static const char comm_usage[] =
    "usage: attnbench comm [--transport local|mpi] [--ranks P] [--sizes B,B,...] [--repeats R]\n"
    "                      [--warmup W] [--comm-timeout S] [--out-dir DIR]\n\n"
    "The transport's roofline, per message size: ping-pong between ranks 0 and 1 (latency =\n"
    "half the round trip, bandwidth = bytes / one-way time) and an all-to-all over all P ranks\n"
    "(each rank sends B bytes to every other; time of the slowest rank, algbw = B·(P−1)/time).\n"
    "Medians over max(3, min(R, 2^28/B)) timed iterations (never more than R). Received bytes\n"
    "are checked after the first exchange of each size. Writes DIR/<run_id>.json and .csv\n"
    "(task comm, one record per operation and size), as `attnbench run` does.\n";

/* The flags are the table's comm rows (cli/options.c); no --ranks leaves ranks 0 (2, or the job
 * size), no --sizes the default sweep. */
static int comm_parse(comm_bench_t *b, int argc, char **argv, attn_err_t *err) {
    cli_opts_t c;
    opts_init(&c, CMD_COMM);
    ATTN_TRY(opts_parse_argv(&c, CMD_COMM, argc, argv, NULL, NULL, err));
    b->o = c.s;
    b->ranks_given = c.s.ranks != 0;
    b->sizes_given = c.n_comm_sizes > 0;
    for (int i = 0; i < c.n_comm_sizes; i++)
        b->sizes[b->n_sizes++] = c.comm_sizes[i];
    if (!b->sizes_given) { /* ×4 from 8 B, then one ×2 step so the sweep ends at 64 MiB */
        for (int64_t s = 8; s <= (INT64_C(1) << 25); s *= 4)
            b->sizes[b->n_sizes++] = s;
        b->sizes[b->n_sizes++] = INT64_C(1) << 26;
    }
    return ATTN_OK;
}

/* ---- measurement --------------------------------------------------------------------------- */

/* Byte i of the message src → dst: any rank can compute it, and a copy from the wrong peer,
 * slot or offset gives different bytes. */
static uint8_t pattern_byte(int src, int dst, size_t i) {
    uint64_t x = ((uint64_t)i + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)src << 40 | (uint64_t)dst << 20);
    return (uint8_t)(x >> 56 ^ x >> 29);
}

static void fill_send(const attn_comm_t *c, comm_bufs_t *b, size_t size) {
    for (int q = 0; q < c->size; q++)
        for (size_t i = 0; q != c->rank && i < size; i++)
            b->send[(size_t)q * size + i] = pattern_byte(c->rank, q, i);
}

static int verify(const attn_comm_t *c, const comm_bufs_t *b, size_t size, int from, const char *what,
                  attn_err_t *err) {
    const uint8_t *got = b->recv + (size_t)from * size;
    for (size_t i = 0; i < size; i++) {
        uint8_t want = pattern_byte(from, c->rank, i);
        if (got[i] != want)
            return attn_fail(err, ATTN_ERUNTIME, "rank %d: %s, %zu-byte message from rank %d: byte %zu is 0x%02x, expected 0x%02x",
                             c->rank, what, size, from, i, got[i], want);
    }
    return ATTN_OK;
}

/* Few iterations where one already moves hundreds of MiB; never more than asked for. */
static int iterations(int repeats, int64_t size) {
    int64_t cap = ATTN_MAX(3, (INT64_C(1) << 28) / size);
    return (int)ATTN_MIN((int64_t)repeats, cap);
}

/* Rank 0's record of one operation at one size. The size names the case (config) and is also a
 * metric, so every CSV row of the record carries it; repeats are the iterations timed. */
static attn_record_t *comm_record(comm_bench_t *bench, int P, const char *op, int64_t size, int iters,
                                  attn_err_t *err) {
    attn_record_t *r = results_add(&bench->run, "comm", op, NULL);
    if (!r) {
        attn_fail(err, ATTN_ERUNTIME, "out of memory recording %s of %lld bytes", op, (long long)size);
        return NULL;
    }
    snprintf(r->transport, sizeof r->transport, "%s", bench->o.transport);
    r->ranks = P;
    record_extra_num(r, "message_bytes", (double)size);
    record_extra_num(r, "repeats", iters);
    record_extra_num(r, "warmup", bench->o.warmup);
    record_metric(r, "message_bytes", (double)size, "B");
    return r;
}

/* Ranks 0 and 1 bounce one message; rank 0 times each round trip. The others sit this out. */
static int comm_pingpong(attn_comm_t *c, comm_bufs_t *b, comm_bench_t *bench, size_t size, int iters,
                         attn_err_t *err) {
    if (c->rank > 1)
        return ATTN_OK;
    int me = c->rank, peer = 1 - me, warmup = bench->o.warmup;
    uint8_t *out = b->send + (size_t)peer * size, *in = b->recv + (size_t)peer * size;
    memset(in, 0, size);
    for (int it = 0; it < warmup + iters; it++) {
        comm_req_t s = {0}, r = {0};
        double t0 = time_now_s();
        if (me == 0) { /* receive posted first: the pong may not wait for it */
            ATTN_TRY(comm_irecv(c, in, size, peer, TAG_PONG, &r, err));
            ATTN_TRY(comm_isend(c, out, size, peer, TAG_PING, &s, err));
            ATTN_TRY(comm_wait(c, &s, err));
            ATTN_TRY(comm_wait(c, &r, err));
        } else {
            ATTN_TRY(comm_irecv(c, in, size, peer, TAG_PING, &r, err));
            ATTN_TRY(comm_wait(c, &r, err));
            ATTN_TRY(comm_isend(c, out, size, peer, TAG_PONG, &s, err));
            ATTN_TRY(comm_wait(c, &s, err));
        }
        double t = time_now_s() - t0;
        if (it == 0)
            ATTN_TRY(verify(c, b, size, peer, "ping-pong", err));
        if (it >= warmup)
            b->times[it - warmup] = t;
    }
    if (me == 0) {
        attn_record_t *r = comm_record(bench, c->size, "pingpong", (int64_t)size, iters, err);
        if (!r)
            return ATTN_ERUNTIME;
        for (int k = 0; k < iters; k++)
            b->times[k] /= 2; /* one way: half the round trip */
        record_timed(r, "latency_s", b->times, iters, "s");
        for (int k = 0; k < iters; k++)
            b->times[k] = (double)size / b->times[k] / 1e9;
        record_timed(r, "p2p_gbps", b->times, iters, "GB/s");
    }
    return ATTN_OK;
}

/* Every rank sends `size` bytes to every other rank. Each call starts from a barrier, and its
 * time is the slowest rank's: a collective is done only when its last rank is. */
static int comm_alltoall(attn_comm_t *c, comm_bufs_t *b, comm_bench_t *bench, size_t size, int iters,
                         attn_err_t *err) {
    int P = c->size, warmup = bench->o.warmup;
    for (int q = 0; q < P; q++) {
        b->bytes[q] = q == c->rank ? 0 : size; /* no self copy: algbw counts P−1 peers */
        b->offs[q] = (size_t)q * size;
    }
    memset(b->recv, 0, (size_t)P * size);
    for (int it = 0; it < warmup + iters; it++) {
        ATTN_TRY(comm_barrier(c, TAG_SYNC, err));
        double t0 = time_now_s();
        ATTN_TRY(comm_alltoallv(c, b->send, b->bytes, b->offs, b->recv, b->bytes, b->offs, TAG_A2A, err));
        double t = time_now_s() - t0;
        for (int q = 0; it == 0 && q < P; q++)
            if (q != c->rank)
                ATTN_TRY(verify(c, b, size, q, "all-to-all", err));
        if (it >= warmup)
            b->times[it - warmup] = t;
    }
    ATTN_TRY(comm_allreduce(c, b->times, iters, COMM_MAX, TAG_SYNC, err));
    if (c->rank == 0) {
        attn_record_t *r = comm_record(bench, P, "alltoall", (int64_t)size, iters, err);
        if (!r)
            return ATTN_ERUNTIME;
        record_timed(r, "time_s", b->times, iters, "s");
        for (int k = 0; k < iters; k++)
            b->times[k] = (double)size * (P - 1) / b->times[k] / 1e9;
        record_timed(r, "algbw_gbps", b->times, iters, "GB/s");
    }
    return ATTN_OK;
}

/* Which sizes fit: all P ranks' buffers (2 × P × size each) within 3/4 of this host's free
 * memory, assuming every rank lives here (true for local, the usual case for mpi). Collective,
 * so every rank keeps the same list even if their readings of free memory differ. */
static int comm_fit_sizes(attn_comm_t *c, comm_bench_t *bench, int64_t *kept, int *n_kept, double *over,
                          uint64_t *avail_out, attn_err_t *err) {
    uint64_t avail = mem_available_bytes(), P = (uint64_t)c->size;
    *avail_out = avail;
    for (int i = 0; i < bench->n_sizes; i++)
        over[i] = avail && 2 * P * P * (uint64_t)bench->sizes[i] > avail / 4 * 3;
    ATTN_TRY(comm_allreduce(c, over, bench->n_sizes, COMM_MAX, TAG_SYNC, err));
    *n_kept = 0;
    int64_t first_over = 0;
    for (int i = 0; i < bench->n_sizes; i++) {
        if (!over[i])
            kept[(*n_kept)++] = bench->sizes[i];
        else if (!first_over)
            first_over = bench->sizes[i];
    }
    if (!first_over)
        return ATTN_OK;
    double need = 2.0 * (double)(P * P) * (double)first_over / (1 << 30);
    if (bench->sizes_given || *n_kept == 0)
        return attn_fail(err, ATTN_EUSAGE, "--sizes %lld: %d ranks need %.1f GiB of buffers, more than 3/4 of the %.1f GiB available",
                         (long long)first_over, c->size, need, (double)avail / (1 << 30));
    return ATTN_OK;
}

/* The default sizes this host cannot hold stay in the results as skipped records, with why. */
static int comm_record_skipped(attn_comm_t *c, comm_bench_t *bench, const double *over, uint64_t avail,
                               attn_err_t *err) {
    double avail_gib = (double)avail / (1 << 30);
    for (int i = 0; i < bench->n_sizes; i++)
        for (int op = 0; over[i] && op < 2; op++) {
            attn_record_t *r = comm_record(bench, c->size, op ? "alltoall" : "pingpong", bench->sizes[i], 0, err);
            if (!r)
                return ATTN_ERUNTIME;
            double need = 2.0 * c->size * c->size * (double)bench->sizes[i] / (1 << 30);
            record_set_status(r, REC_SKIPPED, "%d ranks would need %.1f GiB of buffers, more than 3/4 of the %.1f GiB available",
                              c->size, need, avail_gib);
        }
    return ATTN_OK;
}

static int comm_measure(attn_comm_t *c, comm_bench_t *bench, const int64_t *sizes, int n, attn_err_t *err) {
    int P = c->size, rc = ATTN_OK;
    int64_t max_size = 0;
    for (int i = 0; i < n; i++)
        max_size = ATTN_MAX(max_size, sizes[i]);
    comm_bufs_t b = {
        .send = attn_alloc((size_t)P * (size_t)max_size, err, "comm send buffer"),
        .recv = attn_alloc((size_t)P * (size_t)max_size, err, "comm receive buffer"),
        .bytes = attn_alloc(sizeof(size_t) * (size_t)P, err, "alltoallv counts"),
        .offs = attn_alloc(sizeof(size_t) * (size_t)P, err, "alltoallv offsets"),
        .times = attn_alloc(sizeof(double) * (size_t)bench->o.repeats, err, "iteration times")};
    if (!b.send || !b.recv || !b.bytes || !b.offs || !b.times)
        rc = ATTN_ERUNTIME;
    for (int i = 0; rc == ATTN_OK && i < n; i++) {
        size_t size = (size_t)sizes[i];
        int iters = iterations(bench->o.repeats, sizes[i]);
        fill_send(c, &b, size);
        rc = comm_pingpong(c, &b, bench, size, iters, err);
        if (rc == ATTN_OK)
            rc = comm_barrier(c, TAG_SYNC, err); /* ranks 2.. wait here while 0 and 1 bounce */
        if (rc == ATTN_OK)
            rc = comm_alltoall(c, &b, bench, size, iters, err);
    }
    attn_free(b.send), attn_free(b.recv), attn_free(b.bytes), attn_free(b.offs), attn_free(b.times);
    return rc;
}

/* Every rank runs this, on either transport. Once measuring starts, a failed rank tells the
 * world (ends the job under mpi): its peers are blocked on it. */
static int comm_bench_rank(attn_comm_t *c, void *arg, attn_err_t *err) {
    comm_bench_t *bench = arg;
    int64_t sizes[COMM_MAX_SIZES];
    double over[COMM_MAX_SIZES];
    uint64_t avail = 0;
    int n = 0;
    ATTN_TRY(comm_fit_sizes(c, bench, sizes, &n, over, &avail, err)); /* collective: all ranks agree, none waits */
    int rc = comm_measure(c, bench, sizes, n, err);
    if (rc == ATTN_OK && c->rank == 0)
        rc = comm_record_skipped(c, bench, over, avail, err);
    if (rc != ATTN_OK)
        c->ops->abort(c, err->msg);
    return rc;
}

/* ---- output -------------------------------------------------------------------------------- */

static double metric_of(const attn_record_t *r, const char *name) {
    for (int i = 0; i < r->n_metrics; i++)
        if (!strcmp(r->metrics[i].name, name))
            return r->metrics[i].value;
    return NAN;
}

static double extra_of(const attn_record_t *r, const char *key) {
    for (int i = 0; i < r->n_extra; i++)
        if (!strcmp(r->extra[i].key, key))
            return r->extra[i].num;
    return NAN;
}

/* The nccl-tests view of the records: one line per size, both operations side by side. */
static void comm_print(const attn_run_t *run, const char *transport, int ranks, FILE *f) {
    fprintf(f, "comm: transport %s, %d ranks (ping-pong between ranks 0 and 1, all-to-all over all)\n",
            transport, ranks);
    fprintf(f, "%12s %6s %12s %10s %12s %12s\n", "size", "iters", "p2p_latency", "p2p_bw", "alltoall", "algbw");
    fprintf(f, "%12s %6s %12s %10s %12s %12s\n", "B", "", "us", "GB/s", "us", "GB/s");
    for (int k = 0; k < run->n_records; k++) {
        const attn_record_t *p2p = &run->records[k], *a2a = NULL;
        double bytes = metric_of(p2p, "message_bytes");
        if (strcmp(p2p->backend, "pingpong"))
            continue;
        for (int m = 0; m < run->n_records && !a2a; m++)
            if (!strcmp(run->records[m].backend, "alltoall") && metric_of(&run->records[m], "message_bytes") == bytes)
                a2a = &run->records[m];
        if (p2p->status != REC_PASS || !a2a) {
            fprintf(f, "%12.0f %6s %s: %s\n", bytes, "-", status_name(p2p->status), p2p->reason);
            continue;
        }
        fprintf(f, "%12.0f %6.0f %12.2f %10.4g %12.2f %12.4g\n", bytes, extra_of(p2p, "repeats"),
                metric_of(p2p, "latency_s") * 1e6, metric_of(p2p, "p2p_gbps"), metric_of(a2a, "time_s") * 1e6,
                metric_of(a2a, "algbw_gbps"));
    }
}

/* Rank 0: the table, then results/<run_id>.json and .csv through results.c. */
static int comm_finish(comm_bench_t *b, int ranks, attn_err_t *err) {
    comm_print(&b->run, b->o.transport, ranks, stdout);
    fflush(stdout); /* the table before the "wrote" line on a shared terminal */
    ATTN_TRY(results_write(&b->run, b->o.out_dir, err));
    fprintf(stderr, "wrote %s/%s.json and .csv\n", b->o.out_dir[0] ? b->o.out_dir : ".", b->run.run_id);
    return ATTN_OK;
}

int cli_comm(int argc, char **argv, attn_err_t *err) {
    comm_bench_t *b = calloc(1, sizeof *b);
    if (!b)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    if (opts_wants_help(argc, argv)) {
        opts_print_help(stdout, CMD_COMM, comm_usage);
        free(b);
        return ATTN_OK;
    }
    int rc = comm_parse(b, argc, argv, err);
    int mpi = rc == ATTN_OK && !strcmp(b->o.transport, "mpi");
    int P = b->ranks_given ? b->o.ranks : 2;
    if (rc == ATTN_OK && !mpi && P < 2)
        rc = attn_fail(err, ATTN_EUSAGE, "comm needs at least 2 ranks (got --ranks %d)", P);
    /* Seed 0: the message pattern is fixed, no flag seeds it. The run starts (and is named) here. */
    if (rc == ATTN_OK)
        rc = results_run_init(&b->run, argc, argv, 0, mpi ? 1 : P, err);
    if (rc == ATTN_OK)
        comm_mpi_version(b->run.mpi_version, sizeof b->run.mpi_version);
    if (rc == ATTN_OK && !mpi)
        rc = outfile_check_dir(b->o.out_dir, err); /* before the benchmark, not after */
    if (rc == ATTN_OK && !mpi) {
        rc = comm_local_run(P, b->o.comm_timeout, P, comm_bench_rank, b, err);
        if (rc == ATTN_OK)
            rc = comm_finish(b, P, err);
    } else if (rc == ATTN_OK) {
        rc = comm_mpi_init(NULL, NULL, err);
        attn_comm_t *c = rc == ATTN_OK ? comm_mpi_world() : NULL;
        if (c && b->ranks_given && b->o.ranks != c->size)
            rc = attn_fail(err, ATTN_EUSAGE, "--ranks %d but mpirun started %d processes", b->o.ranks, c->size);
        else if (c && c->size < 2)
            rc = attn_fail(err, ATTN_EUSAGE, "comm needs at least 2 ranks (run it under mpirun -np P, P ≥ 2; this job has %d)",
                           c->size);
        /* Only rank 0 writes; were it to return, the other ranks would wait for it until the
         * timeout, so the job ends here. */
        if (rc == ATTN_OK && c->rank == 0 && outfile_check_dir(b->o.out_dir, err) != ATTN_OK)
            comm_mpi_abort(0, err->msg, ATTN_EUSAGE);
        if (rc == ATTN_OK) {
            c->timeout_s = b->o.comm_timeout;
            rc = comm_bench_rank(c, b, err);
        }
        if (rc == ATTN_OK && c->rank == 0)
            rc = comm_finish(b, c->size, err);
        comm_mpi_finalize();
    }
    results_run_free(&b->run); /* calloc'd: safe when never initialised */
    free(b);
    return rc;
}
