/* simulate.c — see simulate.h. The ring family walks plan_ring_step rank by rank and step by
 * step up to SIM_EXACT_MAX_P ranks; beyond, every step after the first has the same slowest
 * rank, so the steps are summed in closed form (docs/simulate.md derives both and test_simulate
 * checks that they agree where both run). */
#include "tasks/simulate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "impls/cpu/tile_engine.h"
#include "impls/parallel/plan.h"

static const char *const scheme_names[SIM_N_SCHEMES] = {"ring", "striped", "zigzag", "ulysses", "usp"};

const char *sim_scheme_name(sim_scheme_t s) { return s < SIM_N_SCHEMES ? scheme_names[s] : "?"; }

int sim_scheme_parse(const char *name, sim_scheme_t *out) {
    for (int i = 0; i < SIM_N_SCHEMES; i++)
        if (!strcmp(name, scheme_names[i])) {
            *out = (sim_scheme_t)i;
            return 1;
        }
    return 0;
}

double sim_flops(const sim_profile_t *pr, double rows) {
    int n = pr->n_points;
    if (n == 1 || rows <= pr->rows[0])
        return pr->flops_per_s[0];
    if (rows >= pr->rows[n - 1])
        return pr->flops_per_s[n - 1];
    int i = 1;
    while (pr->rows[i] < rows)
        i++;
    double t = log(rows / pr->rows[i - 1]) / log(pr->rows[i] / pr->rows[i - 1]);
    return pr->flops_per_s[i - 1] + t * (pr->flops_per_s[i] - pr->flops_per_s[i - 1]);
}

double sim_table_s(const sim_table_t *t, double b) {
    int n = t->n;
    if (b <= 0 || n < 1)
        return 0;
    if (b <= t->bytes[0])
        return t->seconds[0];
    if (b >= t->bytes[n - 1])
        return t->seconds[n - 1] * b / t->bytes[n - 1];
    int i = 1;
    while (t->bytes[i] < b)
        i++;
    double f = log(b / t->bytes[i - 1]) / log(t->bytes[i] / t->bytes[i - 1]);
    return exp(log(t->seconds[i - 1]) + f * log(t->seconds[i] / t->seconds[i - 1]));
}

double sim_message_s(const sim_tier_t *t, double bytes) {
    if (bytes <= 0)
        return 0;
    return t->oneway.n ? sim_table_s(&t->oneway, bytes) : t->latency_s + bytes / t->bandwidth_Bps;
}

/* The exchange table is keyed by the bytes to each of exchange_ranks − 1 peers (comm's size). */
double sim_exchange_s(const sim_tier_t *t, double bytes) {
    if (!t->exchange.n)
        return sim_message_s(t, bytes);
    return bytes > 0 ? sim_table_s(&t->exchange, bytes / (double)(t->exchange_ranks - 1)) : 0;
}

/* Each tier runs its messages back to back as one exchange, and the two tiers run at once. */
double sim_alltoall_s(const sim_links_t *l, int64_t P, double bytes) {
    int64_t g = P < l->node_size ? P : l->node_size;
    double intra = g > 1 ? sim_exchange_s(&l->intra, (double)(g - 1) * bytes) : 0;
    double inter = P > g ? sim_exchange_s(&l->inter, (double)(P - g) * bytes) : 0;
    return bytes > 0 ? fmax(intra, inter) : 0;
}

/* Σ_{x=a}^{b} clamp(x, 0, k). */
static double sum_clamp(int64_t a, int64_t b, int64_t k) {
    if (b < a || k <= 0)
        return 0;
    double s = 0;
    int64_t lo = a > 1 ? a : 1, hi = b < k - 1 ? b : k - 1;
    if (lo <= hi)
        s += ((double)lo + (double)hi) * (double)(hi - lo + 1) / 2;
    int64_t full = a > k ? a : k;
    if (full <= b)
        s += (double)k * (double)(b - full + 1);
    return s;
}

/* Row i sees keys j with j ≤ q_off + i (causal) and j > q_off + i − win (window). */
double sim_pair_pairs(attn_mask_t mask, int64_t window, int64_t qc, int64_t kc, int64_t q_off, int64_t win) {
    (void)window;
    if (mask == ATTN_MASK_NONE)
        return (double)qc * (double)kc;
    double upto = sum_clamp(q_off + 1, q_off + qc, kc);
    return mask == ATTN_MASK_WINDOW ? upto - sum_clamp(q_off - win + 1, q_off - win + qc, kc) : upto;
}

static int64_t clamp64(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : x > hi ? hi : x; }

/* Row i's visible keys [vis_lo, vis_hi) in the pair's band. */
static int64_t vis_hi(attn_mask_t mask, int64_t kc, int64_t q_off, int64_t i) {
    return mask == ATTN_MASK_NONE ? kc : clamp64(q_off + i + 1, 0, kc);
}
static int64_t vis_lo(attn_mask_t mask, int64_t kc, int64_t q_off, int64_t win, int64_t i) {
    return mask == ATTN_MASK_WINDOW ? clamp64(q_off + i - win + 1, 0, kc) : 0;
}

/* tile_item's rules: a K tile is computed when it meets [lo of the first row, hi of the last),
 * and full when it lies inside [lo of the last row, hi of the first). */
void sim_pair_tiles(attn_mask_t mask, int64_t qc, int64_t kc, int64_t q_off, int64_t win, int64_t bq, int64_t bk,
                    double *full, double *partial) {
    *full = *partial = 0;
    int64_t nkt = (kc + bk - 1) / bk;
    for (int64_t r0 = 0; r0 < qc; r0 += bq) {
        int64_t rows = qc - r0 < bq ? qc - r0 : bq, last = r0 + rows - 1;
        int64_t lo = vis_lo(mask, kc, q_off, win, r0), hi = vis_hi(mask, kc, q_off, last);
        if (hi <= lo)
            continue;
        int64_t a = lo / bk, b = (hi - 1) / bk + 1;
        int64_t lo_last = vis_lo(mask, kc, q_off, win, last), hi_first = vis_hi(mask, kc, q_off, r0);
        int64_t fa = (lo_last + bk - 1) / bk, fb = hi_first >= kc ? nkt : hi_first / bk;
        int64_t nf = (fb < b ? fb : b) - (fa > a ? fa : a);
        nf = nf > 0 ? nf : 0;
        double w = (double)rows / (double)bq;
        *full += w * (double)nf, *partial += w * (double)(b - a - nf);
    }
}

/* Seconds per full micro-tile at k key rows: linear in log(k) between points, clamped. */
static double tile_full_s(const sim_tiles_t *t, double k) {
    sim_profile_t as_points = {.n_points = t->n};
    memcpy(as_points.rows, t->krows, sizeof t->krows);
    memcpy(as_points.flops_per_s, t->full_s, sizeof t->full_s);
    return sim_flops(&as_points, k);
}

double sim_pair_s(const sim_profile_t *pr, attn_mask_t mask, int64_t window, int64_t qc, int64_t kc, int64_t q_off,
                  int64_t win, double BH, int64_t d, int merge) {
    const sim_tiles_t *t = &pr->tiles;
    if (!t->n)
        return sim_pair_pairs(mask, window, qc, kc, q_off, win) * 4.0 * BH * (double)d / sim_flops(pr, (double)qc);
    double full, part, scale = (double)d / (double)t->head_dim, tf = tile_full_s(t, (double)kc);
    sim_pair_tiles(mask, qc, kc, q_off, win, t->bq, t->bk, &full, &part);
    double tiles = (full + part) * tf + part * t->part_s;
    return t->call_s + BH * scale * (tiles + (merge ? (double)qc * t->merge_row_s : 0));
}

static double step_pairs(attn_mask_t mask, int64_t window, const plan_ring_step_t *st, int i) {
    const plan_pair_t *pr = &st->pair[i];
    return pr->skip ? 0 : sim_pair_pairs(mask, window, pr->q.count, pr->k.count, pr->q_off, pr->win);
}

int sim_ring_work(attn_layout_kind_t kind, int64_t n, attn_mask_t mask, int64_t window, int P, double *work) {
    attn_err_t err = {0};
    plan_ring_step_t st;
    const attn_vis_t v = {mask, window, NULL, 0}; /* simulate's shapes are one document */
    for (int r = 0; r < P; r++) {
        work[r] = 0;
        for (int s = 0; s < P; s++) {
            if (plan_ring_step(kind, n, n, &v, P, r, s, &st, &err) != ATTN_OK)
                return ATTN_EUSAGE;
            for (int i = 0; i < st.n_pairs; i++)
                work[r] += step_pairs(mask, window, &st, i);
        }
    }
    return ATTN_OK;
}

int64_t sim_usp_degree(int64_t P, int64_t H, int64_t node_size) {
    int64_t best = 1;
    for (int64_t u = 1; u <= P && u <= H && u <= node_size; u++)
        if (P % u == 0 && H % u == 0)
            best = u;
    return best;
}

static double ceil_div(int64_t a, int64_t b) { return (double)((a + b - 1) / b); }

/* A ring of R ranks over n tokens, each rank computing Hh query heads and moving kvh kv heads;
 * `inter`: the ring crosses nodes, so its slowest hop is the inter tier. */
typedef struct {
    attn_layout_kind_t kind;
    int64_t R, Hh, kvh;
    int inter;
} ring_t;

static void ring_exact(const ring_t *g, const sim_shape_t *sh, const sim_profile_t *pr, const sim_tier_t *tier,
                       sim_result_t *o) {
    attn_err_t err = {0};
    plan_ring_step_t st;
    int R = (int)g->R;
    double row_bytes = 2.0 * (double)(sh->B * g->kvh * sh->d) * pr->elem_bytes, BH = (double)(sh->B * g->Hh);
    double work[SIM_EXACT_MAX_P] = {0}, sent[SIM_EXACT_MAX_P] = {0};
    const attn_vis_t v = {sh->mask, sh->window, NULL, 0};
    for (int s = 0; s < R; s++) {
        double cmax = 0, mmax = 0, tmax = 0;
        for (int r = 0; r < R; r++) {
            if (plan_ring_step(g->kind, sh->n, sh->n, &v, R, r, s, &st, &err) != ATTN_OK) {
                o->ok = 0;
                snprintf(o->reason, sizeof o->reason, "%.190s", err.msg);
                return;
            }
            double c = 0;
            for (int i = 0; i < st.n_pairs; i++) {
                const plan_pair_t *pp = &st.pair[i];
                work[r] += step_pairs(sh->mask, sh->window, &st, i);
                if (!pp->skip)
                    c += sim_pair_s(pr, sh->mask, sh->window, pp->q.count, pp->k.count, pp->q_off, pp->win, BH, sh->d, 1);
            }
            int64_t rows = st.rows_sent > st.rows_recv ? st.rows_sent : st.rows_recv;
            double m = sim_exchange_s(tier, (double)rows * row_bytes);
            sent[r] += (double)st.rows_sent * row_bytes;
            cmax = fmax(cmax, c), mmax = fmax(mmax, m), tmax = fmax(tmax, fmax(c, m));
        }
        o->compute_s += cmax, o->comm_s += mmax, o->time_s += tmax;
    }
    for (int r = 0; r < R; r++)
        o->work_pairs = fmax(o->work_pairs, work[r]), o->bytes_sent = fmax(o->bytes_sent, sent[r]);
    o->exact = 1;
}

/* Closed form (masks none and causal, n_q = n_k): the busiest rank's pieces at step 0 (c0) and
 * at every later step (c1), costed as the plan's pairs would be; shards rounded up, so uneven n
 * is bounded from above. Derivation: docs/simulate.md. */
static void ring_closed(const ring_t *g, const sim_shape_t *sh, const sim_profile_t *pr, const sim_tier_t *tier,
                        sim_result_t *o) {
    int64_t m = (sh->n + g->R - 1) / g->R, c = (sh->n + 2 * g->R - 1) / (2 * g->R), krows = m;
    double BH = (double)(sh->B * g->Hh), w0, w1, c0, c1;
    int causal = sh->mask == ATTN_MASK_CAUSAL;
    attn_mask_t mk = sh->mask;
#define PIECE(rows, q_off) sim_pair_s(pr, mk, 0, rows, rows, q_off, 0, BH, sh->d, 1)
    double md = (double)m, cd = (double)c;
    switch (g->kind) {
    case LAYOUT_CONTIGUOUS: /* step 0 the diagonal; later the busiest rank sees the whole block */
        w0 = causal ? md * (md + 1) / 2 : md * md, w1 = md * md;
        c0 = PIECE(m, 0), c1 = PIECE(m, m);
        break;
    case LAYOUT_STRIPED: /* every step a diagonal: q_off 0 (block from a lower rank) or −1 */
        w0 = w1 = causal ? md * (md + 1) / 2 : md * md;
        c0 = PIECE(m, 0), c1 = fmax(PIECE(m, 0), PIECE(m, -1));
        break;
    default: /* zigzag: pieces of c rows, a shard of 2c; step 0 two diagonals and one full pair,
              * later two full pairs (causal), or all four pairs full (no mask) */
        w0 = causal ? cd * cd + cd * (cd + 1) : 4 * cd * cd, w1 = causal ? 2 * cd * cd : 4 * cd * cd;
        c0 = causal ? 2 * PIECE(c, 0) + PIECE(c, c) : 4 * PIECE(c, c);
        c1 = (causal ? 2 : 4) * PIECE(c, c);
        krows = 2 * c;
    }
#undef PIECE
    double R = (double)g->R;
    double bytes = (double)krows * 2.0 * (double)(sh->B * g->kvh * sh->d) * pr->elem_bytes, msg = sim_exchange_s(tier, bytes);
    /* step 0 with a send, steps 1 … R−2 alike, the last step without one */
    o->time_s = fmax(c0, msg) + (R - 2) * fmax(c1, msg) + c1;
    o->compute_s = c0 + (R - 1) * c1;
    o->comm_s = (R - 1) * msg;
    o->work_pairs = w0 + (R - 1) * w1;
    o->bytes_sent = (R - 1) * bytes;
    o->exact = 0;
}

/* Per rank (ring.c's ring_workspace): Q, O, partial O and both LSEs; two K/V blocks; one tile workspace. */
static double ring_memory(const ring_t *g, const sim_shape_t *sh, const sim_profile_t *pr) {
    double nq = g->kind == LAYOUT_ZIGZAG ? 2 * ceil_div(sh->n, 2 * g->R) : ceil_div(sh->n, g->R);
    double q_side = (double)(sh->B * g->Hh) * nq * (double)(3 * sh->d + 2);
    double kv_side = (double)(sh->B * g->kvh) * nq * (double)(4 * sh->d);
    attn_problem_t p = {.batch = sh->B, .heads = g->Hh, .kv_heads = g->kvh, .head_dim = sh->d, .n_q = (int64_t)nq,
                        .n_k = (int64_t)nq, .mask = sh->mask, .dtype = ATTN_F32};
    return (q_side + kv_side) * pr->elem_bytes + (double)tile_workspace_bytes(&p, 1, p.n_q);
}

static void ring_model(const ring_t *g, const sim_shape_t *sh, const sim_profile_t *pr, const sim_links_t *l,
                       sim_result_t *o) {
    const sim_tier_t *tier = g->inter ? &l->inter : &l->intra;
    if (!sh->closed_form && g->R <= SIM_EXACT_MAX_P)
        ring_exact(g, sh, pr, tier, o);
    else if (sh->mask == ATTN_MASK_WINDOW)
        snprintf(o->reason, sizeof o->reason, "a window mask is simulated step by step only, up to %d ring ranks",
                 SIM_EXACT_MAX_P), o->ok = 0;
    else
        ring_closed(g, sh, pr, tier, o);
    o->memory_bytes = ring_memory(g, sh, pr);
}

/* The most kv heads any rank of a Ulysses group of U receives (replicated when H_kv < U). */
static int64_t max_kvn(int64_t H, int64_t Hkv, int64_t U) {
    int64_t kvn = 0;
    for (int64_t q = 0; q < U; q++) {
        plan_heads_t h = plan_ulysses_heads(H, Hkv, (int)U, (int)q);
        kvn = h.kvn > kvn ? h.kvn : kvn;
    }
    return kvn;
}

/* Ulysses over groups of U consecutive ranks: both all-to-alls of one rank, m tokens each. */
static void a2a_model(const sim_shape_t *sh, int64_t U, int64_t kvn, double m, const sim_profile_t *pr,
                      const sim_links_t *l, sim_result_t *o) {
    double hq = (double)(sh->H / U), e = pr->elem_bytes, d = (double)sh->d, B = (double)sh->B;
    double b_in = B * m * (hq + 2.0 * (double)kvn) * d * e, b_out = B * m * hq * (d + 1) * e;
    double t = sim_alltoall_s(l, U, b_in) + sim_alltoall_s(l, U, b_out);
    o->comm_s += t, o->time_s += t;
    o->bytes_sent += (double)(U - 1) * (b_in + b_out);
}

static void ulysses_model(const sim_shape_t *sh, int64_t P, const sim_profile_t *pr, const sim_links_t *l,
                          sim_result_t *o) {
    if (sh->H % P) {
        snprintf(o->reason, sizeof o->reason, "%lld heads do not split over %lld ranks (ulysses needs H %% P = 0; usp does not)",
                 (long long)sh->H, (long long)P);
        o->ok = 0;
        return;
    }
    int64_t hq = sh->H / P, kvn = max_kvn(sh->H, sh->Hkv, P);
    plan_heads_t h0 = plan_ulysses_heads(sh->H, sh->Hkv, (int)P, 0);
    int64_t kv_local = h0.lines_up ? kvn : hq;
    a2a_model(sh, P, kvn, ceil_div(sh->n, P), pr, l, o);
    o->work_pairs = sim_pair_pairs(sh->mask, sh->window, sh->n, sh->n, 0, sh->window);
    /* the local backend (blockwise, one thread) on the whole sequence: one call, no merge */
    o->compute_s = sim_pair_s(pr, sh->mask, sh->window, sh->n, sh->n, 0, sh->window, (double)(sh->B * hq), sh->d, 0);
    o->time_s += o->compute_s;
    /* ulysses.c's ulysses_workspace, one rank: shards, the head shard, staging, the local tile */
    double B = (double)sh->B, d = (double)sh->d, n = (double)sh->n, nq = ceil_div(sh->n, P) + 2;
    double kv_shard = 2 * B * (double)sh->Hkv * nq * d;
    double shards = B * (double)sh->H * nq * (2 * d + 1) + kv_shard;
    double heads = B * (double)hq * n * (2 * d + 1) + 2 * B * (double)kv_local * n * d;
    double staging = 2 * (B * (double)sh->H * nq * (d + 1) + kv_shard);
    attn_problem_t lp = {.batch = sh->B, .heads = hq, .kv_heads = kv_local, .head_dim = sh->d, .n_q = sh->n,
                         .n_k = sh->n, .mask = sh->mask, .dtype = ATTN_F32};
    o->memory_bytes = (shards + heads + staging) * pr->elem_bytes + (double)tile_workspace_bytes(&lp, 1, sh->n);
}

/* USP: all-to-all within each group of U (heads H/U each), the zigzag ring over R = P/U groups
 * on n/R tokens, all-to-all back. */
static void usp_model(const sim_shape_t *sh, int64_t P, const sim_profile_t *pr, const sim_links_t *l,
                      sim_result_t *o) {
    int64_t U = sh->ulysses_degree ? sh->ulysses_degree : sim_usp_degree(P, sh->H, l->node_size);
    if (U < 1 || P % U || sh->H % U) {
        snprintf(o->reason, sizeof o->reason, "ulysses degree %lld must divide P = %lld and H = %lld", (long long)U,
                 (long long)P, (long long)sh->H);
        o->ok = 0;
        return;
    }
    int64_t kvn = max_kvn(sh->H, sh->Hkv, U);
    ring_t g = {LAYOUT_ZIGZAG, P / U, sh->H / U, kvn, P > l->node_size};
    sim_result_t ring = {.ok = 1};
    ring_model(&g, sh, pr, l, &ring);
    if (!ring.ok) {
        *o = ring;
        return;
    }
    a2a_model(sh, U, kvn, ceil_div(sh->n, P), pr, l, o);
    double a2a_bytes = o->bytes_sent;
    o->time_s += ring.time_s, o->compute_s = ring.compute_s, o->comm_s += ring.comm_s;
    o->work_pairs = ring.work_pairs, o->bytes_sent = a2a_bytes + ring.bytes_sent, o->exact = ring.exact;
    /* the sequence shards and the all-to-all staging beside the ring's buffers */
    double B = (double)sh->B, d = (double)sh->d, m = ceil_div(sh->n, P);
    double kv_shard = 2 * B * (double)sh->Hkv * m * d;
    double shards = B * (double)sh->H * m * (2 * d + 1) + kv_shard, staging = 2 * (B * (double)sh->H * m * (d + 1) + kv_shard);
    o->memory_bytes = ring.memory_bytes + (shards + staging) * pr->elem_bytes;
    o->ulysses_degree = U, o->ring_degree = P / U;
}

void sim_run(sim_scheme_t s, const sim_shape_t *sh, int64_t P, const sim_profile_t *pr, const sim_links_t *l,
             sim_result_t *out) {
    memset(out, 0, sizeof *out);
    out->ok = 1;
    out->ulysses_degree = s == SIM_ULYSSES ? P : 1, out->ring_degree = s == SIM_ULYSSES ? 1 : P;
    if (sh->n < 2 * P) {
        snprintf(out->reason, sizeof out->reason, "n = %lld tokens is under 2 per rank at P = %lld", (long long)sh->n,
                 (long long)P);
        out->ok = 0;
    } else if (s == SIM_ULYSSES) {
        ulysses_model(sh, P, pr, l, out);
    } else if (s == SIM_USP) {
        usp_model(sh, P, pr, l, out);
    } else {
        attn_layout_kind_t k = s == SIM_RING ? LAYOUT_CONTIGUOUS : s == SIM_STRIPED ? LAYOUT_STRIPED : LAYOUT_ZIGZAG;
        ring_t g = {k, P, sh->H, sh->Hkv, P > l->node_size};
        ring_model(&g, sh, pr, l, out);
    }
    out->exposed_s = out->ok ? fmax(0, out->time_s - out->compute_s) : 0;
}
