/* common.c — error reporting and aligned allocation (see common.h). */
#include "common.h"

#include <stdarg.h>
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

void *attn_alloc(size_t bytes, attn_err_t *err, const char *what) {
    void *p = NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0)
        rounded = 64;
    if (posix_memalign(&p, 64, rounded) != 0) {
        attn_fail(err, ATTN_ERUNTIME, "out of memory: %s needs %zu bytes", what, bytes);
        return NULL;
    }
    return p;
}

void attn_free(void *p) { free(p); }
