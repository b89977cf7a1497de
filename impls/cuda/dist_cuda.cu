/* dist_cuda.cu — the GPU distributed backends' table entries (ring_cuda, striped_cuda,
 * zigzag_cuda, ulysses_cuda, usp_cuda) and their two drivers: all P virtual ranks from this thread under
 * cuda_local, dist_forward (impls/parallel/dist.c) under nccl. Design: docs/ring.md. */
#include <stdlib.h>
#include <string.h>

#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/ring_cuda.h"
#include "impls/cuda/ring_cuda_grad.h"
#include "impls/cuda/ulysses_cuda.h"
#include "impls/cuda/ulysses_cuda_grad.h"
#include "impls/cuda/usp_cuda.h"
#include "impls/cuda/usp_cuda_grad.h"

extern "C" {
#include "impls/parallel/dist.h"
#include "impls/parallel/ring.h" /* ring_backward_expect */
#include "comm/layout.h"
}

namespace {

enum { RING = 0, ULYSSES, USP };

struct dist_cuda_ctx {
    attn_layout_kind_t kind; /* usp: the default; --layout chooses */
    int scheme; /* RING: the ring loop under `kind`; ULYSSES: the all-to-all re-shard (contiguous);
                 * USP: both over the U × R mesh (--ulysses-degree) */
};

const dist_cuda_ctx *ctx_of(const attn_backend_t *self) { return (const dist_cuda_ctx *)self->ctx; }
int scheme_of(const attn_backend_t *self) { return ctx_of(self)->scheme; }
/* The layout of the call: fixed but for usp_cuda, whose ring takes any (--layout). */
attn_layout_kind_t kind_of(const attn_backend_t *self, const attn_exec_t *x) {
    return scheme_of(self) == USP && x->layout >= 0 ? (attn_layout_kind_t)x->layout : ctx_of(self)->kind;
}

size_t rank_bytes(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, int P, int r) {
    switch (scheme_of(self)) {
    case ULYSSES:
        return ulysses_cuda_rank_bytes(p, P, r);
    case USP:
        return usp_cuda_rank_bytes(p, (int)kind_of(self, x), x->ulysses_degree, P, r);
    default:
        return ring_cuda_rank_bytes(p, P, (int)kind_of(self, x), r);
    }
}

int run_ranks(const attn_backend_t *self, const attn_exec_t *x, gcomm *g, const attn_problem_t *p,
              const ring_cuda_host_t *h, ring_cuda_stats_t *st, attn_err_t *err) {
    switch (scheme_of(self)) {
    case ULYSSES:
        return ulysses_cuda_ranks(g, p, h, st, err);
    case USP:
        return usp_cuda_ranks(g, p, (int)kind_of(self, x), x->ulysses_degree, h, st, err);
    default:
        return ring_cuda_ranks(g, p, (int)kind_of(self, x), h, st, err);
    }
}

/* Host float32 shards of every rank this process drives, freed on every return path. */
struct host_shards {
    ring_cuda_host_t h = {};
    float *mem[5 * ATTN_MAX_RANKS] = {};
    int n = 0;
    host_shards() = default;
    host_shards(const host_shards &) = delete;
    host_shards &operator=(const host_shards &) = delete;
    ~host_shards() {
        for (int i = 0; i < n; i++)
            attn_free(mem[i]);
    }
    float *take(size_t floats, attn_err_t *err, const char *what) {
        float *p = (float *)attn_alloc(floats * sizeof(float) + 16, err, what);
        if (p)
            mem[n++] = p;
        return p;
    }
    /* Buffers for local index i = global rank r (K and V only when with_kv, Q, O and LSE only when
     * with_qo: not from the device). */
    int alloc(const attn_problem_t *p, const attn_layout_t *lq, const attn_layout_t *lk, int i, int r,
              attn_err_t *err, int with_kv = 1, int with_qo = 1) {
        int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
        size_t nq = (size_t)layout_local_count(lq, r), nk = (size_t)layout_local_count(lk, r);
        if (with_qo) {
            h.q[i] = take((size_t)BH * nq * d, err, "ring_cuda host Q shard");
            h.o[i] = take((size_t)BH * nq * d, err, "ring_cuda host O shard");
            h.lse[i] = take((size_t)BH * nq, err, "ring_cuda host LSE shard");
        }
        if (with_kv) {
            h.k[i] = take((size_t)BHkv * nk * d, err, "ring_cuda host K shard");
            h.v[i] = take((size_t)BHkv * nk * d, err, "ring_cuda host V shard");
        }
        return (!with_qo || (h.q[i] && h.o[i] && h.lse[i])) && (!with_kv || (h.k[i] && h.v[i])) ? ATTN_OK
                                                                                                 : ATTN_ERUNTIME;
    }
};

void fill_dist(const ring_cuda_stats_t *st, int P, attn_dist_stats_t *out) {
    memset(out, 0, sizeof *out);
    out->ranks = P;
    for (int r = 0; r < P; r++) {
        out->compute_s[r] = st[r].compute_s, out->comm_s[r] = st[r].comm_s, out->exposed_s[r] = st[r].exposed_s;
        out->bytes_sent[r] = st[r].bytes_sent, out->bytes_recv[r] = st[r].bytes_recv;
        out->blocks_computed[r] = st[r].blocks_computed, out->blocks_skipped[r] = st[r].blocks_skipped;
        out->device_bytes[r] = st[r].device_bytes;
        out->wall_s = std::max(out->wall_s, st[r].wall_s);
    }
    for (int s = 0; s < P; s++) {
        double worst = 0;
        for (int r = 0; r < P; r++)
            worst = std::max(worst, st[r].step_compute_s[s]);
        out->critical_path_s += worst;
    }
}

int local_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err) {
    ATTN_TRY(cuda_begin(x, err));
    int P = exec_ranks(x);
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, kind_of(self, x), p->n_q, P, err));
    ATTN_TRY(layout_init(&lk, kind_of(self, x), p->n_k, P, err));
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    host_shards hs;
    /* A KV cache on the device (kv_device): each rank's K/V shard is copied from it on the device
     * (ring_cuda_kv_in); only Q's shards are made here. */
    const int kv_dev = x->kv_device, qo_dev = x->qo_device; /* qo_device: Q's too, and O/LSE's back */
    for (int r = 0; r < P; r++) {
        ATTN_TRY(hs.alloc(p, &lq, &lk, r, r, err, !kv_dev, !qo_dev));
        if (!qo_dev)
            dist_shard_copy(&lq, r, BH, d, (float *)hs.h.q[r], (float *)io->q, 1);
        if (!kv_dev) {
            dist_shard_copy(&lk, r, BHkv, d, (float *)hs.h.k[r], (float *)io->k, 1);
            dist_shard_copy(&lk, r, BHkv, d, (float *)hs.h.v[r], (float *)io->v, 1);
        }
    }
    if (kv_dev)
        hs.h.k_dev = io->k, hs.h.v_dev = io->v, hs.h.kv_layout = &lk;
    if (qo_dev)
        hs.h.q_dev = (const float *)io->q, hs.h.o_dev = (float *)io->o, hs.h.lse_dev = (float *)io->lse, hs.h.q_layout = &lq;
    gcomm g = {};
    ring_cuda_stats_t st[ATTN_MAX_RANKS] = {};
    int rc = gcomm_local_open(&g, P, x->device, x->comm_timeout, err);
    if (rc == ATTN_OK)
        rc = run_ranks(self, x, &g, p, &hs.h, st, err);
    gcomm_close(&g);
    ATTN_TRY(rc);
    for (int r = 0; r < P && !qo_dev; r++) {
        dist_shard_copy(&lq, r, BH, d, hs.h.o[r], (float *)io->o, 0);
        dist_shard_copy(&lq, r, BH, 1, hs.h.lse[r], (float *)io->lse, 0);
    }
    attn_dist_stats_t all;
    fill_dist(st, P, &all);
    if (io->dist)
        *io->dist = all;
    if (io->device_s)
        *io->device_s = all.wall_s;
    return ATTN_OK;
}

/* One NCCL communicator per process, kept across calls (creating one costs seconds); rebuilt
 * when the world or the device changes, and dropped after an error. */
gcomm nccl_world = {};

/* This process's rank among the job's processes on its node: GPUs are numbered per node. */
int node_local_rank(int world_rank) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
    for (const char *v : vars) {
        const char *s = getenv(v);
        if (s && *s)
            return atoi(s);
    }
    return world_rank; /* one node */
}

/* At exit, before the CUDA runtime's own teardown (atexit runs in reverse order of registration). */
void nccl_world_at_exit(void) { gcomm_close(&nccl_world); }

/* This process's rank under nccl: its GPU chosen and current (*mine: x with that device), and
 * nccl_world open for the job's P ranks (kept across calls). */
int nccl_enter(attn_comm_t *c, const attn_exec_t *x, attn_exec_t *mine, attn_err_t *err) {
    int P = c->size, me = c->rank;
    /* One GPU per rank: a rank uses device --device + its rank on its node, unless the launcher
     * already gave each rank its own GPU (CUDA_VISIBLE_DEVICES naming one device). */
    char why[256];
    int n_dev = device_count(why, sizeof why);
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    int own_gpu = n_dev == 1 && visible && *visible && !strchr(visible, ',');
    *mine = *x;
    mine->device = own_gpu ? x->device : x->device + node_local_rank(me);
    x = mine;
    if (n_dev > 0 && x->device >= n_dev)
        return attn_fail(err, ATTN_ERUNTIME, "nccl: rank %d needs CUDA device %d but this node has %d (one GPU per rank)",
                         me, x->device, n_dev);
    ATTN_TRY(cuda_begin(x, err));
    if (nccl_world.count && (nccl_world.size != P || nccl_world.device != x->device))
        gcomm_close(&nccl_world);
    if (!nccl_world.count) {
        static int at_exit_set;
        ATTN_TRY(gcomm_nccl_open_mpi(&nccl_world, c, x->device, x->comm_timeout, err));
        if (!at_exit_set)
            at_exit_set = atexit(nccl_world_at_exit) == 0;
    }
    nccl_world.timeout_s = x->comm_timeout > 0 ? x->comm_timeout : 300.0;
    return ATTN_OK;
}

/* dist_report's figures of one nccl rank (the comm ones are the GPU streams'), then the device
 * bytes of every rank on rank 0. */
int nccl_report(attn_comm_t *c, const ring_cuda_stats_t &st, attn_dist_stats_t *out, attn_err_t *err) {
    int P = c->size, me = c->rank;
    comm_stats_reset(c);
    c->stats.total_s = st.comm_s, c->stats.exposed_s = st.exposed_s;
    c->stats.bytes_sent = (uint64_t)st.bytes_sent, c->stats.bytes_recv = (uint64_t)st.bytes_recv;
    dist_rank_stats_t mine = {st.compute_s, st.blocks_computed, st.blocks_skipped, st.wall_s, st.step_compute_s, P};
    ATTN_TRY(dist_report(c, &mine, out, err));
    double dev[ATTN_MAX_RANKS] = {};
    dev[me] = st.device_bytes;
    ATTN_TRY(comm_allreduce(c, dev, P, COMM_SUM, (1 << 20) + 3, err));
    if (me == 0 && out)
        memcpy(out->device_bytes, dev, sizeof dev);
    return ATTN_OK;
}

int nccl_rank(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_comm_t *c, const attn_io_t *io,
              attn_err_t *err) {
    int P = c->size, me = c->rank;
    attn_exec_t mine_x;
    ATTN_TRY(nccl_enter(c, x, &mine_x, err));
    x = &mine_x;
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, kind_of(self, x), p->n_q, P, err));
    ATTN_TRY(layout_init(&lk, kind_of(self, x), p->n_k, P, err));
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    host_shards hs;
    ATTN_TRY(hs.alloc(p, &lq, &lk, 0, me, err));
    ATTN_TRY(dist_scatter(c, &lq, BH, d, (const float *)io->q, (float *)hs.h.q[0], err));
    ATTN_TRY(dist_scatter(c, &lk, BHkv, d, (const float *)io->k, (float *)hs.h.k[0], err));
    ATTN_TRY(dist_scatter(c, &lk, BHkv, d, (const float *)io->v, (float *)hs.h.v[0], err));
    nccl_world.world = c; /* the barrier before the timed region, once the uploads are done */
    ring_cuda_stats_t st = {};
    int rc = run_ranks(self, x, &nccl_world, p, &hs.h, &st, err);
    if (rc != ATTN_OK) {
        gcomm_abort(&nccl_world); /* peers may be blocked on this rank: no graceful finalize */
        gcomm_close(&nccl_world);
        return rc;
    }
    /* dist_report gathers the figures over MPI; the comm ones are the GPU streams' here. */
    ATTN_TRY(nccl_report(c, st, io->dist, err));
    ATTN_TRY(dist_gather(c, &lq, BH, d, hs.h.o[0], (float *)io->o, err));
    return dist_gather(c, &lq, BH, 1, hs.h.lse[0], (float *)io->lse, err);
}

int dist_cuda_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    if (x->merge != ATTN_MERGE_F32) { /* merge_kernel is float32; a bf16 merge is the CPU ring's for now */
        snprintf(reason, len, "%s merges its partial results in float32 only (--merge-dtype bf16: ring, striped, zigzag)",
                 self->name);
        return 0;
    }
    if (scheme_of(self) != USP && x->layout >= 0 && x->layout != (int)kind_of(self, x)) {
        snprintf(reason, len, "%s always uses the %s layout", self->name, layout_name(kind_of(self, x)));
        return 0;
    }
    int P = exec_ranks(x);
    char why[256];
    if ((x->kv_device || x->qo_device) && (x->transport != ATTN_TRANSPORT_CUDA_LOCAL || !dtype_is_16bit(p->dtype))) {
        snprintf(reason, len, "%s reads K/V (and Q/O) in device memory only under cuda_local and in bf16 or f16 "
                 "(every rank's shard is copied from them on the one device)", self->name);
        return 0;
    }
    if (scheme_of(self) == USP && !usp_cuda_takes(p, (int)kind_of(self, x), x->ulysses_degree, P, why, sizeof why)) {
        snprintf(reason, len, "%s", why);
        return 0;
    }
    if (scheme_of(self) == ULYSSES && !plan_ulysses_kernel_heads(p->heads, p->kv_heads, P)) {
        snprintf(reason, len, "%s needs the %lld heads (over %lld kv heads) to split evenly over %d ranks",
                 self->name, (long long)p->heads, (long long)p->kv_heads, P);
        return 0;
    }
    if (!dist_supports_common(self, p, x, reason, len))
        return 0;
    if (!cuda_flash_supports(p, why, sizeof why)) {
        snprintf(reason, len, "%s %s", self->name, why);
        return 0;
    }
    /* cuda_local: every rank's buffers on the one device; nccl: this process's rank. */
    size_t bytes = 0;
    for (int r = 0; r < (x->transport == ATTN_TRANSPORT_NCCL ? 1 : P); r++)
        bytes += rank_bytes(self, p, x, P, r);
    return cuda_supports_device(self, x, bytes, reason, len);
}

int dist_cuda_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err) {
    if (x->transport == ATTN_TRANSPORT_NCCL)
        return dist_forward(self, p, x, io, err);
    return local_forward(self, p, x, io, err);
}

void dist_cuda_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_dist_expect_t *out) {
    plan_usp_mesh_t m;
    attn_err_t err = {};
    if (scheme_of(self) == ULYSSES)
        ulysses_cuda_expect(p, exec_ranks(x), out);
    else if (scheme_of(self) != USP)
        dist_ring_expect(kind_of(self, x), p, exec_ranks(x), 2.0, out);
    else if (plan_usp_mesh(kind_of(self, x), p->heads, p->kv_heads, exec_ranks(x), x->ulysses_degree, &m, &err) == ATTN_OK)
        usp_cuda_expect(&m, p, out);
    else
        memset(out, 0, sizeof *out);
}

size_t dist_cuda_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    size_t bytes = 0;
    int P = exec_ranks(x);
    for (int r = 0; r < P; r++)
        bytes += rank_bytes(self, p, x, P, r);
    return bytes;
}

/* The backward of the ring family (ring_cuda_grad.cu), of ulysses_cuda (ulysses_cuda_grad.cu; bf16) and of
 * usp_cuda (usp_cuda_grad.cu; cuda_local only, no per-rank figures):
 * all P virtual ranks here under cuda_local, the per-rank figures filled as the forward's; under
 * nccl dist_backward runs nccl_backward_rank on every process. Their workspace figure is every
 * rank's device bytes, as the forward's. */
int dist_cuda_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                       const attn_grad_io_t *g, attn_err_t *err) {
    if (scheme_of(self) == USP) /* cuda_local only (usp_cuda_grad_takes); no per-rank figures */
        return usp_cuda_backward_local(p, x, (int)kind_of(self, x), x->ulysses_degree, g, g->device_s, err);
    if (x->transport == ATTN_TRANSPORT_NCCL)
        return dist_backward(self, p, x, g, err);
    int P = exec_ranks(x);
    ring_cuda_stats_t st[ATTN_MAX_RANKS] = {};
    if (scheme_of(self) == ULYSSES)
        ATTN_TRY(ulysses_cuda_backward_local(p, x, g, st, err));
    else
        ATTN_TRY(ring_cuda_backward_local(p, x, (int)kind_of(self, x), g, st, err));
    attn_dist_stats_t all;
    fill_dist(st, P, &all);
    if (g->dist)
        *g->dist = all;
    if (g->device_s)
        *g->device_s = all.wall_s;
    return ATTN_OK;
}

/* A backward rank under nccl, both ends: this rank's shards of Q, O, dO, LSE, K and V (into
 * in[0..5]) scattered from rank 0; then, after its run (rc), the figures reported and dQ, dK, dV
 * (from out[0..2]) gathered on rank 0. A failed run aborts the communicator: peers may be blocked
 * on this rank, so no graceful finalize. */
struct grad_shards {
    const attn_layout_t *lq, *lk;
    int64_t bh, bhkv, d;
};
int grad_scatter(attn_comm_t *c, const grad_shards &s, const attn_grad_io_t *g, float *const in[6], attn_err_t *err) {
    ATTN_TRY(dist_scatter(c, s.lq, s.bh, s.d, (const float *)g->q, in[0], err));
    ATTN_TRY(dist_scatter(c, s.lq, s.bh, s.d, (const float *)g->o, in[1], err));
    ATTN_TRY(dist_scatter(c, s.lq, s.bh, s.d, (const float *)g->d_o, in[2], err));
    ATTN_TRY(dist_scatter(c, s.lq, s.bh, 1, (const float *)g->lse, in[3], err));
    ATTN_TRY(dist_scatter(c, s.lk, s.bhkv, s.d, (const float *)g->k, in[4], err));
    ATTN_TRY(dist_scatter(c, s.lk, s.bhkv, s.d, (const float *)g->v, in[5], err));
    nccl_world.world = c; /* the barrier before the timed region, once the uploads are done */
    return ATTN_OK;
}
int grad_finish(attn_comm_t *c, int rc, const ring_cuda_stats_t &st, const grad_shards &s, const attn_grad_io_t *g,
                float *const out[3], attn_err_t *err) {
    if (rc != ATTN_OK) {
        gcomm_abort(&nccl_world);
        gcomm_close(&nccl_world);
        return rc;
    }
    ATTN_TRY(nccl_report(c, st, g->dist, err));
    if (c->rank == 0 && g->device_s)
        *g->device_s = st.wall_s;
    ATTN_TRY(dist_gather(c, s.lq, s.bh, s.d, out[0], (float *)g->dq, err));
    ATTN_TRY(dist_gather(c, s.lk, s.bhkv, s.d, out[1], (float *)g->dk, err));
    return dist_gather(c, s.lk, s.bhkv, s.d, out[2], (float *)g->dv, err);
}

/* ulysses_cuda's rank under nccl (nccl_backward_rank): its contiguous shards of Q, O, dO, LSE, K
 * and V scattered from rank 0, ulysses_cuda_grad_ranks on its GPU (both all-to-alls over the
 * job's communicator), the figures reported and dQ, dK, dV gathered on rank 0. */
int nccl_ulysses_backward_rank(const attn_problem_t *p, const attn_exec_t *x, attn_comm_t *c, const attn_grad_io_t *g,
                               attn_err_t *err) {
    char why[256];
    if (!ulysses_cuda_grad_takes(p, x, why, sizeof why))
        return attn_fail(err, ATTN_EUSAGE, "%s", why);
    int P = c->size, me = c->rank;
    attn_exec_t mine_x;
    ATTN_TRY(nccl_enter(c, x, &mine_x, err));
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, LAYOUT_CONTIGUOUS, p->n_q, P, err));
    ATTN_TRY(layout_init(&lk, LAYOUT_CONTIGUOUS, p->n_k, P, err));
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    ulysses_grad_host h;
    ATTN_TRY(h.alloc(p, P, 0, me, err));
    const grad_shards sh = {&lq, &lk, BH, BHkv, d};
    float *const in[6] = {h.q[0], h.o[0], h.d_o[0], h.lse[0], h.k[0], h.v[0]}, *const out[3] = {h.dq[0], h.dk[0], h.dv[0]};
    ATTN_TRY(grad_scatter(c, sh, g, in, err));
    ring_cuda_stats_t st = {};
    return grad_finish(c, ulysses_cuda_grad_ranks(&nccl_world, p, &h, &st, err), st, sh, g, out, err);
}

/* One process's rank of the backward under nccl (dist_backward, dist_follow): its shards of Q, O,
 * dO, LSE, K and V scattered from rank 0, ring_cuda_grad_ranks on its GPU, the figures reported
 * and dQ, dK, dV gathered on rank 0 (as nccl_rank's forward); ulysses_cuda's is the one above. */
int nccl_backward_rank(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, attn_comm_t *c,
                       const attn_grad_io_t *g, attn_err_t *err) {
    if (scheme_of(self) == ULYSSES)
        return nccl_ulysses_backward_rank(p, x, c, g, err);
    char why[256];
    if (!ring_cuda_grad_takes(p, x, why, sizeof why))
        return attn_fail(err, ATTN_EUSAGE, "%s", why);
    int P = c->size, me = c->rank, kind = (int)kind_of(self, x);
    attn_exec_t mine_x;
    ATTN_TRY(nccl_enter(c, x, &mine_x, err));
    attn_layout_t lq, lk;
    ATTN_TRY(ring_cuda_grad_layouts(p, kind, P, &lq, &lk, err));
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    size_t kn = (size_t)(BHkv * layout_local_count(&lk, me) * d);
    ring_cuda_grad_host_t h;
    ATTN_TRY(h.alloc(p, &lq, &lk, 0, me, err));
    const grad_shards sh = {&lq, &lk, BH, BHkv, d};
    float *const in[6] = {h.q[0], h.o[0], h.d_o[0], h.lse[0], h.kv[0], h.kv[0] + kn},
                 *const out[3] = {h.dq[0], h.dkv[0], h.dkv[0] + kn};
    ATTN_TRY(grad_scatter(c, sh, g, in, err));
    ring_cuda_stats_t st = {};
    return grad_finish(c, ring_cuda_grad_ranks(&nccl_world, p, kind, h, &st, err), st, sh, g, out, err);
}

/* The ring family's backward declines what ring_cuda_grad_takes does (the dtype, the head dim),
 * so the tasks record a skip with the reason rather than a run-time error. */
int ring_supports_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *why,
                           size_t len) {
    char r[256];
    if (ring_cuda_grad_takes(p, x, r, sizeof r))
        return 1;
    snprintf(why, len, "%s: %s", self->name, r);
    return 0;
}

size_t bwd_rank_bytes(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, int P, int r) {
    return scheme_of(self) == ULYSSES ? ulysses_cuda_grad_rank_bytes(p, P, r)
                                      : ring_cuda_grad_rank_bytes(p, P, (int)kind_of(self, x), r);
}

size_t dist_cuda_bwd_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    if (scheme_of(self) == USP) /* one member's ring of R ranks at a time */
        return usp_cuda_grad_bytes(p, (int)kind_of(self, x), x->ulysses_degree, exec_ranks(x));
    size_t bytes = 0;
    int P = exec_ranks(x);
    for (int r = 0; r < P; r++)
        bytes = attn_size_add(bytes, bwd_rank_bytes(self, p, x, P, r));
    return bytes;
}

/* ulysses_cuda's backward: what ulysses_cuda_grad_takes declines, and the device bytes against
 * the device's free memory: every rank's under cuda_local (all on the one device), one rank's
 * under nccl (as dist_cuda_supports judges the forward). */
int ulysses_supports_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *why,
                              size_t len) {
    char r[256];
    if (!ulysses_cuda_grad_takes(p, x, r, sizeof r)) {
        snprintf(why, len, "%s: %s", self->name, r);
        return 0;
    }
    size_t bytes = x->transport == ATTN_TRANSPORT_NCCL ? bwd_rank_bytes(self, p, x, exec_ranks(x), 0)
                                                       : dist_cuda_bwd_workspace(self, p, x);
    return cuda_supports_device(self, x, bytes, why, len);
}

/* usp_cuda's backward: what usp_cuda_grad_takes declines (nccl, the mesh, the ring backward's dtype
 * and head dims), and the peak device bytes (one member's ring) against the device's free memory. */
int usp_supports_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *why,
                          size_t len) {
    char r[256];
    if (!usp_cuda_grad_takes(p, x, (int)kind_of(self, x), x->ulysses_degree, r, sizeof r)) {
        snprintf(why, len, "%s: %s", self->name, r);
        return 0;
    }
    return cuda_supports_device(self, x, dist_cuda_bwd_workspace(self, p, x), why, len);
}

/* ulysses_cuda's analytic backward figures (ulysses_cuda_grad_expect), the tasks' yardstick for
 * its per-rank bytes. */
void ulysses_backward_expect_cuda(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                                  attn_dist_expect_t *out) {
    (void)self;
    ulysses_cuda_grad_expect(p, exec_ranks(x), out);
}

const dist_cuda_ctx ring_ctx = {LAYOUT_CONTIGUOUS, RING}, striped_ctx = {LAYOUT_STRIPED, RING},
                    zigzag_ctx = {LAYOUT_ZIGZAG, RING}, ulysses_ctx = {LAYOUT_CONTIGUOUS, ULYSSES},
                    usp_ctx = {LAYOUT_ZIGZAG, USP};

} // namespace

/* BWD_RANK (nccl's per-process backward) and BWD_EXPECT (ring_grad.c's: the forward's balance plus
 * the float32 dK/dV hops) give the tasks the backward's per-rank figures; BWD_TAKES is the
 * backward's supports hook. */
#define DIST_CUDA_BACKEND_BWD(var, NAME, LAYOUT, CTX, DESC, BWD, BWD_RANK, BWD_EXPECT, BWD_WS, BWD_TAKES)          \
    extern "C" const attn_backend_t var = {NAME, "cuda", DESC, LAYOUT, dist_cuda_supports, dist_cuda_forward,     \
                                           nccl_rank, dist_cuda_expect, dist_cuda_workspace, &CTX,          \
                                           nullptr, nullptr, nullptr, nullptr, 0, /* built in: no peer, harness-timed, exact */ \
                                           BWD, BWD_RANK, BWD_EXPECT, BWD_WS, nullptr,                       \
                                           1 /* device_kv: cuda_local copies shards from a device cache */,     \
                                           1 /* device_qo: cuda_local cuts Q and writes O/LSE back there */, BWD_TAKES};
#define DIST_CUDA_BACKEND(var, NAME, LAYOUT, CTX, DESC)                                                           \
    DIST_CUDA_BACKEND_BWD(var, NAME, LAYOUT, CTX, DESC, nullptr, nullptr, nullptr, nullptr, nullptr)
#define DIST_CUDA_RING_BACKEND(var, NAME, LAYOUT, CTX, DESC)                                                      \
    DIST_CUDA_BACKEND_BWD(var, NAME, LAYOUT, CTX, DESC, dist_cuda_backward, nccl_backward_rank, ring_backward_expect, \
                          dist_cuda_bwd_workspace, ring_supports_backward)

DIST_CUDA_RING_BACKEND(backend_cuda_ring, "ring_cuda", "contiguous", ring_ctx,
                  "ring attention on GPUs: tensor-core kernel per step, next K/V block copied meanwhile; bf16 or f16")
DIST_CUDA_RING_BACKEND(backend_cuda_striped, "striped_cuda", "striped", striped_ctx,
                  "ring_cuda with token t on rank t mod P (balanced causal work); bf16 or f16")
DIST_CUDA_RING_BACKEND(backend_cuda_zigzag, "zigzag_cuda", "zigzag", zigzag_ctx,
                  "ring_cuda with chunks p and 2P−1−p on rank p (balanced, contiguous); bf16 or f16")
DIST_CUDA_BACKEND_BWD(backend_cuda_ulysses, "ulysses_cuda", "contiguous", ulysses_ctx,
                      "all-to-all from token shards to head shards, tensor-core kernel on all tokens, all-to-all back; "
                      "bf16 or f16",
                      dist_cuda_backward, nccl_backward_rank, ulysses_backward_expect_cuda, dist_cuda_bwd_workspace,
                      ulysses_supports_backward)
DIST_CUDA_BACKEND_BWD(backend_cuda_usp, "usp_cuda", "zigzag", usp_ctx,
                      "Ulysses × ring on GPUs (U × R = P): all-to-all within groups of U, ring_cuda's loop across the "
                      "R groups; bf16 or f16",
                      dist_cuda_backward, nullptr, nullptr, dist_cuda_bwd_workspace, usp_supports_backward)
