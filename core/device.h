/* device.h — what the CPU code may ask of the GPU side without knowing CUDA: device count and
 * metadata, free/total memory, and the tracked device allocation. Implemented by
 * impls/cuda/device.cu, or by core/device_none.c without CUDA. See docs/memory.md. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this build has the CUDA backends. */
int device_cuda_built(void);
/* Number of CUDA devices (0 when none, no driver, or no CUDA in this build); when 0 and why is
 * non-NULL, a sentence saying why ("no CUDA device: ..."). */
int device_count(char *why, size_t len);
/* Model, driver and CUDA runtime versions of device `ordinal` for the run metadata; fields it
 * cannot read are left empty. Does nothing without a device. */
void device_describe(int ordinal, char *model, size_t model_len, char *driver, size_t driver_len, char *cuda,
                     size_t cuda_len);
/* PCI bus id of device `ordinal` ("0000:3B:00.0"), the key NVML finds it by; 0 when unknown. */
int device_pci_bus_id(int ordinal, char *out, size_t len);
/* NCCL's version ("2.28.9") once a run has loaded libnccl; left untouched otherwise. */
void device_nccl_version(char *out, size_t len);
/* The GPU roofline of device `ordinal` (impls/cuda/gpu_peak.cu): seconds of one cuBLAS GEMM
 * n×n×n with inputs and output of `kind` and fp32 accumulation, and of one read-only pass over
 * `bytes` of device memory, each by CUDA events. −1 on failure, with why filled (without CUDA:
 * "no CUDA device ..."). Buffers stay cached until device_peak_release. */
enum { DEVICE_GEMM_BF16, DEVICE_GEMM_F16, DEVICE_GEMM_F32 };
double device_peak_gemm_seconds(int ordinal, int kind, int n, char *why, size_t len);
double device_peak_read_seconds(int ordinal, size_t bytes, char *why, size_t len);
void device_peak_release(void);

/* The forward kernel the CUDA backends run for `problem` (an attn_problem_t) on device `ordinal`
 * under --kernel `requested` (attn_kernel_t): "wgmma" or "mma"; NULL when the request cannot be
 * met (wgmma off Hopper) or without CUDA. impls/cuda/flash_sm90.cu. */
const char *device_flash_kernel(int ordinal, int requested, const void *problem);

/* Free and total bytes of device `ordinal`; 0 on failure (and both are set to 0). */
int device_mem_info(int ordinal, uint64_t *free_bytes, uint64_t *total_bytes);

/* Device memory handed out by the CUDA backends' tracked allocator: now, and the most at once
 * since the last reset (reset sets the peak to the current figure). */
size_t device_alloc_current_bytes(void);
size_t device_alloc_peak_bytes(void);
void device_alloc_reset_peak(void);

#ifdef __cplusplus
}
#endif
