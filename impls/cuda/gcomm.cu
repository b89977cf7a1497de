/* gcomm.cu — the cuda_local transport and the dispatch of gcomm.cuh's calls (nccl's halves are
 * in gcomm_nccl.cu). Why copies are ordered in two phases: docs/gpu-transports.md. */
#include <time.h>

#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/gcomm.cuh"

int gcomm_local_open(gcomm *g, int ranks, int device, double timeout_s, attn_err_t *err) {
    *g = gcomm{};
    if (ranks < 1 || ranks > ATTN_MAX_RANKS)
        return attn_fail(err, ATTN_EUSAGE, "cuda_local: %d ranks (1..%d)", ranks, ATTN_MAX_RANKS);
    g->kind = GCOMM_CUDA_LOCAL, g->size = ranks, g->first = 0, g->count = ranks, g->device = device;
    g->timeout_s = timeout_s > 0 ? timeout_s : 300.0;
    for (int i = 0; i < ranks; i++) {
        CUDA_TRY(cudaStreamCreateWithFlags(&g->compute[i], cudaStreamNonBlocking));
        CUDA_TRY(cudaStreamCreateWithFlags(&g->comm[i], cudaStreamNonBlocking));
    }
    return ATTN_OK;
}

void gcomm_close(gcomm *g) {
    if (g->kind == GCOMM_NCCL && g->nccl)
        gcomm_nccl_close(g, 0);
    for (int i = 0; i < g->count && i < ATTN_MAX_RANKS; i++) {
        if (g->compute[i])
            cudaStreamDestroy(g->compute[i]);
        if (g->comm[i])
            cudaStreamDestroy(g->comm[i]);
        g->compute[i] = g->comm[i] = nullptr;
    }
    g->count = 0;
}

void gcomm_abort(gcomm *g) {
    if (g->kind == GCOMM_NCCL && g->nccl)
        gcomm_nccl_close(g, 1);
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

int gcomm_shift(gcomm *g, void *const send[], const size_t send_bytes[], void *const recv[],
                const size_t recv_bytes[], const cudaEvent_t recv_free[], const cudaEvent_t started[], attn_err_t *err) {
    if (g->kind == GCOMM_NCCL)
        return gcomm_nccl_shift(g, send, send_bytes, recv, recv_bytes, recv_free, started, err);
    int P = g->size;
    phase_events before;
    ATTN_TRY(before.record(g, err));
    for (int r = 0; r < P; r++) {
        int from = (r - 1 + P) % P, to = (r + 1) % P;
        if (recv_bytes[r] != send_bytes[from])
            return attn_fail(err, ATTN_ERUNTIME, "cuda_local: rank %d expects %zu bytes but rank %d sends %zu", r,
                             recv_bytes[r], from, send_bytes[from]);
        /* The sender's buffer was filled on its comm stream; the buffer received into was read
         * by the next rank's copy of the previous step, on that rank's comm stream. */
        CUDA_TRY(cudaStreamWaitEvent(g->comm[r], before.ev[from], 0));
        CUDA_TRY(cudaStreamWaitEvent(g->comm[r], before.ev[to], 0));
        if (recv_free && recv_free[r]) /* after the records: the neighbours do not inherit it */
            CUDA_TRY(cudaStreamWaitEvent(g->comm[r], recv_free[r], 0));
        if (started && started[r]) /* after every wait: the copy itself starts here */
            CUDA_TRY(cudaEventRecord(started[r], g->comm[r]));
        if (recv_bytes[r] && recv[r] != send[from])
            CUDA_TRY(cudaMemcpyAsync(recv[r], send[from], recv_bytes[r], cudaMemcpyDeviceToDevice, g->comm[r]));
    }
    return ATTN_OK;
}

int gcomm_alltoallv(gcomm *g, const void *const send[], const gcomm_sizes_t send_bytes, const gcomm_sizes_t send_off,
                    void *const recv[], const gcomm_sizes_t recv_bytes, const gcomm_sizes_t recv_off, attn_err_t *err) {
    if (g->kind == GCOMM_NCCL)
        return gcomm_nccl_alltoallv(g, send, send_bytes, send_off, recv, recv_bytes, recv_off, err);
    int P = g->size;
    phase_events before, after;
    ATTN_TRY(before.record(g, err));
    for (int r = 0; r < P; r++) {
        for (int q = 0; q < P; q++)
            CUDA_TRY(cudaStreamWaitEvent(g->comm[r], before.ev[q], 0));
        for (int q = 0; q < P; q++) { /* rank r receives rank q's part */
            if (recv_bytes[r][q] != send_bytes[q][r])
                return attn_fail(err, ATTN_ERUNTIME, "cuda_local: rank %d expects %zu bytes from rank %d, which sends %zu",
                                 r, recv_bytes[r][q], q, send_bytes[q][r]);
            if (recv_bytes[r][q])
                CUDA_TRY(cudaMemcpyAsync((char *)recv[r] + recv_off[r][q], (const char *)send[q] + send_off[q][r],
                                         recv_bytes[r][q], cudaMemcpyDeviceToDevice, g->comm[r]));
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

int gcomm_inputs_ready(gcomm *g, attn_err_t *err) {
    if (g->kind != GCOMM_NCCL || !g->world)
        return ATTN_OK;
    return comm_barrier(g->world, 1 << 21, err);
}

int gcomm_sync(gcomm *g, cudaEvent_t ev, const char *what, attn_err_t *err) {
    double t0 = time_now_s();
    for (long polls = 0;; polls++) {
        cudaError_t e = cudaEventQuery(ev);
        if (e == cudaSuccess)
            return ATTN_OK;
        if (e != cudaErrorNotReady) {
            gcomm_abort(g);
            return cuda_fail(err, e, what, __FILE__, __LINE__);
        }
        if (g->kind == GCOMM_NCCL)
            ATTN_TRY(gcomm_nccl_poll(g, err));
        if (time_now_s() - t0 > g->timeout_s) {
            gcomm_abort(g);
            return attn_fail(err, ATTN_ERUNTIME, "%s: rank %d: no completion after %.0f s (a peer is stalled or dead); %s",
                             g->kind == GCOMM_NCCL ? "nccl" : "cuda_local", g->first, g->timeout_s,
                             g->kind == GCOMM_NCCL ? "communicator aborted" : "giving up");
        }
        gcomm_poll_pause(polls);
    }
}
