/* test_backends.c — the exactness matrix, run through the same exactness task users run: every
 * single-rank backend, or with --ranks P the distributed ones, × mask × H_kv × n × d × (n_q = n_k,
 * n_q < n_k) against the float64 reference. The matrix and usage are above main(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "comm/comm.h"
#include "tests/exactness_case.h"
#include "impls/parallel/dist.h"
#include "impls/parallel/dist_model.h"
#include "impls/plugin.h"
#include "cli/options.h"
#include "core/threads.h"
#include "tasks/task.h"

static int64_t ns[] = {1, 7, 64, 1000, 4097};
static int64_t ds[] = {16, 64, 128};
static int H = 4;
static int want_docs; /* --docs: a case of n_k ≥ 64 that ran as one document is a failure */

static int check_records(const attn_run_t *run, const char *label, int *passed, int *failed) {
    for (int i = 0; i < run->n_records; i++) {
        const attn_record_t *r = &run->records[i];
        const attn_problem_t *c = &r->config;
        int expect_skip = (strcmp(r->backend, "sliding_window") == 0 && c->mask != ATTN_MASK_WINDOW) ||
                          (strcmp(r->backend, "ulysses") == 0 && c->heads % r->ranks != 0);
        int ok = expect_skip ? r->status == REC_SKIPPED : r->status == REC_PASS;
        if (want_docs && c->n_k >= 64 && c->n_docs < 2)
            ok = 0;
        double rel = 0, tol = 0;
        for (int m = 0; m < r->n_metrics; m++) {
            if (!strcmp(r->metrics[m].name, "rel_l2_err"))
                rel = r->metrics[m].value;
            if (!strcmp(r->metrics[m].name, "tol_rel_l2"))
                tol = r->metrics[m].value;
        }
        printf("%s %-14s %s P=%d n_k=%-5lld n_q=%-5lld H=%d H_kv=%lld d=%-3lld mask=%-6s blocks=%dx%d docs=%lld rel_l2=%.3g (tol %.3g) %s%s%s\n",
               ok ? "ok  " : "FAIL", r->backend, label, r->ranks, (long long)c->n_k, (long long)c->n_q, H, (long long)c->kv_heads,
               (long long)c->head_dim, mask_name(c->mask), c->block_q, c->block_k, (long long)c->n_docs, rel, tol, status_name(r->status),
               r->reason[0] ? ": " : "", r->reason);
        if (!ok)
            printf("     expected %s, got %s\n", expect_skip ? "skipped" : "pass", status_name(r->status));
        *passed += ok;
        *failed += !ok;
    }
    return ATTN_OK;
}

/* Single-rank: naive, blockwise, naive_blas, sliding_window × mask × H_kv ∈ {H, 2, 1} ×
 * n ∈ {1, 7, 64, 1000, 4097} × d ∈ {16, 64, 128} × (n_q = n_k, n_q < n_k), plus small tiles on the
 * smaller n so multi-tile paths are exercised. With --ranks P, the distributed backends instead:
 * ring, striped, zigzag, ulysses × mask × H_kv ∈ {H, 1} × n ∈ {P·256, 1000, 4097} × d = 64 ×
 * (n_q = n_k, n_q < n_k) on P ranks, H = 4 (6 for P = 3, 8 for P = 8, so ulysses can split heads),
 * over --transport local or mpi (then run under `mpirun -np P`; rank 0 runs the matrix, the
 * others serve it). A record must pass, except that sliding_window must decline (skip) masks
 * other than window and ulysses must decline H % P ≠ 0.
 * usage: test_backends [--mask M] [--min-n N] [--max-n N] [--ranks P] [--transport T]
 *                      [--backends A,B] [--heads H] [--kv-heads K] [--layout L] [--ulysses-degree U] [--seq N]
 *                      [--head-dim D] [--one-tiling 1] [--plugin F.so] [--exec-spec F.json] (the matrix of a plugin's or exec: backend)
 *                      [--docs SPEC] (every case packs documents: the run's docs=SPEC, e.g. uniform:1:20)
 * (CTest splits the matrix; usp runs only when named in --backends, on the U × P/U mesh) */
int main(int argc, char **argv) {
    const char *mask = "none,causal,window";
    int64_t min_n = 0, max_n = INT64_MAX;
    int ranks = 0; /* 0: the single-rank matrix; P ≥ 1: the distributed backends on P ranks */
    const char *transport = "local", *backends = NULL, *layout = "auto";
    int64_t kv_only = 0, d_only = 0; /* --kv-heads K, --head-dim D: that one value of the matrix's */
    int one_tiling = 0;             /* --one-tiling 1: no small-tile repeat (backends that ignore tiles) */
    int64_t seq = 0; /* --seq N: the distributed matrix at this one n */
    int heads_given = 0, udeg = 0; /* udeg: usp's --ulysses-degree, 0 = its default */
    const char *docs = NULL;        /* --docs SPEC: the run's docs= (core/docs.h), NULL = one document */
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--mask"))
            mask = argv[i + 1];
        else if (!strcmp(argv[i], "--min-n"))
            min_n = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-n"))
            max_n = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--ranks"))
            ranks = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--transport"))
            transport = argv[i + 1];
        else if (!strcmp(argv[i], "--backends"))
            backends = argv[i + 1];
        else if (!strcmp(argv[i], "--layout"))
            layout = argv[i + 1];
        else if (!strcmp(argv[i], "--heads"))
            H = atoi(argv[i + 1]), heads_given = 1;
        else if (!strcmp(argv[i], "--seq"))
            seq = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--ulysses-degree"))
            udeg = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--kv-heads"))
            kv_only = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--one-tiling"))
            one_tiling = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--head-dim"))
            d_only = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--docs"))
            docs = argv[i + 1], want_docs = 1;
        else if (!strcmp(argv[i], "--plugin") || !strcmp(argv[i], "--exec-spec")) { /* then name its backends */
            attn_err_t perr = {0};
            if ((argv[i][2] == 'p' ? plugin_load(argv[i + 1], &perr) : exec_spec_load(argv[i + 1], &perr)) != ATTN_OK) {
                printf("FAIL %s\n", perr.msg);
                return 1;
            }
        }
        else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    attn_err_t merr = {0};
    if (!strcmp(transport, "mpi")) { /* every process runs this; ranks 1.. serve rank 0's calls */
        if (comm_mpi_init(NULL, NULL, &merr) != ATTN_OK) {
            printf("FAIL %s\n", merr.msg);
            return 1;
        }
        ranks = comm_mpi_world()->size;
        if (comm_mpi_world()->rank != 0) {
            int rc = dist_follow(dist_model_follow, &merr);
            comm_mpi_finalize();
            return rc;
        }
    }
    if (ranks && !heads_given && H == 4 && 4 % ranks) /* ulysses needs H % P = 0: H = 6 for P = 3, 8 for P = 8 */
        H = ranks == 3 ? 6 : 8;
    if (!backends)
        backends = ranks ? "ring,striped,zigzag,ulysses" : "naive,blockwise,naive_blas,sliding_window";
    int64_t dist_ns[] = {256 * (int64_t)ranks, 1000, 4097}, dist_ds[] = {64};
    const int64_t *n_list = ranks ? dist_ns : ns, *d_list = ranks ? dist_ds : ds;
    if (seq)
        dist_ns[0] = seq;
    size_t n_count = ranks ? (seq ? 1 : 3) : sizeof ns / sizeof ns[0], d_count = ranks ? 1 : sizeof ds / sizeof ds[0];
    if (d_only)
        d_list = &d_only, d_count = 1;
    int64_t kv_div = ranks ? H : 2; /* H_kv ∈ {H, 1} for distributed, {H, 2, 1} otherwise */
    parallel_set_blas_threads(1);
    task_set_progress(0);
    int passed = 0, failed = 0;
    for (size_t in = 0; in < n_count; in++) {
        int64_t n = n_list[in];
        if (n < min_n || n > max_n)
            continue;
        for (size_t id = 0; id < d_count; id++)
            for (int64_t kvh = kv_only ? kv_only : H; kvh >= 1; kvh = kv_only ? 0 : kvh / kv_div)
                for (int tiles = 0; tiles < (n <= 1000 && !ranks && !one_tiling ? 2 : 1); tiles++) {
                    char args[640], qlen[64];
                    /* n_q < n_k: a third of the keys, or a single decode row for tiny n; n = 1 has
                     * only n_q = n_k. */
                    int64_t nq = n <= 7 ? 1 : n / 3;
                    if (n == 1)
                        snprintf(qlen, sizeof qlen, "1");
                    else
                        snprintf(qlen, sizeof qlen, "%lld,%lld", (long long)n, (long long)nq);
                    char extra[160] = "";
                    if (udeg)
                        snprintf(extra, sizeof extra, " ulysses-degree=%d", udeg);
                    if (docs)
                        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " docs=%s", docs);
                    snprintf(args, sizeof args,
                             "backends=%s mask=%s seq-len=%lld q-len=%s heads=%d kv-heads=%lld head-dim=%lld "
                             "batch=%d window=%lld block-q=%d block-k=%d seed=%zu ranks=%d transport=%s layout=%s%s",
                             backends, mask, (long long)n, qlen, H, (long long)kvh, (long long)d_list[id],
                             n <= 64 ? 2 : 1, (long long)(n * 3 / 10 > 0 ? n * 3 / 10 : 1), tiles ? 16 : 128,
                             tiles ? 32 : 256, in * 10 + id, ranks ? ranks : 1, transport, layout, extra);
                    attn_run_t run;
                    attn_err_t err = {0};
                    if (exactness_case(args, 2, "test_backends", &run, &err) != ATTN_OK) {
                        printf("FAIL n=%lld d=%lld H_kv=%lld: %s\n", (long long)n, (long long)d_list[id],
                               (long long)kvh, err.msg);
                        dist_stop_followers();
                        comm_mpi_finalize();
                        return 1;
                    }
                    check_records(&run, tiles ? "small-tiles" : "default-tiles", &passed, &failed);
                    results_run_free(&run);
                }
    }
    dist_stop_followers();
    comm_mpi_finalize();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : (passed ? 0 : 1);
}
