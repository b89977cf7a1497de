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

enum { TAG_GRAD = 4096 }; /* dK/dV hops: above the forward's step tags, below dist.c's */

static void add_into(float *acc, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        acc[i] += x[i];
}

int ring_backward_rank(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_comm_t *c,
                       const attn_grad_io_t *g, attn_err_t *err) {
    (void)x;
    int P = c->size, me = c->rank;
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    attn_layout_t lq, lk;
    attn_layout_kind_t kind = *(const attn_layout_kind_t *)self->ctx;
    ATTN_TRY(layout_init(&lq, kind, p->n_q, P, err));
    ATTN_TRY(layout_init(&lk, kind, p->n_k, P, err));
    int64_t nq = layout_local_count(&lq, me), kmax = layout_max_local_count(&lk), kmine = layout_local_count(&lk, me);
    size_t qsz = (size_t)(BH * nq * d), rows = (size_t)(BH * nq), blk = (size_t)(2 * BHkv * kmax * d);
    /* One allocation: Q, O, dO, dQ shards, LSE and D, two K/V blocks, three dK/dV blocks. */
    size_t total = 4 * qsz + 2 * rows + 5 * blk;
    float *mem = attn_alloc(total * sizeof(float) + 1, err, "ring backward shards and blocks");
    if (!mem)
        return ATTN_ERUNTIME;
    float *q = mem, *o = q + qsz, *d_o = o + qsz, *dq = d_o + qsz, *lse = dq + qsz, *D = lse + rows;
    float *kv[2] = {D + rows, D + rows + blk}, *acc[2] = {kv[1] + blk, kv[1] + 2 * blk}, *in = kv[1] + 3 * blk;
    attn_io_t io = {.q = g->q, .k = g->k, .v = g->v};
    int rc = dist_load_qkv(c, &io, &lq, &lk, BH, BHkv, d, q, kv[0], kv[0] + BHkv * kmine * d, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, BH, d, g->o, o, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, BH, d, g->d_o, d_o, err);
    if (rc == ATTN_OK)
        rc = dist_scatter(c, &lq, BH, 1, g->lse, lse, err);
    if (rc == ATTN_OK)
        rc = comm_ready(c, err); /* the measured region starts together on every rank */
    comm_stats_reset(c);
    double step_compute[ATTN_MAX_RANKS] = {0}, computed = 0, skipped = 0, t_start = time_now_s();
    if (rc == ATTN_OK) {
        double t0 = time_thread_cpu_s();
        tile_grad_delta(o, d_o, (int64_t)rows, d, D);
        memset(dq, 0, qsz * sizeof(float));
        step_compute[0] = time_thread_cpu_s() - t0;
    }
    size_t row_floats = (size_t)(2 * BHkv * d);
    comm_req_t grad_req[2] = {{0}}; /* the dK/dV hop posted at the previous step */
    int cur = 0, grad_pending = 0;
    for (int s = 0; s < P && rc == ATTN_OK; s++) {
        plan_ring_step_t st;
        rc = plan_ring_step(kind, p->n_q, p->n_k, p->mask, p->window, P, me, s, &st, err);
        if (rc != ATTN_OK)
            break;
        int64_t kcnt = st.k_rows;
        comm_req_t step[2] = {{0}};
        if (s < P - 1) {
            comm_shift_part_t part = {.send = kv[cur], .send_bytes = row_floats * sizeof(float) * (size_t)st.rows_sent,
                                      .recv = kv[1 - cur], .recv_bytes = row_floats * sizeof(float) * (size_t)st.rows_recv,
                                      .peers = 1, .send_to = st.send_to, .recv_from = st.recv_from};
            rc = comm_shift(c, &part, s, step, err);
        }
        comm_compute_begin(c);
        double t0 = time_thread_cpu_s();
        float *a = acc[s % 2]; /* its last send (step s − 2) was waited for at step s − 1 */
        memset(a, 0, row_floats * (size_t)kcnt * sizeof(float));
        const float *kb = kv[cur], *vb = kv[cur] + BHkv * kcnt * d;
        float *dkb = a, *dvb = a + BHkv * kcnt * d;
        for (int pi = 0; pi < st.n_pairs && rc == ATTN_OK; pi++) {
            const plan_pair_t *pr = &st.pair[pi];
            if (pr->skip) {
                skipped++;
                continue;
            }
            computed++;
            const layout_piece_t *qp = &pr->q, *kp = &pr->k;
            tile_grad_io_t t = {q + qp->local_start * d,    kb + kp->local_start * d,   vb + kp->local_start * d,
                                d_o + qp->local_start * d,  lse + qp->local_start,      D + qp->local_start,
                                dq + qp->local_start * d,   dkb + kp->local_start * d,  dvb + kp->local_start * d,
                                nq,                         kcnt};
            rc = tile_grad_f32(p, 1, qp->pos, qp->count, kp->pos, kp->count, &t, TILE_SCAN_ALL, NULL, err);
        }
        step_compute[s] += time_thread_cpu_s() - t0;
        comm_compute_end(c);
        attn_err_t werr = {0};
        int w1 = comm_wait(c, &step[0], &werr), w2 = comm_wait(c, &step[1], &werr);
        int w3 = ATTN_OK, w4 = ATTN_OK;
        if (grad_pending) /* the previous hop: my send is done, and this block's partial sum is in */
            w3 = comm_wait(c, &grad_req[0], &werr), w4 = comm_wait(c, &grad_req[1], &werr);
        if (rc == ATTN_OK && (w1 != ATTN_OK || w2 != ATTN_OK || w3 != ATTN_OK || w4 != ATTN_OK))
            rc = attn_fail(err, ATTN_ERUNTIME, "%s", werr.msg);
        if (rc != ATTN_OK)
            break;
        t0 = time_thread_cpu_s();
        if (grad_pending)
            add_into(a, in, row_floats * (size_t)kcnt);
        step_compute[s] += time_thread_cpu_s() - t0;
        grad_pending = 0;
        if (P > 1) { /* pass the block's sum on; the last hop (step P − 1) takes it home */
            int64_t next_rows = s < P - 1 ? layout_local_count(&lk, st.next_src) : kmine;
            comm_shift_part_t part = {.send = a, .send_bytes = row_floats * sizeof(float) * (size_t)kcnt,
                                      .recv = in, .recv_bytes = row_floats * sizeof(float) * (size_t)next_rows,
                                      .peers = 1, .send_to = st.send_to, .recv_from = st.recv_from};
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
    const float *home = P > 1 ? in : acc[0]; /* this rank's own block, every rank's share summed */
    dist_rank_stats_t mine = {.blocks_computed = computed, .blocks_skipped = skipped, .wall_s = time_now_s() - t_start,
                              .step_compute = step_compute, .n_steps = P};
    for (int s = 0; s < P; s++)
        mine.compute_s += step_compute[s];
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
    attn_layout_t lq, lk;
    attn_err_t err = {0};
    int P = exec_ranks(x);
    if (layout_init(&lq, *(const attn_layout_kind_t *)self->ctx, p->n_q, P, &err) ||
        layout_init(&lk, *(const attn_layout_kind_t *)self->ctx, p->n_k, P, &err))
        return 0;
    int64_t nq = layout_max_local_count(&lq), nk = layout_max_local_count(&lk);
    size_t q_side = attn_size_prod4(p->batch, p->heads, nq, 4 * p->head_dim + 2);
    size_t kv_side = attn_size_prod4(p->batch, p->kv_heads, nk, 10 * p->head_dim);
    size_t per_rank = attn_size_mul(attn_size_add(q_side, kv_side), sizeof(float));
    /* + the shard staging buffers dist_scatter and dist_gather use under mpi are not counted:
     * the local transport (the memory task's scope) copies directly. */
    return attn_size_mul((size_t)P, attn_size_add(per_rank, tile_grad_workspace_bytes(p, 1, nq, nk)));
}
