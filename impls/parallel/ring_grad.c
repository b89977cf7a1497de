/* ring_grad.c — the ring family's backward (ring, striped, zigzag) on the forward's plan
 * (plan_ring_step): each rank keeps its Q, dO, LSE, D and dQ; K/V blocks rotate exactly as in the
 * forward, and each block's dK/dV accumulator travels one step behind it, so that after P steps
 * it has collected every rank's share and the last hop brings it home. The accumulator a rank
 * receives at step s is added after step s+1's compute (into a fresh buffer), so its transfer
 * overlaps that compute as the K/V transfer does. Design: docs/backward.md. */
#include <math.h>
#include <string.h>

#include "comm/comm.h"
#include "comm/layout.h"
#include "core/backend.h"
#include "core/timing.h"
#include "impls/cpu/tile_grad.h"
#include "impls/parallel/dist.h"
#include "impls/parallel/plan.h"
#include "impls/parallel/ring.h"

enum { TAG_GRAD = 4096 }; /* dK/dV hops: above the forward's step tags, below dist.c's */

static void add_into(float *acc, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        acc[i] += x[i];
}

/* The K/V block of the step as the compute reads it: the wire's block, or (expand) each query
 * head's own copy of the kv head it reads. */
static void expand_block(const ring_grad_loop_t *L, const float *kb, const float *vb, int64_t kcnt, float *xkv) {
    const attn_problem_t *p = L->p;
    int64_t BH = p->batch * p->heads, wire = L->expand->kvn;
    size_t plane = (size_t)(kcnt * p->head_dim);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t h = 0; h < p->heads; h++) {
            int64_t kvh = plan_ulysses_kv_of(L->expand, L->group, h);
            memcpy(xkv + (b * p->heads + h) * plane, kb + (b * wire + kvh) * plane, plane * sizeof(float));
            memcpy(xkv + (BH + b * p->heads + h) * plane, vb + (b * wire + kvh) * plane, plane * sizeof(float));
        }
}

/* acc (wire heads) += the expanded heads' dK | dV, each into the kv head it read. */
static void fold_block(const ring_grad_loop_t *L, const float *xg, int64_t kcnt, float *acc) {
    const attn_problem_t *p = L->p;
    int64_t BH = p->batch * p->heads, wire = L->expand->kvn;
    size_t plane = (size_t)(kcnt * p->head_dim);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t h = 0; h < p->heads; h++) {
            int64_t kvh = plan_ulysses_kv_of(L->expand, L->group, h);
            add_into(acc + (b * wire + kvh) * plane, xg + (b * p->heads + h) * plane, plane);
            add_into(acc + (p->batch * wire + b * wire + kvh) * plane, xg + (BH + b * p->heads + h) * plane, plane);
        }
}

int ring_grad_loop(attn_comm_t *c, const ring_grad_loop_t *L, dist_rank_stats_t *stats, double *step_compute,
                   attn_err_t *err) {
    const attn_problem_t *p = L->p;
    const attn_vis_t vis = problem_vis(p);
    int R = L->R, me = L->pos;
    int64_t d = p->head_dim, BH = p->batch * p->heads, wire = L->expand ? L->expand->kvn : p->kv_heads;
    int64_t BHkv = p->batch * wire;
    attn_layout_t lq, lk;
    ATTN_TRY(plan_layouts(L->kind, p->n_q, p->n_k, &vis, R, &lq, &lk, err));
    int64_t nq = layout_local_count(&lq, me), kmax = layout_max_local_count(&lk), kmine = layout_local_count(&lk, me);
    size_t blk = (size_t)(2 * BHkv * kmax * d), xblk = L->expand ? (size_t)(2 * BH * kmax * d) : 0;
    float *mem = attn_alloc((4 * blk + 2 * xblk) * sizeof(float) + 1, err, "ring backward blocks");
    if (!mem)
        return ATTN_ERUNTIME;
    float *kv[2] = {L->kv, mem}, *acc[2] = {mem + blk, mem + 2 * blk}, *in = mem + 3 * blk;
    float *xkv = mem + 4 * blk, *xg = xkv + xblk;
    double computed = 0, skipped = 0, t_start = time_now_s();
    size_t row_floats = (size_t)(2 * BHkv * d);
    comm_req_t grad_req[2] = {{0}}; /* the dK/dV hop posted at the previous step */
    int cur = 0, grad_pending = 0, rc = ATTN_OK;
    for (int s = 0; s < R && rc == ATTN_OK; s++) {
        if (L->x && (rc = dist_fault_point_backward(c, L->x, s, err)) != ATTN_OK)
            break;
        plan_ring_step_t st;
        rc = plan_ring_step(L->kind, p->n_q, p->n_k, &vis, R, me, s, &st, err);
        if (rc != ATTN_OK)
            break;
        int64_t kcnt = st.k_rows;
        comm_req_t step[2] = {{0}};
        if (s < R - 1) {
            comm_shift_part_t part = {.send = kv[cur], .send_bytes = row_floats * sizeof(float) * (size_t)st.rows_sent,
                                      .recv = kv[1 - cur], .recv_bytes = row_floats * sizeof(float) * (size_t)st.rows_recv,
                                      .peers = 1, .send_to = L->send_to, .recv_from = L->recv_from};
            rc = comm_shift(c, &part, s, step, err);
        }
        comm_compute_begin(c);
        double t0 = time_thread_cpu_s();
        float *a = acc[s % 2]; /* its last send (step s − 2) was waited for at step s − 1 */
        memset(a, 0, row_floats * (size_t)kcnt * sizeof(float));
        const float *kb = kv[cur], *vb = kv[cur] + BHkv * kcnt * d;
        float *dkb = a, *dvb = a + BHkv * kcnt * d;
        if (L->expand && rc == ATTN_OK) {
            expand_block(L, kb, vb, kcnt, xkv);
            kb = xkv, vb = xkv + BH * kcnt * d;
            memset(xg, 0, (size_t)(2 * BH * kcnt * d) * sizeof(float));
            dkb = xg, dvb = xg + BH * kcnt * d;
        }
        for (int pi = 0; pi < st.n_pairs && rc == ATTN_OK; pi++) {
            const plan_pair_t *pr = &st.pair[pi];
            if (pr->skip) {
                skipped++;
                continue;
            }
            computed++;
            const layout_piece_t *qp = &pr->q, *kp = &pr->k;
            tile_grad_io_t t = {L->q + qp->local_start * d,   kb + kp->local_start * d,     vb + kp->local_start * d,
                                L->d_o + qp->local_start * d, L->lse + qp->local_start,     L->D + qp->local_start,
                                L->dq + qp->local_start * d,  dkb + kp->local_start * d,    dvb + kp->local_start * d,
                                nq,                           kcnt};
            rc = tile_grad_f32(p, 1, qp->pos, qp->count, kp->pos, kp->count, &t, TILE_SCAN_ALL, NULL, err);
        }
        if (L->expand && rc == ATTN_OK)
            fold_block(L, xg, kcnt, a);
        step_compute[s] = time_thread_cpu_s() - t0;
        comm_compute_end(c);
        attn_err_t werr = {0};
        int w1 = comm_wait(c, &step[0], &werr), w2 = comm_wait(c, &step[1], &werr);
        int w3 = ATTN_OK, w4 = ATTN_OK;
        if (grad_pending) /* the previous hop: my send is done, and this block's partial sum is in */
            w3 = comm_wait(c, &grad_req[0], &werr), w4 = comm_wait(c, &grad_req[1], &werr);
        grad_pending = 0;
        if (rc == ATTN_OK && (w1 != ATTN_OK || w2 != ATTN_OK || w3 != ATTN_OK || w4 != ATTN_OK))
            rc = attn_fail(err, ATTN_ERUNTIME, "%s", werr.msg);
        if (rc != ATTN_OK)
            break;
        t0 = time_thread_cpu_s();
        if (s > 0)
            if (!(L->x && L->x->fault == ATTN_FAULT_DROP_STEP && L->x->fault_backward && s == L->x->fault_step))
                add_into(a, in, row_floats * (size_t)kcnt); /* else the injected bug: the partial sum is lost */
        step_compute[s] += time_thread_cpu_s() - t0;
        if (R > 1) { /* pass the block's sum on; the last hop (step R − 1) takes it home */
            int64_t next_rows = s < R - 1 ? layout_local_count(&lk, st.next_src) : kmine;
            comm_shift_part_t part = {.send = a, .send_bytes = row_floats * sizeof(float) * (size_t)kcnt,
                                      .recv = in, .recv_bytes = row_floats * sizeof(float) * (size_t)next_rows,
                                      .peers = 1, .send_to = L->send_to, .recv_from = L->recv_from};
            rc = comm_shift(c, &part, TAG_GRAD + s, grad_req, err);
            grad_pending = rc == ATTN_OK;
        }
        cur = 1 - cur;
    }
    if (grad_pending) {
        attn_err_t werr = {0};
        int w1 = comm_wait(c, &grad_req[0], &werr), w2 = comm_wait(c, &grad_req[1], &werr);
        if (rc == ATTN_OK && (w1 != ATTN_OK || w2 != ATTN_OK))
            rc = attn_fail(err, ATTN_ERUNTIME, "%s", werr.msg);
    }
    if (rc == ATTN_OK) /* this position's own block, every position's share summed */
        memcpy(L->dkv_home, R > 1 ? in : acc[0], row_floats * (size_t)kmine * sizeof(float));
    *stats = (dist_rank_stats_t){.blocks_computed = computed, .blocks_skipped = skipped,
                                 .wall_s = time_now_s() - t_start, .step_compute = step_compute, .n_steps = R};
    for (int s = 0; s < R; s++)
        stats->compute_s += step_compute[s];
    attn_free(mem);
    return rc;
}

size_t ring_grad_loop_workspace(const attn_problem_t *p, int64_t wire_kv_heads, int64_t nq, int64_t kmax) {
    size_t blk = attn_size_mul(2, attn_size_prod4(p->batch, wire_kv_heads, kmax, p->head_dim));
    size_t xblk = wire_kv_heads != p->kv_heads ? attn_size_mul(2, attn_size_prod4(p->batch, p->heads, kmax, p->head_dim))
                                               : 0;
    size_t floats = attn_size_add(attn_size_mul(4, blk), attn_size_mul(2, xblk));
    return attn_size_add(attn_size_mul(floats, sizeof(float)), tile_grad_workspace_bytes(p, 1, nq, kmax));
}

int ring_backward_rank(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_comm_t *c,
                       const attn_grad_io_t *g, attn_err_t *err) {
    int P = c->size, me = c->rank;
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    attn_layout_t lq, lk;
    attn_layout_kind_t kind = *(const attn_layout_kind_t *)self->ctx;
    const attn_vis_t vis = problem_vis(p);
    ATTN_TRY(plan_layouts(kind, p->n_q, p->n_k, &vis, P, &lq, &lk, err));
    int64_t nq = layout_local_count(&lq, me), kmax = layout_max_local_count(&lk), kmine = layout_local_count(&lk, me);
    size_t qsz = (size_t)(BH * nq * d), rows = (size_t)(BH * nq), blk = (size_t)(2 * BHkv * kmax * d);
    /* Q, O, dO, dQ shards, LSE and D, the own K/V block, the own block's dK/dV. */
    float *mem = attn_alloc((4 * qsz + 2 * rows + 2 * blk) * sizeof(float) + 1, err, "ring backward shards");
    if (!mem)
        return ATTN_ERUNTIME;
    float *q = mem, *o = q + qsz, *d_o = o + qsz, *dq = d_o + qsz, *lse = dq + qsz, *D = lse + rows;
    float *kv = D + rows, *home = kv + blk;
    attn_io_t io = {.q = g->q, .k = g->k, .v = g->v};
    int rc = dist_load_qkv(c, &io, &lq, &lk, BH, BHkv, d, q, kv, kv + BHkv * kmine * d, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, BH, d, g->o, o, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, BH, d, g->d_o, d_o, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, BH, 1, g->lse, lse, err);
    if (rc == ATTN_OK)
        rc = comm_ready(c, err); /* the measured region starts together on every rank */
    comm_stats_reset(c);
    double step_compute[ATTN_MAX_RANKS] = {0}, t0 = time_thread_cpu_s();
    tile_grad_delta(o, d_o, (int64_t)rows, d, D);
    memset(dq, 0, qsz * sizeof(float));
    double delta_s = time_thread_cpu_s() - t0;
    dist_rank_stats_t mine = {0};
    ring_grad_loop_t L = {.p = p, .kind = kind, .R = P, .pos = me, .send_to = (me + 1) % P,
                          .recv_from = (me - 1 + P) % P, .q = q, .d_o = d_o, .lse = lse, .D = D, .dq = dq, .kv = kv,
                          .dkv_home = home, .x = x};
    if (rc == ATTN_OK)
        rc = ring_grad_loop(c, &L, &mine, step_compute, err);
    step_compute[0] += delta_s, mine.compute_s += delta_s;
    if (rc == ATTN_OK)
        rc = dist_report(c, &mine, g->dist, err);
    if (rc == ATTN_OK)
        rc = dist_gather(c, &lq, BH, d, dq, g->dq, err);
    if (rc == ATTN_OK)
        rc = dist_gather(c, &lk, BHkv, d, home, g->dk, err);
    if (rc == ATTN_OK)
        rc = dist_gather(c, &lk, BHkv, d, home + BHkv * kmine * d, g->dv, err);
    attn_free(mem);
    return rc;
}

/* The forward's balance (the same pairs, each 2.5× the work) and its K/V bytes, plus the dK/dV
 * hops: at every step a rank sends the block it holds and receives the next one's (the last
 * hop: its own), so each rank sends and receives n_k rows of 2·B·H_kv·d floats in all. */
void ring_backward_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                          attn_dist_expect_t *out) {
    self->expect(self, p, x, out);
    int P = exec_ranks(x);
    double row = 2.0 * (double)(p->batch * p->kv_heads * p->head_dim) * sizeof(float);
    for (int r = 0; P > 1 && r < P; r++) {
        out->bytes_sent[r] += row * (double)p->n_k;
        out->bytes_recv[r] += row * (double)p->n_k;
    }
}

size_t ring_backward_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    int P = exec_ranks(x);
    int64_t nq, nk;
    if (!ring_max_shards(self, p, x, &nq, &nk))
        return 0;
    size_t q_side = attn_size_prod4(p->batch, p->heads, nq, 4 * p->head_dim + 2);
    size_t kv_side = attn_size_prod4(p->batch, p->kv_heads, nk, 4 * p->head_dim);
    size_t per_rank = attn_size_mul(attn_size_add(q_side, kv_side), sizeof(float));
    /* The shard staging buffers dist_scatter and dist_gather use under mpi are not counted: the
     * local transport (the memory task's scope) copies directly. */
    return attn_size_mul((size_t)P, attn_size_add(per_rank, ring_grad_loop_workspace(p, p->kv_heads, nq, nk)));
}
