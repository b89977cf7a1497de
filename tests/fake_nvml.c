/* fake_nvml.c — a stand-in libnvidia-ml for test_gpu_state: the entry points gpu_state.c loads,
 * answering for one device (PCI bus id 0000:3B:00.0, index 0) with fixed figures, so the NVML
 * path of the run metadata is tested on machines without a GPU. FAKE_NVML_NO_ECC=1 makes the
 * ECC query answer NOT_SUPPORTED, as it does on boards without ECC. */
#include <stdlib.h>
#include <string.h>

enum { OK = 0, NOT_SUPPORTED = 3, NOT_FOUND = 6 };
static int device; /* the one device's handle points here */

int nvmlInit_v2(void) { return OK; }
int nvmlShutdown(void) { return OK; }
const char *nvmlErrorString(int r) { return r == NOT_SUPPORTED ? "Not Supported" : r == NOT_FOUND ? "Not Found" : "?"; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **d) {
    *d = &device;
    return i == 0 ? OK : NOT_FOUND;
}
int nvmlDeviceGetHandleByPciBusId_v2(const char *id, void **d) {
    *d = &device;
    return strcmp(id, "0000:3B:00.0") == 0 ? OK : NOT_FOUND;
}
int nvmlDeviceGetClockInfo(void *d, int which, unsigned *mhz) {
    (void)d;
    *mhz = which == 1 ? 1755 : 2619; /* SM, memory */
    return OK;
}
int nvmlDeviceGetMaxClockInfo(void *d, int which, unsigned *mhz) {
    (void)d;
    *mhz = which == 1 ? 1980 : 3201;
    return OK;
}
int nvmlDeviceGetEnforcedPowerLimit(void *d, unsigned *mw) {
    (void)d;
    *mw = 700000;
    return OK;
}
int nvmlDeviceGetEccMode(void *d, int *cur, int *pending) {
    (void)d;
    *cur = *pending = 1;
    const char *e = getenv("FAKE_NVML_NO_ECC");
    return e && e[0] == '1' ? NOT_SUPPORTED : OK;
}
int nvmlDeviceGetPersistenceMode(void *d, int *on) {
    (void)d;
    *on = 0;
    return OK;
}
