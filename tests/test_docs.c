/* test_docs.c — packed documents: the lookup the CPU and the CUDA kernels share (core/mask.h)
 * against a linear scan, key ranges and the kernels' tile-cut test against the per-pair rule, the
 * float64 reference against each document attended alone, the ring plans' skips and coverage, the
 * layouts (core/docs.h), and the exactness matrix of every CPU exact backend on P ∈ {1,2,3,4,8}. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/docs.h"
#include "core/npy.h"
#include "core/tensors.h"
#include "core/threads.h"
#include "impls/cpu/naive.h"
#include "impls/cpu/tile_engine.h"
#include "impls/parallel/plan.h"
#include "tests/check.h"
#include "tests/exactness_case.h"

static uint64_t lcg = 12345;
static int64_t draw(int64_t n) { /* uniform on [0, n) */
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (int64_t)((lcg >> 33) % (uint64_t)n);
}

/* Random offsets of n tokens in about k documents, empty ones and length 1 included. */
static int64_t random_layout(int64_t n, int64_t k, int64_t *off) {
    int64_t cuts[64], m = 0;
    for (int64_t i = 0; i < k - 1 && m < 62; i++)
        cuts[m++] = draw(n + 1);
    cuts[m++] = 0, cuts[m++] = n;
    for (int64_t i = 1; i < m; i++) /* insertion sort: non-decreasing, duplicates are empty documents */
        for (int64_t j = i; j > 0 && cuts[j] < cuts[j - 1]; j--) {
            int64_t t = cuts[j];
            cuts[j] = cuts[j - 1], cuts[j - 1] = t;
        }
    memcpy(off, cuts, sizeof(int64_t) * (size_t)m);
    return m - 1;
}

/* mask_doc_of, mask_doc_lo/hi (what the CUDA kernels call on the device) against a scan. */
static void lookup(void) {
    int bad = 0, n_checked = 0;
    for (int t = 0; t < 300; t++) {
        int64_t off[64], n = 1 + draw(200);
        int64_t nd = random_layout(n, 1 + draw(12), off);
        attn_vis_t v = {ATTN_MASK_NONE, 0, off, nd};
        for (int64_t i = 0; i < n; i++) {
            int64_t want = -1;
            for (int64_t d = 0; d < nd; d++)
                if (off[d] <= i && i < off[d + 1])
                    want = d;
            int64_t got = mask_doc_of(&v, i);
            n_checked++;
            if (nd > 1 && (got != want || mask_doc_lo(&v, i) != off[want] || mask_doc_hi(&v, i) != off[want + 1]) &&
                bad++ < 5)
                printf("  layout %d: position %lld in document %lld, lookup says %lld\n", t, (long long)i,
                       (long long)want, (long long)got);
        }
    }
    check(bad == 0 && n_checked > 10000, "document lookup = linear scan (empty documents included)", "%d of %d differ",
          bad, n_checked);
}

/* mask_key_range over a run of query positions and a strided key span = the smallest range
 * holding every key some query of the run sees; mask_docs_cut = "documents hide some pair". */
static void ranges(void) {
    const attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    int bad = 0, bad_cut = 0, n_checked = 0;
    for (int t = 0; t < 3000; t++) {
        int64_t off[64], n = 1 + draw(120);
        int64_t nd = random_layout(n, 1 + draw(10), off);
        attn_vis_t v = {masks[t % 3], 1 + draw(30), off, nd};
        int64_t i_lo = draw(n), i_hi = i_lo + draw(n - i_lo), S = 1 + draw(3), start = draw(S);
        attn_span_t ks = {start, S};
        int64_t cnt = (n - start + S - 1) / S, lo, hi, want_lo = cnt, want_hi = 0;
        for (int64_t i = i_lo; i <= i_hi; i++)
            for (int64_t j = 0; j < cnt; j++)
                if (mask_visible(&v, i, start + S * j))
                    want_lo = j < want_lo ? j : want_lo, want_hi = j + 1 > want_hi ? j + 1 : want_hi;
        mask_key_range(&v, i_lo, i_hi, ks, cnt, &lo, &hi);
        n_checked++;
        if (want_lo < want_hi ? (lo != want_lo || hi != want_hi) : lo < hi) {
            if (bad++ < 5)
                printf("  case %d: rows [%lld, %lld] keys %lld+%lld·j: range [%lld, %lld), want [%lld, %lld)\n", t,
                       (long long)i_lo, (long long)i_hi, (long long)start, (long long)S, (long long)lo, (long long)hi,
                       (long long)want_lo, (long long)want_hi);
        }
        int64_t k0 = draw(n), k1 = k0 + 1 + draw(n - k0);
        int cut = 0;
        for (int64_t i = i_lo; i <= i_hi; i++)
            for (int64_t j = k0; j < k1; j++)
                cut |= mask_doc_of(&v, i) != mask_doc_of(&v, j);
        if (mask_docs_cut(&v, i_lo, i_hi, k0, k1) != (nd > 1 && cut) && bad_cut++ < 5)
            printf("  case %d: rows [%lld, %lld] keys [%lld, %lld): cut %d\n", t, (long long)i_lo, (long long)i_hi,
                   (long long)k0, (long long)k1, cut);
    }
    check(bad == 0, "mask_key_range with documents = the visible keys' hull", "%d of %d differ", bad, n_checked);
    check(bad_cut == 0, "mask_docs_cut (the GPU kernel's tile test) = some pair across documents", "%d of %d differ",
          bad_cut, n_checked);
}

/* The float64 reference with documents, row by row, against each document attended alone (its
 * keys, its queries, no documents): the same arithmetic, so equal to the last bit. */
static void reference_split(void) {
    const attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    int64_t off[] = {0, 1, 2, 40, 41, 97, 130};
    int64_t nd = 6, n = 130, H = 4, Hkv = 2, d = 8;
    for (int m = 0; m < 3; m++)
        for (int qi = 0; qi < 2; qi++) {
            int64_t nq = qi ? 45 : n;
            attn_problem_t p = {.batch = 1, .heads = H, .kv_heads = Hkv, .head_dim = d, .n_q = nq, .n_k = n,
                                .mask = masks[m], .window = masks[m] == ATTN_MASK_WINDOW ? 9 : 0, .dtype = ATTN_F64,
                                .doc = off, .n_docs = nd};
            attn_err_t err = {0};
            attn_tensors_t t;
            char name[96];
            snprintf(name, sizeof name, "reference %s n_q=%lld = each document alone", mask_name(masks[m]),
                     (long long)nq);
            if (!check(problem_validate(&p, &err) == ATTN_OK && tensors_alloc(&p, 1, 7, &t, &err) == ATTN_OK, name,
                       "%s", err.msg))
                continue;
            naive_attend(&p, 1, problem_q_span(&p), nq, problem_k_span(&p), n, &t.io, &err);
            double worst = 0;
            int64_t q0 = n - nq;
            for (int64_t doc = 0; doc < nd; doc++) {
                int64_t a = off[doc], b = off[doc + 1], qa = a > q0 ? a : q0; /* its queries: [qa, b) */
                if (qa >= b)
                    continue;
                attn_problem_t s = p;
                s.n_k = b - a, s.n_q = b - qa, s.doc = NULL, s.n_docs = 0;
                attn_tensors_t u;
                if (tensors_alloc(&s, 0, 0, &u, &err) != ATTN_OK)
                    break;
                for (int64_t h = 0; h < H; h++)
                    memcpy((double *)u.q + h * s.n_q * d, (double *)t.q + (h * nq + qa - q0) * d,
                           sizeof(double) * (size_t)(s.n_q * d));
                for (int64_t h = 0; h < Hkv; h++) {
                    memcpy((double *)u.k + h * s.n_k * d, (double *)t.k + (h * n + a) * d, sizeof(double) * (size_t)(s.n_k * d));
                    memcpy((double *)u.v + h * s.n_k * d, (double *)t.v + (h * n + a) * d, sizeof(double) * (size_t)(s.n_k * d));
                }
                naive_attend(&s, 1, problem_q_span(&s), s.n_q, problem_k_span(&s), s.n_k, &u.io, &err);
                for (int64_t h = 0; h < H; h++)
                    for (int64_t r = 0; r < s.n_q; r++) {
                        int64_t at = h * nq + qa - q0 + r;
                        worst = fmax(worst, fabs(((double *)u.lse)[h * s.n_q + r] - ((double *)t.lse)[at]));
                        for (int64_t c = 0; c < d; c++)
                            worst = fmax(worst, fabs(((double *)u.o)[(h * s.n_q + r) * d + c] - ((double *)t.o)[at * d + c]));
                    }
                tensors_free(&u);
            }
            check(worst == 0, name, "max |difference| %.3g", worst);
            tensors_free(&t);
        }
}

/* Score elements of the bq × bk tiles of a piece pair that hold a visible pair, each whole. */
static double brute_tiles(const attn_vis_t *v, const plan_pair_t *pr, int bq, int bk) {
    double w = 0;
    for (int64_t r0 = 0; r0 < pr->q.count; r0 += bq)
        for (int64_t j0 = 0; j0 < pr->k.count; j0 += bk) {
            int64_t rows = pr->q.count - r0 < bq ? pr->q.count - r0 : bq, cols = pr->k.count - j0 < bk ? pr->k.count - j0 : bk;
            int any = 0;
            for (int64_t i = r0; i < r0 + rows && !any; i++)
                for (int64_t j = j0; j < j0 + cols && !any; j++)
                    any = mask_visible(v, pr->q.pos.start + pr->q.pos.stride * i, pr->k.pos.start + pr->k.pos.stride * j);
            w += any ? (double)(rows * cols) : 0;
        }
    return w;
}

/* Every ring step of every rank with documents: each visible (query, key) pair is covered by
 * exactly one computed piece pair, inside its key range; pairs of pieces that share no
 * document are skipped; the analytic work sums to the problem's visible pairs. */
static void plans(void) {
    const attn_layout_kind_t kinds[] = {LAYOUT_CONTIGUOUS, LAYOUT_STRIPED, LAYOUT_ZIGZAG, LAYOUT_ZIGZAG_BALANCED};
    const attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    static unsigned char cover[97 * 97];
    int bad = 0, cases = 0, tiles_bad = 0;
    long skipped = 0;
    for (int t = 0; t < 60 && bad < 5; t++) {
        int64_t off[64], n = 60 + draw(38), nq = t % 2 ? n : n / 3;
        int64_t nd = random_layout(n, 2 + draw(8), off);
        attn_vis_t v = {masks[t % 3], 1 + draw(20), off, nd};
        attn_problem_t pb = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = 1, .n_q = nq, .n_k = n, .mask = v.mask,
                             .window = v.window, .doc = off, .n_docs = nd};
        for (int ki = 0; ki < 4; ki++)
            for (int P = 1; P <= 8; P++) {
                memset(cover, 0, sizeof cover);
                cases++;
                for (int r = 0; r < P; r++)
                    for (int s = 0; s < P; s++) {
                        plan_ring_step_t st;
                        attn_err_t err = {0};
                        if (plan_ring_step(kinds[ki], nq, n, &v, P, r, s, &st, &err) != ATTN_OK) {
                            bad++;
                            printf("  plan: %s\n", err.msg);
                            continue;
                        }
                        for (int pi = 0; pi < st.n_pairs; pi++) {
                            const plan_pair_t *pr = &st.pair[pi];
                            skipped += pr->skip;
                            if (pr->q.pos.stride == 1) /* tile work: a 4 × 8 tile counts whole when any pair in it is visible */
                                tiles_bad += plan_pair_tiles(&v, pr, 4, 8) != brute_tiles(&v, pr, 4, 8) ||
                                             plan_pair_tiles(&v, pr, 1, 1) != (pr->skip ? 0 : plan_pair_work(&v, pr));
                            for (int64_t i = 0; i < pr->q.count; i++)
                                for (int64_t j = 0; j < pr->k.count; j++) {
                                    int64_t qpos = pr->q.pos.start + pr->q.pos.stride * i;
                                    int64_t kpos = pr->k.pos.start + pr->k.pos.stride * j;
                                    if (!mask_visible(&v, qpos, kpos))
                                        continue;
                                    if (pr->skip || j < pr->lo || j >= pr->hi) {
                                        if (bad++ < 5)
                                            printf("  %s P=%d r=%d s=%d: visible (%lld, %lld) skipped\n",
                                                   layout_name(kinds[ki]), P, r, s, (long long)qpos, (long long)kpos);
                                    } else
                                        cover[(qpos - (n - nq)) * n + kpos]++;
                                }
                        }
                    }
                for (int64_t i = 0; i < nq; i++)
                    for (int64_t j = 0; j < n; j++)
                        if (cover[i * n + j] != mask_visible(&v, n - nq + i, j) && bad++ < 5)
                            printf("  %s P=%d: (%lld, %lld) covered %d times\n", layout_name(kinds[ki]), P,
                                   (long long)i, (long long)j, cover[i * n + j]);
                attn_dist_expect_t e;
                double work[ATTN_MAX_RANKS], sum = 0;
                plan_ring_expect(kinds[ki], nq, n, &v, P, 1.0, &e, work);
                for (int r = 0; r < P; r++)
                    sum += work[r];
                if (sum != problem_visible_pairs(&pb) && bad++ < 5)
                    printf("  %s P=%d: analytic work %.0f, visible pairs %.0f\n", layout_name(kinds[ki]), P, sum,
                           problem_visible_pairs(&pb));
            }
    }
    check(bad == 0 && skipped > 100, "ring plans with documents: coverage, skips, analytic work", "%d defects (%d cases, %ld skipped pairs)",
          bad, cases, skipped);
    check(tiles_bad == 0, "plan_pair_tiles = the tiles holding a visible pair, whole (1 × 1 tiles: visible pairs)",
          "%d pairs differ", tiles_bad);
}

/* Zigzag with chunk bounds (empty chunks included): every token maps to one (rank, local row)
 * and back, pieces cover the rank's rows in order; the balanced bounds carry equal work. */
static void bounds(void) {
    int bad = 0;
    for (int t = 0; t < 200; t++) {
        int P = 1 + (int)draw(8);
        int64_t n = 1 + draw(150), b[2 * 8 + 1];
        b[0] = 0, b[2 * P] = n;
        for (int c = 1; c < 2 * P; c++)
            b[c] = draw(n + 1);
        for (int i = 1; i < 2 * P; i++) /* sort the inner cuts */
            for (int j = i; j > 1 && b[j] < b[j - 1]; j--) {
                int64_t x = b[j];
                b[j] = b[j - 1], b[j - 1] = x;
            }
        attn_layout_t l;
        attn_err_t err = {0};
        if (layout_init_zigzag_bounds(&l, n, P, b, &err) != ATTN_OK) {
            bad++;
            continue;
        }
        int64_t total = 0;
        for (int r = 0; r < P; r++) {
            layout_piece_t pc[2];
            int np = layout_pieces(&l, r, pc);
            int64_t seen = 0;
            for (int k = 0; k < np; k++)
                for (int64_t i = 0; i < pc[k].count; i++, seen++) {
                    int rank;
                    int64_t local, g = pc[k].pos.start + i;
                    layout_global_to_local(&l, g, &rank, &local);
                    bad += rank != r || local != pc[k].local_start + i || layout_local_to_global(&l, r, local) != g;
                }
            bad += seen != layout_local_count(&l, r);
            total += seen;
        }
        bad += total != n;
    }
    check(bad == 0, "zigzag with chunk bounds: maps and pieces agree (empty chunks included)", "%d defects", bad);
    /* Causal on P = 8: the balanced cut's analytic critical path in tiles is never above
     * zigzag's (zigzag's even cut is a candidate); with documents of 64 … 4096 tokens it is
     * clearly below (1.44 vs 1.83 for seed 1: docs/packed-documents.md). */
    docs_spec_t sp = {DOCS_UNIFORM, 64, 4096};
    const int64_t *off;
    int64_t nd;
    attn_err_t err = {0};
    int ok = docs_random(&sp, 32768, 1, &off, &nd, &err) == ATTN_OK;
    for (int docs = 1; ok && docs >= 0; docs--) {
        attn_vis_t v = {ATTN_MASK_CAUSAL, 0, docs ? off : NULL, docs ? nd : 0};
        attn_layout_t lq, lk;
        attn_dist_expect_t zz = {0}, bal = {0};
        ok = plan_layouts(LAYOUT_ZIGZAG_BALANCED, 32768, 32768, &v, 8, &lq, &lk, &err) == ATTN_OK &&
             lq.bound == lk.bound && lq.bound != NULL;
        plan_ring_expect_tiles(LAYOUT_ZIGZAG, 32768, 32768, &v, 8, TILE_DEFAULT_BQ, TILE_DEFAULT_BK, &zz, NULL);
        plan_ring_expect_tiles(LAYOUT_ZIGZAG_BALANCED, 32768, 32768, &v, 8, TILE_DEFAULT_BQ, TILE_DEFAULT_BK, &bal, NULL);
        char name[128];
        snprintf(name, sizeof name, "balanced zigzag %s documents: tile critical path %.3f vs zigzag %.3f",
                 docs ? "with" : "without", bal.critical_path_tiles, zz.critical_path_tiles);
        check(ok && (docs ? bal.critical_path_tiles < 0.9 * zz.critical_path_tiles
                          : bal.critical_path_tiles <= zz.critical_path_tiles * (1 + 1e-9)),
              name, "%s", err.msg);
    }
}

/* Layouts: lengths, a .npy of offsets (int32 and int64), seeded random; and what each refuses. */
/* A cleared error each call: attn_fail keeps the first message. */
static attn_err_t *fresh(attn_err_t *e) {
    *e = (attn_err_t){0};
    return e;
}

static void layouts(void) {
    attn_err_t err = {0};
    const int64_t *lens, *off;
    int64_t count, nd;
    int ok = docs_parse_lens("3,1,6", &lens, &count, fresh(&err)) == ATTN_OK && count == 3 &&
             docs_from_lens(lens, count, 10, &off, &nd, fresh(&err)) == ATTN_OK && nd == 3 && off[0] == 0 && off[1] == 3 &&
             off[2] == 4 && off[3] == 10;
    check(ok, "--doc-lens 3,1,6 gives offsets 0,3,4,10", "%s", err.msg);
    check(docs_from_lens(lens, count, 11, &off, &nd, fresh(&err)) == ATTN_EUSAGE && strstr(err.msg, "sum to 10"),
          "--doc-lens that do not sum to seq-len are refused", "%s", err.msg);
    const char *bad_lens[] = {"3,0", "3,-1", "x", "3,,4", "3,4,"};
    for (int i = 0; i < 5; i++) {
        char name[64];
        snprintf(name, sizeof name, "--doc-lens '%s' is refused", bad_lens[i]);
        check(docs_parse_lens(bad_lens[i], &lens, &count, fresh(&err)) == ATTN_EUSAGE, name, "accepted");
    }
    const char *bad_spec[] = {"uniform:0:5", "uniform:5:3", "uniform:2.5:4", "normal:1:2", "lognormal:3", "lognormal:3:-1",
                              "uniform:1:2:3"};
    docs_spec_t sp;
    for (int i = 0; i < 7; i++) {
        char name[64];
        snprintf(name, sizeof name, "--docs '%s' is refused", bad_spec[i]);
        check(docs_parse_spec(bad_spec[i], &sp, fresh(&err)) == ATTN_EUSAGE, name, "accepted");
    }
    const char *specs[] = {"uniform:1:40", "lognormal:3:1"};
    for (int i = 0; i < 2; i++) {
        const int64_t *o2;
        int64_t nd2;
        char name[64];
        snprintf(name, sizeof name, "--docs %s: seeded, covers n, lengths in range", specs[i]);
        ok = docs_parse_spec(specs[i], &sp, fresh(&err)) == ATTN_OK && docs_random(&sp, 5000, 9, &off, &nd, fresh(&err)) == ATTN_OK &&
             docs_random(&sp, 5000, 9, &o2, &nd2, fresh(&err)) == ATTN_OK && o2 == off && nd2 == nd && off[nd] == 5000;
        for (int64_t d = 0; ok && d < nd; d++)
            ok = off[d + 1] > off[d] && (i || off[d + 1] - off[d] <= 40);
        docs_summary_t s = docs_summary(off, nd);
        /* uniform 1..40: mean 20.5; lognormal(3, 1): mean e^3.5 ≈ 33 (the cut last one aside) */
        ok = ok && (i ? s.mean > 20 && s.mean < 50 : fabs(s.mean - 20.5) < 2.5);
        check(ok, name, "%s (%lld documents)", err.msg, (long long)nd);
        ok = docs_random(&sp, 5000, 10, &o2, &nd2, fresh(&err)) == ATTN_OK && (nd2 != nd || memcmp(o2, off, 8 * (size_t)nd) != 0);
        check(ok, "another seed, another layout", "%s", specs[i]);
    }
    /* .npy: int32 and int64, then a bad one of each kind */
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_docs_%d.npy", (int)getpid());
    const char *hdr32 = "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }";
    for (int wide = 0; wide < 2; wide++) {
        FILE *f = fopen(path, "wb");
        char h[128];
        int hl = snprintf(h, sizeof h, "%s", hdr32);
        if (wide)
            h[13] = '8';
        while ((10 + hl + 1) % 64)
            h[hl++] = ' ';
        h[hl++] = '\n';
        unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hl, 0};
        fwrite(pre, 1, 10, f);
        fwrite(h, 1, (size_t)hl, f);
        int64_t v64[4] = {0, 5, 5, 12};
        int32_t v32[4] = {0, 5, 5, 12};
        fwrite(wide ? (void *)v64 : (void *)v32, wide ? 8 : 4, 4, f);
        fclose(f);
        ok = docs_from_npy(path, 12, &off, &nd, fresh(&err)) == ATTN_OK && nd == 3 && off[1] == 5 && off[2] == 5 && off[3] == 12;
        check(ok, wide ? "--cu-seqlens int64 .npy" : "--cu-seqlens int32 .npy", "%s", err.msg);
        check(docs_from_npy(path, 13, &off, &nd, fresh(&err)) == ATTN_EUSAGE && strstr(err.msg, "seq-len 13"),
              "--cu-seqlens whose last offset is not seq-len is refused", "%s", err.msg);
        if (wide) { /* truncated: drop the last 8 bytes */
            if (truncate(path, 10 + hl + 24) == 0)
                check(docs_from_npy(path, 12, &off, &nd, fresh(&err)) == ATTN_EUSAGE && strstr(err.msg, "truncated"),
                      "a truncated --cu-seqlens is refused", "%s", err.msg);
        }
    }
    unlink(path);
    check(docs_from_npy("/nonexistent/x.npy", 12, &off, &nd, fresh(&err)) == ATTN_EUSAGE, "a missing --cu-seqlens is refused",
          "%s", err.msg);
    int64_t dec[] = {0, 5, 3, 12};
    attn_problem_t p = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = 4, .n_q = 12, .n_k = 12, .doc = dec, .n_docs = 3};
    int rc = problem_validate(&p, fresh(&err));
    check(rc == ATTN_EUSAGE && strstr(err.msg, "decrease"), "decreasing offsets are refused", "rc %d: %s", rc, err.msg);
    /* Visible pairs count with documents: causal in documents 5, 0, 7 is 15 + 0 + 28. */
    int64_t inc[] = {0, 5, 5, 12};
    p.doc = inc, p.mask = ATTN_MASK_CAUSAL;
    check(problem_validate(&p, fresh(&err)) == ATTN_OK && problem_visible_pairs(&p) == 43, "visible pairs count documents",
          "%.0f", problem_visible_pairs(&p));
}

/* The exactness matrix, through the task users run: random document lengths with length-1
 * documents and documents longer than a shard, masks none/causal/window, GQA (H 8 over H_kv 2;
 * 6 over 2 at P = 3), n_q = n_k and n_q < n_k; every CPU exact backend at P = 1, the
 * distributed ones at P ∈ {2, 3, 4, 8}. sliding_window must decline the masks other than window. */
static void matrix(void) {
    const char *layouts_arg[] = {"doc-lens=1,1,90,1,7,120,1,50,30", "docs=uniform:1:60"};
    const int Ps[] = {1, 2, 3, 4, 8};
    for (int li = 0; li < 2; li++)
        for (int pi = 0; pi < 5; pi++) {
            int P = Ps[pi];
            char args[512];
            snprintf(args, sizeof args,
                     "backends=%s mask=none,causal,window window=23 seq-len=301 q-len=301,100 heads=%d kv-heads=2 "
                     "head-dim=32 batch=1 block-q=16 block-k=32 seed=%d ranks=%d %s",
                     P == 1 ? "naive,blockwise,naive_blas,sliding_window" : "ring,striped,zigzag,zigzag_balanced,ulysses,usp",
                     P == 3 ? 6 : 8, 40 + pi, P, layouts_arg[li]);
            attn_run_t run;
            attn_err_t err = {0};
            char name[160];
            snprintf(name, sizeof name, "exactness with documents (%s) P=%d", layouts_arg[li], P);
            if (exactness_case(args, 2, "test_docs", &run, &err) != ATTN_OK) {
                check(0, name, "%s", err.msg);
                continue;
            }
            int bad = 0, docs_seen = 0;
            for (int i = 0; i < run.n_records; i++) {
                const attn_record_t *r = &run.records[i];
                int skip = !strcmp(r->backend, "sliding_window") && r->config.mask != ATTN_MASK_WINDOW;
                docs_seen += r->config.n_docs > 1;
                if (r->status != (skip ? REC_SKIPPED : REC_PASS) && bad++ < 5)
                    printf("  %s %s n_q=%lld: %s %s\n", r->backend, mask_name(r->config.mask),
                           (long long)r->config.n_q, status_name(r->status), r->reason);
            }
            check(bad == 0 && docs_seen == run.n_records && run.n_records >= 24, name, "%d of %d records wrong", bad,
                  run.n_records);
            results_run_free(&run);
        }
}

int main(void) {
    parallel_set_blas_threads(1);
    task_set_progress(0);
    lookup();
    ranges();
    reference_split();
    plans();
    bounds();
    layouts();
    matrix();
    return check_summary();
}
