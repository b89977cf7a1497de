/* rope.c — see rope.h. Every angle is evaluated in double from the row's global position (split
 * as hi + lo, joined by angle addition), so nothing accumulates along the sequence.
 * Cost and error bound (≤ 2^−50 per angle): docs/rope.md. */
#define _GNU_SOURCE /* sincos */
#include "model/rope.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

enum { ROPE_LO = 32, ROPE_MAX_HALF = 128 };

/* One call's angle source: inverse frequencies, the lo table filled as rows need it, and the
 * latest hi. About 66 KB, on the caller's stack (worker threads have 8 MB). */
typedef struct {
    int h;
    double f[ROPE_MAX_HALF];
    double lo_c[ROPE_LO][ROPE_MAX_HALF], lo_s[ROPE_LO][ROPE_MAX_HALF];
    unsigned char lo_ok[ROPE_LO];
    double hi_c[ROPE_MAX_HALF], hi_s[ROPE_MAX_HALF];
    int64_t hi; /* −1: none evaluated yet */
} rope_angles_t;

int rope_rot_dims(int head_dim, double fraction) {
    if (head_dim < 1 || !(fraction > 0) || fraction > 1)
        return -1;
    double rot = fraction * head_dim;
    long k = lround(rot);
    if (fabs(rot - (double)k) > 1e-9 * head_dim || k < 2 || k % 2 || k > head_dim)
        return -1;
    return (int)k;
}

void rope_init(rope_t *r, int head_dim, double theta, double fraction) {
    int rot = rope_rot_dims(head_dim, fraction);
    ATTN_ASSERT(rot > 0 && head_dim <= 2 * ROPE_MAX_HALF && theta > 0 && isfinite(theta));
    *r = (rope_t){.head_dim = head_dim, .rot_dims = rot, .theta = theta};
}

static void angles_init(rope_angles_t *a, const rope_t *r, int64_t rows, int64_t row_stride, int64_t pos_start,
                        int64_t pos_stride) {
    ATTN_ASSERT(r->rot_dims >= 2 && r->rot_dims % 2 == 0 && r->rot_dims <= r->head_dim &&
                r->rot_dims <= 2 * ROPE_MAX_HALF);
    ATTN_ASSERT(rows >= 0 && pos_start >= 0 && pos_stride >= 1 && (rows <= 1 || row_stride >= r->head_dim));
    /* Positions must be exact doubles: last = pos_start + pos_stride·(rows − 1) < 2^53. */
    int64_t max_pos = INT64_C(1) << 53;
    ATTN_ASSERT(pos_start < max_pos && (rows <= 1 || rows - 1 < (max_pos - pos_start) / pos_stride));
    a->h = r->rot_dims / 2;
    for (int i = 0; i < a->h; i++)
        a->f[i] = pow(r->theta, -(double)(2 * i) / r->rot_dims);
    memset(a->lo_ok, 0, sizeof a->lo_ok);
    a->hi = -1;
}

/* c[i], s[i] = cos, sin of pos·f_i for the h pairs. */
static void angles_at(rope_angles_t *a, int64_t pos, double *c, double *s) {
    int64_t lo = pos % ROPE_LO, hi = pos - lo;
    if (hi != a->hi) {
        for (int i = 0; i < a->h; i++)
            sincos((double)hi * a->f[i], &a->hi_s[i], &a->hi_c[i]);
        a->hi = hi;
    }
    if (!a->lo_ok[lo]) {
        for (int i = 0; i < a->h; i++)
            sincos((double)lo * a->f[i], &a->lo_s[lo][i], &a->lo_c[lo][i]);
        a->lo_ok[lo] = 1;
    }
    const double *hc = a->hi_c, *hs = a->hi_s, *lc = a->lo_c[lo], *ls = a->lo_s[lo];
    for (int i = 0; i < a->h; i++) {
        c[i] = hc[i] * lc[i] - hs[i] * ls[i];
        s[i] = hs[i] * lc[i] + hc[i] * ls[i];
    }
}

/* x rows (rows, row_stride): row r's pair i is (x[i], x[i + h]), rotated as a complex number
 * x[i] + j·x[i + h] times e^{jφ} — HF's x·cos + rotate_half(x)·sin. */
/* sign −1 rotates by −φ: the inverse, which for a rotation is also its transpose (the backward). */
/* One body for rows of float and of double (rotate_float, rotate_double): the arithmetic is in
 * double for both, rounded once to T on the store. */
#define ROPE_ROTATE(T)                                                                                          \
    static void rotate_##T(const rope_t *r, T *x, int64_t rows, int64_t row_stride, int64_t pos_start,         \
                           int64_t pos_stride, double sign) {                                                  \
        rope_angles_t a;                                                                                        \
        angles_init(&a, r, rows, row_stride, pos_start, pos_stride);                                            \
        double c[ROPE_MAX_HALF], s[ROPE_MAX_HALF];                                                              \
        for (int64_t row = 0; row < rows; row++) {                                                              \
            angles_at(&a, pos_start + pos_stride * row, c, s);                                                  \
            for (int i = 0; i < a.h; i++)                                                                       \
                s[i] *= sign;                                                                                   \
            T *x1 = x + row * row_stride, *x2 = x1 + a.h;                                                       \
            for (int i = 0; i < a.h; i++) {                                                                     \
                double u = x1[i], v = x2[i];                                                                    \
                x1[i] = (T)(u * c[i] - v * s[i]);                                                               \
                x2[i] = (T)(v * c[i] + u * s[i]);                                                               \
            }                                                                                                   \
        }                                                                                                       \
    }
ROPE_ROTATE(float)
ROPE_ROTATE(double)

void rope_apply(const rope_t *r, float *x, int64_t rows, int64_t row_stride, int64_t pos_start, int64_t pos_stride) {
    rotate_float(r, x, rows, row_stride, pos_start, pos_stride, 1.0);
}

void rope_apply_f64(const rope_t *r, double *x, int64_t rows, int64_t row_stride, int64_t pos_start,
                    int64_t pos_stride) {
    rotate_double(r, x, rows, row_stride, pos_start, pos_stride, 1.0);
}

void rope_unapply(const rope_t *r, float *x, int64_t rows, int64_t row_stride, int64_t pos_start, int64_t pos_stride) {
    rotate_float(r, x, rows, row_stride, pos_start, pos_stride, -1.0);
}

void rope_unapply_f64(const rope_t *r, double *x, int64_t rows, int64_t row_stride, int64_t pos_start,
                      int64_t pos_stride) {
    rotate_double(r, x, rows, row_stride, pos_start, pos_stride, -1.0);
}
