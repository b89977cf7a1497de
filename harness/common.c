/* common.c — error reporting and aligned, accounted allocation (see common.h). Each block
 * carries a 64-byte header holding its size, so attn_free can subtract it and the pointer the
 * caller gets stays 64-byte aligned. */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

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
    size_t bytes;
    uint64_t magic;
} alloc_header_t;
_Static_assert(sizeof(alloc_header_t) <= ALLOC_HEADER, "the header must fit in front of the block");

static atomic_size_t alloc_current, alloc_peak;

void *attn_alloc(size_t bytes, attn_err_t *err, const char *what) {
    if (bytes > SIZE_MAX - 2 * ALLOC_HEADER) {
        attn_fail(err, ATTN_ERUNTIME, "out of memory: %s needs %zu bytes", what, bytes);
        return NULL;
    }
    void *raw = NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (posix_memalign(&raw, 64, ALLOC_HEADER + rounded) != 0) {
        attn_fail(err, ATTN_ERUNTIME, "out of memory: %s needs %zu bytes", what, bytes);
        return NULL;
    }
    *(alloc_header_t *)raw = (alloc_header_t){.bytes = bytes, .magic = ALLOC_MAGIC};
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
