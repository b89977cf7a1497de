/* cuda_util.cuh — what every CUDA backend file shares: CUDA/cuBLAS status → attn_err_t with file
 * and line (never an abort), the tracked device allocator behind the memory task's device
 * figures, owners that free on every return path, and a forward call's device selection. */
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <initializer_list>

extern "C" {
#include "core/backend.h"
}
#include "impls/cuda/cuda_backends.h"
#include "core/device.h"

/* Fills err with "CUDA error at FILE:LINE: CALL: NAME (description)"; returns ATTN_ERUNTIME. */
int cuda_fail(attn_err_t *err, cudaError_t e, const char *call, const char *file, int line);
int cublas_fail(attn_err_t *err, cublasStatus_t s, const char *call, const char *file, int line);

/* In a function with an `attn_err_t *err` in scope: return the status as an error. */
#define CUDA_TRY(call)                                                  \
    do {                                                                \
        cudaError_t cuda_e_ = (call);                                   \
        if (cuda_e_ != cudaSuccess)                                     \
            return cuda_fail(err, cuda_e_, #call, __FILE__, __LINE__);  \
    } while (0)
#define CUBLAS_TRY(call)                                                \
    do {                                                                \
        cublasStatus_t cublas_s_ = (call);                              \
        if (cublas_s_ != CUBLAS_STATUS_SUCCESS)                         \
            return cublas_fail(err, cublas_s_, #call, __FILE__, __LINE__); \
    } while (0)
/* After a kernel launch: launch-configuration errors surface here. */
#define CUDA_TRY_LAUNCH() CUDA_TRY(cudaGetLastError())

/* cudaMalloc that counts bytes (device_alloc_*_bytes) and reports what it wanted on failure:
 * "out of device memory: WHAT needs N bytes (...) at FILE:LINE". cuda_free(NULL) does nothing. */
void *cuda_alloc_at(size_t bytes, attn_err_t *err, const char *what, const char *file, int line);
void cuda_free(void *p);
#define cuda_alloc(bytes, err, what) cuda_alloc_at((bytes), (err), (what), __FILE__, __LINE__)

/* A device buffer freed when it goes out of scope, so every early return releases it. */
struct dev_buf {
    void *ptr = nullptr;
    dev_buf() = default;
    dev_buf(const dev_buf &) = delete;
    dev_buf &operator=(const dev_buf &) = delete;
    ~dev_buf() { cuda_free(ptr); }
    /* Allocates bytes; ATTN_OK or ATTN_ERUNTIME with err filled. */
    int alloc(size_t bytes, attn_err_t *err, const char *what, const char *file, int line) {
        ptr = cuda_alloc_at(bytes, err, what, file, line);
        return ptr ? ATTN_OK : ATTN_ERUNTIME;
    }
    template <class T> T *as() const { return static_cast<T *>(ptr); }
};
#define DEV_ALLOC(buf, bytes, what) ATTN_TRY((buf).alloc((bytes), err, (what), __FILE__, __LINE__))

/* The problem's visibility for a kernel: the document offsets copied into buf (device memory,
 * n_docs + 1 int64) when the problem has documents; without them v.doc stays NULL. */
inline int cuda_vis_upload(const attn_problem_t *p, dev_buf &buf, attn_vis_t *v, cudaStream_t s, attn_err_t *err) {
    *v = problem_vis(p);
    if (!mask_has_docs(v)) {
        v->doc = nullptr, v->n_docs = 0;
        return ATTN_OK;
    }
    size_t bytes = (size_t)(p->n_docs + 1) * sizeof(int64_t);
    DEV_ALLOC(buf, bytes, "document offsets");
    CUDA_TRY(cudaMemcpyAsync(buf.ptr, p->doc, bytes, cudaMemcpyHostToDevice, s));
    CUDA_TRY(cudaStreamSynchronize(s)); /* p->doc is pageable host memory the caller may reuse */
    v->doc = static_cast<const int64_t *>(buf.ptr);
    return ATTN_OK;
}
/* Device bytes of those offsets (0 without documents). */
inline size_t cuda_vis_bytes(const attn_problem_t *p) {
    return p->doc && p->n_docs > 1 ? (size_t)(p->n_docs + 1) * sizeof(int64_t) : 0;
}

/* Two events around the timed kernels; destroyed on every return path. */
struct event_pair {
    cudaEvent_t start = nullptr, stop = nullptr;
    event_pair() = default;
    event_pair(const event_pair &) = delete;
    event_pair &operator=(const event_pair &) = delete;
    ~event_pair() {
        if (start)
            cudaEventDestroy(start);
        if (stop)
            cudaEventDestroy(stop);
    }
};

/* The per-step events of a GPU ring loop (ring_cuda.cu's rank_events, ring_cuda_grad.cu's
 * grad_events): N kinds of one event per step (what each marks is the loop's: users name them
 * through pointers into at[]) and the start and end of the rank's timed region. create(steps)
 * makes start, end and steps events of each kind; every non-null one is destroyed on every
 * return path (creation may stop half-way). */
template <int N> struct step_events {
    cudaEvent_t at[N][ATTN_MAX_RANKS] = {};
    cudaEvent_t start = nullptr, end = nullptr;
    step_events() = default;
    step_events(const step_events &) = delete;
    step_events &operator=(const step_events &) = delete;
    ~step_events() {
        for (int k = 0; k < N; k++)
            for (int s = 0; s < ATTN_MAX_RANKS; s++)
                if (at[k][s])
                    cudaEventDestroy(at[k][s]);
        for (cudaEvent_t e : {start, end})
            if (e)
                cudaEventDestroy(e);
    }
    int create(int steps, attn_err_t *err) {
        CUDA_TRY(cudaEventCreate(&start));
        CUDA_TRY(cudaEventCreate(&end));
        for (int s = 0; s < steps; s++)
            for (int k = 0; k < N; k++)
                CUDA_TRY(cudaEventCreate(&at[k][s]));
        return ATTN_OK;
    }
};

/* Every forward starts here: a clear "no CUDA device" error when there is none, the device
 * x->device selected, and an error naming the ordinal when it does not exist. */
int cuda_begin(const attn_exec_t *x, attn_err_t *err);
/* cuda_supports_device (cuda_backends.h): supports() of every CUDA backend starts there: 0
 * with the reason when there is no device (the task records the case as skipped) or when
 * the device bytes would not fit in the device's free memory. */

/* Host float32 → device elements of dtype t: bfloat16 (ATTN_BF16), IEEE binary16 (ATTN_F16;
 * round to nearest even, |x| ≥ 65520 → ±∞), else float32 as is. The 16-bit conversions run on
 * the device, through a float32 staging buffer the caller provides (at least n floats). */
int cuda_upload(void *dst, attn_dtype_t t, const float *src, size_t n, float *staging, cudaStream_t s,
                attn_err_t *err);
/* The same conversion of float32 already on the device (kv_device.cu): src → dst (n elements)
 * on stream s; float32 is copied. And problem_finish_rows on device O (rows, d) / LSE (rows):
 * a row whose LSE is −∞ becomes NaN. The device-resident model forward's Q/O (exec.h qo_device). */
int cuda_to_dtype_device(void *dst, attn_dtype_t t, const float *src, size_t n, cudaStream_t s, attn_err_t *err);
int cuda_finish_rows_device(float *o, float *lse, int64_t rows, int64_t d, cudaStream_t s, attn_err_t *err);

/* Seconds from event a to event b (negative when b came first: they may sit on different
 * streams); 0 when either was not recorded. The per-rank figures of the GPU ring and ulysses. */
inline double seconds_between(cudaEvent_t a, cudaEvent_t b) {
    float ms = 0;
    return cudaEventElapsedTime(&ms, a, b) == cudaSuccess ? ms / 1e3 : 0.0;
}

/* Every forward ends here: waits for the stop event, reports the kernels' device time through
 * io->device_s and copies O (nq floats) and LSE (nl floats) back to the host. */
inline int cuda_finish(const event_pair &ev, const dev_buf &o, const dev_buf &lse, size_t nq, size_t nl,
                       const attn_io_t *io, attn_err_t *err) {
    CUDA_TRY(cudaEventSynchronize(ev.stop));
    float ms = 0;
    CUDA_TRY(cudaEventElapsedTime(&ms, ev.start, ev.stop));
    if (io->device_s)
        *io->device_s = ms / 1e3;
    CUDA_TRY(cudaMemcpy(io->o, o.ptr, nq * sizeof(float), cudaMemcpyDeviceToHost));
    CUDA_TRY(cudaMemcpy(io->lse, lse.ptr, nl * sizeof(float), cudaMemcpyDeviceToHost));
    if (nl) /* whole rows: LSE = −∞ (only −∞ scores) becomes NaN, as on the CPU (core/problem.h) */
        problem_finish_rows(ATTN_F32, io->o, io->lse, nl, (int64_t)(nq / nl));
    return ATTN_OK;
}
