/* test_grad_cuda.c — the GPU backward (blockwise_cuda, sliding_window_cuda on window masks,
 * ring_cuda, striped_cuda, zigzag_cuda at P = 2 and 4 on cuda_local for n ≥ 64, packed documents
 * included: flash_bwd looks them up at the ring pieces' global positions; ulysses_cuda at P = 2, 4
 * and, on H = 8 cases, 8, bf16 only, ranks without tokens included; usp_cuda at P = 4 (U = 2 × R = 2)
 * and, on H = 8 cases, P = 8 (U = 2 × R = 4), zigzag layout) in bf16 and f16
 * against the float64 gradient reference (tasks/grad_check.c), over masks × GQA × odd n ×
 * n_q < n_k × d 64/128 × documents. Tolerance, the forward's tiled bf16 rule carried to the
 * gradients (docs/backward.md, GPU section): 2 × the error of a naive backward in the same 16-bit
 * type (plain loops rounding what the kernel rounds, to bf16 or to f16) in the same case. Exits 77
 * without a CUDA device.
 * --stand-in [--max-n N]: no GPU; the CPU blockwise backend on Q, K, V, dO rounded to bf16 or f16
 * stands in for blockwise_cuda (P and dS not rounded), so the harness and its bound run in every build;
 * --perturb F scales the stand-in's dK by 1 + F, which must fail (the bound is not vacuous). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/device.h"
#include "model/model.h"
#include "tasks/grad_check.h"
#include "tests/check.h"

static int standin;
static double perturb;
static attn_dtype_t t16 = ATTN_BF16; /* the case's 16-bit type */

static float *rounded_copy(const float *x, size_t n) {
    float *y = malloc(sizeof(float) * n + 4);
    for (size_t i = 0; i < n; i++)
        y[i] = standin ? model_round_dtype(t16, x[i]) : x[i];
    return y;
}

/* Forward then backward of be on the reference's float32 inputs, as a 16-bit problem (the
 * stand-in: as float32 on the inputs rounded to bf16 or f16, as the GPU's upload rounds them). */
static int run_backend(const attn_backend_t *be, const attn_problem_t *p_in, const attn_exec_t *x,
                       const grad_reference_t *g, float *dq, float *dk, float *dv, attn_err_t *err) {
    attn_problem_t p = *p_in;
    if (standin)
        p.dtype = ATTN_F32;
    size_t nq = problem_numel_q(&p), nkv = problem_numel_kv(&p);
    float *o = malloc(sizeof(float) * nq + 4), *lse = malloc(sizeof(float) * problem_numel_lse(&p) + 4);
    float *q = rounded_copy(g->in.q, nq), *k = rounded_copy(g->in.k, nkv), *v = rounded_copy(g->in.v, nkv);
    float *d_o = rounded_copy(g->d_o, nq);
    attn_io_t io = {.q = q, .k = k, .v = v, .o = o, .lse = lse};
    int rc = be->forward(be, &p, x, &io, err);
    attn_grad_io_t gi = {.q = q, .k = k, .v = v, .o = o, .lse = lse, .d_o = d_o, .dq = dq, .dk = dk, .dv = dv};
    if (rc == ATTN_OK)
        rc = be->backward(be, &p, x, &gi, err);
    for (size_t i = 0; standin && i < nkv; i++)
        dk[i] *= (float)(1 + perturb);
    free(o), free(lse), free(q), free(k), free(v), free(d_o);
    return rc;
}

/* 1 if name is an item of the comma-separated list. */
static int listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *at = list; at && *at; at = strchr(at, ',') ? strchr(at, ',') + 1 : NULL)
        if (!strncmp(at, name, n) && (at[n] == ',' || at[n] == '\0'))
            return 1;
    return 0;
}

int main(int argc, char **argv) {
    int64_t max_n = 1 << 30;
    const char *only = NULL; /* --backends a,b: those entries only (two ctests share the cases' time) */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--stand-in"))
            standin = 1;
        else if (!strcmp(argv[i], "--max-n") && i + 1 < argc)
            max_n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--perturb") && i + 1 < argc)
            perturb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--backends") && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr, "usage: test_grad_cuda [--backends A,B] [--stand-in [--max-n N] [--perturb F]]\n");
            return 2;
        }
    }
    char why[256];
    if (!standin && device_count(why, sizeof why) == 0) {
        printf("SKIP: %s\n", why);
        return 77;
    }
    /* The backends and the ranks they run at (cuda_local), and the head count of the cases they
     * take: ulysses_cuda at P = 8 needs H = 8 (H_kv 8: whole kv heads; 2: each shared by four
     * ranks, its dK/dV summed on the way back). */
    static const struct {
        const char *name;
        int ranks, heads, dist; /* dist: n ≥ 64 for the ring family (n = 7 leaves ulysses' ranks without tokens) */
        int U;                  /* usp_cuda's Ulysses degree: U × R = P */
    } bes[] = {
        {"blockwise_cuda", 1, 4, 0, 0},  {"sliding_window_cuda", 1, 4, 0, 0}, {"ring_cuda", 2, 4, 64, 0},
        {"ring_cuda", 4, 4, 64, 0},      {"striped_cuda", 2, 4, 64, 0},       {"striped_cuda", 4, 4, 64, 0},
        {"zigzag_cuda", 2, 4, 64, 0},    {"zigzag_cuda", 4, 4, 64, 0},        {"ulysses_cuda", 2, 4, 1, 0},
        {"ulysses_cuda", 4, 4, 1, 0},    {"ulysses_cuda", 8, 8, 1, 0},        {"usp_cuda", 4, 4, 64, 2},
        {"usp_cuda", 8, 8, 64, 2},
    };
    const int n_bes = (int)(sizeof bes / sizeof bes[0]);
    int picked[sizeof bes / sizeof bes[0]], any8 = 0;
    for (int b = 0; b < n_bes; b++) {
        picked[b] = !only || listed(only, bes[b].name);
        any8 |= picked[b] && bes[b].heads == 8;
    }
    int64_t ns[] = {1, 7, 64, 130, 300};
    attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    attn_exec_t x = exec_default();
    x.threads = 2;
    double worst[2][3] = {{0}};
    static int64_t off[64];
    for (int ti = 0; ti < 2; ti++)
    for (int64_t H = 4; H <= 8; H *= 2) /* H = 8: bf16, ulysses_cuda at P = 8 only (bes) */
    for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++)
        for (int mi = 0; mi < 3; mi++)
            for (int64_t kvh = H; kvh >= 1; kvh /= H == 8 ? 4 : 2)
                for (int qv = 0; qv < 2; qv++)
                    for (int docs = 0; docs < (ns[in] >= 64 ? 2 : 1); docs++) {
                        int64_t n = ns[in];
                        if (n > max_n || (H == 8 && (standin || ti || n == 1 || !any8)))
                            continue;
                        attn_problem_t p = {.batch = n <= 64 ? 2 : 1, .heads = H, .kv_heads = kvh,
                                            .head_dim = (in + mi) % 2 ? 128 : 64, .n_k = n,
                                            .n_q = qv ? (n <= 7 ? 1 : n / 3) : n, .mask = masks[mi],
                                            .window = n * 3 / 10 > 0 ? n * 3 / 10 : 1, .dtype = ATTN_F32};
                        if (docs) { /* a length-1 document, then lengths n/7 (a few tiles), the rest last */
                            int64_t k = 0;
                            off[k++] = 0, off[k++] = 1;
                            while (off[k - 1] + n / 7 < n && k < 60)
                                off[k] = off[k - 1] + n / 7, k++;
                            off[k] = n;
                            p.doc = off, p.n_docs = k;
                        }
                        t16 = ti ? ATTN_F16 : ATTN_BF16;
                        char name[200];
                        snprintf(name, sizeof name, "%s n_k=%lld n_q=%lld H=%lld H_kv=%lld d=%lld mask=%s docs=%lld",
                                 dtype_name(t16), (long long)p.n_k, (long long)p.n_q, (long long)H, (long long)kvh,
                                 (long long)p.head_dim, mask_name(p.mask), (long long)p.n_docs);
                        attn_err_t err = {0};
                        grad_reference_t g;
                        if (!check(grad_reference_prepare(&p, &x, 4000 + in * 7 + mi, &g, &err) == ATTN_OK,
                                   "reference", "%s: %s", name, err.msg))
                            continue;
                        attn_grad_errors_t base;
                        if (!check(grad_baseline16(&g, t16, &base, &err) == ATTN_OK, "baseline", "%s: %s", name,
                                   err.msg)) {
                            grad_reference_free(&g);
                            continue;
                        }
                        attn_grad_errors_t tol = grad_tolerance_bf16(&g, &base);
                        attn_problem_t pb = g.p;
                        pb.dtype = t16;
                        for (int b = 0; b < n_bes; b++) {
                            int dist = bes[b].dist > 0, ulysses = !strcmp(bes[b].name, "ulysses_cuda");
                            if (!picked[b] || bes[b].heads != H || (dist && (standin || n < bes[b].dist)) ||
                                (ulysses && ti) /* bf16 only: test_supports_backward checks the f16 decline */)
                                continue;
                            if (b == 1 && (p.mask != ATTN_MASK_WINDOW || standin))
                                continue;
                            attn_exec_t xb = x;
                            if (dist)
                                xb.ranks = bes[b].ranks, xb.transport = ATTN_TRANSPORT_CUDA_LOCAL;
                            xb.ulysses_degree = bes[b].U;
                            const attn_backend_t *be = registry_find(standin ? "blockwise" : bes[b].name);
                            char label[64];
                            snprintf(label, sizeof label, dist ? "%s P=%d U=%d" : "%s", bes[b].name, xb.ranks, bes[b].U);
                            char reason[512] = "";
                            int takes = be && backend_supports_backward(be, standin ? &g.p : &pb, &xb, reason,
                                                                        sizeof reason);
                            if (!check(takes, label, "%s: declines: %s", name, be ? reason : "not registered"))
                                continue;
                            size_t nq = problem_numel_q(&pb), nkv = problem_numel_kv(&pb);
                            float *dq = malloc(nq * 4 + 4), *dk = malloc(nkv * 4 + 4), *dv = malloc(nkv * 4 + 4);
                            int brc = run_backend(be, &pb, &xb, &g, dq, dk, dv, &err);
                            if (check(brc == ATTN_OK, label, "%s: %s", name, err.msg)) {
                                attn_grad_errors_t e = grad_errors(&g, dq, dk, dv);
                                check(grad_within(&e, &tol) && !getenv("GRAD_SHOW"), label,
                                      "%s: rel_l2 dq %.3g (tol %.3g) dk %.3g (%.3g) dv %.3g (%.3g); 16-bit "
                                      "baseline %.3g %.3g %.3g",
                                      name, e.dq.rel_l2, tol.dq.rel_l2, e.dk.rel_l2, tol.dk.rel_l2, e.dv.rel_l2,
                                      tol.dv.rel_l2, base.dq.rel_l2, base.dk.rel_l2, base.dv.rel_l2);
                                double r[3] = {e.dq.rel_l2, e.dk.rel_l2, e.dv.rel_l2};
                                for (int i = 0; i < 3; i++)
                                    worst[ti][i] = fmax(worst[ti][i], r[i]);
                            }
                            free(dq), free(dk), free(dv);
                        }
                        grad_reference_free(&g);
                    }
    for (int ti = 0; ti < 2; ti++)
        printf("%s worst rel L2: dQ %.3g dK %.3g dV %.3g\n", ti ? "f16" : "bf16", worst[ti][0], worst[ti][1],
               worst[ti][2]);
    return check_summary();
}
