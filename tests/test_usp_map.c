/* test_usp_map.c — usp_cuda's index arithmetic (impls/parallel/usp_map.h) replayed on the host:
 * every rank's tagged Q, K, V words packed with usp_move_at and the row maps, exchanged at the
 * per-peer byte offsets of usp_cuda_a2a, unpacked, rotated over the ring with usp_ring_buffer,
 * O and LSE sent back; each word must arrive where the mesh (docs/usp.md) says, inside the
 * buffer sizes of usp_cuda_sizes, with the bytes of usp_cuda_expect. All P ≤ 8, every U | P,
 * three layouts, GQA splits the kernel takes, uneven n, n_q < n_k, B = 1 and 2. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "impls/parallel/usp_map.h"
#include "tests/check.h"

enum { TQ = 1, TK, TV, TO, TL };
enum { HMAX = 8, NMAX = 256, WMAX = 4, D = 4, WQ = D / 2, WO = D }; /* bf16 rows: D/2 words */

/* The tag of word w of row (b, head, global token t) of tensor kind. */
static uint32_t tag(int kind, int64_t b, int64_t h, int64_t t, int64_t w) {
    return (uint32_t)((((kind * 2 + b) * HMAX + h) * NMAX + t) * WMAX + w + 1);
}

/* The copy kernel's rule, on the host: word x of the packed run ↔ usp_move_at's tensor word. */
static void move(usp_move_t m, const int64_t *idx, uint32_t *tensor, uint32_t *packed, int to_packed) {
    for (int64_t x = 0, n = usp_move_total(m); x < n; x++) {
        int64_t t = usp_move_at(m, idx, x);
        if (to_packed)
            packed[x] = tensor[t];
        else
            tensor[t] = packed[x];
    }
}

typedef struct {
    int g, u;
    plan_usp_t pl;
    usp_cuda_a2a_t a;
    usp_cuda_sizes_t sz;
    usp_rows_t rq, rk;
    int64_t nq, nk;
    uint32_t *q, *k, *v, *o, *lse, *send, *recv, *gq, *kv[2], *go, *gl;
    double sent, recvd;
} rank_t;

static long n_cases, n_words;
static int bad; /* first failure of a case stops it */

static int expect_word(const char *name, uint32_t got, uint32_t want, const char *what, int64_t b, int64_t h,
                       int64_t row) {
    n_words++;
    if (got == want)
        return 1;
    check(0, name, "%s: (b %lld, head %lld, row %lld) holds tag %u, expected %u", what, (long long)b, (long long)h,
          (long long)row, got, want);
    bad = 1;
    return 0;
}

static void *zalloc(size_t bytes) { return calloc(1, bytes); } /* exact: ASan sees an overrun */

static void run_case(attn_layout_kind_t kind, int P, int U, int64_t B, int64_t H, int64_t Hkv, int64_t nq_all,
                     int64_t nk_all) {
    char name[200];
    snprintf(name, sizeof name, "usp_cuda map %s P=%d U=%d B=%lld H=%lld H_kv=%lld n_q=%lld n_k=%lld", layout_name(kind),
             P, U, (long long)B, (long long)H, (long long)Hkv, (long long)nq_all, (long long)nk_all);
    attn_err_t err = {0};
    plan_usp_mesh_t m;
    attn_layout_t lq, lk, rq_l, rk_l;
    if (plan_usp_mesh(kind, H, Hkv, P, U, &m, &err) || layout_init(&lq, kind, nq_all, P, &err) ||
        layout_init(&lk, kind, nk_all, P, &err) || layout_init(&rq_l, kind, nq_all, m.R, &err) ||
        layout_init(&rk_l, kind, nk_all, m.R, &err))
        return; /* the backend declines these */
    attn_problem_t p = {0};
    p.batch = B, p.heads = H, p.kv_heads = Hkv, p.head_dim = D, p.n_q = nq_all, p.n_k = nk_all;
    p.mask = ATTN_MASK_CAUSAL;

    n_cases++, bad = 0;
    int R = m.R;
    rank_t *rk = calloc((size_t)P, sizeof *rk);
    for (int r = 0; r < P && !bad; r++) {
        rank_t *s = &rk[r];
        plan_usp_coords(&m, r, &s->g, &s->u);
        if (!check(plan_usp(&m, B, H, Hkv, D, nq_all, nk_all, r, &s->pl, &err) == ATTN_OK &&
                       usp_cuda_sizes(&p, &m, r, &s->sz, &err) == ATTN_OK,
                   name, "plan: %s", err.msg)) {
            bad = 1;
            break;
        }
        usp_cuda_a2a(&s->pl, &s->a);
        s->nq = layout_local_count(&lq, r), s->nk = layout_local_count(&lk, r);
        s->rq.send_li = s->rq.recv_gi = s->rk.send_li = s->rk.recv_gi = NULL;
        usp_rows_t cq, ck; /* counts first, as the backend sizes its arrays */
        cq.send_li = cq.recv_gi = ck.send_li = ck.recv_gi = NULL;
        if (usp_rows_map(&m, nq_all, r, &cq, &err) || usp_rows_map(&m, nk_all, r, &ck, &err)) {
            check(0, name, "rows: %s", err.msg), bad = 1;
            break;
        }
        s->rq = cq, s->rk = ck;
        s->rq.send_li = malloc((size_t)(cq.n_local + 1) * 8), s->rq.recv_gi = malloc((size_t)(cq.n_group + 1) * 8);
        s->rk.send_li = malloc((size_t)(ck.n_local + 1) * 8), s->rk.recv_gi = malloc((size_t)(ck.n_group + 1) * 8);
        if (usp_rows_map(&m, nq_all, r, &s->rq, &err) || usp_rows_map(&m, nk_all, r, &s->rk, &err)) {
            check(0, name, "rows: %s", err.msg), bad = 1;
            break;
        }
        /* The maps' counts are plan.c's (plan_usp_rows), and their sizes fit the maps buffer. */
        for (int g = 0; g < R; g++)
            if (s->rq.send_start[g + 1] - s->rq.send_start[g] != plan_usp_rows(&m, nq_all, r, g) ||
                s->rk.send_start[g + 1] - s->rk.send_start[g] != plan_usp_rows(&m, nk_all, r, g))
                check(0, name, "rank %d: rows to group %d differ from plan_usp_rows", r, g), bad = 1;
        for (int q = 0; q < P; q++)
            if (s->rq.recv_start[q + 1] - s->rq.recv_start[q] != plan_usp_rows(&m, nq_all, q, s->g))
                check(0, name, "rank %d: rows from %d differ from plan_usp_rows", r, q), bad = 1;
        if ((size_t)(s->rq.n_local + s->rq.n_group + s->rk.n_local + s->rk.n_group) * 8 > s->sz.maps)
            check(0, name, "rank %d: row maps exceed their buffer", r), bad = 1;
        s->q = zalloc(s->sz.q), s->k = zalloc(s->sz.k), s->v = zalloc(s->sz.v), s->o = zalloc(s->sz.o);
        s->lse = zalloc(s->sz.lse), s->send = zalloc(s->sz.stage), s->recv = zalloc(s->sz.stage);
        s->gq = zalloc(s->sz.gq), s->kv[0] = zalloc(s->sz.kv), s->kv[1] = zalloc(s->sz.kv);
        s->go = zalloc(s->sz.go), s->gl = zalloc(s->sz.gl);
        for (int64_t b = 0; b < B; b++) {
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < s->nq; i++)
                    for (int w = 0; w < WQ; w++)
                        s->q[((b * H + h) * s->nq + i) * WQ + w] = tag(TQ, b, h, layout_local_to_global(&lq, r, i), w);
            for (int64_t h = 0; h < Hkv; h++)
                for (int64_t i = 0; i < s->nk; i++)
                    for (int w = 0; w < WQ; w++) {
                        int64_t t = layout_local_to_global(&lk, r, i), at = ((b * Hkv + h) * s->nk + i) * WQ + w;
                        s->k[at] = tag(TK, b, h, t, w), s->v[at] = tag(TV, b, h, t, w);
                    }
        }
    }
    /* 1. The in exchange: pack per peer, then every message must fill exactly its byte count. */
    for (int a = 0; a < P && !bad; a++) {
        rank_t *s = &rk[a];
        if (s->a.in_send > s->sz.stage - 16 || s->a.in_recv > s->sz.stage - 16 || s->a.out_send > s->sz.stage - 16 ||
            s->a.out_recv > s->sz.stage - 16)
            check(0, name, "rank %d: an exchange exceeds the staging buffer", a), bad = 1;
        for (int r = 0; r < P; r++) {
            rank_t *t = &rk[r];
            const plan_heads_t *hr = &t->pl.heads;
            int64_t g = t->g, rows_q = s->rq.send_start[g + 1] - s->rq.send_start[g];
            int64_t rows_k = s->rk.send_start[g + 1] - s->rk.send_start[g];
            uint32_t *at = s->send + s->a.so_in[r] / 4;
            usp_move_t mq = {B, H, hr->q0, hr->hq, s->nq, rows_q, WQ}, mk = {B, Hkv, hr->kv0, hr->kvn, s->nk, rows_k, WQ};
            move(mq, s->rq.send_li + s->rq.send_start[g], s->q, at, 1);
            move(mk, s->rk.send_li + s->rk.send_start[g], s->k, s->send + (s->a.so_in[r] + s->a.send_k_at[r]) / 4, 1);
            move(mk, s->rk.send_li + s->rk.send_start[g], s->v, s->send + (s->a.so_in[r] + s->a.send_v_at[r]) / 4, 1);
            size_t bytes = 4 * (size_t)(usp_move_total(mq) + 2 * usp_move_total(mk));
            if (bytes != s->a.sb_in[r] || 4 * (size_t)usp_move_total(mq) != s->a.send_k_at[r] ||
                s->a.so_in[r] % 4 || s->a.send_k_at[r] % 4)
                check(0, name, "rank %d → %d: packed %zu bytes, the exchange says %zu", a, r, bytes, s->a.sb_in[r]),
                    bad = 1;
            if (t->a.rb_in[a] != s->a.sb_in[r] || t->a.recv_k_at[a] != s->a.send_k_at[r] ||
                t->a.recv_v_at[a] != s->a.send_v_at[r])
                check(0, name, "rank %d expects %zu bytes (K at %zu, V at %zu) from %d, which sends %zu (%zu, %zu)", r,
                      t->a.rb_in[a], t->a.recv_k_at[a], t->a.recv_v_at[a], a, s->a.sb_in[r], s->a.send_k_at[r],
                      s->a.send_v_at[r]), bad = 1;
            if (r != a)
                s->sent += (double)s->a.sb_in[r], t->recvd += (double)s->a.sb_in[r];
        }
    }
    for (int r = 0; r < P && !bad; r++) /* the all-to-all, as the transports copy it */
        for (int a = 0; a < P; a++)
            memcpy((char *)rk[r].recv + rk[r].a.ro_in[a], (char *)rk[a].send + rk[a].a.so_in[r], rk[r].a.rb_in[a]);
    /* Unpack into the group shard: Q, and the rank's own ring block (K then V). */
    for (int r = 0; r < P && !bad; r++) {
        rank_t *s = &rk[r];
        const plan_heads_t *h = &s->pl.heads;
        int64_t gq = s->pl.ring_q, gk = s->pl.ring_k;
        for (int a = 0; a < P; a++) {
            int64_t rows_q = s->rq.recv_start[a + 1] - s->rq.recv_start[a];
            int64_t rows_k = s->rk.recv_start[a + 1] - s->rk.recv_start[a];
            usp_move_t mq = {B, h->hq, 0, h->hq, gq, rows_q, WQ}, mk = {B, h->kvn, 0, h->kvn, gk, rows_k, WQ};
            uint32_t *at = s->recv + s->a.ro_in[a] / 4;
            move(mq, s->rq.recv_gi + s->rq.recv_start[a], s->gq, at, 0);
            move(mk, s->rk.recv_gi + s->rk.recv_start[a], s->kv[usp_ring_buffer(0)],
                 s->recv + (s->a.ro_in[a] + s->a.recv_k_at[a]) / 4, 0);
            move(mk, s->rk.recv_gi + s->rk.recv_start[a], s->kv[usp_ring_buffer(0)] + B * h->kvn * gk * WQ,
                 s->recv + (s->a.ro_in[a] + s->a.recv_v_at[a]) / 4, 0);
        }
        if ((size_t)(B * h->hq * gq * WQ * 4) > s->sz.gq - 16 || (size_t)(2 * B * h->kvn * gk * WQ * 4) > s->sz.kv - 16)
            check(0, name, "rank %d: its group shard exceeds its buffers", r), bad = 1;
        for (int64_t b = 0; b < B && !bad; b++)
            for (int64_t j = 0; j < h->hq && !bad; j++)
                for (int64_t i = 0; i < gq && !bad; i++)
                    for (int w = 0; w < WQ && !bad; w++)
                        expect_word(name, s->gq[((b * h->hq + j) * gq + i) * WQ + w],
                                    tag(TQ, b, h->q0 + j, layout_local_to_global(&rq_l, s->g, i), w), "group Q", b, j, i);
    }
    /* 2. The ring over the R groups: at step s each rank reads buffer usp_ring_buffer(s), which
     * must hold group src's block of its kv heads; the block then moves to send_to. */
    for (int st = 0; st < R && !bad; st++) {
        for (int r = 0; r < P && !bad; r++) {
            rank_t *s = &rk[r];
            const plan_heads_t *h = &s->pl.heads;
            plan_ring_step_t ps;
            if (plan_ring_step(kind, nq_all, nk_all, &(attn_vis_t){p.mask, 0, 0, 0}, R, s->g, st, &ps, &err)) {
                check(0, name, "ring step: %s", err.msg), bad = 1;
                break;
            }
            const uint32_t *blk = s->kv[usp_ring_buffer(st)];
            int64_t kr = ps.k_rows;
            if ((size_t)(2 * B * h->kvn * kr * WQ * 4) > s->sz.kv - 16) {
                check(0, name, "rank %d step %d: a block of %lld rows exceeds the K/V buffer", r, st, (long long)kr);
                bad = 1;
                break;
            }
            for (int64_t b = 0; b < B && !bad; b++)
                for (int64_t j = 0; j < h->kvn && !bad; j++)
                    for (int64_t i = 0; i < kr && !bad; i++)
                        for (int w = 0; w < WQ && !bad; w++) {
                            int64_t t = layout_local_to_global(&rk_l, ps.src, i), at = ((b * h->kvn + j) * kr + i) * WQ + w;
                            expect_word(name, blk[at], tag(TK, b, h->kv0 + j, t, w), "ring K", b, j, i);
                            expect_word(name, blk[B * h->kvn * kr * WQ + at], tag(TV, b, h->kv0 + j, t, w), "ring V", b,
                                        j, i);
                        }
            if (st < R - 1) { /* the shift: my block to send_to's other buffer */
                rank_t *t = &rk[s->pl.send_to];
                plan_ring_step_t pt;
                plan_ring_step(kind, nq_all, nk_all, &(attn_vis_t){p.mask, 0, 0, 0}, R, t->g, st, &pt, &err);
                if (t->pl.recv_from != r || pt.rows_recv != ps.rows_sent || t->pl.heads.kvn != h->kvn) {
                    check(0, name, "ring: %d → %d disagree on the step", r, s->pl.send_to), bad = 1;
                    break;
                }
                size_t bytes = (size_t)(2 * B * h->kvn * ps.rows_sent * D) * 2;
                if (bytes > t->sz.kv - 16) {
                    check(0, name, "ring: %zu bytes into rank %d's %zu-byte K/V buffer", bytes, s->pl.send_to,
                          t->sz.kv - 16), bad = 1;
                    break;
                }
                memcpy(t->kv[usp_ring_buffer(st + 1)], blk, bytes);
                s->sent += (double)bytes, t->recvd += (double)bytes;
            }
        }
    }
    /* 3. O and LSE back: group rows tagged, packed per peer with the receive map, unpacked with
     * the send map into the P-shards' heads of the sender. */
    for (int r = 0; r < P && !bad; r++) {
        rank_t *s = &rk[r];
        const plan_heads_t *h = &s->pl.heads;
        int64_t gq = s->pl.ring_q;
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < h->hq; j++)
                for (int64_t i = 0; i < gq; i++) {
                    int64_t t = layout_local_to_global(&rq_l, s->g, i);
                    for (int w = 0; w < WO; w++)
                        s->go[((b * h->hq + j) * gq + i) * WO + w] = tag(TO, b, h->q0 + j, t, w);
                    s->gl[(b * h->hq + j) * gq + i] = tag(TL, b, h->q0 + j, t, 0);
                }
        for (int a = 0; a < P; a++) {
            int64_t rows = s->rq.recv_start[a + 1] - s->rq.recv_start[a];
            const int64_t *idx = s->rq.recv_gi + s->rq.recv_start[a];
            usp_move_t mo = {B, h->hq, 0, h->hq, gq, rows, WO}, ml = {B, h->hq, 0, h->hq, gq, rows, 1};
            uint32_t *at = s->send + s->a.so_out[a] / 4;
            move(mo, idx, s->go, at, 1);
            move(ml, idx, s->gl, at + usp_move_total(mo), 1);
            if (4 * (size_t)(usp_move_total(mo) + usp_move_total(ml)) != s->a.sb_out[a] ||
                rk[a].a.rb_out[r] != s->a.sb_out[a])
                check(0, name, "rank %d → %d: O|LSE bytes disagree", r, a), bad = 1;
            if (a != r)
                s->sent += (double)s->a.sb_out[a], rk[a].recvd += (double)s->a.sb_out[a];
        }
    }
    for (int a = 0; a < P && !bad; a++)
        for (int r = 0; r < P; r++)
            memcpy((char *)rk[a].recv + rk[a].a.ro_out[r], (char *)rk[r].send + rk[r].a.so_out[a], rk[a].a.rb_out[r]);
    for (int a = 0; a < P && !bad; a++) {
        rank_t *s = &rk[a];
        for (int r = 0; r < P; r++) {
            rank_t *t = &rk[r];
            const plan_heads_t *hr = &t->pl.heads;
            int64_t rows = s->rq.send_start[t->g + 1] - s->rq.send_start[t->g];
            const int64_t *idx = s->rq.send_li + s->rq.send_start[t->g];
            usp_move_t mo = {B, H, hr->q0, hr->hq, s->nq, rows, WO}, ml = {B, H, hr->q0, hr->hq, s->nq, rows, 1};
            uint32_t *at = s->recv + s->a.ro_out[r] / 4;
            move(mo, idx, s->o, at, 0);
            move(ml, idx, s->lse, at + usp_move_total(mo), 0);
        }
        for (int64_t b = 0; b < B && !bad; b++)
            for (int64_t h = 0; h < H && !bad; h++)
                for (int64_t i = 0; i < s->nq && !bad; i++) {
                    int64_t t = layout_local_to_global(&lq, a, i);
                    for (int w = 0; w < WO && !bad; w++)
                        expect_word(name, s->o[((b * H + h) * s->nq + i) * WO + w], tag(TO, b, h, t, w), "O", b, h, i);
                    expect_word(name, s->lse[(b * H + h) * s->nq + i], tag(TL, b, h, t, 0), "LSE", b, h, i);
                }
    }
    /* The bytes moved are usp_cuda_expect's, to the byte. */
    attn_dist_expect_t ex;
    usp_cuda_expect(&m, &p, &ex);
    for (int r = 0; r < P && !bad; r++)
        if (ex.bytes_sent[r] != rk[r].sent || ex.bytes_recv[r] != rk[r].recvd)
            check(0, name, "rank %d: moved %.0f / %.0f bytes, usp_cuda_expect says %.0f / %.0f", r, rk[r].sent,
                  rk[r].recvd, ex.bytes_sent[r], ex.bytes_recv[r]), bad = 1;
    for (int r = 0; r < P; r++) {
        rank_t *s = &rk[r];
        void *all[] = {s->q, s->k, s->v, s->o, s->lse, s->send, s->recv, s->gq, s->kv[0], s->kv[1], s->go, s->gl,
                       s->rq.send_li, s->rq.recv_gi, s->rk.send_li, s->rk.recv_gi};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            free(all[i]);
    }
    free(rk);
}

int main(void) {
    static const int64_t heads[][2] = {{4, 4}, {4, 1}, {4, 2}, {8, 2}, {8, 8}, {6, 3}, {6, 2}, {2, 2}};
    check_quiet = 1;
    for (int kind = 0; kind < 3; kind++)
        for (int P = 1; P <= 8; P++)
            for (int U = 1; U <= P; U++) {
                if (P % U)
                    continue;
                for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; hi++) {
                    int64_t H = heads[hi][0], Hkv = heads[hi][1];
                    if (H % U || !plan_ulysses_kernel_heads(H, Hkv, U)) /* what usp_cuda takes */
                        continue;
                    int64_t ns[][2] = {{4 * P, 4 * P}, {37, 37}, {13, 41}, {2 * P + 1, 3 * P + 5}};
                    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                        for (int64_t B = 1; B <= 2; B++)
                            run_case((attn_layout_kind_t)kind, P, U, B, H, Hkv, ns[ni][0], ns[ni][1]);
                }
            }
    check_quiet = 0;
    check(n_cases > 500, "usp_cuda map cases", "%ld cases", n_cases);
    printf("%ld cases, %ld words checked\n", n_cases, n_words);
    return check_summary();
}
