/* test_rope.c — RoPE against a long-double reference written here (HF rotate_half pairing) at
 * positions up to 10^7: per-element accuracy, relative-position shifts, bitwise agreement of
 * striped / offset / single-row calls, partial rotary. Tolerances derive from the bound in
 * docs/rope.md, not tuned. Prints the time of 65536 rows × d = 128. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "model/rope.h"

static int passed, failed;

static void report(int ok, const char *name, const char *detail) {
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name, detail[0] ? ": " : "", detail);
    passed += ok;
    failed += !ok;
}

/* Seeded values on [−√3, √3), as the benchmark's inputs. */
static void fill(float *x, int64_t n, uint32_t tensor) {
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_value(77, tensor, (uint64_t)i);
}

/* The definition, in long double: pair (i, i + rot/2) rotated by pos·θ^(−2i/rot). */
static void ref_rope(const float *x, long double *out, int head_dim, int rot, double theta, int64_t pos) {
    int h = rot / 2;
    for (int j = 0; j < head_dim; j++)
        out[j] = x[j];
    for (int i = 0; i < h; i++) {
        long double f = powl((long double)theta, -(long double)(2 * i) / rot), phi = (long double)pos * f;
        long double c = cosl(phi), s = sinl(phi);
        out[i] = (long double)x[i] * c - (long double)x[i + h] * s;
        out[i + h] = (long double)x[i + h] * c + (long double)x[i] * s;
    }
}

/* Per-element bound, relative to the pair's magnitude ‖(x_i, x_{i+h})‖, of rope.c at position
 * pos (max angle φ = pos for θ ≥ 1, f_0 = 1): angle error 2^−51·(φ + pos), cos/sin error 2^−50
 * each (2^−48 covers both terms and both factors), and one rounding to float, 2^−24 of |out| ≤
 * the pair's magnitude. The long-double reference's own error (~1e−19·φ) is below all of them. */
static double elem_bound_f32(int64_t pos) {
    return ldexp(1, -24) + ldexp(2.0 * (double)pos, -51) + ldexp(1, -48);
}

/* Worst error of one rotated row against the reference, in units of bound·(the pair's
 * magnitude); dims past rot_dims must be bitwise untouched (any change is infinitely bad). */
static double row_error(const float *x0, const long double *ref, const float *got32, const double *got64,
                        int head_dim, int rot, double bound) {
    double worst = 0;
    int h = rot / 2;
    for (int j = 0; j < head_dim; j++) {
        int i = j < h ? j : j - h;
        long double g = got32 ? (long double)got32[j] : (long double)got64[j];
        double e = (double)fabsl(g - ref[j]);
        double tol = j < rot ? bound * hypot(x0[i], x0[i + h]) : 0;
        worst = fmax(worst, tol > 0 ? e / tol : (e > 0 ? INFINITY : 0));
    }
    return worst;
}

static void test_accuracy(void) {
    const struct {
        int head_dim;
        double theta, fraction;
    } shapes[] = {{128, 10000, 1}, {128, 500000, 1}, {64, 10000, 0.5}, {80, 10000, 0.4}};
    const int64_t starts[] = {0, 1, 4097, 1000000 - 40, 1000000, 10000000 - 33, 10000000, 100000000};
    enum { ROWS = 80 }; /* crosses several 32-position blocks of rope.c's split */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int d = shapes[s].head_dim;
        rope_t r;
        rope_init(&r, d, shapes[s].theta, shapes[s].fraction);
        float *x0 = malloc(sizeof(float) * ROWS * d), *x = malloc(sizeof(float) * ROWS * d);
        double *xd = malloc(sizeof(double) * ROWS * d);
        for (size_t p = 0; p < sizeof starts / sizeof starts[0]; p++) {
            fill(x0, ROWS * d, (uint32_t)(10 + p));
            memcpy(x, x0, sizeof(float) * ROWS * d);
            for (int i = 0; i < ROWS * d; i++)
                xd[i] = x0[i];
            rope_apply(&r, x, ROWS, d, starts[p], 1);
            rope_apply_f64(&r, xd, ROWS, d, starts[p], 1);
            double worst = 0, worst64 = 0;
            for (int row = 0; row < ROWS; row++) {
                int64_t pos = starts[p] + row;
                long double ref[256];
                ref_rope(x0 + row * d, ref, d, r.rot_dims, r.theta, pos);
                double bound32 = elem_bound_f32(pos);
                worst = fmax(worst, row_error(x0 + row * d, ref, x + row * d, NULL, d, r.rot_dims, bound32));
                /* float64: the float32 bound without its rounding to float, plus the rotation's
                 * own double roundings (2^−47 covers them with the cos/sin error). */
                double bound64 = ldexp(2.0 * (double)pos, -51) + ldexp(1, -47);
                worst64 = fmax(worst64, row_error(x0 + row * d, ref, NULL, xd + row * d, d, r.rot_dims, bound64));
            }
            char name[128], detail[200];
            snprintf(name, sizeof name, "accuracy d=%d theta=%g fraction=%g pos %lld..%lld", d, shapes[s].theta,
                     shapes[s].fraction, (long long)starts[p], (long long)starts[p] + ROWS - 1);
            snprintf(detail, sizeof detail, "worst |err| = %.3f of the bound (f32), %.3f (f64)", worst, worst64);
            report(worst <= 1 && worst64 <= 1, name, detail);
        }
        free(x0), free(x), free(xd);
    }
}

static double dot(const float *a, const float *b, int d) {
    double s = 0;
    for (int j = 0; j < d; j++)
        s += (double)a[j] * b[j];
    return s;
}

/* (R(p)q)·(R(p′)k) = q·R(p′ − p)k exactly, so shifting both positions by s cannot change it.
 * Bound on one computed dot: per rotated pair the float error vector has norm ≤ √2·ε(pos)·‖pair‖
 * (ε = elem_bound_f32), so |Δ(q_i·k_i)| ≤ √2·(ε(p) + ε(p′))·‖q_i‖‖k_i‖ (1.01 covers the product
 * of two errors); the double sum adds d·2^−53·Σ|q_j k_j|. Two dots: the sum of both bounds. */
static void test_relative_position(void) {
    const int d = 128;
    rope_t r;
    rope_init(&r, d, 10000, 1);
    const int64_t pairs[][2] = {{0, 0}, {5, 3}, {3, 5}, {100, 0}, {31, 32}, {4096, 17}};
    const int64_t shifts[] = {1, 31, 32, 1000, 65536, 999999, 1000000};
    float q0[128], k0[128], q[128], k[128];
    int n_bad = 0, n = 0, moved = 1;
    double worst = 0;
    for (size_t a = 0; a < sizeof pairs / sizeof pairs[0]; a++) {
        fill(q0, d, (uint32_t)(100 + a));
        fill(k0, d, (uint32_t)(200 + a));
        int64_t p = pairs[a][0], pk = pairs[a][1];
        memcpy(q, q0, sizeof q), memcpy(k, k0, sizeof k);
        rope_apply(&r, q, 1, d, p, 1);
        rope_apply(&r, k, 1, d, pk, 1);
        double base = dot(q, k, d), mags = 0, abs_sum = 0;
        for (int i = 0; i < d / 2; i++)
            mags += hypot(q0[i], q0[i + d / 2]) * hypot(k0[i], k0[i + d / 2]);
        for (int j = 0; j < d; j++)
            abs_sum += fabs((double)q0[j] * k0[j]);
        for (size_t s = 0; s < sizeof shifts / sizeof shifts[0]; s++) {
            memcpy(q, q0, sizeof q), memcpy(k, k0, sizeof k);
            rope_apply(&r, q, 1, d, p + shifts[s], 1);
            rope_apply(&r, k, 1, d, pk + shifts[s], 1);
            double got = dot(q, k, d);
            double eps = elem_bound_f32(p) + elem_bound_f32(pk) + elem_bound_f32(p + shifts[s]) +
                         elem_bound_f32(pk + shifts[s]);
            double tol = 1.01 * sqrt(2.0) * eps * mags + 2 * d * ldexp(abs_sum, -53);
            double e = fabs(got - base) / tol;
            worst = fmax(worst, e);
            n++;
            if (e > 1) {
                n_bad++;
                printf("     p=%lld p'=%lld shift %lld: %.9g vs %.9g (tolerance %.3g)\n", (long long)p, (long long)pk,
                       (long long)shifts[s], got, base, tol);
            }
        }
        /* And the test has teeth: moving one position by 1 changes the dot by 100× the tolerance. */
        if (p != pk || p != 0) {
            memcpy(q, q0, sizeof q), memcpy(k, k0, sizeof k);
            rope_apply(&r, q, 1, d, p + 1, 1);
            rope_apply(&r, k, 1, d, pk, 1);
            double eps = 2 * elem_bound_f32(p) + elem_bound_f32(pk) + elem_bound_f32(p + 1);
            moved &= fabs(dot(q, k, d) - base) > 100 * (1.01 * sqrt(2.0) * eps * mags);
        }
    }
    char detail[200];
    snprintf(detail, sizeof detail, "%d of %d shifted pairs outside tolerance, worst %.3f of it; a 1-position move %s",
             n_bad, n, worst, moved ? "changes it by > 100x tolerance" : "did NOT change it by 100x tolerance");
    report(n_bad == 0 && moved, "relative position: dot(R(p)q, R(p')k) invariant under shifts up to 10^6", detail);
}

/* A rank's striped rows (start + r, stride P), a zigzag-like contiguous chunk at an offset, and a
 * decode step's single row must equal the same rows of the whole sequence bit for bit: rope.c
 * computes each row from its global position alone. Rows sit inside a 3-head row (stride 3·d);
 * the other heads must stay as they were. */
static void test_pieces(void) {
    const int d = 128, H = 3, N = 1000;
    const int64_t base = 1000000 - 300;
    rope_t r;
    rope_init(&r, d, 10000, 1);
    size_t row_bytes = sizeof(float) * (size_t)d;
    float *x0 = malloc(sizeof(float) * N * H * d), *full = malloc(sizeof(float) * N * H * d);
    float *piece = malloc(sizeof(float) * N * H * d);
    fill(x0, (int64_t)N * H * d, 300);
    memcpy(full, x0, sizeof(float) * N * H * d);
    rope_apply(&r, full + d, N, H * d, base, 1); /* head 1 of every row */
    int others_ok = 1;
    for (int row = 0; row < N; row++)
        others_ok &= !memcmp(full + row * H * d, x0 + row * H * d, row_bytes) &&
                     !memcmp(full + row * H * d + 2 * d, x0 + row * H * d + 2 * d, row_bytes);
    report(others_ok, "row_stride: the other heads of each row are untouched", "");

    const int strides[] = {2, 3, 4, 8, 64};
    for (size_t si = 0; si < sizeof strides / sizeof strides[0]; si++) {
        int P = strides[si], mismatches = 0;
        for (int rank = 0; rank < P; rank++) {
            int rows = (N - rank + P - 1) / P;
            for (int i = 0; i < rows; i++)
                memcpy(piece + i * d, x0 + ((int64_t)(rank + i * P) * H + 1) * d, row_bytes);
            rope_apply(&r, piece, rows, d, base + rank, P);
            for (int i = 0; i < rows; i++)
                mismatches += memcmp(piece + i * d, full + ((int64_t)(rank + i * P) * H + 1) * d, row_bytes) != 0;
        }
        char name[80], detail[80];
        snprintf(name, sizeof name, "striped P=%d pieces equal the full sequence's rows bitwise", P);
        snprintf(detail, sizeof detail, "%d rows differ", mismatches);
        report(mismatches == 0, name, detail);
    }
    const int chunks[][2] = {{137, 250}, {999, 1}, {0, 1}, {31, 2}, {500, 333}};
    int mismatches = 0;
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        int r0 = chunks[c][0], rows = chunks[c][1];
        for (int i = 0; i < rows; i++)
            memcpy(piece + i * H * d, x0 + (int64_t)(r0 + i) * H * d, sizeof(float) * H * d);
        rope_apply(&r, piece + d, rows, H * d, base + r0, 1);
        for (int i = 0; i < rows; i++)
            mismatches += memcmp(piece + i * H * d, full + (int64_t)(r0 + i) * H * d, sizeof(float) * H * d) != 0;
    }
    char detail[80];
    snprintf(detail, sizeof detail, "%d rows differ", mismatches);
    report(mismatches == 0, "offset chunks and single rows equal the full sequence's rows bitwise", detail);
    free(x0), free(full), free(piece);
}

/* fraction 0.5 of d = 64: dims 0..31 rotate as pairs (i, i + 16); dims 32..63 keep their bits. */
static void test_partial(void) {
    const int d = 64, N = 100;
    rope_t r;
    rope_init(&r, d, 10000, 0.5);
    float x0[100 * 64], x[100 * 64];
    fill(x0, N * d, 400);
    memcpy(x, x0, sizeof x);
    rope_apply(&r, x, N, d, 12345, 7);
    int kept = 1, moved = 0;
    for (int row = 0; row < N; row++) {
        kept &= !memcmp(x + row * d + 32, x0 + row * d + 32, sizeof(float) * 32);
        for (int j = 0; j < 32; j++)
            moved += x[row * d + j] != x0[row * d + j];
    }
    char detail[120];
    snprintf(detail, sizeof detail, "rot_dims %d, non-rotated dims %s, %d of %d rotated values changed", r.rot_dims,
             kept ? "bitwise unchanged" : "CHANGED", moved, N * 32);
    report(r.rot_dims == 32 && kept && moved > N * 30, "partial rotary 0.5 leaves dims 32..63 untouched", detail);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Not asserted (the machine may be busy): the cost of one head of a 64K-token prefill. */
static void time_full_sequence(void) {
    const int64_t N = 65536;
    const int dims[] = {64, 128};
    float *x = malloc(sizeof(float) * (size_t)N * 128);
    for (size_t k = 0; k < 2; k++) {
        int d = dims[k];
        rope_t r;
        rope_init(&r, d, 10000, 1);
        fill(x, N * d, 500);
        double best = INFINITY;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            rope_apply(&r, x, N, d, 0, 1);
            best = fmin(best, now() - t0);
        }
        printf("time rope_apply %lld rows x d=%d: %.2f ms (best of 3)\n", (long long)N, d, best * 1e3);
    }
    free(x);
}

int main(void) {
    test_accuracy();
    test_relative_position();
    test_pieces();
    test_partial();
    time_full_sequence();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
