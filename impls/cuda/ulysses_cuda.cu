/* ulysses_cuda.cu — Ulysses-style sequence parallelism on GPUs: all-to-all of bf16 Q, K, V to
 * H/P heads, flash.cu on the full sequence, all-to-all of float32 O and LSE back; nothing
 * overlaps the exchanges, by design. Design: docs/ulysses.md. */
#include <string.h>

#include <algorithm>
#include <memory>

#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/gcomm.cuh"
#include "impls/cuda/ulysses_cuda.h"

extern "C" {
#include "comm/layout.h"
}

namespace {

typedef __nv_bfloat16 bf16;

/* dst rows (o1·dA + o2·dB + r) ← src rows (o1·sA + o2·sB + r), rows of W 32-bit words, for
 * o1 < O1, o2 < O2, r < R: the (batch, head, token) re-slicing of both all-to-alls. */
__global__ void copy_slabs(unsigned *dst, const unsigned *src, int64_t O1, int64_t O2, int64_t R, int64_t W,
                           int64_t dA, int64_t dB, int64_t sA, int64_t sB) {
    int64_t total = O1 * O2 * R * W;
    for (int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; x < total; x += (int64_t)gridDim.x * blockDim.x) {
        int64_t w = x % W, r = (x / W) % R, o2 = (x / (W * R)) % O2, o1 = x / (W * R * O2);
        dst[(o1 * dA + o2 * dB + r) * W + w] = src[(o1 * sA + o2 * sB + r) * W + w];
    }
}

int slabs(void *dst, const void *src, int64_t O1, int64_t O2, int64_t R, int64_t row_bytes, int64_t dA, int64_t dB,
          int64_t sA, int64_t sB, cudaStream_t s, attn_err_t *err) {
    int64_t W = row_bytes / 4, total = O1 * O2 * R * W;
    if (total == 0)
        return ATTN_OK;
    unsigned blocks = (unsigned)std::min<int64_t>((total + 255) / 256, 4096);
    copy_slabs<<<blocks, 256, 0, s>>>((unsigned *)dst, (const unsigned *)src, O1, O2, R, W, dA, dB, sA, sB);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

struct rank_state {
    dev_buf q, k, v, o, lse;     /* token shards: Q, K, V (bf16), O, LSE (f32) */
    dev_buf send, recv;          /* all-to-all staging, the larger of the two exchanges */
    dev_buf qh, kh, vh, oh, lh;  /* all tokens, this rank's heads */
    dev_buf docs;                /* the document offsets (global positions) */
    cudaEvent_t ev[5] = {};      /* start, a2a-1 done, compute start, compute done, a2a-2 done (the end) */
    ~rank_state() {
        for (cudaEvent_t e : ev)
            if (e)
                cudaEventDestroy(e);
    }
};

/* Per-rank sizes of both exchanges, and the staging bytes they (and the float32 uploads) need. */
struct plan {
    int64_t m[ATTN_MAX_RANKS], k[ATTN_MAX_RANKS], m0[ATTN_MAX_RANKS], k0[ATTN_MAX_RANKS];
    ulysses_heads_t hd[ATTN_MAX_RANKS];
    gcomm_sizes_t sb1, so1, rb1, ro1, sb2, so2, rb2, ro2; /* [local index][peer] */
    size_t stage[ATTN_MAX_RANKS];                          /* [local index] */
    double sent[ATTN_MAX_RANKS], recvd[ATTN_MAX_RANKS];   /* [local index], self excluded */
};

constexpr int64_t QROW = 2, OROW = 4; /* bytes per element: bf16 Q, K, V; float32 O, LSE */

/* First exchange, r → q: [Q heads of q | K heads q needs | V heads q needs] of r's tokens.
 * Second, q → r: O then LSE of q's heads for r's tokens. */
int make_plan(const attn_problem_t *p, int P, int first, int count, plan *pl, attn_err_t *err) {
    if (!plan_ulysses_kernel_heads(p->heads, p->kv_heads, P))
        return attn_fail(err, ATTN_EUSAGE, "ulysses_cuda: %lld heads over %lld kv heads do not split over %d ranks",
                         (long long)p->heads, (long long)p->kv_heads, P);
    int64_t B = p->batch, d = p->head_dim;
    std::unique_ptr<plan_ulysses_t> u(new plan_ulysses_t());
    for (int i = 0; i < count; i++) {
        int r = first + i;
        ATTN_TRY(plan_ulysses(B, p->heads, p->kv_heads, d, p->n_q, p->n_k, LAYOUT_CONTIGUOUS, P, r, u.get(), err));
        for (int q = 0; i == 0 && q < P; q++) { /* every rank's heads and tokens: the same in each rank's plan */
            pl->hd[q] = u->heads[q];
            pl->m[q] = u->m[q], pl->k[q] = u->k[q];
        }
        for (int q = 0; i == 0 && q < P; q++) /* where q's tokens land in the gathered sequence */
            pl->m0[q] = plan_ulysses_row0(pl->m, q), pl->k0[q] = plan_ulysses_row0(pl->k, q);
        size_t os = (size_t)(QROW * u->in_send_total), orr = (size_t)(QROW * u->in_recv_total);
        size_t os2 = (size_t)(OROW * u->out_send_total), or2 = (size_t)(OROW * u->out_recv_total);
        pl->sent[i] = pl->recvd[i] = 0;
        for (int q = 0; q < P; q++) {
            pl->sb1[i][q] = (size_t)(QROW * (u->send_q[q] + u->send_kv[q]));
            pl->so1[i][q] = (size_t)(QROW * u->send_in_off[q]);
            pl->rb1[i][q] = (size_t)(QROW * (u->recv_q[q] + u->recv_kv[q]));
            pl->ro1[i][q] = (size_t)(QROW * u->recv_in_off[q]);
            pl->sb2[i][q] = (size_t)(OROW * u->send_out[q]), pl->so2[i][q] = (size_t)(OROW * u->send_out_off[q]);
            pl->rb2[i][q] = (size_t)(OROW * u->recv_out[q]), pl->ro2[i][q] = (size_t)(OROW * u->recv_out_off[q]);
            if (q != r) {
                pl->sent[i] += (double)(pl->sb1[i][q] + pl->sb2[i][q]);
                pl->recvd[i] += (double)(pl->rb1[i][q] + pl->rb2[i][q]);
            }
        }
        /* The receive buffer also stages the float32 uploads of the shards. */
        size_t up = (size_t)(B * d * 4 * std::max(p->heads * pl->m[r], p->kv_heads * pl->k[r]));
        pl->stage[i] = std::max(std::max(std::max(os, orr), std::max(os2, or2)), up) + 16;
    }
    return ATTN_OK;
}

} // namespace

size_t ulysses_cuda_rank_bytes(const attn_problem_t *p, int ranks, int rank) {
    int P = ranks > 1 ? ranks : 1;
    std::unique_ptr<plan> pl(new plan());
    attn_err_t err = {};
    if (make_plan(p, P, rank, 1, pl.get(), &err) != ATTN_OK)
        return 0;
    int64_t B = p->batch, d = p->head_dim, H = p->heads, Hkv = p->kv_heads, nq = p->n_q, nk = p->n_k;
    int64_t m = pl->m[rank], k = pl->k[rank], hq = pl->hd[rank].hq, kvn = pl->hd[rank].kvn;
    int64_t shards = B * (QROW * d * (H * m + 2 * Hkv * k) + OROW * (d + 1) * H * m);
    int64_t heads = B * (QROW * d * (hq * nq + 2 * kvn * nk) + OROW * (d + 1) * hq * nq);
    return (size_t)(shards + heads) + 2 * pl->stage[0] + 10 * 16 /* + the 16-byte pads */
           + cuda_vis_bytes(p);                                  /* + the document offsets */
}

int ulysses_cuda_ranks(gcomm *g, const attn_problem_t *p, const ring_cuda_host_t *hst, ring_cuda_stats_t *st,
                       attn_err_t *err) {
    int P = g->size, L = g->count;
    int64_t B = p->batch, H = p->heads, Hkv = p->kv_heads, d = p->head_dim, nq = p->n_q, nk = p->n_k;
    std::unique_ptr<plan> pl(new plan());
    ATTN_TRY(make_plan(p, P, g->first, L, pl.get(), err));
    const int64_t *m = pl->m, *k = pl->k, *m0 = pl->m0, *k0 = pl->k0;
    const ulysses_heads_t *hd = pl->hd;
    const gcomm_sizes_t &sb1 = pl->sb1, &so1 = pl->so1, &rb1 = pl->rb1, &ro1 = pl->ro1;
    const gcomm_sizes_t &sb2 = pl->sb2, &so2 = pl->so2, &rb2 = pl->rb2, &ro2 = pl->ro2;
    const int64_t qrow = d * QROW, orow = d * OROW; /* bytes of a bf16 row, of a float32 row */
    rank_state rs[ATTN_MAX_RANKS];
    for (int i = 0; i < L; i++) {
        int r = g->first + i;
        size_t stage = pl->stage[i];
        st[i].bytes_sent = pl->sent[i], st[i].bytes_recv = pl->recvd[i];
        const ulysses_heads_t &h = hd[r];
        rank_state &s = rs[i];
        DEV_ALLOC(s.q, (size_t)(B * H * m[r] * qrow) + 16, "ulysses_cuda Q shard (bf16)");
        DEV_ALLOC(s.k, (size_t)(B * Hkv * k[r] * qrow) + 16, "ulysses_cuda K shard (bf16)");
        DEV_ALLOC(s.v, (size_t)(B * Hkv * k[r] * qrow) + 16, "ulysses_cuda V shard (bf16)");
        DEV_ALLOC(s.o, (size_t)(B * H * m[r] * orow) + 16, "ulysses_cuda O shard");
        DEV_ALLOC(s.lse, (size_t)(B * H * m[r] * 4) + 16, "ulysses_cuda LSE shard");
        DEV_ALLOC(s.send, stage, "ulysses_cuda all-to-all send staging");
        DEV_ALLOC(s.recv, stage, "ulysses_cuda all-to-all receive staging");
        DEV_ALLOC(s.qh, (size_t)(B * h.hq * nq * qrow) + 16, "ulysses_cuda Q of its heads (bf16)");
        DEV_ALLOC(s.kh, (size_t)(B * h.kvn * nk * qrow) + 16, "ulysses_cuda K of its heads (bf16)");
        DEV_ALLOC(s.vh, (size_t)(B * h.kvn * nk * qrow) + 16, "ulysses_cuda V of its heads (bf16)");
        DEV_ALLOC(s.oh, (size_t)(B * h.hq * nq * orow) + 16, "ulysses_cuda O of its heads");
        DEV_ALLOC(s.lh, (size_t)(B * h.hq * nq * 4) + 16, "ulysses_cuda LSE of its heads");
        st[i].device_bytes = (double)ulysses_cuda_rank_bytes(p, P, r);
        /* Upload through the receive staging buffer (free until the first exchange). */
        cudaStream_t cs = g->compute[i];
        float *stage_f = s.recv.as<float>();
        if (m[r] > 0)
            ATTN_TRY(ring_cuda_q_in(s.q.ptr, p, hst, i, r, (size_t)(B * H * m[r] * d), stage_f, cs, err));
        if (k[r] > 0) {
            ATTN_TRY(ring_cuda_kv_in(s.k.ptr, p, hst, i, r, 0, (size_t)(B * Hkv * k[r] * d), stage_f, cs, err));
            ATTN_TRY(ring_cuda_kv_in(s.v.ptr, p, hst, i, r, 1, (size_t)(B * Hkv * k[r] * d), stage_f, cs, err));
        }
        attn_vis_t dvis;
        ATTN_TRY(cuda_vis_upload(p, s.docs, &dvis, cs, err));
        CUDA_TRY(cudaStreamSynchronize(cs)); /* like ring_cuda: uploads stay outside the timed region */
        for (cudaEvent_t &e : s.ev)
            CUDA_TRY(cudaEventCreate(&e));
    }
    ATTN_TRY(gcomm_inputs_ready(g, err));
    /* Pack: rank r's shard, split by destination heads. Everything on the comm stream, which
     * waits for the uploads first. */
    const void *send[ATTN_MAX_RANKS];
    void *recv[ATTN_MAX_RANKS];
    for (int i = 0; i < L; i++) {
        int r = g->first + i;
        rank_state &s = rs[i];
        CUDA_TRY(cudaEventRecord(s.ev[0], g->compute[i]));
        CUDA_TRY(cudaStreamWaitEvent(g->comm[i], s.ev[0], 0));
        for (int q = 0; q < P; q++) {
            char *at = s.send.as<char>() + so1[i][q];
            const ulysses_heads_t &h = hd[q];
            int64_t qn = B * h.hq * m[r] * qrow, kvn = B * h.kvn * k[r] * qrow;
            ATTN_TRY(slabs(at, s.q.as<char>() + h.q0 * m[r] * qrow, B, h.hq, m[r], qrow, h.hq * m[r], m[r], H * m[r],
                           m[r], g->comm[i], err));
            ATTN_TRY(slabs(at + qn, s.k.as<char>() + h.kv0 * k[r] * qrow, B, h.kvn, k[r], qrow, h.kvn * k[r], k[r],
                           Hkv * k[r], k[r], g->comm[i], err));
            ATTN_TRY(slabs(at + qn + kvn, s.v.as<char>() + h.kv0 * k[r] * qrow, B, h.kvn, k[r], qrow, h.kvn * k[r],
                           k[r], Hkv * k[r], k[r], g->comm[i], err));
        }
        send[i] = s.send.ptr, recv[i] = s.recv.ptr;
    }
    ATTN_TRY(gcomm_alltoallv(g, send, sb1, so1, recv, rb1, ro1, err));
    /* Unpack into all tokens of this rank's heads, compute, pack O and LSE by destination. */
    for (int i = 0; i < L; i++) {
        int r = g->first + i;
        rank_state &s = rs[i];
        const ulysses_heads_t &h = hd[r];
        cudaStream_t cm = g->comm[i], cs = g->compute[i];
        for (int q = 0; q < P; q++) {
            const char *at = s.recv.as<char>() + ro1[i][q];
            int64_t qn = B * h.hq * m[q] * qrow, kvn = B * h.kvn * k[q] * qrow;
            ATTN_TRY(slabs(s.qh.as<char>() + m0[q] * qrow, at, B, h.hq, m[q], qrow, h.hq * nq, nq, h.hq * m[q], m[q],
                           cm, err));
            ATTN_TRY(slabs(s.kh.as<char>() + k0[q] * qrow, at + qn, B, h.kvn, k[q], qrow, h.kvn * nk, nk,
                           h.kvn * k[q], k[q], cm, err));
            ATTN_TRY(slabs(s.vh.as<char>() + k0[q] * qrow, at + qn + kvn, B, h.kvn, k[q], qrow, h.kvn * nk, nk,
                           h.kvn * k[q], k[q], cm, err));
        }
        CUDA_TRY(cudaEventRecord(s.ev[1], cm));
        CUDA_TRY(cudaStreamWaitEvent(cs, s.ev[1], 0));
        CUDA_TRY(cudaEventRecord(s.ev[2], cs));
        attn_problem_t lp = *p;
        lp.heads = h.hq, lp.kv_heads = h.kvn;
        /* Rank q's tokens land at rows m0[q] (k0[q]) of the contiguous layout, so row t is global
         * position t (queries: n_k − n_q + t) and the offsets apply as they are (plan_ulysses_row0). */
        cuda_flash_call call = {s.qh.ptr, s.kh.ptr, s.vh.ptr, s.oh.as<float>(), s.lh.as<float>(), nq, nk, nq, nk,
                                nk - nq, p->window, (int)p->mask, s.docs.as<const int64_t>(),
                                s.docs.ptr ? p->n_docs : 0, 0, 0, 0}; /* stride 0: global positions */
        ATTN_TRY(cuda_flash_launch(&lp, &call, cs, err));
        CUDA_TRY(cudaEventRecord(s.ev[3], cs));
        CUDA_TRY(cudaStreamWaitEvent(cm, s.ev[3], 0));
        for (int q = 0; q < P; q++) { /* to rank q: rows of q's tokens, O then LSE */
            char *at = s.send.as<char>() + so2[i][q];
            ATTN_TRY(slabs(at, s.oh.as<char>() + m0[q] * orow, B, h.hq, m[q], orow, h.hq * m[q], m[q], h.hq * nq, nq,
                           cm, err));
            ATTN_TRY(slabs(at + B * h.hq * m[q] * orow, s.lh.as<char>() + m0[q] * 4, B, h.hq, m[q], 4, h.hq * m[q],
                           m[q], h.hq * nq, nq, cm, err));
        }
    }
    ATTN_TRY(gcomm_alltoallv(g, send, sb2, so2, recv, rb2, ro2, err));
    for (int i = 0; i < L; i++) {
        int r = g->first + i;
        rank_state &s = rs[i];
        cudaStream_t cm = g->comm[i];
        for (int q = 0; q < P; q++) { /* from rank q: its heads of my tokens */
            const char *at = s.recv.as<char>() + ro2[i][q];
            const ulysses_heads_t &h = hd[q];
            ATTN_TRY(slabs(s.o.as<char>() + h.q0 * m[r] * orow, at, B, h.hq, m[r], orow, H * m[r], m[r], h.hq * m[r],
                           m[r], cm, err));
            ATTN_TRY(slabs(s.lse.as<char>() + h.q0 * m[r] * 4, at + B * h.hq * m[r] * orow, B, h.hq, m[r], 4, H * m[r],
                           m[r], h.hq * m[r], m[r], cm, err));
        }
        CUDA_TRY(cudaEventRecord(s.ev[4], cm));
    }
    /* Phase by phase (first all-to-all, compute, second all-to-all), so --comm-timeout bounds the
     * time without progress rather than the whole call. */
    for (int e = 1; e <= 4; e++)
        for (int i = 0; i < L; i++)
            ATTN_TRY(gcomm_sync(g, rs[i].ev[e], "ulysses_cuda all-to-alls", err));
    for (int i = 0; i < L; i++) {
        int r = g->first + i;
        rank_state &s = rs[i];
        st[i].n_steps = 1;
        st[i].compute_s = st[i].step_compute_s[0] = seconds_between(s.ev[2], s.ev[3]);
        st[i].comm_s = seconds_between(s.ev[0], s.ev[1]) + seconds_between(s.ev[3], s.ev[4]);
        st[i].exposed_s = st[i].comm_s; /* nothing computes while the all-to-alls run */
        st[i].wall_s = seconds_between(s.ev[0], s.ev[4]);
        st[i].blocks_computed = 1;
        if (m[r]) /* rows without a visible key finished as problem_finish_rows says */
            ATTN_TRY(ring_cuda_ol_out(hst, i, r, s.o.as<float>(), s.lse.as<float>(), B * H * m[r], d, g->compute[i], err));
    }
    return ATTN_OK;
}

void ulysses_cuda_expect(const attn_problem_t *p, int ranks, attn_dist_expect_t *out) {
    int P = ranks > 1 ? ranks : 1;
    memset(out, 0, sizeof *out);
    out->imbalance = out->critical_path = 1;
    attn_err_t err = {};
    if (!plan_ulysses_kernel_heads(p->heads, p->kv_heads, P))
        return;
    std::unique_ptr<plan_ulysses_t> u(new plan_ulysses_t());
    for (int me = 0; me < P; me++) {
        if (plan_ulysses(p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q, p->n_k, LAYOUT_CONTIGUOUS, P, me, u.get(),
                         &err))
            return;
        for (int r = 0; r < P; r++)
            if (r != me) { /* bf16 Q, K, V out; float32 O and LSE (d + 1 values a row) back */
                out->bytes_sent[me] += (double)(QROW * (u->send_q[r] + u->send_kv[r]) + OROW * u->send_out[r]);
                out->bytes_recv[me] += (double)(QROW * (u->recv_q[r] + u->recv_kv[r]) + OROW * u->recv_out[r]);
            }
    }
}
