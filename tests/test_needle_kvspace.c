/* test_needle_kvspace.c — the needle's KV cache kept in "device" memory, without a GPU: a host
 * stand-in for the memory space (model_memspace_t whose put/copy are host functions that count
 * the bytes they move) and for a GPU backend that reads K/V there (device_kv: the bf16-emulated
 * CPU backends of tests/bf16_emu.h, checking every K/V pointer is the space's). It proves the
 * context goes into the cache once per depth and every question and decoding step moves only its
 * new rows, and that the cache, the logits' outcome and the recall are those of the host path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/threads.h"
#include "tasks/needle_run.h"
#include "tests/check.h"
#include "tests/needle_emu.h"

enum { N = 1024, NEEDLES = 3, MAX_ALLOCS = 64 };

static const int32_t intro[] = {10, 11, 12}, outro[] = {13}, qprefix[] = {14, 15, 16, 17};
static const needle_text_t text = {intro, outro, qprefix, 3, 1, 4};

/* ---- the stand-in memory space: host memory, float32 storage (bf16 values rounded on put) ---- */
typedef struct {
    void *live[MAX_ALLOCS];
    size_t size[MAX_ALLOCS];
    double bytes_put, bytes_copied;
    double seen; /* bytes_put at the last attention call (or the end of the context) */
} standin_t;

static size_t sp_elem(const model_memspace_t *s, attn_dtype_t dt) {
    (void)s, (void)dt;
    return sizeof(float);
}

static void *sp_alloc(const model_memspace_t *s, size_t bytes, attn_err_t *err) {
    standin_t *c = s->ctx;
    for (int i = 0; i < MAX_ALLOCS; i++)
        if (!c->live[i]) {
            c->live[i] = calloc(1, bytes + 1), c->size[i] = bytes;
            if (!c->live[i])
                attn_fail(err, ATTN_ERUNTIME, "stand-in space: out of memory");
            return c->live[i];
        }
    attn_fail(err, ATTN_ERUNTIME, "stand-in space: too many allocations");
    return NULL;
}

static void sp_release(const model_memspace_t *s, void *p) {
    standin_t *c = s->ctx;
    for (int i = 0; i < MAX_ALLOCS; i++)
        if (c->live[i] == p)
            c->live[i] = NULL;
    free(p);
}

static int sp_put(const model_memspace_t *s, void *dst, int64_t at, const float *src, int64_t n, attn_dtype_t dt,
                  attn_err_t *err) {
    (void)err;
    standin_t *c = s->ctx;
    float *d = (float *)dst + at;
    for (int64_t i = 0; i < n; i++)
        d[i] = dtype_is_16bit(dt) ? model_round_dtype(dt, src[i]) : src[i];
    c->bytes_put += (double)n * sizeof(float);
    return ATTN_OK;
}

static int sp_copy(const model_memspace_t *s, void *dst, int64_t dst_at, const void *src, int64_t src_at, int64_t n,
                   attn_dtype_t dt, attn_err_t *err) {
    (void)dt, (void)err;
    standin_t *c = s->ctx;
    memcpy((float *)dst + dst_at, (const float *)src + src_at, (size_t)n * sizeof(float));
    c->bytes_copied += (double)n * sizeof(float);
    return ATTN_OK;
}

/* 1 when [p, p + bytes) lies in one of the space's allocations. */
static int in_space(const standin_t *c, const void *p, size_t bytes) {
    for (int i = 0; i < MAX_ALLOCS; i++)
        if (c->live[i] && (const char *)p >= (const char *)c->live[i] &&
            (const char *)p + bytes <= (const char *)c->live[i] + c->size[i])
            return 1;
    return 0;
}

/* ---- the stand-in GPU backend: a bf16-emulated CPU backend that takes K/V in the space ---- */
typedef struct {
    attn_backend_t be; /* first: passed as an attn_backend_t */
    const attn_backend_t *inner;
    standin_t *space;
    char name[64];
    long calls, outside;     /* attention calls; calls whose K/V were not in the space or not flagged */
    long steps, bad_steps;   /* question-phase calls (n_q ≤ question length); those that moved more than their rows */
    int64_t step_max_nq;     /* the question's length: calls up to it are questions or decoding steps */
} dev_be_t;

static int dev_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                        size_t len) {
    const dev_be_t *d = (const dev_be_t *)self;
    attn_exec_t host = *x;
    host.kv_device = 0;
    return backend_supports(d->inner, p, &host, reason, len);
}

static int dev_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                       attn_err_t *err) {
    dev_be_t *d = (dev_be_t *)self;
    size_t kv_bytes = problem_numel_kv(p) * sizeof(float);
    d->calls++;
    d->outside += !x->kv_device || !in_space(d->space, io->k, kv_bytes) || !in_space(d->space, io->v, kv_bytes);
    /* One layer's new rows, K and V, since the call before: H_kv · d floats each. */
    double moved = d->space->bytes_put - d->space->seen, rows = (double)p->n_q * p->kv_heads * p->head_dim * 2 * sizeof(float);
    if (p->n_q <= d->step_max_nq)
        d->steps++, d->bad_steps += moved != rows;
    d->space->seen = d->space->bytes_put;
    attn_exec_t host = *x;
    host.kv_device = 0;
    return d->inner->forward(d->inner, p, &host, io, err);
}

static void dev_init(dev_be_t *d, const attn_backend_t *inner, standin_t *space) {
    memset(d, 0, sizeof *d);
    d->inner = inner, d->space = space;
    snprintf(d->name, sizeof d->name, "%s+devkv", inner->name);
    d->be = (attn_backend_t){.name = d->name, .device = "cpu", .description = "device-KV stand-in",
                             .supports = dev_supports, .forward = dev_forward, .device_kv = 1};
}

/* The dense hook's stand-in (as tests/test_needle_bf16.c): products summed in double. */
static int cpu_linear(const model_dense_t *d, float *out, const float *x, const float *w, int64_t n, int64_t out_dim,
                      int64_t in_dim, attn_err_t *err) {
    (void)d, (void)err;
    for (int64_t r = 0; r < n; r++)
        for (int64_t o = 0; o < out_dim; o++) {
            double s = 0;
            for (int64_t i = 0; i < in_dim; i++)
                s += (double)x[r * in_dim + i] * w[o * in_dim + i];
            out[r * out_dim + o] = (float)s;
        }
    return ATTN_OK;
}
static const model_dense_t cpu_dense = {cpu_linear, NULL};

typedef struct {
    const model_t *m;
    const needle_margins_t *mg;
    const needle_vocab_t *nv;
    const int32_t *hay;
} world_t;

static needle_run_opts_t opts(const attn_backend_t *be, needle_mode_t mode, attn_mask_t mask, int64_t window) {
    needle_run_opts_t ro = {.be = be, .mode = mode, .ask_all = 1, .chunk = 700, .dense = &cpu_dense};
    ro.tmpl.mask = mask, ro.tmpl.window = window, ro.tmpl.dtype = ATTN_BF16;
    ro.x = (attn_exec_t){.threads = 2, .layout = -1};
    return ro;
}

/* One depth: context, then every question; *cache left holding the context (caller frees). */
static int depth_run(const world_t *w, const needle_run_opts_t *ro, double depth, model_cache_t *cache,
                     needle_outcome_t *out, double *ctx_put, standin_t *sp, attn_err_t *err) {
    needle_prompt_t pr;
    int rc = needle_prompt_build(w->hay, N, depth, NEEDLES, w->nv, &text, 7 + (uint64_t)depth, &pr, err);
    if (rc == ATTN_OK)
        rc = needle_cache_init(w->m, &pr, ro->tmpl.dtype, ro->kv_space, cache, err);
    if (rc != ATTN_OK) {
        needle_prompt_free(&pr);
        return rc;
    }
    double s;
    memset(out, 0, sizeof *out);
    rc = needle_context(w->m, w->mg, &pr, ro, cache, &s, err);
    if (sp)
        *ctx_put = sp->seen = sp->bytes_put;
    if (rc == ATTN_OK)
        rc = needle_ask(w->m, &pr, ro, cache, out, err);
    needle_prompt_free(&pr);
    return rc;
}

/* Context put once, questions and steps only their rows, every call on the space's K/V, and the
 * same cache bits and recall as the host path (same band, same dense hook). */
static void compare(const world_t *w, const attn_backend_t *host_be, const attn_backend_t *host_band,
                    const attn_backend_t *inner_be, const attn_backend_t *inner_band, needle_mode_t mode,
                    attn_mask_t mask, int64_t window, int plain_host) {
    const char *mname = mode == NEEDLE_PREFILL ? "prefill" : "query-tail";
    for (int depth = 0; depth <= 100; depth += 50) {
        standin_t sp = {0};
        model_memspace_t space = {sp_elem, sp_alloc, sp_release, sp_put, sp_copy, 0, &sp};
        dev_be_t dbe, dband;
        dev_init(&dbe, inner_be, &sp);
        dev_init(&dband, inner_band, &sp);
        dbe.step_max_nq = (int64_t)(sizeof qprefix / sizeof *qprefix) + 1;
        needle_run_opts_t dro = opts(&dbe.be, mode, mask, window), hro = opts(host_be, mode, mask, window);
        dro.kv_space = &space, dro.band = &dband.be;
        hro.band = plain_host ? NULL : host_band;
        model_cache_t dc, hc;
        needle_outcome_t dout, hout;
        double ctx_put = 0, dummy;
        attn_err_t derr = {0}, herr = {0};
        int drc = depth_run(w, &dro, depth, &dc, &dout, &ctx_put, &sp, &derr);
        int hrc = depth_run(w, &hro, depth, &hc, &hout, &dummy, NULL, &herr);
        char what[200];
        snprintf(what, sizeof what, "%s %s depth %d%s", inner_be->name, mname, depth,
                 plain_host ? " vs the plain host path (f32 band on the host)" : "");
        if (!check(drc == ATTN_OK && hrc == ATTN_OK, what, "device path: %s; host path: %s", derr.msg, herr.msg)) {
            if (drc == ATTN_OK)
                model_cache_free(&dc);
            if (hrc == ATTN_OK)
                model_cache_free(&hc);
            continue;
        }
        /* Per position: K and V of every layer, H_kv · d floats each (bf16 values in float32). */
        const model_config_t *c = &w->m->cfg;
        double row = (double)c->num_hidden_layers * 2 * c->num_key_value_heads * c->head_dim * sizeof(float);
        int64_t n_ctx = dc.len, n_q = (int64_t)(sizeof qprefix / sizeof *qprefix) + 1;
        double asked_rows = (double)dout.asked * (n_q + NEEDLE_VALUE_LEN - 1);
        char line[400];
        snprintf(line, sizeof line, "%s: context put once (%.0f B = %lld rows), questions %.0f B = %g rows; %ld calls "
                 "on the space's K/V, %ld question/step calls moved only their rows; recall %d/%d = host's %d/%d",
                 what, ctx_put, (long long)n_ctx, sp.bytes_put - ctx_put, asked_rows, dbe.calls + dband.calls,
                 dbe.steps - dbe.bad_steps, dout.correct, dout.asked, hout.correct, hout.asked);
        int ok = ctx_put == n_ctx * row && sp.bytes_put - ctx_put == asked_rows * row && sp.bytes_copied == 0 &&
                 dbe.outside == 0 && dband.outside == 0 && dbe.calls > 0 &&
                 (mode == NEEDLE_PREFILL ? dband.calls == 0 : dband.calls > 0) &&
                 dbe.steps == (long)c->num_hidden_layers * dout.asked * NEEDLE_VALUE_LEN &&
                 dbe.bad_steps == 0 && dout.asked == NEEDLES && dout.correct == hout.correct &&
                 dout.in_window == hout.in_window;
        check(ok, line, "bytes or calls differ from once-per-depth and new-rows-only, or recall differs");
        if (!plain_host) { /* the same computation where the cache lives: the same bits */
            /* The context's rows and the last question's (1 kv head: one slab); the row after
             * them is never written (capacity counts the longest answer). */
            int64_t written = dc.len + n_q + NEEDLE_VALUE_LEN - 1;
            size_t bytes = (size_t)(written * c->head_dim) * sizeof(float);
            int same = dc.len == hc.len && c->num_key_value_heads == 1 && written <= dc.capacity;
            for (int l = 0; same && l < c->num_hidden_layers; l++)
                same = !memcmp(dc.k[l], hc.k[l], bytes) && !memcmp(dc.v[l], hc.v[l], bytes);
            snprintf(line, sizeof line, "%s: the device cache's %lld rows (context and last question) equal the host "
                     "cache's bit for bit", what, (long long)written);
            check(same, line, "the space path computed something else");
        }
        model_cache_free(&dc);
        model_cache_free(&hc);
    }
}

int main(void) {
    parallel_set_blas_threads(2);
    needle_emu_world_t W;
    if (!needle_emu_world_init(&W, N))
        return check_summary();
    world_t w = {&W.m, &W.mg, &W.nv, W.hay};
    int64_t win = N * 45 / 100;
    for (int mode = 0; mode < 2; mode++) {
        compare(&w, &W.block.be, &W.window.be, &W.block.be, &W.window.be, (needle_mode_t)mode, ATTN_MASK_CAUSAL, 0, 0);
        compare(&w, &W.window.be, &W.window.be, &W.window.be, &W.window.be, (needle_mode_t)mode, ATTN_MASK_WINDOW, win, 0);
    }
    /* The plain host path (CPU band in float32, host cache): the same recall. */
    compare(&w, &W.block.be, NULL, &W.block.be, &W.window.be, NEEDLE_QUERY_TAIL, ATTN_MASK_CAUSAL, 0, 1);
    compare(&w, &W.window.be, NULL, &W.window.be, &W.window.be, NEEDLE_QUERY_TAIL, ATTN_MASK_WINDOW, win, 1);

    /* A backend without device_kv is declined on a device cache, with the reason. */
    standin_t sp = {0};
    model_memspace_t space = {sp_elem, sp_alloc, sp_release, sp_put, sp_copy, 0, &sp};
    needle_run_opts_t ro = opts(&W.block.be, NEEDLE_PREFILL, ATTN_MASK_CAUSAL, 0);
    ro.kv_space = &space;
    needle_prompt_t pr;
    model_cache_t cache;
    double s;
    attn_err_t e2 = {0};
    int rc = needle_prompt_build(W.hay, N, 50, 1, &W.nv, &text, 7, &pr, &e2);
    if (rc == ATTN_OK)
        rc = needle_cache_init(&W.m, &pr, ATTN_BF16, &space, &cache, &e2);
    if (rc == ATTN_OK) {
        rc = needle_context(&W.m, &W.mg, &pr, &ro, &cache, &s, &e2);
        model_cache_free(&cache);
    }
    needle_prompt_free(&pr);
    check(rc == ATTN_EUSAGE && strstr(e2.msg, "not from a KV cache kept in device memory"),
          "a host-only backend on a device cache is declined", "rc %d: %s", rc, e2.msg);
    needle_emu_world_free(&W);
    return check_summary();
}
