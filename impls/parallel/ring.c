/* ring.c — ring attention, one loop for three token layouts (ring, striped, zigzag): each step
 * attends to the K/V block a rank holds while the next is in flight, skips masked block pairs
 * and merges partial results by log-sum-exp. Design: docs/ring.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "comm/comm.h"
#include "impls/parallel/dist.h"
#include "impls/parallel/plan.h"
#include "impls/parallel/ring.h"
#include "impls/cpu/tile_engine.h"
#include "comm/layout.h"
#include "core/timing.h"


/* x to the nearest bfloat16 (ties to even), kept in a float: a bf16 merge's rounding. */
static float round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) /* finite: round the low 16 bits away */
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* acc ← acc ⊕ part over rows [r0, r0+rows) of every (batch, head): the log-sum-exp merge; with a
 * bf16 merge the running O is rounded to bfloat16 after each merge (core/exec.h). */
void ring_merge_rows(const attn_problem_t *p, attn_merge_t merge, int64_t q_rows, int64_t r0, int64_t rows, float *o_acc,
                     float *l_acc, const float *o_part, const float *l_part) {
    int64_t d = p->head_dim;
    for (int64_t bh = 0; bh < p->batch * p->heads; bh++)
        for (int64_t r = r0; r < r0 + rows; r++) {
            int64_t at = bh * q_rows + r;
            double lp = l_part[at], la = l_acc[at];
            if (lp == -INFINITY)
                continue;
            float *oa = o_acc + at * d;
            const float *op = o_part + at * d;
            if (la == -INFINITY) {
                memcpy(oa, op, (size_t)d * sizeof(float));
                l_acc[at] = (float)lp;
            } else {
                double m = fmax(la, lp), wa = exp(la - m), wp = exp(lp - m), inv = 1.0 / (wa + wp);
                for (int64_t c = 0; c < d; c++)
                    oa[c] = (float)((wa * oa[c] + wp * op[c]) * inv);
                l_acc[at] = (float)(m + log(wa + wp));
            }
            for (int64_t c = 0; merge == ATTN_MERGE_BF16 && c < d; c++)
                oa[c] = round_bf16(oa[c]);
        }
}

static void progress_cb(void *c) { comm_progress(c); }

int ring_loop(attn_comm_t *c, const attn_exec_t *x, const ring_loop_t *L, dist_rank_stats_t *stats,
              double *step_compute, attn_err_t *err) {
    const attn_problem_t *pp = L->p;
    attn_problem_t p = *pp;
    const attn_vis_t vis = problem_vis(&p);
    int R = L->R, me = L->pos;
    int64_t d = p.head_dim, BH = p.batch * p.heads;
    int64_t wire_kv = L->expand ? L->expand->kvn : p.kv_heads, BHkv = p.batch * wire_kv;
    attn_layout_t lq, lk;
    ATTN_TRY(plan_layouts(L->kind, p.n_q, p.n_k, &vis, R, &lq, &lk, err));
    int64_t nq = layout_local_count(&lq, me), kmax = layout_max_local_count(&lk);
    size_t block_cap = (size_t)(2 * BHkv * kmax * d), x_cap = L->expand ? (size_t)(2 * BH * kmax * d) : 0;
    /* +1: a rank may hold no rows when n < R, and a zero-byte allocation is not an error. */
    float *o_part = attn_alloc((size_t)(BH * nq * d) * sizeof(float) + 1, err, "ring partial O");
    float *lse_part = attn_alloc((size_t)(BH * nq) * sizeof(float) + 1, err, "ring partial LSE");
    float *other = attn_alloc(block_cap * sizeof(float) + 1, err, "ring K/V block");
    float *xkv = L->expand ? attn_alloc(x_cap * sizeof(float) + 1, err, "ring expanded K/V") : NULL;
    float *kv[2] = {L->kv, other};
    int rc = o_part && lse_part && other && (!L->expand || xkv) ? ATTN_OK : ATTN_ERUNTIME;
    if (rc == ATTN_OK) {
        memset(L->o, 0, (size_t)(BH * nq * d) * sizeof(float));
        for (int64_t i = 0; i < BH * nq; i++)
            L->lse[i] = -INFINITY;
    }

    int local_pos = x->fault == ATTN_FAULT_LOCAL_POSITIONS; /* the injected bug: positions per rank */
    int cur = 0;
    double computed = 0, skipped = 0, t_start = time_now_s();
    if (c->ops->progress)
        tile_set_progress(progress_cb, c);
    for (int s = 0; s < R && rc == ATTN_OK; s++) {
        step_compute[s] = 0;
        rc = dist_fault_point(c, x, s, err);
        if (rc != ATTN_OK)
            break;
        plan_ring_step_t st;
        rc = plan_ring_step(L->kind, p.n_q, p.n_k, &vis, R, me, s, &st, err);
        if (rc != ATTN_OK)
            break;
        int64_t kcnt = st.k_rows;
        size_t row_bytes = (size_t)(2 * BHkv * d) * sizeof(float);
        comm_req_t step[2] = {{0}}; /* the send to pos + 1 and the receive from pos − 1, waited after the compute */
        if (s < R - 1) {
            comm_shift_part_t part = {.send = kv[cur], .send_bytes = row_bytes * (size_t)st.rows_sent,
                                      .recv = kv[1 - cur], .recv_bytes = row_bytes * (size_t)st.rows_recv,
                                      .peers = 1, .send_to = L->send_to, .recv_from = L->recv_from};
            rc = comm_shift(c, &part, s, step, err);
        }
        comm_compute_begin(c);
        double t0 = time_thread_cpu_s();
        const float *kblock = kv[cur], *vblock = kv[cur] + BHkv * kcnt * d;
        if (L->expand && rc == ATTN_OK) { /* each query head its own copy of the kv head it reads */
            size_t plane = (size_t)(kcnt * d);
            for (int64_t b = 0; b < p.batch; b++)
                for (int64_t h = 0; h < p.heads; h++) {
                    int64_t kvh = plan_ulysses_kv_of(L->expand, L->group, h);
                    memcpy(xkv + (b * p.heads + h) * plane, kblock + (b * wire_kv + kvh) * plane, plane * sizeof(float));
                    memcpy(xkv + (BH + b * p.heads + h) * plane, vblock + (b * wire_kv + kvh) * plane,
                           plane * sizeof(float));
                }
            kblock = xkv, vblock = xkv + BH * kcnt * d;
        }
        int n_pairs = st.n_pairs;
        if (x->fault == ATTN_FAULT_DROP_STEP && !x->fault_backward && s == x->fault_step)
            n_pairs = 0; /* the injected bug: this step's block is received and passed on, never used */
        for (int pi = 0; pi < n_pairs && rc == ATTN_OK; pi++) {
            plan_pair_t pr = st.pair[pi];
            if (local_pos) {
                layout_piece_t q = {{pr.q.local_start, 1}, pr.q.count, pr.q.local_start};
                layout_piece_t k = {{pr.k.local_start, 1}, pr.k.count, pr.k.local_start};
                plan_ring_pair(&vis, &q, &k, &pr);
            }
            if (pr.skip) {
                skipped++;
                continue;
            }
            computed++;
            const layout_piece_t *qp = &pr.q, *kp = &pr.k;
            tile_io_t io = {L->q + qp->local_start * d,      kblock + kp->local_start * d,
                            vblock + kp->local_start * d,   o_part + qp->local_start * d,
                            lse_part + qp->local_start,     nq,
                            kcnt};
            rc = tile_attend_f32(&p, 1, qp->pos, qp->count, kp->pos, kp->count, &io, TILE_SCAN_ALL, NULL, err);
            if (rc == ATTN_OK)
                ring_merge_rows(&p, x->merge, nq, qp->local_start, qp->count, L->o, L->lse, o_part, lse_part);
        }
        step_compute[s] = time_thread_cpu_s() - t0;
        comm_compute_end(c);
        attn_err_t werr = {0};
        int w1 = comm_wait(c, &step[0], &werr), w2 = comm_wait(c, &step[1], &werr); /* both, even after an error */
        if (rc == ATTN_OK && (w1 != ATTN_OK || w2 != ATTN_OK))
            rc = attn_fail(err, ATTN_ERUNTIME, "%s", werr.msg);
        cur = 1 - cur;
    }
    tile_set_progress(NULL, NULL);
    *stats = (dist_rank_stats_t){.blocks_computed = computed, .blocks_skipped = skipped,
                                 .wall_s = time_now_s() - t_start, .step_compute = step_compute, .n_steps = R};
    for (int s = 0; s < R; s++)
        stats->compute_s += step_compute[s];
    attn_free(o_part), attn_free(lse_part), attn_free(other), attn_free(xkv);
    return rc;
}

size_t ring_loop_workspace(const attn_problem_t *p, int64_t wire_kv_heads, int64_t nq, int64_t kmax) {
    size_t part = attn_size_prod4(p->batch, p->heads, nq, p->head_dim + 1);
    size_t block = attn_size_mul(2, attn_size_prod4(p->batch, wire_kv_heads, kmax, p->head_dim));
    size_t expand = wire_kv_heads != p->kv_heads ? attn_size_mul(2, attn_size_prod4(p->batch, p->heads, kmax, p->head_dim)) : 0;
    return attn_size_add(attn_size_mul(attn_size_add(attn_size_add(part, block), expand), sizeof(float)),
                         tile_workspace_bytes(p, 1, nq));
}

static int ring_rank(const attn_backend_t *self, const attn_problem_t *whole, const attn_exec_t *x, attn_comm_t *c, const attn_io_t *io,
                     attn_err_t *err) {
    const attn_problem_t *p = whole;
    int P = c->size, me = c->rank;
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    attn_layout_t lq, lk;
    attn_layout_kind_t kind = *(const attn_layout_kind_t *)self->ctx;
    const attn_vis_t vis = problem_vis(p);
    ATTN_TRY(plan_layouts(kind, p->n_q, p->n_k, &vis, P, &lq, &lk, err));
    int64_t nq = layout_local_count(&lq, me), kmax = layout_max_local_count(&lk);
    size_t block_cap = (size_t)(2 * BHkv * kmax * d);
    float *q = attn_alloc((size_t)(BH * nq * d) * sizeof(float) + 1, err, "ring Q shard");
    float *o = attn_alloc((size_t)(BH * nq * d) * sizeof(float) + 1, err, "ring O shard");
    float *lse = attn_alloc((size_t)(BH * nq) * sizeof(float) + 1, err, "ring LSE shard");
    float *kv = attn_alloc(block_cap * sizeof(float) + 1, err, "ring K/V block");
    int rc = q && o && lse && kv ? ATTN_OK : ATTN_ERUNTIME;
    /* The rank's own shards: Q, and K then V packed in one block so a ring step is one message. */
    int64_t kmine = layout_local_count(&lk, me);
    if (rc == ATTN_OK)
        rc = dist_load_qkv(c, io, &lq, &lk, BH, BHkv, d, q, kv, kv + BHkv * kmine * d, err);
    if (rc == ATTN_OK)
        rc = comm_ready(c, err); /* the measured region starts together on every rank */
    double step_compute[ATTN_MAX_RANKS] = {0};
    dist_rank_stats_t mine = {0};
    ring_loop_t L = {.p = p, .kind = kind, .R = P, .pos = me, .send_to = (me + 1) % P, .recv_from = (me - 1 + P) % P,
                     .q = q, .kv = kv, .o = o, .lse = lse};
    comm_stats_reset(c);
    if (rc == ATTN_OK)
        rc = ring_loop(c, x, &L, &mine, step_compute, err);
    if (rc == ATTN_OK)
        rc = dist_report(c, &mine, io->dist, err);
    if (rc == ATTN_OK) /* the merged rows are whole now: −∞ means only −∞ scores (core/problem.h) */
        problem_finish_rows(ATTN_F32, o, lse, (size_t)(BH * nq), d);
    if (rc == ATTN_OK)
        rc = dist_store_ol(c, io, &lq, BH, d, o, lse, err);
    attn_free(q), attn_free(o), attn_free(lse), attn_free(kv);
    return rc;
}

/* --layout only picks ulysses' shards: a ring-family backend's layout is its name. */
static int ring_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    attn_layout_kind_t kind = *(const attn_layout_kind_t *)self->ctx;
    if (x->layout >= 0 && x->layout != (int)kind) {
        snprintf(reason, len, "%s always uses the %s layout (--layout %s applies to ulysses)", self->name,
                 layout_name(kind), layout_name((attn_layout_kind_t)x->layout));
        return 0;
    }
    if (x->local_backend[0] && strcmp(x->local_backend, "blockwise")) {
        snprintf(reason, len, "%s computes each step with the blockwise tile engine (--local-backend applies to ulysses)",
                 self->name);
        return 0;
    }
    return dist_supports_common(self, p, x, reason, len);
}

/* The plan's figures, for K/V elements of elem_bytes bytes. */
void dist_ring_expect(attn_layout_kind_t kind, const attn_problem_t *p, int ranks, double elem_bytes,
                      attn_dist_expect_t *out) {
    int P = ranks > 1 ? ranks : 1;
    double row = 2.0 * (double)(p->batch * p->kv_heads * p->head_dim) * elem_bytes;
    const attn_vis_t v = problem_vis(p);
    plan_ring_expect(kind, p->n_q, p->n_k, &v, P, row, out, NULL);
}

static void ring_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_dist_expect_t *out) {
    attn_layout_kind_t kind = *(const attn_layout_kind_t *)self->ctx;
    dist_ring_expect(kind, p, exec_ranks(x), sizeof(float), out);
    const attn_vis_t v = problem_vis(p); /* in the CPU tile engine's tiles, as ring_loop calls it */
    int P = exec_ranks(x) > 1 ? exec_ranks(x) : 1;
    plan_ring_expect_tiles(kind, p->n_q, p->n_k, &v, P, tile_block_q(p), tile_block_k(p), out, NULL);
}

/* Per rank: Q, O and a partial O shard, two K/V blocks, the engine's tile workspace. */
int ring_max_shards(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, int64_t *nq,
                    int64_t *nk) {
    attn_layout_t lq, lk;
    attn_err_t err = {0};
    const attn_vis_t vis = problem_vis(p);
    if (plan_layouts(*(const attn_layout_kind_t *)self->ctx, p->n_q, p->n_k, &vis, exec_ranks(x), &lq, &lk, &err))
        return 0;
    *nq = layout_max_local_count(&lq), *nk = layout_max_local_count(&lk);
    return 1;
}

static size_t ring_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    int P = exec_ranks(x);
    int64_t nq, nk;
    if (!ring_max_shards(self, p, x, &nq, &nk))
        return 0;
    size_t q_side = attn_size_prod4(p->batch, p->heads, nq, 3 * p->head_dim + 2);
    size_t kv_side = attn_size_prod4(p->batch, p->kv_heads, nk, 4 * p->head_dim);
    size_t per_rank = attn_size_mul(attn_size_add(q_side, kv_side), sizeof(float));
    return attn_size_mul((size_t)P, attn_size_add(per_rank, tile_workspace_bytes(p, 1, nq)));
}

static const attn_layout_kind_t contiguous = LAYOUT_CONTIGUOUS, striped = LAYOUT_STRIPED, zigzag = LAYOUT_ZIGZAG,
                                 zigzag_balanced = LAYOUT_ZIGZAG_BALANCED;

/* ring_grad.c: the backward on the same plan. */
int ring_backward_rank(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_comm_t *c,
                       const attn_grad_io_t *g, attn_err_t *err);
void ring_backward_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                          attn_dist_expect_t *out);
size_t ring_backward_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x);

#define RING_BACKEND(var, NAME, KIND, DESC)                                                            \
    const attn_backend_t var = {.name = NAME, .device = "cpu", .description = DESC, .layout = #KIND,  \
                                .supports = ring_supports, .forward = dist_forward,                   \
                                .forward_rank = ring_rank, .expect = ring_expect, .workspace_bytes = ring_workspace, \
                                .backward = dist_backward, .backward_rank = ring_backward_rank,       \
                                .backward_expect = ring_backward_expect,                              \
                                .backward_workspace_bytes = ring_backward_workspace, .ctx = &KIND};

RING_BACKEND(backend_dist_ring, "ring", contiguous, "ring attention, contiguous shards; K/V blocks rotate P−1 times")
RING_BACKEND(backend_dist_striped, "striped", striped, "ring loop, token t on rank t mod P: balanced causal work")
RING_BACKEND(backend_dist_zigzag, "zigzag", zigzag, "ring loop, rank p holds chunks p and 2P−1−p: balanced, contiguous")
RING_BACKEND(backend_dist_zigzag_balanced, "zigzag_balanced", zigzag_balanced,
             "zigzag with chunks cut at equal work under the problem's documents and mask (packed documents)")
