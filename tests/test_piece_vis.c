/* test_piece_vis.c — packed documents in the GPU distributed backends, on the host: the
 * functions flash.cu applies to a ring piece pair (impls/parallel/piece_vis.h, through
 * plan_pair_vis) and Ulysses' gathered rows (plan_ulysses_row0), against mask_visible at global
 * positions over every pair of every step of ring, striped and zigzag at P = 1 … 8. */
#include <stdio.h>
#include <string.h>

#include "impls/parallel/plan.h"
#include "tests/check.h"

static uint64_t lcg = 2026;
static int64_t draw(int64_t n) { /* uniform on [0, n) */
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (int64_t)((lcg >> 33) % (uint64_t)n);
}

/* Offsets of n tokens in documents of random lengths 1 … max_len (length 1 included). */
static int64_t layout(int64_t n, int64_t max_len, int64_t *off) {
    int64_t k = 0;
    off[0] = 0;
    while (off[k] < n) {
        int64_t len = draw(4) == 0 ? 1 : 1 + draw(max_len);
        off[k + 1] = off[k] + len < n ? off[k] + len : n;
        k++;
    }
    return k;
}

/* One piece pair under pv (the kernel's view) against v (global rule) for every (query, key):
 * piece_visible; key ranges of row tiles of `br` rows hold every visible pair; a tile
 * piece_tile_masked calls unmasked is visible throughout; a skipped pair has none visible. */
static int check_pair(const attn_vis_t *v, const plan_pair_t *pr, int br, int bc) {
    piece_vis_t pv = plan_pair_vis(v, v->doc, pr);
    int64_t S = pr->q.pos.stride, nq = pr->q.count, nk = pr->k.count, visible = 0;
    for (int64_t r = 0; r < nq; r++)
        for (int64_t j = 0; j < nk; j++) {
            int want = mask_visible(v, pr->q.pos.start + S * r, pr->k.pos.start + S * j);
            visible += want;
            if (piece_visible(&pv, pr->q_off + r, j) != want)
                return 0;
            if (want && (j < pr->lo || j >= pr->hi))
                return 0;
        }
    if (pr->skip && visible)
        return 0;
    for (int64_t r0 = 0; r0 < nq; r0 += br) {
        int64_t r1 = r0 + br < nq ? r0 + br : nq, i_lo = pr->q_off + r0, i_hi = pr->q_off + r1 - 1, lo, hi;
        piece_key_range(&pv, i_lo, i_hi, nk, &lo, &hi);
        for (int64_t r = r0; r < r1; r++)
            for (int64_t j = 0; j < nk; j++)
                if (mask_visible(v, pr->q.pos.start + S * r, pr->k.pos.start + S * j) && (j < lo || j >= hi))
                    return 0;
        for (int64_t k0 = lo / bc * bc; k0 < hi; k0 += bc) {
            int64_t k1 = k0 + bc < nk ? k0 + bc : nk;
            if (piece_tile_masked(&pv, i_lo, i_hi, k0, k1))
                continue;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t j = k0; j < k1; j++)
                    if (!mask_visible(v, pr->q.pos.start + S * r, pr->k.pos.start + S * j))
                        return 0;
        }
    }
    return 1;
}

static void ring_layouts(void) {
    static const attn_layout_kind_t kinds[] = {LAYOUT_CONTIGUOUS, LAYOUT_STRIPED, LAYOUT_ZIGZAG};
    static const attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    int64_t off[512];
    for (int t = 0; t < 24; t++) {
        int64_t n_k = 40 + draw(160), n_q = draw(3) ? n_k : 1 + draw(n_k);
        int64_t nd = layout(n_k, t % 3 == 0 ? 4 : t % 3 == 1 ? 30 : 2 * n_k, off);
        for (int P = 1; P <= 8; P++)
            for (int ki = 0; ki < 3; ki++)
                for (int mi = 0; mi < 3; mi++) {
                    attn_vis_t v = {masks[mi], 1 + draw(n_k / 2 + 1), off, nd};
                    int ok = 1, pairs = 0, skipped = 0;
                    for (int r = 0; r < P && ok; r++)
                        for (int s = 0; s < P && ok; s++) {
                            plan_ring_step_t st;
                            attn_err_t err = {0};
                            if (plan_ring_step(kinds[ki], n_q, n_k, &v, P, r, s, &st, &err) != ATTN_OK)
                                continue; /* the layout declines this n and P (zigzag: n < 2P) */
                            for (int i = 0; i < st.n_pairs && ok; i++, pairs++) {
                                skipped += st.pair[i].skip;
                                ok = check_pair(&v, &st.pair[i], 1 + (int)draw(20), 1 + (int)draw(24));
                            }
                        }
                    check(ok, "piece pair", "%s P=%d n_q=%lld n_k=%lld mask=%s w=%lld docs=%lld (%d pairs, %d skipped)",
                          layout_name(kinds[ki]), P, (long long)n_q, (long long)n_k, mask_name(masks[mi]),
                          (long long)v.window, (long long)nd, pairs, skipped);
                }
    }
}

/* The single-GPU and Ulysses view: band = global positions, queries at the end of the keys. */
static void global_view(void) {
    int64_t off[512];
    int ok = 1;
    for (int t = 0; t < 40 && ok; t++) {
        int64_t n_k = 1 + draw(150), n_q = 1 + draw(n_k), nd = layout(n_k, 1 + draw(40), off);
        attn_vis_t v = {(attn_mask_t)draw(3), 1 + draw(n_k), off, nd};
        piece_vis_t pv = piece_vis_global(v, n_k - n_q);
        for (int64_t i = n_k - n_q; i < n_k && ok; i++)
            for (int64_t j = 0; j < n_k; j++)
                ok &= piece_visible(&pv, i, j) == mask_visible(&v, i, j);
    }
    check(ok, "global view", "piece_vis_global against mask_visible on 40 layouts");
}

/* Ulysses: rank q's tokens land at row plan_ulysses_row0 of the gathered sequence, which must
 * be the global position of q's first token (contiguous layout), so the offsets stay valid. */
static void ulysses_rows(void) {
    int ok = 1;
    for (int64_t n = 1; n < 300 && ok; n += 1 + draw(7))
        for (int P = 1; P <= 8 && ok; P++) {
            attn_layout_t l;
            attn_err_t err = {0};
            int64_t count[ATTN_MAX_RANKS];
            if (layout_init(&l, LAYOUT_CONTIGUOUS, n, P, &err) != ATTN_OK)
                continue;
            for (int q = 0; q < P; q++)
                count[q] = layout_local_count(&l, q);
            for (int q = 0; q < P; q++) {
                layout_piece_t pc[2];
                int np = layout_pieces(&l, q, pc);
                ok &= np == 0 || count[q] == 0 || pc[0].pos.start == plan_ulysses_row0(count, q);
                ok &= np <= 1 && (np == 0 || pc[0].pos.stride == 1);
            }
        }
    check(ok, "ulysses rows", "gathered row of each rank's first token = its global position, n < 300, P = 1 … 8");
}

int main(void) {
    ring_layouts();
    global_view();
    ulysses_rows();
    return check_summary();
}
