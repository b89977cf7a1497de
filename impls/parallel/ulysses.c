/* ulysses.c — DeepSpeed-Ulysses-style sequence parallelism: an all-to-all from sequence shards to
 * head shards (the plan's maps and counts, plan.h), any single-rank backend (--local-backend) on
 * the full sequence, an all-to-all back. GQA without expanding kv heads on the wire: docs/ulysses.md. */
#include <stdlib.h>
#include <string.h>

#include "impls/parallel/dist.h"
#include "impls/parallel/plan.h"
#include "impls/parallel/ulysses_util.h"
#include "core/timing.h"

enum { TAG_Q = 1 << 22, TAG_KV, TAG_OUT };

/* How the local backend runs on a rank: one rank, one thread (ranks are the parallelism; BLAS
 * inside a rank stays single-threaded). */
attn_exec_t local_exec(const attn_exec_t *x) {
    attn_exec_t lx = *x;
    lx.ranks = 1, lx.threads = 1, lx.transport = ATTN_TRANSPORT_LOCAL;
    return lx;
}

const attn_backend_t *local_backend(const attn_exec_t *x) {
    return registry_find(x->local_backend[0] ? x->local_backend : "blockwise");
}

attn_layout_kind_t layout_of(const attn_exec_t *x) {
    return x->layout >= 0 ? (attn_layout_kind_t)x->layout : LAYOUT_CONTIGUOUS;
}

/* Copies heads [h0, h0 + nh) of a shard (B, heads, count, width) to or from a packed run
 * (B, nh, count, width); the packed run's rows then move to or from the full-sequence tensor
 * (B, nh, n, width) with dist_shard_copy (outer = B·nh). */
void slice_heads(int64_t B, int64_t heads, int64_t h0, int64_t nh, int64_t count, int64_t width, float *shard,
                        float *pack, int to_pack) {
    size_t bytes = (size_t)(count * width) * sizeof(float);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < nh; h++) {
            float *pk = pack + (b * nh + h) * count * width, *sh = shard + (b * heads + h0 + h) * count * width;
            memcpy(to_pack ? pk : sh, to_pack ? sh : pk, bytes);
        }
}

typedef struct {
    float *q, *k, *v, *o, *lse;           /* shards */
    float *send, *recv;                   /* all-to-all staging */
    float *qf, *kf, *vf, *of, *lf, *kx, *vx; /* full-sequence head shard; kx/vx: expanded kv heads */
} ulysses_bufs_t;

static void free_bufs(ulysses_bufs_t *b) {
    float **all[] = {&b->q, &b->k, &b->v, &b->o, &b->lse, &b->send, &b->recv, &b->qf,
                     &b->kf, &b->vf, &b->of, &b->lf, &b->kx, &b->vx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        attn_free(*all[i]);
}

/* One exchange of the plan (counts and offsets in floats) in the byte terms of comm_alltoallv. */
void a2a_from_plan(a2a_plan_t *a, int P, const int64_t *send, const int64_t *send_off, const int64_t *recv,
                          const int64_t *recv_off) {
    for (int r = 0; r < P; r++) {
        a->sb[r] = (size_t)send[r] * sizeof(float), a->so[r] = (size_t)send_off[r] * sizeof(float);
        a->rb[r] = (size_t)recv[r] * sizeof(float), a->ro[r] = (size_t)recv_off[r] * sizeof(float);
        a->send_total += (size_t)send[r], a->recv_total += (size_t)recv[r];
    }
}

static int ulysses_rank(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_comm_t *c, const attn_io_t *io,
                        attn_err_t *err) {
    (void)self;
    int P = c->size, me = c->rank;
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, layout_of(x), p->n_q, P, err));
    ATTN_TRY(layout_init(&lk, layout_of(x), p->n_k, P, err));
    plan_ulysses_t *pl = malloc(sizeof *pl);
    if (!pl)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: out of memory for the ulysses plan", me);
    int prc = plan_ulysses(p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, layout_of(x), P, me, pl, err);
    if (prc != ATTN_OK) {
        free(pl);
        return prc;
    }
    const plan_heads_t *hs = pl->heads;
    int64_t B = p->batch, H = p->heads, Hkv = p->kv_heads, d = p->head_dim, Hl = hs[me].hq;
    int64_t nq = pl->m[me], nk = pl->k[me];
    attn_problem_t lp = plan_heads_problem(p, &hs[me]);
    attn_exec_t lx = local_exec(x);
    const attn_backend_t *lb = local_backend(x);

    /* Q to every rank's heads; K and V (packed, K first) to the kv heads each needs; O and LSE
     * (packed, O then LSE) back to each rank's tokens. */
    a2a_plan_t aq = {0}, akv = {0}, aout = {0};
    a2a_from_plan(&aq, P, pl->send_q, pl->send_q_off, pl->recv_q, pl->recv_q_off);
    a2a_from_plan(&akv, P, pl->send_kv, pl->send_kv_off, pl->recv_kv, pl->recv_kv_off);
    a2a_from_plan(&aout, P, pl->send_out, pl->send_out_off, pl->recv_out, pl->recv_out_off);
    size_t stage = aq.send_total;
    stage = akv.send_total > stage ? akv.send_total : stage;
    stage = aout.send_total > stage ? aout.send_total : stage;
    size_t rstage = aq.recv_total;
    rstage = akv.recv_total > rstage ? akv.recv_total : rstage;
    rstage = aout.recv_total > rstage ? aout.recv_total : rstage;
    ulysses_bufs_t b = {0};
    int64_t nkv = hs[me].kvn, group = pl->group;
    b.q = attn_alloc((size_t)(B * H * nq * d) * sizeof(float) + 1, err, "ulysses Q shard");
    b.k = attn_alloc((size_t)(B * Hkv * nk * d) * sizeof(float) + 1, err, "ulysses K shard");
    b.v = attn_alloc((size_t)(B * Hkv * nk * d) * sizeof(float) + 1, err, "ulysses V shard");
    b.o = attn_alloc((size_t)(B * H * nq * d) * sizeof(float) + 1, err, "ulysses O shard");
    b.lse = attn_alloc((size_t)(B * H * nq) * sizeof(float) + 1, err, "ulysses LSE shard");
    b.send = attn_alloc(stage * sizeof(float) + 1, err, "ulysses send staging");
    b.recv = attn_alloc(rstage * sizeof(float) + 1, err, "ulysses receive staging");
    b.qf = attn_alloc((size_t)(B * Hl * p->n_q * d) * sizeof(float) + 1, err, "ulysses Q heads");
    b.kf = attn_alloc((size_t)(B * nkv * p->n_k * d) * sizeof(float) + 1, err, "ulysses K heads");
    b.vf = attn_alloc((size_t)(B * nkv * p->n_k * d) * sizeof(float) + 1, err, "ulysses V heads");
    b.of = attn_alloc((size_t)(B * Hl * p->n_q * d) * sizeof(float) + 1, err, "ulysses O heads");
    b.lf = attn_alloc((size_t)(B * Hl * p->n_q) * sizeof(float) + 1, err, "ulysses LSE heads");
    int expand = lp.kv_heads != nkv;
    if (expand) {
        b.kx = attn_alloc((size_t)(B * Hl * p->n_k * d) * sizeof(float) + 1, err, "ulysses expanded K");
        b.vx = attn_alloc((size_t)(B * Hl * p->n_k * d) * sizeof(float) + 1, err, "ulysses expanded V");
    }
    if (!b.q || !b.k || !b.v || !b.o || !b.lse || !b.send || !b.recv || !b.qf || !b.kf || !b.vf || !b.of || !b.lf ||
        (expand && (!b.kx || !b.vx))) {
        free_bufs(&b);
        free(pl);
        return ATTN_ERUNTIME;
    }
    int rc = dist_load_qkv(c, io, &lq, &lk, B * H, B * Hkv, d, b.q, b.k, b.v, err);
    if (rc == ATTN_OK)
        rc = comm_ready(c, err); /* the measured region starts together on every rank */
    comm_stats_reset(c);
    double t_start = time_now_s(), compute = 0;
    if (rc == ATTN_OK)
        rc = dist_fault_point(c, x, 0, err);

    /* 1. Q: my tokens of rank r's heads → r; r's tokens of my heads land in qf. */
    if (rc == ATTN_OK) {
        for (int r = 0; r < P; r++)
            slice_heads(B, H, r * Hl, Hl, nq, d, b.q, b.send + aq.so[r] / sizeof(float), 1);
        rc = comm_alltoallv(c, b.send, aq.sb, aq.so, b.recv, aq.rb, aq.ro, TAG_Q, err);
        for (int r = 0; rc == ATTN_OK && r < P; r++)
            dist_shard_copy(&lq, r, B * Hl, d, b.recv + aq.ro[r] / sizeof(float), b.qf, 0);
    }
    /* 2. K and V: my tokens of the kv heads rank r needs → r. */
    if (rc == ATTN_OK) {
        for (int r = 0; r < P; r++) {
            float *dst = b.send + akv.so[r] / sizeof(float);
            size_t half = (size_t)(B * hs[r].kvn * nk * d);
            slice_heads(B, Hkv, hs[r].kv0, hs[r].kvn, nk, d, b.k, dst, 1);
            slice_heads(B, Hkv, hs[r].kv0, hs[r].kvn, nk, d, b.v, dst + half, 1);
        }
        rc = comm_alltoallv(c, b.send, akv.sb, akv.so, b.recv, akv.rb, akv.ro, TAG_KV, err);
        for (int r = 0; rc == ATTN_OK && r < P; r++) {
            float *src = b.recv + akv.ro[r] / sizeof(float);
            size_t half = (size_t)(B * nkv * layout_local_count(&lk, r) * d);
            dist_shard_copy(&lk, r, B * nkv, d, src, b.kf, 0);
            dist_shard_copy(&lk, r, B * nkv, d, src + half, b.vf, 0);
        }
    }
    /* 3. The local backend on the full sequence of my heads. */
    if (rc == ATTN_OK) {
        const float *k = b.kf, *v = b.vf;
        if (expand) { /* each local query head gets its own copy of the kv head it reads */
            size_t plane = (size_t)(p->n_k * d);
            for (int64_t bb = 0; bb < B; bb++)
                for (int64_t h = 0; h < Hl; h++) {
                    int64_t kvh = plan_ulysses_kv_of(&hs[me], group, h);
                    memcpy(b.kx + (bb * Hl + h) * plane, b.kf + (bb * nkv + kvh) * plane, plane * sizeof(float));
                    memcpy(b.vx + (bb * Hl + h) * plane, b.vf + (bb * nkv + kvh) * plane, plane * sizeof(float));
                }
            k = b.kx, v = b.vx;
        }
        attn_io_t lio = {.q = b.qf, .k = k, .v = v, .o = b.of, .lse = b.lf};
        comm_compute_begin(c);
        double t0 = time_thread_cpu_s();
        rc = lb->forward(lb, &lp, &lx, &lio, err);
        compute = time_thread_cpu_s() - t0;
        comm_compute_end(c);
    }
    /* 4. O and LSE: my heads of rank r's tokens → r, into its shard. */
    if (rc == ATTN_OK) {
        for (int r = 0; r < P; r++) {
            float *dst = b.send + aout.so[r] / sizeof(float);
            dist_shard_copy(&lq, r, B * Hl, d, dst, b.of, 1);
            dist_shard_copy(&lq, r, B * Hl, 1, dst + B * Hl * layout_local_count(&lq, r) * d, b.lf, 1);
        }
        rc = comm_alltoallv(c, b.send, aout.sb, aout.so, b.recv, aout.rb, aout.ro, TAG_OUT, err);
        for (int r = 0; rc == ATTN_OK && r < P; r++) {
            float *src = b.recv + aout.ro[r] / sizeof(float);
            slice_heads(B, H, r * Hl, Hl, nq, d, b.o, src, 0);
            slice_heads(B, H, r * Hl, Hl, nq, 1, b.lse, src + B * Hl * nq * d, 0);
        }
    }
    dist_rank_stats_t mine = {.compute_s = compute, .blocks_computed = 1, .wall_s = time_now_s() - t_start,
                              .step_compute = &compute, .n_steps = 1};
    if (rc == ATTN_OK)
        rc = dist_report(c, &mine, io->dist, err);
    if (rc == ATTN_OK)
        rc = dist_store_ol(c, io, &lq, B * H, d, b.o, b.lse, err);
    free_bufs(&b);
    free(pl);
    return rc;
}

static int ulysses_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    int P = exec_ranks(x);
    if (p->heads % P) {
        snprintf(reason, len, "ulysses splits heads over ranks: H = %lld is not divisible by P = %d",
                 (long long)p->heads, P);
        return 0;
    }
    if (x->merge != ATTN_MERGE_F32) {
        snprintf(reason, len, "ulysses merges no partial results (--merge-dtype applies to the ring family)");
        return 0;
    }
    const attn_backend_t *lb = local_backend(x);
    if (!lb || lb->forward_rank) {
        snprintf(reason, len, "ulysses: '%s' is not a single-rank backend", x->local_backend);
        return 0;
    }
    if (!dist_supports_common(self, p, x, reason, len))
        return 0;
    for (int r = 0; r < P; r++) {
        plan_heads_t h = plan_ulysses_heads(p->heads, p->kv_heads, P, r);
        attn_problem_t lp = plan_heads_problem(p, &h);
        char sub[400];
        attn_exec_t lx = local_exec(x);
        if (!lb->supports(lb, &lp, &lx, sub, sizeof sub)) {
            snprintf(reason, len, "ulysses: local backend %s declines: %s", lb->name, sub);
            return 0;
        }
    }
    return 1;
}

/* Every rank attends H/P heads over the whole sequence: balanced by construction, one step.
 * Bytes per peer r: Q rows of r's heads out, K/V rows of the kv heads r needs out, O and LSE
 * rows of r's tokens back; the self part never travels. */
static void ulysses_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_dist_expect_t *out) {
    (void)self;
    int P = exec_ranks(x);
    memset(out, 0, sizeof *out);
    out->imbalance = out->critical_path = 1;
    attn_err_t err = {0};
    plan_ulysses_t pl;
    for (int me = 0; me < P; me++) {
        if (plan_ulysses(p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, layout_of(x), P, me, &pl, &err))
            return;
        for (int r = 0; r < P; r++)
            if (r != me) {
                out->bytes_sent[me] += sizeof(float) * (double)(pl.send_q[r] + pl.send_kv[r] + pl.send_out[r]);
                out->bytes_recv[me] += sizeof(float) * (double)(pl.recv_q[r] + pl.recv_kv[r] + pl.recv_out[r]);
            }
    }
}

/* Per rank: the shards, the full-sequence head shard (+ expanded kv heads), staging for the
 * largest all-to-all, and what the local backend allocates. */
static size_t ulysses_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    int P = exec_ranks(x);
    if (p->heads % P)
        return 0;
    const attn_backend_t *lb = local_backend(x);
    attn_exec_t lx = local_exec(x);
    size_t total = 0;
    int64_t d = p->head_dim, B = p->batch, Hl = p->heads / P;
    int64_t nq = (p->n_q + P - 1) / P + 2, nk = (p->n_k + P - 1) / P + 2;
    for (int r = 0; r < P; r++) {
        plan_heads_t h = plan_ulysses_heads(p->heads, p->kv_heads, P, r);
        attn_problem_t lp = plan_heads_problem(p, &h);
        /* (B, H, nq, 2d+1) + 2·(B, H_kv, nk, d) shards; the same per head shard over the whole
         * sequence; staging of 2·((B, H, nq, d+1) + 2·(B, H_kv, nk, d)). */
        size_t kv_shard = attn_size_mul(2, attn_size_prod4(B, p->kv_heads, nk, d));
        size_t shards = attn_size_add(attn_size_prod4(B, p->heads, nq, 2 * d + 1), kv_shard);
        size_t heads = attn_size_add(attn_size_prod4(B, Hl, p->n_q, 2 * d + 1),
                                     attn_size_mul(2, attn_size_prod4(B, lp.kv_heads, p->n_k, d)));
        size_t staging = attn_size_mul(2, attn_size_add(attn_size_prod4(B, p->heads, nq, d + 1), kv_shard));
        size_t mine = attn_size_mul(attn_size_add(attn_size_add(shards, heads), staging), sizeof(float));
        total = attn_size_add(total, attn_size_add(mine, lb ? lb->workspace_bytes(lb, &lp, &lx) : 0));
    }
    return total;
}

const attn_backend_t backend_dist_ulysses = {
    .name = "ulysses",
    .device = "cpu",
    .description = "all-to-all to head shards, --local-backend on the full sequence, all-to-all back",
    .layout = "contiguous",
    .supports = ulysses_supports,
    .forward = dist_forward,
    .forward_rank = ulysses_rank,
    .expect = ulysses_expect,
    .workspace_bytes = ulysses_workspace,
    .backward = dist_backward,
    .backward_rank = ulysses_backward_rank,
    .backward_expect = ulysses_backward_expect,
    .backward_workspace_bytes = ulysses_backward_workspace,
};
