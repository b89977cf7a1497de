/* ulysses_cuda_grad.cu — ulysses_cuda's backward: flash_bwd_prep on each token shard (D = rowsum(dO∘O),
 * dO → bf16, LSE → base 2, so O never travels), an all-to-all of Q, dO, LSE, D, K, V to H/P heads,
 * flash_bwd.cu on every token of those heads, an all-to-all of float32 dQ, dK, dV back, where dK
 * and dV of a kv head held by several ranks (GQA) are summed. Nothing overlaps the exchanges, as
 * in the forward. Index arithmetic: ulysses_grad_plan.h (host-tested). Design: docs/backward.md. */
#include <string.h>

#include <algorithm>
#include <memory>

#include "impls/cuda/cuda_util.cuh" /* first: it includes the C headers with C linkage */
#include "impls/cuda/flash_bwd.h"
#include "impls/cuda/gcomm.cuh"
#include "impls/cuda/ulysses_cuda_grad.h"

extern "C" {
#include "impls/cuda/ulysses_grad_plan.h"
#include "impls/parallel/dist.h"
}

namespace {

/* ulysses_grad_plan.h's slab on 32-bit words (W a row); add: float32 rows added, not copied. */
__global__ void slab_kernel(unsigned *dst, const unsigned *src, int64_t O1, int64_t O2, int64_t R, int64_t W,
                            int64_t dA, int64_t dB, int64_t sA, int64_t sB, int add) {
    int64_t total = O1 * O2 * R * W;
    for (int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; x < total; x += (int64_t)gridDim.x * blockDim.x) {
        int64_t w = x % W, r = (x / W) % R, o2 = (x / (W * R)) % O2, o1 = x / (W * R * O2);
        int64_t di = (o1 * dA + o2 * dB + r) * W + w, si = (o1 * sA + o2 * sB + r) * W + w;
        if (add)
            reinterpret_cast<float *>(dst)[di] += reinterpret_cast<const float *>(src)[si];
        else
            dst[di] = src[si];
    }
}

int slab(char *dst, const char *src, const ulysses_slab_t &s, int64_t row_bytes, int add, cudaStream_t st,
         attn_err_t *err) {
    int64_t W = row_bytes / 4, total = s.O1 * s.O2 * s.R * W;
    if (total == 0)
        return ATTN_OK;
    unsigned blocks = (unsigned)std::min<int64_t>((total + 255) / 256, 4096);
    slab_kernel<<<blocks, 256, 0, st>>>((unsigned *)(dst + s.d0 * row_bytes), (const unsigned *)(src + s.s0 * row_bytes),
                                        s.O1, s.O2, s.R, W, s.dA, s.dB, s.sA, s.sB, add);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

/* Rows of section t in rank r's shard (all heads, its tokens) and in its heads' buffer (all tokens). */
int64_t shard_rows(const ulysses_grad_plan_t &g, int r, int t) {
    return g.B * (ulysses_grad_is_query(t) ? g.H * g.m[r] : g.Hkv * g.k[r]);
}
int64_t heads_rows(const ulysses_grad_plan_t &g, int r, int t) {
    return g.B * (ulysses_grad_is_query(t) ? g.hd[r].hq * g.n_q : g.hd[r].kvn * g.n_k);
}

/* Staging for both exchanges and for the float32 uploads of rank r's shards. */
size_t stage_bytes(const ulysses_grad_plan_t &g, int r) {
    int64_t sb[ATTN_MAX_RANKS], so[ATTN_MAX_RANKS], rb[ATTN_MAX_RANKS], ro[ATTN_MAX_RANKS];
    int64_t a = ulysses_grad_alltoall(&g, r, 0, sb, so, rb, ro), b = ulysses_grad_alltoall(&g, r, 1, sb, so, rb, ro);
    int64_t up = 4 * g.d * std::max(g.B * g.H * g.m[r], g.B * g.Hkv * g.k[r]);
    return (size_t)std::max(std::max(a, b), up) + 16;
}

struct rank_state {
    dev_buf shard[UG_SECTIONS], heads[UG_SECTIONS]; /* shard[UG_DQ] unused: dQ lands in o32 */
    dev_buf o32, do32, send, recv, docs;
    char *sp[UG_SECTIONS] = {}; /* the shard's sections */
    cudaEvent_t ev[5] = {};     /* start, prep done, heads in, compute done, end */
    ~rank_state() {
        for (cudaEvent_t e : ev)
            if (e)
                cudaEventDestroy(e);
    }
};

} // namespace

ulysses_grad_host::~ulysses_grad_host() {
    for (int r = 0; r < ATTN_MAX_RANKS; r++)
        for (float *f : {q[r], k[r], v[r], o[r], d_o[r], lse[r], dq[r], dk[r], dv[r]})
            attn_free(f);
}

int ulysses_grad_host::alloc(const attn_problem_t *p, int P, int i, int r, attn_err_t *err) {
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, LAYOUT_CONTIGUOUS, p->n_q, P, err));
    ATTN_TRY(layout_init(&lk, LAYOUT_CONTIGUOUS, p->n_k, P, err));
    size_t qn = (size_t)(p->batch * p->heads * layout_local_count(&lq, r) * p->head_dim);
    size_t kn = (size_t)(p->batch * p->kv_heads * layout_local_count(&lk, r) * p->head_dim);
    float **all[] = {&q[i], &o[i], &d_o[i], &dq[i], &k[i], &v[i], &dk[i], &dv[i], &lse[i]};
    for (int a = 0; a < 9; a++)
        if (!(*all[a] = (float *)attn_alloc((a < 4 ? qn : a < 8 ? kn : qn / (size_t)p->head_dim) * 4 + 16, err,
                                            "ulysses_cuda backward host shard")))
            return ATTN_ERUNTIME;
    return ATTN_OK;
}

int ulysses_cuda_grad_ranks(gcomm *gc, const attn_problem_t *p, const ulysses_grad_host *hp, ring_cuda_stats_t *st,
                            attn_err_t *err) {
    int P = gc->size, L = gc->count;
    const ulysses_grad_host &h = *hp;
    std::unique_ptr<ulysses_grad_plan_t> gp(new ulysses_grad_plan_t());
    ATTN_TRY(ulysses_grad_plan(p, P, gp.get(), err));
    const ulysses_grad_plan_t &g = *gp;
    int64_t d = g.d;
    std::unique_ptr<rank_state[]> rs(new rank_state[L]);
    struct sizes {
        gcomm_sizes_t sb[2], so[2], rb[2], ro[2]; /* [exchange][local index][peer] */
    };
    std::unique_ptr<sizes> sz(new sizes());
    gcomm_sizes_t *sb = sz->sb, *so = sz->so, *rb = sz->rb, *ro = sz->ro;
    for (int i = 0; i < L; i++) {
        int r = gc->first + i;
        rank_state &s = rs[i];
        for (int x = 0; x < 2; x++) {
            int64_t a[4][ATTN_MAX_RANKS];
            ulysses_grad_alltoall(&g, r, x, a[0], a[1], a[2], a[3]);
            for (int q = 0; q < P; q++)
                sb[x][i][q] = (size_t)a[0][q], so[x][i][q] = (size_t)a[1][q], rb[x][i][q] = (size_t)a[2][q],
                ro[x][i][q] = (size_t)a[3][q];
        }
        for (int t = 0; t < UG_SECTIONS; t++) {
            size_t rbytes = (size_t)ulysses_grad_row_bytes(&g, t);
            if (t != UG_DQ)
                DEV_ALLOC(s.shard[t], (size_t)shard_rows(g, r, t) * rbytes + 16, "ulysses_cuda backward shard");
            DEV_ALLOC(s.heads[t], (size_t)heads_rows(g, r, t) * rbytes + 16, "ulysses_cuda backward heads");
            s.sp[t] = s.shard[t].as<char>();
        }
        size_t qn = (size_t)(g.B * g.H * g.m[r] * d), kn = (size_t)(g.B * g.Hkv * g.k[r] * d);
        DEV_ALLOC(s.o32, qn * 4 + 16, "ulysses_cuda backward O (then dQ)");
        DEV_ALLOC(s.do32, qn * 4 + 16, "ulysses_cuda backward dO (float32)");
        s.sp[UG_DQ] = s.o32.as<char>();
        size_t stage = stage_bytes(g, r);
        DEV_ALLOC(s.send, stage, "ulysses_cuda backward all-to-all send staging");
        DEV_ALLOC(s.recv, stage, "ulysses_cuda backward all-to-all receive staging");
        cudaStream_t cs = gc->compute[i];
        float *stage_f = s.recv.as<float>(); /* free until the first exchange */
        if (qn) {
            ATTN_TRY(cuda_upload(s.sp[UG_Q], ATTN_BF16, h.q[i], qn, stage_f, cs, err));
            CUDA_TRY(cudaMemcpyAsync(s.o32.ptr, h.o[i], qn * 4, cudaMemcpyHostToDevice, cs));
            CUDA_TRY(cudaMemcpyAsync(s.do32.ptr, h.d_o[i], qn * 4, cudaMemcpyHostToDevice, cs));
            CUDA_TRY(cudaMemcpyAsync(s.sp[UG_LSE2], h.lse[i], qn / d * 4, cudaMemcpyHostToDevice, cs));
        }
        if (kn) {
            ATTN_TRY(cuda_upload(s.sp[UG_K], ATTN_BF16, h.k[i], kn, stage_f, cs, err));
            ATTN_TRY(cuda_upload(s.sp[UG_V], ATTN_BF16, h.v[i], kn, stage_f, cs, err));
        }
        attn_vis_t dvis;
        ATTN_TRY(cuda_vis_upload(p, s.docs, &dvis, cs, err));
        CUDA_TRY(cudaStreamSynchronize(cs)); /* uploads stay outside the timed region, as in the forward */
        for (cudaEvent_t &e : s.ev)
            CUDA_TRY(cudaEventCreate(&e));
    }
    ATTN_TRY(gcomm_inputs_ready(gc, err));
    const void *send[ATTN_MAX_RANKS];
    void *recv[ATTN_MAX_RANKS];
    for (int i = 0; i < L; i++) { /* prep on the shard, then pack by head owner */
        int r = gc->first + i;
        rank_state &s = rs[i];
        cudaStream_t cs = gc->compute[i], cm = gc->comm[i];
        CUDA_TRY(cudaEventRecord(s.ev[0], cs));
        ATTN_TRY(cuda_flash_bwd_prep(s.o32.as<float>(), s.do32.as<float>(), (float *)s.sp[UG_LSE2],
                                     (float *)s.sp[UG_DELTA], s.sp[UG_DO], g.B * g.H * g.m[r], (int)d,
                                     ATTN_BF16 /* as its uploads */, cs, err));
        CUDA_TRY(cudaEventRecord(s.ev[1], cs));
        CUDA_TRY(cudaStreamWaitEvent(cm, s.ev[1], 0));
        for (int q = 0; q < P; q++)
            for (int t = UG_IN_FIRST; t < UG_IN_END; t++)
                ATTN_TRY(slab(s.send.as<char>() + so[0][i][q] + ulysses_grad_section_off(&g, r, q, t), s.sp[t],
                              ulysses_grad_slab(&g, r, q, t, UG_SHARD, UG_MSG), ulysses_grad_row_bytes(&g, t), 0, cm,
                              err));
        send[i] = s.send.ptr, recv[i] = s.recv.ptr;
    }
    ATTN_TRY(gcomm_alltoallv(gc, send, sb[0], so[0], recv, rb[0], ro[0], err));
    for (int i = 0; i < L; i++) { /* unpack into all tokens of my heads, compute, pack the gradients */
        int q = gc->first + i;
        rank_state &s = rs[i];
        cudaStream_t cs = gc->compute[i], cm = gc->comm[i];
        for (int r = 0; r < P; r++)
            for (int t = UG_IN_FIRST; t < UG_IN_END; t++)
                ATTN_TRY(slab(s.heads[t].as<char>(), s.recv.as<char>() + ro[0][i][r] + ulysses_grad_section_off(&g, r, q, t),
                              ulysses_grad_slab(&g, r, q, t, UG_MSG, UG_HEADS), ulysses_grad_row_bytes(&g, t), 0, cm,
                              err));
        CUDA_TRY(cudaEventRecord(s.ev[2], cm));
        CUDA_TRY(cudaStreamWaitEvent(cs, s.ev[2], 0));
        size_t dq_bytes = (size_t)heads_rows(g, q, UG_DQ) * 4 * (size_t)d;
        CUDA_TRY(cudaMemsetAsync(s.heads[UG_DQ].ptr, 0, dq_bytes, cs)); /* dQ's atomics add into it */
        attn_problem_t lp = *p;
        lp.heads = g.hd[q].hq, lp.kv_heads = g.hd[q].kvn; /* lines up: plan_ulysses_kernel_heads */
        /* Rank r's tokens sit at rows m0[r] (k0[r]) of the gathered sequence: row t is global
         * position t (queries: n_k − n_q + t), so masks and document offsets apply as they are. */
        cuda_flash_bwd_call call = {s.heads[UG_Q].ptr, s.heads[UG_K].ptr, s.heads[UG_V].ptr, s.heads[UG_DO].ptr,
                                    s.heads[UG_LSE2].as<float>(), s.heads[UG_DELTA].as<float>(),
                                    s.heads[UG_DQ].as<float>(), s.heads[UG_DK].as<float>(), s.heads[UG_DV].as<float>(),
                                    g.n_q, g.n_k, g.n_q, g.n_k, g.n_k - g.n_q, p->window, (int)p->mask,
                                    s.docs.as<const int64_t>(), s.docs.ptr ? p->n_docs : 0, 0, 0, 0, 0}; /* stride 0: contiguous */
        ATTN_TRY(cuda_flash_bwd_launch(&lp, &call, cs, err));
        ATTN_TRY(cuda_flash_bwd_scale(s.heads[UG_DQ].as<float>(), s.heads[UG_DQ].as<float>(), dq_bytes / 4,
                                      (float)problem_scale(p), cs, err));
        CUDA_TRY(cudaEventRecord(s.ev[3], cs));
        CUDA_TRY(cudaStreamWaitEvent(cm, s.ev[3], 0));
        for (int r = 0; r < P; r++)
            for (int t = UG_OUT_FIRST; t < UG_OUT_END; t++)
                ATTN_TRY(slab(s.send.as<char>() + so[1][i][r] + ulysses_grad_section_off(&g, r, q, t), s.heads[t].as<char>(),
                              ulysses_grad_slab(&g, r, q, t, UG_HEADS, UG_MSG), ulysses_grad_row_bytes(&g, t), 0, cm,
                              err));
        for (int t = UG_DK; t <= UG_DV; t++) /* summed into below */
            CUDA_TRY(cudaMemsetAsync(s.sp[t], 0, (size_t)shard_rows(g, q, t) * 4 * (size_t)d, cm));
    }
    ATTN_TRY(gcomm_alltoallv(gc, send, sb[1], so[1], recv, rb[1], ro[1], err));
    for (int i = 0; i < L; i++) { /* dQ of my tokens from each head owner; dK, dV added */
        int r = gc->first + i;
        rank_state &s = rs[i];
        cudaStream_t cm = gc->comm[i];
        for (int q = 0; q < P; q++)
            for (int t = UG_OUT_FIRST; t < UG_OUT_END; t++)
                ATTN_TRY(slab(s.sp[t], s.recv.as<char>() + ro[1][i][q] + ulysses_grad_section_off(&g, r, q, t),
                              ulysses_grad_slab(&g, r, q, t, UG_MSG, UG_SHARD), ulysses_grad_row_bytes(&g, t),
                              t != UG_DQ, cm, err));
        CUDA_TRY(cudaEventRecord(s.ev[4], cm));
    }
    for (int e = 1; e <= 4; e++) /* phase by phase, so --comm-timeout bounds the time without progress */
        for (int i = 0; i < L; i++)
            ATTN_TRY(gcomm_sync(gc, rs[i].ev[e], "ulysses_cuda backward all-to-alls", err));
    for (int i = 0; i < L; i++) {
        int r = gc->first + i;
        rank_state &s = rs[i];
        /* One step, as the forward's: the prep and the kernel compute; nothing computes while
         * the all-to-alls (and their packing) run, so both are exposed. */
        st[i].n_steps = 1;
        st[i].compute_s = st[i].step_compute_s[0] = seconds_between(s.ev[0], s.ev[1]) + seconds_between(s.ev[2], s.ev[3]);
        st[i].comm_s = st[i].exposed_s = seconds_between(s.ev[1], s.ev[2]) + seconds_between(s.ev[3], s.ev[4]);
        st[i].wall_s = seconds_between(s.ev[0], s.ev[4]);
        st[i].blocks_computed = 1;
        ulysses_grad_traffic(&g, r, &st[i].bytes_sent, &st[i].bytes_recv);
        st[i].device_bytes = (double)ulysses_cuda_grad_rank_bytes(p, P, r);
        size_t qn = (size_t)(g.B * g.H * g.m[r] * d), kn = (size_t)(g.B * g.Hkv * g.k[r] * d);
        if (qn)
            CUDA_TRY(cudaMemcpy(h.dq[i], s.sp[UG_DQ], qn * 4, cudaMemcpyDeviceToHost));
        if (kn) {
            CUDA_TRY(cudaMemcpy(h.dk[i], s.sp[UG_DK], kn * 4, cudaMemcpyDeviceToHost));
            CUDA_TRY(cudaMemcpy(h.dv[i], s.sp[UG_DV], kn * 4, cudaMemcpyDeviceToHost));
        }
    }
    return ATTN_OK;
}

int ulysses_cuda_grad_takes(const attn_problem_t *p, const attn_exec_t *x, char *why, size_t len) {
    (void)x; /* cuda_local and nccl alike: dist_cuda_supports has judged the transport */
    if (p->dtype != ATTN_BF16) { /* flash_bwd is instantiated and checked in bf16 only */
        snprintf(why, len, "the GPU Ulysses backward runs in bf16 only (got %s)", dtype_name(p->dtype));
        return 0;
    }
    if (p->head_dim != 64 && p->head_dim != 128) {
        snprintf(why, len, "the GPU Ulysses backward has kernels for head dims 64 and 128 only (got %lld)",
                 (long long)p->head_dim);
        return 0;
    }
    return 1;
}

size_t ulysses_cuda_grad_rank_bytes(const attn_problem_t *p, int ranks, int rank) {
    std::unique_ptr<ulysses_grad_plan_t> g(new ulysses_grad_plan_t());
    attn_err_t err = {};
    if (ulysses_grad_plan(p, ranks > 1 ? ranks : 1, g.get(), &err))
        return 0;
    size_t bytes = 0;
    for (int t = 0; t < UG_SECTIONS; t++) { /* shard[UG_DQ] is o32, counted below */
        size_t rb = (size_t)ulysses_grad_row_bytes(g.get(), t);
        bytes += (t != UG_DQ ? (size_t)shard_rows(*g, rank, t) * rb + 16 : 0) + (size_t)heads_rows(*g, rank, t) * rb + 16;
    }
    bytes += 2 * ((size_t)(g->B * g->H * g->m[rank] * g->d) * 4 + 16); /* O (then dQ) and dO in float32 */
    return bytes + 2 * stage_bytes(*g, rank) + cuda_vis_bytes(p);
}

void ulysses_cuda_grad_expect(const attn_problem_t *p, int ranks, attn_dist_expect_t *out) {
    memset(out, 0, sizeof *out);
    out->imbalance = out->critical_path = 1; /* H/P heads over every token on each rank */
    std::unique_ptr<ulysses_grad_plan_t> g(new ulysses_grad_plan_t());
    attn_err_t err = {};
    if (ulysses_grad_plan(p, ranks > 1 ? ranks : 1, g.get(), &err))
        return;
    for (int r = 0; r < g->P; r++)
        ulysses_grad_traffic(g.get(), r, &out->bytes_sent[r], &out->bytes_recv[r]);
}

int ulysses_cuda_backward_local(const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *gio,
                                ring_cuda_stats_t *st, attn_err_t *err) {
    char why[256];
    if (!ulysses_cuda_grad_takes(p, x, why, sizeof why))
        return attn_fail(err, ATTN_EUSAGE, "%s", why);
    ATTN_TRY(cuda_begin(x, err));
    int P = exec_ranks(x);
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, LAYOUT_CONTIGUOUS, p->n_q, P, err));
    ATTN_TRY(layout_init(&lk, LAYOUT_CONTIGUOUS, p->n_k, P, err));
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    ulysses_grad_host h;
    for (int r = 0; r < P; r++) {
        ATTN_TRY(h.alloc(p, P, r, r, err));
        dist_shard_copy(&lq, r, BH, d, h.q[r], (float *)gio->q, 1);
        dist_shard_copy(&lq, r, BH, d, h.o[r], (float *)gio->o, 1);
        dist_shard_copy(&lq, r, BH, d, h.d_o[r], (float *)gio->d_o, 1);
        dist_shard_copy(&lq, r, BH, 1, h.lse[r], (float *)gio->lse, 1);
        dist_shard_copy(&lk, r, BHkv, d, h.k[r], (float *)gio->k, 1);
        dist_shard_copy(&lk, r, BHkv, d, h.v[r], (float *)gio->v, 1);
    }
    gcomm gc = {};
    int rc = gcomm_local_open(&gc, P, x->device, x->comm_timeout, err);
    if (rc == ATTN_OK)
        rc = ulysses_cuda_grad_ranks(&gc, p, &h, st, err);
    gcomm_close(&gc);
    ATTN_TRY(rc);
    for (int r = 0; r < P; r++) {
        dist_shard_copy(&lq, r, BH, d, h.dq[r], (float *)gio->dq, 0);
        dist_shard_copy(&lk, r, BHkv, d, h.dk[r], (float *)gio->dk, 0);
        dist_shard_copy(&lk, r, BHkv, d, h.dv[r], (float *)gio->dv, 0);
    }
    return ATTN_OK;
}
