/* sysinfo.c — gathers attn_sysinfo_t from uname, /proc/cpuinfo, sysconf, OpenBLAS and
 * compile-time macros (ATTN_GIT_SHA from the generated git_sha.h, ATTN_BUILD_TYPE from CMake). */
#include "core/sysinfo.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "git_sha.h"
#include "core/memory.h"

#ifndef ATTN_BUILD_TYPE
#define ATTN_BUILD_TYPE ""
#endif

#if defined(__clang__) /* clang also defines __GNUC__, so it must be tested first */
#define ATTN_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define ATTN_COMPILER "gcc " __VERSION__
#else
#define ATTN_COMPILER "unknown"
#endif

/* "model name : Intel(R) Xeon(R) ..." — the first processor's line; other arches leave it empty. */
static void read_cpu_model(char *out, size_t size) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon)
            continue;
        char *v = colon + 1 + strspn(colon + 1, " \t");
        v[strcspn(v, "\n")] = '\0';
        snprintf(out, size, "%s", v);
        break;
    }
    fclose(f);
}

void sysinfo_collect(attn_sysinfo_t *s) {
    memset(s, 0, sizeof *s);
    if (gethostname(s->host, sizeof s->host - 1) != 0)
        s->host[0] = '\0';
    struct utsname u;
    if (uname(&u) == 0) /* precisions keep "sysname release" inside os[128] */
        snprintf(s->os, sizeof s->os, "%.63s %.63s", u.sysname, u.release);
    read_cpu_model(s->cpu_model, sizeof s->cpu_model);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    s->cores = n > 0 ? (int)n : 0;
    s->memory_bytes = mem_total_bytes();
    /* The config string says how OpenBLAS was built (threading, max threads); the core name
     * says which kernels it picked at run time, which decides its speed on this CPU.
     * DYNAMIC_ARCH builds already end their config with the core name: don't repeat it. */
    const char *config = openblas_get_config(), *core = openblas_get_corename();
    if (strstr(config, core))
        snprintf(s->blas, sizeof s->blas, "%s", config);
    else
        snprintf(s->blas, sizeof s->blas, "%s %s", config, core);
    snprintf(s->compiler, sizeof s->compiler, "%s", ATTN_COMPILER);
    snprintf(s->build_type, sizeof s->build_type, "%s", ATTN_BUILD_TYPE);
    snprintf(s->git_sha, sizeof s->git_sha, "%s", ATTN_GIT_SHA);
}
