/* test_nonfinite.c — the non-finite and extreme-magnitude part of the exactness matrix: every CPU
 * backend in the registry (distributed ones on 2 and 3 local ranks) against the float64 naive
 * reference on inputs with a NaN in one q row, a NaN in one key, +∞ in K, ∞ in V, and Q × 1e10
 * (huge but finite scores). Policy (docs/nonfinite.md): the rows whose O, and whose LSE, are
 * non-finite are exactly the reference's, and the finite rows pass the usual tolerance. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/rng.h"
#include "core/tensors.h"
#include "core/threads.h"
#include "impls/parallel/dist.h"
#include "tasks/tolerance.h"

typedef enum { NAN_Q_ROW, NAN_K, INF_K, INF_V, HUGE_Q, N_CASES } inject_t;
static const char *case_name[] = {"nan-q-row", "nan-k", "inf-k", "inf-v", "q×1e10"};

/* Positions chosen inside the sequence so causal and window masks hide them from some rows. */
static void inject(const attn_problem_t *p, inject_t c, float *q, float *k, float *v) {
    int64_t d = p->head_dim, nk = p->n_k, nq = p->n_q;
    size_t nkv = problem_numel_kv(p), nqe = problem_numel_q(p);
    switch (c) {
    case NAN_Q_ROW: q[(1 * nq + nq / 2) * d + 3] = NAN; break;         /* head 1, middle row */
    case NAN_K: k[(nk * 3 / 5) * d + 5] = NAN; break;                   /* kv head 0 */
    case INF_K: k[(nk * 2 / 5) * d + 2] = INFINITY; break;              /* ±∞ scores by q's sign */
    case INF_V: v[nkv - (size_t)(nk / 2) * (size_t)d + 7] = -INFINITY; break; /* last kv head */
    case HUGE_Q:
        for (size_t i = 0; i < nqe; i++)
            q[i] *= 1e10f;
        break;
    default: break;
    }
}

static int row_bad(const void *o, const void *lse, attn_dtype_t t, size_t r, int64_t d, int which) {
    if (which == 1)
        return t == ATTN_F64 ? !isfinite(((const double *)lse)[r]) : !isfinite(((const float *)lse)[r]);
    for (int64_t c = 0; c < d; c++)
        if (t == ATTN_F64 ? !isfinite(((const double *)o)[r * d + c]) : !isfinite(((const float *)o)[r * d + c]))
            return 1;
    return 0;
}

/* Keeps the rows finite in the reference (O and LSE) in place, in order; returns how many. */
static size_t keep_finite(const double *ro, const double *rl, float *o, float *l, double *o64, double *l64, size_t rows,
                          int64_t d) {
    size_t n = 0;
    for (size_t r = 0; r < rows; r++) {
        if (row_bad(ro, rl, ATTN_F64, r, d, 0) || row_bad(ro, rl, ATTN_F64, r, d, 1))
            continue;
        memmove(o + n * d, o + r * d, sizeof(float) * (size_t)d), l[n] = l[r];
        memmove(o64 + n * d, ro + r * d, sizeof(double) * (size_t)d), l64[n] = rl[r];
        n++;
    }
    return n;
}

static int failed, passed;

static void run_case(const attn_backend_t *be, const attn_problem_t *p32, int ranks, inject_t c, const attn_tensors_t *in,
                     const attn_tensors_t *ref, const attn_errors_t *naive32, double o_max, double lse_max) {
    attn_exec_t x = exec_default();
    x.threads = 2, x.ranks = ranks, x.transport = ATTN_TRANSPORT_LOCAL, x.layout = -1;
    char why[512];
    if (!backend_supports(be, p32, &x, why, sizeof why))
        return;
    attn_tensors_t out;
    attn_err_t err = {0};
    if (tensors_alloc(p32, 0, 0, &out, &err) != ATTN_OK) {
        printf("FAIL %s\n", err.msg), failed++;
        return;
    }
    attn_io_t io = in->io;
    io.o = out.o, io.lse = out.lse;
    int64_t d = p32->head_dim;
    size_t rows = problem_numel_lse(p32), mismatch = 0, ref_bad = 0;
    if (be->forward(be, p32, &x, &io, &err) != ATTN_OK) {
        printf("FAIL %-14s P=%d %-9s mask=%s: %s\n", be->name, ranks, case_name[c], mask_name(p32->mask), err.msg);
        failed++, tensors_free(&out);
        return;
    }
    for (size_t r = 0; r < rows; r++)
        for (int w = 0; w < 2; w++) {
            int want = row_bad(ref->o, ref->lse, ATTN_F64, r, d, w), got = row_bad(out.o, out.lse, ATTN_F32, r, d, w);
            ref_bad += want;
            if (want != got && mismatch++ < 3)
                printf("     row %zu: %s %s in the reference, %s here\n", r, w ? "LSE" : "O",
                       want ? "non-finite" : "finite", got ? "non-finite" : "finite");
        }
    double *o64 = malloc(sizeof(double) * rows * (size_t)d), *l64 = malloc(sizeof(double) * rows);
    size_t n = keep_finite(ref->o, ref->lse, out.o, out.lse, o64, l64, rows, d);
    attn_errors_t e = errors_measure(out.o, out.lse, ATTN_F32, o64, l64, n * (size_t)d, n);
    attn_errors_t bound = tolerance_bound(be->name, ATTN_F32, naive32, o_max, lse_max, p32->n_k);
    /* Not vacuous: a non-finite case has non-finite rows, and finite ones too unless no mask
     * hides the bad key from anyone; the extreme case has only finite rows. */
    int shape_ok = c == HUGE_Q ? ref_bad == 0 : ref_bad > 0 && (n > 0 || p32->mask == ATTN_MASK_NONE);
    int ok = !mismatch && shape_ok && errors_within(&e, &bound);
    printf("%s %-14s P=%d %-9s mask=%-6s bad rows %zu, finite rows %zu: rel_l2 %.3g (tol %.3g) lse %.3g (tol %.3g)%s\n",
           ok ? "ok  " : "FAIL", be->name, ranks, case_name[c], mask_name(p32->mask), ref_bad, n, e.rel_l2, bound.rel_l2,
           e.lse_max, bound.lse_max, shape_ok ? "" : " (case does not exercise both kinds of rows)");
    ok ? passed++ : failed++;
    free(o64), free(l64), tensors_free(&out);
}

int main(void) {
    parallel_set_blas_threads(1);
    const attn_backend_t *naive = registry_find("naive");
    attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    for (int simd = 0; simd < 2; simd++) { /* the AVX-512 softmax where the CPU has it, then the generic one */
        if (simd)
            setenv("ATTN_SIMD", "generic", 1);
        for (int mi = 0; mi < 3; mi++)
            for (int c = 0; c < N_CASES; c++) {
                attn_problem_t p32 = {.batch = 1, .heads = 2, .kv_heads = 1, .head_dim = 16, .n_q = 150, .n_k = 200,
                                      .mask = masks[mi], .window = masks[mi] == ATTN_MASK_WINDOW ? 37 : 0,
                                      .dtype = ATTN_F32, .block_q = 16, .block_k = 32};
                attn_problem_t p64 = p32;
                p64.dtype = ATTN_F64;
                attn_tensors_t in, ref, base;
                attn_err_t err = {0};
                if (tensors_alloc(&p32, 1, 7 + (uint64_t)c, &in, &err) || tensors_alloc(&p64, 0, 0, &ref, &err) ||
                    tensors_alloc(&p32, 0, 0, &base, &err)) {
                    printf("FAIL %s\n", err.msg);
                    return 1;
                }
                inject(&p32, (inject_t)c, in.q, in.k, in.v);
                const float *src[3] = {in.q, in.k, in.v};
                double *dst[3] = {ref.q, ref.k, ref.v};
                size_t len[3] = {problem_numel_q(&p32), problem_numel_kv(&p32), problem_numel_kv(&p32)};
                for (int t = 0; t < 3; t++) /* the very same values in float64 */
                    for (size_t i = 0; i < len[t]; i++)
                        dst[t][i] = src[t][i];
                attn_exec_t one = exec_default();
                one.threads = 2;
                attn_io_t bio = in.io;
                bio.o = base.o, bio.lse = base.lse;
                if (naive->forward(naive, &p64, &one, &ref.io, &err) || naive->forward(naive, &p32, &one, &bio, &err)) {
                    printf("FAIL reference: %s\n", err.msg);
                    return 1;
                }
                size_t rows = problem_numel_lse(&p32);
                double *o64 = malloc(sizeof(double) * rows * 16), *l64 = malloc(sizeof(double) * rows);
                float *bo = malloc(sizeof(float) * rows * 16), *bl = malloc(sizeof(float) * rows);
                memcpy(bo, base.o, sizeof(float) * rows * 16), memcpy(bl, base.lse, sizeof(float) * rows);
                size_t n = keep_finite(ref.o, ref.lse, bo, bl, o64, l64, rows, 16);
                attn_errors_t naive32 = errors_measure(bo, bl, ATTN_F32, o64, l64, n * 16, n);
                double o_max = 0, lse_max = 0;
                for (size_t i = 0; i < n * 16; i++)
                    o_max = fmax(o_max, fabs(o64[i]));
                for (size_t i = 0; i < n; i++)
                    lse_max = fmax(lse_max, fabs(l64[i]));
                for (int b = 0; b < registry_count(); b++) {
                    const attn_backend_t *be = registry_get(b);
                    if (strcmp(be->device, "cpu") || (simd && !strstr("blockwise sliding_window naive_blas ring", be->name)))
                        continue;
                    if (be->forward_rank)
                        for (int P = 2; P <= 3; P++)
                            run_case(be, &p32, P, (inject_t)c, &in, &ref, &naive32, o_max, lse_max);
                    else
                        run_case(be, &p32, 1, (inject_t)c, &in, &ref, &naive32, o_max, lse_max);
                }
                free(o64), free(l64), free(bo), free(bl);
                tensors_free(&in), tensors_free(&ref), tensors_free(&base);
            }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed || !passed;
}
