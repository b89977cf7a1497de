/* cli_comm.c — `attnbench comm`: what a transport can move, measured the way nccl-tests does,
 * as the communication roofline that overlap figures are read against. Per message size: a
 * ping-pong between ranks 0 and 1 (latency, one-way bandwidth) and an all-to-all over all P ranks
 * through comm_alltoallv (time of the slowest rank, algbw = size·(P−1)/time). Every message is a
 * real copy of a seeded pattern, checked after the first exchange of each size. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "comm/comm.h"
#include "core/memory.h"
#include "cli/options.h"
#include "core/results.h"
#include "core/sysinfo.h"
#include "core/timing.h"

/* Tags of their own: every rank runs the same sequence, so same-tag messages match in order. */
enum { COMM_MAX_SIZES = OPTS_MAX_LIST, TAG_PING = 101, TAG_PONG, TAG_A2A, TAG_SYNC };
#define COMM_MAX_BYTES (INT64_C(1) << 30) /* under MPI's int count, and far past any K/V block */

typedef struct {
    int64_t bytes;
    int iters;
    double p2p_latency_us, p2p_gbps, alltoall_us, alltoall_algbw_gbps;
} comm_row_t;

typedef struct {
    attn_opts_t o; /* transport, ranks, repeats, warmup, comm_timeout, out_dir */
    int ranks_given, sizes_given;
    int64_t sizes[COMM_MAX_SIZES];
    int n_sizes;
    /* Written by rank 0 only, read after the ranks finished. */
    comm_row_t rows[COMM_MAX_SIZES];
    int n_rows;
    char note[256];
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
    "are checked after the first exchange of each size. Writes DIR/comm-<UTC time>.json.\n";

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

/* Ranks 0 and 1 bounce one message; rank 0 times each round trip. The others sit this out. */
static int comm_pingpong(attn_comm_t *c, comm_bufs_t *b, size_t size, int warmup, int iters, comm_row_t *row,
                         attn_err_t *err) {
    if (c->rank > 1)
        return ATTN_OK;
    int me = c->rank, peer = 1 - me;
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
        double rtt, lo, hi;
        stats_summary(b->times, iters, &rtt, &lo, &hi);
        row->p2p_latency_us = rtt / 2 * 1e6;
        row->p2p_gbps = (double)size / (rtt / 2) / 1e9;
    }
    return ATTN_OK;
}

/* Every rank sends `size` bytes to every other rank. Each call starts from a barrier, and its
 * time is the slowest rank's: a collective is done only when its last rank is. */
static int comm_alltoall(attn_comm_t *c, comm_bufs_t *b, size_t size, int warmup, int iters, comm_row_t *row,
                         attn_err_t *err) {
    int P = c->size;
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
        double t, lo, hi;
        stats_summary(b->times, iters, &t, &lo, &hi);
        row->alltoall_us = t * 1e6;
        row->alltoall_algbw_gbps = (double)size * (P - 1) / t / 1e9;
    }
    return ATTN_OK;
}

/* Which sizes fit: all P ranks' buffers (2 × P × size each) within 3/4 of this host's free
 * memory, assuming every rank lives here (true for local, the usual case for mpi). Collective,
 * so every rank keeps the same list even if their readings of free memory differ. */
static int comm_fit_sizes(attn_comm_t *c, comm_bench_t *bench, int64_t *kept, int *n_kept, attn_err_t *err) {
    double over[COMM_MAX_SIZES];
    uint64_t avail = mem_available_bytes(), P = (uint64_t)c->size;
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
    if (c->rank == 0)
        snprintf(bench->note, sizeof bench->note, "skipped sizes from %lld B: %d ranks would need %.1f GiB of buffers",
                 (long long)first_over, c->size, need);
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
        comm_row_t row = {.bytes = sizes[i], .iters = iters};
        fill_send(c, &b, size);
        rc = comm_pingpong(c, &b, size, bench->o.warmup, iters, &row, err);
        if (rc == ATTN_OK)
            rc = comm_barrier(c, TAG_SYNC, err); /* ranks 2.. wait here while 0 and 1 bounce */
        if (rc == ATTN_OK)
            rc = comm_alltoall(c, &b, size, bench->o.warmup, iters, &row, err);
        if (rc == ATTN_OK && c->rank == 0)
            bench->rows[bench->n_rows++] = row;
    }
    attn_free(b.send), attn_free(b.recv), attn_free(b.bytes), attn_free(b.offs), attn_free(b.times);
    return rc;
}

/* Every rank runs this, on either transport. Once measuring starts, a failed rank tells the
 * world (ends the job under mpi): its peers are blocked on it. */
static int comm_bench_rank(attn_comm_t *c, void *arg, attn_err_t *err) {
    comm_bench_t *bench = arg;
    int64_t sizes[COMM_MAX_SIZES];
    int n = 0;
    ATTN_TRY(comm_fit_sizes(c, bench, sizes, &n, err)); /* collective: all ranks agree, none waits */
    int rc = comm_measure(c, bench, sizes, n, err);
    if (rc != ATTN_OK)
        c->ops->abort(c, err->msg);
    return rc;
}

/* ---- output -------------------------------------------------------------------------------- */

static void comm_print(const comm_bench_t *b, int ranks, FILE *f) {
    fprintf(f, "comm: transport %s, %d ranks (ping-pong between ranks 0 and 1, all-to-all over all)\n",
            b->o.transport, ranks);
    fprintf(f, "%12s %6s %12s %10s %12s %12s\n", "size", "iters", "p2p_latency", "p2p_bw", "alltoall", "algbw");
    fprintf(f, "%12s %6s %12s %10s %12s %12s\n", "B", "", "us", "GB/s", "us", "GB/s");
    for (int i = 0; i < b->n_rows; i++) {
        const comm_row_t *r = &b->rows[i];
        fprintf(f, "%12lld %6d %12.2f %10.4g %12.2f %12.4g\n", (long long)r->bytes, r->iters, r->p2p_latency_us,
                r->p2p_gbps, r->alltoall_us, r->alltoall_algbw_gbps);
    }
    if (b->note[0])
        fprintf(f, "note: %s\n", b->note);
}

static json_t *jreal(double v) { return isfinite(v) ? json_real(v) : json_null(); } /* JSON has no NaN */

static json_t *comm_json(const comm_bench_t *b, int ranks, const char *started_at) {
    attn_sysinfo_t si;
    sysinfo_collect(&si);
    json_t *rows = json_array();
    for (int i = 0; rows && i < b->n_rows; i++) {
        const comm_row_t *r = &b->rows[i];
        json_t *row = json_pack("{s:I, s:i, s:o, s:o, s:o, s:o}", "bytes", (json_int_t)r->bytes, "iterations",
                                r->iters, "p2p_latency_us", jreal(r->p2p_latency_us), "p2p_gbps", jreal(r->p2p_gbps),
                                "alltoall_us", jreal(r->alltoall_us), "alltoall_algbw_gbps",
                                jreal(r->alltoall_algbw_gbps));
        if (!row || json_array_append_new(rows, row) != 0) {
            json_decref(rows);
            return NULL;
        }
    }
    if (!rows)
        return NULL;
    char mpi_version[128] = "";
    if (!strcmp(b->o.transport, "mpi"))
        comm_mpi_version(mpi_version, sizeof mpi_version);
    return json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:o, s:i, s:i, s:o}", "kind", "comm", "transport",
                     b->o.transport, "ranks", ranks, "host", si.host, "started_at", started_at, "git_sha", si.git_sha,
                     "mpi_version", mpi_version[0] ? json_string(mpi_version) : json_null(), "repeats", b->o.repeats,
                     "warmup", b->o.warmup, "rows", rows);
}

/* <out-dir>/comm-<stamp>.json via a temporary name and rename, so a reader never sees half a
 * file; a second run within the same second gets -2, -3, … instead of replacing the first. */
static int comm_write(const comm_bench_t *b, int ranks, const char *stamp, const char *started_at, char *path,
                      size_t cap, attn_err_t *err) {
    const char *dir = b->o.out_dir[0] ? b->o.out_dir : ".";
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/.comm-%s-%ld.json.tmp", dir, stamp, (long)getpid()) >= (int)sizeof tmp)
        return attn_fail(err, ATTN_ERUNTIME, "output directory path too long: %s", dir);
    ATTN_TRY(results_make_dirs(dir, err));
    json_t *root = comm_json(b, ranks, started_at);
    if (!root)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory building the comm JSON");
    FILE *f = fopen(tmp, "w");
    if (!f) {
        json_decref(root);
        return attn_fail(err, ATTN_ERUNTIME, "cannot create %s: %s", tmp, strerror(errno));
    }
    errno = 0;
    int bad = json_dumpf(root, f, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) != 0 || fputc('\n', f) == EOF;
    int e = errno;
    if (fclose(f) != 0 && !bad) /* a full disk shows up here */
        bad = 1, e = errno;
    json_decref(root);
    for (int k = 1; !bad; k++) {
        if (snprintf(path, cap, k == 1 ? "%s/comm-%s.json" : "%s/comm-%s-%d.json", dir, stamp, k) >= (int)cap)
            return unlink(tmp), attn_fail(err, ATTN_ERUNTIME, "output directory path too long: %s", dir);
        if (access(path, F_OK) == 0 && k < 100)
            continue;
        if (rename(tmp, path) == 0)
            return ATTN_OK;
        e = errno;
        break;
    }
    unlink(tmp);
    return attn_fail(err, ATTN_ERUNTIME, "cannot write %s: %s", bad ? tmp : path, strerror(e ? e : EIO));
}

static int comm_finish(const comm_bench_t *b, int ranks, const char *stamp, const char *started_at, attn_err_t *err) {
    comm_print(b, ranks, stdout);
    fflush(stdout); /* the table before the "wrote" line on a shared terminal */
    char path[PATH_MAX];
    ATTN_TRY(comm_write(b, ranks, stamp, started_at, path, sizeof path, err));
    fprintf(stderr, "wrote %s\n", path);
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
    /* The file is named for the start: what a reader sorts runs by. */
    char stamp[32], started_at[32];
    struct tm tm;
    time_t now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    strftime(started_at, sizeof started_at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int mpi = rc == ATTN_OK && !strcmp(b->o.transport, "mpi");
    if (rc == ATTN_OK && !mpi) {
        int P = b->ranks_given ? b->o.ranks : 2;
        if (P < 2)
            rc = attn_fail(err, ATTN_EUSAGE, "comm needs at least 2 ranks (got --ranks %d)", P);
        if (rc == ATTN_OK)
            rc = comm_local_run(P, b->o.comm_timeout, P, comm_bench_rank, b, err);
        if (rc == ATTN_OK)
            rc = comm_finish(b, P, stamp, started_at, err);
    } else if (mpi) {
        rc = comm_mpi_init(NULL, NULL, err);
        attn_comm_t *c = rc == ATTN_OK ? comm_mpi_world() : NULL;
        if (c && b->ranks_given && b->o.ranks != c->size)
            rc = attn_fail(err, ATTN_EUSAGE, "--ranks %d but mpirun started %d processes", b->o.ranks, c->size);
        else if (c && c->size < 2)
            rc = attn_fail(err, ATTN_EUSAGE, "comm needs at least 2 ranks (run it under mpirun -np P, P ≥ 2; this job has %d)",
                           c->size);
        if (rc == ATTN_OK) {
            c->timeout_s = b->o.comm_timeout;
            rc = comm_bench_rank(c, b, err);
        }
        if (rc == ATTN_OK && c->rank == 0)
            rc = comm_finish(b, c->size, stamp, started_at, err);
        comm_mpi_finalize();
    }
    free(b);
    return rc;
}
