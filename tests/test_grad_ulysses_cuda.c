/* test_grad_ulysses_cuda.c — ulysses_cuda's backward (ulysses_cuda_grad.cu) on cuda_local at P = 2, 4
 * and 8 in bf16 against the float64 gradient reference (tasks/grad_check.c), with test_grad_cuda's
 * bound (2 × a naive bf16 backward's error in the same case; docs/backward.md, GPU section):
 * masks × GQA (whole and replicated kv heads) × odd n and ranks without tokens × n_q < n_k ×
 * d 64/128 × packed documents. Exits 77 without a CUDA device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/device.h"
#include "tasks/grad_check.h"
#include "tests/check.h"

/* Forward then backward of be on the reference's float32 inputs as the bf16 problem p (the
 * upload rounds them to bf16, as blockwise_cuda's does). */
static int run_backend(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x,
                       const grad_reference_t *g, float *dq, float *dk, float *dv, attn_err_t *err) {
    float *o = malloc(sizeof(float) * problem_numel_q(p) + 4), *lse = malloc(sizeof(float) * problem_numel_lse(p) + 4);
    attn_io_t io = {.q = g->in.q, .k = g->in.k, .v = g->in.v, .o = o, .lse = lse};
    int rc = be->forward(be, p, x, &io, err);
    attn_grad_io_t gi = {.q = g->in.q, .k = g->in.k, .v = g->in.v, .o = o, .lse = lse, .d_o = g->d_o,
                         .dq = dq, .dk = dk, .dv = dv};
    if (rc == ATTN_OK)
        rc = be->backward(be, p, x, &gi, err);
    free(o), free(lse);
    return rc;
}

int main(void) {
    char why[256];
    if (device_count(why, sizeof why) == 0) {
        printf("SKIP: %s\n", why);
        return 77;
    }
    const attn_backend_t *be = registry_find("ulysses_cuda");
    if (!check(be != NULL, "ulysses_cuda registered", "not in this build"))
        return check_summary();
    int64_t ns[] = {7, 130, 300};
    int ranks[] = {2, 4, 8};
    attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    attn_exec_t x = exec_default();
    x.threads = 2;
    double worst[3] = {0};
    static int64_t off[64];
    for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++)
        for (int mi = 0; mi < 3; mi++)
            for (int64_t kvh = 8; kvh >= 1; kvh /= 4) /* H = 8: whole kv heads (8), shared at P = 8 (2) */
                for (int qv = 0; qv < 2; qv++)
                    for (int docs = 0; docs < (ns[in] >= 64 ? 2 : 1); docs++) {
                        int64_t n = ns[in];
                        attn_problem_t p = {.batch = n <= 64 ? 2 : 1, .heads = 8, .kv_heads = kvh,
                                            .head_dim = (in + mi) % 2 ? 128 : 64, .n_k = n,
                                            .n_q = qv ? n / 3 : n, .mask = masks[mi],
                                            .window = n * 3 / 10 > 0 ? n * 3 / 10 : 1, .dtype = ATTN_F32};
                        if (docs) { /* a length-1 document, then lengths n/7, the rest last */
                            int64_t k = 0;
                            off[k++] = 0, off[k++] = 1;
                            while (off[k - 1] + n / 7 < n && k < 60)
                                off[k] = off[k - 1] + n / 7, k++;
                            off[k] = n;
                            p.doc = off, p.n_docs = k;
                        }
                        char name[200];
                        snprintf(name, sizeof name, "n_k=%lld n_q=%lld H_kv=%lld d=%lld mask=%s docs=%lld",
                                 (long long)p.n_k, (long long)p.n_q, (long long)kvh, (long long)p.head_dim,
                                 mask_name(p.mask), (long long)p.n_docs);
                        attn_err_t err = {0};
                        grad_reference_t g;
                        if (!check(grad_reference_prepare(&p, &x, 7000 + in * 7 + mi, &g, &err) == ATTN_OK,
                                   "reference", "%s: %s", name, err.msg))
                            continue;
                        attn_grad_errors_t base;
                        if (!check(grad_bf16_baseline(&g, &base, &err) == ATTN_OK, "baseline", "%s: %s", name,
                                   err.msg)) {
                            grad_reference_free(&g);
                            continue;
                        }
                        attn_grad_errors_t tol = grad_tolerance_bf16(&g, &base);
                        attn_problem_t pb = g.p;
                        pb.dtype = ATTN_BF16;
                        for (int ri = 0; ri < 3; ri++) {
                            attn_exec_t xb = x;
                            xb.ranks = ranks[ri], xb.transport = ATTN_TRANSPORT_CUDA_LOCAL;
                            char label[64], reason[512] = "";
                            snprintf(label, sizeof label, "ulysses_cuda P=%d", xb.ranks);
                            if (!check(backend_supports_backward(be, &pb, &xb, reason, sizeof reason), label,
                                       "%s: declines: %s", name, reason))
                                continue;
                            size_t nq = problem_numel_q(&pb), nkv = problem_numel_kv(&pb);
                            float *dq = malloc(nq * 4 + 4), *dk = malloc(nkv * 4 + 4), *dv = malloc(nkv * 4 + 4);
                            if (check(run_backend(be, &pb, &xb, &g, dq, dk, dv, &err) == ATTN_OK,
                                      label, "%s: %s", name, err.msg)) {
                                attn_grad_errors_t e = grad_errors(&g, dq, dk, dv);
                                check(grad_within(&e, &tol) && !getenv("GRAD_SHOW"), label,
                                      "%s: rel_l2 dq %.3g (tol %.3g) dk %.3g (%.3g) dv %.3g (%.3g); bf16 "
                                      "baseline %.3g %.3g %.3g",
                                      name, e.dq.rel_l2, tol.dq.rel_l2, e.dk.rel_l2, tol.dk.rel_l2, e.dv.rel_l2,
                                      tol.dv.rel_l2, base.dq.rel_l2, base.dk.rel_l2, base.dv.rel_l2);
                                double r[3] = {e.dq.rel_l2, e.dk.rel_l2, e.dv.rel_l2};
                                for (int i = 0; i < 3; i++)
                                    worst[i] = fmax(worst[i], r[i]);
                            }
                            free(dq), free(dk), free(dv);
                        }
                        grad_reference_free(&g);
                    }
    printf("worst rel L2: dQ %.3g dK %.3g dV %.3g\n", worst[0], worst[1], worst[2]);
    return check_summary();
}
