/* usp_map.c — usp's row rule (usp_group_rows, for usp.c, usp_grad.c and the maps), usp_cuda's row
 * maps, exchange sizes, device buffer sizes and analytic bytes: host code shared by usp_cuda.cu and
 * tests/test_usp_map.c. Derivation: docs/usp.md. */
#include <stdlib.h>
#include <string.h>

#include "impls/parallel/usp_map.h"
#include "impls/parallel/usp_util.h"

int64_t usp_group_rows(const attn_layout_t *lp, const attn_layout_t *lr, int a, int g, int64_t *li, int64_t *gi) {
    int64_t n = 0, count = layout_local_count(lp, a);
    for (int64_t i = 0; i < count; i++) {
        int owner;
        int64_t at;
        layout_global_to_local(lr, layout_local_to_global(lp, a, i), &owner, &at);
        if (owner != g)
            continue;
        if (li)
            li[n] = i;
        if (gi)
            gi[n] = at;
        n++;
    }
    return n;
}

int usp_rows_map(const plan_usp_mesh_t *m, int64_t n, int rank, usp_rows_t *out, attn_err_t *err) {
    attn_layout_t lp, lr;
    ATTN_TRY(layout_init(&lp, m->kind, n, m->P, err));
    ATTN_TRY(layout_init(&lr, m->kind, n, m->R, err));
    if (rank < 0 || rank >= m->P || m->U * m->R != m->P)
        return attn_fail(err, ATTN_EUSAGE, "usp rows: rank %d of %d = %d × %d", rank, m->P, m->U, m->R);
    int G, u;
    plan_usp_coords(m, rank, &G, &u);
    out->n_local = layout_local_count(&lp, rank), out->n_group = layout_local_count(&lr, G);
    /* Send side: my rows group by group, ascending within each (the order the CPU usp sends). */
    int64_t k = 0;
    memset(out->send_start, 0, sizeof out->send_start);
    for (int g = 0; g < m->R; g++) {
        out->send_start[g] = k;
        k += usp_group_rows(&lp, &lr, rank, g, out->send_li ? out->send_li + k : NULL, NULL);
    }
    out->send_start[m->R] = k;
    /* Receive side: peer r's rows in my group shard, in r's local order. */
    k = 0;
    for (int r = 0; r < m->P; r++) {
        out->recv_start[r] = k;
        k += usp_group_rows(&lp, &lr, r, G, NULL, out->recv_gi ? out->recv_gi + k : NULL);
    }
    out->recv_start[m->P] = k;
    if (k != out->n_group)
        return attn_fail(err, ATTN_ERUNTIME, "usp rows: group %d has %lld rows but its peers hold %lld", G,
                         (long long)out->n_group, (long long)k);
    return ATTN_OK;
}

/* off[r] = Σ_{r' < r} bytes[r']; returns the total. */
static size_t offsets(int P, const size_t *bytes, size_t *off) {
    size_t at = 0;
    for (int r = 0; r < P; r++)
        off[r] = at, at += bytes[r];
    return at;
}

void usp_cuda_a2a(const plan_usp_t *u, usp_cuda_a2a_t *a) {
    int P = u->mesh.P;
    memset(a, 0, sizeof *a);
    for (int r = 0; r < P; r++) { /* bf16 Q, K, V (2 bytes), float32 O and LSE (4 bytes) */
        a->sb_in[r] = 2 * (size_t)(u->send_q[r] + u->send_kv[r]);
        a->send_k_at[r] = 2 * (size_t)u->send_q[r], a->send_v_at[r] = a->send_k_at[r] + (size_t)u->send_kv[r];
        a->rb_in[r] = 2 * (size_t)(u->recv_q[r] + u->recv_kv[r]);
        a->recv_k_at[r] = 2 * (size_t)u->recv_q[r], a->recv_v_at[r] = a->recv_k_at[r] + (size_t)u->recv_kv[r];
        a->sb_out[r] = 4 * (size_t)u->send_out[r], a->rb_out[r] = 4 * (size_t)u->recv_out[r];
    }
    a->in_send = offsets(P, a->sb_in, a->so_in), a->in_recv = offsets(P, a->rb_in, a->ro_in);
    a->out_send = offsets(P, a->sb_out, a->so_out), a->out_recv = offsets(P, a->rb_out, a->ro_out);
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

int usp_cuda_sizes(const attn_problem_t *p, const plan_usp_mesh_t *m, int rank, usp_cuda_sizes_t *s,
                   attn_err_t *err) {
    attn_layout_t lq, lk, rk;
    ATTN_TRY(layout_init(&lq, m->kind, p->n_q, m->P, err));
    ATTN_TRY(layout_init(&lk, m->kind, p->n_k, m->P, err));
    ATTN_TRY(layout_init(&rk, m->kind, p->n_k, m->R, err));
    plan_usp_t *u = malloc(sizeof *u);
    if (!u)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory for the usp plan");
    int rc = plan_usp(m, p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, rank, u, err);
    usp_cuda_a2a_t *a = rc == ATTN_OK ? malloc(sizeof *a) : NULL;
    if (rc == ATTN_OK && !a)
        rc = attn_fail(err, ATTN_ERUNTIME, "out of memory for the usp exchange sizes");
    if (rc != ATTN_OK) {
        free(u);
        return rc;
    }
    usp_cuda_a2a(u, a);
    size_t B = (size_t)p->batch, d = (size_t)p->head_dim, H = (size_t)p->heads, Hkv = (size_t)p->kv_heads;
    size_t nq = (size_t)layout_local_count(&lq, rank), nk = (size_t)layout_local_count(&lk, rank);
    size_t hq = (size_t)u->heads.hq, kvn = (size_t)u->heads.kvn, gq = (size_t)u->ring_q;
    size_t gk = (size_t)u->ring_k, gk_max = (size_t)layout_max_local_count(&rk), pad = 16;
    memset(s, 0, sizeof *s);
    s->q = B * H * nq * d * 2 + pad, s->k = s->v = B * Hkv * nk * d * 2 + pad;
    s->o = B * H * nq * d * 4 + pad, s->lse = B * H * nq * 4 + pad;
    s->stage = max_size(max_size(a->in_send, a->in_recv), max_size(a->out_send, a->out_recv));
    s->stage = max_size(s->stage, 4 * B * d * max_size(H * nq, Hkv * nk)) + pad; /* float32 uploads */
    s->gq = B * hq * gq * d * 2 + pad, s->kv = 2 * B * kvn * gk_max * d * 2 + pad;
    s->go = s->go_part = B * hq * gq * d * 4 + pad, s->gl = s->gl_part = B * hq * gq * 4 + pad;
    s->maps = (nq + gq + nk + gk) * sizeof(int64_t) + pad;
    s->total = s->q + s->k + s->v + s->o + s->lse + 2 * s->stage + s->gq + 2 * s->kv + s->go + s->gl + s->go_part +
               s->gl_part + s->maps;
    free(a);
    free(u);
    return ATTN_OK;
}

void usp_cuda_expect(const plan_usp_mesh_t *m, const attn_problem_t *p, attn_dist_expect_t *out) {
    attn_err_t err = {0};
    attn_dist_expect_t ring;
    memset(out, 0, sizeof *out);
    plan_usp_t *u = malloc(sizeof *u);
    usp_cuda_a2a_t *a = malloc(sizeof *a);
    const attn_vis_t v = problem_vis(p);
    plan_ring_expect(m->kind, p->n_q, p->n_k, &v, m->R, 1.0, &ring, NULL);
    out->imbalance = ring.imbalance, out->critical_path = ring.critical_path;
    for (int r = 0; u && a && r < m->P; r++) {
        if (plan_usp(m, p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, r, u, &err) != ATTN_OK)
            break;
        usp_cuda_a2a(u, a);
        double sent = 0, recvd = 0;
        for (int q = 0; q < m->P; q++)
            if (q != r) /* the self part is a local copy */
                sent += (double)(a->sb_in[q] + a->sb_out[q]), recvd += (double)(a->rb_in[q] + a->rb_out[q]);
        double row = 2.0 * 2.0 * (double)(p->batch * u->heads.kvn * p->head_dim); /* K and V, bf16 */
        out->bytes_sent[r] = sent + row * ring.bytes_sent[u->group];
        out->bytes_recv[r] = recvd + row * ring.bytes_recv[u->group];
    }
    free(a);
    free(u);
}
