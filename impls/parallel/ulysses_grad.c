/* ulysses_grad.c — the Ulysses backward: Q, O, dO and LSE (one message per peer) and K, V go to
 * head shards by all-to-all as in the forward, the local backend's backward runs on the full
 * sequence of the rank's heads, and the gradients come back to sequence shards: dQ as O does,
 * dK/dV by the K/V exchange reversed, summed where several ranks' query heads read one kv head
 * (GQA with H_kv < P). Design: docs/backward.md. */
#include <stdlib.h>
#include <string.h>

#include "core/timing.h"
#include "impls/parallel/dist.h"
#include "impls/parallel/plan.h"
#include "impls/parallel/ulysses_util.h"

enum { TAG_GIN = (1 << 22) + 8, TAG_GKV, TAG_GDQ, TAG_GDKV };

/* Per-peer counts (floats) with offsets: runs back to back in rank order. */
static void a2a_counts(a2a_plan_t *a, int P, const int64_t *send, const int64_t *recv) {
    int64_t so[ATTN_MAX_RANKS] = {0}, ro[ATTN_MAX_RANKS] = {0}, at_s = 0, at_r = 0;
    for (int r = 0; r < P; r++) {
        so[r] = at_s, ro[r] = at_r;
        at_s += send[r], at_r += recv[r];
    }
    a2a_from_plan(a, P, send, so, recv, ro);
}

/* The exchanges of one rank, in floats (see the file comment). */
typedef struct {
    a2a_plan_t in, kv, dq, dkv;
    size_t stage_send, stage_recv;
} grad_plan_t;

static void grad_plan(const plan_ulysses_t *pl, int64_t B, int64_t d, grad_plan_t *g) {
    int P = pl->P, me = pl->rank;
    int64_t Hl = pl->heads[me].hq, W = 3 * d + 1;
    int64_t in_s[ATTN_MAX_RANKS] = {0}, in_r[ATTN_MAX_RANKS] = {0}, dq_s[ATTN_MAX_RANKS] = {0}, dq_r[ATTN_MAX_RANKS] = {0};
    for (int r = 0; r < P; r++) {
        in_s[r] = B * Hl * pl->m[me] * W, in_r[r] = B * Hl * pl->m[r] * W;
        dq_s[r] = B * Hl * pl->m[r] * d, dq_r[r] = B * Hl * pl->m[me] * d;
    }
    memset(g, 0, sizeof *g);
    a2a_counts(&g->in, P, in_s, in_r);
    a2a_from_plan(&g->kv, P, pl->send_kv, pl->send_kv_off, pl->recv_kv, pl->recv_kv_off);
    a2a_counts(&g->dq, P, dq_s, dq_r);
    a2a_from_plan(&g->dkv, P, pl->recv_kv, pl->recv_kv_off, pl->send_kv, pl->send_kv_off); /* reversed */
    const a2a_plan_t *all[4] = {&g->in, &g->kv, &g->dq, &g->dkv};
    for (int i = 0; i < 4; i++) {
        g->stage_send = all[i]->send_total > g->stage_send ? all[i]->send_total : g->stage_send;
        g->stage_recv = all[i]->recv_total > g->stage_recv ? all[i]->recv_total : g->stage_recv;
    }
}

/* acc (B, heads, count, d) heads [h0, h0 + nh) += packed (B, nh, count, d). */
static void add_heads(int64_t B, int64_t heads, int64_t h0, int64_t nh, int64_t count, int64_t d, float *acc,
                      const float *pack) {
    size_t n = (size_t)(count * d);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < nh; h++) {
            float *a = acc + (b * heads + h0 + h) * count * d;
            const float *x = pack + (b * nh + h) * count * d;
            for (size_t i = 0; i < n; i++)
                a[i] += x[i];
        }
}

enum { NB = 22 };
typedef struct {
    float *q, *o, *dO, *lse, *k, *v, *dq, *dk, *dv;    /* sequence shards */
    float *qf, *of, *dof, *lf, *kf, *vf, *dqf, *dkf, *dvf; /* the rank's heads, full sequence */
    float *kx, *vx, *dkx, *dvx;                         /* expanded kv heads (when they do not line up) */
} gbufs_t;

int ulysses_backward_rank(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_comm_t *c,
                          const attn_grad_io_t *g, attn_err_t *err) {
    (void)self;
    int P = c->size, me = c->rank;
    const attn_backend_t *lb = local_backend(x);
    if (!lb || !lb->backward)
        return attn_fail(err, ATTN_EUSAGE, "ulysses: local backend %s has no backward pass", lb ? lb->name : "?");
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, layout_of(x), p->n_q, P, err));
    ATTN_TRY(layout_init(&lk, layout_of(x), p->n_k, P, err));
    plan_ulysses_t *pl = malloc(sizeof *pl);
    grad_plan_t *gp = malloc(sizeof *gp);
    if (!pl || !gp) {
        free(pl), free(gp);
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: out of memory for the ulysses plan", me);
    }
    int rc = plan_ulysses(p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, layout_of(x), P, me, pl, err);
    if (rc != ATTN_OK) {
        free(pl), free(gp);
        return rc;
    }
    const plan_heads_t *hs = pl->heads;
    int64_t B = p->batch, H = p->heads, Hkv = p->kv_heads, d = p->head_dim, Hl = hs[me].hq, nkv = hs[me].kvn;
    int64_t nq = pl->m[me], nk = pl->k[me], NQ = p->n_q, NK = p->n_k;
    attn_problem_t lp = plan_heads_problem(p, &hs[me]);
    attn_exec_t lx = local_exec(x);
    int expand = lp.kv_heads != nkv;
    grad_plan(pl, B, d, gp);
    size_t qs = (size_t)(B * H * nq * d), ks = (size_t)(B * Hkv * nk * d), qf = (size_t)(B * Hl * NQ * d);
    size_t kf = (size_t)(B * nkv * NK * d), kx = expand ? (size_t)(B * Hl * NK * d) : 0;
    size_t sizes[NB] = {qs, qs, qs, (size_t)(B * H * nq), ks, ks, qs, ks, ks,
                        qf, qf, qf, (size_t)(B * Hl * NQ), kf, kf, qf, kf, kf, kx, kx, kx, kx};
    gbufs_t b;
    float **slot = (float **)&b;
    size_t total = gp->stage_send + gp->stage_recv;
    for (int i = 0; i < NB; i++)
        total += sizes[i];
    float *mem = attn_alloc(total * sizeof(float) + 1, err, "ulysses backward buffers");
    if (!mem) {
        free(pl), free(gp);
        return ATTN_ERUNTIME;
    }
    float *at = mem, *send = mem, *recv = mem + gp->stage_send;
    at += gp->stage_send + gp->stage_recv;
    for (int i = 0; i < NB; i++)
        slot[i] = at, at += sizes[i];
    attn_io_t io = {.q = g->q, .k = g->k, .v = g->v};
    rc = dist_load_qkv(c, &io, &lq, &lk, B * H, B * Hkv, d, b.q, b.k, b.v, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, B * H, d, g->o, b.o, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, B * H, d, g->d_o, b.dO, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, B * H, 1, g->lse, b.lse, err);
    if (rc == ATTN_OK)
        rc = comm_ready(c, err);
    comm_stats_reset(c);
    double t_start = time_now_s(), compute = 0;
    if (rc == ATTN_OK)
        rc = dist_fault_point_backward(c, x, 0, err);
    /* 1. [Q | O | dO | LSE] of my tokens for rank r's heads → r. */
    if (rc == ATTN_OK) {
        for (int r = 0; r < P; r++) {
            float *dst = send + gp->in.so[r] / sizeof(float);
            size_t part = (size_t)(B * Hl * nq * d);
            slice_heads(B, H, r * Hl, Hl, nq, d, b.q, dst, 1);
            slice_heads(B, H, r * Hl, Hl, nq, d, b.o, dst + part, 1);
            slice_heads(B, H, r * Hl, Hl, nq, d, b.dO, dst + 2 * part, 1);
            slice_heads(B, H, r * Hl, Hl, nq, 1, b.lse, dst + 3 * part, 1);
        }
        rc = comm_alltoallv(c, send, gp->in.sb, gp->in.so, recv, gp->in.rb, gp->in.ro, TAG_GIN, err);
        for (int r = 0; rc == ATTN_OK && r < P; r++) {
            float *src = recv + gp->in.ro[r] / sizeof(float);
            size_t part = (size_t)(B * Hl * pl->m[r] * d);
            dist_shard_copy(&lq, r, B * Hl, d, src, b.qf, 0);
            dist_shard_copy(&lq, r, B * Hl, d, src + part, b.of, 0);
            dist_shard_copy(&lq, r, B * Hl, d, src + 2 * part, b.dof, 0);
            dist_shard_copy(&lq, r, B * Hl, 1, src + 3 * part, b.lf, 0);
        }
    }
    /* 2. K and V as in the forward. */
    if (rc == ATTN_OK) {
        for (int r = 0; r < P; r++) {
            float *dst = send + gp->kv.so[r] / sizeof(float);
            size_t half = (size_t)(B * hs[r].kvn * nk * d);
            slice_heads(B, Hkv, hs[r].kv0, hs[r].kvn, nk, d, b.k, dst, 1);
            slice_heads(B, Hkv, hs[r].kv0, hs[r].kvn, nk, d, b.v, dst + half, 1);
        }
        rc = comm_alltoallv(c, send, gp->kv.sb, gp->kv.so, recv, gp->kv.rb, gp->kv.ro, TAG_GKV, err);
        for (int r = 0; rc == ATTN_OK && r < P; r++) {
            float *src = recv + gp->kv.ro[r] / sizeof(float);
            size_t half = (size_t)(B * nkv * layout_local_count(&lk, r) * d);
            dist_shard_copy(&lk, r, B * nkv, d, src, b.kf, 0);
            dist_shard_copy(&lk, r, B * nkv, d, src + half, b.vf, 0);
        }
    }
    /* 3. The local backward on my heads; expanded kv heads fold back into the ones received. */
    if (rc == ATTN_OK) {
        size_t plane = (size_t)(NK * d);
        if (expand)
            for (int64_t bb = 0; bb < B; bb++)
                for (int64_t h = 0; h < Hl; h++) {
                    int64_t kvh = plan_ulysses_kv_of(&hs[me], pl->group, h);
                    memcpy(b.kx + (bb * Hl + h) * plane, b.kf + (bb * nkv + kvh) * plane, plane * sizeof(float));
                    memcpy(b.vx + (bb * Hl + h) * plane, b.vf + (bb * nkv + kvh) * plane, plane * sizeof(float));
                }
        attn_grad_io_t lg = {.q = b.qf, .k = expand ? b.kx : b.kf, .v = expand ? b.vx : b.vf, .o = b.of, .lse = b.lf,
                             .d_o = b.dof, .dq = b.dqf, .dk = expand ? b.dkx : b.dkf, .dv = expand ? b.dvx : b.dvf};
        comm_compute_begin(c);
        double t0 = time_thread_cpu_s();
        rc = lb->backward(lb, &lp, &lx, &lg, err);
        if (rc == ATTN_OK && expand) {
            memset(b.dkf, 0, kf * sizeof(float));
            memset(b.dvf, 0, kf * sizeof(float));
            for (int64_t bb = 0; bb < B; bb++)
                for (int64_t h = 0; h < Hl; h++) {
                    int64_t kvh = plan_ulysses_kv_of(&hs[me], pl->group, h);
                    add_heads(B, 1, 0, 1, NK, d, b.dkf + (bb * nkv + kvh) * plane, b.dkx + (bb * Hl + h) * plane);
                    add_heads(B, 1, 0, 1, NK, d, b.dvf + (bb * nkv + kvh) * plane, b.dvx + (bb * Hl + h) * plane);
                }
        }
        compute = time_thread_cpu_s() - t0;
        comm_compute_end(c);
    }
    /* 4. dQ: my heads of rank r's tokens → r. */
    if (rc == ATTN_OK) {
        for (int r = 0; r < P; r++)
            dist_shard_copy(&lq, r, B * Hl, d, send + gp->dq.so[r] / sizeof(float), b.dqf, 1);
        rc = comm_alltoallv(c, send, gp->dq.sb, gp->dq.so, recv, gp->dq.rb, gp->dq.ro, TAG_GDQ, err);
        for (int r = 0; rc == ATTN_OK && r < P; r++)
            slice_heads(B, H, r * Hl, Hl, nq, d, b.dq, recv + gp->dq.ro[r] / sizeof(float), 0);
    }
    /* 5. dK, dV: my kv heads of rank r's tokens → r, which sums what every rank sends for a head. */
    if (rc == ATTN_OK) {
        for (int r = 0; r < P; r++) {
            float *dst = send + gp->dkv.so[r] / sizeof(float);
            size_t half = (size_t)(B * nkv * layout_local_count(&lk, r) * d);
            dist_shard_copy(&lk, r, B * nkv, d, dst, b.dkf, 1);
            dist_shard_copy(&lk, r, B * nkv, d, dst + half, b.dvf, 1);
        }
        rc = comm_alltoallv(c, send, gp->dkv.sb, gp->dkv.so, recv, gp->dkv.rb, gp->dkv.ro, TAG_GDKV, err);
        memset(b.dk, 0, ks * sizeof(float));
        memset(b.dv, 0, ks * sizeof(float));
        for (int r = 0; rc == ATTN_OK && r < P; r++) {
            const float *src = recv + gp->dkv.ro[r] / sizeof(float);
            size_t half = (size_t)(B * hs[r].kvn * nk * d);
            add_heads(B, Hkv, hs[r].kv0, hs[r].kvn, nk, d, b.dk, src);
            add_heads(B, Hkv, hs[r].kv0, hs[r].kvn, nk, d, b.dv, src + half);
        }
    }
    dist_rank_stats_t mine = {.compute_s = compute, .blocks_computed = 1, .wall_s = time_now_s() - t_start,
                              .step_compute = &compute, .n_steps = 1};
    if (rc == ATTN_OK)
        rc = dist_report(c, &mine, g->dist, err);
    if (rc == ATTN_OK)
        rc = dist_gather(c, &lq, B * H, d, b.dq, g->dq, err);
    if (rc == ATTN_OK)
        rc = dist_gather(c, &lk, B * Hkv, d, b.dk, g->dk, err);
    if (rc == ATTN_OK)
        rc = dist_gather(c, &lk, B * Hkv, d, b.dv, g->dv, err);
    attn_free(mem);
    free(pl), free(gp);
    return rc;
}

/* Balanced by construction (H/P heads each, one step); bytes: every exchange's peer parts. */
void ulysses_backward_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                             attn_dist_expect_t *out) {
    (void)self;
    int P = exec_ranks(x);
    memset(out, 0, sizeof *out);
    out->imbalance = out->critical_path = 1;
    attn_err_t err = {0};
    plan_ulysses_t *pl = malloc(sizeof *pl);
    grad_plan_t *gp = malloc(sizeof *gp);
    for (int me = 0; pl && gp && me < P; me++) {
        if (plan_ulysses(p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, layout_of(x), P, me, pl, &err))
            break;
        grad_plan(pl, p->batch, p->head_dim, gp);
        const a2a_plan_t *all[4] = {&gp->in, &gp->kv, &gp->dq, &gp->dkv};
        for (int i = 0; i < 4; i++)
            for (int r = 0; r < P; r++)
                if (r != me) {
                    out->bytes_sent[me] += (double)all[i]->sb[r];
                    out->bytes_recv[me] += (double)all[i]->rb[r];
                }
    }
    free(pl), free(gp);
}

/* Per rank (bounded above): its shards and gradients, its heads' full-sequence tensors and
 * gradients (+ expanded kv heads), staging, and the local backward's workspace. */
size_t ulysses_backward_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    int P = exec_ranks(x);
    if (p->heads % P)
        return 0;
    const attn_backend_t *lb = local_backend(x);
    attn_exec_t lx = local_exec(x);
    int64_t d = p->head_dim, B = p->batch, Hl = p->heads / P;
    int64_t nq = (p->n_q + P - 1) / P + 2, nk = (p->n_k + P - 1) / P + 2;
    size_t total = 0;
    for (int r = 0; r < P; r++) {
        plan_heads_t h = plan_ulysses_heads(p->heads, p->kv_heads, P, r);
        attn_problem_t lp = plan_heads_problem(p, &h);
        size_t shards = attn_size_add(attn_size_prod4(B, p->heads, nq, 4 * d + 1),
                                      attn_size_prod4(B, p->kv_heads, nk, 4 * d));
        size_t heads = attn_size_add(attn_size_prod4(B, Hl, p->n_q, 4 * d + 1),
                                     attn_size_mul(4, attn_size_prod4(B, h.kvn + lp.kv_heads, p->n_k, d)));
        size_t staging = attn_size_mul(2, attn_size_add(attn_size_prod4(B, p->heads, nq, 3 * d + 1),
                                                        attn_size_mul(2, attn_size_prod4(B, p->kv_heads, nk, d))));
        size_t mine = attn_size_mul(attn_size_add(attn_size_add(shards, heads), staging), sizeof(float));
        size_t lw = lb && lb->backward_workspace_bytes ? lb->backward_workspace_bytes(lb, &lp, &lx) : 0;
        total = attn_size_add(total, attn_size_add(mine, lw));
    }
    return total;
}
