/* test_tile_kernel.c — the fused tile kernel (impls/cpu/tile_avx512.c) against a float64
 * reference, beside the sgemm path, on the shapes that stress its edges: head dims that are not
 * a multiple of its 8-dimension blocks, tiles that are not a multiple of its 48-row strips or
 * 8-key blocks, pieces at strided global positions (a ring step) where rows see no key, and
 * every mask. Both paths must make the same tile decisions (tile_stats_t). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"
#include "impls/cpu/tile_engine.h"
#include "impls/cpu/tile_kernel.h"
#include "tasks/tolerance.h"

static int failed, passed;

typedef struct {
    int64_t d, nq, nk;
    attn_span_t qs, ks;
    attn_mask_t mask;
    int64_t window;
    int bq, bk; /* 0: the default of what computes */
    int heads, kv_heads;
} kcase_t;

/* Reference rows in float64 (ref64) and the same loops in float32 (ref32, the "naive f32"
 * baseline of tolerances.md). A row that sees no key: O = 0, LSE = −∞ (a piece's share). */
static void reference(const kcase_t *c, const float *q, const float *k, const float *v, double scale, double *o64,
                      double *lse64, float *o32) {
    int64_t d = c->d, group = c->heads / c->kv_heads;
    for (int h = 0; h < c->heads; h++)
        for (int64_t r = 0; r < c->nq; r++) {
            const float *qr = q + (h * c->nq + r) * d;
            const float *K = k + (h / group) * c->nk * d, *V = v + (h / group) * c->nk * d;
            int64_t i = c->qs.start + c->qs.stride * r;
            double m = -INFINITY, sum = 0;
            float m32 = -INFINITY, sum32 = 0;
            double *o = o64 + (h * c->nq + r) * d;
            float *o3 = o32 + (h * c->nq + r) * d;
            for (int64_t x = 0; x < d; x++)
                o[x] = 0, o3[x] = 0;
            for (int pass = 0; pass < 2; pass++)
                for (int64_t jj = 0; jj < c->nk; jj++) {
                    if (!mask_visible(&(attn_vis_t){c->mask, c->window, NULL, 0}, i, c->ks.start + c->ks.stride * jj))
                        continue;
                    double s = 0;
                    float s32 = 0;
                    for (int64_t x = 0; x < d; x++)
                        s += (double)qr[x] * K[jj * d + x], s32 += qr[x] * K[jj * d + x];
                    s *= scale;
                    s32 *= (float)scale;
                    if (pass == 0) {
                        m = fmax(m, s), m32 = fmaxf(m32, s32);
                        continue;
                    }
                    double w = exp(s - m);
                    float w32 = expf(s32 - m32);
                    sum += w, sum32 += w32;
                    for (int64_t x = 0; x < d; x++)
                        o[x] += w * V[jj * d + x], o3[x] += w32 * V[jj * d + x];
                }
            lse64[h * c->nq + r] = sum > 0 ? m + log(sum) : -INFINITY;
            for (int64_t x = 0; x < d; x++)
                o[x] = sum > 0 ? o[x] / sum : 0, o3[x] = sum32 > 0 ? o3[x] / sum32 : 0;
        }
}

static void check_case(const char *name, const kcase_t *c) {
    size_t nq = (size_t)c->heads * c->nq * c->d, nk = (size_t)c->kv_heads * c->nk * c->d;
    float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk);
    float *o[2] = {malloc(sizeof(float) * nq), malloc(sizeof(float) * nq)}, *o32 = malloc(sizeof(float) * nq);
    float *lse[2] = {malloc(sizeof(float) * c->heads * c->nq), malloc(sizeof(float) * c->heads * c->nq)};
    double *o64 = malloc(sizeof(double) * nq), *lse64 = malloc(sizeof(double) * c->heads * c->nq);
    srand(7);
    for (size_t x = 0; x < nq; x++)
        q[x] = (float)rand() / RAND_MAX * 4 - 2;
    for (size_t x = 0; x < nk; x++)
        k[x] = (float)rand() / RAND_MAX * 4 - 2, v[x] = (float)rand() / RAND_MAX * 2 - 1;
    attn_problem_t p = {.batch = 1, .heads = c->heads, .kv_heads = c->kv_heads, .head_dim = c->d, .n_q = c->nq,
                        .n_k = c->nk, .mask = c->mask, .window = c->window, .block_q = c->bq, .block_k = c->bk};
    double scale = problem_scale(&p);
    reference(c, q, k, v, scale, o64, lse64, o32);
    tile_stats_t st[2];
    attn_err_t err = {0};
    const tile_impl_t impls[2] = {TILE_IMPL_AUTO, TILE_IMPL_BLAS};
    for (int w = 0; w < 2; w++) {
        tile_io_t io = {q, k, v, o[w], lse[w], c->nq, c->nk};
        if (tile_attend_f32_with(impls[w], &p, 2, c->qs, c->nq, c->ks, c->nk, &io, TILE_SCAN_ALL, &st[w], &err)) {
            printf("FAIL %s: %s\n", name, err.msg);
            failed++;
            return;
        }
    }
    /* naive-f32's own error, and the project's bound on it (tolerance.c's "*" f32 rule) */
    attn_errors_t naive32 = {0}, e[2] = {{0}};
    double omax = 0, lmax = 0;
    int empty_ok[2] = {1, 1};
    for (size_t x = 0; x < nq; x++) {
        omax = fmax(omax, fabs(o64[x]));
        naive32.max_abs = fmax(naive32.max_abs, fabs(o32[x] - o64[x]));
        for (int w = 0; w < 2; w++)
            e[w].max_abs = fmax(e[w].max_abs, isfinite(o[w][x]) ? fabs(o[w][x] - o64[x]) : INFINITY);
    }
    for (int64_t r = 0; r < c->heads * c->nq; r++) {
        if (isinf(lse64[r])) { /* no visible key: exactly O = 0, LSE = −∞ */
            for (int w = 0; w < 2; w++)
                empty_ok[w] &= lse[w][r] == -INFINITY;
            continue;
        }
        lmax = fmax(lmax, fabs(lse64[r]));
        for (int w = 0; w < 2; w++)
            e[w].lse_max = fmax(e[w].lse_max, isfinite(lse[w][r]) ? fabs(lse[w][r] - lse64[r]) : INFINITY);
    }
    naive32.lse_max = 0; /* the float32 loops' LSE error is not measured: the floor bounds it */
    attn_errors_t bound = tolerance_bound("blockwise", ATTN_F32, &naive32, omax, lmax, c->nk);
    int same_tiles = st[0].tiles_computed == st[1].tiles_computed && st[0].tiles_skipped == st[1].tiles_skipped;
    int ok = same_tiles || c->bq == 0;
    for (int w = 0; w < 2; w++)
        ok &= e[w].max_abs <= bound.max_abs && e[w].lse_max <= bound.lse_max && empty_ok[w];
    printf("%s %s [%s]: max abs %.3g / %.3g (bound %.3g), lse %.3g / %.3g (bound %.3g), tiles %lld+%lld / "
           "%lld+%lld%s\n",
           ok ? "ok  " : "FAIL", name, tile_impl_name(TILE_IMPL_AUTO), e[0].max_abs, e[1].max_abs, bound.max_abs,
           e[0].lse_max, e[1].lse_max, bound.lse_max, (long long)st[0].tiles_computed,
           (long long)st[0].tiles_skipped, (long long)st[1].tiles_computed, (long long)st[1].tiles_skipped,
           empty_ok[0] && empty_ok[1] ? "" : ", a row with no key is not O = 0, LSE = −∞");
    ok ? passed++ : failed++;
    free(q), free(k), free(v), free(o[0]), free(o[1]), free(o32), free(lse[0]), free(lse[1]), free(o64), free(lse64);
}

int main(void) {
    parallel_set_blas_threads(1);
    const attn_span_t whole = {0, 1};
    const struct {
        const char *name;
        kcase_t c;
    } cases[] = {
        {"d=64 none, default tiles", {64, 300, 300, whole, whole, ATTN_MASK_NONE, 0, 0, 0, 2, 2}},
        {"d=128 causal, default tiles", {128, 250, 250, whole, whole, ATTN_MASK_CAUSAL, 0, 0, 0, 2, 1}},
        {"d=1 causal 5x7 tiles", {1, 40, 40, whole, whole, ATTN_MASK_CAUSAL, 0, 5, 7, 1, 1}},
        {"d=3 window 50x13", {3, 130, 130, whole, whole, ATTN_MASK_WINDOW, 17, 50, 13, 2, 2}},
        {"d=17 causal q-tail", {17, 37, 200, {163, 1}, whole, ATTN_MASK_CAUSAL, 0, 49, 9, 2, 1}},
        {"d=72 window 100x64", {72, 333, 1000, {667, 1}, whole, ATTN_MASK_WINDOW, 120, 100, 64, 2, 2}},
        {"d=8 none, one row", {8, 1, 33, {32, 1}, whole, ATTN_MASK_NONE, 0, 0, 0, 1, 1}},
        /* a ring step: strided positions, keys after some queries, so early rows see nothing */
        {"d=32 causal strided piece", {32, 90, 70, {1, 3}, {100, 2}, ATTN_MASK_CAUSAL, 0, 48, 16, 2, 2}},
        {"d=256 causal", {256, 100, 100, whole, whole, ATTN_MASK_CAUSAL, 0, 96, 40, 1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(cases[i].name, &cases[i].c);
    /* Fewer rows than the kernel's min_rows (a decode step) take the sgemm path: its workspace. */
    const tile_kernel_t *k = tile_kernel_select();
    if (k) {
        attn_problem_t p = {.batch = 1, .heads = 4, .kv_heads = 4, .head_dim = 64, .n_q = 1000, .n_k = 1000};
        size_t few = tile_workspace_bytes_with(TILE_IMPL_AUTO, &p, 2, k->min_rows - 1),
               few_blas = tile_workspace_bytes_with(TILE_IMPL_BLAS, &p, 2, k->min_rows - 1),
               many = tile_workspace_bytes_with(TILE_IMPL_AUTO, &p, 2, k->min_rows),
               many_blas = tile_workspace_bytes_with(TILE_IMPL_BLAS, &p, 2, k->min_rows);
        int ok = few == few_blas && many != many_blas;
        printf("%s calls under %d rows take the sgemm path: workspace %zu / %zu, at %d rows %zu / %zu\n",
               ok ? "ok  " : "FAIL", k->min_rows, few, few_blas, k->min_rows, many, many_blas);
        ok ? passed++ : failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
