/* ring_cuda_grad.cu — the backward of ring_cuda, striped_cuda and zigzag_cuda, on cuda_local (all P
 * virtual ranks from this thread) or nccl (this process's rank, dist_cuda.cu's driver): ring_grad.c's
 * loop with flash_bwd.cu per piece pair. Each rank keeps Q, dO, LSE, D and its dQ
 * accumulator (float32); K/V blocks rotate as in the forward (ring_cuda.cu) and each block's dK/dV
 * accumulator (float32) travels one hop behind it, so after P steps the last hop brings the
 * block's sum home. Step logic: ring_cuda_grad_plan.h (host-tested). Design: docs/backward.md. */
#include <math.h>
#include <string.h>

#include <algorithm>

#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/flash_bwd.h"
#include "impls/cuda/gcomm.cuh"
#include "impls/cuda/ring_cuda_grad.h"

extern "C" {
#include "comm/layout.h"
#include "impls/cuda/ring_cuda_grad_plan.h"
#include "impls/parallel/dist.h"
#include "impls/parallel/plan.h"
}

namespace {

typedef __nv_bfloat16 bf16; /* a 2-byte element, bf16 or f16 (p->dtype): sizes and pointer steps only */
static_assert(sizeof(bf16) == 2 && sizeof(float) == 4, "ring_grad_step_bytes counts 2-byte K/V and float32 dK/dV");

__global__ void add_kernel(float *acc, const float *x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        acc[i] += x[i];
}

/* One rank's device buffers: 16-bit (bf16 or f16) Q and dO, float32 O (then the dQ accumulator) and dO, LSE
 * (then LSE·log2 e) and D, two 16-bit K|V blocks, two float32 dK|dV accumulators and the hop's
 * receive buffer (after the last hop: this rank's own dK|dV). */
struct grad_bufs {
    dev_buf q, dob, o32, do32, lse2, delta, kv[2], acc[2], in, docs; /* docs: the document offsets */
};

/* Per step: comp0 / comp1 around the compute and pre / post around its wait for the previous hop
 * (compute stream), kv0 / kv1 around the K/V transfer and hop0 / hop1 around the dK/dV hop (comm
 * stream); cuda_util.cuh's step_events, as ring_cuda.cu's rank_events. */
struct grad_events : step_events<8> {
    cudaEvent_t *const comp0 = at[0], *const comp1 = at[1], *const kv0 = at[2], *const kv1 = at[3],
                       *const hop0 = at[4], *const hop1 = at[5], *const pre = at[6], *const post = at[7];
};

} // namespace

int ring_cuda_grad_layouts(const attn_problem_t *p, int kind, int P, attn_layout_t *lq, attn_layout_t *lk,
                           attn_err_t *err) {
    const attn_vis_t vis = problem_vis(p);
    return plan_layouts((attn_layout_kind_t)kind, p->n_q, p->n_k, &vis, P, lq, lk, err);
}

ring_cuda_grad_host_t::~ring_cuda_grad_host_t() {
    for (int r = 0; r < ATTN_MAX_RANKS; r++)
        for (float *f : {q[r], kv[r], o[r], d_o[r], lse[r], dq[r], dkv[r]})
            attn_free(f);
}

int ring_cuda_grad_host_t::alloc(const attn_problem_t *p, const attn_layout_t *lq, const attn_layout_t *lk, int i,
                                 int r, attn_err_t *err) {
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    size_t nq = (size_t)layout_local_count(lq, r), nk = (size_t)layout_local_count(lk, r);
    size_t qn = (size_t)BH * nq * d, kn = (size_t)BHkv * nk * d;
    q[i] = (float *)attn_alloc(qn * 4 + 16, err, "ring_cuda backward host Q");
    o[i] = (float *)attn_alloc(qn * 4 + 16, err, "ring_cuda backward host O");
    d_o[i] = (float *)attn_alloc(qn * 4 + 16, err, "ring_cuda backward host dO");
    dq[i] = (float *)attn_alloc(qn * 4 + 16, err, "ring_cuda backward host dQ");
    lse[i] = (float *)attn_alloc((size_t)BH * nq * 4 + 16, err, "ring_cuda backward host LSE");
    kv[i] = (float *)attn_alloc(2 * kn * 4 + 16, err, "ring_cuda backward host K|V");
    dkv[i] = (float *)attn_alloc(2 * kn * 4 + 16, err, "ring_cuda backward host dK|dV");
    return q[i] && o[i] && d_o[i] && dq[i] && lse[i] && kv[i] && dkv[i] ? ATTN_OK : ATTN_ERUNTIME;
}

int ring_cuda_grad_takes(const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    (void)x; /* cuda_local and nccl alike: dist_cuda_supports has judged the transport */
    if (!dtype_is_16bit(p->dtype)) { /* flash_bwd is instantiated for bf16 and f16 */
        snprintf(reason, len, "the GPU ring backward runs in bf16 or f16 only (got %s)", dtype_name(p->dtype));
        return 0;
    }
    if (p->head_dim != 64 && p->head_dim != 128) { /* the forward takes d = 256 too; flash_bwd does not */
        snprintf(reason, len, "the GPU ring backward has kernels for head dims 64 and 128 only (got %lld)",
                 (long long)p->head_dim);
        return 0;
    }
    return 1;
}

size_t ring_cuda_grad_rank_bytes(const attn_problem_t *p, int ranks, int kind, int rank) {
    attn_layout_t lq, lk;
    attn_err_t err = {};
    int P = ranks > 1 ? ranks : 1;
    if (ring_cuda_grad_layouts(p, kind, P, &lq, &lk, &err))
        return 0;
    size_t d = (size_t)p->head_dim, bh = (size_t)(p->batch * p->heads), bhkv = (size_t)(p->batch * p->kv_heads);
    size_t nq = (size_t)layout_local_count(&lq, rank), kmax = (size_t)layout_max_local_count(&lk);
    size_t blk = 2 * bhkv * kmax * d, qn = bh * nq * d;
    size_t stage = std::max(qn, blk);
    return 2 * qn * sizeof(bf16) + (2 * qn + 2 * bh * nq) * sizeof(float) + 2 * blk * sizeof(bf16) +
           3 * blk * sizeof(float) + stage * sizeof(float) + 11 * 16 + cuda_vis_bytes(p);
}

int ring_cuda_grad_ranks(gcomm *g, const attn_problem_t *p, int kind_i, ring_cuda_grad_host_t &h,
                         ring_cuda_stats_t *st, attn_err_t *err) {
    attn_layout_kind_t kind = (attn_layout_kind_t)kind_i;
    const attn_vis_t vis = problem_vis(p);
    int P = g->size, L = g->count;
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    attn_layout_t lq, lk;
    ATTN_TRY(ring_cuda_grad_layouts(p, kind_i, P, &lq, &lk, err));
    int64_t kmax = layout_max_local_count(&lk);
    size_t blk = (size_t)(2 * BHkv * kmax * d), row_floats = (size_t)(2 * BHkv * d);
    grad_bufs b[ATTN_MAX_RANKS];
    grad_events ev[ATTN_MAX_RANKS];
    for (int i = 0; i < L; i++) {
        int r = g->first + i;
        size_t nq = (size_t)layout_local_count(&lq, r), nk = (size_t)layout_local_count(&lk, r);
        size_t qn = (size_t)BH * nq * d, rows = (size_t)BH * nq, kn = (size_t)BHkv * nk * d;
        dev_buf stage;
        DEV_ALLOC(stage, std::max(qn, 2 * kn) * sizeof(float) + 16, "ring_cuda backward upload staging");
        DEV_ALLOC(b[i].q, qn * sizeof(bf16) + 16, "ring_cuda backward Q (16-bit)");
        DEV_ALLOC(b[i].dob, qn * sizeof(bf16) + 16, "ring_cuda backward dO (16-bit)");
        DEV_ALLOC(b[i].o32, qn * sizeof(float) + 16, "ring_cuda backward O, then the dQ accumulator");
        DEV_ALLOC(b[i].do32, qn * sizeof(float) + 16, "ring_cuda backward dO (float32)");
        DEV_ALLOC(b[i].lse2, rows * sizeof(float) + 16, "ring_cuda backward LSE");
        DEV_ALLOC(b[i].delta, rows * sizeof(float) + 16, "ring_cuda backward D");
        for (int t = 0; t < 2; t++) {
            DEV_ALLOC(b[i].kv[t], blk * sizeof(bf16) + 16, "ring_cuda backward K/V block (16-bit)");
            DEV_ALLOC(b[i].acc[t], blk * sizeof(float) + 16, "ring_cuda backward dK/dV accumulator");
        }
        DEV_ALLOC(b[i].in, blk * sizeof(float) + 16, "ring_cuda backward dK/dV received");
        cudaStream_t s = g->compute[i];
        if (qn) {
            ATTN_TRY(cuda_upload(b[i].q.ptr, p->dtype, h.q[i], qn, stage.as<float>(), s, err));
            CUDA_TRY(cudaMemcpyAsync(b[i].o32.ptr, h.o[i], qn * sizeof(float), cudaMemcpyHostToDevice, s));
            CUDA_TRY(cudaMemcpyAsync(b[i].do32.ptr, h.d_o[i], qn * sizeof(float), cudaMemcpyHostToDevice, s));
            CUDA_TRY(cudaMemcpyAsync(b[i].lse2.ptr, h.lse[i], rows * sizeof(float), cudaMemcpyHostToDevice, s));
        }
        if (kn) /* K then V in one block, so a ring step is one message */
            ATTN_TRY(cuda_upload(b[i].kv[0].ptr, p->dtype, h.kv[i], 2 * kn, stage.as<float>(), s, err));
        attn_vis_t dvis;
        ATTN_TRY(cuda_vis_upload(p, b[i].docs, &dvis, s, err)); /* each rank its own copy, as on its own GPU */
        CUDA_TRY(cudaStreamSynchronize(s)); /* the staging buffer goes at the end of this iteration */
        ATTN_TRY(ev[i].create(P, err));
    }
    ATTN_TRY(gcomm_inputs_ready(g, err)); /* nccl: every rank's timed region starts together */
    for (int i = 0; i < L; i++) { /* step 0's compute starts with the prep (as ring_grad.c's D) */
        cudaStream_t cs = g->compute[i];
        int64_t rows = BH * layout_local_count(&lq, g->first + i);
        CUDA_TRY(cudaEventRecord(ev[i].start, cs));
        CUDA_TRY(cudaStreamWaitEvent(g->comm[i], ev[i].start, 0));
        CUDA_TRY(cudaEventRecord(ev[i].comp0[0], cs));
        ATTN_TRY(cuda_flash_bwd_prep(b[i].o32.as<float>(), b[i].do32.as<float>(), b[i].lse2.as<float>(),
                                     b[i].delta.as<float>(), b[i].dob.ptr, rows, (int)d, p->dtype, cs, err));
        CUDA_TRY(cudaMemsetAsync(b[i].o32.ptr, 0, (size_t)(rows * d) * sizeof(float), cs)); /* O spent: dQ's sum */
    }
    for (int s = 0; s < P; s++) {
        int cur = s & 1, a = ring_grad_acc_buffer(s);
        plan_ring_step_t ps[ATTN_MAX_RANKS];
        ring_grad_bytes_t by[ATTN_MAX_RANKS];
        for (int i = 0; i < L; i++) {
            int me = g->first + i;
            ATTN_TRY(plan_ring_step(kind, p->n_q, p->n_k, &vis, P, me, s, &ps[i], err));
            by[i] = ring_grad_step_bytes(&ps[i], s, P, (int64_t)row_floats,
                                         layout_local_count(&lk, ring_grad_recv_block(me, s, P)));
            st[i].bytes_sent += (double)(by[i].kv_sent + by[i].hop_sent);
            st[i].bytes_recv += (double)(by[i].kv_recv + by[i].hop_recv);
        }
        if (s < P - 1) { /* the next K/V block moves while this one is computed on */
            comm_shift_part_t part[ATTN_MAX_RANKS];
            for (int i = 0; i < L; i++)
                part[i] = {b[i].kv[cur].ptr, (size_t)by[i].kv_sent, b[i].kv[1 - cur].ptr, (size_t)by[i].kv_recv,
                           s > 0 ? (void *)ev[i].comp1[s - 1] : nullptr, (void *)ev[i].kv0[s], 0, 0, 0};
            ATTN_TRY(comm_shift(g, part, 0, nullptr, err));
            for (int i = 0; i < L; i++)
                CUDA_TRY(cudaEventRecord(ev[i].kv1[s], g->comm[i]));
        }
        for (int i = 0; i < L; i++) {
            cudaStream_t cs = g->compute[i];
            int64_t nq = ps[i].q_rows, kcnt = ps[i].k_rows;
            size_t acc_n = row_floats * (size_t)kcnt;
            /* kv1[s − 1] brings this step's block, and it also follows the copy out of the
             * accumulator zeroed below, which was step s − 2's hop source: cuda_local's shift of
             * step s − 1 waited for the receiving neighbour's comm stream, where that copy ran
             * (gcomm.cu: a copy waits for the sender's and the receiver's streams); nccl's sends
             * run in order on this rank's one comm stream. So the previous hop is not waited for
             * here but only before its sum is added, and it runs meanwhile (ring_grad.c's order). */
            if (s > 0) {
                CUDA_TRY(cudaStreamWaitEvent(cs, ev[i].kv1[s - 1], 0));
                CUDA_TRY(cudaEventRecord(ev[i].comp0[s], cs));
            }
            float *acc = b[i].acc[a].as<float>();
            CUDA_TRY(cudaMemsetAsync(acc, 0, acc_n * sizeof(float), cs));
            const bf16 *kb = b[i].kv[cur].as<bf16>(), *vb = kb + BHkv * kcnt * d;
            float *dkb = acc, *dvb = acc + BHkv * kcnt * d;
            for (int pi = 0; pi < ps[i].n_pairs; pi++) {
                const plan_pair_t *pr = &ps[i].pair[pi];
                if (pr->skip) {
                    st[i].blocks_skipped++;
                    continue;
                }
                st[i].blocks_computed++;
                ring_grad_launch_t l = ring_grad_launch_of(pr);
                /* band coordinates for the mask, the pieces' global positions for documents */
                const piece_vis_t pv = plan_pair_vis(&vis, b[i].docs.as<int64_t>(), pr);
                cuda_flash_bwd_call call = {b[i].q.as<bf16>() + l.q_row0 * d, kb + l.k_row0 * d, vb + l.k_row0 * d,
                                            b[i].dob.as<bf16>() + l.q_row0 * d, b[i].lse2.as<float>() + l.q_row0,
                                            b[i].delta.as<float>() + l.q_row0, b[i].o32.as<float>() + l.q_row0 * d,
                                            dkb + l.k_row0 * d, dvb + l.k_row0 * d, l.n_q, l.n_k, nq, kcnt, l.q_off,
                                            l.window, (int)p->mask, pv.vis.doc, pv.vis.n_docs, 1, pv.q0, pv.k0,
                                            pv.stride};
                ATTN_TRY(cuda_flash_bwd_launch(p, &call, cs, err));
            }
            if (s > 0) { /* the partial sum of this block that arrived with the previous hop */
                CUDA_TRY(cudaEventRecord(ev[i].pre[s], cs));
                CUDA_TRY(cudaStreamWaitEvent(cs, ev[i].hop1[s - 1], 0));
                CUDA_TRY(cudaEventRecord(ev[i].post[s], cs));
                add_kernel<<<256, 256, 0, cs>>>(acc, b[i].in.as<float>(), (int64_t)acc_n);
                CUDA_TRY_LAUNCH();
            }
            CUDA_TRY(cudaEventRecord(ev[i].comp1[s], cs));
        }
        if (P > 1) { /* the block's sum moves on; the last hop (s = P − 1) takes it home */
            comm_shift_part_t part[ATTN_MAX_RANKS];
            for (int i = 0; i < L; i++) {
                CUDA_TRY(cudaStreamWaitEvent(g->comm[i], ev[i].comp1[s], 0)); /* the sum is complete */
                part[i] = {b[i].acc[a].ptr, (size_t)by[i].hop_sent, b[i].in.ptr, (size_t)by[i].hop_recv,
                           (void *)ev[i].comp1[s], (void *)ev[i].hop0[s], 0, 0, 0};
            }
            ATTN_TRY(comm_shift(g, part, 0, nullptr, err));
            for (int i = 0; i < L; i++)
                CUDA_TRY(cudaEventRecord(ev[i].hop1[s], g->comm[i]));
        }
    }
    for (int i = 0; i < L; i++) {
        cudaStream_t cs = g->compute[i];
        size_t qn = (size_t)(BH * layout_local_count(&lq, g->first + i) * d);
        if (P > 1)
            CUDA_TRY(cudaStreamWaitEvent(cs, ev[i].hop1[P - 1], 0));
        ATTN_TRY(cuda_flash_bwd_scale(b[i].o32.as<float>(), b[i].o32.as<float>(), qn, (float)problem_scale(p), cs, err));
        CUDA_TRY(cudaEventRecord(ev[i].end, cs));
    }
    /* Waited step by step, so --comm-timeout bounds the time without progress (one step), not
     * the whole ring (as ring_cuda_loop). */
    for (int s = 0; s < P; s++)
        for (int i = 0; i < L; i++)
            ATTN_TRY(gcomm_sync(g, ev[i].comp1[s], "ring_cuda backward step", err));
    for (int i = 0; i < L; i++)
        ATTN_TRY(gcomm_sync(g, ev[i].end, "ring_cuda backward", err));
    /* Figures from the events, as the forward's: compute per step (step 0 with the prep; the
     * wait for the previous hop left out), and a transfer is exposed for as long as its reader
     * waited for it: the next step's start for a K/V block, the add of step s + 1 for hop s (the
     * dQ scale for the last hop). */
    for (int i = 0; i < L; i++) {
        int me = g->first + i;
        st[i].n_steps = P;
        for (int s = 0; s < P; s++) {
            double c = seconds_between(ev[i].comp0[s], ev[i].comp1[s]);
            if (s > 0)
                c -= std::max(0.0, seconds_between(ev[i].pre[s], ev[i].post[s]));
            st[i].step_compute_s[s] = c;
            st[i].compute_s += c;
            if (s < P - 1) {
                st[i].comm_s += seconds_between(ev[i].kv0[s], ev[i].kv1[s]);
                st[i].exposed_s += std::max(0.0, seconds_between(ev[i].comp1[s], ev[i].kv1[s]));
            }
            if (P > 1) {
                st[i].comm_s += seconds_between(ev[i].hop0[s], ev[i].hop1[s]);
                st[i].exposed_s += std::max(0.0, s < P - 1 ? seconds_between(ev[i].pre[s + 1], ev[i].post[s + 1])
                                                           : seconds_between(ev[i].comp1[s], ev[i].hop1[s]));
            }
        }
        st[i].wall_s = seconds_between(ev[i].start, ev[i].end);
        st[i].device_bytes = (double)ring_cuda_grad_rank_bytes(p, P, kind_i, me);
        int64_t nq = layout_local_count(&lq, me), kmine = layout_local_count(&lk, me);
        size_t qn = (size_t)(BH * nq * d);
        const dev_buf &home = P > 1 ? b[i].in : b[i].acc[0];
        if (qn)
            CUDA_TRY(cudaMemcpy(h.dq[i], b[i].o32.ptr, qn * sizeof(float), cudaMemcpyDeviceToHost));
        if (kmine)
            CUDA_TRY(cudaMemcpy(h.dkv[i], home.ptr, row_floats * (size_t)kmine * sizeof(float), cudaMemcpyDeviceToHost));
    }
    return ATTN_OK;
}

int ring_cuda_backward_local(const attn_problem_t *p, const attn_exec_t *x, int kind, const attn_grad_io_t *g,
                             ring_cuda_stats_t *st, attn_err_t *err) {
    char why[256];
    if (!ring_cuda_grad_takes(p, x, why, sizeof why))
        return attn_fail(err, ATTN_EUSAGE, "%s", why);
    ATTN_TRY(cuda_begin(x, err));
    int P = exec_ranks(x);
    attn_layout_t lq, lk;
    ATTN_TRY(ring_cuda_grad_layouts(p, kind, P, &lq, &lk, err));
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    ring_cuda_grad_host_t h;
    for (int r = 0; r < P; r++) {
        size_t kn = (size_t)(BHkv * layout_local_count(&lk, r) * d);
        ATTN_TRY(h.alloc(p, &lq, &lk, r, r, err));
        dist_shard_copy(&lq, r, BH, d, h.q[r], (float *)g->q, 1);
        dist_shard_copy(&lq, r, BH, d, h.o[r], (float *)g->o, 1);
        dist_shard_copy(&lq, r, BH, d, h.d_o[r], (float *)g->d_o, 1);
        dist_shard_copy(&lq, r, BH, 1, h.lse[r], (float *)g->lse, 1);
        dist_shard_copy(&lk, r, BHkv, d, h.kv[r], (float *)g->k, 1);
        dist_shard_copy(&lk, r, BHkv, d, h.kv[r] + kn, (float *)g->v, 1);
    }
    gcomm gc = {};
    int rc = gcomm_local_open(&gc, P, x->device, x->comm_timeout, err);
    if (rc == ATTN_OK)
        rc = ring_cuda_grad_ranks(&gc, p, kind, h, st, err);
    gcomm_close(&gc);
    ATTN_TRY(rc);
    for (int r = 0; r < P; r++) {
        size_t kn = (size_t)(BHkv * layout_local_count(&lk, r) * d);
        dist_shard_copy(&lq, r, BH, d, h.dq[r], (float *)g->dq, 0);
        dist_shard_copy(&lk, r, BHkv, d, h.dkv[r], (float *)g->dk, 0);
        dist_shard_copy(&lk, r, BHkv, d, h.dkv[r] + kn, (float *)g->dv, 0);
    }
    return ATTN_OK;
}
