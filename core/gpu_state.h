/* gpu_state.h — what makes GPU figures comparable across machines, for the run metadata: SM and
 * memory clocks (now and the maximum), the power limit, ECC and persistence mode, read through
 * NVML, which is loaded at run time (dlopen, as NCCL is), so the binary runs without it. No NVML,
 * no device, or a field NVML does not report: that field is unknown and `reason` says why. */
#pragma once

typedef struct {
    int available;              /* 1: NVML answered for this device (some fields may still be unknown) */
    double sm_clock_mhz, mem_clock_mhz;         /* current; NaN = unknown */
    double sm_clock_max_mhz, mem_clock_max_mhz; /* NaN = unknown */
    double power_limit_w;                       /* enforced power management limit; NaN = unknown */
    int ecc, persistence;                       /* 1 on, 0 off, −1 unknown */
    char reason[200];                           /* why NVML or a field is missing; "" when all were read */
} attn_gpu_state_t;

/* All fields unknown, with `why` as the reason. */
void gpu_state_unknown(attn_gpu_state_t *s, const char *why);

/* Reads the device with PCI bus id `pci_bus_id` ("0000:3B:00.0", as CUDA reports it), or NVML
 * index `index` when pci_bus_id is NULL or empty, through the NVML library `lib` (NULL: the
 * system's libnvidia-ml.so.1). Never fails: what it cannot read is unknown, with a reason. */
void gpu_state_read(const char *lib, const char *pci_bus_id, int index, attn_gpu_state_t *s);
