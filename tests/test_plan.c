/* test_plan.c — impls/parallel/plan.h checked exhaustively: every ring step of every rank over
 * a grid of layouts, rank counts, uneven shapes and masks (coverage of each visible pair by
 * exactly one computed piece pair, skips, key ranges, the kernel band, the rows moved, the
 * analytic figures), and Ulysses' head map and all-to-all counts replayed on index arrays. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "impls/parallel/plan.h"
#include "tests/check.h"

static long n_cases, n_steps, n_pairs, n_ij, n_visible, n_loose, n_u_cases, n_u_elems;

/* ---- the formulas the backends used before the plan (ring.c, ring_cuda.cu, band.h) ---- */

static int64_t old_floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static void old_band_for(int64_t a, int64_t b, int64_t S, int64_t w, int64_t *q_off, int64_t *win) {
    int64_t delta = a - b;
    *q_off = old_floor_div(delta, S);
    *win = -old_floor_div(-(w - delta), S) + *q_off;
}

static double old_visible_pairs(attn_mask_t m, int64_t w, int64_t n_q, int64_t n_k, const attn_layout_t *lq, int qr,
                                const attn_layout_t *lk, int kr) {
    layout_piece_t qp[2], kp[2];
    int nqp = layout_pieces(lq, qr, qp), nkp = layout_pieces(lk, kr, kp);
    double pairs = 0;
    for (int a = 0; a < nqp; a++)
        for (int64_t r = 0; r < qp[a].count; r++) {
            int64_t i = n_k - n_q + qp[a].pos.start + qp[a].pos.stride * r, lo, hi;
            for (int b = 0; b < nkp; b++) {
                mask_key_range(&(attn_vis_t){m, w, 0, 0}, i, i, kp[b].pos, kp[b].count, &lo, &hi);
                pairs += hi > lo ? (double)(hi - lo) : 0;
            }
        }
    return pairs;
}

static void old_ring_expect(attn_layout_kind_t kind, int64_t n_q, int64_t n_k, attn_mask_t m, int64_t w, int P,
                            double row, attn_dist_expect_t *out) {
    attn_layout_t lq, lk;
    attn_err_t err = {0};
    memset(out, 0, sizeof *out);
    if (layout_init(&lq, kind, n_q, P, &err) || layout_init(&lk, kind, n_k, P, &err))
        return;
    double pairs[ATTN_MAX_RANKS][ATTN_MAX_RANKS], work[ATTN_MAX_RANKS] = {0}, total = 0, worst = 0;
    for (int r = 0; r < P; r++)
        for (int k = 0; k < P; k++) {
            pairs[r][k] = old_visible_pairs(m, w, n_q, n_k, &lq, r, &lk, k);
            work[r] += pairs[r][k];
            total += pairs[r][k];
        }
    for (int r = 0; r < P; r++)
        worst = fmax(worst, work[r]);
    out->imbalance = total > 0 ? worst / (total / P) : 1;
    for (int s = 0; s < P; s++) {
        double step = 0;
        for (int r = 0; r < P; r++)
            step = fmax(step, pairs[r][(r - s + P) % P]);
        out->critical_path += total > 0 ? step / (total / P) : 0;
    }
    for (int r = 0; P > 1 && r < P; r++) {
        out->bytes_sent[r] = row * (double)(n_k - layout_local_count(&lk, (r + 1) % P));
        out->bytes_recv[r] = row * (double)(n_k - layout_local_count(&lk, r));
    }
}

/* ---- ring family ---- */

#define RING_FAIL(...)                                                                                                 \
    do {                                                                                                               \
        char why_[1200];                                                                                                \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                                                      \
        check(0, name, "rank %d step %d: %s", r, s, why_);                                                             \
        goto done;                                                                                                     \
    } while (0)

static void ring_case(attn_layout_kind_t kind, int P, int64_t n_q, int64_t n_k, attn_mask_t m, int64_t w) {
    char name[120];
    snprintf(name, sizeof name, "ring %s P=%d n_q=%lld n_k=%lld %s w=%lld", layout_name(kind), P, (long long)n_q,
             (long long)n_k, mask_name(m), (long long)w);
    attn_layout_t lq, lk;
    attn_err_t err = {0};
    if (!check(!layout_init(&lq, kind, n_q, P, &err) && !layout_init(&lk, kind, n_k, P, &err), name, "layout: %s",
               err.msg))
        return;
    n_cases++;
    int64_t off = n_k - n_q;
    int *cover = calloc((size_t)(n_q * n_k), sizeof(int));
    double work[ATTN_MAX_RANKS] = {0}, plan_work[ATTN_MAX_RANKS];
    int64_t sent[ATTN_MAX_RANKS] = {0}, recvd[ATTN_MAX_RANKS] = {0};
    int r = 0, s = 0, seen[ATTN_MAX_RANKS];
    plan_ring_step_t st, nb;
    for (r = 0; r < P; r++) {
        memset(seen, 0, sizeof seen);
        for (s = 0; s < P; s++) {
            n_steps++;
            if (plan_ring_step(kind, n_q, n_k, &(attn_vis_t){m, w, 0, 0}, P, r, s, &st, &err))
                RING_FAIL("plan_ring_step: %s", err.msg);
            /* The formulas of ring.c and ring_cuda.cu before the plan. */
            int old_src = (r - s + P) % P, old_next = (r - s - 1 + P) % P;
            if (st.src != old_src || st.next_src != old_next || st.send_to != (r + 1) % P ||
                st.recv_from != (r - 1 + P) % P)
                RING_FAIL("src %d next %d to %d from %d", st.src, st.next_src, st.send_to, st.recv_from);
            if (seen[st.src]++)
                RING_FAIL("block of rank %d computed twice", st.src);
            if (st.q_rows != layout_local_count(&lq, r) || st.k_rows != layout_local_count(&lk, st.src))
                RING_FAIL("rows %lld/%lld", (long long)st.q_rows, (long long)st.k_rows);
            /* What moves: this block on to r + 1, which holds it next step; the next one from r − 1. */
            int64_t want_sent = s < P - 1 ? st.k_rows : 0;
            int64_t want_recv = s < P - 1 ? layout_local_count(&lk, old_next) : 0;
            if (st.rows_sent != want_sent || st.rows_recv != want_recv)
                RING_FAIL("rows sent %lld recv %lld", (long long)st.rows_sent, (long long)st.rows_recv);
            if (s < P - 1) {
                plan_ring_step(kind, n_q, n_k, &(attn_vis_t){m, w, 0, 0}, P, st.send_to, s, &nb, &err);
                if (nb.recv_from != r || nb.rows_recv != st.rows_sent || nb.next_src != st.src)
                    RING_FAIL("rank %d receives %lld rows of block %d from %d, rank %d sends %lld of %d", st.send_to,
                              (long long)nb.rows_recv, nb.next_src, nb.recv_from, r, (long long)st.rows_sent, st.src);
                plan_ring_step(kind, n_q, n_k, &(attn_vis_t){m, w, 0, 0}, P, r, s + 1, &nb, &err);
                if (nb.src != st.next_src || nb.k_rows != st.rows_recv)
                    RING_FAIL("next step computes block %d (%lld rows), received %d (%lld rows)", nb.src,
                              (long long)nb.k_rows, st.next_src, (long long)st.rows_recv);
            }
            sent[r] += st.rows_sent, recvd[r] += st.rows_recv;
            /* The old per-pair loop: the same pieces, skips and bands in the same order. */
            layout_piece_t qpc[2], kpc[2];
            int nqp = layout_pieces(&lq, r, qpc), nkp = layout_pieces(&lk, old_src, kpc), at = 0;
            if (st.n_pairs != nqp * nkp)
                RING_FAIL("%d pairs, want %d", st.n_pairs, nqp * nkp);
            for (int a = 0; a < nqp; a++)
                for (int b = 0; b < nkp; b++, at++) {
                    const plan_pair_t *pr = &st.pair[at];
                    int64_t qa = qpc[a].pos.start + off, lo, hi, q_off, win;
                    mask_key_range(&(attn_vis_t){m, w, 0, 0}, qa, qa + qpc[a].pos.stride * (qpc[a].count - 1), kpc[b].pos, kpc[b].count, &lo,
                                   &hi);
                    old_band_for(qa, kpc[b].pos.start, qpc[a].pos.stride, w, &q_off, &win);
                    if (pr->q.pos.start != qa || pr->q.pos.stride != qpc[a].pos.stride || pr->q.count != qpc[a].count ||
                        pr->q.local_start != qpc[a].local_start || memcmp(&pr->k, &kpc[b], sizeof pr->k) ||
                        pr->skip != (lo >= hi) || pr->lo != lo || pr->hi != hi || pr->q_off != q_off || pr->win != win)
                        RING_FAIL("pair %d differs from the old formulas", at);
                }
            /* Semantics: each (i, j) of a computed pair through the layouts' own maps. */
            for (int pi = 0; pi < st.n_pairs; pi++) {
                const plan_pair_t *pr = &st.pair[pi];
                n_pairs++;
                if (pr->k.pos.stride != pr->q.pos.stride && pr->q.count > 1 && pr->k.count > 1)
                    RING_FAIL("pair %d: strides %lld and %lld", pi, (long long)pr->q.pos.stride,
                              (long long)pr->k.pos.stride);
                int any = 0, lo_seen = 0, hi_seen = 0;
                for (int64_t i = 0; i < pr->q.count; i++) {
                    int64_t qpos = pr->q.pos.start + pr->q.pos.stride * i;
                    if (layout_local_to_global(&lq, r, pr->q.local_start + i) != qpos - off)
                        RING_FAIL("pair %d: query %lld is not at position %lld", pi, (long long)i, (long long)qpos);
                    for (int64_t j = 0; j < pr->k.count; j++) {
                        int64_t kpos = pr->k.pos.start + pr->k.pos.stride * j;
                        if (i == 0 && layout_local_to_global(&lk, st.src, pr->k.local_start + j) != kpos)
                            RING_FAIL("pair %d: key %lld is not at position %lld", pi, (long long)j, (long long)kpos);
                        int vis = mask_visible(&(attn_vis_t){m, w, 0, 0}, qpos, kpos);
                        n_ij++;
                        if (plan_band_visible(m, pr->q_off, pr->win, i, j) != vis)
                            RING_FAIL("pair %d (i %lld, j %lld): band says %d, mask %d", pi, (long long)i, (long long)j,
                                      !vis, vis);
                        if (!vis)
                            continue;
                        if (pr->skip || j < pr->lo || j >= pr->hi)
                            RING_FAIL("pair %d: visible (i %lld, j %lld) skipped or outside [%lld, %lld)", pi,
                                      (long long)i, (long long)j, (long long)pr->lo, (long long)pr->hi);
                        any = 1, lo_seen |= j == pr->lo, hi_seen |= j == pr->hi - 1;
                        cover[(qpos - off) * n_k + kpos]++;
                        work[r]++;
                    }
                }
                /* Tight for stride 1 (contiguous, zigzag); striped may compute a pair with no
                 * visible (i, j) when the window is narrower than P: counted, not an error. */
                if (!pr->skip && (!any || !lo_seen || !hi_seen)) {
                    if (pr->q.pos.stride == 1)
                        RING_FAIL("pair %d: [%lld, %lld) wider than the visible keys", pi, (long long)pr->lo,
                                  (long long)pr->hi);
                    n_loose++;
                }
            }
        }
    }
    s = -1;
    for (r = 0; r < P; r++)
        if (sent[r] != n_k - layout_local_count(&lk, (r + 1) % P) || recvd[r] != n_k - layout_local_count(&lk, r))
            RING_FAIL("rows over the ring: sent %lld recv %lld", (long long)sent[r], (long long)recvd[r]);
    r = -1;
    long visible = 0;
    for (int64_t i = 0; i < n_q; i++)
        for (int64_t j = 0; j < n_k; j++) {
            int vis = mask_visible(&(attn_vis_t){m, w, 0, 0}, i + off, j);
            visible += vis;
            if (cover[i * n_k + j] != vis)
                RING_FAIL("(query %lld, key %lld) visible %d covered %d times", (long long)i, (long long)j, vis,
                          cover[i * n_k + j]);
        }
    n_visible += visible;
    /* The analytic figures: work per rank as counted above, the rest as the old formulas gave. */
    double row = 2.0 * 2 * 3 * 5 * 4; /* 2·B·H_kv·d·elem for B = 2, H_kv = 3, d = 5, float32 */
    attn_dist_expect_t got, want;
    plan_ring_expect(kind, n_q, n_k, &(attn_vis_t){m, w, 0, 0}, P, row, &got, plan_work);
    old_ring_expect(kind, n_q, n_k, m, w, P, row, &want);
    double total = 0;
    for (r = 0; r < P; r++) {
        total += plan_work[r];
        if (plan_work[r] != work[r])
            RING_FAIL("expect: work %.0f, counted %.0f", plan_work[r], work[r]);
    }
    r = -1;
    if (total != (double)visible)
        RING_FAIL("expect: work %.0f, visible pairs %ld", total, visible);
    if (memcmp(&got, &want, sizeof got))
        RING_FAIL("expect differs from the old formulas: imbalance %.17g/%.17g critical %.17g/%.17g", got.imbalance,
                  want.imbalance, got.critical_path, want.critical_path);
    check(1, name, "ok");
done:
    free(cover);
}

/* ---- Ulysses ---- */

/* The predicate and head split of ulysses_cuda.cu and ulysses.c before the plan. */
static int old_ulysses_heads(int64_t H, int64_t Hkv, int P, int q, int64_t *hq, int64_t *q0, int64_t *kv0,
                             int64_t *kvn) {
    int64_t group = H / Hkv;
    if (H % P)
        return 0;
    *hq = H / P, *q0 = q * *hq;
    *kv0 = *q0 / group, *kvn = (*q0 + *hq - 1) / group + 1 - *kv0;
    if (*hq % *kvn)
        return 0;
    for (int64_t j = 0; j < *hq; j++)
        if ((*q0 + j) / group - *kv0 != j / (*hq / *kvn))
            return 0;
    return 1;
}

static void ulysses_predicate(void) {
    long agree = 0, accepted = 0;
    for (int64_t H = 1; H <= 32; H++)
        for (int64_t Hkv = 1; Hkv <= H; Hkv++) {
            if (H % Hkv)
                continue;
            for (int P = 1; P <= 8; P++) {
                int64_t hq, q0, kv0, kvn;
                int old = 1;
                for (int q = 0; q < P; q++)
                    old = old && old_ulysses_heads(H, Hkv, P, q, &hq, &q0, &kv0, &kvn);
                int got = plan_ulysses_kernel_heads(H, Hkv, P);
                char name[80];
                snprintf(name, sizeof name, "ulysses heads H=%lld H_kv=%lld P=%d", (long long)H, (long long)Hkv, P);
                if (got != old) {
                    check(0, name, "plan %s, ulysses_heads %s", got ? "accepts" : "declines", old ? "accepted" : "declined");
                    continue;
                }
                agree++, accepted += got;
                for (int q = 0; H % P == 0 && q < P; q++) { /* ulysses.c's head_split for every rank */
                    plan_heads_t h = plan_ulysses_heads(H, Hkv, P, q);
                    int64_t first = (int64_t)q * (H / P), last = first + H / P - 1, group = H / Hkv;
                    int lines = old_ulysses_heads(H, Hkv, P, q, &hq, &q0, &kv0, &kvn);
                    if (h.hq != H / P || h.q0 != first || h.kv0 != first / group || h.kvn != last / group - first / group + 1 ||
                        h.lines_up != lines)
                        check(0, name, "rank %d: heads differ from head_split", q);
                }
            }
        }
    check(agree > 0, "ulysses heads predicate", "%ld splits agree with ulysses_heads, %ld accepted", agree, accepted);
    printf("ulysses heads: %ld (H, H_kv, P) splits agree with the old predicate, %ld accepted\n", agree, accepted);
}

/* Tags: every element of Q (B, H, n_q, d), K and V (B, H_kv, n_k, d), O|LSE (B, H, n_q, d + 1)
 * has its own nonzero number, so a misplaced element shows where it came from. */
typedef struct {
    int64_t B, H, Hkv, d, n_q, n_k;
} dims_t;
static int64_t tag_q(const dims_t *z, int64_t b, int64_t h, int64_t t, int64_t c) {
    return 1 + ((b * z->H + h) * z->n_q + t) * z->d + c;
}
static int64_t tag_kv(const dims_t *z, int v, int64_t b, int64_t h, int64_t t, int64_t c) {
    return 1 + z->B * z->H * z->n_q * z->d + ((((int64_t)v * z->B + b) * z->Hkv + h) * z->n_k + t) * z->d + c;
}
static int64_t tag_out(const dims_t *z, int64_t b, int64_t h, int64_t t, int64_t c) {
    return -(1 + ((b * z->H + h) * z->n_q + t) * (z->d + 1) + c);
}

/* Peers' runs lie back to back in rank order from 0 and end at total (the staging size). */
static int runs_ok(int P, const int64_t *count, const int64_t *count2, const int64_t *off, int64_t total) {
    int64_t at = 0;
    for (int r = 0; r < P; r++) {
        if (off[r] != at || count[r] < 0)
            return 0;
        at += count[r] + (count2 ? count2[r] : 0);
    }
    return total < 0 || at == total;
}

#define U_FAIL(...)                                                                                                    \
    do {                                                                                                               \
        check(0, name, __VA_ARGS__);                                                                                   \
        goto done;                                                                                                     \
    } while (0)

static void ulysses_case(attn_layout_kind_t kind, int P, dims_t z) {
    char name[140];
    snprintf(name, sizeof name, "ulysses %s P=%d B=%lld H=%lld H_kv=%lld d=%lld n_q=%lld n_k=%lld", layout_name(kind), P,
             (long long)z.B, (long long)z.H, (long long)z.Hkv, (long long)z.d, (long long)z.n_q, (long long)z.n_k);
    attn_layout_t lq, lk;
    attn_err_t err = {0};
    layout_init(&lq, kind, z.n_q, P, &err);
    layout_init(&lk, kind, z.n_k, P, &err);
    n_u_cases++;
    plan_ulysses_t *pl = calloc((size_t)P, sizeof *pl);
    int64_t *send[ATTN_MAX_RANKS] = {0}, *recv[ATTN_MAX_RANKS] = {0}, *full[ATTN_MAX_RANKS] = {0};
    int64_t *kvfull[ATTN_MAX_RANKS] = {0}, *back[ATTN_MAX_RANKS] = {0};
    int64_t B = z.B, d = z.d, H = z.H, Hkv = z.Hkv, group = H / Hkv;
    int64_t *kv_cover = calloc((size_t)(2 * B * Hkv * z.n_k * d), sizeof(int64_t));
    for (int r = 0; r < P; r++)
        if (plan_ulysses(B, H, Hkv, d, z.n_q, z.n_k, kind, P, r, &pl[r], &err))
            U_FAIL("rank %d: %s", r, err.msg);
    for (int r = 0; r < P; r++) {
        const plan_ulysses_t *u = &pl[r];
        const plan_heads_t *h = &u->heads[r];
        /* The counts against ulysses.c's and ulysses_cuda.cu's formulas before the plan. */
        for (int q = 0; q < P; q++) {
            int64_t hq = H / P, m_r = layout_local_count(&lq, r), m_q = layout_local_count(&lq, q);
            int64_t k_r = layout_local_count(&lk, r), k_q = layout_local_count(&lk, q);
            if (u->send_q[q] != B * hq * m_r * d || u->recv_q[q] != B * hq * m_q * d ||
                u->send_kv[q] != 2 * B * u->heads[q].kvn * k_r * d || u->recv_kv[q] != 2 * B * h->kvn * k_q * d ||
                u->send_out[q] != B * hq * m_q * (d + 1) || u->recv_out[q] != B * hq * m_r * (d + 1) ||
                2 * (u->send_q[q] + u->send_kv[q]) != B * 2 * d * (u->heads[q].hq * m_r + 2 * u->heads[q].kvn * k_r))
                U_FAIL("rank %d peer %d: counts differ from the old formulas", r, q);
            /* Both ends of every message agree. */
            if (u->send_q[q] != pl[q].recv_q[r] || u->send_kv[q] != pl[q].recv_kv[r] || u->send_out[q] != pl[q].recv_out[r])
                U_FAIL("rank %d sends %lld|%lld|%lld to %d, which expects %lld|%lld|%lld", r, (long long)u->send_q[q],
                       (long long)u->send_kv[q], (long long)u->send_out[q], q, (long long)pl[q].recv_q[r],
                       (long long)pl[q].recv_kv[r], (long long)pl[q].recv_out[r]);
        }
        if (!runs_ok(P, u->send_q, u->send_kv, u->send_in_off, u->in_send_total) ||
            !runs_ok(P, u->recv_q, u->recv_kv, u->recv_in_off, u->in_recv_total) ||
            !runs_ok(P, u->send_q, NULL, u->send_q_off, -1) || !runs_ok(P, u->recv_q, NULL, u->recv_q_off, -1) ||
            !runs_ok(P, u->send_kv, NULL, u->send_kv_off, -1) || !runs_ok(P, u->recv_kv, NULL, u->recv_kv_off, -1) ||
            !runs_ok(P, u->send_out, NULL, u->send_out_off, u->out_send_total) ||
            !runs_ok(P, u->recv_out, NULL, u->recv_out_off, u->out_recv_total))
            U_FAIL("rank %d: per-peer runs overlap, leave gaps or miss their totals", r);
        /* GQA: local head j reads the kv head of its global head, and lines_up means the kernel's map finds it. */
        for (int64_t j = 0; j < h->hq; j++) {
            int64_t kv = plan_ulysses_kv_of(h, group, j);
            if (kv < 0 || kv >= h->kvn || h->kv0 + kv != (h->q0 + j) / group)
                U_FAIL("rank %d: local head %lld reads kv %lld of [%lld, +%lld)", r, (long long)j, (long long)kv,
                       (long long)h->kv0, (long long)h->kvn);
            if (h->lines_up && (h->hq % h->kvn || kv != j / (h->hq / h->kvn)))
                U_FAIL("rank %d: lines_up but head %lld maps to %lld", r, (long long)j, (long long)(j / (h->hq / h->kvn)));
        }
        send[r] = calloc((size_t)(u->in_send_total + u->out_send_total + 1), sizeof(int64_t));
        recv[r] = calloc((size_t)(u->in_recv_total + u->out_recv_total + 1), sizeof(int64_t));
        full[r] = calloc((size_t)(B * h->hq * z.n_q * (d + 1) + 1), sizeof(int64_t));
        kvfull[r] = calloc((size_t)(2 * B * h->kvn * z.n_k * d + 1), sizeof(int64_t));
        back[r] = calloc((size_t)(B * H * u->m[r] * (d + 1) + 1), sizeof(int64_t));
    }
    /* In: rank r packs [Q | K | V] of its tokens for each peer's heads at the plan's offsets. */
    for (int r = 0; r < P; r++) {
        const plan_ulysses_t *u = &pl[r];
        for (int q = 0; q < P; q++) {
            const plan_heads_t *hq = &u->heads[q];
            int64_t at = u->send_in_off[q], start = at;
            for (int64_t b = 0; b < B; b++)
                for (int64_t hh = 0; hh < hq->hq; hh++)
                    for (int64_t t = 0; t < u->m[r]; t++)
                        for (int64_t c = 0; c < d; c++)
                            send[r][at++] = tag_q(&z, b, hq->q0 + hh, layout_local_to_global(&lq, r, t), c);
            if (at - start != u->send_q[q])
                U_FAIL("rank %d: Q for %d is %lld elements, plan says %lld", r, q, (long long)(at - start),
                       (long long)u->send_q[q]);
            for (int v = 0; v < 2; v++)
                for (int64_t b = 0; b < B; b++)
                    for (int64_t kh = 0; kh < hq->kvn; kh++)
                        for (int64_t t = 0; t < u->k[r]; t++)
                            for (int64_t c = 0; c < d; c++)
                                send[r][at++] = tag_kv(&z, v, b, hq->kv0 + kh, layout_local_to_global(&lk, r, t), c);
            if (at - start != u->send_q[q] + u->send_kv[q] ||
                at > (q + 1 < P ? u->send_in_off[q + 1] : u->in_send_total))
                U_FAIL("rank %d: [Q | K | V] for %d overruns its run", r, q);
        }
    }
    for (int r = 0; r < P; r++) /* the exchange: r's run from q lands at recv_in_off[q] */
        for (int q = 0; q < P; q++)
            memcpy(recv[r] + pl[r].recv_in_off[q], send[q] + pl[q].send_in_off[r],
                   (size_t)(pl[r].recv_q[q] + pl[r].recv_kv[q]) * sizeof(int64_t));
    /* Unpack into the full sequence of the rank's heads; every element must be the one expected. */
    for (int r = 0; r < P; r++) {
        const plan_ulysses_t *u = &pl[r];
        const plan_heads_t *h = &u->heads[r];
        for (int q = 0; q < P; q++) {
            const int64_t *at = recv[r] + u->recv_in_off[q];
            for (int64_t b = 0; b < B; b++)
                for (int64_t hh = 0; hh < h->hq; hh++)
                    for (int64_t t = 0; t < u->m[q]; t++)
                        for (int64_t c = 0; c < d; c++) {
                            int64_t g = layout_local_to_global(&lq, q, t), want = tag_q(&z, b, h->q0 + hh, g, c);
                            if (*at != want)
                                U_FAIL("rank %d: Q from %d holds %lld, want %lld", r, q, (long long)*at, (long long)want);
                            full[r][((b * h->hq + hh) * z.n_q + g) * (d + 1) + c] = *at++;
                            n_u_elems++;
                        }
            for (int v = 0; v < 2; v++)
                for (int64_t b = 0; b < B; b++)
                    for (int64_t kh = 0; kh < h->kvn; kh++)
                        for (int64_t t = 0; t < u->k[q]; t++)
                            for (int64_t c = 0; c < d; c++) {
                                int64_t g = layout_local_to_global(&lk, q, t), want = tag_kv(&z, v, b, h->kv0 + kh, g, c);
                                if (*at != want)
                                    U_FAIL("rank %d: %s from %d holds %lld, want %lld", r, v ? "V" : "K", q,
                                           (long long)*at, (long long)want);
                                kvfull[r][(((int64_t)v * B + b) * h->kvn + kh) * z.n_k * d + g * d + c] = *at++;
                                kv_cover[(((int64_t)v * B + b) * Hkv + h->kv0 + kh) * z.n_k * d + g * d + c]++;
                                n_u_elems++;
                            }
        }
        /* The whole sequence of each local head and of the kv head it reads arrived. */
        for (int64_t b = 0; b < B; b++)
            for (int64_t hh = 0; hh < h->hq; hh++) {
                int64_t kv = plan_ulysses_kv_of(h, group, hh);
                for (int64_t g = 0; g < z.n_q; g++)
                    for (int64_t c = 0; c < d; c++)
                        if (full[r][((b * h->hq + hh) * z.n_q + g) * (d + 1) + c] != tag_q(&z, b, h->q0 + hh, g, c))
                            U_FAIL("rank %d: Q head %lld token %lld missing", r, (long long)(h->q0 + hh), (long long)g);
                for (int v = 0; v < 2; v++)
                    for (int64_t g = 0; g < z.n_k; g++)
                        for (int64_t c = 0; c < d; c++)
                            if (kvfull[r][(((int64_t)v * B + b) * h->kvn + kv) * z.n_k * d + g * d + c] !=
                                tag_kv(&z, v, b, (h->q0 + hh) / group, g, c))
                                U_FAIL("rank %d: query head %lld does not see kv head %lld token %lld", r,
                                       (long long)(h->q0 + hh), (long long)((h->q0 + hh) / group), (long long)g);
            }
    }
    /* Each kv head went to exactly the ranks whose query heads read it. */
    for (int64_t kh = 0; kh < Hkv; kh++) {
        int64_t readers = 0;
        for (int r = 0; r < P; r++)
            readers += pl[0].heads[r].q0 / group <= kh && kh <= (pl[0].heads[r].q0 + pl[0].heads[r].hq - 1) / group;
        for (int64_t x = 0; x < 2 * B; x++)
            for (int64_t e = 0; e < z.n_k * d; e++)
                if (kv_cover[(x * Hkv + kh) * z.n_k * d + e] != readers)
                    U_FAIL("kv head %lld element %lld reached %lld ranks, %lld read it", (long long)kh, (long long)e,
                           (long long)kv_cover[(x * Hkv + kh) * z.n_k * d + e], (long long)readers);
    }
    /* Out: each rank "computes" O|LSE of its heads (tags), sends each peer its tokens' rows. */
    for (int r = 0; r < P; r++) {
        const plan_ulysses_t *u = &pl[r];
        const plan_heads_t *h = &u->heads[r];
        for (int q = 0; q < P; q++) {
            int64_t *at = send[r] + u->in_send_total + u->send_out_off[q], *start = at;
            for (int64_t b = 0; b < B; b++)
                for (int64_t hh = 0; hh < h->hq; hh++)
                    for (int64_t t = 0; t < u->m[q]; t++)
                        for (int64_t c = 0; c <= d; c++)
                            *at++ = tag_out(&z, b, h->q0 + hh, layout_local_to_global(&lq, q, t), c);
            if (at - start != u->send_out[q])
                U_FAIL("rank %d: O|LSE for %d is %lld elements, plan says %lld", r, q, (long long)(at - start),
                       (long long)u->send_out[q]);
        }
    }
    for (int r = 0; r < P; r++)
        for (int q = 0; q < P; q++)
            memcpy(recv[r] + pl[r].in_recv_total + pl[r].recv_out_off[q],
                   send[q] + pl[q].in_send_total + pl[q].send_out_off[r], (size_t)pl[r].recv_out[q] * sizeof(int64_t));
    /* Back where each row started: rank r's tokens, every head, each element once. */
    for (int r = 0; r < P; r++) {
        const plan_ulysses_t *u = &pl[r];
        for (int q = 0; q < P; q++) {
            const int64_t *at = recv[r] + u->in_recv_total + u->recv_out_off[q];
            const plan_heads_t *hq = &u->heads[q];
            for (int64_t b = 0; b < B; b++)
                for (int64_t hh = 0; hh < hq->hq; hh++)
                    for (int64_t t = 0; t < u->m[r]; t++)
                        for (int64_t c = 0; c <= d; c++) {
                            int64_t *dst = &back[r][((b * H + hq->q0 + hh) * u->m[r] + t) * (d + 1) + c];
                            if (*dst)
                                U_FAIL("rank %d: O|LSE element written twice", r);
                            *dst = *at++;
                            n_u_elems++;
                        }
        }
        for (int64_t b = 0; b < B; b++)
            for (int64_t hh = 0; hh < H; hh++)
                for (int64_t t = 0; t < u->m[r]; t++)
                    for (int64_t c = 0; c <= d; c++)
                        if (back[r][((b * H + hh) * u->m[r] + t) * (d + 1) + c] !=
                            tag_out(&z, b, hh, layout_local_to_global(&lq, r, t), c))
                            U_FAIL("rank %d: O|LSE of head %lld local token %lld did not come back", r, (long long)hh,
                                   (long long)t);
    }
    check(1, name, "ok");
done:
    for (int r = 0; r < P; r++)
        free(send[r]), free(recv[r]), free(full[r]), free(kvfull[r]), free(back[r]);
    free(kv_cover);
    free(pl);
}

/* ---- usp ---- */

static long n_usp_cases, n_usp_tokens;

/* The mesh of P = U × R and the plan of every rank against a replay that follows each token:
 * every rank sits in one group and one ring (its neighbours are the same member of groups
 * g ± 1), every query head has one member and its kv head is among that member's, rows are
 * conserved (Σ_a rows(a, g) = g's shard, Σ_g rows(a, g) = a's shard), a rank sends only to its
 * own group when the layouts nest, and the per-peer counts and bytes per rank equal the replay:
 * each token of a's shard goes to every other member of its group for that member's heads (Q
 * and K/V in, O and LSE back), plus the ring's K/V rows by the ring's own closed form. */
static void usp_case(attn_layout_kind_t kind, int P, int U, int64_t B, int64_t H, int64_t Hkv, int64_t d,
                     int64_t n_q, int64_t n_k) {
    char name[160];
    snprintf(name, sizeof name, "usp %s P=%d U=%d B=%lld H=%lld H_kv=%lld n_q=%lld n_k=%lld", layout_name(kind), P,
             U, (long long)B, (long long)H, (long long)Hkv, (long long)n_q, (long long)n_k);
    attn_err_t err = {0};
    plan_usp_mesh_t m;
    if (!check(plan_usp_mesh(kind, H, Hkv, P, U, &m, &err) == ATTN_OK && m.U * m.R == P, name, "mesh: %s", err.msg))
        return;
    n_usp_cases++;
    int R = m.R, in_group[ATTN_MAX_RANKS] = {0};
    for (int r = 0; r < P; r++) {
        int g, u;
        plan_usp_coords(&m, r, &g, &u);
        if (g < 0 || g >= R || u < 0 || u >= U || plan_usp_rank(&m, g, u) != r || in_group[r]++) {
            check(0, name, "rank %d ↔ (group %d, member %d)", r, g, u);
            return;
        }
    }
    int64_t heads_of[64] = {0};
    for (int u = 0; u < U; u++) {
        plan_heads_t h = plan_ulysses_heads(H, Hkv, U, u);
        for (int64_t j = 0; j < h.hq; j++) {
            int64_t kvh = plan_ulysses_kv_of(&h, H / Hkv, j);
            if (heads_of[h.q0 + j]++ || kvh < 0 || kvh >= h.kvn || h.kv0 + kvh != (h.q0 + j) / (H / Hkv)) {
                check(0, name, "member %d: query head %lld", u, (long long)(h.q0 + j));
                return;
            }
        }
    }
    attn_layout_t lp[2], lr[2];
    int64_t n[2] = {n_q, n_k};
    for (int t = 0; t < 2; t++)
        if (layout_init(&lp[t], kind, n[t], P, &err) || layout_init(&lr[t], kind, n[t], R, &err))
            return;
    /* Replay: per (sender, receiver) the Q, K|V and O|LSE elements, token by token. */
    static int64_t q_el[ATTN_MAX_RANKS][ATTN_MAX_RANKS], kv_el[ATTN_MAX_RANKS][ATTN_MAX_RANKS];
    memset(q_el, 0, sizeof q_el), memset(kv_el, 0, sizeof kv_el);
    int nested = kind == LAYOUT_ZIGZAG ? n_q % (2 * P) == 0 && n_k % (2 * P) == 0 : n_q % P == 0 && n_k % P == 0;
    for (int t = 0; t < 2; t++)
        for (int a = 0; a < P; a++) {
            int64_t per_g[ATTN_MAX_RANKS] = {0};
            for (int64_t i = 0; i < layout_local_count(&lp[t], a); i++) {
                int g;
                int64_t at;
                layout_global_to_local(&lr[t], layout_local_to_global(&lp[t], a, i), &g, &at);
                per_g[g]++;
                n_usp_tokens++;
                for (int u = 0; u < U; u++) {
                    plan_heads_t h = plan_ulysses_heads(H, Hkv, U, u);
                    int dst = plan_usp_rank(&m, g, u);
                    if (t == 0)
                        q_el[a][dst] += B * h.hq * d;
                    else
                        kv_el[a][dst] += 2 * B * h.kvn * d;
                }
            }
            int64_t sum = 0;
            for (int g = 0; g < R; g++) {
                int64_t rows = plan_usp_rows(&m, n[t], a, g);
                int ga, ua;
                plan_usp_coords(&m, a, &ga, &ua);
                if (rows != per_g[g] || (nested && g != ga && rows)) {
                    check(0, name, "%s rows of rank %d in group %d: %lld, replay %lld", t ? "key" : "query", a, g,
                          (long long)rows, (long long)per_g[g]);
                    return;
                }
                sum += rows;
            }
            (void)sum;
        }
    for (int t = 0; t < 2; t++)
        for (int g = 0; g < R; g++) {
            int64_t sum = 0;
            for (int a = 0; a < P; a++)
                sum += plan_usp_rows(&m, n[t], a, g);
            if (sum != layout_local_count(&lr[t], g)) {
                check(0, name, "group %d: %lld rows gathered, its shard has %lld", g, (long long)sum,
                      (long long)layout_local_count(&lr[t], g));
                return;
            }
        }
    attn_dist_expect_t e, ring;
    plan_usp_expect(&m, B, H, Hkv, d, n_q, n_k, &(attn_vis_t){ATTN_MASK_CAUSAL, 0, 0, 0}, 4.0, &e);
    old_ring_expect(kind, n_q, n_k, ATTN_MASK_CAUSAL, 0, R, 1.0, &ring);
    plan_usp_t pu;
    for (int r = 0; r < P; r++) {
        if (plan_usp(&m, B, H, Hkv, d, n_q, n_k, r, &pu, &err) != ATTN_OK) {
            check(0, name, "plan rank %d: %s", r, err.msg);
            return;
        }
        int g, u;
        plan_usp_coords(&m, r, &g, &u);
        if (pu.group != g || pu.member != u || pu.send_to != plan_usp_rank(&m, (g + 1) % R, u) ||
            pu.recv_from != plan_usp_rank(&m, (g - 1 + R) % R, u) || pu.ring_q != layout_local_count(&lr[0], g) ||
            pu.ring_k != layout_local_count(&lr[1], g)) {
            check(0, name, "rank %d: group %d member %d to %d from %d", r, pu.group, pu.member, pu.send_to,
                  pu.recv_from);
            return;
        }
        double sent = 0, recvd = 0;
        for (int q = 0; q < P; q++) {
            int64_t out_q = q_el[q][r] / d * (d + 1), out_r = q_el[r][q] / d * (d + 1);
            if (pu.send_q[q] != q_el[r][q] || pu.recv_q[q] != q_el[q][r] || pu.send_kv[q] != kv_el[r][q] ||
                pu.recv_kv[q] != kv_el[q][r] || pu.send_out[q] != out_q || pu.recv_out[q] != out_r) {
                check(0, name, "rank %d peer %d: counts differ from the replay", r, q);
                return;
            }
            if (q != r)
                sent += (double)(q_el[r][q] + kv_el[r][q] + out_q), recvd += (double)(q_el[q][r] + kv_el[q][r] + out_r);
        }
        plan_heads_t h = plan_ulysses_heads(H, Hkv, U, u);
        double row = 2.0 * (double)(B * h.kvn * d);
        double want_s = 4.0 * (sent + row * ring.bytes_sent[g]), want_r = 4.0 * (recvd + row * ring.bytes_recv[g]);
        if (e.bytes_sent[r] != want_s || e.bytes_recv[r] != want_r) {
            check(0, name, "rank %d: bytes %.0f / %.0f, replay %.0f / %.0f", r, e.bytes_sent[r], e.bytes_recv[r],
                  want_s, want_r);
            return;
        }
    }
    check(1, name, "ok");
}

int main(void) {
    check_quiet = 1;
    /* Ring grid: n < P, n = P, uneven and larger shapes with queries at the end of the keys. */
    static const int64_t sizes[][2] = {{1, 1}, {1, 6}, {2, 3}, {3, 3}, {4, 9}, {5, 5}, {7, 7},
                                       {8, 13}, {12, 12}, {13, 29}, {17, 17}, {29, 61}, {37, 37}};
    static const int64_t windows[] = {1, 2, 3, 5, 8, 17, 100};
    static const int ranks[] = {1, 2, 3, 4, 5, 6, 7, 8, 11, 16};
    for (int kind = 0; kind < 3; kind++)
        for (size_t pi = 0; pi < sizeof ranks / sizeof ranks[0]; pi++)
            for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
                for (int m = 0; m < 3; m++)
                    for (size_t wi = 0; wi < (m == ATTN_MASK_WINDOW ? sizeof windows / sizeof windows[0] : 1); wi++)
                        ring_case((attn_layout_kind_t)kind, ranks[pi], sizes[z][0], sizes[z][1], (attn_mask_t)m,
                                  m == ATTN_MASK_WINDOW ? windows[wi] : 0);
    printf("ring: %ld cases (3 layouts x %zu rank counts x %zu shapes x 9 masks), %ld rank-steps, %ld piece pairs, "
           "%ld (i, j) checked, %ld visible pairs covered once; %ld striped pairs computed with no visible (i, j)\n",
           n_cases, sizeof ranks / sizeof ranks[0], sizeof sizes / sizeof sizes[0], n_steps, n_pairs, n_ij, n_visible,
           n_loose);

    ulysses_predicate();
    /* Ulysses grid: GQA splits that line up, replicate or need a local expansion; n < P too. */
    static const int64_t uheads[][2] = {{1, 1}, {2, 1}, {4, 4}, {4, 2}, {4, 1}, {6, 3}, {6, 2},
                                        {8, 2}, {12, 3}, {12, 4}, {16, 16}, {24, 4}};
    static const int64_t utok[][2] = {{1, 1}, {3, 5}, {7, 7}, {5, 13}, {16, 16}};
    for (int kind = 0; kind < 3; kind++)
        for (int P = 1; P <= 8; P++)
            for (size_t hi = 0; hi < sizeof uheads / sizeof uheads[0]; hi++) {
                if (uheads[hi][0] % P)
                    continue;
                for (size_t ti = 0; ti < sizeof utok / sizeof utok[0]; ti++)
                    for (int64_t B = 1; B <= 2; B++)
                        ulysses_case((attn_layout_kind_t)kind, P,
                                     (dims_t){B, uheads[hi][0], uheads[hi][1], 2, utok[ti][0], utok[ti][1]});
            }
    printf("ulysses: %ld cases, %ld elements placed and checked\n", n_u_cases, n_u_elems);

    /* usp grid: every P ≤ 16 and every U | P, heads that line up, replicate or expand, uneven
     * and nesting n; the default degree is gcd(P, H_kv). */
    static const int64_t stok[][2] = {{1, 1}, {5, 13}, {7, 7}, {32, 32}, {29, 61}};
    for (int kind = 0; kind < 3; kind++)
        for (int P = 1; P <= 16; P++)
            for (int U = 1; U <= P; U++) {
                if (P % U)
                    continue;
                int64_t H = 48 % U ? 2 * U : 48, hk[] = {H, 16, 12, 6, 3, 2, 1};
                for (size_t k = 0; k < sizeof hk / sizeof hk[0]; k++)
                    for (size_t ti = 0; H % hk[k] == 0 && ti < sizeof stok / sizeof stok[0]; ti++)
                        usp_case((attn_layout_kind_t)kind, P, U, 1 + (ti & 1), H, hk[k], 3, stok[ti][0], stok[ti][1]);
            }
    attn_err_t err = {0};
    plan_usp_mesh_t m;
    check(plan_usp_default_degree(2, 8) == 2 && plan_usp_default_degree(8, 4) == 4 &&
              plan_usp_default_degree(1, 8) == 1 && plan_usp_default_degree(6, 4) == 2,
          "usp default degree = gcd(P, H_kv)", "wrong");
    check(plan_usp_mesh(LAYOUT_ZIGZAG, 8, 2, 8, 3, &m, &err) == ATTN_EUSAGE && strstr(err.msg, "--ulysses-degree 3"),
          "usp refuses U not dividing P", "\"%s\"", err.msg);
    check(plan_usp_mesh(LAYOUT_ZIGZAG, 6, 2, 8, 4, &m, &err) == ATTN_EUSAGE, "usp refuses U not dividing H", "rc");
    printf("usp: %ld cases, %ld tokens replayed\n", n_usp_cases, n_usp_tokens);
    return check_summary();
}
