/* test_nonfinite.c — the non-finite and extreme-magnitude part of the exactness matrix: every backend
 * in the registry (distributed ones on 2 and 3 local ranks) against the float64 naive reference on
 * inputs with a NaN in one q row, a NaN in one key, +∞ in K, ∞ in V, and Q × 1e10 (huge but finite
 * scores). Policy (docs/nonfinite.md): the rows whose O, and whose LSE, are non-finite are exactly
 * the reference's, and the finite rows pass the usual tolerance.
 * usage: test_nonfinite          the CPU backends (f32)
 *        test_nonfinite --gpu    the CUDA backends: naive_cuda in f32, all in bf16 against the
 *                                reference on the bf16-rounded inputs; exit 77 without a device */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/device.h"
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

static int failed, passed, gpu;

/* Round to nearest even bfloat16, as the device upload does; ±∞ and NaN stay as they are. */
static float round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7F800000u) == 0x7F800000u)
        return x;
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

static void run_case(const attn_backend_t *be, const attn_problem_t *p32, int ranks, inject_t c, const attn_tensors_t *in,
                     const attn_tensors_t *ref, const attn_errors_t *naive32, double o_max, double lse_max) {
    attn_exec_t x = exec_default();
    x.threads = 2, x.ranks = ranks, x.layout = -1;
    x.transport = gpu ? ATTN_TRANSPORT_CUDA_LOCAL : ATTN_TRANSPORT_LOCAL;
    if (be->approximate) /* a budget over every key makes it exact: then it follows nonfinite.md too */
        x.sinks = x.topk = x.approx_window = p32->n_k;
    char why[512];
    if (!backend_supports(be, p32, &x, why, sizeof why)) {
        if (gpu) /* by design: bf16-only kernels in f32, sliding_window_cuda off window masks */
            printf("skip %-14s P=%d %-9s mask=%-6s %s: %s\n", be->name, ranks, case_name[c], mask_name(p32->mask),
                   dtype_name(p32->dtype), why);
        return;
    }
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
    attn_errors_t bound = tolerance_bound(be->name, p32->dtype, naive32, o_max, lse_max, p32->n_k);
    /* Not vacuous: a non-finite case has non-finite rows, and finite ones too unless no mask
     * hides the bad key from anyone; the extreme case has only finite rows. */
    int shape_ok = c == HUGE_Q ? ref_bad == 0 : ref_bad > 0 && (n > 0 || p32->mask == ATTN_MASK_NONE);
    int ok = !mismatch && shape_ok && errors_within(&e, &bound);
    printf("%s %-14s P=%d %-9s mask=%-6s %-4s bad rows %zu, finite rows %zu: rel_l2 %.3g (tol %.3g) "
           "lse %.3g (tol %.3g)%s\n",
           ok ? "ok  " : "FAIL", be->name, ranks, case_name[c], mask_name(p32->mask), dtype_name(p32->dtype), ref_bad, n,
           e.rel_l2, bound.rel_l2, e.lse_max, bound.lse_max,
           shape_ok ? "" : " (case does not exercise both kinds of rows)");
    ok ? passed++ : failed++;
    free(o64), free(l64), tensors_free(&out);
}

/* The same-precision baseline's errors on the reference's finite rows: naive f32 on the CPU for
 * f32, naive_cuda for bf16 (tolerance.c). 1 when it could not be measured or is itself non-finite
 * there (it would make every tolerance infinite). */
static int baseline(const attn_problem_t *p, const attn_tensors_t *in, const attn_tensors_t *ref, attn_errors_t *out,
                    double *o_max, double *lse_max) {
    const attn_backend_t *nb = registry_find(p->dtype == ATTN_BF16 ? "naive_cuda" : "naive");
    attn_exec_t one = exec_default();
    one.threads = 2;
    attn_tensors_t base;
    attn_err_t err = {0};
    if (!nb || tensors_alloc(p, 0, 0, &base, &err) != ATTN_OK) {
        printf("FAIL baseline: %s\n", nb ? err.msg : "naive_cuda is not built");
        return 1;
    }
    attn_io_t bio = in->io;
    bio.o = base.o, bio.lse = base.lse;
    if (nb->forward(nb, p, &one, &bio, &err) != ATTN_OK) {
        printf("FAIL baseline %s: %s\n", nb->name, err.msg);
        tensors_free(&base);
        return 1;
    }
    int64_t d = p->head_dim;
    size_t rows = problem_numel_lse(p);
    double *o64 = malloc(sizeof(double) * rows * (size_t)d), *l64 = malloc(sizeof(double) * rows);
    size_t n = keep_finite(ref->o, ref->lse, base.o, base.lse, o64, l64, rows, d);
    *out = errors_measure(base.o, base.lse, ATTN_F32, o64, l64, n * (size_t)d, n);
    *o_max = 0, *lse_max = 0;
    for (size_t i = 0; i < n * (size_t)d; i++)
        *o_max = fmax(*o_max, fabs(o64[i]));
    for (size_t i = 0; i < n; i++)
        *lse_max = fmax(*lse_max, fabs(l64[i]));
    free(o64), free(l64), tensors_free(&base);
    int ok = isfinite(out->rel_l2) && isfinite(out->max_abs) && isfinite(out->lse_max);
    if (!ok)
        printf("FAIL baseline %s %s mask=%s: non-finite where the reference is finite\n", nb->name,
               dtype_name(p->dtype), mask_name(p->mask));
    return !ok;
}

/* One input case (mask, injection, dtype) for every backend of this mode. */
static int one_case(attn_mask_t mask, inject_t c, attn_dtype_t dt, int simd) {
    /* d = 64 and H = 6 over H_kv = 2 on the GPU: the tensor-core kernel's head dim, and heads
     * that split over 2 and 3 ranks for ulysses_cuda. n_k = 200 spans four 64-key tiles. */
    attn_problem_t p32 = {.batch = 1, .heads = gpu ? 6 : 2, .kv_heads = gpu ? 2 : 1, .head_dim = gpu ? 64 : 16,
                          .n_q = 150, .n_k = 200, .mask = mask, .window = mask == ATTN_MASK_WINDOW ? 37 : 0,
                          .dtype = dt, .block_q = 16, .block_k = 32};
    attn_problem_t p64 = p32;
    p64.dtype = ATTN_F64;
    attn_tensors_t in, ref;
    attn_err_t err = {0};
    if (tensors_alloc(&p32, 1, 7 + (uint64_t)c, &in, &err) || tensors_alloc(&p64, 0, 0, &ref, &err)) {
        printf("FAIL %s\n", err.msg);
        return 1;
    }
    inject(&p32, c, in.q, in.k, in.v);
    float *src[3] = {in.q, in.k, in.v};
    double *dst[3] = {ref.q, ref.k, ref.v};
    size_t len[3] = {problem_numel_q(&p32), problem_numel_kv(&p32), problem_numel_kv(&p32)};
    for (int t = 0; t < 3; t++) /* the very same values in float64 (bf16: the rounded ones the GPU sees) */
        for (size_t i = 0; i < len[t]; i++) {
            if (dt == ATTN_BF16)
                src[t][i] = round_bf16(src[t][i]);
            dst[t][i] = src[t][i];
        }
    const attn_backend_t *naive = registry_find("naive");
    attn_exec_t one = exec_default();
    one.threads = 2;
    if (naive->forward(naive, &p64, &one, &ref.io, &err)) {
        printf("FAIL reference: %s\n", err.msg);
        return 1;
    }
    attn_errors_t naive32;
    double o_max, lse_max;
    if (baseline(&p32, &in, &ref, &naive32, &o_max, &lse_max)) {
        failed++;
    } else {
        for (int b = 0; b < registry_count(); b++) {
            const attn_backend_t *be = registry_get(b);
            if (strcmp(be->device, gpu ? "cuda" : "cpu") ||
                (simd && !strstr("blockwise sliding_window naive_blas ring", be->name)))
                continue;
            if (be->forward_rank)
                for (int P = 2; P <= 3; P++)
                    run_case(be, &p32, P, c, &in, &ref, &naive32, o_max, lse_max);
            else
                run_case(be, &p32, 1, c, &in, &ref, &naive32, o_max, lse_max);
        }
    }
    tensors_free(&in), tensors_free(&ref);
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--gpu")) {
            fprintf(stderr, "unknown argument %s (usage: test_nonfinite [--gpu])\n", argv[i]);
            return 2;
        }
        gpu = 1;
    }
    char why[256];
    if (gpu && device_count(why, sizeof why) == 0) {
        printf("skip: %s\n", why);
        return 77; /* CTest SKIP_RETURN_CODE */
    }
    parallel_set_blas_threads(1);
    attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    /* CPU: the AVX-512 softmax where the CPU has it, then the generic one. GPU: f32 (naive_cuda),
     * then bf16. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass && !gpu)
            setenv("ATTN_SIMD", "generic", 1);
        attn_dtype_t dt = gpu && pass ? ATTN_BF16 : ATTN_F32;
        for (int mi = 0; mi < 3; mi++)
            for (int c = 0; c < N_CASES; c++)
                if (one_case(masks[mi], (inject_t)c, dt, gpu ? 0 : pass))
                    return 1;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed || !passed;
}
