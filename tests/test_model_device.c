/* test_model_device.c — the device-resident model forward (model/devops.h) without a GPU: a host
 * stand-in for the device's ops (the host forward's own arithmetic, on allocations it tracks,
 * counting every byte up or down) and for a GPU attention backend (bf16-emulated CPU blockwise,
 * checking every pointer it gets is device memory). Checks: the same logits and cache bits as the
 * host path; only tokens up and logit rows down per forward, nothing per layer (Q down and O up
 * once per layer for a backend without device_qo); and a dry 10⁶-token prefill (ops that only
 * count) moving 4 bytes per token, beside the per-call hook's bytes measured the same way. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "comm/layout.h"
#include "core/threads.h"
#include "impls/parallel/dist.h"
#include "model/devops.h"
#include "tasks/model_dev_run.h"
#include "tests/bf16_emu.h"
#include "tests/model_fixture.h"

enum { MAX_ALLOCS = 64 };

/* ---- device memory stand-in (shared by the ops and the KV memspace) ---- */
typedef struct {
    int dry;                    /* 1: no memory behind the pointers, ops only count */
    void *live[MAX_ALLOCS];
    size_t size[MAX_ALLOCS];
    double up, down, put;       /* bytes host→device, device→host, memspace puts */
    long ops, ups, downs;
} fakedev_t;

static void *dv_alloc(fakedev_t *c, size_t bytes, attn_err_t *err) {
    for (int i = 0; i < MAX_ALLOCS; i++)
        if (!c->live[i]) {
            if (c->dry) /* distinct fake addresses: a host dereference would fault (or ASan would say) */
                c->live[i] = (void *)(uintptr_t)(0x100000 + (uintptr_t)i * 0x1000000000ULL), c->size[i] = bytes;
            else
                c->live[i] = calloc(1, bytes + 1), c->size[i] = bytes;
            if (!c->live[i])
                attn_fail(err, ATTN_ERUNTIME, "stand-in device: out of memory");
            return c->live[i];
        }
    attn_fail(err, ATTN_ERUNTIME, "stand-in device: too many allocations");
    return NULL;
}

static void dv_release(fakedev_t *c, void *p) {
    for (int i = 0; i < MAX_ALLOCS; i++)
        if (c->live[i] == p) {
            c->live[i] = NULL;
            if (!c->dry)
                free(p);
        }
}

static int dv_has(const fakedev_t *c, const void *p, size_t bytes) {
    for (int i = 0; i < MAX_ALLOCS; i++)
        if (c->live[i] && (const char *)p >= (const char *)c->live[i] &&
            (const char *)p + bytes <= (const char *)c->live[i] + c->size[i])
            return 1;
    return 0;
}

/* ---- the KV memspace on that device: float32 storage, 16-bit values rounded on put ---- */
static size_t sp_elem(const model_memspace_t *s, attn_dtype_t dt) { (void)s, (void)dt; return sizeof(float); }
static void *sp_alloc(const model_memspace_t *s, size_t bytes, attn_err_t *err) { return dv_alloc(s->ctx, bytes, err); }
static void sp_release(const model_memspace_t *s, void *p) { dv_release(s->ctx, p); }
static int sp_put(const model_memspace_t *s, void *dst, int64_t at, const float *src, int64_t n, attn_dtype_t dt,
                  attn_err_t *err) {
    (void)err;
    fakedev_t *c = s->ctx;
    c->put += (double)n * sizeof(float);
    for (int64_t i = 0; !c->dry && i < n; i++)
        ((float *)dst)[at + i] = model_round_dtype(dt, src[i]);
    return ATTN_OK;
}
static int sp_copy(const model_memspace_t *s, void *dst, int64_t dst_at, const void *src, int64_t src_at, int64_t n,
                   attn_dtype_t dt, attn_err_t *err) {
    (void)dt, (void)err;
    if (!((fakedev_t *)s->ctx)->dry)
        memcpy((float *)dst + dst_at, (const float *)src + src_at, (size_t)n * sizeof(float));
    return ATTN_OK;
}

/* ---- the ops: forward.inc's arithmetic, step for step, so the bits must match ---- */
#define DEV(o) ((fakedev_t *)(o)->ctx)
#define COUNT_OP(o) do { DEV(o)->ops++; if (DEV(o)->dry) return ATTN_OK; } while (0)
static void *op_alloc(const model_devops_t *o, size_t bytes, attn_err_t *err) { return dv_alloc(DEV(o), bytes, err); }
static void op_release(const model_devops_t *o, void *p) { dv_release(DEV(o), p); }
static int op_up(const model_devops_t *o, void *dst, const void *src, size_t bytes, attn_err_t *err) {
    (void)err;
    DEV(o)->up += (double)bytes, DEV(o)->ups++;
    if (!DEV(o)->dry)
        memcpy(dst, src, bytes);
    return ATTN_OK;
}
static int op_down(const model_devops_t *o, void *dst, const void *src, size_t bytes, attn_err_t *err) {
    (void)err;
    DEV(o)->down += (double)bytes, DEV(o)->downs++;
    if (!DEV(o)->dry)
        memcpy(dst, src, bytes);
    else
        memset(dst, 0, bytes); /* the host buffer is real */
    return ATTN_OK;
}
static const model_t *ops_model; /* the embedding's owner */
static int op_embed(const model_devops_t *o, float *x, const int32_t *tok, int64_t n, attn_err_t *err) {
    (void)err;
    COUNT_OP(o);
    int64_t D = ops_model->cfg.hidden_size;
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < D; i++)
            x[r * D + i] = ops_model->embed[(int64_t)tok[r] * D + i];
    return ATTN_OK;
}
static int op_linear(const model_devops_t *o, float *out, const float *x, const float *w, int64_t n, int64_t out_dim,
                     int64_t in_dim, attn_err_t *err) {
    (void)err;
    COUNT_OP(o);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out_dim, (int)in_dim, 1, x, (int)in_dim, w,
                (int)in_dim, 0, out, (int)out_dim);
    return ATTN_OK;
}
static int op_rmsnorm(const model_devops_t *o, float *out, const float *x, const float *w, int64_t n, int64_t dim,
                      double eps, attn_err_t *err) {
    (void)err;
    COUNT_OP(o);
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * dim;
        double ss = 0;
        for (int64_t i = 0; i < dim; i++)
            ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / (double)dim + eps));
        for (int64_t i = 0; i < dim; i++)
            out[r * dim + i] = xr[i] * inv * w[i];
    }
    return ATTN_OK;
}
static int op_rope(const model_devops_t *o, float *x, int64_t n, int64_t heads, const rope_t *r, int64_t pos0,
                   attn_err_t *err) {
    (void)err;
    COUNT_OP(o);
    for (int64_t h = 0; h < heads; h++)
        rope_apply(r, x + h * r->head_dim, n, heads * r->head_dim, pos0, 1);
    return ATTN_OK;
}
static int op_to_heads(const model_devops_t *o, float *dst, const float *src, int64_t n, int64_t heads, int64_t hd,
                       attn_err_t *err) {
    (void)err;
    COUNT_OP(o);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t r = 0; r < n; r++)
            memcpy(dst + (h * n + r) * hd, src + (r * heads + h) * hd, (size_t)hd * sizeof(float));
    return ATTN_OK;
}
static int op_from_heads(const model_devops_t *o, float *dst, const float *src, int64_t n, int64_t heads, int64_t hd,
                         attn_err_t *err) {
    (void)err;
    COUNT_OP(o);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t r = 0; r < n; r++)
            memcpy(dst + (r * heads + h) * hd, src + (h * n + r) * hd, (size_t)hd * sizeof(float));
    return ATTN_OK;
}
static int op_add(const model_devops_t *o, float *x, const float *h, int64_t count, attn_err_t *err) {
    (void)err;
    COUNT_OP(o);
    for (int64_t i = 0; i < count; i++)
        x[i] += h[i];
    return ATTN_OK;
}
static int op_swiglu(const model_devops_t *o, float *gate, const float *up, int64_t count, attn_err_t *err) {
    (void)err;
    COUNT_OP(o);
    for (int64_t i = 0; i < count; i++) {
        float g = gate[i];
        gate[i] = g / (1 + exp(-g)) * up[i];
    }
    return ATTN_OK;
}
static int op_kv_store(const model_devops_t *o, void *slab, attn_dtype_t dt, int64_t cap, int64_t at, const float *rows,
                       int64_t n, int64_t heads, int64_t hd, attn_err_t *err) {
    if (!dv_has(DEV(o), slab, (size_t)(heads * cap * hd) * sizeof(float)))
        return attn_fail(err, ATTN_EUSAGE, "stand-in: kv_store into memory that is not the device's");
    COUNT_OP(o);
    float *s = slab;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < hd; i++)
                s[(h * cap + at + r) * hd + i] = model_round_dtype(dt, rows[(r * heads + h) * hd + i]);
    return ATTN_OK;
}

static model_devops_t ops_for(fakedev_t *d) {
    return (model_devops_t){op_alloc, op_release, op_up, op_down, op_embed, op_linear, op_rmsnorm, op_rope,
                            op_to_heads, op_from_heads, op_add, op_swiglu, op_kv_store, 0, d};
}

/* ---- the per-call dense hook, counted as dense_cuda.cu moves: x up, out down per call ---- */
static double hook_up, hook_down;
static int hook_linear(const model_dense_t *d, float *out, const float *x, const float *w, int64_t n, int64_t out_dim,
                       int64_t in_dim, attn_err_t *err) {
    (void)d, (void)err;
    hook_up += (double)(n * in_dim) * sizeof(float), hook_down += (double)(n * out_dim) * sizeof(float);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out_dim, (int)in_dim, 1, x, (int)in_dim, w,
                (int)in_dim, 0, out, (int)out_dim);
    return ATTN_OK;
}
static const model_dense_t hook = {hook_linear, NULL};

/* ---- the GPU attention stand-in: checks where its arrays are, then the emulated backend ---- */
typedef struct {
    attn_backend_t be;
    const attn_backend_t *inner;
    fakedev_t *dev;
    long calls, misplaced;
    int ranks;          /* > 1: a cuda_local distributed backend's stand-in, cutting K/V shards from the device */
    long shard_checks, bad_shards;
    long qo_checks, bad_qo; /* device_qo: Q cut and O/LSE written back by the runs, every layout */
    double qo_bytes; /* what blockwise_cuda's device-KV path moves per call with host Q/O: Q up, O and LSE down */
} att_t;

/* What cudaMemcpy2DAsync does with dist_run_copy2d's arguments, on the host. */
static void copy2d(void *dst, const void *src, dist_copy2d_t c) {
    for (size_t r = 0; r < c.height; r++)
        memcpy((char *)dst + c.dst + r * c.dpitch, (const char *)src + c.src + r * c.spitch, c.width);
}

/* Every rank's shard of whole (outer, n, d) under layout `kind` over P ranks, cut by the runs the
 * GPU backends give cudaMemcpy2DAsync (ring_cuda_shard_dev: K/V and Q shards), equals
 * dist_shard_copy's and is covered exactly (a NaN sentinel stays nowhere); written back by the
 * same runs (O and LSE shards, d = 1 for the LSE) into a whole of NaN, the P shards rebuild
 * whole bit for bit (every element once) as dist_shard_copy's way back does. */
static int runs_roundtrip(int kind, int P, int64_t n, int64_t outer, int64_t d, const float *whole) {
    attn_layout_t l;
    attn_err_t err = {0};
    if (layout_init(&l, (attn_layout_kind_t)kind, n, P, &err) != ATTN_OK)
        return 0;
    size_t all = (size_t)(outer * n * d);
    float *back = malloc(all * sizeof *back + 4), *ref = malloc(all * sizeof *ref + 4);
    int ok = back && ref;
    for (size_t i = 0; ok && i < all; i++)
        back[i] = ref[i] = NAN;
    for (int r = 0; r < P && ok; r++) {
        size_t nel = (size_t)(outer * layout_local_count(&l, r) * d);
        float *want = malloc(nel * sizeof *want + 4), *got = malloc(nel * sizeof *got + 4);
        dist_run_t *runs = malloc((size_t)(2 * outer) * sizeof *runs);
        int cnt = want && got && runs ? dist_shard_runs(&l, r, outer, d, runs, (int)(2 * outer)) : -1;
        ok = cnt >= 0 && cnt <= 2 * outer;
        if (ok) {
            dist_shard_copy(&l, r, outer, d, want, (float *)whole, 1);
            for (size_t i = 0; i < nel; i++)
                got[i] = NAN;
            for (int i = 0; i < cnt; i++)
                copy2d(got, whole, dist_run_copy2d(&runs[i], d, sizeof(float), 1));
            ok = !memcmp(want, got, nel * sizeof *got);
            for (int i = 0; i < cnt; i++)
                copy2d(back, got, dist_run_copy2d(&runs[i], d, sizeof(float), 0));
            dist_shard_copy(&l, r, outer, d, want, ref, 0);
        }
        free(want), free(got), free(runs);
    }
    ok = ok && !memcmp(back, ref, all * sizeof *back) && !memcmp(back, whole, all * sizeof *back);
    free(back), free(ref);
    return ok;
}

static int shards_match(int kind, int P, const attn_problem_t *p, const float *whole) {
    return runs_roundtrip(kind, P, p->n_k, p->batch * p->kv_heads, p->head_dim, whole);
}

static int att_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                        size_t len) {
    const att_t *a = (const att_t *)self;
    if (a->dev->dry)
        return 1;
    attn_exec_t h = *x;
    h.kv_device = h.qo_device = 0;
    return backend_supports(a->inner, p, &h, reason, len);
}

static int att_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                       attn_err_t *err) {
    att_t *a = (att_t *)self;
    size_t qb = problem_numel_q(p) * sizeof(float), kb = problem_numel_kv(p) * sizeof(float);
    size_t lb = problem_numel_lse(p) * sizeof(float);
    int qo_dev = dv_has(a->dev, io->q, qb) && dv_has(a->dev, io->o, qb) && dv_has(a->dev, io->lse, lb);
    a->calls++;
    a->misplaced += !x->kv_device || !dv_has(a->dev, io->k, kb) || !dv_has(a->dev, io->v, kb) ||
                    qo_dev != (x->qo_device && a->be.device_qo);
    if (!x->qo_device)
        a->qo_bytes += (double)(qb + qb + lb);
    if (a->dev->dry)
        return ATTN_OK;
    if (a->ranks > 1) /* each rank's K and V shard as dist_cuda.cu cuts it from a device cache */
        for (int kind = LAYOUT_CONTIGUOUS; kind <= LAYOUT_ZIGZAG; kind++)
            for (int t = 0; t < 2; t++)
                a->bad_shards += !shards_match(kind, a->ranks, p, t ? io->v : io->k), a->shard_checks++;
    if (a->ranks > 1 && x->qo_device)
        for (int kind = LAYOUT_CONTIGUOUS; kind <= LAYOUT_ZIGZAG; kind++)
            a->bad_qo += !runs_roundtrip(kind, a->ranks, p->n_q, p->batch * p->heads, p->head_dim, io->q),
                a->qo_checks++;
    attn_exec_t h = *x;
    h.kv_device = h.qo_device = 0;
    int rc = a->inner->forward(a->inner, p, &h, io, err);
    if (rc == ATTN_OK && a->ranks > 1 && x->qo_device) /* O and LSE as the ranks write them back */
        for (int kind = LAYOUT_CONTIGUOUS; kind <= LAYOUT_ZIGZAG; kind++) {
            int64_t BH = p->batch * p->heads;
            a->bad_qo += !runs_roundtrip(kind, a->ranks, p->n_q, BH, p->head_dim, io->o) +
                         !runs_roundtrip(kind, a->ranks, p->n_q, BH, 1, io->lse);
            a->qo_checks += 2;
        }
    return rc;
}

static void att_init(att_t *a, const attn_backend_t *inner, fakedev_t *dev, int device_qo) {
    memset(a, 0, sizeof *a);
    a->inner = inner, a->dev = dev;
    a->be = (attn_backend_t){.name = "devact-standin", .device = "cuda", .description = "device attention stand-in",
                             .supports = att_supports, .forward = att_forward, .device_kv = 1, .device_qo = device_qo};
}

/* Prefill n tokens (n_logits 1), then `steps` decoding steps of one token each; logits appended. */
static int run(const model_t *m, model_cache_t *c, const attn_backend_t *be, const int32_t *tok, int64_t n,
               int steps, double *logits, attn_err_t *err) {
    attn_problem_t t = {0};
    t.mask = ATTN_MASK_CAUSAL, t.dtype = ATTN_BF16;
    attn_exec_t x = {.threads = 1, .layout = -1};
    int64_t V = m->cfg.vocab_size;
    ATTN_TRY(model_forward(m, c, be, &t, &x, tok, n, 1, logits, err));
    for (int s = 0; s < steps; s++)
        ATTN_TRY(model_forward(m, c, be, &t, &x, tok + n + s, 1, 1, logits + (s + 1) * V, err));
    return ATTN_OK;
}

/* Device path (devops) vs the host path on the same kind of space cache: bits and bytes. */
static void compare(model_t *m, const int32_t *tok, int64_t n, int steps, int64_t extra_room, int device_qo,
                    bf16_emu_t *emu, int ranks) {
    const model_config_t *cfg = &m->cfg;
    int64_t V = cfg->vocab_size, L = cfg->num_hidden_layers, D = cfg->hidden_size, H = cfg->num_attention_heads;
    int64_t hd = cfg->head_dim, Hkv = cfg->num_key_value_heads, cap = n + steps + extra_room;
    fakedev_t dd = {0}, hd_ = {0};
    model_devops_t ops = ops_for(&dd);
    model_memspace_t dsp = {sp_elem, sp_alloc, sp_release, sp_put, sp_copy, 0, &dd};
    model_memspace_t hsp = {sp_elem, sp_alloc, sp_release, sp_put, sp_copy, 0, &hd_};
    att_t da, ha;
    att_init(&da, &emu->be, &dd, device_qo);
    att_init(&ha, &emu->be, &hd_, 0);
    da.ranks = ranks;
    model_t dm = *m, hm = *m;
    dm.devops = &ops, hm.dense = &hook;
    ops_model = m;
    double *dl = calloc((size_t)((steps + 1) * V), sizeof *dl), *hl = calloc((size_t)((steps + 1) * V), sizeof *hl);
    model_cache_t dc, hc;
    attn_err_t de = {0}, he = {0};
    hook_up = hook_down = 0;
    int drc = model_cache_init_in(&dc, cfg, ATTN_BF16, cap, &dsp, &de);
    int hrc = model_cache_init_in(&hc, cfg, ATTN_BF16, cap, &hsp, &he);
    if (drc == ATTN_OK)
        drc = run(&dm, &dc, &da.be, tok, n, steps, dl, &de);
    if (hrc == ATTN_OK)
        hrc = run(&hm, &hc, &ha.be, tok, n, steps, hl, &he);
    char what[160];
    snprintf(what, sizeof what, "n %lld + %d steps, H_kv %lld, cache room %lld, %s%s", (long long)n, steps,
             (long long)Hkv, (long long)extra_room, device_qo ? "Q/O on the device" : "backend without device_qo",
             ranks > 1 ? " (cuda_local distributed stand-in, P 3)" : "");
    if (check(drc == ATTN_OK && hrc == ATTN_OK && dl && hl, what, "device: %s; host: %s", de.msg, he.msg)) {
        int same = !memcmp(dl, hl, (size_t)((steps + 1) * V) * sizeof *dl);
        size_t kvb = (size_t)(Hkv * cap * hd) * sizeof(float);
        for (int64_t l = 0; l < L; l++)
            same &= !memcmp(dc.k[l], hc.k[l], kvb) && !memcmp(dc.v[l], hc.v[l], kvb);
        checkf(same && dc.len == hc.len, "%s: logits and KV cache equal the host forward's bit for bit", what);
        if (ranks > 1)
            checkf(da.shard_checks > 0 && da.bad_shards == 0,
                   "%s: %ld K/V shards (contiguous, striped, zigzag) cut from the device cache by dist_shard_runs equal "
                   "dist_shard_copy's", what, da.shard_checks);
        if (ranks > 1 && device_qo)
            checkf(da.qo_checks > 0 && da.bad_qo == 0,
                   "%s: %ld Q cuts and O/LSE write-backs (three layouts) by dist_run_copy2d's runs equal "
                   "dist_shard_copy's both ways", what, da.qo_checks);
        /* Per forward: its tokens up, one logit row down; per layer nothing, or Q down and O up. */
        double tokens = (double)(n + steps) * sizeof(int32_t), rows = (double)(steps + 1) * V * sizeof(float);
        double per_layer = device_qo ? 0 : (double)L * (double)(n + steps) * (double)(H * hd) * 2 * sizeof(float);
        checkf(dd.up + dd.down == tokens + rows + per_layer && dd.put == 0 && da.misplaced == 0 &&
                   da.calls == L * (steps + 1),
               "%s: moved %.0f B up + %.0f B down (tokens %.0f + logit rows %.0f + per layer %.0f), %ld attention "
               "calls all on device arrays; the per-call hook path moved %.0f B (dense %.0f up, %.0f down; KV put %.0f; "
               "attention Q/O %.0f) for D %lld",
               what, dd.up, dd.down, tokens, rows, per_layer, da.calls, hook_up + hook_down + hd_.put + ha.qo_bytes,
               hook_up, hook_down, hd_.put, ha.qo_bytes, (long long)D);
    }
    if (drc == ATTN_OK || dc.k)
        model_cache_free(&dc);
    if (hrc == ATTN_OK || hc.k)
        model_cache_free(&hc);
    free(dl), free(hl);
}

/* --task model's GPU path (tasks/model_dev_run.c) on the stand-in: which backends take it, the
 * logits of two forwards on the one cache (refilled from position 0) equal the host path's
 * (model_forward without a cache, as the task runs a CPU backend), and each moves its tokens up
 * and its logit rows down only: nothing per layer with device_qo, Q/O per layer without. */
static void model_task_path(model_t *m, const int32_t *tok, bf16_emu_t *emu, int device_qo, int ranks) {
    const model_config_t *cfg = &m->cfg;
    int64_t n = 160, rows = 4, V = cfg->vocab_size, L = cfg->num_hidden_layers;
    fakedev_t dd = {0};
    model_devops_t ops = ops_for(&dd);
    model_memspace_t dsp = {sp_elem, sp_alloc, sp_release, sp_put, sp_copy, 0, &dd};
    model_dev_path_t path = {&ops, &dsp}, none = {0};
    att_t da;
    att_init(&da, &emu->be, &dd, device_qo);
    da.ranks = ranks;
    ops_model = m;
    attn_problem_t t = {0};
    t.mask = ATTN_MASK_CAUSAL, t.dtype = ATTN_BF16;
    attn_exec_t x = {.threads = 1, .layout = -1}, xn = x;
    xn.transport = ATTN_TRANSPORT_NCCL;
    attn_problem_t t32 = t;
    t32.dtype = ATTN_F32;
    char what[128];
    snprintf(what, sizeof what, "--task model path, %s%s", device_qo ? "device_qo" : "no device_qo",
             ranks > 1 ? ", cuda_local distributed stand-in P 3" : "");
    checkf(model_dev_takes(&path, m, &da.be, &t, &x, n) && !model_dev_takes(&none, m, &da.be, &t, &x, n) &&
               !model_dev_takes(&path, m, &da.be, &t32, &x, n) && !model_dev_takes(&path, m, &da.be, &t, &xn, n) &&
               !model_dev_takes(&path, m, &emu->be, &t, &x, n),
           "%s: taken for a device_kv backend in bf16 in one process; not without a path, in f32, under nccl, or for "
           "a backend without device_kv", what);
    double *got = calloc((size_t)(2 * rows * V), sizeof *got), *want = calloc((size_t)(rows * V), sizeof *want);
    model_cache_t c = {0};
    attn_err_t e = {0};
    int rc = got && want ? ATTN_OK : ATTN_ERUNTIME;
    for (int i = 0; i < 2 && rc == ATTN_OK; i++)
        rc = model_dev_run(m, &path, &c, &da.be, &t, &x, tok, n, rows, got + i * rows * V, &e);
    if (c.k)
        model_cache_free(&c);
    double bytes = dd.up + dd.down, puts = dd.put;
    if (rc == ATTN_OK)
        rc = model_forward(m, NULL, &emu->be, &t, &x, tok, n, rows, want, &e);
    size_t lb = (size_t)(rows * V) * sizeof *got;
    double per = (double)n * sizeof(int32_t) + (double)lb / 2; /* tokens up, float32 logit rows down */
    double qo = device_qo ? 0 : (double)L * (double)n * (double)(cfg->num_attention_heads * cfg->head_dim) * 8;
    if (check(rc == ATTN_OK, what, "%s", e.msg)) {
        checkf(!memcmp(got, want, lb) && !memcmp(got + rows * V, want, lb),
               "%s: two forwards on one device cache give the host path's %lld logit rows bit for bit", what,
               (long long)rows);
        checkf(bytes == 2 * (per + qo) && puts == 0 && da.misplaced == 0 && da.calls == 2 * L,
               "%s, %lld tokens: %.0f B crossed in 2 forwards = 2 × (tokens + logit rows %.0f + Q/O per layer %.0f)",
               what, (long long)n, bytes, per, qo);
        if (ranks > 1)
            checkf(da.bad_shards == 0 && da.bad_qo == 0 && da.shard_checks > 0 && (!device_qo || da.qo_checks > 0),
                   "%s: shards cut and written back as dist_shard_copy's", what);
    }
    free(got), free(want);
}

/* Bytes the per-call hook path moves per token and layer (the dense calls, the K/V put, the
 * attention's Q up and O/LSE down), from the configuration: the counters above confirm it. */
static double hook_bytes_per_token_layer(const model_config_t *c) {
    double D = c->hidden_size, Hd = (double)c->num_attention_heads * c->head_dim;
    double Kd = (double)c->num_key_value_heads * c->head_dim, F = c->intermediate_size, H = c->num_attention_heads;
    double up = 3 * D /* k, v, q in */ + Hd /* o in */ + 2 * D /* gate, up in */ + F /* down in */;
    double down = 2 * Kd + Hd + D + 2 * F + D;
    return 4 * (up + down + 2 * Kd /* KV put */ + Hd /* Q up */ + Hd + H /* O, LSE down */);
}

/* A dry prefill of n tokens: nothing behind the device pointers, the ops only count. device_qo
 * 0: an attention that takes Q/O on the host (the cuda_local distributed backends before they
 * took device Q/O), whose Q down and O up per layer are counted too. */
static void dry_prefill(const model_t *m, int64_t n, int device_qo) {
    fakedev_t dd = {.dry = 1};
    model_devops_t ops = ops_for(&dd);
    model_memspace_t sp = {sp_elem, sp_alloc, sp_release, sp_put, sp_copy, 0, &dd};
    att_t a;
    att_init(&a, NULL, &dd, device_qo);
    model_t dm = *m;
    dm.devops = &ops;
    int32_t *tok = calloc((size_t)n, sizeof *tok);
    double *logits = calloc((size_t)m->cfg.vocab_size, sizeof *logits);
    model_cache_t c;
    attn_err_t err = {0};
    int rc = tok && logits ? model_cache_init_in(&c, &m->cfg, ATTN_BF16, n, &sp, &err) : ATTN_ERUNTIME;
    if (rc == ATTN_OK) {
        attn_problem_t t = {0};
        t.mask = ATTN_MASK_CAUSAL, t.dtype = ATTN_BF16;
        attn_exec_t x = {.threads = 1, .layout = -1};
        rc = model_forward(&dm, &c, &a.be, &t, &x, tok, n, 1, logits, &err);
        model_cache_free(&c);
    }
    double L = m->cfg.num_hidden_layers, V = m->cfg.vocab_size, want = 4.0 * (double)n + 4 * V;
    double qo = device_qo ? 0 : (double)m->cfg.num_attention_heads * m->cfg.head_dim * 8; /* per token, layer */
    want += qo * (double)n * L;
    double before = hook_bytes_per_token_layer(&m->cfg) * (double)n * L;
    long moves = device_qo ? 1 : 1 + (long)L; /* + O up, Q down per layer */
    /* the backend's own side with host Q/O: Q up, O and LSE down per layer, float32 */
    double own = device_qo ? 0 : (double)n * L * m->cfg.num_attention_heads * (2.0 * m->cfg.head_dim + 1) * 4;
    checkf(rc == ATTN_OK && dd.up + dd.down == want && dd.ups == moves && dd.downs == moves && a.misplaced == 0 &&
               a.calls == (long)L && a.qo_bytes == own,
           "dry %lld-token prefill (D %d, L %d, %s): %.0f B moved (%ld up, %ld down) = 4 B/token + one logit row + "
           "%.0f B per token and layer, beside the attention's own Q up / O, LSE down %.0f B; the per-call hook path: "
           "%.3g B (%.0f B per token and layer) %s",
           (long long)n, m->cfg.hidden_size, m->cfg.num_hidden_layers, device_qo ? "device Q/O" : "host Q/O",
           dd.up + dd.down, dd.ups, dd.downs, qo, a.qo_bytes, before, hook_bytes_per_token_layer(&m->cfg), err.msg);
    free(tok), free(logits);
}

int main(void) {
    parallel_set_blas_threads(1);
    model_t m;
    int32_t tok[MODEL_FIXTURE_N];
    bf16_emu_t emu;
    if (!model_fixture_init(&m, tok) || !check(bf16_emu_init(&emu, "blockwise"), "blockwise registered", "no"))
        return check_summary();
    compare(&m, tok, 200, 3, 0, 1, &emu, 1);   /* H_kv 2, cache exactly full: its slabs are the attention's */
    compare(&m, tok, 200, 3, 40, 1, &emu, 1);  /* room left: K/V gathered within the space */
    compare(&m, tok, 200, 3, 40, 0, &emu, 1);  /* a backend that takes Q/O on the host only */
    compare(&m, tok, 200, 3, 40, 0, &emu, 3);  /* …and a distributed one reading its shards from the cache */
    compare(&m, tok, 200, 3, 40, 1, &emu, 3);  /* …and one that takes Q/O on the device too (device_qo) */
    model_task_path(&m, tok, &emu, 1, 1);
    model_task_path(&m, tok, &emu, 1, 3);
    model_task_path(&m, tok, &emu, 0, 1);
    /* dist_shard_runs on its own: ranks with no rows, uneven and tiny sequences, every layout. */
    {
        long bad = 0, cases = 0;
        for (int P = 1; P <= 8; P++)
            for (int64_t n = 1; n <= 70; n += 23)
                for (int kind = LAYOUT_CONTIGUOUS; kind <= LAYOUT_ZIGZAG; kind++) {
                    attn_problem_t p = {.batch = 2, .kv_heads = 3, .head_dim = 5, .n_k = n};
                    float *whole = malloc((size_t)(6 * n * 5) * sizeof *whole);
                    for (int64_t i = 0; whole && i < 6 * n * 5; i++)
                        whole[i] = (float)i;
                    attn_layout_t l;
                    attn_err_t e = {0};
                    if (layout_init(&l, (attn_layout_kind_t)kind, n, P, &e) != ATTN_OK) /* zigzag needs n ≥ 2P */
                        continue;
                    cases++, bad += !whole || !shards_match(kind, P, &p, whole) ||
                                    !runs_roundtrip(kind, P, n, 6, 1, whole); /* d = 1: the LSE's */
                    free(whole);
                }
        checkf(cases > 50 && bad == 0, "dist_shard_runs: %ld layouts (P 1…8, n 1…70, contiguous/striped/zigzag, 6 "
               "slabs, d 5 and 1) cut every rank's shard and write it back as dist_shard_copy does", cases);
    }
    /* The hook's counters agree with the per-token formula the 10⁶ estimate uses. */
    {
        model_config_t c = m.cfg;
        fakedev_t hd_ = {0};
        model_memspace_t hsp = {sp_elem, sp_alloc, sp_release, sp_put, sp_copy, 0, &hd_};
        att_t ha;
        att_init(&ha, &emu.be, &hd_, 0);
        model_t hm = m;
        hm.dense = &hook;
        hook_up = hook_down = 0;
        model_cache_t hc;
        attn_err_t e = {0};
        double *lg = calloc((size_t)c.vocab_size, sizeof *lg);
        int rc = model_cache_init_in(&hc, &c, ATTN_BF16, 256, &hsp, &e);
        if (rc == ATTN_OK) {
            attn_problem_t t = {0};
            t.mask = ATTN_MASK_CAUSAL, t.dtype = ATTN_BF16;
            attn_exec_t x = {.threads = 1, .layout = -1};
            rc = model_forward(&hm, &hc, &ha.be, &t, &x, tok, 256, 1, lg, &e);
            model_cache_free(&hc);
        }
        /* the head's rows (lm_head: D up, V down) are the one per-forward term */
        double got = hook_up + hook_down + hd_.put + ha.qo_bytes, head = 4.0 * (c.hidden_size + c.vocab_size);
        double want = hook_bytes_per_token_layer(&c) * 256 * c.num_hidden_layers + head;
        checkf(rc == ATTN_OK && got == want, "per-call hook path, 256 tokens: %.0f B counted = %.0f B from the formula",
               got, want);
        free(lg);
    }
    /* At 10⁶ tokens: the fixture's shape and the needle model's (tasks/needle_model.c: hidden
     * 256, 2 heads of 128 over 1 kv head, MLP 8, 2 layers). */
    dry_prefill(&m, 1048576, 1);
    dry_prefill(&m, 65536, 0);
    model_t nm;
    model_config_t nc;
    model_config_defaults(&nc);
    nc.hidden_size = 256, nc.num_hidden_layers = 2, nc.num_attention_heads = 2, nc.num_key_value_heads = 1;
    nc.head_dim = 128, nc.intermediate_size = 8, nc.vocab_size = 512, nc.rotary_fraction = 0.25;
    attn_err_t e = {0};
    if (check(model_init_zero(&nm, &nc, &e) == ATTN_OK, "needle-shaped model", "%s", e.msg)) {
        dry_prefill(&nm, 1048576, 1);
        dry_prefill(&nm, 65536, 0);
        model_free(&nm);
    }
    model_free(&m);
    return check_summary();
}
