/* usp.c — the hybrid of Ulysses and ring (USP): P = U × R ranks as R Ulysses groups of U. An
 * all-to-all gives each rank its group's shard of the sequence for H/U heads, a ring across the
 * groups (ring.h's loop, one ring per member) attends it, an all-to-all brings O and LSE back.
 * Runs where Ulysses cannot (H_kv < P). Mesh, schedule and byte count: docs/usp.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "impls/parallel/dist.h"
#include "impls/parallel/plan.h"
#include "impls/parallel/ring.h"
#include "impls/parallel/usp_util.h"
#include "core/timing.h"

enum { TAG_Q = 1 << 22, TAG_KV, TAG_OUT };

attn_layout_kind_t usp_layout_of(const attn_exec_t *x) {
    return x->layout >= 0 ? (attn_layout_kind_t)x->layout : LAYOUT_ZIGZAG;
}

int usp_mesh_of(const attn_problem_t *p, const attn_exec_t *x, int P, plan_usp_mesh_t *m, attn_err_t *err) {
    return plan_usp_mesh(usp_layout_of(x), p->heads, p->kv_heads, P, x->ulysses_degree, m, err);
}

int usp_layouts(const attn_problem_t *p, const attn_exec_t *x, int P, plan_usp_mesh_t *m, attn_layout_t *lq,
                attn_layout_t *lk, attn_layout_t *rq, attn_layout_t *rk, attn_err_t *err) {
    ATTN_TRY(usp_mesh_of(p, x, P, m, err));
    ATTN_TRY(layout_init(lq, m->kind, p->n_q, P, err));
    ATTN_TRY(layout_init(lk, m->kind, p->n_k, P, err));
    ATTN_TRY(layout_init(rq, m->kind, p->n_q, m->R, err));
    return layout_init(rk, m->kind, p->n_k, m->R, err);
}

/* Rows idx[0..rows) of heads [h0, h0 + nh) of a tensor (B, heads, count, w) to or from a packed
 * run (B, nh, rows, w). */
void usp_move_rows(int64_t B, int64_t heads, int64_t h0, int64_t nh, int64_t count, int64_t w, const int64_t *idx,
                      int64_t rows, float *tensor, float *packed, int to_packed) {
    size_t bytes = (size_t)w * sizeof(float);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < nh; h++)
            for (int64_t i = 0; i < rows; i++) {
                float *t = tensor + ((b * heads + h0 + h) * count + idx[i]) * w;
                float *pk = packed + ((b * nh + h) * rows + i) * w;
                memcpy(to_packed ? pk : t, to_packed ? t : pk, bytes);
            }
}

/* One exchange of the plan in comm_alltoallv's byte terms. */
typedef struct {
    size_t sb[ATTN_MAX_RANKS], so[ATTN_MAX_RANKS], rb[ATTN_MAX_RANKS], ro[ATTN_MAX_RANKS];
} a2a_t;

static void a2a_of(a2a_t *a, int P, const int64_t *send, const int64_t *send_off, const int64_t *recv,
                   const int64_t *recv_off) {
    for (int r = 0; r < P; r++) {
        a->sb[r] = (size_t)send[r] * sizeof(float), a->so[r] = (size_t)send_off[r] * sizeof(float);
        a->rb[r] = (size_t)recv[r] * sizeof(float), a->ro[r] = (size_t)recv_off[r] * sizeof(float);
    }
}

typedef struct {
    float *q, *k, *v, *o, *lse;  /* this rank's shards under the P-rank layout */
    float *send, *recv;          /* all-to-all staging */
    float *qg, *kvg, *og, *lg;   /* its group's shard, its heads: Q, the K | V block, O, LSE */
    int64_t *li, *gi;            /* row maps of group_rows */
} usp_bufs_t;

static void free_bufs(usp_bufs_t *b) {
    float **all[] = {&b->q, &b->k, &b->v, &b->o, &b->lse, &b->send, &b->recv, &b->qg, &b->kvg, &b->og, &b->lg};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        attn_free(*all[i]);
    free(b->li), free(b->gi);
}

static size_t max3(size_t a, size_t b, size_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

static int usp_rank(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_comm_t *c,
                    const attn_io_t *io, attn_err_t *err) {
    (void)self;
    int P = c->size, me = c->rank;
    plan_usp_mesh_t mesh;
    attn_layout_t lq, lk, rq, rk; /* tokens over the P ranks, and over the R groups */
    ATTN_TRY(usp_layouts(p, x, P, &mesh, &lq, &lk, &rq, &rk, err));
    plan_usp_t *pl = malloc(sizeof *pl);
    if (!pl)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: out of memory for the usp plan", me);
    int rc = plan_usp(&mesh, p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, me, pl, err);
    if (rc != ATTN_OK) {
        free(pl);
        return rc;
    }
    int64_t B = p->batch, H = p->heads, Hkv = p->kv_heads, d = p->head_dim, U = mesh.U;
    int64_t nq = layout_local_count(&lq, me), nk = layout_local_count(&lk, me), G = pl->group;
    int64_t hq = pl->heads.hq, kvn = pl->heads.kvn, gq = pl->ring_q, gk = pl->ring_k;
    int64_t gk_max = layout_max_local_count(&rk), rows_cap = ATTN_MAX(layout_max_local_count(&lq),
                                                                     layout_max_local_count(&lk));
    a2a_t aq, akv, aout;
    a2a_of(&aq, P, pl->send_q, pl->send_q_off, pl->recv_q, pl->recv_q_off);
    a2a_of(&akv, P, pl->send_kv, pl->send_kv_off, pl->recv_kv, pl->recv_kv_off);
    a2a_of(&aout, P, pl->send_out, pl->send_out_off, pl->recv_out, pl->recv_out_off);
    size_t stage = max3((size_t)pl->q_send_total, (size_t)pl->kv_send_total, (size_t)pl->out_send_total);
    size_t rstage = max3((size_t)pl->q_recv_total, (size_t)pl->kv_recv_total, (size_t)pl->out_recv_total);
    usp_bufs_t b = {0};
    b.q = attn_alloc((size_t)(B * H * nq * d) * sizeof(float) + 1, err, "usp Q shard");
    b.k = attn_alloc((size_t)(B * Hkv * nk * d) * sizeof(float) + 1, err, "usp K shard");
    b.v = attn_alloc((size_t)(B * Hkv * nk * d) * sizeof(float) + 1, err, "usp V shard");
    b.o = attn_alloc((size_t)(B * H * nq * d) * sizeof(float) + 1, err, "usp O shard");
    b.lse = attn_alloc((size_t)(B * H * nq) * sizeof(float) + 1, err, "usp LSE shard");
    b.send = attn_alloc(stage * sizeof(float) + 1, err, "usp send staging");
    b.recv = attn_alloc(rstage * sizeof(float) + 1, err, "usp receive staging");
    b.qg = attn_alloc((size_t)(B * hq * gq * d) * sizeof(float) + 1, err, "usp group Q");
    b.kvg = attn_alloc((size_t)(2 * B * kvn * gk_max * d) * sizeof(float) + 1, err, "usp group K/V block");
    b.og = attn_alloc((size_t)(B * hq * gq * d) * sizeof(float) + 1, err, "usp group O");
    b.lg = attn_alloc((size_t)(B * hq * gq) * sizeof(float) + 1, err, "usp group LSE");
    b.li = malloc((size_t)rows_cap * sizeof(int64_t) + 1), b.gi = malloc((size_t)rows_cap * sizeof(int64_t) + 1);
    if (!b.q || !b.k || !b.v || !b.o || !b.lse || !b.send || !b.recv || !b.qg || !b.kvg || !b.og || !b.lg || !b.li ||
        !b.gi) {
        free_bufs(&b);
        free(pl);
        return b.li && b.gi ? ATTN_ERUNTIME : attn_fail(err, ATTN_ERUNTIME, "rank %d: out of memory for row maps", me);
    }
    rc = dist_load_qkv(c, io, &lq, &lk, B * H, B * Hkv, d, b.q, b.k, b.v, err);
    if (rc == ATTN_OK)
        rc = comm_ready(c, err); /* the measured region starts together on every rank */
    comm_stats_reset(c);
    double t_start = time_now_s();

    /* 1. Q: my rows of rank r's group shard, r's heads → r; they land in my group's Q at their
     * rows of the R-rank layout. */
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int g, u;
        plan_usp_coords(&mesh, r, &g, &u);
        int64_t rows = usp_group_rows(&lq, &rq, me, g, b.li, b.gi);
        usp_move_rows(B, H, u * (H / U), H / U, nq, d, b.li, rows, b.q, b.send + aq.so[r] / sizeof(float), 1);
    }
    if (rc == ATTN_OK)
        rc = comm_alltoallv(c, b.send, aq.sb, aq.so, b.recv, aq.rb, aq.ro, TAG_Q, err);
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int64_t rows = usp_group_rows(&lq, &rq, r, (int)G, b.li, b.gi);
        usp_move_rows(B, hq, 0, hq, gq, d, b.gi, rows, b.qg, b.recv + aq.ro[r] / sizeof(float), 0);
    }
    /* 2. K and V: my rows of r's group shard, the kv heads r reads, K then V → r; they make my
     * group's own ring block (K then V, as ring_loop sends it). */
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int g, u;
        plan_usp_coords(&mesh, r, &g, &u);
        plan_heads_t hr = plan_ulysses_heads(H, Hkv, (int)U, u);
        int64_t rows = usp_group_rows(&lk, &rk, me, g, b.li, b.gi);
        float *dst = b.send + akv.so[r] / sizeof(float);
        usp_move_rows(B, Hkv, hr.kv0, hr.kvn, nk, d, b.li, rows, b.k, dst, 1);
        usp_move_rows(B, Hkv, hr.kv0, hr.kvn, nk, d, b.li, rows, b.v, dst + B * hr.kvn * rows * d, 1);
    }
    if (rc == ATTN_OK)
        rc = comm_alltoallv(c, b.send, akv.sb, akv.so, b.recv, akv.rb, akv.ro, TAG_KV, err);
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int64_t rows = usp_group_rows(&lk, &rk, r, (int)G, b.li, b.gi);
        float *src = b.recv + akv.ro[r] / sizeof(float);
        usp_move_rows(B, kvn, 0, kvn, gk, d, b.gi, rows, b.kvg, src, 0);
        usp_move_rows(B, kvn, 0, kvn, gk, d, b.gi, rows, b.kvg + B * kvn * gk * d, src + B * kvn * rows * d, 0);
    }
    /* 3. The ring across the groups: my member's ring, my heads, my group's shard. */
    attn_problem_t lp = plan_heads_problem(p, &pl->heads);
    double step_compute[ATTN_MAX_RANKS] = {0};
    dist_rank_stats_t mine = {0};
    ring_loop_t L = {.p = &lp, .kind = mesh.kind, .R = mesh.R, .pos = (int)G, .send_to = pl->send_to,
                     .recv_from = pl->recv_from, .expand = pl->heads.lines_up ? NULL : &pl->heads,
                     .group = H / Hkv, .q = b.qg, .kv = b.kvg, .o = b.og, .lse = b.lg};
    if (rc == ATTN_OK)
        rc = ring_loop(c, x, &L, &mine, step_compute, err);
    if (rc == ATTN_OK) /* the group's rows are whole now: −∞ means only −∞ scores */
        problem_finish_rows(ATTN_F32, b.og, b.lg, (size_t)(B * hq * gq), d);
    /* 4. O and LSE: my heads of r's rows in my group shard → r, into its shards. */
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int64_t rows = usp_group_rows(&lq, &rq, r, (int)G, b.li, b.gi);
        float *dst = b.send + aout.so[r] / sizeof(float);
        usp_move_rows(B, hq, 0, hq, gq, d, b.gi, rows, b.og, dst, 1);
        usp_move_rows(B, hq, 0, hq, gq, 1, b.gi, rows, b.lg, dst + B * hq * rows * d, 1);
    }
    if (rc == ATTN_OK)
        rc = comm_alltoallv(c, b.send, aout.sb, aout.so, b.recv, aout.rb, aout.ro, TAG_OUT, err);
    for (int r = 0; rc == ATTN_OK && r < P; r++) {
        int g, u;
        plan_usp_coords(&mesh, r, &g, &u);
        int64_t rows = usp_group_rows(&lq, &rq, me, g, b.li, b.gi), rh = H / U;
        float *src = b.recv + aout.ro[r] / sizeof(float);
        usp_move_rows(B, H, u * rh, rh, nq, d, b.li, rows, b.o, src, 0);
        usp_move_rows(B, H, u * rh, rh, nq, 1, b.li, rows, b.lse, src + B * rh * rows * d, 0);
    }
    mine.wall_s = time_now_s() - t_start;
    if (rc == ATTN_OK)
        rc = dist_report(c, &mine, io->dist, err);
    if (rc == ATTN_OK)
        rc = dist_store_ol(c, io, &lq, B * H, d, b.o, b.lse, err);
    free_bufs(&b);
    free(pl);
    return rc;
}

static int usp_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                        size_t len) {
    plan_usp_mesh_t m;
    attn_err_t e = {0};
    if (usp_mesh_of(p, x, exec_ranks(x), &m, &e) != ATTN_OK) {
        snprintf(reason, len, "%s", e.msg);
        return 0;
    }
    if (x->local_backend[0] && strcmp(x->local_backend, "blockwise")) {
        snprintf(reason, len, "usp computes each ring step with the blockwise tile engine (--local-backend applies "
                              "to ulysses)");
        return 0;
    }
    return dist_supports_common(self, p, x, reason, len);
}

static void usp_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                       attn_dist_expect_t *out) {
    (void)self;
    plan_usp_mesh_t m;
    attn_err_t e = {0};
    memset(out, 0, sizeof *out);
    const attn_vis_t v = problem_vis(p);
    if (usp_mesh_of(p, x, exec_ranks(x), &m, &e) == ATTN_OK)
        plan_usp_expect(&m, p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, &v, sizeof(float), out);
}

/* Per rank: the shards, staging for the largest all-to-all, its group's shard of its heads,
 * and the ring loop's own buffers and tile workspace. */
size_t usp_workspace_of(const attn_problem_t *p, const attn_exec_t *x, const usp_held_t *held) {
    plan_usp_mesh_t m;
    attn_err_t e = {0};
    attn_layout_t lq, lk, rq, rk;
    if (usp_layouts(p, x, exec_ranks(x), &m, &lq, &lk, &rq, &rk, &e) != ATTN_OK)
        return 0;
    int64_t B = p->batch, d = p->head_dim, nq = layout_max_local_count(&lq), nk = layout_max_local_count(&lk);
    int64_t gq = layout_max_local_count(&rq), gk = layout_max_local_count(&rk);
    size_t total = 0;
    for (int u = 0; u < m.U; u++) {
        plan_heads_t h = plan_ulysses_heads(p->heads, p->kv_heads, m.U, u);
        attn_problem_t lp = plan_heads_problem(p, &h);
        size_t shards = attn_size_add(attn_size_prod4(B, p->heads, nq, held->q_vecs * d + held->shard_scalars),
                                      attn_size_mul((size_t)held->kv_tensors, attn_size_prod4(B, p->kv_heads, nk, d)));
        size_t group = attn_size_add(attn_size_prod4(B, h.hq, gq, held->q_vecs * d + held->group_scalars),
                                     attn_size_mul((size_t)held->kv_tensors, attn_size_prod4(B, h.kvn, gk, d)));
        size_t staging = attn_size_mul(2, shards > group ? shards : group);
        size_t mine = attn_size_mul(attn_size_add(attn_size_add(shards, group), staging), sizeof(float));
        mine = attn_size_add(mine, held->loop(&lp, h.kvn, gq, gk));
        total = attn_size_add(total, attn_size_mul((size_t)m.R, mine));
    }
    return total;
}

/* The forward: Q, O rows (2d) and LSE (1) in shards and group buffers, K and V. */
static size_t usp_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    const usp_held_t held = {.q_vecs = 2, .shard_scalars = 1, .group_scalars = 1, .kv_tensors = 2,
                             .loop = ring_loop_workspace};
    return usp_workspace_of(p, x, &held);
}

const attn_backend_t backend_dist_usp = {
    .name = "usp",
    .device = "cpu",
    .description = "Ulysses × ring (U × R = P): all-to-all within groups of U, a ring across the R groups",
    .layout = "zigzag",
    .supports = usp_supports,
    .forward = dist_forward,
    .forward_rank = usp_rank,
    .expect = usp_expect,
    .workspace_bytes = usp_workspace,
    .backward = dist_backward,
    .backward_rank = usp_backward_rank,
    .backward_expect = usp_backward_expect,
    .backward_workspace_bytes = usp_backward_workspace,
};
