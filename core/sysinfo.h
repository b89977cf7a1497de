/* sysinfo.h — machine and build metadata for the "run" block of every results file
 * (host, OS, CPU, memory, BLAS, compiler, build type, git SHA). Best effort: a field that
 * cannot be read is left empty (0 for numbers) and results.c writes it as JSON null. */
#pragma once
#include <stdint.h>

typedef struct {
    char host[128], os[128], cpu_model[128];
    int cores;             /* online logical CPUs */
    uint64_t memory_bytes; /* MemTotal */
    char blas[160], compiler[96], build_type[24], git_sha[48];
} attn_sysinfo_t;

void sysinfo_collect(attn_sysinfo_t *s);
