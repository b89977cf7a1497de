/* test_nonfinite_grad.c — the backward's non-finite rule (docs/nonfinite.md "The backward"): every
 * CPU backward (distributed ones on 2 and 3 local ranks) against the float64 naive one with NaN/∞
 * in Q, K, V or dO under none/causal/window: the non-finite rows of dQ, dK, dV are the reference's,
 * the finite rows within 4 × naive float32's error on them + 8ε. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/rng.h"
#include "core/tensors.h"
#include "core/threads.h"

typedef enum { NAN_Q_ROW, NAN_K, INF_K, INF_V, INF_DO, NAN_DO, N_CASES } inject_t;
static const char *case_name[] = {"nan-q-row", "nan-k", "inf-k", "inf-v", "inf-do", "nan-do"};

/* Positions inside the sequence, so causal and window masks hide them from some rows. */
static void inject(const attn_problem_t *p, inject_t c, float *q, float *k, float *v, float *d_o) {
    int64_t d = p->head_dim, nk = p->n_k, nq = p->n_q;
    size_t nkv = problem_numel_kv(p);
    switch (c) {
    case NAN_Q_ROW: q[(1 * nq + nq / 2) * d + 3] = NAN; break;
    case NAN_K: k[(nk * 3 / 5) * d + 5] = NAN; break;
    case INF_K: k[(nk * 2 / 5) * d + 2] = -INFINITY; break; /* scores ±∞ by q's sign */
    case INF_V: v[nkv - (size_t)(nk / 2) * (size_t)d + 7] = INFINITY; break;
    case INF_DO: d_o[(2 * nq + nq / 3) * d + 1] = -INFINITY; break;
    case NAN_DO: d_o[(nq / 4) * d] = NAN; break;
    default: break;
    }
}

static int row_bad32(const float *x, size_t r, int64_t d) {
    for (int64_t c = 0; c < d; c++)
        if (!isfinite(x[r * d + c]))
            return 1;
    return 0;
}

static int row_bad64(const double *x, size_t r, int64_t d) {
    for (int64_t c = 0; c < d; c++)
        if (!isfinite(x[r * d + c]))
            return 1;
    return 0;
}

/* Rows compared: bad-row sets (count of mismatches), and the rel L2 over the reference's finite rows. */
static size_t compare(const float *got, const double *ref, size_t rows, int64_t d, double *rel, size_t *n_bad) {
    size_t mism = 0;
    double num = 0, den = 0;
    *n_bad = 0;
    for (size_t r = 0; r < rows; r++) {
        int want = row_bad64(ref, r, d), have = row_bad32(got, r, d);
        *n_bad += want;
        mism += want != have;
        if (want || have)
            continue;
        for (int64_t c = 0; c < d; c++) {
            double e = got[r * d + c] - ref[r * d + c];
            num += e * e, den += ref[r * d + c] * ref[r * d + c];
        }
    }
    *rel = sqrt(num / (den > 0 ? den : 1));
    return mism;
}

/* be's forward then backward on the float32 inputs into g's dq, dk, dv. */
static int run(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x, const void *q, const void *k,
               const void *v, const void *d_o, void *dq, void *dk, void *dv, attn_err_t *err) {
    size_t es = dtype_size(p->dtype);
    void *o = malloc(problem_numel_q(p) * es), *lse = malloc(problem_numel_lse(p) * es);
    attn_io_t io = {.q = q, .k = k, .v = v, .o = o, .lse = lse};
    int rc = be->forward(be, p, x, &io, err);
    attn_grad_io_t g = {.q = q, .k = k, .v = v, .o = o, .lse = lse, .d_o = d_o, .dq = dq, .dk = dk, .dv = dv};
    if (rc == ATTN_OK)
        rc = be->backward(be, p, x, &g, err);
    free(o), free(lse);
    return rc;
}

static int passed, failed;

int main(void) {
    parallel_set_blas_threads(1);
    attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    for (int pass = 0; pass < 2; pass++) { /* the AVX-512 softmax where the CPU has it, then the generic one */
        if (pass)
            setenv("ATTN_SIMD", "generic", 1);
        for (int mi = 0; mi < 3; mi++)
            for (int c = 0; c < N_CASES; c++) {
                /* n_k = 200 spans several 32-key tiles; H = 6 over H_kv = 2 splits over 2 and 3 ranks. */
                attn_problem_t p = {.batch = 1, .heads = 6, .kv_heads = 2, .head_dim = 16, .n_q = 150, .n_k = 200,
                                    .mask = masks[mi], .window = masks[mi] == ATTN_MASK_WINDOW ? 37 : 0,
                                    .dtype = ATTN_F32, .block_q = 16, .block_k = 32};
                attn_problem_t p64 = p;
                p64.dtype = ATTN_F64;
                size_t nq = problem_numel_q(&p), nkv = problem_numel_kv(&p);
                attn_tensors_t in;
                attn_err_t err = {0};
                if (tensors_alloc(&p, 1, 11 + (uint64_t)c, &in, &err) != ATTN_OK) {
                    printf("FAIL %s\n", err.msg);
                    return 1;
                }
                float *d_o = malloc(nq * 4);
                rng_fill(d_o, ATTN_F32, 11 + (uint64_t)c, RNG_TENSOR_DO, p.batch * p.heads, p.n_q, problem_q_span(&p),
                         p.n_k, p.head_dim);
                inject(&p, c, in.q, in.k, in.v, d_o);
                double *w[4] = {malloc(nq * 8), malloc(nkv * 8), malloc(nkv * 8), malloc(nq * 8)};
                const float *src[4] = {in.q, in.k, in.v, d_o};
                size_t len[4] = {nq, nkv, nkv, nq};
                for (int t = 0; t < 4; t++)
                    for (size_t i = 0; i < len[t]; i++)
                        w[t][i] = src[t][i];
                double *r64[3] = {malloc(nq * 8), malloc(nkv * 8), malloc(nkv * 8)};
                float *g32[3] = {malloc(nq * 4), malloc(nkv * 4), malloc(nkv * 4)};
                float *n32[3] = {malloc(nq * 4), malloc(nkv * 4), malloc(nkv * 4)};
                const attn_backend_t *naive = registry_find("naive");
                attn_exec_t one = exec_default();
                one.threads = 2;
                double e32[3] = {0};
                if (run(naive, &p64, &one, w[0], w[1], w[2], w[3], r64[0], r64[1], r64[2], &err) != ATTN_OK ||
                    run(naive, &p, &one, in.q, in.k, in.v, d_o, n32[0], n32[1], n32[2], &err) != ATTN_OK) {
                    printf("FAIL reference: %s\n", err.msg);
                    return 1;
                }
                size_t rows[3] = {nq / 16, nkv / 16, nkv / 16}, bad_ref[3];
                for (int t = 0; t < 3; t++) {
                    size_t mism = compare(n32[t], r64[t], rows[t], 16, &e32[t], &bad_ref[t]);
                    if (mism || !(e32[t] < 1e-5)) { /* the baseline itself must follow the rule */
                        printf("FAIL naive f32 %s mask=%s d%c: %zu rows differ in finiteness, rel L2 %.3g\n",
                               case_name[c], mask_name(p.mask), "qkv"[t], mism, e32[t]);
                        failed++;
                    }
                }
                /* Not vacuous: some gradient row is non-finite, and some stays finite. */
                size_t all_bad = bad_ref[0] + bad_ref[1] + bad_ref[2];
                if (all_bad == 0 || all_bad == rows[0] + rows[1] + rows[2]) {
                    printf("FAIL %s mask=%s: the case has %zu non-finite gradient rows of %zu\n", case_name[c],
                           mask_name(p.mask), all_bad, rows[0] + rows[1] + rows[2]);
                    failed++;
                }
                for (int b = 0; b < registry_count(); b++) {
                    const attn_backend_t *be = registry_get(b);
                    if (strcmp(be->device, "cpu") || !be->backward || be->approximate)
                        continue;
                    for (int P = be->backward_rank ? 2 : 1; P <= (be->backward_rank ? 3 : 1); P++) {
                        attn_exec_t x = exec_default();
                        x.threads = 2, x.ranks = P;
                        char why[512];
                        if (!backend_supports_backward(be, &p, &x, why, sizeof why))
                            continue; /* sliding_window off window masks */
                        if (run(be, &p, &x, in.q, in.k, in.v, d_o, g32[0], g32[1], g32[2], &err) != ATTN_OK) {
                            printf("FAIL %s P=%d %s: %s\n", be->name, P, case_name[c], err.msg);
                            failed++;
                            continue;
                        }
                        int ok = 1;
                        char line[512];
                        int at = 0;
                        for (int t = 0; t < 3; t++) {
                            double rel, tol = 4 * e32[t] + 8 * FLT_EPSILON;
                            size_t nb, mism = compare(g32[t], r64[t], rows[t], 16, &rel, &nb);
                            ok &= mism == 0 && rel <= tol;
                            at += snprintf(line + at, sizeof line - (size_t)at, " d%c: %zu bad rows, %zu differ, rel %.2g (tol %.2g);",
                                           "qkv"[t], nb, mism, rel, tol);
                        }
                        printf("%s %-14s P=%d %-9s mask=%-6s%s%s\n", ok ? "ok  " : "FAIL", be->name, P, case_name[c],
                               mask_name(p.mask), pass ? " generic" : "", line);
                        ok ? passed++ : failed++;
                    }
                }
                for (int t = 0; t < 4; t++)
                    free(w[t]);
                for (int t = 0; t < 3; t++)
                    free(r64[t]), free(g32[t]), free(n32[t]);
                free(d_o);
                tensors_free(&in);
            }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed || !passed;
}
