/* test_grad.c — the gradient exactness matrix: every CPU backend's backward (after its own
 * forward) against the float64 gradient reference, within grad_tolerance (docs/backward.md),
 * over mask × H_kv ∈ {H, 2, 1} × odd and even n × (n_q = n_k, n_q < n_k) × default and small
 * tiles; with --ranks P the distributed backends on P local ranks. A backend without a backward,
 * or sliding_window on another mask, must decline. Prints the worst rel L2 per gradient. With
 * --docs every case packs documents (length-1 ones and ones longer than a shard among them).
 * --plugin F.so loads a plugin first (docs/plugins.md), so --backends may name its backends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/threads.h"
#include "impls/plugin.h"
#include "tasks/grad_check.h"
#include "tests/check.h"

/* Document offsets 0 … n: a length-1 document first, then lengths drawn from 1 … n/2 (a few
 * longer than a shard of n/P), the last one taking the rest. Returns the document count. */
static int64_t make_docs(int64_t n, uint64_t seed, int64_t *off) {
    int64_t k = 0, at = 0;
    off[k++] = 0;
    if (n > 1)
        off[k++] = at = 1;
    while (at < n) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int64_t len = 1 + (int64_t)((seed >> 33) % (uint64_t)(n / 2 > 1 ? n / 2 : 1));
        at = at + len < n ? at + len : n;
        off[k++] = at;
    }
    return k - 1;
}

typedef struct {
    char name[48];
    double worst[3], worst_big[3], ratio; /* all cases; n_k ≥ 64; max error / bound */
} worst_t;

int main(int argc, char **argv) {
    const char *backends = "naive,blockwise,sliding_window";
    int ranks = 0;
    int64_t max_n = 1 << 30, heads = 0, kv_only = 0;
    int udeg = 0, docs = 0;
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--docs")) {
            docs = 1, i--;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s needs a value\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--backends"))
            backends = argv[i + 1];
        else if (!strcmp(argv[i], "--ranks"))
            ranks = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-n"))
            max_n = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--heads"))
            heads = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--kv-heads"))
            kv_only = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--ulysses-degree"))
            udeg = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--plugin")) {
            attn_err_t perr = {0};
            if (plugin_load(argv[i + 1], &perr) != ATTN_OK) {
                printf("FAIL %s\n", perr.msg);
                return 1;
            }
        } else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    check_quiet = 1;
    parallel_set_blas_threads(1);
    char list[256];
    snprintf(list, sizeof list, "%s", backends);
    worst_t worst[16] = {0};
    int nb = 0;
    const attn_backend_t *bes[16];
    for (char *s = NULL, *t = strtok_r(list, ",", &s); t && nb < 16; t = strtok_r(NULL, ",", &s)) {
        bes[nb] = registry_find(t);
        if (!check(bes[nb] != NULL, "backend exists", "%s", t))
            return check_summary();
        snprintf(worst[nb].name, sizeof worst[nb].name, "%s", t);
        nb++;
    }
    int64_t ns[] = {1, 7, 64, 257, 600};
    int H = heads ? (int)heads : ranks == 3 ? 6 : (ranks > 4 ? 8 : 4);
    attn_exec_t x = exec_default();
    x.threads = 2;
    x.ranks = ranks;
    x.ulysses_degree = udeg;
    attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++) {
        int64_t n = ns[in];
        if (n > max_n)
            continue;
        for (int mi = 0; mi < 3; mi++)
            for (int64_t kvh = kv_only ? kv_only : H; kvh >= 1; kvh = kv_only ? 0 : kvh > 2 ? 2 : kvh / 2)
                for (int qv = 0; qv < (n > 1 ? 2 : 1); qv++)
                    for (int tiles = 0; tiles < 2; tiles++) {
                        attn_problem_t p = {.batch = n <= 64 ? 2 : 1, .heads = H, .kv_heads = kvh,
                                            .head_dim = in % 2 ? 64 : 32, .n_k = n, .n_q = qv ? (n <= 7 ? 1 : n / 3) : n,
                                            .mask = masks[mi], .window = n * 3 / 10 > 0 ? n * 3 / 10 : 1,
                                            .dtype = ATTN_F32, .block_q = tiles ? 16 : 0, .block_k = tiles ? 32 : 0};
                        static int64_t off[1024];
                        if (docs && n < 1000) {
                            p.n_docs = make_docs(n, (uint64_t)(n * 31 + mi * 7 + kvh), off);
                            p.doc = off;
                        }
                        attn_err_t err = {0};
                        char reason[512], name[256];
                        snprintf(name, sizeof name, "n_k=%lld n_q=%lld H_kv=%lld d=%lld mask=%s tiles=%s docs=%lld",
                                 (long long)p.n_k, (long long)p.n_q, (long long)kvh, (long long)p.head_dim,
                                 mask_name(p.mask), tiles ? "16x32" : "default", (long long)p.n_docs);
                        grad_reference_t g;
                        if (!check(grad_reference_prepare(&p, &x, 1000 + in * 7 + mi, &g, &err) == ATTN_OK,
                                   "reference", "%s: %s", name, err.msg))
                            continue;
                        for (int b = 0; b < nb; b++) {
                            const attn_backend_t *be = bes[b];
                            int decline = !strcmp(be->name, "sliding_window") && p.mask != ATTN_MASK_WINDOW;
                            int runs = backend_supports_backward(be, &p, &x, reason, sizeof reason);
                            if (decline || !runs) {
                                check(decline && !runs, be->name, "%s: %s", name, runs ? "ran" : reason);
                                continue;
                            }
                            size_t nq = problem_numel_q(&p), nkv = problem_numel_kv(&p);
                            float *dq = malloc(nq * 4 + 4), *dk = malloc(nkv * 4 + 4), *dv = malloc(nkv * 4 + 4);
                            if (!check(grad_run_backend(be, &x, &g, dq, dk, dv, NULL, NULL, NULL, &err) == ATTN_OK,
                                       be->name, "%s: %s", name, err.msg)) {
                                free(dq), free(dk), free(dv);
                                continue;
                            }
                            attn_grad_errors_t e = grad_errors(&g, dq, dk, dv);
                            attn_grad_errors_t t = grad_tolerance(be->name, &g);
                            check(grad_within(&e, &t) && !getenv("GRAD_SHOW"), be->name,
                                  "%s: rel_l2 dq %.3g (tol %.3g) dk %.3g (%.3g) dv %.3g (%.3g); max_abs dq %.3g (%.3g) "
                                  "dk %.3g (%.3g) dv %.3g (%.3g)",
                                  name, e.dq.rel_l2, t.dq.rel_l2, e.dk.rel_l2, t.dk.rel_l2, e.dv.rel_l2, t.dv.rel_l2,
                                  e.dq.max_abs, t.dq.max_abs, e.dk.max_abs, t.dk.max_abs, e.dv.max_abs, t.dv.max_abs);
                            double r[3] = {e.dq.rel_l2, e.dk.rel_l2, e.dv.rel_l2};
                            double tr[3] = {t.dq.rel_l2, t.dk.rel_l2, t.dv.rel_l2};
                            for (int k = 0; k < 3; k++) {
                                worst[b].worst[k] = r[k] > worst[b].worst[k] ? r[k] : worst[b].worst[k];
                                if (n >= 64 && r[k] > worst[b].worst_big[k])
                                    worst[b].worst_big[k] = r[k];
                                if (r[k] / tr[k] > worst[b].ratio)
                                    worst[b].ratio = r[k] / tr[k];
                            }
                            free(dq), free(dk), free(dv);
                        }
                        grad_reference_free(&g);
                    }
    }
    /* Without a backward pass a backend declines, naming it (naive_blas has none). */
    attn_problem_t pu = {.batch = 1, .heads = 4, .kv_heads = 4, .head_dim = 16, .n_q = 64, .n_k = 64,
                         .dtype = ATTN_F32};
    char why[512] = "";
    const attn_backend_t *blas = registry_find("naive_blas");
    attn_exec_t x1 = exec_default();
    check(blas && !backend_supports_backward(blas, &pu, &x1, why, sizeof why) && strstr(why, "backward"),
          "a backend without a backward declines", "%s", why);
    for (int b = 0; b < nb; b++)
        printf("worst rel_l2 %-14s P=%d dq %.3g dk %.3g dv %.3g | n_k >= 64: dq %.3g dk %.3g dv %.3g | "
               "max error/bound %.3g\n",
               worst[b].name, ranks ? ranks : 1, worst[b].worst[0], worst[b].worst[1], worst[b].worst[2],
               worst[b].worst_big[0], worst[b].worst_big[1], worst[b].worst_big[2], worst[b].ratio);
    return check_summary();
}
