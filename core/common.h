/* common.h — the one error type, status codes and check macros shared by every module.
 * Libraries return a status and fill an attn_err_t; only main() turns that into an exit code
 * (2 for usage errors, 1 for runtime errors), so every failure reaches the user as one message. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { ATTN_OK = 0, ATTN_ERUNTIME = 1, ATTN_EUSAGE = 2 };

typedef struct {
    int code;        /* ATTN_OK, ATTN_ERUNTIME or ATTN_EUSAGE */
    char msg[1024];
} attn_err_t;

/* Records the first error only: the root cause is what the user needs to see. */
int attn_fail(attn_err_t *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Allocation that reports the size it wanted; 64-byte aligned for AVX-512 loads. Memory from
 * attn_alloc goes back through attn_free only (never free()); attn_free(NULL) does nothing. */
void *attn_alloc(size_t bytes, attn_err_t *err, const char *what);
void attn_free(void *p);
/* attn_free keeps blocks of 16 MiB and more for reuse (first-touching memory is slow on VMs;
 * see docs/memory.md); this returns them to the system. Call it before measuring memory. */
void attn_alloc_trim(void);
size_t attn_alloc_kept_bytes(void); /* what attn_alloc_trim would give back */

/* Accounting of what attn_alloc handed out (the bytes asked for, every thread together): now,
 * and the most at once since the last reset. The reset sets the peak to the current figure;
 * call it while no other thread allocates. The memory task measures a case as peak − current
 * at its start; per-thread (per-rank) figures are not kept. */
size_t attn_alloc_current_bytes(void);
size_t attn_alloc_peak_bytes(void);
void attn_alloc_reset_peak(void);

/* The end of an atomic write, kept for impls/cuda/gcomm_nccl.cu's rendezvous file (outputs a
 * user names go through core/outfile.h: devices, FIFOs, symlinks, all or none): closes f
 * (written to `tmp` beside `path`), and only when every write succeeded (ok) and the close did
 * too, renames tmp to path; otherwise removes tmp and fails naming path and the reason. */
#include <stdio.h>
int attn_file_commit(FILE *f, int ok, const char *tmp, const char *path, attn_err_t *err);

#define ATTN_TRY(expr)                 \
    do {                               \
        int attn_rc_ = (expr);         \
        if (attn_rc_ != ATTN_OK)       \
            return attn_rc_;           \
    } while (0)

/* Internal invariant broken (a bug, not bad input): report where and abort. */
#define ATTN_ASSERT(cond)                                                                    \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "attnbench: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

/* Overflow-checked size arithmetic, the one way sizes are computed (element counts, byte
 * counts, workspaces, file shapes): a product or sum that does not fit saturates at
 * ATTN_SIZE_OVERFLOW, and every later attn_size_mul/attn_size_add keeps it there, so a chain
 * needs one attn_size_check at its end. attn_alloc refuses ATTN_SIZE_OVERFLOW the same way. A
 * negative int64 (a bug or an unchecked shape) counts as overflowed too. */
#define ATTN_SIZE_OVERFLOW SIZE_MAX
static inline size_t attn_size_mul(size_t a, size_t b) {
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? ATTN_SIZE_OVERFLOW : r;
}
static inline size_t attn_size_add(size_t a, size_t b) {
    size_t r;
    return __builtin_add_overflow(a, b, &r) ? ATTN_SIZE_OVERFLOW : r;
}
static inline size_t attn_size_i64(int64_t v) { return v < 0 ? ATTN_SIZE_OVERFLOW : (size_t)v; }
/* a·b·c·d of non-negative int64 shape dimensions, checked. */
static inline size_t attn_size_prod4(int64_t a, int64_t b, int64_t c, int64_t d) {
    return attn_size_mul(attn_size_mul(attn_size_i64(a), attn_size_i64(b)), attn_size_mul(attn_size_i64(c), attn_size_i64(d)));
}
/* ATTN_EUSAGE "<what> is too large: its size overflows 64 bits" when n overflowed (or does not
 * fit in int64, which the kernels index with); ATTN_OK otherwise. */
int attn_size_check(size_t n, attn_err_t *err, const char *what);

#define ATTN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ATTN_MAX(a, b) ((a) > (b) ? (a) : (b))
