/* gcomm_nccl.cu — the nccl transport's comm_ops_t table (gcomm.cuh): grouped ncclSend/ncclRecv
 * on each rank's comm stream, libnccl dlopen'ed on first use, nonblocking communicators polled
 * against timeout_s. Design: docs/gpu-transports.md. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/gcomm.cuh"

extern const comm_ops_t nccl_ops;

#ifdef ATTN_HAVE_NCCL
#include <nccl.h>

enum { TAG_NCCL_ID = 1 << 23 }; /* above dist.c's TAG_SHARD, dist_model.c's and ulysses.c's tags (1 << 22 + i) */

/* The entry points used, resolved once; decltype keeps each exactly the header's signature. */
static struct {
    int loaded;
    decltype(&ncclGetVersion) GetVersion;
    decltype(&ncclGetUniqueId) GetUniqueId;
    decltype(&ncclCommInitRankConfig) CommInitRankConfig;
    decltype(&ncclCommGetAsyncError) CommGetAsyncError;
    decltype(&ncclCommAbort) CommAbort;
    decltype(&ncclCommFinalize) CommFinalize;
    decltype(&ncclCommDestroy) CommDestroy;
    decltype(&ncclGroupStart) GroupStart;
    decltype(&ncclGroupEnd) GroupEnd;
    decltype(&ncclSend) Send;
    decltype(&ncclRecv) Recv;
    decltype(&ncclGetErrorString) GetErrorString;
    decltype(&ncclGetLastError) GetLastError; /* optional: the detail behind a status */
} nccl;
static char load_why[512];
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void load_lib(void) {
    void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) { /* the .so.2 failure is the one worth showing: it is the name NCCL installs */
        snprintf(load_why, sizeof load_why, "%s", dlerror());
        if (!(h = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL)))
            return;
    }
#define NCCL_SYM(field, name)                                                           \
    if (!(nccl.field = (decltype(nccl.field))dlsym(h, #name))) {                        \
        snprintf(load_why, sizeof load_why, "the library it found has no %s", #name);   \
        return;                                                                          \
    }
    NCCL_SYM(GetVersion, ncclGetVersion) NCCL_SYM(GetUniqueId, ncclGetUniqueId)
    NCCL_SYM(CommInitRankConfig, ncclCommInitRankConfig) NCCL_SYM(CommGetAsyncError, ncclCommGetAsyncError)
    NCCL_SYM(CommAbort, ncclCommAbort) NCCL_SYM(CommFinalize, ncclCommFinalize)
    NCCL_SYM(CommDestroy, ncclCommDestroy) NCCL_SYM(GroupStart, ncclGroupStart) NCCL_SYM(GroupEnd, ncclGroupEnd)
    NCCL_SYM(Send, ncclSend) NCCL_SYM(Recv, ncclRecv) NCCL_SYM(GetErrorString, ncclGetErrorString)
#undef NCCL_SYM
    nccl.GetLastError = (decltype(nccl.GetLastError))dlsym(h, "ncclGetLastError");
    nccl.loaded = 1;
}

static int nccl_load(attn_err_t *err) {
    pthread_once(&load_once, load_lib);
    if (nccl.loaded)
        return ATTN_OK;
    return attn_fail(err, ATTN_ERUNTIME,
                     "nccl transport: cannot load libnccl.so.2 (%s); put NCCL's lib directory on LD_LIBRARY_PATH "
                     "(PyTorch ships it under site-packages/nvidia/nccl/lib)",
                     load_why);
}

/* "nccl: rank R: WHAT: <status> (<NCCL's last error>)"; call before aborting comm. */
static int nccl_fail(const gcomm *g, ncclResult_t r, const char *what, attn_err_t *err) {
    const char *detail = nccl.GetLastError ? nccl.GetLastError((ncclComm_t)g->nccl) : "";
    int more = detail && *detail;
    return attn_fail(err, ATTN_ERUNTIME, "nccl: rank %d: %s: %s%s%s%s", g->first, what, nccl.GetErrorString(r),
                     more ? " (" : "", more ? detail : "", more ? ")" : "");
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&t, nullptr);
}

/* Polls comm until its pending nonblocking call ends: its final state, or ncclInProgress when
 * timeout_s passed first. NCCL forbids any other call on comm (and kernels on its streams)
 * while the state is ncclInProgress, so every call that may return it ends here. */
static ncclResult_t nccl_settle(ncclComm_t comm, double timeout_s) {
    double t0 = time_now_s();
    /* A nonblocking group end always returns ncclInProgress and usually settles within
     * microseconds: no fixed sleep here (1 ms would idle the GPU between ring steps at small n). */
    for (long polls = 0;; polls++) {
        ncclResult_t state = ncclInProgress, r = nccl.CommGetAsyncError(comm, &state);
        if (r != ncclSuccess)
            return r;
        if (state != ncclInProgress || time_now_s() - t0 > timeout_s)
            return state;
        gcomm_poll_pause(polls);
    }
}

/* Ends a group opened by the caller (always, even after a failed call inside it, so the
 * group depth stays balanced); on any failure the communicator is aborted. */
static int nccl_group_end(gcomm *g, ncclResult_t inside, const char *what, attn_err_t *err) {
    ncclResult_t r = nccl.GroupEnd();
    if (r == ncclInProgress)
        r = nccl_settle((ncclComm_t)g->nccl, g->timeout_s);
    if (inside != ncclSuccess && inside != ncclInProgress)
        r = inside; /* the call that failed says more than the group end */
    if (r == ncclSuccess)
        return ATTN_OK;
    int rc = r == ncclInProgress ? attn_fail(err, ATTN_ERUNTIME,
                                             "nccl: rank %d: %s not enqueued after %g s; communicator aborted",
                                             g->first, what, g->timeout_s)
                                 : nccl_fail(g, r, what, err);
    gcomm_nccl_close(g, 1);
    return rc;
}

static int nccl_usable(const gcomm *g, attn_err_t *err) {
    if (g->nccl)
        return ATTN_OK;
    return attn_fail(err, ATTN_ERUNTIME,
                     "nccl: rank %d: no communicator (never opened, or aborted after an earlier error)", g->first);
}

/* After every rank holds the id: streams, then the communicator. On failure g is left zeroed
 * with its streams destroyed, so a gcomm_close on it is harmless either way. */
static int open_rank(gcomm *g, const ncclUniqueId *id, int rank, int ranks, int device, double timeout_s,
                     attn_err_t *err) {
    CUDA_TRY(cudaSetDevice(device)); /* NCCL binds the communicator to the current device */
    /* The table first: a half-opened handle is closed through it. */
    g->ops = &nccl_ops, g->size = ranks, g->rank = g->first = rank, g->count = 1, g->device = device;
    g->timeout_s = timeout_s > 0 ? timeout_s : 300.0;
    CUDA_TRY(cudaStreamCreateWithFlags(&g->compute[0], cudaStreamNonBlocking));
    CUDA_TRY(cudaStreamCreateWithFlags(&g->comm[0], cudaStreamNonBlocking));
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclComm_t comm = nullptr;
    ncclResult_t r = nccl.CommInitRankConfig(&comm, ranks, *id, rank, &cfg);
    if (comm && (r == ncclSuccess || r == ncclInProgress))
        r = nccl_settle(comm, g->timeout_s);
    if (r == ncclSuccess)
        return g->nccl = comm, ATTN_OK;
    int rc = r == ncclInProgress
                 ? attn_fail(err, ATTN_ERUNTIME,
                             "nccl: communicator creation timed out after %g s (rank %d of %d; a peer never joined)",
                             g->timeout_s, rank, ranks)
                 : nccl_fail(g, r, "ncclCommInitRankConfig", err);
    if (comm)
        nccl.CommAbort(comm);
    return rc;
}

static int open_rank_or_clean(gcomm *g, const ncclUniqueId *id, int rank, int ranks, int device, double timeout_s,
                              attn_err_t *err) {
    int rc = open_rank(g, id, rank, ranks, device, timeout_s, err);
    if (rc != ATTN_OK) {
        gcomm_close(g);
        *g = gcomm{};
    }
    return rc;
}


int gcomm_nccl_open_mpi(gcomm *g, attn_comm_t *world, int device, double timeout_s, attn_err_t *err) {
    *g = gcomm{};
    int rank = world->rank, P = world->size;
    if (P < 1 || P > ATTN_MAX_RANKS)
        return attn_fail(err, ATTN_EUSAGE, "nccl: %d ranks (1..%d)", P, ATTN_MAX_RANKS);
    /* Every rank loads NCCL (rank 0 also makes the id) and the world agrees on the outcome
     * before anyone waits on another: a rank without the library fails the job at once, not
     * after timeout_s of the others waiting in communicator creation. */
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    int rc = nccl_load(err);
    if (rc == ATTN_OK && rank == 0) {
        ncclResult_t r = nccl.GetUniqueId(&id);
        if (r != ncclSuccess)
            rc = attn_fail(err, ATTN_ERUNTIME, "nccl: rank 0: ncclGetUniqueId: %s", nccl.GetErrorString(r));
    }
    double failed = rc == ATTN_OK ? 0.0 : rank + 1.0; /* the highest failing rank, plus one */
    ATTN_TRY(comm_allreduce(world, &failed, 1, COMM_MAX, TAG_NCCL_ID, err));
    if (rc != ATTN_OK)
        return rc;
    if (failed > 0)
        return attn_fail(err, ATTN_ERUNTIME, "nccl: rank %d could not start NCCL (its own message says why)",
                         (int)failed - 1);
    if (rank == 0) {
        comm_req_t req[ATTN_MAX_RANKS] = {};
        for (int q = 1; q < P; q++)
            ATTN_TRY(comm_isend(world, &id, sizeof id, q, TAG_NCCL_ID + 1, &req[q], err));
        for (int q = 1; q < P; q++)
            ATTN_TRY(comm_wait(world, &req[q], err));
    } else {
        comm_req_t req = {};
        ATTN_TRY(comm_irecv(world, &id, sizeof id, 0, TAG_NCCL_ID + 1, &req, err));
        ATTN_TRY(comm_wait(world, &req, err));
    }
    return open_rank_or_clean(g, &id, rank, P, device, timeout_s, err);
}

/* The file is left in place: a rank may still be about to read it. The caller removes it once
 * the communicator exists, and gives each run a fresh path (a stale id names a dead rank 0). */
int gcomm_nccl_open_file(gcomm *g, const char *path, int rank, int ranks, int device, double timeout_s,
                         attn_err_t *err) {
    *g = gcomm{};
    if (ranks < 1 || ranks > ATTN_MAX_RANKS || rank < 0 || rank >= ranks)
        return attn_fail(err, ATTN_EUSAGE, "nccl: rank %d of %d ranks (ranks 1..%d, rank 0..ranks-1)", rank, ranks,
                         ATTN_MAX_RANKS);
    ATTN_TRY(nccl_load(err));
    double wait_s = timeout_s > 0 ? timeout_s : 300.0;
    ncclUniqueId id;
    if (rank == 0) {
        ncclResult_t r = nccl.GetUniqueId(&id);
        if (r != ncclSuccess)
            return attn_fail(err, ATTN_ERUNTIME, "nccl: rank 0: ncclGetUniqueId: %s", nccl.GetErrorString(r));
        char tmp[4096];
        if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
            return attn_fail(err, ATTN_EUSAGE, "nccl: unique id path too long: %s", path);
        FILE *f = fopen(tmp, "wb");
        if (!f)
            return attn_fail(err, ATTN_ERUNTIME, "nccl: cannot write the unique id to %s: %s", tmp, strerror(errno));
        ATTN_TRY(attn_file_commit(f, fwrite(&id, sizeof id, 1, f) == 1, tmp, path, err));
    } else {
        /* rename() makes the file appear whole; the size check guards against a foreign file. */
        for (double t0 = time_now_s();; sleep_ms(10)) {
            FILE *f = fopen(path, "rb");
            size_t got = f ? fread(&id, 1, sizeof id, f) : 0;
            if (f)
                fclose(f);
            if (got == sizeof id)
                break;
            if (time_now_s() - t0 > wait_s)
                return attn_fail(err, ATTN_ERUNTIME, "nccl: no unique id at %s after %g s (is rank 0 running?)",
                                 path, wait_s);
        }
    }
    return open_rank_or_clean(g, &id, rank, ranks, device, timeout_s, err);
}

static int nccl_shift(attn_comm_t *c, const comm_shift_part_t part[], int, comm_req_t pending[], attn_err_t *err) {
    gcomm *g = static_cast<gcomm *>(c);
    ATTN_TRY(gcomm_no_pending(g, pending, err));
    ATTN_TRY(nccl_usable(g, err));
    int P = g->size, r = g->first;
    const comm_shift_part_t &m = part[0];
    if (m.recv_free) /* one rank per process: the whole comm stream may wait */
        CUDA_TRY(cudaStreamWaitEvent(g->comm[0], (cudaEvent_t)m.recv_free, 0));
    if (m.started) /* after the wait (NCCL may still wait for the peer) */
        CUDA_TRY(cudaEventRecord((cudaEvent_t)m.started, g->comm[0]));
    int to = m.peers ? m.send_to : (r + 1) % P, from = m.peers ? m.recv_from : (r - 1 + P) % P;
    if (to < 0 || to >= P || from < 0 || from >= P || (to == r) != (from == r))
        return attn_fail(err, ATTN_ERUNTIME, "nccl: rank %d: ring step to %d from %d of %d", r, to, from, P);
    if (to == r) { /* the ring closes on this rank: a copy, no NCCL call */
        if (m.recv_bytes != m.send_bytes)
            return attn_fail(err, ATTN_ERUNTIME, "nccl: rank 0 expects %zu bytes but sends itself %zu", m.recv_bytes,
                             m.send_bytes);
        if (m.recv_bytes && m.recv != m.send)
            CUDA_TRY(cudaMemcpyAsync(m.recv, m.send, m.recv_bytes, cudaMemcpyDeviceToDevice, g->comm[0]));
        return ATTN_OK;
    }
    /* Both sides derive the sizes from the layout, so a zero-byte part is skipped by both. */
    ncclComm_t comm = (ncclComm_t)g->nccl;
    ncclResult_t s = nccl.GroupStart();
    if (s != ncclSuccess)
        return nccl_fail(g, s, "ncclGroupStart", err);
    if (m.send_bytes)
        s = nccl.Send(m.send, m.send_bytes, ncclUint8, to, comm, g->comm[0]);
    if (m.recv_bytes && (s == ncclSuccess || s == ncclInProgress))
        s = nccl.Recv(m.recv, m.recv_bytes, ncclUint8, from, comm, g->comm[0]);
    return nccl_group_end(g, s, "ncclSend/ncclRecv (ring shift)", err);
}

static int nccl_alltoallv(attn_comm_t *c, const comm_a2a_part_t part[], int, attn_err_t *err) {
    gcomm *g = static_cast<gcomm *>(c);
    ATTN_TRY(nccl_usable(g, err));
    ncclComm_t comm = (ncclComm_t)g->nccl;
    ncclResult_t s = nccl.GroupStart();
    if (s != ncclSuccess)
        return nccl_fail(g, s, "ncclGroupStart", err);
    /* part[0]: this process drives one rank. The self part is a send/recv pair too, which NCCL
     * runs as a copy inside the group. */
    const comm_a2a_part_t &m = part[0];
    for (int q = 0; q < g->size && (s == ncclSuccess || s == ncclInProgress); q++) {
        if (m.send_bytes[q])
            s = nccl.Send((const char *)m.send + m.send_off[q], m.send_bytes[q], ncclUint8, q, comm, g->comm[0]);
        if (m.recv_bytes[q] && (s == ncclSuccess || s == ncclInProgress))
            s = nccl.Recv((char *)m.recv + m.recv_off[q], m.recv_bytes[q], ncclUint8, q, comm, g->comm[0]);
    }
    return nccl_group_end(g, s, "ncclSend/ncclRecv (all-to-all)", err);
}

int gcomm_nccl_poll(gcomm *g, attn_err_t *err) {
    ATTN_TRY(nccl_usable(g, err));
    ncclResult_t state = ncclSuccess, r = nccl.CommGetAsyncError((ncclComm_t)g->nccl, &state);
    if (r == ncclSuccess)
        r = state;
    if (r == ncclSuccess || r == ncclInProgress)
        return ATTN_OK;
    int rc = nccl_fail(g, r, "asynchronous error", err);
    gcomm_nccl_close(g, 1);
    return rc;
}

void gcomm_nccl_close(gcomm *g, int abort) {
    ncclComm_t comm = (ncclComm_t)g->nccl;
    g->nccl = nullptr;
    if (!comm || !nccl.loaded)
        return;
    if (!abort) { /* finalize waits for the peers: bounded like everything else */
        ncclResult_t r = nccl.CommFinalize(comm);
        if (r == ncclInProgress)
            r = nccl_settle(comm, g->timeout_s);
        if (r == ncclSuccess) {
            nccl.CommDestroy(comm);
            return;
        }
    }
    nccl.CommAbort(comm); /* after an error, or a finalize that failed or timed out */
}

/* Only once a run has loaded it: the metadata never loads 200 MB to read a version. */
extern "C" void device_nccl_version(char *out, size_t len) {
    int v = 0;
    if (nccl.loaded && nccl.GetVersion(&v) == ncclSuccess && v > 0) /* 22809 = 2.28.9 (from 2.9 on) */
        snprintf(out, len, "%d.%d.%d", v / 10000, v % 10000 / 100, v % 100);
}

#else /* no nccl.h at build time: the transport exists only to say so */

static int no_nccl(attn_err_t *err) {
    return attn_fail(err, ATTN_EUSAGE,
                     "nccl transport: this build has no NCCL headers (rebuild with nccl.h on the include path, "
                     "e.g. NCCL_HOME=/path/to/nccl)");
}

int gcomm_nccl_open_mpi(gcomm *g, attn_comm_t *, int, double, attn_err_t *err) { return *g = gcomm{}, no_nccl(err); }
int gcomm_nccl_open_file(gcomm *g, const char *, int, int, int, double, attn_err_t *err) {
    return *g = gcomm{}, no_nccl(err);
}
static int nccl_shift(attn_comm_t *, const comm_shift_part_t[], int, comm_req_t[], attn_err_t *err) {
    return no_nccl(err);
}
static int nccl_alltoallv(attn_comm_t *, const comm_a2a_part_t[], int, attn_err_t *err) { return no_nccl(err); }
int gcomm_nccl_poll(gcomm *, attn_err_t *err) { return no_nccl(err); }
void gcomm_nccl_close(gcomm *g, int) { g->nccl = nullptr; }
extern "C" void device_nccl_version(char *, size_t) {}

#endif

static int nccl_sync(attn_comm_t *c, void *point, const char *what, attn_err_t *err) {
    return gcomm_event_wait(static_cast<gcomm *>(c), (cudaEvent_t)point, what, gcomm_nccl_poll,
                            "communicator aborted", err);
}

/* The barrier is the MPI world's own ready step (no world: a file-bootstrapped self test). */
static int nccl_ready(attn_comm_t *c, attn_err_t *err) {
    gcomm *g = static_cast<gcomm *>(c);
    return g->world ? comm_ready(g->world, err) : ATTN_OK;
}

static void nccl_abort(attn_comm_t *c, const char *) {
    gcomm *g = static_cast<gcomm *>(c);
    if (g->nccl)
        gcomm_nccl_close(g, 1);
}

static void nccl_close(attn_comm_t *c) {
    gcomm *g = static_cast<gcomm *>(c);
    if (g->nccl)
        gcomm_nccl_close(g, 0);
    gcomm_streams_destroy(g);
}

const comm_ops_t nccl_ops = {.name = "nccl", .isend = gcomm_no_isend, .irecv = gcomm_no_irecv, .wait = gcomm_no_wait,
                             .shift = nccl_shift, .alltoallv = nccl_alltoallv, .sync = nccl_sync, .ready = nccl_ready,
                             .abort = nccl_abort, .close = nccl_close,
                             .progress = nullptr, .peer_failed = nullptr, .compute_slot = nullptr}; /* no optional hooks */

extern "C" const comm_ops_t *gcomm_nccl_ops(void) { return &nccl_ops; }
