/* gcomm.cu — the cuda_local transport's comm_ops_t table, and what it shares with nccl's: the
 * polling host wait, the streams' teardown, the refusals. Why copies are ordered in two phases:
 * docs/gpu-transports.md. */
#include <time.h>

#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/gcomm.cuh"

extern const comm_ops_t cuda_local_ops;

int gcomm_local_open(gcomm *g, int ranks, int device, double timeout_s, attn_err_t *err) {
    *g = gcomm{};
    if (ranks < 1 || ranks > ATTN_MAX_RANKS)
        return attn_fail(err, ATTN_EUSAGE, "cuda_local: %d ranks (1..%d)", ranks, ATTN_MAX_RANKS);
    /* The table first: a half-opened handle is closed through it. */
    g->ops = &cuda_local_ops, g->size = ranks, g->rank = g->first = 0, g->count = ranks, g->device = device;
    g->timeout_s = timeout_s > 0 ? timeout_s : 300.0;
    for (int i = 0; i < ranks; i++) {
        CUDA_TRY(cudaStreamCreateWithFlags(&g->compute[i], cudaStreamNonBlocking));
        CUDA_TRY(cudaStreamCreateWithFlags(&g->comm[i], cudaStreamNonBlocking));
    }
    return ATTN_OK;
}

void gcomm_streams_destroy(gcomm *g) {
    for (int i = 0; i < g->count && i < ATTN_MAX_RANKS; i++) {
        if (g->compute[i])
            cudaStreamDestroy(g->compute[i]);
        if (g->comm[i])
            cudaStreamDestroy(g->comm[i]);
        g->compute[i] = g->comm[i] = nullptr;
    }
    g->count = 0;
}

/* Device buffers move only in ring steps and all-to-alls; host messages go over a host world. */
static int refuse(attn_comm_t *c, const char *what, attn_err_t *err) {
    return attn_fail(err, ATTN_ERUNTIME,
                     "%s: rank %d: a host %s on a GPU transport (it moves device buffers in ring steps and "
                     "all-to-alls only)",
                     c->ops->name, c->rank, what);
}
int gcomm_no_isend(attn_comm_t *c, const void *, size_t, int, int, comm_req_t *, attn_err_t *err) {
    return refuse(c, "send", err);
}
int gcomm_no_irecv(attn_comm_t *c, void *, size_t, int, int, comm_req_t *, attn_err_t *err) {
    return refuse(c, "receive", err);
}
int gcomm_no_wait(attn_comm_t *c, comm_req_t *, attn_err_t *err) { return refuse(c, "request wait", err); }

/* Completion is in stream order on the GPU: the host learns of it through events (sync). */
int gcomm_no_pending(const gcomm *g, const comm_req_t pending[], attn_err_t *err) {
    if (!pending)
        return ATTN_OK;
    return attn_fail(err, ATTN_ERUNTIME, "%s: rank %d: a ring step with host requests (GPU steps complete in stream order)",
                     g->ops->name, g->first);
}

/* Events of one ordering phase, destroyed on every return path. */
struct phase_events {
    cudaEvent_t ev[ATTN_MAX_RANKS] = {};
    int n = 0;
    phase_events() = default;
    phase_events(const phase_events &) = delete;
    phase_events &operator=(const phase_events &) = delete;
    ~phase_events() {
        for (int i = 0; i < n; i++)
            cudaEventDestroy(ev[i]);
    }
    /* Records "everything enqueued so far" on each of g's comm streams. */
    int record(gcomm *g, attn_err_t *err) {
        while (n < g->count) {
            CUDA_TRY(cudaEventCreateWithFlags(&ev[n], cudaEventDisableTiming));
            n++; /* owned from here: destroyed even if the record fails */
            CUDA_TRY(cudaEventRecord(ev[n - 1], g->comm[n - 1]));
        }
        return ATTN_OK;
    }
};

static int local_shift(attn_comm_t *c, const comm_shift_part_t part[], int, comm_req_t pending[], attn_err_t *err) {
    gcomm *g = static_cast<gcomm *>(c);
    ATTN_TRY(gcomm_no_pending(g, pending, err));
    int P = g->size;
    phase_events before;
    ATTN_TRY(before.record(g, err));
    for (int r = 0; r < P; r++) {
        /* A sub-ring (peers set, usp) pairs the same way: r's receive is its recv_from's send. */
        int from = part[r].peers ? part[r].recv_from : (r - 1 + P) % P;
        int to = part[r].peers ? part[r].send_to : (r + 1) % P;
        if (from < 0 || from >= P || to < 0 || to >= P)
            return attn_fail(err, ATTN_ERUNTIME, "cuda_local: rank %d: ring step to %d from %d of %d", r, to, from, P);
        int from_to = part[from].peers ? part[from].send_to : (from + 1) % P;
        if (from_to != r)
            return attn_fail(err, ATTN_ERUNTIME, "cuda_local: rank %d receives from %d, which sends to %d", r, from,
                             from_to);
        if (part[r].recv_bytes != part[from].send_bytes)
            return attn_fail(err, ATTN_ERUNTIME, "cuda_local: rank %d expects %zu bytes but rank %d sends %zu", r,
                             part[r].recv_bytes, from, part[from].send_bytes);
        /* The sender's buffer was filled on its comm stream; the buffer received into was read
         * by the next rank's copy of the previous step, on that rank's comm stream. */
        CUDA_TRY(cudaStreamWaitEvent(g->comm[r], before.ev[from], 0));
        CUDA_TRY(cudaStreamWaitEvent(g->comm[r], before.ev[to], 0));
        if (part[r].recv_free) /* after the records: the neighbours do not inherit it */
            CUDA_TRY(cudaStreamWaitEvent(g->comm[r], (cudaEvent_t)part[r].recv_free, 0));
        if (part[r].started) /* after every wait: the copy itself starts here */
            CUDA_TRY(cudaEventRecord((cudaEvent_t)part[r].started, g->comm[r]));
        if (part[r].recv_bytes && part[r].recv != part[from].send)
            CUDA_TRY(cudaMemcpyAsync(part[r].recv, part[from].send, part[r].recv_bytes, cudaMemcpyDeviceToDevice,
                                     g->comm[r]));
    }
    return ATTN_OK;
}

static int local_alltoallv(attn_comm_t *c, const comm_a2a_part_t part[], int, attn_err_t *err) {
    gcomm *g = static_cast<gcomm *>(c);
    int P = g->size;
    phase_events before, after;
    ATTN_TRY(before.record(g, err));
    for (int r = 0; r < P; r++) {
        for (int q = 0; q < P; q++)
            CUDA_TRY(cudaStreamWaitEvent(g->comm[r], before.ev[q], 0));
        for (int q = 0; q < P; q++) { /* rank r receives rank q's part */
            if (part[r].recv_bytes[q] != part[q].send_bytes[r])
                return attn_fail(err, ATTN_ERUNTIME, "cuda_local: rank %d expects %zu bytes from rank %d, which sends %zu",
                                 r, part[r].recv_bytes[q], q, part[q].send_bytes[r]);
            if (part[r].recv_bytes[q])
                CUDA_TRY(cudaMemcpyAsync((char *)part[r].recv + part[r].recv_off[q],
                                         (const char *)part[q].send + part[q].send_off[r], part[r].recv_bytes[q],
                                         cudaMemcpyDeviceToDevice, g->comm[r]));
        }
    }
    /* Other ranks' streams read each send buffer: nobody moves on until every copy is done. */
    ATTN_TRY(after.record(g, err));
    for (int r = 0; r < P; r++)
        for (int q = 0; q < P; q++)
            CUDA_TRY(cudaStreamWaitEvent(g->comm[r], after.ev[q], 0));
    return ATTN_OK;
}

void gcomm_poll_pause(long polls) {
    if (polls > 1000) {
        struct timespec t = {0, 200000};
        nanosleep(&t, nullptr);
    }
}

int gcomm_event_wait(gcomm *g, cudaEvent_t ev, const char *what, int (*poll)(gcomm *, attn_err_t *),
                     const char *on_timeout, attn_err_t *err) {
    double t0 = time_now_s();
    for (long polls = 0;; polls++) {
        cudaError_t e = cudaEventQuery(ev);
        if (e == cudaSuccess)
            return ATTN_OK;
        if (e != cudaErrorNotReady) {
            gcomm_abort(g);
            return cuda_fail(err, e, what, __FILE__, __LINE__);
        }
        if (poll)
            ATTN_TRY(poll(g, err));
        if (time_now_s() - t0 > g->timeout_s) {
            gcomm_abort(g);
            return attn_fail(err, ATTN_ERUNTIME, "%s: rank %d: no completion after %.0f s (a peer is stalled or dead); %s",
                             g->ops->name, g->first, g->timeout_s, on_timeout);
        }
        gcomm_poll_pause(polls);
    }
}

static int local_sync(attn_comm_t *c, void *point, const char *what, attn_err_t *err) {
    return gcomm_event_wait(static_cast<gcomm *>(c), (cudaEvent_t)point, what, nullptr, "giving up", err);
}

/* Every rank is driven from here: their inputs are all in place once this thread's are. */
static int local_ready(attn_comm_t *, attn_err_t *) { return ATTN_OK; }

/* No peer outside this process can be blocked on these ranks. */
static void local_abort(attn_comm_t *, const char *) {}

static void local_close(attn_comm_t *c) { gcomm_streams_destroy(static_cast<gcomm *>(c)); }

const comm_ops_t cuda_local_ops = {.name = "cuda_local", .isend = gcomm_no_isend, .irecv = gcomm_no_irecv,
                                   .wait = gcomm_no_wait, .shift = local_shift, .alltoallv = local_alltoallv,
                                   .sync = local_sync, .ready = local_ready, .abort = local_abort,
                                   .close = local_close,
                                   .progress = nullptr, .peer_failed = nullptr, .compute_slot = nullptr}; /* no optional hooks */

extern "C" const comm_ops_t *gcomm_cuda_local_ops(void) { return &cuda_local_ops; }
