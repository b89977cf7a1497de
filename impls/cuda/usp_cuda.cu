/* usp_cuda.cu — Ulysses × ring on GPUs (U × R = P): an all-to-all of bf16 Q, K, V within the
 * mesh gives each rank its group's shard for H/U heads, ring_cuda_loop attends it across the R
 * groups (one ring per member), an all-to-all of float32 O and LSE brings it back. The row maps
 * and offsets are usp_map.h's, replayed on the host by tests/test_usp_map.c. Design: docs/usp.md. */
#include <string.h>

#include <algorithm>
#include <memory>

#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/gcomm.cuh"
#include "impls/cuda/usp_cuda.h"

namespace {

typedef __nv_bfloat16 bf16;

/* Packed word x ↔ tensor word usp_move_at(m, idx, x): the (batch, head, row) re-slicing of both
 * all-to-alls through a row map. */
__global__ void move_kernel(usp_move_t m, const int64_t *idx, unsigned *tensor, unsigned *packed, int to_packed) {
    int64_t total = usp_move_total(m);
    for (int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; x < total; x += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = usp_move_at(m, idx, x);
        if (to_packed)
            packed[x] = tensor[t];
        else
            tensor[t] = packed[x];
    }
}

/* Rows of row_bytes (a multiple of 4) between tensor and packed, per usp_move_t with W words. */
int move(int64_t B, int64_t heads, int64_t h0, int64_t nh, int64_t count, int64_t rows, int64_t row_bytes,
         const int64_t *idx, void *tensor, void *packed, int to_packed, cudaStream_t s, attn_err_t *err) {
    usp_move_t m = {B, heads, h0, nh, count, rows, row_bytes / 4};
    int64_t total = usp_move_total(m);
    if (total == 0)
        return ATTN_OK;
    unsigned blocks = (unsigned)std::min<int64_t>((total + 255) / 256, 4096);
    move_kernel<<<blocks, 256, 0, s>>>(m, idx, (unsigned *)tensor, (unsigned *)packed, to_packed);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

/* One rank's plan: the mesh position and exchanges (plan_usp, usp_cuda_a2a), sizes, row maps. */
struct rank_plan {
    plan_usp_t pl;
    usp_cuda_a2a_t a;
    usp_cuda_sizes_t sz;
    usp_rows_t rq, rk;
    int64_t nq, nk;
    std::unique_ptr<int64_t[]> maps; /* rq.send_li, rq.recv_gi, rk.send_li, rk.recv_gi back to back */
};

int make_rank_plan(const attn_problem_t *p, const plan_usp_mesh_t *m, int r, rank_plan *rp, attn_err_t *err) {
    ATTN_TRY(plan_usp(m, p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, r, &rp->pl, err));
    usp_cuda_a2a(&rp->pl, &rp->a);
    ATTN_TRY(usp_cuda_sizes(p, m, r, &rp->sz, err));
    rp->rq.send_li = rp->rq.recv_gi = rp->rk.send_li = rp->rk.recv_gi = nullptr;
    ATTN_TRY(usp_rows_map(m, p->n_q, r, &rp->rq, err)); /* counts */
    ATTN_TRY(usp_rows_map(m, p->n_k, r, &rp->rk, err));
    int64_t n = rp->rq.n_local + rp->rq.n_group + rp->rk.n_local + rp->rk.n_group;
    rp->maps.reset(new (std::nothrow) int64_t[n + 1]);
    if (!rp->maps)
        return attn_fail(err, ATTN_ERUNTIME, "usp_cuda: out of memory for the row maps");
    int64_t *at = rp->maps.get();
    rp->rq.send_li = at, at += rp->rq.n_local;
    rp->rq.recv_gi = at, at += rp->rq.n_group;
    rp->rk.send_li = at, at += rp->rk.n_local;
    rp->rk.recv_gi = at;
    ATTN_TRY(usp_rows_map(m, p->n_q, r, &rp->rq, err));
    ATTN_TRY(usp_rows_map(m, p->n_k, r, &rp->rk, err));
    rp->nq = rp->rq.n_local, rp->nk = rp->rk.n_local;
    return ATTN_OK;
}

struct rank_state {
    dev_buf q, k, v, o, lse, send, recv, gq, kv[2], go, gl, go_part, gl_part, maps, docs;
    const int64_t *q_li, *q_gi, *k_li, *k_gi; /* the row maps on the device */
    cudaEvent_t ev[4] = {}; /* start, in exchange placed, ring done, out exchange placed (the end) */
    ~rank_state() {
        for (cudaEvent_t e : ev)
            if (e)
                cudaEventDestroy(e);
    }
};

int mesh_of(const attn_problem_t *p, int kind, int U, int P, plan_usp_mesh_t *m, attn_err_t *err) {
    ATTN_TRY(plan_usp_mesh((attn_layout_kind_t)kind, p->heads, p->kv_heads, P, U, m, err));
    if (!plan_ulysses_kernel_heads(p->heads, p->kv_heads, m->U))
        return attn_fail(err, ATTN_EUSAGE,
                         "usp_cuda: at Ulysses degree %d the %lld heads over %lld kv heads do not give every member "
                         "whole kv heads in the kernel's order (usp, on the CPU, expands them)",
                         m->U, (long long)p->heads, (long long)p->kv_heads);
    return ATTN_OK;
}

} // namespace

int usp_cuda_takes(const attn_problem_t *p, int kind, int U, int ranks, char *why, size_t len) {
    plan_usp_mesh_t m;
    attn_err_t e = {};
    if (mesh_of(p, kind, U, ranks > 1 ? ranks : 1, &m, &e) == ATTN_OK)
        return 1;
    snprintf(why, len, "%s", e.msg);
    return 0;
}

size_t usp_cuda_rank_bytes(const attn_problem_t *p, int kind, int U, int ranks, int rank) {
    plan_usp_mesh_t m;
    usp_cuda_sizes_t sz;
    attn_err_t e = {};
    if (mesh_of(p, kind, U, ranks > 1 ? ranks : 1, &m, &e) || usp_cuda_sizes(p, &m, rank, &sz, &e))
        return 0;
    return sz.total + cuda_vis_bytes(p); /* + the document offsets */
}

int usp_cuda_ranks(gcomm *g, const attn_problem_t *p, int kind, int U, const ring_cuda_host_t *h, ring_cuda_stats_t *st,
                   attn_err_t *err) {
    int P = g->size, L = g->count;
    plan_usp_mesh_t mesh;
    ATTN_TRY(mesh_of(p, kind, U, P, &mesh, err));
    int64_t B = p->batch, H = p->heads, Hkv = p->kv_heads, d = p->head_dim;
    const int64_t qrow = 2 * d, orow = 4 * d; /* bytes of a bf16 row, of a float32 row */
    std::unique_ptr<rank_plan[]> rp(new (std::nothrow) rank_plan[L]);
    if (!rp)
        return attn_fail(err, ATTN_ERUNTIME, "usp_cuda: out of memory for the plans");
    rank_state rs[ATTN_MAX_RANKS];
    for (int i = 0; i < L; i++) {
        int r = g->first + i;
        rank_plan &pl = rp[i];
        ATTN_TRY(make_rank_plan(p, &mesh, r, &pl, err));
        const usp_cuda_sizes_t &z = pl.sz;
        rank_state &s = rs[i];
        DEV_ALLOC(s.q, z.q, "usp_cuda Q shard (bf16)");
        DEV_ALLOC(s.k, z.k, "usp_cuda K shard (bf16)");
        DEV_ALLOC(s.v, z.v, "usp_cuda V shard (bf16)");
        DEV_ALLOC(s.o, z.o, "usp_cuda O shard");
        DEV_ALLOC(s.lse, z.lse, "usp_cuda LSE shard");
        DEV_ALLOC(s.send, z.stage, "usp_cuda all-to-all send staging");
        DEV_ALLOC(s.recv, z.stage, "usp_cuda all-to-all receive staging");
        DEV_ALLOC(s.gq, z.gq, "usp_cuda group Q (bf16)");
        DEV_ALLOC(s.kv[0], z.kv, "usp_cuda K/V block (bf16)");
        DEV_ALLOC(s.kv[1], z.kv, "usp_cuda K/V block (bf16)");
        DEV_ALLOC(s.go, z.go, "usp_cuda group O");
        DEV_ALLOC(s.gl, z.gl, "usp_cuda group LSE");
        DEV_ALLOC(s.go_part, z.go_part, "usp_cuda partial O");
        DEV_ALLOC(s.gl_part, z.gl_part, "usp_cuda partial LSE");
        DEV_ALLOC(s.maps, z.maps, "usp_cuda row maps");
        int64_t nmaps = pl.rq.n_local + pl.rq.n_group + pl.rk.n_local + pl.rk.n_group;
        const int64_t *dm = s.maps.as<int64_t>();
        s.q_li = dm, s.q_gi = dm + pl.rq.n_local, s.k_li = s.q_gi + pl.rq.n_group, s.k_gi = s.k_li + pl.rk.n_local;
        CUDA_TRY(cudaMemcpy(s.maps.ptr, pl.maps.get(), (size_t)nmaps * sizeof(int64_t), cudaMemcpyHostToDevice));
        st[i].device_bytes = (double)(z.total + cuda_vis_bytes(p));
        /* Upload through the receive staging buffer (free until the first exchange). */
        cudaStream_t cs = g->compute[i];
        float *stage_f = s.recv.as<float>();
        if (pl.nq > 0)
            ATTN_TRY(ring_cuda_q_in(s.q.ptr, p, h, i, g->first + i, (size_t)(B * H * pl.nq * d), stage_f, cs, err));
        if (pl.nk > 0) {
            ATTN_TRY(ring_cuda_kv_in(s.k.ptr, p, h, i, g->first + i, 0, (size_t)(B * Hkv * pl.nk * d), stage_f, cs, err));
            ATTN_TRY(ring_cuda_kv_in(s.v.ptr, p, h, i, g->first + i, 1, (size_t)(B * Hkv * pl.nk * d), stage_f, cs, err));
        }
        int64_t gn = B * pl.pl.heads.hq * pl.pl.ring_q;
        ATTN_TRY(ring_cuda_fill(s.go.as<float>(), s.gl.as<float>(), gn * d, gn, cs, err));
        attn_vis_t dvis; /* the group shard's rows keep their global positions: the ring's documents apply */
        ATTN_TRY(cuda_vis_upload(p, s.docs, &dvis, cs, err));
        CUDA_TRY(cudaStreamSynchronize(cs)); /* uploads stay outside the timed region */
        for (cudaEvent_t &e : s.ev)
            CUDA_TRY(cudaEventCreate(&e));
    }
    ATTN_TRY(gcomm_inputs_ready(g, err));
    gcomm_sizes_t sb, so, rb, ro; /* [local index][peer], one exchange at a time */
    const void *send[ATTN_MAX_RANKS];
    void *recv[ATTN_MAX_RANKS];
    /* 1. In: to rank q = (g, u) my rows of g's shard, Q of u's heads then K and V of the kv heads
     * u reads. Everything on the comm stream, which waits for the uploads. */
    for (int i = 0; i < L; i++) {
        rank_plan &pl = rp[i];
        rank_state &s = rs[i];
        cudaStream_t cm = g->comm[i];
        CUDA_TRY(cudaEventRecord(s.ev[0], g->compute[i]));
        CUDA_TRY(cudaStreamWaitEvent(cm, s.ev[0], 0));
        for (int q = 0; q < P; q++) {
            int gq_, uq;
            plan_usp_coords(&mesh, q, &gq_, &uq);
            plan_heads_t hr = plan_ulysses_heads(H, Hkv, mesh.U, uq);
            int64_t rows_q = pl.rq.send_start[gq_ + 1] - pl.rq.send_start[gq_];
            int64_t rows_k = pl.rk.send_start[gq_ + 1] - pl.rk.send_start[gq_];
            char *at = s.send.as<char>() + pl.a.so_in[q];
            ATTN_TRY(move(B, H, hr.q0, hr.hq, pl.nq, rows_q, qrow, s.q_li + pl.rq.send_start[gq_], s.q.ptr, at, 1, cm,
                          err));
            ATTN_TRY(move(B, Hkv, hr.kv0, hr.kvn, pl.nk, rows_k, qrow, s.k_li + pl.rk.send_start[gq_], s.k.ptr,
                          at + pl.a.send_k_at[q], 1, cm, err));
            ATTN_TRY(move(B, Hkv, hr.kv0, hr.kvn, pl.nk, rows_k, qrow, s.k_li + pl.rk.send_start[gq_], s.v.ptr,
                          at + pl.a.send_v_at[q], 1, cm, err));
            sb[i][q] = pl.a.sb_in[q], so[i][q] = pl.a.so_in[q], rb[i][q] = pl.a.rb_in[q], ro[i][q] = pl.a.ro_in[q];
        }
        send[i] = s.send.ptr, recv[i] = s.recv.ptr;
    }
    ATTN_TRY(gcomm_alltoallv(g, send, sb, so, recv, rb, ro, err));
    /* Peer a's rows land at their rows of my group shard: Q, and my own ring block (K then V). */
    ring_cuda_member_t mem[ATTN_MAX_RANKS];
    cudaEvent_t ring_done[ATTN_MAX_RANKS];
    for (int i = 0; i < L; i++) {
        rank_plan &pl = rp[i];
        rank_state &s = rs[i];
        const plan_heads_t &hd = pl.pl.heads;
        int64_t gq = pl.pl.ring_q, gk = pl.pl.ring_k;
        cudaStream_t cm = g->comm[i];
        bf16 *kblock = s.kv[usp_ring_buffer(0)].as<bf16>();
        for (int a = 0; a < P; a++) {
            int64_t rows_q = pl.rq.recv_start[a + 1] - pl.rq.recv_start[a];
            int64_t rows_k = pl.rk.recv_start[a + 1] - pl.rk.recv_start[a];
            char *at = s.recv.as<char>() + pl.a.ro_in[a];
            ATTN_TRY(move(B, hd.hq, 0, hd.hq, gq, rows_q, qrow, s.q_gi + pl.rq.recv_start[a], s.gq.ptr, at, 0, cm, err));
            ATTN_TRY(move(B, hd.kvn, 0, hd.kvn, gk, rows_k, qrow, s.k_gi + pl.rk.recv_start[a], kblock,
                          at + pl.a.recv_k_at[a], 0, cm, err));
            ATTN_TRY(move(B, hd.kvn, 0, hd.kvn, gk, rows_k, qrow, s.k_gi + pl.rk.recv_start[a],
                          kblock + B * hd.kvn * gk * d, at + pl.a.recv_v_at[a], 0, cm, err));
        }
        CUDA_TRY(cudaEventRecord(s.ev[1], cm));
        CUDA_TRY(cudaStreamWaitEvent(g->compute[i], s.ev[1], 0));
        mem[i] = {pl.pl.group, 1, pl.pl.send_to, pl.pl.recv_from, hd.hq, hd.kvn, s.gq.ptr, {s.kv[0].ptr, s.kv[1].ptr},
                  s.go.as<float>(), s.gl.as<float>(), s.go_part.as<float>(), s.gl_part.as<float>(),
                  s.docs.as<int64_t>()};
        ring_done[i] = s.ev[2];
    }
    /* 2. The ring across the R groups, each member on its heads (they line up: mesh_of). */
    ATTN_TRY(ring_cuda_loop(g, p, mesh.kind, mesh.R, mem, ring_done, st, err));
    /* 3. Out: O then LSE of peer a's rows of my group shard, my heads, back to a. */
    for (int i = 0; i < L; i++) {
        rank_plan &pl = rp[i];
        rank_state &s = rs[i];
        const plan_heads_t &hd = pl.pl.heads;
        int64_t gq = pl.pl.ring_q;
        cudaStream_t cm = g->comm[i];
        CUDA_TRY(cudaStreamWaitEvent(cm, s.ev[2], 0));
        for (int a = 0; a < P; a++) {
            int64_t rows = pl.rq.recv_start[a + 1] - pl.rq.recv_start[a];
            const int64_t *idx = s.q_gi + pl.rq.recv_start[a];
            char *at = s.send.as<char>() + pl.a.so_out[a];
            ATTN_TRY(move(B, hd.hq, 0, hd.hq, gq, rows, orow, idx, s.go.ptr, at, 1, cm, err));
            ATTN_TRY(move(B, hd.hq, 0, hd.hq, gq, rows, 4, idx, s.gl.ptr, at + B * hd.hq * rows * orow, 1, cm, err));
            sb[i][a] = pl.a.sb_out[a], so[i][a] = pl.a.so_out[a], rb[i][a] = pl.a.rb_out[a], ro[i][a] = pl.a.ro_out[a];
        }
    }
    ATTN_TRY(gcomm_alltoallv(g, send, sb, so, recv, rb, ro, err));
    for (int i = 0; i < L; i++) {
        rank_plan &pl = rp[i];
        rank_state &s = rs[i];
        cudaStream_t cm = g->comm[i];
        for (int q = 0; q < P; q++) { /* from rank q = (g, u): u's heads of my rows in g's shard */
            int gq_, uq;
            plan_usp_coords(&mesh, q, &gq_, &uq);
            plan_heads_t hr = plan_ulysses_heads(H, Hkv, mesh.U, uq);
            int64_t rows = pl.rq.send_start[gq_ + 1] - pl.rq.send_start[gq_];
            const int64_t *idx = s.q_li + pl.rq.send_start[gq_];
            const char *at = s.recv.as<char>() + pl.a.ro_out[q];
            ATTN_TRY(move(B, H, hr.q0, hr.hq, pl.nq, rows, orow, idx, s.o.ptr, (void *)at, 0, cm, err));
            ATTN_TRY(move(B, H, hr.q0, hr.hq, pl.nq, rows, 4, idx, s.lse.ptr, (void *)(at + B * hr.hq * rows * orow), 0,
                          cm, err));
        }
        CUDA_TRY(cudaEventRecord(s.ev[3], cm));
    }
    for (int i = 0; i < L; i++)
        ATTN_TRY(gcomm_sync(g, rs[i].ev[3], "usp_cuda all-to-all back", err));
    for (int i = 0; i < L; i++) {
        int r = g->first + i;
        rank_plan &pl = rp[i];
        rank_state &s = rs[i];
        /* The exchanges' bytes (the self part is a local copy), beside the ring's from the loop. */
        for (int q = 0; q < P; q++)
            if (q != r) {
                st[i].bytes_sent += (double)(pl.a.sb_in[q] + pl.a.sb_out[q]);
                st[i].bytes_recv += (double)(pl.a.rb_in[q] + pl.a.rb_out[q]);
            }
        /* Nothing computes while the all-to-alls run: both are exposed. */
        double a2a = seconds_between(s.ev[0], s.ev[1]) + seconds_between(s.ev[2], s.ev[3]);
        st[i].comm_s += a2a, st[i].exposed_s += a2a;
        st[i].wall_s = seconds_between(s.ev[0], s.ev[3]);
        size_t on = (size_t)(B * H * pl.nq);
        if (on) /* the rows are whole */
            ATTN_TRY(ring_cuda_ol_out(h, i, g->first + i, s.o.as<float>(), s.lse.as<float>(), (int64_t)on, d,
                                      g->compute[i], err));
    }
    return ATTN_OK;
}
