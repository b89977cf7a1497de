/* memory.c — reads /proc/meminfo and /proc/self/status (see memory.h). */
#include "memory.h"

#include <stdio.h>
#include <string.h>

static uint64_t read_kb_field(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[256];
    size_t klen = strlen(key);
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            unsigned long long v = 0;
            if (sscanf(line + klen + 1, "%llu", &v) == 1)
                kb = v;
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

uint64_t mem_available_bytes(void) { return read_kb_field("/proc/meminfo", "MemAvailable"); }
uint64_t mem_total_bytes(void) { return read_kb_field("/proc/meminfo", "MemTotal"); }
uint64_t mem_rss_bytes(void) { return read_kb_field("/proc/self/status", "VmRSS"); }
uint64_t mem_peak_rss_bytes(void) { return read_kb_field("/proc/self/status", "VmHWM"); }

int mem_reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int ok = fputs("5", f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}
