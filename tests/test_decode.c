/* test_decode.c — the decode split plan (impls/cpu/decode_plan.h) on the host: the chunking, the
 * head packing and the partial/merge indexing the CUDA decode kernels use, and the CPU run of the
 * same plan (decode.c) against the float64 naive reference within blockwise's float32 tolerance,
 * for masks, GQA, n_q ∈ {1, 16, 64}, forced and chosen splits, pieces at global positions, and the
 * d = 256 kernel's 64-row × 32-key tiles. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "impls/cpu/decode.h"
#include "impls/cpu/naive.h"
#include "impls/cuda/flash_frag.h"
#include "tasks/tolerance.h"
#include "tests/check.h"

/* Every packed row names one (head, query row), each exactly once; every tile's chunks cut its
 * key range [tile_lo, tile_hi) into disjoint pieces in order, none over `chunk`; every partial
 * row index is used once. */
static int plan_indexing_ok(const decode_plan_t *pl, int64_t batch, char *why, size_t len) {
    int64_t H = pl->heads, n = batch * H * pl->n_q;
    char *seen = calloc((size_t)(n + batch * pl->kv_heads * pl->split * pl->rows), 1);
    char *parts = seen + n;
    int bad = 0;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t g = 0; g < pl->kv_heads; g++)
            for (int64_t r = 0; r < pl->rows; r++) {
                int64_t h = decode_head_of(pl, g, r), i = decode_qrow_of(pl, r), at = decode_out_row(pl, b, g, r);
                if (h / pl->group != g || at != (b * H + h) * pl->q_ld + i || i >= pl->n_q) {
                    snprintf(why, len, "packed row %lld of kv head %lld → head %lld row %lld", (long long)r,
                             (long long)g, (long long)h, (long long)i);
                    bad = 1;
                } else
                    seen[(b * H + h) * pl->n_q + i]++;
                for (int s = 0; s < pl->split; s++)
                    parts[decode_part_row(pl, b, g, s, r)]++;
            }
    for (int64_t i = 0; i < n && !bad; i++)
        if (seen[i] != 1)
            bad = snprintf(why, len, "(head, row) %lld packed %d times", (long long)i, seen[i]) > 0;
    for (int64_t i = 0; i < batch * pl->kv_heads * pl->split * pl->rows && !bad; i++)
        if (parts[i] != 1)
            bad = snprintf(why, len, "partial row %lld used %d times", (long long)i, parts[i]) > 0;
    free(seen);
    for (int t = 0; t < pl->q_tiles && !bad; t++) {
        int64_t next = pl->tile_lo[t];
        for (int s = 0; s < pl->split && !bad; s++) {
            int64_t lo, hi;
            decode_chunk(pl, t, s, &lo, &hi);
            if (lo >= hi)
                continue;
            if (lo != next || hi - lo > pl->chunk)
                bad = snprintf(why, len, "tile %d split %d: keys [%lld, %lld), expected to start at %lld", t, s,
                               (long long)lo, (long long)hi, (long long)next) > 0;
            next = hi;
        }
        if (!bad && pl->tile_lo[t] < pl->tile_hi[t] && next != pl->tile_hi[t])
            bad = snprintf(why, len, "tile %d: chunks end at %lld, its keys at %lld", t, (long long)next,
                           (long long)pl->tile_hi[t]) > 0;
    }
    if (!bad && (pl->chunk % pl->tile_keys || pl->split < 1 || pl->split > DECODE_MAX_SPLIT))
        bad = snprintf(why, len, "chunk %lld, split %d", (long long)pl->chunk, pl->split) > 0;
    return !bad;
}

/* Each query tile's key ranges against the visibility rule itself: no row sees a key outside
 * [tile_lo, tile_hi), every row sees every key of [full_lo, full_hi) (the kernels skip the mask there). */
static int tile_ranges_ok(const decode_plan_t *pl, attn_mask_t mask, int64_t w, attn_span_t qs, attn_span_t ks,
                          char *why, size_t len) {
    for (int t = 0; t < pl->q_tiles; t++)
        for (int64_t r = (int64_t)t * pl->tile_rows; r < ATTN_MIN((int64_t)(t + 1) * pl->tile_rows, pl->rows); r++)
            for (int64_t j = 0; j < pl->n_k; j++) {
                attn_vis_t v = {mask, w, NULL, 0};
                int vis = mask_visible(&v, qs.start + qs.stride * decode_qrow_of(pl, r), ks.start + ks.stride * j);
                int in_full = pl->full_lo[t] <= j && j < pl->full_hi[t], in_tile = pl->tile_lo[t] <= j && j < pl->tile_hi[t];
                if ((in_full && !vis) || (vis && !in_tile))
                    return snprintf(why, len, "tile %d row %lld key %lld: visible %d, full [%lld, %lld), tile [%lld, %lld)", t,
                                    (long long)r, (long long)j, vis, (long long)pl->full_lo[t], (long long)pl->full_hi[t],
                                    (long long)pl->tile_lo[t], (long long)pl->tile_hi[t]) < 0;
            }
    return 1;
}

/* The split heuristic on the decode shapes with the H200's 132 SMs: enough work items to
 * fill every SM (or every chunk at its minimum), and no split for a batch that fills it alone. */
static void plan_choice(void) {
    struct { int64_t B, H, Hkv, n_q, n_k; int units, waves, want_split; } cs[] = {
        {1, 8, 1, 1, 1048576, 132, 4, -1},  /* decode: split to fill */
        {1, 8, 1, 16, 1048576, 132, 4, -1}, /* 128 packed rows: two query tiles */
        {1, 8, 1, 1, 512, 132, 4, 2},       /* 8 key tiles: at most 8 / DECODE_MIN_CHUNK_TILES splits */
        {64, 32, 8, 1, 4096, 132, 4, 2},    /* 512 items, 528 wanted: two splits */
        {256, 32, 8, 1, 4096, 132, 4, 1},   /* 2048 items: no split */
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        decode_plan_t pl;
        attn_span_t qs = {cs[c].n_k - cs[c].n_q, 1}, ks = {0, 1};
        char name[96], why[160] = "";
        snprintf(name, sizeof name, "plan B=%lld H=%lld/%lld n_q=%lld n_k=%lld", (long long)cs[c].B, (long long)cs[c].H,
                 (long long)cs[c].Hkv, (long long)cs[c].n_q, (long long)cs[c].n_k);
        if (!check(decode_plan_make(&pl, cs[c].B, cs[c].H, cs[c].Hkv, cs[c].n_q, cs[c].n_q, cs[c].n_k, &(attn_vis_t){ATTN_MASK_CAUSAL, 0, NULL, 0},
                                    qs, ks, 64, 64, cs[c].units, cs[c].waves, 0),
                   name, "no plan"))
            continue;
        int64_t items = cs[c].B * cs[c].Hkv * pl.q_tiles * pl.split, key_tiles = (cs[c].n_k + 63) / 64;
        int ok = cs[c].want_split > 0 ? pl.split == cs[c].want_split
                                      : items >= (int64_t)cs[c].units * cs[c].waves && pl.chunk >= 64 * DECODE_MIN_CHUNK_TILES;
        ok = ok && plan_indexing_ok(&pl, cs[c].B, why, sizeof why) && pl.q_tiles == (cs[c].H / cs[c].Hkv * cs[c].n_q + 63) / 64;
        check(ok, name, "split %d (wanted %d), chunk %lld of %lld key tiles, %lld items, q_tiles %d %s", pl.split,
              cs[c].want_split, (long long)pl.chunk, (long long)key_tiles, (long long)items, pl.q_tiles, why);
    }
    decode_plan_t pl;
    int made = decode_plan_make(&pl, 1, 40, 1, 64, 64, 4096, &(attn_vis_t){ATTN_MASK_NONE, 0, NULL, 0}, (attn_span_t){4032, 1},
                                (attn_span_t){0, 1}, 64, 64, 132, 4, 0);
    check(!made, "plan declines > DECODE_MAX_QTILES tiles", "40·64 packed rows made a plan of %d tiles", pl.q_tiles);
}

/* flash_decode.cu's own arithmetic around the plan: warp w's accumulator rows w·16 + lane/4 + 8r
 * cover the 64-row tile once; the warps it marks active (w·16 < rows left) hold every real row;
 * the merge's lanes (lane + 32c) cover the head dim once; the partial LSE starts where the partial
 * O's B·H_kv·split·rows·d floats end, inside rows·(d + 1) floats in all. */
static void gpu_mapping(void) {
    int bad = 0;
    for (int left = 1; left <= 64; left++) {
        int seen[64] = {0};
        for (int w = 0; w < 4; w++)
            for (int lane = 0; lane < 32; lane++)
                for (int e = 0; e < 4; e++) {
                    int row = w * 16 + frag_row(lane, e);
                    seen[row] += (e & 1) == 0 && (lane % 4) == 0; /* count each (row) once per warp quad */
                    bad += row < left && !(w * 16 < left);    /* a real row in an inactive warp */
                }
        for (int r = 0; r < 64; r++)
            bad += seen[r] != 1;
    }
    for (int d = 64; d <= 256; d *= 2) {
        int cols[256] = {0};
        for (int lane = 0; lane < 32; lane++)
            for (int c = 0; c < d / 32; c++)
                cols[lane + 32 * c]++;
        for (int c = 0; c < d; c++)
            bad += cols[c] != 1;
    }
    decode_plan_t pl;
    decode_plan_make(&pl, 2, 8, 2, 16, 16, 5000, &(attn_vis_t){ATTN_MASK_CAUSAL, 0, NULL, 0}, (attn_span_t){4984, 1}, (attn_span_t){0, 1}, 64, 64,
                     132, 4, 0);
    int64_t o_floats = pl.batch * pl.kv_heads * pl.split * pl.rows * 32, last = decode_part_row(&pl, 1, 1, pl.split - 1, pl.rows - 1);
    bad += (last + 1) * 32 != o_floats || o_floats + last + 1 != pl.batch * pl.kv_heads * pl.split * pl.rows * 33;
    check(bad == 0, "GPU tile rows, active warps, merge lanes, partial layout", "%d mismatches", bad);
}

static void merge_rule(void) {
    float m, sum, none[3] = {-INFINITY, -INFINITY, -INFINITY}, nan3[3] = {0.f, NAN, 1.f}, two[4] = {0.f, 9.f, logf(3.f), 9.f};
    float l = decode_merge_lse(none, 1, 3, &m, &sum);
    check(l == -INFINITY && sum == 0.f && decode_merge_weight(none[0], m, sum) == 0.f, "merge: nothing seen",
          "LSE %g sum %g", l, sum);
    l = decode_merge_lse(nan3, 1, 3, &m, &sum);
    check(l != l && decode_merge_weight(0.f, m, sum) != decode_merge_weight(0.f, m, sum), "merge: NaN part", "LSE %g", l);
    l = decode_merge_lse(two, 2, 2, &m, &sum); /* stride 2: parts 0 and ln 3 */
    check(fabsf(l - logf(4.f)) < 1e-6f && fabsf(decode_merge_weight(two[2], m, sum) - 0.75f) < 1e-6f,
          "merge: ln(e⁰ + e^ln3) = ln 4, weight 3/4", "LSE %g, weight %g", l, decode_merge_weight(two[2], m, sum));
}

/* One case: decode_attend_f32 with the plan against naive float64 on the same spans, within
 * blockwise's float32 tolerance (tolerance.c: 4 × naive float32's error + 4 ulps). */
static void numeric_case(int64_t B, int64_t H, int64_t Hkv, int64_t n_q, int64_t n_k, attn_mask_t mask, int64_t w,
                         attn_span_t qs, attn_span_t ks, int tile, int keys, int force_split) {
    int64_t d = 32;
    attn_problem_t p = {.batch = B, .heads = H, .kv_heads = Hkv, .head_dim = d, .n_q = n_q, .n_k = n_k,
                        .mask = mask, .window = w, .dtype = ATTN_F32};
    size_t nq = (size_t)(B * H * n_q * d), nkv = (size_t)(B * Hkv * n_k * d), nl = (size_t)(B * H * n_q);
    float *f = malloc(sizeof(float) * (3 * nq + 2 * nkv + 2 * nl));
    float *q = f, *k = q + nq, *v = k + nkv, *o = v + nkv, *lse = o + nq, *o32 = lse + nl, *lse32 = o32 + nq;
    double *dd = malloc(sizeof(double) * (2 * nq + 2 * nkv + nl));
    double *q64 = dd, *k64 = q64 + nq, *v64 = k64 + nkv, *o64 = v64 + nkv, *lse64 = o64 + nq;
    uint64_t seed = (uint64_t)(n_q * 1000003 + n_k * 31 + H * 7 + mask);
    for (size_t i = 0; i < nq; i++)
        q64[i] = q[i] = 2.0f * rng_value(seed, 0, i);
    for (size_t i = 0; i < nkv; i++) {
        k64[i] = k[i] = 2.0f * rng_value(seed, 1, i);
        v64[i] = v[i] = rng_value(seed, 2, i);
    }
    attn_err_t err = {0};
    char name[160], why[160] = "";
    snprintf(name, sizeof name, "decode B=%lld H=%lld/%lld n_q=%lld n_k=%lld mask=%s q@%lld+%lld·r k@%lld+%lld·j tile=%dx%d split=%d",
             (long long)B, (long long)H, (long long)Hkv, (long long)n_q, (long long)n_k, mask_name(mask), (long long)qs.start,
             (long long)qs.stride, (long long)ks.start, (long long)ks.stride, tile, keys, force_split);
    decode_plan_t pl;
    if (!check(decode_plan_make(&pl, B, H, Hkv, n_q, n_q, n_k, &(attn_vis_t){mask, w, NULL, 0}, qs, ks, tile, keys, 2, 2, force_split), name,
               "no plan"))
        goto out;
    attn_problem_t p64 = p;
    p64.dtype = ATTN_F64;
    attn_io_t io64 = {.q = q64, .k = k64, .v = v64, .o = o64, .lse = lse64};
    attn_io_t io32 = {.q = q, .k = k, .v = v, .o = o32, .lse = lse32};
    tile_io_t t = {q, k, v, o, lse, n_q, n_k};
    if (!check(naive_attend(&p64, 1, qs, n_q, ks, n_k, &io64, &err) == ATTN_OK &&
                   naive_attend(&p, 1, qs, n_q, ks, n_k, &io32, &err) == ATTN_OK &&
                   decode_attend_f32(&p, 2, &pl, qs, ks, &t, &err) == ATTN_OK,
               name, "%s", err.msg))
        goto out;
    double o_max = 0, l_max = 0;
    for (size_t i = 0; i < nq; i++)
        o_max = fmax(o_max, fabs(o64[i]));
    for (size_t i = 0; i < nl; i++)
        l_max = isfinite(lse64[i]) ? fmax(l_max, fabs(lse64[i])) : l_max;
    attn_errors_t naive32 = errors_measure(o32, lse32, ATTN_F32, o64, lse64, nq, nl);
    attn_errors_t e = errors_measure(o, lse, ATTN_F32, o64, lse64, nq, nl);
    attn_errors_t bound = tolerance_bound("blockwise", ATTN_F32, &naive32, o_max, l_max, n_k);
    int ok = errors_within(&e, &bound) && plan_indexing_ok(&pl, B, why, sizeof why) &&
             tile_ranges_ok(&pl, mask, w, qs, ks, why, sizeof why);
    check(ok, name, "split %d: max_abs %.3g (tol %.3g) rel_l2 %.3g (tol %.3g) lse %.3g (tol %.3g) %s", pl.split,
          e.max_abs, bound.max_abs, e.rel_l2, bound.rel_l2, e.lse_max, bound.lse_max, why);
out:
    free(f);
    free(dd);
}

int main(void) {
    check_quiet = 1;
    plan_choice();
    merge_rule();
    gpu_mapping();
    attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    int64_t heads[][2] = {{8, 2}, {4, 1}, {2, 2}}, nqs[] = {1, 16, 64}, nks[] = {200, 1000};
    int splits[] = {0, 1, 3, 8};
    for (int m = 0; m < 3; m++)
        for (int h = 0; h < 3; h++)
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 2; b++)
                    for (int s = 0; s < 4; s++) {
                        int64_t n_q = nqs[a], n_k = nks[b];
                        numeric_case(1 + (s == 2), heads[h][0], heads[h][1], n_q, n_k, masks[m], 37,
                                     (attn_span_t){n_k - n_q, 1}, (attn_span_t){0, 1}, 64, 64, splits[s]);
                    }
    /* Pieces of a distributed call at global positions: striped (stride 2), a chunk of queries
     * far into the sequence, keys after every query (causal: no row sees anything, O 0, LSE −∞),
     * and the CPU's own tiles (128 rows, partial tiles across heads). */
    numeric_case(1, 8, 2, 16, 300, ATTN_MASK_CAUSAL, 0, (attn_span_t){601, 2}, (attn_span_t){1, 2}, 64, 64, 4);
    numeric_case(1, 4, 1, 64, 500, ATTN_MASK_WINDOW, 50, (attn_span_t){5000, 1}, (attn_span_t){4600, 1}, 64, 64, 5);
    numeric_case(2, 4, 2, 16, 300, ATTN_MASK_CAUSAL, 0, (attn_span_t){0, 1}, (attn_span_t){1000, 1}, 64, 64, 3);
    numeric_case(1, 6, 2, 50, 700, ATTN_MASK_CAUSAL, 0, (attn_span_t){650, 1}, (attn_span_t){0, 1}, 128, 128, 0);
    /* The d = 256 kernel's tiles: 64 packed rows × FRAG_KEYS(256) = 32 keys (flash_frag.h). */
    for (int m = 0; m < 3; m++)
        for (int a = 0; a < 3; a++)
            for (int s = 0; s < 4; s += 2)
                numeric_case(1, 8, 2, nqs[a], 1000, masks[m], 37, (attn_span_t){1000 - nqs[a], 1}, (attn_span_t){0, 1}, 64,
                             FRAG_KEYS(256), splits[s + 1]);
    numeric_case(1, 8, 2, 16, 300, ATTN_MASK_CAUSAL, 0, (attn_span_t){601, 2}, (attn_span_t){1, 2}, 64, FRAG_KEYS(256), 0);
    check_quiet = 0;
    return check_summary();
}
