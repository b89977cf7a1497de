/* gpu_state.c — see gpu_state.h. NVML's few entry points are declared here (its header is not
 * part of the CUDA toolkit install this builds with) with the values of nvml.h, which NVIDIA
 * keeps stable across releases; every call's failure leaves its field unknown. */
#include "core/gpu_state.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef int nvml_ret_t;  /* nvmlReturn_t: 0 = NVML_SUCCESS */
typedef void *nvml_dev_t; /* nvmlDevice_t */
enum { NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2 };

typedef struct {
    nvml_ret_t (*init)(void);
    nvml_ret_t (*shutdown)(void);
    const char *(*error_string)(nvml_ret_t);
    nvml_ret_t (*by_index)(unsigned, nvml_dev_t *);
    nvml_ret_t (*by_pci)(const char *, nvml_dev_t *);
    nvml_ret_t (*clock)(nvml_dev_t, int, unsigned *);
    nvml_ret_t (*max_clock)(nvml_dev_t, int, unsigned *);
    nvml_ret_t (*power_limit)(nvml_dev_t, unsigned *); /* milliwatts */
    nvml_ret_t (*ecc)(nvml_dev_t, int *, int *);      /* current, pending */
    nvml_ret_t (*persistence)(nvml_dev_t, int *);
} nvml_api_t;

void gpu_state_unknown(attn_gpu_state_t *s, const char *why) {
    *s = (attn_gpu_state_t){.sm_clock_mhz = NAN, .mem_clock_mhz = NAN, .sm_clock_max_mhz = NAN,
                            .mem_clock_max_mhz = NAN, .power_limit_w = NAN, .ecc = -1, .persistence = -1};
    snprintf(s->reason, sizeof s->reason, "%s", why ? why : "");
}

static const char *err_name(const nvml_api_t *a, nvml_ret_t r) {
    const char *s = a->error_string ? a->error_string(r) : NULL;
    return s ? s : "error";
}

/* Appends "what: NVML's message" to the reason, so one field's absence is said without hiding
 * the others. */
static void note(attn_gpu_state_t *s, const nvml_api_t *a, const char *what, nvml_ret_t r) {
    size_t n = strlen(s->reason);
    snprintf(s->reason + n, sizeof s->reason - n, "%s%s: %s", n ? "; " : "", what, err_name(a, r));
}

static double read_clock(attn_gpu_state_t *s, const nvml_api_t *a, nvml_ret_t (*fn)(nvml_dev_t, int, unsigned *),
                         nvml_dev_t d, int which, const char *what) {
    unsigned v = 0;
    nvml_ret_t r = fn(d, which, &v);
    if (r) {
        note(s, a, what, r);
        return NAN;
    }
    return v;
}

void gpu_state_read(const char *lib, const char *pci_bus_id, int index, attn_gpu_state_t *s) {
    gpu_state_unknown(s, NULL);
    const char *name = lib ? lib : "libnvidia-ml.so.1";
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(s->reason, sizeof s->reason, "NVML not loaded (%s): %s", name, e ? e : "dlopen failed");
        return;
    }
    nvml_api_t a = {0};
    *(void **)&a.init = dlsym(h, "nvmlInit_v2");
    *(void **)&a.shutdown = dlsym(h, "nvmlShutdown");
    *(void **)&a.error_string = dlsym(h, "nvmlErrorString");
    *(void **)&a.by_index = dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
    *(void **)&a.by_pci = dlsym(h, "nvmlDeviceGetHandleByPciBusId_v2");
    *(void **)&a.clock = dlsym(h, "nvmlDeviceGetClockInfo");
    *(void **)&a.max_clock = dlsym(h, "nvmlDeviceGetMaxClockInfo");
    *(void **)&a.power_limit = dlsym(h, "nvmlDeviceGetEnforcedPowerLimit");
    *(void **)&a.ecc = dlsym(h, "nvmlDeviceGetEccMode");
    *(void **)&a.persistence = dlsym(h, "nvmlDeviceGetPersistenceMode");
    if (!a.init || !a.shutdown || !a.by_index || !a.by_pci || !a.clock || !a.max_clock || !a.power_limit || !a.ecc ||
        !a.persistence) {
        snprintf(s->reason, sizeof s->reason, "NVML (%s) lacks an entry point this build reads", name);
        dlclose(h);
        return;
    }
    nvml_ret_t r = a.init();
    if (r) {
        snprintf(s->reason, sizeof s->reason, "nvmlInit: %s", err_name(&a, r));
        dlclose(h);
        return;
    }
    nvml_dev_t d = NULL;
    r = pci_bus_id && pci_bus_id[0] ? a.by_pci(pci_bus_id, &d) : a.by_index((unsigned)index, &d);
    if (r) {
        snprintf(s->reason, sizeof s->reason, "NVML has no device %s: %s",
                 pci_bus_id && pci_bus_id[0] ? pci_bus_id : "at that index", err_name(&a, r));
    } else {
        s->available = 1;
        s->sm_clock_mhz = read_clock(s, &a, a.clock, d, NVML_CLOCK_SM, "SM clock");
        s->mem_clock_mhz = read_clock(s, &a, a.clock, d, NVML_CLOCK_MEM, "memory clock");
        s->sm_clock_max_mhz = read_clock(s, &a, a.max_clock, d, NVML_CLOCK_SM, "max SM clock");
        s->mem_clock_max_mhz = read_clock(s, &a, a.max_clock, d, NVML_CLOCK_MEM, "max memory clock");
        unsigned mw = 0;
        if ((r = a.power_limit(d, &mw)))
            note(s, &a, "power limit", r);
        else
            s->power_limit_w = mw / 1000.0;
        int cur = 0, pending = 0;
        if ((r = a.ecc(d, &cur, &pending)))
            note(s, &a, "ECC mode", r); /* NOT_SUPPORTED on boards without ECC */
        else
            s->ecc = cur != 0;
        int pm = 0;
        if ((r = a.persistence(d, &pm)))
            note(s, &a, "persistence mode", r);
        else
            s->persistence = pm != 0;
    }
    a.shutdown();
    dlclose(h);
}
