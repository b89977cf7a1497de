/* ring.c — ring attention, one loop for three token layouts: `ring` (contiguous shards),
 * `striped` (token t on rank t mod P) and `zigzag` (chunks p and 2P−1−p of 2P). Each of the
 * P steps computes the rank's queries against the K/V block it holds (tile engine, global
 * positions) while the next block is already in flight (double buffering, nonblocking
 * send/recv); block pairs the mask hides are skipped; partial results merge by the
 * log-sum-exp rule. Only the H_kv heads travel: K/V are never expanded to H heads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "comm/comm.h"
#include "impls/parallel/dist.h"
#include "impls/cpu/tile_engine.h"
#include "comm/layout.h"
#include "core/timing.h"


/* acc ← acc ⊕ part over rows [r0, r0+rows) of every (batch, head): the log-sum-exp merge. */
static void merge_rows(const attn_problem_t *p, int64_t q_rows, int64_t r0, int64_t rows, float *o_acc,
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
                continue;
            }
            double m = fmax(la, lp), wa = exp(la - m), wp = exp(lp - m), inv = 1.0 / (wa + wp);
            for (int64_t c = 0; c < d; c++)
                oa[c] = (float)((wa * oa[c] + wp * op[c]) * inv);
            l_acc[at] = (float)(m + log(wa + wp));
        }
}

typedef struct {
    float *q, *o, *lse, *o_part, *lse_part, *kv[2];
} ring_bufs_t;

static void free_bufs(ring_bufs_t *b) {
    attn_free(b->q), attn_free(b->o), attn_free(b->lse), attn_free(b->o_part), attn_free(b->lse_part);
    attn_free(b->kv[0]), attn_free(b->kv[1]);
}

static void progress_cb(void *c) { comm_progress(c); }

static int ring_rank(const attn_backend_t *self, const attn_problem_t *whole, attn_comm_t *c, const attn_io_t *io,
                     attn_err_t *err) {
    attn_problem_t p = *whole;
    p.threads = 1; /* ranks are the parallelism; BLAS inside a rank stays single-threaded */
    int P = c->size, me = c->rank;
    int64_t d = p.head_dim, BH = p.batch * p.heads, BHkv = p.batch * p.kv_heads;
    attn_layout_t lq, lk;
    attn_layout_kind_t kind = *(const attn_layout_kind_t *)self->ctx;
    ATTN_TRY(layout_init(&lq, kind, p.n_q, P, err));
    ATTN_TRY(layout_init(&lk, kind, p.n_k, P, err));
    int64_t nq = layout_local_count(&lq, me), kmax = layout_max_local_count(&lk);
    size_t block_cap = (size_t)(2 * BHkv * kmax * d);
    ring_bufs_t b = {0};
    /* +1: a rank may hold no rows when n < P, and a zero-byte allocation is not an error. */
    b.q = attn_alloc((size_t)(BH * nq * d) * sizeof(float) + 1, err, "ring Q shard");
    b.o = attn_alloc((size_t)(BH * nq * d) * sizeof(float) + 1, err, "ring O shard");
    b.o_part = attn_alloc((size_t)(BH * nq * d) * sizeof(float) + 1, err, "ring partial O");
    b.lse = attn_alloc((size_t)(BH * nq) * sizeof(float) + 1, err, "ring LSE shard");
    b.lse_part = attn_alloc((size_t)(BH * nq) * sizeof(float) + 1, err, "ring partial LSE");
    b.kv[0] = attn_alloc(block_cap * sizeof(float) + 1, err, "ring K/V block");
    b.kv[1] = attn_alloc(block_cap * sizeof(float) + 1, err, "ring K/V block");
    if (!b.q || !b.o || !b.o_part || !b.lse || !b.lse_part || !b.kv[0] || !b.kv[1]) {
        free_bufs(&b);
        return ATTN_ERUNTIME;
    }
    /* The rank's own shards: Q, and K then V packed in one block so a ring step is one message. */
    int64_t kmine = layout_local_count(&lk, me);
    int rc = ATTN_OK;
    if (io->sharded) {
        memcpy(b.q, io->q, (size_t)(BH * nq * d) * sizeof(float));
        memcpy(b.kv[0], io->k, (size_t)(BHkv * kmine * d) * sizeof(float));
        memcpy(b.kv[0] + BHkv * kmine * d, io->v, (size_t)(BHkv * kmine * d) * sizeof(float));
    } else {
        rc = dist_scatter(c, &lq, BH, d, io->q, b.q, err);
        if (rc == ATTN_OK)
            rc = dist_scatter(c, &lk, BHkv, d, io->k, b.kv[0], err);
        if (rc == ATTN_OK)
            rc = dist_scatter(c, &lk, BHkv, d, io->v, b.kv[0] + BHkv * kmine * d, err);
    }
    if (rc == ATTN_OK)
        rc = comm_ready(c, err); /* the measured region starts together on every rank */
    if (rc != ATTN_OK) {
        free_bufs(&b);
        return rc;
    }
    memset(b.o, 0, (size_t)(BH * nq * d) * sizeof(float));
    for (int64_t i = 0; i < BH * nq; i++)
        b.lse[i] = -INFINITY;

    layout_piece_t qpc[2], kpc[2];
    int n_qp = layout_pieces(&lq, me, qpc);
    int64_t q_offset = p.n_k - p.n_q; /* queries sit at the end of the key sequence */
    int local_pos = p.fault == ATTN_FAULT_LOCAL_POSITIONS; /* the injected bug: positions per rank */
    for (int i = 0; i < n_qp; i++)
        qpc[i].pos = local_pos ? (attn_span_t){qpc[i].local_start, 1} : (attn_span_t){qpc[i].pos.start + q_offset, qpc[i].pos.stride};
    comm_stats_reset(c);
    int cur = 0;
    double computed = 0, skipped = 0, step_compute[ATTN_MAX_RANKS] = {0}, t_start = time_now_s();
    if (c->ops->progress)
        tile_set_progress(progress_cb, c);
    for (int s = 0; s < P && rc == ATTN_OK; s++) {
        rc = dist_fault_point(c, &p, s, err);
        if (rc != ATTN_OK)
            break;
        int src = (me - s + P) % P, next_src = (me - s - 1 + P) % P;
        int64_t kcnt = layout_local_count(&lk, src);
        comm_req_t step[2] = {{0}}; /* the send and the receive, waited after the compute */
        if (s < P - 1) {
            size_t next_bytes = (size_t)(2 * BHkv * layout_local_count(&lk, next_src) * d) * sizeof(float);
            comm_shift_part_t part = {.send = b.kv[cur], .send_bytes = (size_t)(2 * BHkv * kcnt * d) * sizeof(float),
                                      .recv = b.kv[1 - cur], .recv_bytes = next_bytes};
            rc = comm_shift(c, &part, s, step, err);
        }
        comm_compute_begin(c);
        double t0 = time_thread_cpu_s();
        int n_kp = layout_pieces(&lk, src, kpc);
        if (local_pos)
            for (int ki = 0; ki < n_kp; ki++)
                kpc[ki].pos = (attn_span_t){kpc[ki].local_start, 1};
        if (p.fault == ATTN_FAULT_DROP_STEP && s == p.fault_step)
            n_kp = 0; /* the injected bug: this step's block is received and passed on, never used */
        for (int qi = 0; qi < n_qp && rc == ATTN_OK; qi++)
            for (int ki = 0; ki < n_kp && rc == ATTN_OK; ki++) {
                const layout_piece_t *qp = &qpc[qi], *kp = &kpc[ki];
                int64_t lo, hi;
                mask_key_range(p.mask, p.window, qp->pos.start, qp->pos.start + qp->pos.stride * (qp->count - 1), kp->pos,
                               kp->count, &lo, &hi);
                if (lo >= hi) {
                    skipped++;
                    continue;
                }
                computed++;
                const float *kblock = b.kv[cur], *vblock = b.kv[cur] + BHkv * kcnt * d;
                tile_io_t io = {b.q + qp->local_start * d,      kblock + kp->local_start * d,
                                vblock + kp->local_start * d,   b.o_part + qp->local_start * d,
                                b.lse_part + qp->local_start,  nq,
                                kcnt};
                rc = tile_attend_f32(&p, qp->pos, qp->count, kp->pos, kp->count, &io, TILE_SCAN_ALL, NULL, err);
                if (rc == ATTN_OK)
                    merge_rows(&p, nq, qp->local_start, qp->count, b.o, b.lse, b.o_part, b.lse_part);
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
    dist_rank_stats_t mine = {.blocks_computed = computed, .blocks_skipped = skipped, .wall_s = time_now_s() - t_start,
                              .step_compute = step_compute, .n_steps = P};
    for (int s = 0; s < P; s++)
        mine.compute_s += step_compute[s];
    if (rc == ATTN_OK)
        rc = dist_report(c, &mine, io->dist, err);
    if (rc == ATTN_OK && io->sharded) {
        memcpy(io->o, b.o, (size_t)(BH * nq * d) * sizeof(float));
        memcpy(io->lse, b.lse, (size_t)(BH * nq) * sizeof(float));
    } else if (rc == ATTN_OK) {
        rc = dist_gather(c, &lq, BH, d, b.o, io->o, err);
        if (rc == ATTN_OK)
            rc = dist_gather(c, &lq, BH, 1, b.lse, io->lse, err);
    }
    free_bufs(&b);
    return rc;
}

/* --layout only picks ulysses' shards: a ring-family backend's layout is its name. */
static int ring_supports(const attn_backend_t *self, const attn_problem_t *p, char *reason, size_t len) {
    attn_layout_kind_t kind = *(const attn_layout_kind_t *)self->ctx;
    if (p->layout >= 0 && p->layout != (int)kind) {
        snprintf(reason, len, "%s always uses the %s layout (--layout %s applies to ulysses)", self->name,
                 layout_name(kind), layout_name((attn_layout_kind_t)p->layout));
        return 0;
    }
    if (p->local_backend[0] && strcmp(p->local_backend, "blockwise")) {
        snprintf(reason, len, "%s computes each step with the blockwise tile engine (--local-backend applies to ulysses)",
                 self->name);
        return 0;
    }
    return dist_supports_common(self, p, reason, len);
}

/* Rank r computes its queries against every rank's keys, the block of rank r − s at step s.
 * It sends the blocks of ranks r, r−1, …, r−P+2 (all but r+1's) and receives all but its own. */
void dist_ring_expect(attn_layout_kind_t kind, const attn_problem_t *p, double elem_bytes, attn_dist_expect_t *out) {
    int P = p->ranks > 1 ? p->ranks : 1;
    attn_layout_t lq, lk;
    attn_err_t err = {0};
    memset(out, 0, sizeof *out);
    if (layout_init(&lq, kind, p->n_q, P, &err) || layout_init(&lk, kind, p->n_k, P, &err))
        return;
    double pairs[ATTN_MAX_RANKS][ATTN_MAX_RANKS], work[ATTN_MAX_RANKS] = {0}, total = 0, worst = 0;
    for (int r = 0; r < P; r++)
        for (int k = 0; k < P; k++) {
            pairs[r][k] = dist_visible_pairs(p, &lq, r, &lk, k);
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
    double row = 2.0 * (double)(p->batch * p->kv_heads * p->head_dim) * elem_bytes;
    for (int r = 0; P > 1 && r < P; r++) {
        out->bytes_sent[r] = row * (double)(p->n_k - layout_local_count(&lk, (r + 1) % P));
        out->bytes_recv[r] = row * (double)(p->n_k - layout_local_count(&lk, r));
    }
}

static void ring_expect(const attn_backend_t *self, const attn_problem_t *p, attn_dist_expect_t *out) {
    dist_ring_expect(*(const attn_layout_kind_t *)self->ctx, p, sizeof(float), out);
}

/* Per rank: Q, O and a partial O shard, two K/V blocks, the engine's tile workspace. */
static size_t ring_workspace(const attn_backend_t *self, const attn_problem_t *p) {
    attn_layout_t lq, lk;
    attn_err_t err = {0};
    int P = p->ranks > 1 ? p->ranks : 1;
    if (layout_init(&lq, *(const attn_layout_kind_t *)self->ctx, p->n_q, P, &err) ||
        layout_init(&lk, *(const attn_layout_kind_t *)self->ctx, p->n_k, P, &err))
        return 0;
    size_t d = (size_t)p->head_dim, bh = (size_t)(p->batch * p->heads), bhkv = (size_t)(p->batch * p->kv_heads);
    size_t per_rank = (3 * bh * (size_t)layout_max_local_count(&lq) * d + 2 * bh * (size_t)layout_max_local_count(&lq) +
                       4 * bhkv * (size_t)layout_max_local_count(&lk) * d) * sizeof(float);
    attn_problem_t one = *p;
    one.threads = 1;
    return (size_t)P * (per_rank + tile_workspace_bytes(&one, layout_max_local_count(&lq)));
}

static const attn_layout_kind_t contiguous = LAYOUT_CONTIGUOUS, striped = LAYOUT_STRIPED, zigzag = LAYOUT_ZIGZAG;

#define RING_BACKEND(var, NAME, KIND, DESC)                                                            \
    const attn_backend_t var = {.name = NAME, .device = "cpu", .description = DESC, .layout = #KIND,  \
                                .supports = ring_supports, .forward = dist_forward,                   \
                                .forward_rank = ring_rank, .expect = ring_expect, .workspace_bytes = ring_workspace, .ctx = &KIND};

RING_BACKEND(backend_dist_ring, "ring", contiguous, "ring attention, contiguous shards; K/V blocks rotate P−1 times")
RING_BACKEND(backend_dist_striped, "striped", striped, "ring loop, token t on rank t mod P: balanced causal work")
RING_BACKEND(backend_dist_zigzag, "zigzag", zigzag, "ring loop, rank p holds chunks p and 2P−1−p: balanced, contiguous")
