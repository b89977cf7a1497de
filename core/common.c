/* common.c — error reporting and aligned, accounted allocation (see common.h). Each block
 * carries a 64-byte header holding its size, so attn_free can subtract it and the pointer the
 * caller gets stays 64-byte aligned. */
#include "core/common.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/sysinfo.h>
#include <unistd.h>

int attn_fail(attn_err_t *err, int code, const char *fmt, ...) {
    if (err && err->code == ATTN_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

/* One cache line in front of every block: the size asked for, and a tag that catches an
 * attn_free of a pointer attn_alloc did not return (or one freed twice). */
enum { ALLOC_HEADER = 64 };
#define ALLOC_MAGIC UINT64_C(0x6174746e616c6c63) /* "attnallc" */
#define ALLOC_FREED UINT64_C(0x6174746e66726565) /* "attnfree" */

typedef struct {
    size_t bytes, cap; /* asked for; usable (the block may be a larger kept one) */
    uint64_t magic;
} alloc_header_t;
_Static_assert(sizeof(alloc_header_t) <= ALLOC_HEADER, "the header must fit in front of the block");

static atomic_size_t alloc_current, alloc_peak;

/* Large blocks are kept after attn_free and handed out again: first-touching fresh memory can
 * cost seconds per GiB on a VM, and a caching allocator (as in PyTorch) makes that a one-off
 * (the measurements: docs/memory.md). Only blocks of KEEP_MIN bytes or more are kept, at most
 * min(16 GiB, RAM/2) in all, the least recently freed going first when that is full. A new
 * large block that free RAM (less 1 GiB) would not hold makes attn_alloc give kept blocks back,
 * oldest first, until it would: kept blocks never push a run out of memory. attn_alloc_trim()
 * gives all back, as the memory and capacity tasks do before they measure. ATTN_KEEP=0 turns
 * the cache off. */
enum { KEEP_MIN = 16 << 20, KEEP_SLOTS = 64 };
static pthread_mutex_t keep_lock = PTHREAD_MUTEX_INITIALIZER;
static void *keep_raw[KEEP_SLOTS];
static uint64_t keep_stamp[KEEP_SLOTS], keep_clock;
static size_t keep_bytes;
static int keep_on = -1; /* −1: not read yet */
static size_t keep_limit;

static void keep_init(void) { /* under keep_lock */
    if (keep_on >= 0)
        return;
    const char *e = getenv("ATTN_KEEP");
    keep_on = !(e && !strcmp(e, "0"));
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t half = pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 2 : (size_t)1 << 30;
    keep_limit = half < ((size_t)16 << 30) ? half : (size_t)16 << 30;
}

static size_t cap_of(const void *raw) { return ((const alloc_header_t *)raw)->cap; }

/* Frees the least recently kept block; 0 when none is kept. Under keep_lock. */
static int keep_evict_oldest(void) {
    int at = -1;
    for (int i = 0; i < KEEP_SLOTS; i++)
        if (keep_raw[i] && (at < 0 || keep_stamp[i] < keep_stamp[at]))
            at = i;
    if (at < 0)
        return 0;
    keep_bytes -= cap_of(keep_raw[at]);
    free(keep_raw[at]);
    keep_raw[at] = NULL;
    return 1;
}

/* The smallest kept block that holds `cap` bytes without wasting more than a quarter. */
static void *keep_take(size_t cap) {
    int at = -1;
    pthread_mutex_lock(&keep_lock);
    keep_init();
    for (int i = 0; keep_on && i < KEEP_SLOTS; i++) {
        size_t c = keep_raw[i] ? cap_of(keep_raw[i]) : 0;
        if (c >= cap && c - cap <= cap / 4 && (at < 0 || c < cap_of(keep_raw[at])))
            at = i;
    }
    void *got = at >= 0 ? keep_raw[at] : NULL;
    if (got) {
        keep_raw[at] = NULL;
        keep_bytes -= cap_of(got);
    }
    pthread_mutex_unlock(&keep_lock);
    return got;
}

static int keep_put(void *raw) {
    size_t cap = cap_of(raw);
    int at = -1;
    pthread_mutex_lock(&keep_lock);
    keep_init();
    if (keep_on && cap <= keep_limit) {
        for (;;) {
            at = -1;
            for (int i = 0; i < KEEP_SLOTS && at < 0; i++)
                if (!keep_raw[i])
                    at = i;
            if (at >= 0 && keep_bytes + cap <= keep_limit)
                break;
            keep_evict_oldest(); /* always evicts: a full table or a full budget holds something */
        }
        keep_raw[at] = raw;
        keep_stamp[at] = ++keep_clock;
        keep_bytes += cap;
    }
    pthread_mutex_unlock(&keep_lock);
    return at >= 0;
}

size_t attn_alloc_kept_bytes(void) {
    pthread_mutex_lock(&keep_lock);
    size_t kept = keep_bytes;
    pthread_mutex_unlock(&keep_lock);
    return kept;
}

/* Free RAM without the page cache: a lower bound of what the kernel can hand out. */
static int fits_free_ram(size_t bytes) {
    struct sysinfo si;
    if (sysinfo(&si) != 0)
        return 1; /* unknown: nothing to act on */
    unsigned long long free_b = (unsigned long long)si.freeram * si.mem_unit;
    return (unsigned long long)bytes + (1ull << 30) <= free_b;
}

/* Gives kept blocks back, oldest first, until `bytes` more would fit in free RAM. */
static void keep_make_room(size_t bytes) {
    pthread_mutex_lock(&keep_lock);
    while (keep_bytes && !fits_free_ram(bytes))
        keep_evict_oldest();
    pthread_mutex_unlock(&keep_lock);
}

void attn_alloc_trim(void) {
    pthread_mutex_lock(&keep_lock);
    while (keep_evict_oldest())
        ;
    pthread_mutex_unlock(&keep_lock);
}

int attn_size_check(size_t n, attn_err_t *err, const char *what) {
    if (n == ATTN_SIZE_OVERFLOW || n > (size_t)INT64_MAX)
        return attn_fail(err, ATTN_EUSAGE, "%s is too large: its size overflows 64 bits", what);
    return ATTN_OK;
}

void *attn_alloc(size_t bytes, attn_err_t *err, const char *what) {
    if (bytes == ATTN_SIZE_OVERFLOW) { /* a checked size that overflowed on its way here */
        attn_fail(err, ATTN_ERUNTIME, "%s is too large: its size overflows 64 bits", what);
        return NULL;
    }
    if (bytes > SIZE_MAX - 2 * ALLOC_HEADER) {
        attn_fail(err, ATTN_ERUNTIME, "out of memory: %s needs %zu bytes", what, bytes);
        return NULL;
    }
    /* More than the machine's memory can only fail, and late (overcommit, or a sanitizer that
     * aborts on a huge request): say so now. Read only for large blocks; /proc is not free. */
    struct sysinfo si;
    uint64_t total = bytes >= (1u << 30) && sysinfo(&si) == 0 ? (uint64_t)si.totalram * si.mem_unit : 0;
    if (total && bytes > total) {
        attn_fail(err, ATTN_ERUNTIME, "out of memory: %s needs %zu bytes, more than this machine's %llu", what, bytes,
                  (unsigned long long)total);
        return NULL;
    }
    size_t rounded = (bytes + 63) / 64 * 64;
    void *raw = rounded >= KEEP_MIN ? keep_take(rounded) : NULL;
    if (!raw && rounded >= KEEP_MIN)
        keep_make_room(rounded);
    if (!raw) {
        if (posix_memalign(&raw, 64, ALLOC_HEADER + rounded) != 0) {
            attn_alloc_trim(); /* the kept blocks may be what is in the way */
            if (posix_memalign(&raw, 64, ALLOC_HEADER + rounded) != 0) {
                attn_fail(err, ATTN_ERUNTIME, "out of memory: %s needs %zu bytes", what, bytes);
                return NULL;
            }
        }
        ((alloc_header_t *)raw)->cap = rounded;
    }
    alloc_header_t *h = raw;
    h->bytes = bytes;
    h->magic = ALLOC_MAGIC;
    size_t now = atomic_fetch_add(&alloc_current, bytes) + bytes;
    size_t peak = atomic_load(&alloc_peak);
    while (now > peak && !atomic_compare_exchange_weak(&alloc_peak, &peak, now))
        ; /* peak reloaded by the failed exchange */
    return (char *)raw + ALLOC_HEADER;
}

void attn_free(void *p) {
    if (!p)
        return;
    alloc_header_t *h = (alloc_header_t *)((char *)p - ALLOC_HEADER);
    ATTN_ASSERT(h->magic == ALLOC_MAGIC); /* not from attn_alloc, or freed twice */
    h->magic = ALLOC_FREED;
    atomic_fetch_sub(&alloc_current, h->bytes);
    if (h->cap < KEEP_MIN || !keep_put(h))
        free(h);
}

size_t attn_alloc_current_bytes(void) { return atomic_load(&alloc_current); }
size_t attn_alloc_peak_bytes(void) { return atomic_load(&alloc_peak); }
void attn_alloc_reset_peak(void) { atomic_store(&alloc_peak, atomic_load(&alloc_current)); }

int attn_file_commit(FILE *f, int ok, const char *tmp, const char *path, attn_err_t *err) {
    int saved = errno;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        saved = errno ? errno : saved;
        remove(tmp);
        return attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: %s", path, strerror(saved));
    }
    return ATTN_OK;
}
