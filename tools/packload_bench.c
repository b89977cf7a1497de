/* packload_bench.c — the packed-load measurement without the ring around it: each rank's ring
 * steps (its pieces through the tile engine, then the merge, as ring_loop runs them) timed one
 * rank at a time on this thread, so that ranks do not share cores while they are measured, with
 * each rank's full and partial tiles counted as the engine decides them. docs/packed-documents.md.
 *   packload_bench N P DOCSPEC SEED REPS [layouts]   e.g. 131072 8 lognormal:8:1 1 5
 *   packload_bench kernel                            the fused kernel alone: a full tile against partial ones */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/docs.h"
#include "core/timing.h"
#include "impls/cpu/tile_engine.h"
#include "impls/cpu/tile_kernel.h"
#include "impls/parallel/plan.h"
#include "impls/parallel/ring.h"

/* Full and partial tiles the engine computes for one piece pair (tile_engine.c's rule). */
static void count_tiles(const attn_vis_t *v, const plan_pair_t *pr, int bq, int bk, double *full, double *part) {
    if (pr->skip)
        return;
    for (int64_t r0 = 0; r0 < pr->q.count; r0 += bq) {
        int64_t rows = pr->q.count - r0 < bq ? pr->q.count - r0 : bq, lo, hi, lo_last, hi_first, u;
        int64_t i_lo = pr->q.pos.start + pr->q.pos.stride * r0, i_hi = i_lo + pr->q.pos.stride * (rows - 1);
        mask_key_range(v, i_lo, i_hi, pr->k.pos, pr->k.count, &lo, &hi);
        mask_key_range(v, i_hi, i_hi, pr->k.pos, pr->k.count, &lo_last, &u);
        mask_key_range(v, i_lo, i_lo, pr->k.pos, pr->k.count, &u, &hi_first);
        for (int64_t j0 = lo / bk * bk; lo < hi && j0 < hi; j0 += bk) {
            int64_t cols = pr->k.count - j0 < bk ? pr->k.count - j0 : bk;
            double e = (double)rows * (double)cols;
            if (lo_last <= j0 && j0 + cols <= hi_first)
                *full += e;
            else
                *part += e;
        }
    }
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Microseconds per 96 × 128 tile (d = 64) of the fused kernel, one Q tile against 2000 K/V tiles
 * (200 distinct, L2-resident like a ring block's): full; partial with every key visible; partial
 * on a causal diagonal; partial with half the rows seeing nothing; and the non-finite scan of V
 * the engine adds to a partial tile. Three rounds, interleaved. */
static int kernel_bench(void) {
    const tile_kernel_t *k = tile_kernel_select();
    if (!k) {
        printf("no fused kernel on this CPU (the sgemm path)\n");
        return 0;
    }
    enum { BQ = 96, BK = 128, D = 64, T = 2000, DISTINCT = 200 };
    static const char *what[] = {"full", "partial, all visible", "partial, causal diagonal", "partial, half rows none",
                                 "V non-finite scan"};
    tile_kernel_ws_t w;
    float *base = malloc(k->ws_floats(BQ, BK, D) * sizeof(float) + 64), *Q = malloc(sizeof(float) * BQ * D);
    size_t kv_n = (size_t)BK * D * DISTINCT;
    float *K = malloc(sizeof(float) * kv_n), *V = malloc(sizeof(float) * kv_n);
    float O[BQ * D], L[BQ];
    k->init(&w, base, BQ, BK, D, 0.18f);
    srand(1);
    for (int i = 0; i < BQ * D; i++)
        Q[i] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t i = 0; i < kv_n; i++)
        K[i] = (float)rand() / RAND_MAX - 0.5f, V[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int round = 0; round < 3; round++)
        for (int mode = 0; mode < 5; mode++) {
            double t0 = time_thread_cpu_s();
            int finite = 0;
            k->begin(&w, Q, BQ);
            for (int t = 0; t < T; t++) {
                const float *kt = K + (size_t)(t % DISTINCT) * BK * D, *vt = V + (size_t)(t % DISTINCT) * BK * D;
                if (mode == 4) {
                    finite += tile_all_finite(vt, (size_t)BK * D);
                    continue;
                }
                for (int r = 0; r < BQ; r++)
                    w.lo[r] = 0, w.hi[r] = mode == 2 ? r + 1 : mode == 3 && r >= BQ / 2 ? 0 : BK;
                k->block(&w, kt, vt, BK, mode > 0, 0);
            }
            if (mode < 4)
                k->end(&w, O, L);
            double s = time_thread_cpu_s() - t0;
            printf("round %d  %-26s %8.3f us/tile  %6.3f ns/element%s\n", round, what[mode], 1e6 * s / T,
                   1e9 * s / T / (BQ * BK), finite == T || mode < 4 ? "" : " (non-finite?)");
        }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "kernel"))
        return kernel_bench();
    if (argc < 6) {
        fprintf(stderr, "usage: %s N P DOCSPEC|none SEED REPS [ring,striped,zigzag,zigzag_balanced]\n", argv[0]);
        return 2;
    }
    int64_t n = atoll(argv[1]);
    int P = atoi(argv[2]), reps = atoi(argv[5]);
    attn_err_t err = {0};
    attn_problem_t p = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = 64, .n_q = n, .n_k = n,
                        .mask = ATTN_MASK_CAUSAL, .dtype = ATTN_F32};
    if (strcmp(argv[3], "none")) {
        docs_spec_t s;
        uint64_t seed = strtoull(argv[4], 0, 10);
        if (docs_parse_spec(argv[3], &s, &err) || docs_random(&s, n, seed, &p.doc, &p.n_docs, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 2;
        }
    }
    const char *names[] = {"ring", "striped", "zigzag", "zigzag_balanced"};
    attn_layout_kind_t kinds[] = {LAYOUT_CONTIGUOUS, LAYOUT_STRIPED, LAYOUT_ZIGZAG, LAYOUT_ZIGZAG_BALANCED};
    const char *want = argc > 6 ? argv[6] : "ring,striped,zigzag,zigzag_balanced";
    attn_vis_t v = problem_vis(&p);
    int bq = tile_block_q(&p), bk = tile_block_k(&p);
    int64_t d = p.head_dim;
    float *q = malloc(sizeof(float) * (size_t)(n * d)), *kv = malloc(sizeof(float) * (size_t)(2 * n * d));
    float *o = calloc((size_t)(n * d), sizeof(float)), *lse = malloc(sizeof(float) * (size_t)n);
    float *op = calloc((size_t)(n * d), sizeof(float)), *lp = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        lse[i] = lp[i] = -INFINITY;
    srand(1);
    for (int64_t i = 0; i < n * d; i++)
        q[i] = (float)rand() / RAND_MAX - 0.5f, kv[i] = (float)rand() / RAND_MAX - 0.5f,
        kv[n * d + i] = (float)rand() / RAND_MAX - 0.5f;
    printf("n %lld P %d docs %s seed %s (%lld documents) tiles %d x %d, %d reps, min over reps\n", (long long)n, P,
           argv[3], argv[4], (long long)(p.n_docs ? p.n_docs : 1), bq, bk, reps);
    printf("%-16s %4s %10s %10s %10s %8s %12s\n", "layout", "rank", "full_el", "part_el", "tiles_el", "s",
           "ns/tile_el");
    for (int li = 0; li < 4; li++) {
        char list[256];
        snprintf(list, sizeof list, ",%s,", want);
        char key[64];
        snprintf(key, sizeof key, ",%s,", names[li]);
        if (!strstr(list, key))
            continue;
        attn_dist_expect_t e = {0};
        double tw[ATTN_MAX_RANKS], full[ATTN_MAX_RANKS] = {0}, part[ATTN_MAX_RANKS] = {0};
        plan_ring_expect_tiles(kinds[li], n, n, &v, P, bq, bk, &e, tw);
        double t[ATTN_MAX_RANKS][ATTN_MAX_RANKS][16], best[ATTN_MAX_RANKS][ATTN_MAX_RANKS];
        for (int r = 0; r < P; r++)
            for (int s = 0; s < P; s++) {
                plan_ring_step_t st;
                plan_ring_step(kinds[li], n, n, &v, P, r, s, &st, &err);
                for (int i = 0; i < st.n_pairs; i++)
                    count_tiles(&v, &st.pair[i], bq, bk, &full[r], &part[r]);
            }
        for (int rep = 0; rep < reps && rep < 16; rep++)
            for (int r = 0; r < P; r++) /* ranks interleaved: a slow moment hits one repeat of one rank */
                for (int s = 0; s < P; s++) {
                    plan_ring_step_t st;
                    plan_ring_step(kinds[li], n, n, &v, P, r, s, &st, &err);
                    double t0 = time_thread_cpu_s();
                    for (int i = 0; i < st.n_pairs; i++) {
                        plan_pair_t *pr = &st.pair[i];
                        if (pr->skip)
                            continue;
                        tile_io_t io = {q + pr->q.local_start * d, kv + pr->k.local_start * d,
                                        kv + n * d + pr->k.local_start * d, op + pr->q.local_start * d,
                                        lp + pr->q.local_start, st.q_rows, st.k_rows};
                        tile_attend_f32(&p, 1, pr->q.pos, pr->q.count, pr->k.pos, pr->k.count, &io, TILE_SCAN_ALL, NULL,
                                        &err);
                        ring_merge_rows(&p, ATTN_MERGE_F32, st.q_rows, pr->q.local_start, pr->q.count, o, lse, op, lp);
                    }
                    t[r][st.src][rep] = time_thread_cpu_s() - t0;
                }
        double work[ATTN_MAX_RANKS] = {0}, total = 0, worst = 0, cp = 0;
        for (int r = 0; r < P; r++)
            for (int s = 0; s < P; s++) {
                qsort(t[r][s], (size_t)(reps < 16 ? reps : 16), sizeof(double), cmp_d);
                best[r][s] = t[r][s][0];
                work[r] += best[r][s];
            }
        for (int r = 0; r < P; r++) {
            total += work[r], worst = fmax(worst, work[r]);
            printf("%-16s %4d %10.4g %10.4g %10.4g %8.4f %12.4f\n", names[li], r, full[r], part[r], tw[r], work[r],
                   1e9 * work[r] / tw[r]);
        }
        for (int s = 0; s < P; s++) {
            double m = 0;
            for (int r = 0; r < P; r++)
                m = fmax(m, best[r][(r - s + P) % P]);
            cp += m;
        }
        printf("%-16s imbalance measured %.3f expected(tiles) %.3f (%+.1f %%); critical path measured %.3f expected "
               "%.3f; critical path %.4f s\n",
               names[li], worst / (total / P), e.imbalance_tiles, 100 * (worst / (total / P) / e.imbalance_tiles - 1),
               cp / (total / P), e.critical_path_tiles, cp);
        fflush(stdout);
    }
    return 0;
}
