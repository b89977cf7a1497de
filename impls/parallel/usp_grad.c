/* usp_grad.c — the usp backward: [Q | O | dO | LSE] and K/V to each rank's group shard for its
 * heads (the forward's all-to-alls, Q's widened), the ring backward across the R groups
 * (ring_grad_loop, one ring per member), then dQ back as O goes, and dK/dV by the K/V exchange
 * reversed, summed where members share a kv head. Design: docs/backward.md. */
#include <stdlib.h>
#include <string.h>

#include "core/timing.h"
#include "impls/cpu/tile_grad.h"
#include "impls/parallel/dist.h"
#include "impls/parallel/plan.h"
#include "impls/parallel/ring.h"
#include "impls/parallel/usp_util.h"

enum { TAG_GIN = (1 << 22) + 16, TAG_GKV, TAG_GDQ, TAG_GDKV };

/* One exchange: per-peer bytes and byte offsets, totals in floats. */
typedef struct {
    size_t sb[ATTN_MAX_RANKS], so[ATTN_MAX_RANKS], rb[ATTN_MAX_RANKS], ro[ATTN_MAX_RANKS];
    size_t send_total, recv_total;
} xch_t;

static void xch_set(xch_t *x, int P, const int64_t *send, const int64_t *recv) {
    memset(x, 0, sizeof *x);
    for (int r = 0; r < P; r++) {
        x->so[r] = x->send_total * sizeof(float), x->ro[r] = x->recv_total * sizeof(float);
        x->sb[r] = (size_t)send[r] * sizeof(float), x->rb[r] = (size_t)recv[r] * sizeof(float);
        x->send_total += (size_t)send[r], x->recv_total += (size_t)recv[r];
    }
}

/* The four exchanges of rank me (file comment), from the forward's plan. */
static void grad_xch(const plan_usp_t *pl, const attn_problem_t *p, xch_t x[4]) {
    const plan_usp_mesh_t *m = &pl->mesh;
    int P = m->P, me = pl->rank;
    int64_t B = p->batch, d = p->head_dim, hq = pl->ghq, W = 3 * d + 1;
    int64_t s[4][ATTN_MAX_RANKS] = {{0}}, r_[4][ATTN_MAX_RANKS] = {{0}};
    for (int r = 0; r < P; r++) {
        int g, u;
        plan_usp_coords(m, r, &g, &u);
        int64_t to = plan_usp_rows(m, p->n_q, me, g), from = plan_usp_rows(m, p->n_q, r, pl->group);
        s[0][r] = B * hq * to * W, r_[0][r] = B * hq * from * W;
        s[1][r] = pl->send_kv[r], r_[1][r] = pl->recv_kv[r];
        s[2][r] = B * hq * from * d, r_[2][r] = B * hq * to * d;
        s[3][r] = pl->recv_kv[r], r_[3][r] = pl->send_kv[r];
    }
    for (int i = 0; i < 4; i++)
        xch_set(&x[i], P, s[i], r_[i]);
}

/* acc rows idx of heads [h0, h0 + nh) (B, heads, count, d) += packed (B, nh, rows, d). */
static void add_rows(int64_t B, int64_t heads, int64_t h0, int64_t nh, int64_t count, int64_t d, const int64_t *idx,
                     int64_t rows, float *acc, const float *packed) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < nh; h++)
            for (int64_t i = 0; i < rows; i++) {
                float *a = acc + ((b * heads + h0 + h) * count + idx[i]) * d;
                const float *x = packed + ((b * nh + h) * rows + i) * d;
                for (int64_t c = 0; c < d; c++)
                    a[c] += x[c];
            }
}

int usp_backward_rank(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_comm_t *c,
                      const attn_grad_io_t *g, attn_err_t *err) {
    (void)self;
    int P = c->size, me = c->rank;
    plan_usp_mesh_t mesh;
    attn_layout_t lq, lk, rq, rk;
    ATTN_TRY(usp_layouts(p, x, P, &mesh, &lq, &lk, &rq, &rk, err));
    plan_usp_t *pl = malloc(sizeof *pl);
    xch_t *xs = malloc(4 * sizeof *xs);
    int64_t rows_cap = ATTN_MAX(layout_max_local_count(&lq), layout_max_local_count(&lk));
    int64_t *li = malloc((size_t)rows_cap * sizeof(int64_t) + 1), *gi = malloc((size_t)rows_cap * sizeof(int64_t) + 1);
    int rc = pl && xs && li && gi ? ATTN_OK : attn_fail(err, ATTN_ERUNTIME, "rank %d: out of memory for the usp plan", me);
    if (rc == ATTN_OK)
        rc = plan_usp(&mesh, p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, me, pl, err);
    if (rc != ATTN_OK) {
        free(pl), free(xs), free(li), free(gi);
        return rc;
    }
    grad_xch(pl, p, xs);
    int64_t B = p->batch, H = p->heads, Hkv = p->kv_heads, d = p->head_dim, U = mesh.U, rh = H / U;
    int64_t nq = layout_local_count(&lq, me), nk = layout_local_count(&lk, me), G = pl->group;
    int64_t hq = pl->heads.hq, kvn = pl->heads.kvn, gq = pl->ring_q, gk_max = layout_max_local_count(&rk);
    size_t stage_s = 0, stage_r = 0;
    for (int i = 0; i < 4; i++) {
        stage_s = xs[i].send_total > stage_s ? xs[i].send_total : stage_s;
        stage_r = xs[i].recv_total > stage_r ? xs[i].recv_total : stage_r;
    }
    size_t qs = (size_t)(B * H * nq * d), ks = (size_t)(B * Hkv * nk * d), qg = (size_t)(B * hq * gq * d);
    size_t blk = (size_t)(2 * B * kvn * gk_max * d);
    size_t sizes[17] = {qs, qs, qs, (size_t)(B * H * nq), ks, ks, qs, ks, ks,            /* shards */
                        qg, qg, qg, (size_t)(B * hq * gq), (size_t)(B * hq * gq), qg, blk, blk}; /* group */
    float *buf[17];
    size_t total = stage_s + stage_r;
    for (int i = 0; i < 17; i++)
        total += sizes[i];
    float *mem = attn_alloc(total * sizeof(float) + 1, err, "usp backward buffers");
    if (!mem) {
        free(pl), free(xs), free(li), free(gi);
        return ATTN_ERUNTIME;
    }
    float *send = mem, *recv = mem + stage_s, *at = recv + stage_r;
    for (int i = 0; i < 17; i++)
        buf[i] = at, at += sizes[i];
    float *q = buf[0], *o = buf[1], *dO = buf[2], *lse = buf[3], *k = buf[4], *v = buf[5], *dq = buf[6];
    float *dk = buf[7], *dv = buf[8], *qgr = buf[9], *ogr = buf[10], *dogr = buf[11], *lgr = buf[12], *Dg = buf[13];
    float *dqg = buf[14], *kvg = buf[15], *home = buf[16];
    attn_io_t io = {.q = g->q, .k = g->k, .v = g->v};
    rc = dist_load_qkv(c, &io, &lq, &lk, B * H, B * Hkv, d, q, k, v, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, B * H, d, g->o, o, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, B * H, d, g->d_o, dO, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, B * H, 1, g->lse, lse, err);
    if (rc == ATTN_OK)
        rc = comm_ready(c, err);
    comm_stats_reset(c);
    double t_start = time_now_s();
    /* 1. [Q | O | dO | LSE]: my rows of r's group shard, r's heads → r. */
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int gr, ur;
        plan_usp_coords(&mesh, r, &gr, &ur);
        int64_t rows = usp_group_rows(&lq, &rq, me, gr, li, gi), part = B * rh * rows * d;
        float *dst = send + xs[0].so[r] / sizeof(float);
        usp_move_rows(B, H, ur * rh, rh, nq, d, li, rows, q, dst, 1);
        usp_move_rows(B, H, ur * rh, rh, nq, d, li, rows, o, dst + part, 1);
        usp_move_rows(B, H, ur * rh, rh, nq, d, li, rows, dO, dst + 2 * part, 1);
        usp_move_rows(B, H, ur * rh, rh, nq, 1, li, rows, lse, dst + 3 * part, 1);
    }
    if (rc == ATTN_OK)
        rc = comm_alltoallv(c, send, xs[0].sb, xs[0].so, recv, xs[0].rb, xs[0].ro, TAG_GIN, err);
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int64_t rows = usp_group_rows(&lq, &rq, r, (int)G, li, gi), part = B * hq * rows * d;
        float *src = recv + xs[0].ro[r] / sizeof(float);
        usp_move_rows(B, hq, 0, hq, gq, d, gi, rows, qgr, src, 0);
        usp_move_rows(B, hq, 0, hq, gq, d, gi, rows, ogr, src + part, 0);
        usp_move_rows(B, hq, 0, hq, gq, d, gi, rows, dogr, src + 2 * part, 0);
        usp_move_rows(B, hq, 0, hq, gq, 1, gi, rows, lgr, src + 3 * part, 0);
    }
    /* 2. K and V as in the forward: my group's own ring block. */
    int64_t gk = pl->ring_k;
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int gr, ur;
        plan_usp_coords(&mesh, r, &gr, &ur);
        plan_heads_t hr = plan_ulysses_heads(H, Hkv, (int)U, ur);
        int64_t rows = usp_group_rows(&lk, &rk, me, gr, li, gi);
        float *dst = send + xs[1].so[r] / sizeof(float);
        usp_move_rows(B, Hkv, hr.kv0, hr.kvn, nk, d, li, rows, k, dst, 1);
        usp_move_rows(B, Hkv, hr.kv0, hr.kvn, nk, d, li, rows, v, dst + B * hr.kvn * rows * d, 1);
    }
    if (rc == ATTN_OK)
        rc = comm_alltoallv(c, send, xs[1].sb, xs[1].so, recv, xs[1].rb, xs[1].ro, TAG_GKV, err);
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int64_t rows = usp_group_rows(&lk, &rk, r, (int)G, li, gi);
        float *src = recv + xs[1].ro[r] / sizeof(float);
        usp_move_rows(B, kvn, 0, kvn, gk, d, gi, rows, kvg, src, 0);
        usp_move_rows(B, kvn, 0, kvn, gk, d, gi, rows, kvg + B * kvn * gk * d, src + B * kvn * rows * d, 0);
    }
    /* 3. The ring backward across the groups. */
    double step_compute[ATTN_MAX_RANKS] = {0}, t0 = time_thread_cpu_s();
    tile_grad_delta(ogr, dogr, B * hq * gq, d, Dg);
    memset(dqg, 0, qg * sizeof(float));
    double delta_s = time_thread_cpu_s() - t0;
    attn_problem_t lp = plan_heads_problem(p, &pl->heads);
    dist_rank_stats_t mine = {0};
    ring_grad_loop_t L = {.p = &lp, .kind = mesh.kind, .R = mesh.R, .pos = (int)G, .send_to = pl->send_to,
                          .recv_from = pl->recv_from, .expand = pl->heads.lines_up ? NULL : &pl->heads,
                          .group = H / Hkv, .q = qgr, .d_o = dogr, .lse = lgr, .D = Dg, .dq = dqg, .kv = kvg,
                          .dkv_home = home, .x = x};
    if (rc == ATTN_OK)
        rc = ring_grad_loop(c, &L, &mine, step_compute, err);
    step_compute[0] += delta_s, mine.compute_s += delta_s;
    /* 4. dQ: my heads of r's rows in my group shard → r. */
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int64_t rows = usp_group_rows(&lq, &rq, r, (int)G, li, gi);
        usp_move_rows(B, hq, 0, hq, gq, d, gi, rows, dqg, send + xs[2].so[r] / sizeof(float), 1);
    }
    if (rc == ATTN_OK)
        rc = comm_alltoallv(c, send, xs[2].sb, xs[2].so, recv, xs[2].rb, xs[2].ro, TAG_GDQ, err);
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int gr, ur;
        plan_usp_coords(&mesh, r, &gr, &ur);
        int64_t rows = usp_group_rows(&lq, &rq, me, gr, li, gi);
        usp_move_rows(B, H, ur * rh, rh, nq, d, li, rows, dq, recv + xs[2].ro[r] / sizeof(float), 0);
    }
    /* 5. dK, dV: my kv heads of r's rows in my group shard → r, summed over the members sending
     * the same head. */
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int64_t rows = usp_group_rows(&lk, &rk, r, (int)G, li, gi);
        float *dst = send + xs[3].so[r] / sizeof(float);
        usp_move_rows(B, kvn, 0, kvn, gk, d, gi, rows, home, dst, 1);
        usp_move_rows(B, kvn, 0, kvn, gk, d, gi, rows, home + B * kvn * gk * d, dst + B * kvn * rows * d, 1);
    }
    if (rc == ATTN_OK)
        rc = comm_alltoallv(c, send, xs[3].sb, xs[3].so, recv, xs[3].rb, xs[3].ro, TAG_GDKV, err);
    memset(dk, 0, ks * sizeof(float));
    memset(dv, 0, ks * sizeof(float));
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int gr, ur;
        plan_usp_coords(&mesh, r, &gr, &ur);
        plan_heads_t hr = plan_ulysses_heads(H, Hkv, (int)U, ur);
        int64_t rows = usp_group_rows(&lk, &rk, me, gr, li, gi);
        const float *src = recv + xs[3].ro[r] / sizeof(float);
        add_rows(B, Hkv, hr.kv0, hr.kvn, nk, d, li, rows, dk, src);
        add_rows(B, Hkv, hr.kv0, hr.kvn, nk, d, li, rows, dv, src + B * hr.kvn * rows * d);
    }
    mine.wall_s = time_now_s() - t_start;
    if (rc == ATTN_OK)
        rc = dist_report(c, &mine, g->dist, err);
    if (rc == ATTN_OK)
        rc = dist_gather(c, &lq, B * H, d, dq, g->dq, err);
    if (rc == ATTN_OK)
        rc = dist_gather(c, &lk, B * Hkv, d, dk, g->dk, err);
    if (rc == ATTN_OK)
        rc = dist_gather(c, &lk, B * Hkv, d, dv, g->dv, err);
    attn_free(mem);
    free(pl), free(xs), free(li), free(gi);
    return rc;
}

/* The forward's balance; bytes: the four exchanges' peer parts, the ring's K/V rows as in the
 * forward and its dK/dV hops (n_k group rows of 2·B·kvn·d floats each way when R > 1). */
void usp_backward_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                         attn_dist_expect_t *out) {
    (void)self;
    memset(out, 0, sizeof *out);
    plan_usp_mesh_t m;
    attn_err_t e = {0};
    if (usp_mesh_of(p, x, exec_ranks(x), &m, &e) != ATTN_OK)
        return;
    attn_dist_expect_t ring;
    const attn_vis_t vis = problem_vis(p);
    plan_ring_expect(m.kind, p->n_q, p->n_k, &vis, m.R, 1.0, &ring, NULL);
    out->imbalance = ring.imbalance, out->critical_path = ring.critical_path;
    plan_usp_t *pl = malloc(sizeof *pl);
    xch_t *xs = malloc(4 * sizeof *xs);
    for (int r = 0; pl && xs && r < m.P; r++) {
        if (plan_usp(&m, p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, r, pl, &e) != ATTN_OK)
            break;
        grad_xch(pl, p, xs);
        for (int i = 0; i < 4; i++)
            for (int q = 0; q < m.P; q++)
                if (q != r)
                    out->bytes_sent[r] += (double)xs[i].sb[q], out->bytes_recv[r] += (double)xs[i].rb[q];
        double row = 2.0 * (double)(p->batch * pl->heads.kvn * p->head_dim) * sizeof(float);
        out->bytes_sent[r] += row * (ring.bytes_sent[pl->group] + (m.R > 1 ? (double)p->n_k : 0));
        out->bytes_recv[r] += row * (ring.bytes_recv[pl->group] + (m.R > 1 ? (double)p->n_k : 0));
    }
    free(pl), free(xs);
}

/* Per rank: shards and gradients, staging (bounded by twice the shards and group buffers), the
 * group's buffers, and the ring backward's own. */
size_t usp_backward_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    /* Q, O, dO, dQ rows (4d); LSE in the shards, LSE and D in the group; K, V, dK, dV. */
    const usp_held_t held = {.q_vecs = 4, .shard_scalars = 1, .group_scalars = 2, .kv_tensors = 4,
                             .loop = ring_grad_loop_workspace};
    return usp_workspace_of(p, x, &held);
}
