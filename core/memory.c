/* memory.c — reads /proc/meminfo and /proc/self/status, and touches memory page by page to
 * confirm it (see memory.h). */
#include "core/memory.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/threads.h"

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

/* Blocks attn_free kept for reuse count as available: attn_alloc gives them back before it
 * asks the system for a block that free memory could not otherwise hold (common.c). */
uint64_t mem_available_bytes(void) {
    uint64_t avail = read_kb_field("/proc/meminfo", "MemAvailable");
    return avail ? avail + attn_alloc_kept_bytes() : 0;
}
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

/* Pages are touched a chunk per item on the run's threads (page faults scale across cores);
 * each chunk first checks that MemAvailable still leaves the reserve with every worker's chunk
 * in flight, and once one finds it does not, the rest stop. */
typedef struct {
    volatile unsigned char *buf;
    uint64_t bytes, reserve, in_flight;
    size_t page, chunk;
    atomic_int stop;
    atomic_uint_fast64_t short_at, short_avail; /* where the first refusal came, what it saw */
} confirm_job_t;

static void confirm_chunk(void *ctx, int64_t item, int worker) {
    (void)worker;
    confirm_job_t *j = ctx;
    if (atomic_load(&j->stop))
        return;
    uint64_t start = (uint64_t)item * j->chunk, end = start + j->chunk < j->bytes ? start + j->chunk : j->bytes;
    uint64_t avail = mem_available_bytes();
    if (avail && avail < j->reserve + j->in_flight) {
        if (!atomic_exchange(&j->stop, 1)) {
            atomic_store(&j->short_at, start);
            atomic_store(&j->short_avail, avail);
        }
        return;
    }
    for (uint64_t i = start; i < end; i += j->page)
        j->buf[i] = 1;
    j->buf[end - 1] = 1;
}

int mem_confirm(uint64_t bytes, uint64_t reserve, int threads, attn_err_t *err) {
    if (bytes > SIZE_MAX)
        return attn_fail(err, ATTN_ERUNTIME, "%" PRIu64 " bytes cannot be addressed here", bytes);
    attn_alloc_trim(); /* a reused block is already backed: it would prove nothing */
    confirm_job_t j = {.bytes = bytes, .reserve = reserve, .chunk = (size_t)64 << 20};
    j.buf = attn_alloc((size_t)bytes, err, "capacity confirmation");
    if (!j.buf)
        return ATTN_ERUNTIME;
    long ps = sysconf(_SC_PAGESIZE);
    j.page = ps > 0 ? (size_t)ps : 4096;
    threads = threads > 0 ? threads : 1;
    j.in_flight = (uint64_t)threads * j.chunk;
    atomic_init(&j.stop, 0);
    atomic_init(&j.short_at, 0);
    atomic_init(&j.short_avail, 0);
    parallel_for(threads, (int64_t)((bytes + j.chunk - 1) / j.chunk), confirm_chunk, &j);
    attn_free((void *)j.buf);
    if (atomic_load(&j.stop))
        return attn_fail(err, ATTN_ERUNTIME,
                         "at byte %" PRIu64 " of %" PRIu64 " only %" PRIu64 " bytes were available, under the %" PRIu64
                         "-byte reserve plus the chunks in flight: the memory is not there",
                         (uint64_t)atomic_load(&j.short_at), bytes, (uint64_t)atomic_load(&j.short_avail), reserve);
    return ATTN_OK;
}
