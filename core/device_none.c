/* device_none.c — device.h for builds without CUDA: no devices, nothing allocated, and the
 * device accounting stays at zero. */
#include "core/device.h"

#include <stdio.h>
#include <string.h>

int device_cuda_built(void) { return 0; }

int device_count(char *why, size_t len) {
    if (why && len)
        snprintf(why, len, "no CUDA device: this build has no CUDA backends (nvcc was not found at configure time "
                           "or ATTN_WITH_CUDA=OFF)");
    return 0;
}

void device_describe(int ordinal, char *model, size_t model_len, char *driver, size_t driver_len, char *cuda,
                     size_t cuda_len) {
    (void)ordinal, (void)model, (void)model_len, (void)driver, (void)driver_len, (void)cuda, (void)cuda_len;
}

int device_pci_bus_id(int ordinal, char *out, size_t len) {
    (void)ordinal, (void)out, (void)len;
    return 0;
}

void device_nccl_version(char *out, size_t len) { (void)out, (void)len; }

double device_peak_gemm_seconds(int ordinal, int kind, int n, char *why, size_t len) {
    (void)ordinal, (void)kind, (void)n;
    device_count(why, len);
    return -1;
}

double device_peak_read_seconds(int ordinal, size_t bytes, char *why, size_t len) {
    (void)ordinal, (void)bytes;
    device_count(why, len);
    return -1;
}

void device_peak_release(void) {}

int device_mem_info(int ordinal, uint64_t *free_bytes, uint64_t *total_bytes) {
    (void)ordinal;
    *free_bytes = *total_bytes = 0;
    return 0;
}

size_t device_alloc_current_bytes(void) { return 0; }
size_t device_alloc_peak_bytes(void) { return 0; }
void device_alloc_reset_peak(void) {}

const char *device_flash_kernel(int ordinal, int requested, const void *problem) {
    (void)ordinal, (void)requested, (void)problem;
    return NULL;
}
