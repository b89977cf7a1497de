/* test_model_dev_index.c — model_dev.cu's index arithmetic (impls/cuda/model_dev_index.h) on the
 * host, each kernel's loop over t emulated: to/from head-major is a bijection equal to the host
 * forward's transposes; the KV store puts every element where model_cache_store's put does (the
 * library's own, through a host memspace); the RoPE kernel's pairs and angles (double sincos of
 * pos·θ^(−2i/rot)) give rope_apply's result within one float32 rounding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "impls/cuda/model_dev_index.h"
#include "model/model.h"
#include "model/rope.h"
#include "tests/check.h"

static size_t sp_elem(const model_memspace_t *s, attn_dtype_t dt) { (void)s, (void)dt; return sizeof(float); }
static void *sp_alloc(const model_memspace_t *s, size_t bytes, attn_err_t *err) {
    (void)s, (void)err;
    return calloc(1, bytes + 1);
}
static void sp_release(const model_memspace_t *s, void *p) { (void)s, free(p); }
static int sp_put(const model_memspace_t *s, void *dst, int64_t at, const float *src, int64_t n, attn_dtype_t dt,
                  attn_err_t *err) {
    (void)s, (void)dt, (void)err;
    memcpy((float *)dst + at, src, (size_t)n * sizeof(float));
    return ATTN_OK;
}
static int sp_copy(const model_memspace_t *s, void *dst, int64_t da, const void *src, int64_t sa, int64_t n,
                   attn_dtype_t dt, attn_err_t *err) {
    (void)s, (void)dt, (void)err;
    memcpy((float *)dst + da, (const float *)src + sa, (size_t)n * sizeof(float));
    return ATTN_OK;
}

static void transposes(int64_t n, int64_t heads, int64_t hd) {
    int64_t total = n * heads * hd;
    float *rows = malloc((size_t)total * sizeof *rows), *hm = malloc((size_t)total * sizeof *hm);
    float *want = malloc((size_t)total * sizeof *want), *back = malloc((size_t)total * sizeof *back);
    int *hits = calloc((size_t)total, sizeof *hits);
    for (int64_t t = 0; t < total; t++)
        rows[t] = (float)t;
    for (int64_t h = 0; h < heads; h++) /* forward.inc's to_heads */
        for (int64_t r = 0; r < n; r++)
            memcpy(want + (h * n + r) * hd, rows + (r * heads + h) * hd, (size_t)hd * sizeof(float));
    for (int64_t t = 0; t < total; t++) { /* heads_kernel, dir 0 then 1 */
        int64_t r, h, i;
        mdev_rows_at(t, heads, hd, &r, &h, &i);
        int64_t at = mdev_head_major(n, hd, r, h, i);
        hm[at] = rows[t], hits[at]++;
    }
    for (int64_t t = 0; t < total; t++) {
        int64_t r, h, i;
        mdev_rows_at(t, heads, hd, &r, &h, &i);
        back[t] = hm[mdev_head_major(n, hd, r, h, i)];
    }
    int once = 1;
    for (int64_t t = 0; t < total; t++)
        once &= hits[t] == 1;
    char name[160];
    snprintf(name, sizeof name, "heads_kernel n %lld × %lld heads × %lld: a bijection, forward.inc's to_heads, and back",
             (long long)n, (long long)heads, (long long)hd);
    check(once && !memcmp(hm, want, (size_t)total * sizeof *hm) && !memcmp(back, rows, (size_t)total * sizeof *back),
          name, "index arithmetic differs");
    free(rows), free(hm), free(want), free(back), free(hits);
}

static void kv_store(int64_t n, int64_t heads, int64_t hd, int64_t cap, int64_t at) {
    model_config_t cfg;
    model_config_defaults(&cfg);
    cfg.num_key_value_heads = (int)heads, cfg.head_dim = (int)hd, cfg.num_hidden_layers = 1;
    model_memspace_t sp = {sp_elem, sp_alloc, sp_release, sp_put, sp_copy, 0, NULL};
    model_cache_t c;
    attn_err_t err = {0};
    int64_t total = n * heads * hd;
    float *rows = malloc((size_t)total * sizeof *rows), *scratch = malloc((size_t)(n * hd) * sizeof *scratch);
    float *slab = calloc((size_t)(heads * cap * hd), sizeof *slab);
    for (int64_t t = 0; t < total; t++)
        rows[t] = (float)(t + 1);
    int ok = model_cache_init_in(&c, &cfg, ATTN_F32, cap, &sp, &err) == ATTN_OK;
    if (ok) {
        c.len = at;
        ok = model_cache_store(&c, 0, rows, rows, n, heads, hd, scratch, &err) == ATTN_OK;
        for (int64_t t = 0; t < total; t++) { /* kv_store_kernel */
            int64_t r, h, i;
            mdev_rows_at(t, heads, hd, &r, &h, &i);
            slab[mdev_slab(cap, at, hd, r, h, i)] = rows[t];
        }
        ok = ok && !memcmp(slab, c.k[0], (size_t)(heads * cap * hd) * sizeof *slab);
        model_cache_free(&c);
    }
    char name[160];
    snprintf(name, sizeof name, "kv_store_kernel %lld rows × %lld heads × %lld at %lld of %lld: model_cache_store's places",
             (long long)n, (long long)heads, (long long)hd, (long long)at, (long long)cap);
    check(ok, name, "%s", err.msg[0] ? err.msg : "index arithmetic differs");
    free(rows), free(scratch), free(slab);
}

static void rope_case(int64_t n, int64_t heads, int hd, double frac, int64_t pos0) {
    rope_t rp;
    rope_init(&rp, hd, 10000.0, frac);
    int half = rp.rot_dims / 2;
    int64_t total = n * heads * hd;
    float *a = malloc((size_t)total * sizeof *a), *b = malloc((size_t)total * sizeof *b);
    for (int64_t t = 0; t < total; t++)
        a[t] = b[t] = (float)sin(0.37 * (double)t) * 3;
    for (int64_t h = 0; h < heads; h++) /* the host forward's call */
        rope_apply(&rp, a + h * hd, n, heads * hd, pos0, 1);
    for (int64_t t = 0; t < n * heads * half; t++) { /* rope_kernel */
        int64_t rh, r;
        int i;
        mdev_rope_at(t, heads, half, &rh, &i, &r);
        double f = pow(rp.theta, -(double)(2 * i) / rp.rot_dims);
        double s = sin((double)(pos0 + r) * f), c = cos((double)(pos0 + r) * f);
        float *x1 = b + rh * hd, *x2 = x1 + half;
        double u = x1[i], v = x2[i];
        x1[i] = (float)(u * c - v * s);
        x2[i] = (float)(v * c + u * s);
    }
    double worst = 0; /* in float32 units of the pair's size: one rounding, the angles agree to 2⁻⁵⁰ */
    for (int64_t t = 0; t < total; t++)
        worst = fmax(worst, fabs((double)a[t] - b[t]) / (ldexp(1, -24) * 3 * sqrt(2)));
    char name[160];
    snprintf(name, sizeof name, "rope_kernel %lld rows × %lld heads × %d (rot %d) from %lld: rope_apply's within %.2f "
             "float32 units (≤ 1)", (long long)n, (long long)heads, hd, rp.rot_dims, (long long)pos0, worst);
    check(worst <= 1, name, "index arithmetic or angles differ");
    free(a), free(b);
}

int main(void) {
    transposes(7, 3, 5);
    transposes(1, 4, 64);
    transposes(33, 2, 128);
    kv_store(5, 1, 128, 40, 0);
    kv_store(7, 3, 16, 30, 11);
    kv_store(1, 2, 64, 9, 8);
    rope_case(17, 2, 128, 0.25, 0);
    rope_case(5, 4, 64, 1.0, 1048570);
    rope_case(9, 3, 32, 0.5, 12345);
    return check_summary();
}
