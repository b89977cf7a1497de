/* test_gpu_state.c — the run metadata's NVML reading (core/gpu_state.c) without a GPU: with no
 * NVML library every field is unknown and the reason says so (never a crash), and through a
 * stand-in library (fake_nvml.c) the clocks, power limit, ECC and persistence are read for the
 * device CUDA names by PCI bus id, a field NVML does not support stays unknown with its reason. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gpu_state.h"
#include "tests/check.h"

static int all_unknown(const attn_gpu_state_t *s) {
    return !s->available && isnan(s->sm_clock_mhz) && isnan(s->mem_clock_mhz) && isnan(s->sm_clock_max_mhz) &&
           isnan(s->mem_clock_max_mhz) && isnan(s->power_limit_w) && s->ecc == -1 && s->persistence == -1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_gpu_state PATH/libfake_nvml.so\n");
        return 2;
    }
    attn_gpu_state_t s;
    gpu_state_read("libattnbench-no-such-nvml.so.1", "0000:3B:00.0", 0, &s);
    check(all_unknown(&s) && strstr(s.reason, "NVML not loaded"), "no NVML: all unknown, with a reason",
          "reason '%s'", s.reason);

    gpu_state_read(argv[1], "0000:3B:00.0", 0, &s);
    check(s.available && s.sm_clock_mhz == 1755 && s.mem_clock_mhz == 2619 && s.sm_clock_max_mhz == 1980 &&
              s.mem_clock_max_mhz == 3201 && s.power_limit_w == 700 && s.ecc == 1 && s.persistence == 0 &&
              s.reason[0] == '\0',
          "fake NVML by PCI bus id: every field read",
          "available %d sm %g/%g mem %g/%g power %g W ecc %d persistence %d reason '%s'", s.available,
          s.sm_clock_mhz, s.sm_clock_max_mhz, s.mem_clock_mhz, s.mem_clock_max_mhz, s.power_limit_w, s.ecc,
          s.persistence, s.reason);

    gpu_state_read(argv[1], "0000:99:00.0", 0, &s);
    check(all_unknown(&s) && strstr(s.reason, "0000:99:00.0") && strstr(s.reason, "Not Found"),
          "fake NVML, a bus id it does not have: all unknown, the id named", "reason '%s'", s.reason);

    gpu_state_read(argv[1], NULL, 0, &s);
    check(s.available && s.power_limit_w == 700, "fake NVML by index when no bus id is known", "reason '%s'",
          s.reason);

    setenv("FAKE_NVML_NO_ECC", "1", 1);
    gpu_state_read(argv[1], "0000:3B:00.0", 0, &s);
    check(s.available && s.ecc == -1 && s.persistence == 0 && s.sm_clock_mhz == 1755 &&
              strstr(s.reason, "ECC mode: Not Supported"),
          "ECC not supported: that field unknown with its reason, the rest read", "ecc %d reason '%s'", s.ecc,
          s.reason);
    return check_summary();
}
