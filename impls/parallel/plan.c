/* plan.c — see plan.h. Pure arithmetic on layouts and masks: no buffers, no communication,
 * so the same numbers drive the CPU and GPU backends and tests/test_plan.c checks them all. */
#include "impls/parallel/plan.h"

#include <math.h>
#include <string.h>

void plan_ring_pair(attn_mask_t mask, int64_t window, const layout_piece_t *q, const layout_piece_t *k, plan_pair_t *out) {
    layout_piece_t qp = *q, kp = *k; /* out may alias q or k */
    int64_t lo, hi;
    mask_key_range(mask, window, qp.pos.start, qp.pos.start + qp.pos.stride * (qp.count - 1), kp.pos, kp.count, &lo, &hi);
    out->q = qp, out->k = kp;
    out->lo = lo, out->hi = hi;
    out->skip = lo >= hi || qp.count == 0;
    plan_band_for(qp.pos.start, kp.pos.start, qp.pos.stride, window, &out->q_off, &out->win);
}

int plan_ring_step(attn_layout_kind_t kind, int64_t n_q, int64_t n_k, attn_mask_t mask, int64_t window, int P, int rank,
                   int step, plan_ring_step_t *out, attn_err_t *err) {
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, kind, n_q, P, err));
    ATTN_TRY(layout_init(&lk, kind, n_k, P, err));
    if (rank < 0 || rank >= P || step < 0 || step >= P)
        return attn_fail(err, ATTN_EUSAGE, "ring plan: rank %d, step %d of %d ranks", rank, step, P);
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
            plan_ring_pair(mask, window, &qpc[a], &kpc[b], &out->pair[out->n_pairs++]);
    }
    return ATTN_OK;
}

double plan_pair_work(attn_mask_t mask, int64_t window, const plan_pair_t *pr) {
    double pairs = 0;
    for (int64_t r = 0; r < pr->q.count; r++) {
        int64_t i = pr->q.pos.start + pr->q.pos.stride * r, lo, hi;
        mask_key_range(mask, window, i, i, pr->k.pos, pr->k.count, &lo, &hi);
        pairs += hi > lo ? (double)(hi - lo) : 0;
    }
    return pairs;
}

/* Rank r computes its queries against the block of rank r − s at step s; it sends the blocks
 * of ranks r, r−1, …, r−P+2 (all but r+1's) and receives all but its own. */
void plan_ring_expect(attn_layout_kind_t kind, int64_t n_q, int64_t n_k, attn_mask_t mask, int64_t window, int P,
                      double row_bytes, attn_dist_expect_t *out, double *work_out) {
    attn_err_t err = {0};
    plan_ring_step_t st;
    memset(out, 0, sizeof *out);
    if (P < 1 || P > ATTN_MAX_RANKS)
        return;
    double pairs[ATTN_MAX_RANKS][ATTN_MAX_RANKS], work[ATTN_MAX_RANKS] = {0}, total = 0, worst = 0;
    int64_t sent[ATTN_MAX_RANKS] = {0}, recvd[ATTN_MAX_RANKS] = {0};
    for (int r = 0; r < P; r++)
        for (int s = 0; s < P; s++) {
            if (plan_ring_step(kind, n_q, n_k, mask, window, P, r, s, &st, &err) != ATTN_OK)
                return;
            double w = 0;
            for (int i = 0; i < st.n_pairs; i++)
                w += st.pair[i].skip ? 0 : plan_pair_work(mask, window, &st.pair[i]);
            pairs[r][st.src] = w;
            sent[r] += st.rows_sent, recvd[r] += st.rows_recv;
        }
    for (int r = 0; r < P; r++)
        for (int k = 0; k < P; k++) {
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
        out->bytes_sent[r] = row_bytes * (double)sent[r];
        out->bytes_recv[r] = row_bytes * (double)recvd[r];
    }
    if (work_out)
        memcpy(work_out, work, sizeof(double) * (size_t)P);
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
