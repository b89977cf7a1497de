/* plan.c — see plan.h. Pure arithmetic on layouts and masks: no buffers, no communication,
 * so the same numbers drive the CPU and GPU backends and tests/test_plan.c checks them all. */
#include "impls/parallel/plan.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/docs.h"
#include "impls/cpu/tile_engine.h"

void plan_ring_pair(const attn_vis_t *v, const layout_piece_t *q, const layout_piece_t *k, plan_pair_t *out) {
    layout_piece_t qp = *q, kp = *k; /* out may alias q or k */
    int64_t lo, hi;
    mask_key_range(v, qp.pos.start, qp.pos.start + qp.pos.stride * (qp.count - 1), kp.pos, kp.count, &lo, &hi);
    out->q = qp, out->k = kp;
    out->lo = lo, out->hi = hi;
    out->skip = lo >= hi || qp.count == 0;
    plan_band_for(qp.pos.start, kp.pos.start, qp.pos.stride, v->window, &out->q_off, &out->win);
}

static void step_on(const attn_layout_t *lq, const attn_layout_t *lk, int64_t n_q, int64_t n_k, const attn_vis_t *v,
                    int P, int rank, int step, plan_ring_step_t *out);

/* Σ over ring steps of the busiest rank's tile work (the CPU engine's default tiles) with query
 * chunks b (keys too when n_q = n_k, else even): what a balanced cut should make least. */
static double bounds_critical_tiles(const int64_t *b, int64_t n_q, int64_t n_k, const attn_vis_t *v, int P) {
    attn_layout_t lq, lk;
    attn_err_t err = {0};
    if (layout_init_zigzag_bounds(&lq, n_q, P, b, &err) ||
        (n_q == n_k ? layout_init_zigzag_bounds(&lk, n_k, P, b, &err) : layout_init(&lk, LAYOUT_ZIGZAG, n_k, P, &err)))
        return INFINITY;
    double cp = 0;
    for (int s = 0; s < P; s++) {
        double worst = 0;
        for (int r = 0; r < P; r++) {
            plan_ring_step_t st;
            double w = 0;
            step_on(&lq, &lk, n_q, n_k, v, P, r, s, &st);
            for (int i = 0; i < st.n_pairs; i++)
                w += plan_pair_tiles(v, &st.pair[i], TILE_DEFAULT_BQ, TILE_DEFAULT_BK);
            worst = fmax(worst, w);
        }
        cp += worst;
    }
    return cp;
}

/* Balanced bounds are a function of (n_q, n_k, v, P) and the plan asks for them P² times per
 * call: the last few are kept (the arrays themselves for the process's life, as documents are). */
typedef struct {
    int64_t n_q, n_k, window, n_docs;
    uint64_t doc_hash; /* of the offsets' values: callers may reuse an array for another layout */
    const int64_t *bound;
    attn_mask_t mask;
    int P;
} bounds_memo_t;
static bounds_memo_t memo[8];
static int memo_next;
static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;

static const int64_t *balanced_bounds(int64_t n_q, int64_t n_k, const attn_vis_t *v, int P, attn_err_t *err) {
    bounds_memo_t key = {n_q, n_k, v->window, mask_has_docs(v) ? v->n_docs : 0,
                         mask_has_docs(v) ? docs_summary(v->doc, v->n_docs).hash : 0, NULL, v->mask, P};
    const int64_t *found = NULL;
    pthread_mutex_lock(&memo_lock);
    for (int i = 0; i < 8 && !found; i++)
        if (memo[i].bound && memo[i].n_q == n_q && memo[i].n_k == n_k && memo[i].window == key.window &&
            memo[i].n_docs == key.n_docs && memo[i].doc_hash == key.doc_hash && memo[i].mask == key.mask &&
            memo[i].P == P)
            found = memo[i].bound;
    pthread_mutex_unlock(&memo_lock);
    if (found)
        return found;
    /* Candidates: zigzag's even cut, and cuts at equal work with each query row weighing its
     * visible keys + α (α stands for the masked part of the tiles a short document leaves
     * computed); the one whose analytic critical path in tiles is least wins. */
    int64_t b[2 * ATTN_MAX_RANKS + 1], best[2 * ATTN_MAX_RANKS + 1], off = n_k - n_q;
    double *pairs = malloc((size_t)n_q * sizeof *pairs), best_cp = INFINITY;
    if (!pairs) {
        attn_fail(err, ATTN_ERUNTIME, "out of memory for %lld rows' work", (long long)n_q);
        return NULL;
    }
    for (int64_t r = 0; r < n_q; r++) {
        int64_t lo, hi, i = off + r;
        mask_key_range(v, i, i, (attn_span_t){0, 1}, n_k, &lo, &hi);
        pairs[r] = (double)(hi - lo);
    }
    const double alphas[] = {-1, 1, 16, 64, 256, 1024}; /* −1: the even cut */
    for (size_t a = 0; a < sizeof alphas / sizeof alphas[0]; a++) {
        double total = 0, at = 0;
        for (int64_t r = 0; r < n_q; r++)
            total += alphas[a] < 0 ? 1 : pairs[r] + alphas[a];
        int c = 1;
        for (int64_t r = 0; r < n_q; r++) {
            at += alphas[a] < 0 ? 1 : pairs[r] + alphas[a];
            while (c < 2 * P && at >= total * c / (2.0 * P)) /* row r ends chunk c − 1 */
                b[c++] = r + 1;
        }
        if (alphas[a] < 0) /* exactly layout.c's even blocks */
            for (c = 1; c < 2 * P; c++)
                b[c] = c * (n_q / (2 * P)) + (c < n_q % (2 * P) ? c : n_q % (2 * P));
        while (c < 2 * P)
            b[c++] = n_q;
        b[0] = 0, b[2 * P] = n_q;
        double cp = bounds_critical_tiles(b, n_q, n_k, v, P);
        if (cp < best_cp)
            best_cp = cp, memcpy(best, b, sizeof(int64_t) * (size_t)(2 * P + 1));
    }
    free(pairs);
    /* Then coordinate descent: move each inner bound by whole query tiles while the critical
     * path falls (the even cut balances every step without documents; equal totals do not). */
    int64_t step0 = TILE_DEFAULT_BQ;
    while (step0 * 8 < n_q / (2 * P))
        step0 *= 2;
    for (int sweep = 0, evals = 0, moved = 1; sweep < 4 && moved && evals < 600; sweep++) {
        moved = 0;
        for (int c = 1; c < 2 * P; c++)
            for (int64_t st = step0; st >= TILE_DEFAULT_BQ; st /= 2)
                for (int dir = -1; dir <= 1; dir += 2) {
                    memcpy(b, best, sizeof(int64_t) * (size_t)(2 * P + 1));
                    b[c] += dir * st;
                    if (b[c] < b[c - 1] || b[c] > b[c + 1])
                        continue;
                    double cp = bounds_critical_tiles(b, n_q, n_k, v, P);
                    evals++;
                    if (cp < best_cp * (1 - 1e-9))
                        best_cp = cp, memcpy(best, b, sizeof(int64_t) * (size_t)(2 * P + 1)), moved = 1;
                }
    }
    memcpy(b, best, sizeof(int64_t) * (size_t)(2 * P + 1));
    const int64_t *kept = docs_keep(b, 2 * P + 1, err);
    pthread_mutex_lock(&memo_lock);
    key.bound = kept;
    if (kept)
        memo[memo_next++ % 8] = key;
    pthread_mutex_unlock(&memo_lock);
    return kept;
}

int plan_layouts(attn_layout_kind_t kind, int64_t n_q, int64_t n_k, const attn_vis_t *v, int P, attn_layout_t *lq,
                 attn_layout_t *lk, attn_err_t *err) {
    ATTN_TRY(layout_init(lq, kind, n_q, P, err));
    ATTN_TRY(layout_init(lk, kind, n_k, P, err));
    if (kind != LAYOUT_ZIGZAG_BALANCED || P > ATTN_MAX_RANKS)
        return ATTN_OK;
    const int64_t *b = balanced_bounds(n_q, n_k, v, P, err);
    if (!b)
        return ATTN_ERUNTIME;
    ATTN_TRY(layout_init_zigzag_bounds(lq, n_q, P, b, err));
    if (n_q == n_k)
        ATTN_TRY(layout_init_zigzag_bounds(lk, n_k, P, b, err));
    return ATTN_OK;
}

int plan_ring_step(attn_layout_kind_t kind, int64_t n_q, int64_t n_k, const attn_vis_t *v, int P, int rank, int step,
                   plan_ring_step_t *out, attn_err_t *err) {
    attn_layout_t lq, lk;
    ATTN_TRY(plan_layouts(kind, n_q, n_k, v, P, &lq, &lk, err));
    if (rank < 0 || rank >= P || step < 0 || step >= P)
        return attn_fail(err, ATTN_EUSAGE, "ring plan: rank %d, step %d of %d ranks", rank, step, P);
    step_on(&lq, &lk, n_q, n_k, v, P, rank, step, out);
    return ATTN_OK;
}

static void step_on(const attn_layout_t *lq_, const attn_layout_t *lk_, int64_t n_q, int64_t n_k, const attn_vis_t *v,
                    int P, int rank, int step, plan_ring_step_t *out) {
    const attn_layout_t lq = *lq_, lk = *lk_;
    memset(out, 0, sizeof *out);
    out->src = (rank - step + P) % P;
    out->next_src = (rank - step - 1 + P) % P;
    out->send_to = (rank + 1) % P;
    out->recv_from = (rank - 1 + P) % P;
    out->q_rows = layout_local_count(&lq, rank);
    out->k_rows = layout_local_count(&lk, out->src);
    if (step < P - 1) { /* the last step's block goes nowhere: every rank has seen every block */
        out->rows_sent = out->k_rows;
        out->rows_recv = layout_local_count(&lk, out->next_src);
    }
    layout_piece_t qpc[2], kpc[2];
    int n_qp = layout_pieces(&lq, rank, qpc), n_kp = layout_pieces(&lk, out->src, kpc);
    for (int a = 0; a < n_qp; a++) {
        qpc[a].pos.start += n_k - n_q; /* queries sit at the end of the key sequence */
        for (int b = 0; b < n_kp; b++)
            plan_ring_pair(v, &qpc[a], &kpc[b], &out->pair[out->n_pairs++]);
    }
}

double plan_pair_work(const attn_vis_t *v, const plan_pair_t *pr) {
    double pairs = 0;
    for (int64_t r = 0; r < pr->q.count; r++) {
        int64_t i = pr->q.pos.start + pr->q.pos.stride * r, lo, hi;
        mask_key_range(v, i, i, pr->k.pos, pr->k.count, &lo, &hi);
        pairs += hi > lo ? (double)(hi - lo) : 0;
    }
    return pairs;
}

double plan_pair_tiles(const attn_vis_t *v, const plan_pair_t *pr, int bq, int bk) {
    double w = 0;
    if (pr->skip)
        return 0;
    for (int64_t r0 = 0; r0 < pr->q.count; r0 += bq) {
        int64_t rows = ATTN_MIN((int64_t)bq, pr->q.count - r0), lo, hi;
        int64_t i_lo = pr->q.pos.start + pr->q.pos.stride * r0, i_hi = i_lo + pr->q.pos.stride * (rows - 1);
        mask_key_range(v, i_lo, i_hi, pr->k.pos, pr->k.count, &lo, &hi);
        if (lo < hi) /* key tiles lo / bk … (hi − 1) / bk, the last one cut at the piece's end */
            w += (double)rows * (double)(ATTN_MIN(((hi - 1) / bk + 1) * bk, pr->k.count) - lo / bk * bk);
    }
    return w;
}

/* Imbalance and critical path of per-(rank, source) work w[r][src], in units of the mean. */
static void balance_of(int P, double w[][ATTN_MAX_RANKS], double *imbalance, double *critical, double *work_out) {
    double work[ATTN_MAX_RANKS] = {0}, total = 0, worst = 0;
    for (int r = 0; r < P; r++)
        for (int k = 0; k < P; k++)
            work[r] += w[r][k], total += w[r][k];
    for (int r = 0; r < P; r++)
        worst = fmax(worst, work[r]);
    *imbalance = total > 0 ? worst / (total / P) : 1;
    *critical = 0;
    for (int s = 0; s < P; s++) {
        double step = 0;
        for (int r = 0; r < P; r++)
            step = fmax(step, w[r][(r - s + P) % P]);
        *critical += total > 0 ? step / (total / P) : 0;
    }
    if (work_out)
        memcpy(work_out, work, sizeof(double) * (size_t)P);
}

void plan_ring_expect_tiles(attn_layout_kind_t kind, int64_t n_q, int64_t n_k, const attn_vis_t *v, int P, int bq,
                            int bk, attn_dist_expect_t *out, double *work) {
    attn_err_t err = {0};
    plan_ring_step_t st;
    if (P < 1 || P > ATTN_MAX_RANKS || bq < 1 || bk < 1)
        return;
    double w[ATTN_MAX_RANKS][ATTN_MAX_RANKS];
    for (int r = 0; r < P; r++)
        for (int s = 0; s < P; s++) {
            if (plan_ring_step(kind, n_q, n_k, v, P, r, s, &st, &err) != ATTN_OK)
                return;
            w[r][st.src] = 0;
            for (int i = 0; i < st.n_pairs; i++)
                w[r][st.src] += plan_pair_tiles(v, &st.pair[i], bq, bk);
        }
    balance_of(P, w, &out->imbalance_tiles, &out->critical_path_tiles, work);
}

/* Rank r computes its queries against the block of rank r − s at step s; it sends the blocks
 * of ranks r, r−1, …, r−P+2 (all but r+1's) and receives all but its own. */
void plan_ring_expect(attn_layout_kind_t kind, int64_t n_q, int64_t n_k, const attn_vis_t *v, int P, double row_bytes,
                      attn_dist_expect_t *out, double *work_out) {
    attn_err_t err = {0};
    plan_ring_step_t st;
    memset(out, 0, sizeof *out);
    if (P < 1 || P > ATTN_MAX_RANKS)
        return;
    double pairs[ATTN_MAX_RANKS][ATTN_MAX_RANKS];
    int64_t sent[ATTN_MAX_RANKS] = {0}, recvd[ATTN_MAX_RANKS] = {0};
    for (int r = 0; r < P; r++)
        for (int s = 0; s < P; s++) {
            if (plan_ring_step(kind, n_q, n_k, v, P, r, s, &st, &err) != ATTN_OK)
                return;
            double w = 0;
            for (int i = 0; i < st.n_pairs; i++)
                w += st.pair[i].skip ? 0 : plan_pair_work(v, &st.pair[i]);
            pairs[r][st.src] = w;
            sent[r] += st.rows_sent, recvd[r] += st.rows_recv;
        }
    balance_of(P, pairs, &out->imbalance, &out->critical_path, work_out);
    for (int r = 0; P > 1 && r < P; r++) {
        out->bytes_sent[r] = row_bytes * (double)sent[r];
        out->bytes_recv[r] = row_bytes * (double)recvd[r];
    }
}

plan_heads_t plan_ulysses_heads(int64_t H, int64_t Hkv, int P, int q) {
    plan_heads_t h;
    int64_t group = H / Hkv;
    h.hq = H / P, h.q0 = q * h.hq;
    h.kv0 = h.q0 / group, h.kvn = (h.q0 + h.hq - 1) / group + 1 - h.kv0;
    h.lines_up = h.hq % h.kvn == 0;
    for (int64_t j = 0; h.lines_up && j < h.hq; j++)
        if (plan_ulysses_kv_of(&h, group, j) != j / (h.hq / h.kvn))
            h.lines_up = 0;
    return h;
}

int plan_ulysses_kernel_heads(int64_t H, int64_t Hkv, int P) {
    if (P < 1 || Hkv < 1 || H % Hkv || H % P)
        return 0;
    for (int q = 0; q < P; q++)
        if (!plan_ulysses_heads(H, Hkv, P, q).lines_up)
            return 0;
    return 1;
}

/* off[r] = Σ_{r' < r} count[r'] (+ count2): peers' runs back to back in rank order. */
static int64_t prefix(int P, const int64_t *count, const int64_t *count2, int64_t *off) {
    int64_t at = 0;
    for (int r = 0; r < P; r++) {
        off[r] = at;
        at += count[r] + (count2 ? count2[r] : 0);
    }
    return at;
}

int plan_ulysses(int64_t B, int64_t H, int64_t Hkv, int64_t d, int64_t n_q, int64_t n_k, attn_layout_kind_t kind, int P,
                 int rank, plan_ulysses_t *u, attn_err_t *err) {
    if (P < 1 || P > ATTN_MAX_RANKS || rank < 0 || rank >= P || Hkv < 1 || H % Hkv || H % P)
        return attn_fail(err, ATTN_EUSAGE, "ulysses plan: %lld heads over %lld kv heads, rank %d of %d", (long long)H,
                         (long long)Hkv, rank, P);
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, kind, n_q, P, err));
    ATTN_TRY(layout_init(&lk, kind, n_k, P, err));
    memset(u, 0, sizeof *u);
    u->P = P, u->rank = rank, u->group = H / Hkv;
    for (int r = 0; r < P; r++) {
        u->heads[r] = plan_ulysses_heads(H, Hkv, P, r);
        u->m[r] = layout_local_count(&lq, r), u->k[r] = layout_local_count(&lk, r);
    }
    const plan_heads_t *me = &u->heads[rank];
    for (int r = 0; r < P; r++) {
        u->send_q[r] = B * me->hq * u->m[rank] * d;             /* my tokens of r's query heads */
        u->recv_q[r] = B * me->hq * u->m[r] * d;                /* r's tokens of mine */
        u->send_kv[r] = 2 * B * u->heads[r].kvn * u->k[rank] * d; /* K and V of the kv heads r reads */
        u->recv_kv[r] = 2 * B * me->kvn * u->k[r] * d;
        u->send_out[r] = B * me->hq * u->m[r] * (d + 1);        /* O and LSE of r's tokens, my heads */
        u->recv_out[r] = B * me->hq * u->m[rank] * (d + 1);
    }
    u->in_send_total = prefix(P, u->send_q, u->send_kv, u->send_in_off);
    u->in_recv_total = prefix(P, u->recv_q, u->recv_kv, u->recv_in_off);
    prefix(P, u->send_q, NULL, u->send_q_off);
    prefix(P, u->recv_q, NULL, u->recv_q_off);
    prefix(P, u->send_kv, NULL, u->send_kv_off);
    prefix(P, u->recv_kv, NULL, u->recv_kv_off);
    u->out_send_total = prefix(P, u->send_out, NULL, u->send_out_off);
    u->out_recv_total = prefix(P, u->recv_out, NULL, u->recv_out_off);
    return ATTN_OK;
}

/* ---- usp ---- */

static int64_t gcd64(int64_t a, int64_t b) { return b ? gcd64(b, a % b) : a; }

int plan_usp_default_degree(int64_t Hkv, int P) { return P < 1 || Hkv < 1 ? 1 : (int)gcd64(Hkv, P); }

int plan_usp_mesh(attn_layout_kind_t kind, int64_t H, int64_t Hkv, int P, int U, plan_usp_mesh_t *m, attn_err_t *err) {
    if (P < 1 || P > ATTN_MAX_RANKS || Hkv < 1 || H % Hkv)
        return attn_fail(err, ATTN_EUSAGE, "usp: %lld heads over %lld kv heads on %d ranks", (long long)H,
                         (long long)Hkv, P);
    if (U == 0)
        U = plan_usp_default_degree(Hkv, P);
    if (U < 1 || P % U || H % U)
        return attn_fail(err, ATTN_EUSAGE,
                         "usp: --ulysses-degree %d must divide the ranks P = %d and the heads H = %lld", U, P,
                         (long long)H);
    *m = (plan_usp_mesh_t){kind, P, U, P / U};
    return ATTN_OK;
}

void plan_usp_coords(const plan_usp_mesh_t *m, int rank, int *group, int *member) {
    if (m->kind == LAYOUT_STRIPED) /* tokens ≡ g mod R are the P-shards g, g + R, g + 2R, … */
        *group = rank % m->R, *member = rank / m->R;
    else /* R-chunk g is the U P-chunks g·U … g·U + U − 1 (zigzag: both of its chunks) */
        *group = rank / m->U, *member = rank % m->U;
}

int plan_usp_rank(const plan_usp_mesh_t *m, int group, int member) {
    return m->kind == LAYOUT_STRIPED ? group + m->R * member : group * m->U + member;
}

int64_t plan_usp_rows(const plan_usp_mesh_t *m, int64_t n, int a, int g) {
    attn_layout_t lp, lr;
    attn_err_t err = {0};
    if (layout_init(&lp, m->kind, n, m->P, &err) || layout_init(&lr, m->kind, n, m->R, &err))
        return 0;
    if (m->kind == LAYOUT_STRIPED) /* R | P: a's tokens a + P·i are all ≡ a mod R */
        return a % m->R == g ? layout_local_count(&lp, a) : 0;
    layout_piece_t pa[2], pg[2];
    int na = layout_pieces(&lp, a, pa), ng = layout_pieces(&lr, g, pg);
    int64_t rows = 0;
    for (int i = 0; i < na; i++) /* stride-1 pieces: interval intersections */
        for (int j = 0; j < ng; j++) {
            int64_t lo = ATTN_MAX(pa[i].pos.start, pg[j].pos.start);
            int64_t hi = ATTN_MIN(pa[i].pos.start + pa[i].count, pg[j].pos.start + pg[j].count);
            rows += hi > lo ? hi - lo : 0;
        }
    return rows;
}

int plan_usp(const plan_usp_mesh_t *m, int64_t B, int64_t H, int64_t Hkv, int64_t d, int64_t n_q, int64_t n_k,
             int rank, plan_usp_t *u, attn_err_t *err) {
    int P = m->P;
    if (rank < 0 || rank >= P || Hkv < 1 || H % Hkv || H % m->U || m->U * m->R != P)
        return attn_fail(err, ATTN_EUSAGE, "usp plan: rank %d of %d = %d × %d, %lld heads over %lld kv heads", rank,
                         P, m->U, m->R, (long long)H, (long long)Hkv);
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, m->kind, n_q, m->R, err));
    ATTN_TRY(layout_init(&lk, m->kind, n_k, m->R, err));
    memset(u, 0, sizeof *u);
    u->mesh = *m, u->rank = rank, u->ghq = H / m->U;
    plan_usp_coords(m, rank, &u->group, &u->member);
    u->send_to = plan_usp_rank(m, (u->group + 1) % m->R, u->member);
    u->recv_from = plan_usp_rank(m, (u->group - 1 + m->R) % m->R, u->member);
    u->heads = plan_ulysses_heads(H, Hkv, m->U, u->member);
    u->ring_q = layout_local_count(&lq, u->group), u->ring_k = layout_local_count(&lk, u->group);
    for (int r = 0; r < P; r++) {
        int g, mem;
        plan_usp_coords(m, r, &g, &mem);
        plan_heads_t hr = plan_ulysses_heads(H, Hkv, m->U, mem);
        int64_t q_to = plan_usp_rows(m, n_q, rank, g), k_to = plan_usp_rows(m, n_k, rank, g);
        int64_t q_from = plan_usp_rows(m, n_q, r, u->group), k_from = plan_usp_rows(m, n_k, r, u->group);
        u->send_q[r] = B * hr.hq * q_to * d;           /* my rows of r's group, r's heads */
        u->send_kv[r] = 2 * B * hr.kvn * k_to * d;     /* K and V of the kv heads r reads */
        u->recv_q[r] = B * u->heads.hq * q_from * d;   /* r's rows of my group, my heads */
        u->recv_kv[r] = 2 * B * u->heads.kvn * k_from * d;
        u->send_out[r] = B * u->heads.hq * q_from * (d + 1); /* O and LSE of those rows back to r */
        u->recv_out[r] = B * hr.hq * q_to * (d + 1);
    }
    u->q_send_total = prefix(P, u->send_q, NULL, u->send_q_off);
    u->q_recv_total = prefix(P, u->recv_q, NULL, u->recv_q_off);
    u->kv_send_total = prefix(P, u->send_kv, NULL, u->send_kv_off);
    u->kv_recv_total = prefix(P, u->recv_kv, NULL, u->recv_kv_off);
    u->out_send_total = prefix(P, u->send_out, NULL, u->send_out_off);
    u->out_recv_total = prefix(P, u->recv_out, NULL, u->recv_out_off);
    return ATTN_OK;
}

void plan_usp_expect(const plan_usp_mesh_t *m, int64_t B, int64_t H, int64_t Hkv, int64_t d, int64_t n_q,
                     int64_t n_k, const attn_vis_t *v, double elem, attn_dist_expect_t *out) {
    attn_err_t err = {0};
    attn_dist_expect_t ring;
    memset(out, 0, sizeof *out);
    plan_usp_t pu, *u = &pu;
    /* Every member of a group attends its group shard on H/U heads: the ring's balance over R. */
    plan_ring_expect(m->kind, n_q, n_k, v, m->R, 1.0, &ring, NULL);
    out->imbalance = ring.imbalance, out->critical_path = ring.critical_path;
    for (int r = 0; r < m->P; r++) {
        if (plan_usp(m, B, H, Hkv, d, n_q, n_k, r, u, &err) != ATTN_OK)
            break;
        double sent = 0, recvd = 0;
        for (int q = 0; q < m->P; q++)
            if (q != r) { /* the self part is a local copy */
                sent += (double)(u->send_q[q] + u->send_kv[q] + u->send_out[q]);
                recvd += (double)(u->recv_q[q] + u->recv_kv[q] + u->recv_out[q]);
            }
        /* The ring's rows (plan_ring_expect with a row of one unit) times this rank's row. */
        double row = 2.0 * (double)(B * u->heads.kvn * d);
        out->bytes_sent[r] = elem * (sent + row * ring.bytes_sent[u->group]);
        out->bytes_recv[r] = elem * (recvd + row * ring.bytes_recv[u->group]);
    }
}
