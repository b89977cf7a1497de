/* ulysses_grad_plan.h — the index arithmetic of ulysses_cuda's backward (ulysses_cuda_grad.cu): both
 * all-to-alls as slab copies between a rank's token shard, a message section and a rank's heads
 * over all tokens. Compiled by nvcc and by C, so tests/test_ulysses_grad_plan.c replays the
 * exchanges on the host against the contiguous layout (comm/layout.h). */
#pragma once
#include "comm/layout.h"
#include "impls/parallel/plan.h"

/* Sections of the in message (shard owner r → head owner q): Q, dO (bf16), LSE·log2 e and
 * D = rowsum(dO∘O) (float32, one value a row; flash_bwd_prep runs on the shard before the
 * exchange, so O itself never travels), K, V (bf16). Of the out message (q → r): dQ, dK, dV
 * (float32; dK and dV of the kv heads q holds, which the receiver adds: under GQA a kv head
 * may be held by several ranks, each with part of its group's query heads). */
enum { UG_Q, UG_DO, UG_LSE2, UG_DELTA, UG_K, UG_V, UG_DQ, UG_DK, UG_DV, UG_SECTIONS };
enum { UG_IN_FIRST = UG_Q, UG_IN_END = UG_DQ, UG_OUT_FIRST = UG_DQ, UG_OUT_END = UG_SECTIONS };

typedef struct {
    int P;
    int64_t B, H, Hkv, d, n_q, n_k;
    plan_heads_t hd[ATTN_MAX_RANKS];  /* rank q's heads (plan_ulysses_heads) */
    int64_t m[ATTN_MAX_RANKS], k[ATTN_MAX_RANKS];   /* rank r's query and key tokens */
    int64_t m0[ATTN_MAX_RANKS], k0[ATTN_MAX_RANKS]; /* where they sit in the whole sequence */
} ulysses_grad_plan_t;

/* dst row d0 + o1·dA + o2·dB + t ← src row s0 + o1·sA + o2·sB + t, for o1 < O1 (batch),
 * o2 < O2 (heads), t < R (tokens); rows of ulysses_grad_row_bytes. */
typedef struct {
    int64_t O1, O2, R, d0, dA, dB, s0, sA, sB;
} ulysses_slab_t;

/* Where a section's rows live: the shard of r (all H or H_kv heads, r's tokens), the message
 * between r and q (q's heads, r's tokens, packed), or q's heads over the whole sequence. */
enum { UG_SHARD, UG_MSG, UG_HEADS };

static inline int ulysses_grad_is_query(int t) { return t != UG_K && t != UG_V && t != UG_DK && t != UG_DV; }

static inline int64_t ulysses_grad_row_bytes(const ulysses_grad_plan_t *g, int t) {
    if (t == UG_LSE2 || t == UG_DELTA)
        return 4;
    return t >= UG_OUT_FIRST ? 4 * g->d : 2 * g->d;
}

/* Fills g for P ranks (contiguous layout); 0, or ATTN_EUSAGE when the heads do not split as
 * ulysses_cuda's forward requires (plan_ulysses_kernel_heads). */
static inline int ulysses_grad_plan(const attn_problem_t *p, int P, ulysses_grad_plan_t *g, attn_err_t *err) {
    if (P < 1 || P > ATTN_MAX_RANKS || !plan_ulysses_kernel_heads(p->heads, p->kv_heads, P))
        return attn_fail(err, ATTN_EUSAGE, "ulysses_cuda backward: %lld heads over %lld kv heads do not split over %d ranks",
                         (long long)p->heads, (long long)p->kv_heads, P);
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, LAYOUT_CONTIGUOUS, p->n_q, P, err));
    ATTN_TRY(layout_init(&lk, LAYOUT_CONTIGUOUS, p->n_k, P, err));
    g->P = P, g->B = p->batch, g->H = p->heads, g->Hkv = p->kv_heads, g->d = p->head_dim;
    g->n_q = p->n_q, g->n_k = p->n_k;
    for (int r = 0; r < P; r++) {
        g->hd[r] = plan_ulysses_heads(p->heads, p->kv_heads, P, r);
        g->m[r] = layout_local_count(&lq, r), g->k[r] = layout_local_count(&lk, r);
    }
    for (int r = 0; r < P; r++)
        g->m0[r] = plan_ulysses_row0(g->m, r), g->k0[r] = plan_ulysses_row0(g->k, r);
    return 0;
}

/* Section t between shard owner r and head owner q, seen from `side`: rows base + o1·A + o2·B + tok. */
static inline void ulysses_grad_side(const ulysses_grad_plan_t *g, int r, int q, int t, int side, int64_t *base,
                                     int64_t *A, int64_t *B) {
    int qr = ulysses_grad_is_query(t);
    int64_t nh = qr ? g->hd[q].hq : g->hd[q].kvn, h0 = qr ? g->hd[q].q0 : g->hd[q].kv0;
    int64_t tok = qr ? g->m[r] : g->k[r], seq = qr ? g->n_q : g->n_k, tok0 = qr ? g->m0[r] : g->k0[r];
    int64_t Htot = qr ? g->H : g->Hkv;
    if (side == UG_SHARD)
        *base = h0 * tok, *A = Htot * tok, *B = tok;
    else if (side == UG_MSG)
        *base = 0, *A = nh * tok, *B = tok;
    else
        *base = tok0, *A = nh * seq, *B = seq;
}

/* The copy of section t (r, q) from side `from` to side `to`. */
static inline ulysses_slab_t ulysses_grad_slab(const ulysses_grad_plan_t *g, int r, int q, int t, int from, int to) {
    ulysses_slab_t s;
    int qr = ulysses_grad_is_query(t);
    s.O1 = g->B, s.O2 = qr ? g->hd[q].hq : g->hd[q].kvn, s.R = qr ? g->m[r] : g->k[r];
    ulysses_grad_side(g, r, q, t, to, &s.d0, &s.dA, &s.dB);
    ulysses_grad_side(g, r, q, t, from, &s.s0, &s.sA, &s.sB);
    return s;
}

/* Bytes of section t (r, q), and its offset in the message (sections in enum order). */
static inline int64_t ulysses_grad_section_bytes(const ulysses_grad_plan_t *g, int r, int q, int t) {
    ulysses_slab_t s = ulysses_grad_slab(g, r, q, t, UG_SHARD, UG_MSG);
    return s.O1 * s.O2 * s.R * ulysses_grad_row_bytes(g, t);
}

static inline int64_t ulysses_grad_section_off(const ulysses_grad_plan_t *g, int r, int q, int t) {
    int64_t at = 0;
    for (int u = t < UG_OUT_FIRST ? UG_IN_FIRST : UG_OUT_FIRST; u < t; u++)
        at += ulysses_grad_section_bytes(g, r, q, u);
    return at;
}

/* Bytes of the whole message between r and q in exchange `out` (0: in, 1: out). */
static inline int64_t ulysses_grad_msg_bytes(const ulysses_grad_plan_t *g, int r, int q, int out) {
    int64_t at = 0;
    for (int u = out ? UG_OUT_FIRST : UG_IN_FIRST; u < (out ? UG_OUT_END : UG_IN_END); u++)
        at += ulysses_grad_section_bytes(g, r, q, u);
    return at;
}

/* The all-to-all of exchange `out` as rank `me` runs it: per peer, bytes and offsets (messages
 * back to back in peer order) of what it sends and receives; returns the larger total. In the in
 * exchange me sends as shard owner and receives as head owner; in the out exchange the reverse. */
static inline int64_t ulysses_grad_alltoall(const ulysses_grad_plan_t *g, int me, int out, int64_t *send_bytes,
                                            int64_t *send_off, int64_t *recv_bytes, int64_t *recv_off) {
    int64_t s_at = 0, r_at = 0;
    for (int peer = 0; peer < g->P; peer++) {
        send_bytes[peer] = out ? ulysses_grad_msg_bytes(g, peer, me, 1) : ulysses_grad_msg_bytes(g, me, peer, 0);
        recv_bytes[peer] = out ? ulysses_grad_msg_bytes(g, me, peer, 1) : ulysses_grad_msg_bytes(g, peer, me, 0);
        send_off[peer] = s_at, recv_off[peer] = r_at;
        s_at += send_bytes[peer], r_at += recv_bytes[peer];
    }
    return s_at > r_at ? s_at : r_at;
}

/* Bytes rank me moves to and from other ranks over both exchanges (its self part is a local copy,
 * not counted): the per-rank figures ulysses_cuda's backward reports and its expectation. */
static inline void ulysses_grad_traffic(const ulysses_grad_plan_t *g, int me, double *sent, double *recv) {
    int64_t sb[ATTN_MAX_RANKS], so[ATTN_MAX_RANKS], rb[ATTN_MAX_RANKS], ro[ATTN_MAX_RANKS];
    *sent = *recv = 0;
    for (int out = 0; out < 2; out++) {
        ulysses_grad_alltoall(g, me, out, sb, so, rb, ro);
        for (int q = 0; q < g->P; q++)
            if (q != me)
                *sent += (double)sb[q], *recv += (double)rb[q];
    }
}
