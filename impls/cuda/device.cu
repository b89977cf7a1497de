/* device.cu — device.h for CUDA builds (device count, metadata, memory, tracked allocation)
 * and the shared helpers of cuda_util.cuh (error messages, device selection, uploads). */
#include <atomic>
#include <mutex>
#include <stdio.h>
#include <string.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "impls/cuda/cuda_util.cuh"

/* ---- errors ----------------------------------------------------------------------------- */

int cuda_fail(attn_err_t *err, cudaError_t e, const char *call, const char *file, int line) {
    return attn_fail(err, ATTN_ERUNTIME, "CUDA error at %s:%d: %s: %s (%s)", file, line, call, cudaGetErrorName(e),
                     cudaGetErrorString(e));
}

int cublas_fail(attn_err_t *err, cublasStatus_t s, const char *call, const char *file, int line) {
    return attn_fail(err, ATTN_ERUNTIME, "cuBLAS error at %s:%d: %s: %s (%s)", file, line, call,
                     cublasGetStatusName(s), cublasGetStatusString(s));
}

/* ---- devices ---------------------------------------------------------------------------- */

extern "C" int device_cuda_built(void) { return 1; }

extern "C" int device_count(char *why, size_t len) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        /* Without any NVIDIA driver the runtime says "driver version is insufficient", which
         * reads like an upgrade hint; say what it usually means on a machine without a GPU. */
        const char *hint = e == cudaErrorInsufficientDriver ? "no NVIDIA driver, or one older than this CUDA runtime"
                           : e == cudaErrorNoDevice         ? "no GPU visible (check CUDA_VISIBLE_DEVICES)"
                           : e == cudaSuccess               ? "none visible"
                                                            : cudaGetErrorString(e);
        if (why && len)
            snprintf(why, len, "no CUDA device: cudaGetDeviceCount reported %s (%s)",
                     e == cudaSuccess ? "0 devices" : cudaGetErrorName(e), hint);
        cudaGetLastError(); /* the no-device status is not sticky; clear it for later calls */
        return 0;
    }
    return n;
}

/* The first token with a dot that starts with a digit on /proc/driver/nvidia/version's first
 * line ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  <date>"). */
static void driver_module_version(char *out, size_t len) {
    char line[256];
    FILE *f = fopen("/proc/driver/nvidia/version", "r");
    if (!f)
        return;
    char *got = fgets(line, sizeof line, f);
    fclose(f);
    if (!got)
        return;
    char *save = NULL;
    for (char *t = strtok_r(line, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save))
        if (t[0] >= '0' && t[0] <= '9' && strchr(t, '.')) {
            snprintf(out, len, "%s", t);
            return;
        }
}

extern "C" void device_describe(int ordinal, char *model, size_t model_len, char *driver, size_t driver_len,
                                char *cuda, size_t cuda_len) {
    if (ordinal >= device_count(NULL, 0))
        return;
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, ordinal) == cudaSuccess)
        snprintf(model, model_len, "%s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major, prop.minor,
                 prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);
    int v = 0;
    /* "580.159.04 (CUDA 13.0)": the kernel module's version (what nvidia-smi prints, and what
     * benchmarks/torch_sdpa.py records) and the CUDA level it supports. The module's version is
     * only in /proc; without it (some sandboxes) the CUDA level alone. */
    char ver[64] = "";
    driver_module_version(ver, sizeof ver);
    if (cudaDriverGetVersion(&v) == cudaSuccess)
        snprintf(driver, driver_len, "%s%s(CUDA %d.%d)", ver, ver[0] ? " " : "", v / 1000, (v % 1000) / 10);
    if (cudaRuntimeGetVersion(&v) == cudaSuccess)
        snprintf(cuda, cuda_len, "%d.%d", v / 1000, (v % 1000) / 10);
}

extern "C" int device_pci_bus_id(int ordinal, char *out, size_t len) {
    if (ordinal >= device_count(NULL, 0) || len < 13)
        return 0;
    return cudaDeviceGetPCIBusId(out, (int)len, ordinal) == cudaSuccess && out[0];
}

extern "C" int device_mem_info(int ordinal, uint64_t *free_bytes, uint64_t *total_bytes) {
    *free_bytes = *total_bytes = 0;
    int cur = 0;
    size_t f = 0, t = 0;
    if (ordinal >= device_count(NULL, 0) || cudaGetDevice(&cur) != cudaSuccess)
        return 0;
    int ok = cudaSetDevice(ordinal) == cudaSuccess && cudaMemGetInfo(&f, &t) == cudaSuccess;
    cudaSetDevice(cur);
    *free_bytes = f;
    *total_bytes = t;
    return ok;
}

int cuda_begin(const attn_exec_t *x, attn_err_t *err) {
    char why[256];
    int n = device_count(why, sizeof why);
    if (n == 0)
        return attn_fail(err, ATTN_ERUNTIME, "%s", why);
    if (x->device >= n)
        return attn_fail(err, ATTN_ERUNTIME, "no CUDA device %d: this machine has %d (0..%d)", x->device, n, n - 1);
    CUDA_TRY(cudaSetDevice(x->device));
    return ATTN_OK;
}

extern "C" int cuda_supports_device(const attn_backend_t *self, const attn_exec_t *x, size_t device_bytes, char *reason,
                         size_t len) {
    char why[256];
    int n = device_count(why, sizeof why);
    if (n == 0) {
        snprintf(reason, len, "%s: %s", self->name, why);
        return 0;
    }
    if (x->device >= n) {
        snprintf(reason, len, "%s: no CUDA device %d (this machine has %d)", self->name, x->device, n);
        return 0;
    }
    /* The fatbinary holds sm_80 and sm_90 code (mma.sync bf16, cp.async): an older device would
     * fail at its first launch with no kernel image, so decline it here with the reason. */
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, x->device) == cudaSuccess && major < 8) {
        snprintf(reason, len, "%s needs compute capability 8.0 or newer; device %d is sm_%d.x", self->name, x->device,
                 major);
        return 0;
    }
    uint64_t free_b = 0, total_b = 0;
    if (device_mem_info(x->device, &free_b, &total_b) && device_bytes > free_b) {
        snprintf(reason, len,
                 "%s would need %zu device bytes (%.1f GiB) but device %d has %llu free (%.1f GiB of %.1f GiB)",
                 self->name, device_bytes, device_bytes / 1073741824.0, x->device, (unsigned long long)free_b,
                 free_b / 1073741824.0, total_b / 1073741824.0);
        return 0;
    }
    return 1;
}

/* ---- tracked allocation ----------------------------------------------------------------- */

/* cudaFree needs no size, but the accounting does: live allocations are kept in a small table
 * (a forward call holds fewer than ten). */
enum { MAX_LIVE = 256 };
static std::mutex live_mu;
static struct {
    void *ptr;
    size_t bytes;
} live[MAX_LIVE];
static std::atomic<size_t> dev_current{0}, dev_peak{0};

extern "C" size_t device_alloc_current_bytes(void) { return dev_current.load(); }
extern "C" size_t device_alloc_peak_bytes(void) { return dev_peak.load(); }
extern "C" void device_alloc_reset_peak(void) { dev_peak.store(dev_current.load()); }

void *cuda_alloc_at(size_t bytes, attn_err_t *err, const char *what, const char *file, int line) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* an allocation failure is not sticky */
        size_t f = 0, t = 0;
        cudaMemGetInfo(&f, &t);
        attn_fail(err, ATTN_ERUNTIME, "out of device memory: %s needs %zu bytes, %zu of %zu free (%s at %s:%d)", what,
                  bytes, f, t, cudaGetErrorName(e), file, line);
        return NULL;
    }
    std::lock_guard<std::mutex> lock(live_mu);
    int slot = -1;
    for (int i = 0; i < MAX_LIVE && slot < 0; i++)
        if (!live[i].ptr)
            slot = i;
    if (slot < 0) {
        cudaFree(p);
        attn_fail(err, ATTN_ERUNTIME, "internal: more than %d live device buffers (%s at %s:%d)", MAX_LIVE, what, file,
                  line);
        return NULL;
    }
    live[slot].ptr = p;
    live[slot].bytes = bytes;
    size_t now = dev_current.fetch_add(bytes) + bytes, peak = dev_peak.load();
    while (now > peak && !dev_peak.compare_exchange_weak(peak, now))
        ; /* peak reloaded by the failed exchange */
    return p;
}

void cuda_free(void *p) {
    if (!p)
        return;
    {
        std::lock_guard<std::mutex> lock(live_mu);
        int found = 0;
        for (int i = 0; i < MAX_LIVE && !found; i++)
            if (live[i].ptr == p) {
                dev_current.fetch_sub(live[i].bytes);
                live[i].ptr = NULL;
                found = 1;
            }
        ATTN_ASSERT(found); /* not from cuda_alloc, or freed twice */
    }
    cudaFree(p);
}

/* ---- uploads ---------------------------------------------------------------------------- */

__global__ void f32_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

/* __float2half_rn: ties to even, subnormals kept, overflow to ±∞ (model_round_f16 on the host). */
__global__ void f32_to_f16(__half *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}

int cuda_upload(void *dst, attn_dtype_t t, const float *src, size_t n, float *staging, cudaStream_t s,
                attn_err_t *err) {
    if (!dtype_is_16bit(t)) {
        CUDA_TRY(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, s));
        return ATTN_OK;
    }
    CUDA_TRY(cudaMemcpyAsync(staging, src, n * sizeof(float), cudaMemcpyHostToDevice, s));
    if (t == ATTN_F16)
        f32_to_f16<<<1024, 256, 0, s>>>(static_cast<__half *>(dst), staging, n);
    else
        f32_to_bf16<<<1024, 256, 0, s>>>(static_cast<__nv_bfloat16 *>(dst), staging, n);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}
