/* test_simulate.c — simulate's model (tasks/simulate.h) against the plan the backends run: the
 * O(1) pair count against plan_pair_work, each rank's work and bytes against plan_ring_expect,
 * the closed-form steps against the step-by-step plan, Ulysses' bytes against plan_ulysses, and
 * the memory per rank against the backends' own workspace_bytes. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "core/backend.h"
#include "impls/cpu/tile_engine.h"
#include "impls/parallel/plan.h"
#include "tasks/simulate.h"

static int close_to(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(1, fmax(fabs(a), fabs(b))); }

static const attn_layout_kind_t kinds[] = {LAYOUT_CONTIGUOUS, LAYOUT_STRIPED, LAYOUT_ZIGZAG};
static const sim_scheme_t ring_schemes[] = {SIM_RING, SIM_STRIPED, SIM_ZIGZAG};

/* Every pair of every (rank, step): the closed form equals the row-by-row count. */
static void pair_counts(void) {
    const attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    const int64_t windows[] = {1, 5, 37}, ns[] = {17, 64, 100};
    int bad = 0, n_checked = 0;
    for (int ki = 0; ki < 3; ki++)
        for (int mi = 0; mi < 3; mi++)
            for (int wi = 0; wi < (mi == 2 ? 3 : 1); wi++)
                for (int ni = 0; ni < 3; ni++)
                    for (int P = 1; P <= 8; P++)
                        for (int r = 0; r < P; r++)
                            for (int s = 0; s < P; s++) {
                                plan_ring_step_t st;
                                attn_err_t err = {0};
                                if (plan_ring_step(kinds[ki], ns[ni], ns[ni], &(attn_vis_t){masks[mi], windows[wi], 0, 0}, P, r, s, &st, &err))
                                    continue;
                                for (int i = 0; i < st.n_pairs; i++) {
                                    const plan_pair_t *pr = &st.pair[i];
                                    double want = plan_pair_work(&(attn_vis_t){masks[mi], windows[wi], 0, 0}, pr);
                                    double got = pr->skip ? 0 : sim_pair_pairs(masks[mi], windows[wi], pr->q.count, pr->k.count, pr->q_off, pr->win);
                                    n_checked++;
                                    if (got != want && bad++ < 5)
                                        printf("  %s mask %d w %lld n %lld P %d r %d s %d pair %d: want %.0f got %.0f\n",
                                               layout_name(kinds[ki]), mi, (long long)windows[wi], (long long)ns[ni], P, r, s, i, want, got);
                                }
                            }
    check(bad == 0 && n_checked > 1000, "pair counts: closed form = plan_pair_work", "%d of %d differ", bad, n_checked);
}

/* Per-rank work and bytes of the whole ring: the plan's analytic figures. */
static void ring_work_and_bytes(void) {
    sim_profile_t pr = {.elem_bytes = 4, .memory_bytes = 1e12, .n_points = 1, .rows = {1}, .flops_per_s = {1e9}};
    sim_links_t l = {.node_size = 4, .intra = {1e-6, 1e10}, .inter = {1e-5, 1e9}};
    for (int ki = 0; ki < 3; ki++)
        for (int P = 2; P <= 8; P++)
            for (int64_t n = 60; n <= 61; n++) {
                double work[SIM_EXACT_MAX_P], want[SIM_EXACT_MAX_P], worst = 0;
                attn_dist_expect_t e;
                double row = 2.0 * 2 * 2 * 16 * 4; /* B = 2, H_kv = 2, d = 16, f32 */
                plan_ring_expect(kinds[ki], n, n, &(attn_vis_t){ATTN_MASK_CAUSAL, 0, 0, 0}, P, row, &e, want);
                int ok = sim_ring_work(kinds[ki], n, ATTN_MASK_CAUSAL, 0, P, work) == ATTN_OK;
                for (int r = 0; r < P; r++)
                    ok &= work[r] == want[r], worst = fmax(worst, e.bytes_sent[r]);
                sim_shape_t sh = {2, 4, 2, 16, n, ATTN_MASK_CAUSAL, 0, 0, 0};
                sim_result_t res;
                sim_run(ring_schemes[ki], &sh, P, &pr, &l, &res);
                char name[96];
                snprintf(name, sizeof name, "%s P=%d n=%lld: work per rank and bytes = plan_ring_expect",
                         layout_name(kinds[ki]), P, (long long)n);
                check(ok && res.ok && res.exact && close_to(res.bytes_sent, worst), name, "bytes %.0f vs %.0f", res.bytes_sent, worst);
            }
}

/* Row i of a piece sees local keys [lo, hi) (the band of sim_pair_pairs), written out row by row. */
static void row_range(attn_mask_t mask, int64_t kc, int64_t q_off, int64_t win, int64_t i, int64_t *lo, int64_t *hi) {
    int64_t h = mask == ATTN_MASK_NONE ? kc : q_off + i + 1, l = mask == ATTN_MASK_WINDOW ? q_off + i - win + 1 : 0;
    *hi = h < 0 ? 0 : h > kc ? kc : h, *lo = l < 0 ? 0 : l > kc ? kc : l;
}

/* Micro-tiles of every plan pair, three ways: the tile engine's own count of what it computed,
 * a row-by-row count (a tile is computed when some row sees some key in it, full when every row
 * sees every key), and sim_pair_tiles (which weights a short last query tile by its rows). */
static void tile_counts(void) {
    const attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    const int bq = 4, bk = 8, d = 2;
    static float buf[6 * 256 * 2];
    int bad = 0, n_checked = 0;
    for (int ki = 0; ki < 3; ki++)
        for (int mi = 0; mi < 3; mi++)
            for (int64_t n = 61; n <= 64; n += 3)
                for (int P = 1; P <= 4; P++)
                    for (int r = 0; r < P; r++)
                        for (int st_i = 0; st_i < P; st_i++) {
                            plan_ring_step_t st;
                            attn_err_t err = {0};
                            if (plan_ring_step(kinds[ki], n, n, &(attn_vis_t){masks[mi], 13, 0, 0}, P, r, st_i, &st, &err))
                                continue;
                            for (int i = 0; i < st.n_pairs; i++) {
                                const plan_pair_t *pp = &st.pair[i];
                                if (pp->skip)
                                    continue;
                                int64_t qc = pp->q.count, kc = pp->k.count;
                                double want_c = 0, want_f = 0, wc = 0, wf = 0, full, part;
                                for (int64_t r0 = 0; r0 < qc; r0 += bq)
                                    for (int64_t j0 = 0; j0 < kc; j0 += bk) {
                                        int64_t rows = qc - r0 < bq ? qc - r0 : bq, j1 = kc < j0 + bk ? kc : j0 + bk;
                                        int any = 0, all = 1;
                                        for (int64_t q = r0; q < r0 + rows; q++) {
                                            int64_t lo, hi;
                                            row_range(masks[mi], kc, pp->q_off, pp->win, q, &lo, &hi);
                                            any |= lo < j1 && hi > j0 && hi > lo, all &= lo <= j0 && j1 <= hi;
                                        }
                                        want_c += any, want_f += any && all;
                                        wc += any * (double)rows / bq, wf += (any && all) * (double)rows / bq;
                                    }
                                sim_pair_tiles(masks[mi], qc, kc, pp->q_off, pp->win, bq, bk, &full, &part);
                                attn_problem_t p = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = d, .n_q = n,
                                                    .n_k = n, .mask = masks[mi], .window = 13, .dtype = ATTN_F32,
                                                    .block_q = bq, .block_k = bk};
                                tile_io_t io = {buf, buf + 512, buf + 1024, buf + 1536, buf + 2048, qc, kc};
                                tile_stats_t ts = {0};
                                tile_attend_f32(&p, 1, pp->q.pos, qc, pp->k.pos, kc, &io, TILE_SCAN_ALL, &ts, &err);
                                n_checked++;
                                if ((ts.tiles_computed != want_c || !close_to(full, wf) || !close_to(full + part, wc)) &&
                                    bad++ < 5)
                                    printf("  %s mask %d n %lld P %d r %d s %d pair %d: engine %lld rows %.0f (full %.0f); "
                                           "model %.3g + %.3g vs %.3g + %.3g\n",
                                           layout_name(kinds[ki]), mi, (long long)n, P, r, st_i, i,
                                           (long long)ts.tiles_computed, want_c, want_f, full, part, wf, wc - wf);
                            }
                        }
    check(bad == 0 && n_checked > 300, "micro-tiles: sim_pair_tiles = row by row = the engine's count", "%d of %d differ",
          bad, n_checked);
}

/* P ≤ 64 walks the plan; the closed form must give the same figures where n splits evenly, with
 * the FLOP/s points and with the tile model. */
static void closed_form_matches_plan(void) {
    for (int tiles = 0; tiles < 2; tiles++) {
    sim_profile_t pr = {.elem_bytes = 2, .memory_bytes = 1e12, .n_points = 2, .rows = {16, 4096}, .flops_per_s = {1e11, 4e11}};
    if (tiles)
        pr.tiles = (sim_tiles_t){.bq = 16, .bk = 32, .head_dim = 32, .n = 2, .krows = {64, 4096}, .full_s = {1e-6, 2e-6},
                                 .part_s = 5e-7, .merge_row_s = 1e-8, .call_s = 2e-6};
    sim_links_t l = {.node_size = 8, .intra = {3e-6, 3e11}, .inter = {6e-6, 4e9}}; /* slow inter: some steps exposed */
    const attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL};
    const int Ps[] = {2, 8, 16, 64};
    for (int ki = 0; ki < 3; ki++)
        for (int mi = 0; mi < 2; mi++)
            for (int pi = 0; pi < 4; pi++)
                for (int64_t per = 3; per <= 200; per += 197) { /* 2P·per tokens: even shards and chunks */
                    int P = Ps[pi];
                    sim_shape_t sh = {1, 8, 2, 64, 2 * P * per, masks[mi], 0, 0, 0};
                    sim_result_t a, b;
                    sim_run(ring_schemes[ki], &sh, P, &pr, &l, &a);
                    sh.closed_form = 1;
                    sim_run(ring_schemes[ki], &sh, P, &pr, &l, &b);
                    char name[128];
                    snprintf(name, sizeof name, "%s %s P=%d n=%lld%s: closed form = plan (time, compute, comm, work, bytes)",
                             layout_name(kinds[ki]), mask_name(masks[mi]), P, (long long)sh.n, tiles ? " tiles" : "");
                    check(a.exact && !b.exact && close_to(a.time_s, b.time_s) && close_to(a.compute_s, b.compute_s) &&
                              close_to(a.comm_s, b.comm_s) && close_to(a.work_pairs, b.work_pairs) &&
                              close_to(a.bytes_sent, b.bytes_sent),
                          name, "time %.6g/%.6g compute %.6g/%.6g comm %.6g/%.6g work %.0f/%.0f", a.time_s, b.time_s,
                          a.compute_s, b.compute_s, a.comm_s, b.comm_s, a.work_pairs, b.work_pairs);
                }
    }
}

/* Memory per rank: the backends' workspace_bytes (all ranks together) over P, f32. */
static void memory_matches_backends(void) {
    sim_profile_t pr = {.elem_bytes = 4, .memory_bytes = 1e12, .n_points = 1, .rows = {1}, .flops_per_s = {1e9}};
    sim_links_t l = {.node_size = 64, .intra = {1e-6, 1e10}, .inter = {1e-6, 1e10}};
    const char *names[] = {"ring", "striped", "zigzag", "ulysses"};
    const sim_scheme_t schemes[] = {SIM_RING, SIM_STRIPED, SIM_ZIGZAG, SIM_ULYSSES};
    for (int i = 0; i < 4; i++)
        for (int P = 2; P <= 8; P *= 2) {
            const attn_backend_t *be = registry_find(names[i]);
            attn_problem_t p = {.batch = 2, .heads = 8, .kv_heads = 2, .head_dim = 32, .n_q = 64 * P, .n_k = 64 * P,
                                .mask = ATTN_MASK_CAUSAL, .dtype = ATTN_F32};
            attn_exec_t x = exec_default();
            x.ranks = P, x.threads = 1;
            sim_shape_t sh = {2, 8, 2, 32, 64 * P, ATTN_MASK_CAUSAL, 0, 0, 0};
            sim_result_t res;
            sim_run(schemes[i], &sh, P, &pr, &l, &res);
            double want = be ? (double)be->workspace_bytes(be, &p, &x) / P : -1;
            char name[96];
            snprintf(name, sizeof name, "%s P=%d: memory per rank = workspace_bytes / P", names[i], P);
            check(res.ok && close_to(res.memory_bytes, want), name, "want %.0f got %.0f", want, res.memory_bytes);
        }
}

/* Ulysses' bytes per rank: both exchanges of plan_ulysses, the rank's own share left out. */
static void ulysses_bytes(void) {
    sim_profile_t pr = {.elem_bytes = 4, .memory_bytes = 1e12, .n_points = 1, .rows = {1}, .flops_per_s = {1e9}};
    sim_links_t l = {.node_size = 64, .intra = {1e-6, 1e10}, .inter = {1e-6, 1e10}};
    const int64_t hkv[] = {8, 2};
    for (int hi = 0; hi < 2; hi++)
        for (int P = 2; P <= 8; P *= 2) {
            plan_ulysses_t u;
            attn_err_t err = {0};
            int ok = plan_ulysses(1, 8, hkv[hi], 16, 32 * P, 32 * P, LAYOUT_CONTIGUOUS, P, 0, &u, &err) == ATTN_OK;
            double want = 0;
            for (int r = 1; r < P; r++)
                want += 4.0 * (double)(u.send_q[r] + u.send_kv[r] + u.send_out[r]);
            sim_shape_t sh = {1, 8, hkv[hi], 16, 32 * P, ATTN_MASK_CAUSAL, 0, 0, 0};
            sim_result_t res;
            sim_run(SIM_ULYSSES, &sh, P, &pr, &l, &res);
            char name[96];
            snprintf(name, sizeof name, "ulysses H_kv=%lld P=%d: bytes per rank = plan_ulysses", (long long)hkv[hi], P);
            check(ok && res.ok && close_to(res.bytes_sent, want), name, "want %.0f got %.0f", want, res.bytes_sent);
        }
}

/* The links: one message, and the all-to-all over one and two tiers. */
static void links(void) {
    sim_links_t l = {.node_size = 4, .intra = {2e-6, 1e11}, .inter = {5e-6, 1e10}};
    check(close_to(sim_message_s(&l.intra, 1e6), 2e-6 + 1e-5), "message: latency + bytes / bandwidth", "%g",
          sim_message_s(&l.intra, 1e6));
    check(close_to(sim_alltoall_s(&l, 4, 1e6), 2e-6 + 3e-5), "all-to-all in a node: (P−1) messages on one latency", "%g",
          sim_alltoall_s(&l, 4, 1e6));
    check(close_to(sim_alltoall_s(&l, 8, 1e6), 5e-6 + 4e-4), "all-to-all over 2 nodes: the slower tier", "%g",
          sim_alltoall_s(&l, 8, 1e6));
    sim_tier_t m = {.oneway = {3, {100, 1e4, 1e6}, {1e-6, 1e-6, 1e-4}}, .exchange = {2, {100, 1e6}, {2e-6, 4e-4}},
                    .exchange_ranks = 3};
    check(close_to(sim_message_s(&m, 1e4), 1e-6) && close_to(sim_message_s(&m, 1e5), 1e-5) &&
              close_to(sim_message_s(&m, 1), 1e-6) && close_to(sim_message_s(&m, 4e6), 4e-4),
          "table: log-log between sizes, the first time below, the last bandwidth beyond", "%g %g",
          sim_message_s(&m, 1e5), sim_message_s(&m, 4e6));
    check(close_to(sim_exchange_s(&m, 2e6), 4e-4) && close_to(sim_exchange_s(&m, 2e4), sqrt(2e-6 * 4e-4)),
          "exchange table: keyed by bytes per peer of its rank count", "%g", sim_exchange_s(&m, 2e4));
    sim_profile_t pr = {.n_points = 2, .rows = {100, 10000}, .flops_per_s = {1, 3}};
    check(close_to(sim_flops(&pr, 1000), 2) && sim_flops(&pr, 1) == 1 && sim_flops(&pr, 1e9) == 3,
          "profile: log-linear between points, clamped outside", "%g", sim_flops(&pr, 1000));
}

/* USP at the scale the model is for: runs where Ulysses declines, and with U = 1 is the zigzag ring. */
static void usp(void) {
    sim_profile_t pr = {.elem_bytes = 2, .memory_bytes = 1e12, .n_points = 1, .rows = {1}, .flops_per_s = {4e14}};
    sim_links_t l = {.node_size = 8, .intra = {3e-6, 3e11}, .inter = {6e-6, 4e10}};
    sim_shape_t sh = {1, 32, 8, 128, 1000000, ATTN_MASK_CAUSAL, 0, 0, 0};
    sim_result_t u, z, y;
    sim_run(SIM_USP, &sh, 16384, &pr, &l, &u);
    sim_run(SIM_ULYSSES, &sh, 16384, &pr, &l, &y);
    check(u.ok && u.ulysses_degree == 8 && u.ring_degree == 2048 && !y.ok, "usp at P=16384: U=8 × R=2048, ulysses declines",
          "U %lld R %lld", (long long)u.ulysses_degree, (long long)u.ring_degree);
    sh.ulysses_degree = 1;
    sim_run(SIM_USP, &sh, 64, &pr, &l, &u);
    sim_run(SIM_ZIGZAG, &sh, 64, &pr, &l, &z);
    check(u.ok && close_to(u.time_s, z.time_s) && close_to(u.compute_s, z.compute_s), "usp U=1 = zigzag", "%g vs %g",
          u.time_s, z.time_s);
}

int main(void) {
    pair_counts();
    tile_counts();
    ring_work_and_bytes();
    closed_form_matches_plan();
    memory_matches_backends();
    ulysses_bytes();
    links();
    usp();
    return check_summary();
}
