/* test_cuda_model_dev.c — the device-resident model forward on a GPU (label gpu; exits 77 without
 * a device): model_dev.cu's ops and a device KV cache against the per-call path (dense_cuda's
 * SGEMMs, host activations, the same cache and attention), prefill then decoding steps:
 * naive_cuda on a float32 cache (Q down, O up per layer) to float32 rounding (logits rel L2 ≤ 1e-5,
 * the bound test_cuda_decode.c holds the dense layers to); blockwise_cuda on a bf16 cache with
 * Q/O/LSE on the device, where float32-level differences can flip a K/V value's bf16 rounding,
 * within a quarter of a bf16 unit (1e-3); and blockwise_cuda's device-Q/O attention equal, bit
 * for bit, to its host-Q/O attention on the same device K/V; the same for the cuda_local
 * distributed backends (device_qo: Q shards cut and O/LSE written back on the device), and
 * ring_cuda (P 4) through the resident forward within 1e-3 of its per-call path. Host plumbing:
 * test_model_device.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/rng.h"
#include "impls/cuda/dense_cuda.h"
#include "impls/cuda/kv_device.h"
#include "impls/cuda/model_dev.h"
#include "tests/check.h"

enum { N = 512, STEPS = 2 };

static double rel_l2(const double *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++)
        num += (a[i] - ref[i]) * (a[i] - ref[i]), den += ref[i] * ref[i];
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Prefill N tokens (one logit row), then STEPS single-token steps; logits (1 + STEPS, V). */
static int run(const model_t *m, const model_memspace_t *sp, const attn_backend_t *be, attn_dtype_t dt, int ranks,
               const int32_t *tok, double *logits, attn_err_t *err) {
    model_cache_t c;
    ATTN_TRY(model_cache_init_in(&c, &m->cfg, dt, N + STEPS, sp, err));
    attn_problem_t t = {.mask = ATTN_MASK_CAUSAL, .dtype = dt};
    attn_exec_t x = {.threads = 0, .layout = -1, .ranks = ranks};
    if (ranks > 1)
        x.transport = ATTN_TRANSPORT_CUDA_LOCAL;
    int64_t V = m->cfg.vocab_size;
    int rc = model_forward(m, &c, be, &t, &x, tok, N, 1, logits, err);
    for (int s = 0; rc == ATTN_OK && s < STEPS; s++)
        rc = model_forward(m, &c, be, &t, &x, tok + N + s, 1, 1, logits + (s + 1) * V, err);
    model_cache_free(&c);
    return rc;
}

static void forward_case(model_t *m, const model_dense_t *d, const model_devops_t *o, const model_memspace_t *sp,
                         const char *backend, attn_dtype_t dt, double bound, int ranks, const int32_t *tok) {
    size_t nl = (size_t)(1 + STEPS) * m->cfg.vocab_size;
    double *per_call = malloc(nl * sizeof *per_call), *resident = malloc(nl * sizeof *resident);
    model_t hook = *m, dev = *m;
    hook.dense = d, dev.dense = d, dev.devops = o;
    attn_err_t err = {0};
    const attn_backend_t *be = registry_find(backend);
    int ok = per_call && resident && be && run(&hook, sp, be, dt, ranks, tok, per_call, &err) == ATTN_OK &&
             run(&dev, sp, be, dt, ranks, tok, resident, &err) == ATTN_OK;
    double e = ok ? rel_l2(resident, per_call, nl) : INFINITY;
    char name[200];
    snprintf(name, sizeof name, "%s (P %d), %s cache: the resident forward's logits vs the per-call path's, rel L2 %.3g "
             "(≤ %g)", backend, ranks, dtype_name(dt), e, bound);
    check(ok && e <= bound, name, "%s", err.msg);
    free(per_call), free(resident);
}

/* `backend` on device K/V: Q/O/LSE in device memory (qo_device) vs on the host; distributed ones
 * on P cuda_local ranks (usp_cuda: U 2), on a square causal problem (a prefill's). */
static void qo_case(const model_memspace_t *sp, const model_devops_t *dv_ops, const char *backend, int ranks) {
    attn_problem_t p = {.batch = 1, .heads = 4, .kv_heads = 2, .head_dim = 64, .n_q = 300, .n_k = 1000,
                        .mask = ATTN_MASK_CAUSAL, .dtype = ATTN_BF16};
    if (ranks > 1)
        p.n_q = p.n_k = 512;
    size_t nq = problem_numel_q(&p), nkv = problem_numel_kv(&p), nl = problem_numel_lse(&p);
    float *q = malloc(nq * sizeof *q), *kv = malloc(nkv * sizeof *kv), *o = malloc(nq * sizeof *o);
    float *lse = malloc(nl * sizeof *lse), *o2 = malloc(nq * sizeof *o2), *lse2 = malloc(nl * sizeof *lse2);
    attn_err_t err = {0};
    void *dk = sp->alloc(sp, nkv * 2, &err), *dv = sp->alloc(sp, nkv * 2, &err);
    int ok = q && kv && o && lse && o2 && lse2 && dk && dv;
    for (size_t i = 0; ok && i < nq; i++)
        q[i] = (float)rng_value(3, 1, i);
    for (size_t i = 0; ok && i < nkv; i++)
        kv[i] = (float)rng_value(3, 2, i);
    ok = ok && sp->put(sp, dk, 0, kv, (int64_t)nkv, ATTN_BF16, &err) == ATTN_OK &&
         sp->put(sp, dv, 0, kv, (int64_t)nkv, ATTN_BF16, &err) == ATTN_OK;
    const attn_backend_t *be = registry_find(backend);
    attn_exec_t x = {.threads = 0, .layout = -1, .kv_device = 1, .ranks = ranks};
    if (ranks > 1)
        x.transport = ATTN_TRANSPORT_CUDA_LOCAL, x.ulysses_degree = 2;
    ok = ok && be;
    attn_io_t host_io = {.q = q, .k = dk, .v = dv, .o = o, .lse = lse};
    ok = ok && be->forward(be, &p, &x, &host_io, &err) == ATTN_OK;
    /* the same call with Q, O, LSE in device memory */
    void *dq = dv_ops->alloc(dv_ops, nq * 4, &err), *dout = dv_ops->alloc(dv_ops, nq * 4, &err);
    void *dlse = dv_ops->alloc(dv_ops, nl * 4, &err);
    ok = ok && dq && dout && dlse && dv_ops->up(dv_ops, dq, q, nq * 4, &err) == ATTN_OK;
    x.qo_device = 1;
    attn_io_t dev_io = {.q = dq, .k = dk, .v = dv, .o = dout, .lse = dlse};
    ok = ok && be->forward(be, &p, &x, &dev_io, &err) == ATTN_OK;
    ok = ok && dv_ops->down(dv_ops, o2, dout, nq * 4, &err) == ATTN_OK &&
         dv_ops->down(dv_ops, lse2, dlse, nl * 4, &err) == ATTN_OK;
    char name[200];
    snprintf(name, sizeof name, "%s (P %d) with Q/O/LSE in device memory: O and LSE equal the host-Q/O call's bit for bit",
             backend, ranks);
    check(ok && !memcmp(o, o2, nq * 4) && !memcmp(lse, lse2, nl * 4), name, "%s", err.msg);
    void *kvs[] = {dk, dv}, *qos[] = {dq, dout, dlse};
    for (int i = 0; i < 2; i++)
        if (kvs[i])
            sp->release(sp, kvs[i]);
    for (int i = 0; i < 3; i++)
        if (qos[i])
            dv_ops->release(dv_ops, qos[i]);
    free(q), free(kv), free(o), free(lse), free(o2), free(lse2);
}

int main(void) {
    char why[256];
    if (device_count(why, sizeof why) <= 0) {
        printf("skip: no CUDA device (%s)\n", why);
        return 77;
    }
    model_config_t cfg;
    model_config_defaults(&cfg);
    cfg.hidden_size = 256, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 4, cfg.num_key_value_heads = 2;
    cfg.head_dim = 64, cfg.intermediate_size = 512, cfg.vocab_size = 211;
    model_t m;
    attn_err_t err = {0};
    if (!check(model_init_random(&m, &cfg, 7, &err) == ATTN_OK, "model", "%s", err.msg))
        return check_summary();
    int32_t tok[N + STEPS];
    for (int i = 0; i < N + STEPS; i++)
        tok[i] = (int32_t)(rng_u64(11, 99, (uint64_t)i) % (uint64_t)cfg.vocab_size);
    model_dense_t d;
    model_devops_t o;
    model_memspace_t sp;
    if (check(cuda_dense_create(&m, 0, &d, &err) == ATTN_OK && cuda_kv_space_create(0, &sp, &err) == ATTN_OK &&
                  cuda_devops_create(&m, &d, 0, &o, &err) == ATTN_OK,
              "GPU dense layers, KV space, device ops", "%s", err.msg)) {
        forward_case(&m, &d, &o, &sp, "naive_cuda", ATTN_F32, 1e-5, 1, tok);
        forward_case(&m, &d, &o, &sp, "blockwise_cuda", ATTN_BF16, 1e-3, 1, tok);
        forward_case(&m, &d, &o, &sp, "ring_cuda", ATTN_BF16, 1e-3, 4, tok);
        qo_case(&sp, &o, "blockwise_cuda", 1);
        static const char *const dist[] = {"ring_cuda", "striped_cuda", "zigzag_cuda", "ulysses_cuda", "usp_cuda"};
        for (int i = 0; i < 5; i++)
            qo_case(&sp, &o, dist[i], i == 3 ? 2 : 4); /* ulysses: 4 heads over 2 kv heads split over 2 ranks */
        cuda_devops_free(&o);
        cuda_kv_space_free(&sp);
        cuda_dense_free(&d);
    }
    model_free(&m);
    return check_summary();
}
