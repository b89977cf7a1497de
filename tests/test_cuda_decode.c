/* test_cuda_decode.c — the GPU side of issue 19 (label gpu; exits 77 without a device):
 * blockwise_cuda through the decode split kernels (n_q ∈ {1, 16, 64}, GQA 8/1 and 8/2, masks
 * none/causal/window, n_k = 65536) passes the bf16 rule against the float64 reference with a
 * split > 1 in its config; and the model's dense layers on the GPU (cuBLAS float32, no TF32)
 * give the host's logits to float32 rounding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/rng.h"
#include "impls/cuda/dense_cuda.h"
#include "impls/parallel/dist_model.h"
#include "tests/check.h"
#include "tests/exactness_case.h"

static void decode_cases(void) {
    const char *shapes[] = {"kv-heads=1", "kv-heads=2"};
    for (int s = 0; s < 2; s++) {
        char args[512];
        snprintf(args, sizeof args,
                 "backends=blockwise_cuda dtype=bf16 heads=8 %s head-dim=128 seq-len=65536 q-len=1,16,64 "
                 "mask=none,causal,window window=4096",
                 shapes[s]);
        attn_run_t run;
        attn_err_t err = {0};
        if (!check(exactness_case(args, 0, "test_cuda_decode", &run, &err) == ATTN_OK, args, "%s", err.msg))
            continue;
        for (int i = 0; i < run.n_records; i++) {
            const attn_record_t *r = &run.records[i];
            double split = 0;
            for (int e = 0; e < r->n_extra; e++)
                if (!strcmp(r->extra[e].key, "split"))
                    split = r->extra[e].num;
            char name[200];
            snprintf(name, sizeof name, "blockwise_cuda %s n_q=%lld mask=%s split=%g: %s", shapes[s],
                     (long long)r->config.n_q, mask_name(r->config.mask), split, status_name(r->status));
            check(r->status == REC_PASS && split > 1, name, "%s", r->reason);
        }
        results_run_free(&run);
    }
}

static double rel_l2(const double *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++)
        num += (a[i] - ref[i]) * (a[i] - ref[i]), den += ref[i] * ref[i];
    return sqrt(num / (den > 0 ? den : 1));
}

static void dense_case(void) {
    model_config_t cfg;
    model_config_defaults(&cfg);
    cfg.hidden_size = 256, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 4, cfg.num_key_value_heads = 2;
    cfg.head_dim = 64, cfg.intermediate_size = 512, cfg.vocab_size = 211;
    model_t m;
    attn_err_t err = {0};
    if (!check(model_init_random(&m, &cfg, 7, &err) == ATTN_OK, "model", "%s", err.msg))
        return;
    enum { N = 512 };
    int32_t tok[N];
    for (int i = 0; i < N; i++)
        tok[i] = (int32_t)(rng_u64(11, 99, (uint64_t)i) % (uint64_t)cfg.vocab_size);
    size_t nl = (size_t)N * cfg.vocab_size;
    double *host = malloc(nl * sizeof *host), *gpu = malloc(nl * sizeof *gpu);
    attn_problem_t t = {.mask = ATTN_MASK_CAUSAL, .dtype = ATTN_F32};
    attn_exec_t x = {.threads = 0, .layout = -1};
    model_dense_t d;
    const attn_backend_t *bw = registry_find("blockwise");
    if (check(cuda_dense_create(&m, 0, &d, &err) == ATTN_OK, "GPU dense layers", "%s", err.msg)) {
        model_t md = m;
        md.dense = &d;
        int ok = dist_model_run(&m, NULL, bw, &t, &x, tok, N, N, host, &err) == ATTN_OK &&
                 dist_model_run(&md, NULL, bw, &t, &x, tok, N, N, gpu, &err) == ATTN_OK;
        double e = ok ? rel_l2(gpu, host, nl) : INFINITY;
        char name[160];
        snprintf(name, sizeof name, "cuBLAS float32 dense layers vs the host's: logits rel L2 %.3g (≤ 1e-5)", e);
        check(ok && e <= 1e-5, name, "%s", err.msg);
        cuda_dense_free(&d);
    }
    free(host), free(gpu);
    model_free(&m);
}

int main(void) {
    char why[256];
    if (device_count(why, sizeof why) <= 0) {
        printf("skip: no CUDA device (%s)\n", why);
        return 77;
    }
    decode_cases();
    dense_case();
    return check_summary();
}
