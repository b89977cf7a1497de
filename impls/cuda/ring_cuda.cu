/* ring_cuda.cu — ring attention on GPUs (ring_cuda, striped_cuda, zigzag_cuda): ring.c's loop
 * with flash.cu as each step's compute, a compute and a comm stream per rank ordered by events,
 * bf16 inputs and float32 merges, on cuda_local or nccl (gcomm.cuh); steps from impls/parallel/plan.h.
 * Design: docs/ring.md. */
#include <math.h>
#include <string.h>

#include <algorithm>
#include <initializer_list>

#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/gcomm.cuh"
#include "impls/cuda/ring_cuda.h"

extern "C" {
#include "comm/layout.h"
#include "impls/parallel/dist.h"
#include "impls/parallel/plan.h"
#include "impls/parallel/usp_map.h"
}

namespace {

typedef __nv_bfloat16 bf16;

/* acc ← acc ⊕ part for rows [r0, r0 + rows) of every (batch, head) slab (ld rows apart): one
 * warp per row, the log-sum-exp rule in float32. */
__global__ void merge_kernel(float *o_acc, float *l_acc, const float *o_part, const float *l_part, int64_t ld,
                             int64_t r0, int64_t rows, int64_t slabs, int d) {
    int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (w >= rows * slabs)
        return;
    int64_t at = (w / rows) * ld + r0 + w % rows;
    float lp = l_part[at], la = l_acc[at];
    if (lp == -INFINITY)
        return;
    float *oa = o_acc + at * d;
    const float *op = o_part + at * d;
    if (la == -INFINITY) {
        for (int c = lane; c < d; c += 32)
            oa[c] = op[c];
    } else {
        float m = fmaxf(la, lp), wa = expf(la - m), wp = expf(lp - m), inv = 1.f / (wa + wp);
        for (int c = lane; c < d; c += 32)
            oa[c] = (wa * oa[c] + wp * op[c]) * inv;
        lp = m + logf(wa + wp);
    }
    __syncwarp();
    if (lane == 0)
        l_acc[at] = lp;
}

__global__ void fill_kernel(float *x, int64_t n, float v) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = v;
}

/* One rank's device buffers (their sum is ring_cuda_rank_bytes). */
struct rank_bufs {
    dev_buf q, kv[2], o, lse, o_part, lse_part, docs;
};

/* Per step: comp0 / comp1 around the compute (compute stream), comm0 / comm1 around the K/V
 * transfer (comm stream); cuda_util.cuh's step_events. */
struct rank_events : step_events<4> {
    cudaEvent_t *const comp0 = at[0], *const comp1 = at[1], *const comm0 = at[2], *const comm1 = at[3];
};

} // namespace

int ring_cuda_fill(float *o, float *lse, int64_t o_n, int64_t lse_n, cudaStream_t s, attn_err_t *err) {
    fill_kernel<<<256, 256, 0, s>>>(o, o_n, 0.f);
    fill_kernel<<<256, 256, 0, s>>>(lse, lse_n, -INFINITY);
    CUDA_TRY_LAUNCH();
    return ATTN_OK;
}

int ring_cuda_shard_dev(void *shard, void *whole, const attn_layout_t *l, int rank, int64_t outer, int64_t d,
                        size_t elem, int to_shard, cudaStream_t s, attn_err_t *err) {
    dist_run_t *runs = (dist_run_t *)malloc((size_t)(2 * outer) * sizeof *runs + 1);
    if (!runs)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory for the shard runs");
    int count = dist_shard_runs(l, rank, outer, d, runs, (int)(2 * outer));
    cudaError_t e = count < 0 ? cudaErrorInvalidValue : cudaSuccess;
    for (int r = 0; r < count && e == cudaSuccess; r++) {
        dist_copy2d_t c = dist_run_copy2d(&runs[r], d, elem, to_shard);
        char *dst = static_cast<char *>(to_shard ? shard : whole);
        const char *src = static_cast<const char *>(to_shard ? whole : shard);
        e = cudaMemcpy2DAsync(dst + c.dst, c.dpitch, src + c.src, c.spitch, c.width, c.height,
                              cudaMemcpyDeviceToDevice, s);
    }
    free(runs);
    CUDA_TRY(e);
    return ATTN_OK;
}

int ring_cuda_kv_in(void *dst, const attn_problem_t *p, const ring_cuda_host_t *h, int i, int rank, int which,
                    size_t n, float *staging, cudaStream_t s, attn_err_t *err) {
    if (!h->k_dev)
        return cuda_upload(dst, p->dtype, which ? h->v[i] : h->k[i], n, staging, s, err);
    if (!dtype_is_16bit(p->dtype))
        return attn_fail(err, ATTN_EUSAGE, "device K/V shards are bf16 or f16 (got %s)", dtype_name(p->dtype));
    int64_t outer = p->batch * p->kv_heads, d = p->head_dim;
    if ((int64_t)n != outer * layout_local_count(h->kv_layout, rank) * d)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: a K/V shard of %zu elements is not its layout's", rank, n);
    /* bf16 and f16: 2 bytes, as kv_device.cu stores them */
    return ring_cuda_shard_dev(dst, const_cast<void *>(which ? h->v_dev : h->k_dev), h->kv_layout, rank, outer, d,
                               sizeof(bf16), 1, s, err);
}

int ring_cuda_q_in(void *dst, const attn_problem_t *p, const ring_cuda_host_t *h, int i, int rank, size_t n,
                   float *staging, cudaStream_t s, attn_err_t *err) {
    if (!h->q_dev)
        return cuda_upload(dst, p->dtype, h->q[i], n, staging, s, err);
    int64_t outer = p->batch * p->heads, d = p->head_dim;
    if ((int64_t)n != outer * layout_local_count(h->q_layout, rank) * d)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: a Q shard of %zu elements is not its layout's", rank, n);
    ATTN_TRY(ring_cuda_shard_dev(staging, const_cast<float *>(h->q_dev), h->q_layout, rank, outer, d, sizeof(float), 1,
                                 s, err));
    return cuda_to_dtype_device(dst, p->dtype, staging, n, s, err);
}

int ring_cuda_ol_out(const ring_cuda_host_t *h, int i, int rank, float *o, float *lse, int64_t rows, int64_t d,
                     cudaStream_t s, attn_err_t *err) {
    if (rows <= 0)
        return ATTN_OK;
    if (!h->o_dev) {
        CUDA_TRY(cudaMemcpy(h->o[i], o, (size_t)(rows * d) * sizeof(float), cudaMemcpyDeviceToHost));
        CUDA_TRY(cudaMemcpy(h->lse[i], lse, (size_t)rows * sizeof(float), cudaMemcpyDeviceToHost));
        problem_finish_rows(ATTN_F32, h->o[i], h->lse[i], (size_t)rows, d); /* merged rows are whole */
        return ATTN_OK;
    }
    int64_t count = layout_local_count(h->q_layout, rank), outer = count ? rows / count : 0;
    if (outer * count != rows)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: an O shard of %lld rows is not its layout's", rank, (long long)rows);
    ATTN_TRY(cuda_finish_rows_device(o, lse, rows, d, s, err));
    ATTN_TRY(ring_cuda_shard_dev(o, h->o_dev, h->q_layout, rank, outer, d, sizeof(float), 0, s, err));
    ATTN_TRY(ring_cuda_shard_dev(lse, h->lse_dev, h->q_layout, rank, outer, 1, sizeof(float), 0, s, err));
    CUDA_TRY(cudaStreamSynchronize(s));
    return ATTN_OK;
}

extern "C" size_t ring_cuda_rank_bytes(const attn_problem_t *p, int ranks, int kind, int rank) {
    attn_layout_t lq, lk;
    attn_err_t err = {};
    int P = ranks > 1 ? ranks : 1;
    if (layout_init(&lq, (attn_layout_kind_t)kind, p->n_q, P, &err) ||
        layout_init(&lk, (attn_layout_kind_t)kind, p->n_k, P, &err))
        return 0;
    size_t d = (size_t)p->head_dim, bh = (size_t)(p->batch * p->heads), bhkv = (size_t)(p->batch * p->kv_heads);
    size_t nq = (size_t)layout_local_count(&lq, rank), kmax = (size_t)layout_max_local_count(&lk);
    return bh * nq * d * sizeof(bf16) + 2 * (2 * bhkv * kmax * d * sizeof(bf16) + 16) +
           2 * (bh * nq * d + bh * nq) * sizeof(float) + 80 /* the 16-byte pads of the seven buffers */
           + cuda_vis_bytes(p);                              /* the document offsets */
}

int ring_cuda_loop(gcomm *g, const attn_problem_t *p, attn_layout_kind_t kind, int R, const ring_cuda_member_t m[],
                   const cudaEvent_t done[], ring_cuda_stats_t *st, attn_err_t *err) {
    int L = g->count;
    int64_t d = p->head_dim;
    const attn_vis_t vis = problem_vis(p); /* host-side planning; the kernels get piece_vis.h's view of it */
    attn_problem_t mp[ATTN_MAX_RANKS]; /* each member's heads (usp: its kv heads may differ by member) */
    rank_events ev[ATTN_MAX_RANKS];
    for (int i = 0; i < L; i++) {
        ATTN_TRY(ev[i].create(R, err));
        mp[i] = *p;
        if (m[i].heads)
            mp[i].heads = m[i].heads, mp[i].kv_heads = m[i].kv_heads;
        if (mask_has_docs(&vis) && !m[i].doc) /* the kernels would see one document */
            return attn_fail(err, ATTN_ERUNTIME, "ring_cuda: member %d has no device copy of the document offsets", i);
    }
    for (int s = 0; s < R; s++) {
        int cur = usp_ring_buffer(s); /* the block computed at step s; step s + 1's arrives in the other */
        /* The transfer of step s: block cur goes on while it is computed on. */
        if (s < R - 1) {
            comm_shift_part_t part[ATTN_MAX_RANKS];
            for (int i = 0; i < L; i++) {
                plan_ring_step_t ps;
                ATTN_TRY(plan_ring_step(kind, p->n_q, p->n_k, &vis, R, m[i].pos, s, &ps, err));
                int64_t BHkv = mp[i].batch * mp[i].kv_heads;
                size_t sb = (size_t)(2 * BHkv * ps.rows_sent * d) * sizeof(bf16);
                size_t rb = (size_t)(2 * BHkv * ps.rows_recv * d) * sizeof(bf16);
                st[i].bytes_sent += (double)sb, st[i].bytes_recv += (double)rb;
                /* the receive waits for step s − 1's compute, which read the buffer received into */
                part[i] = {m[i].kv[cur], sb, m[i].kv[1 - cur], rb, s > 0 ? (void *)ev[i].comp1[s - 1] : nullptr,
                           (void *)ev[i].comm0[s], m[i].peers, m[i].send_to, m[i].recv_from};
            }
            ATTN_TRY(comm_shift(g, part, 0, nullptr, err));
            for (int i = 0; i < L; i++)
                CUDA_TRY(cudaEventRecord(ev[i].comm1[s], g->comm[i]));
        }
        for (int i = 0; i < L; i++) {
            cudaStream_t cs = g->compute[i];
            int64_t BH = mp[i].batch * mp[i].heads, BHkv = mp[i].batch * mp[i].kv_heads;
            if (s > 0)
                CUDA_TRY(cudaStreamWaitEvent(cs, ev[i].comm1[s - 1], 0));
            CUDA_TRY(cudaEventRecord(ev[i].comp0[s], cs));
            plan_ring_step_t ps;
            ATTN_TRY(plan_ring_step(kind, p->n_q, p->n_k, &vis, R, m[i].pos, s, &ps, err));
            int64_t nq = ps.q_rows, kcnt = ps.k_rows;
            const bf16 *kblock = (const bf16 *)m[i].kv[cur], *vblock = kblock + BHkv * kcnt * d;
            for (int pi = 0; pi < ps.n_pairs; pi++) {
                const plan_pair_t *pr = &ps.pair[pi];
                const layout_piece_t *qp = &pr->q, *kp = &pr->k;
                if (pr->skip) {
                    st[i].blocks_skipped++;
                    continue;
                }
                st[i].blocks_computed++;
                /* band coordinates for the mask, the pieces' global positions for documents */
                const piece_vis_t pv = plan_pair_vis(&vis, m[i].doc, pr);
                cuda_flash_call call = {(const bf16 *)m[i].q + qp->local_start * d,
                                        kblock + kp->local_start * d,
                                        vblock + kp->local_start * d,
                                        m[i].o_part + qp->local_start * d,
                                        m[i].lse_part + qp->local_start,
                                        qp->count, kp->count, nq, kcnt, pv.q_off, pv.vis.window, (int)p->mask,
                                        pv.vis.doc, pv.vis.n_docs, pv.q0, pv.k0, pv.stride};
                ATTN_TRY(cuda_flash_launch(&mp[i], &call, cs, err));
                int64_t warps = qp->count * BH;
                merge_kernel<<<(unsigned)((warps * 32 + 255) / 256), 256, 0, cs>>>(
                    m[i].o, m[i].lse, m[i].o_part, m[i].lse_part, nq, qp->local_start, qp->count, BH, (int)d);
                CUDA_TRY_LAUNCH();
            }
            CUDA_TRY(cudaEventRecord(ev[i].comp1[s], cs));
        }
    }
    for (int i = 0; i < L; i++)
        CUDA_TRY(cudaEventRecord(done[i], g->compute[i]));
    /* Waited step by step, so --comm-timeout bounds the time without progress (one step), not
     * the whole ring. */
    for (int s = 0; s < R; s++)
        for (int i = 0; i < L; i++)
            ATTN_TRY(gcomm_sync(g, ev[i].comp1[s], "ring_cuda step", err));
    for (int i = 0; i < L; i++)
        ATTN_TRY(gcomm_sync(g, done[i], "ring_cuda steps", err));
    /* Figures from the events: compute per step; a transfer is exposed for as long as the next
     * step's compute had to wait for it after the current compute ended. */
    for (int i = 0; i < L; i++) {
        st[i].n_steps = R;
        for (int s = 0; s < R; s++) {
            st[i].step_compute_s[s] = seconds_between(ev[i].comp0[s], ev[i].comp1[s]);
            st[i].compute_s += st[i].step_compute_s[s];
            if (s < R - 1) {
                st[i].comm_s += seconds_between(ev[i].comm0[s], ev[i].comm1[s]);
                st[i].exposed_s += std::max(0.0, seconds_between(ev[i].comp1[s], ev[i].comm1[s]));
            }
        }
    }
    return ATTN_OK;
}

int ring_cuda_ranks(gcomm *g, const attn_problem_t *p, int kind_i, const ring_cuda_host_t *h, ring_cuda_stats_t *st,
                    attn_err_t *err) {
    attn_layout_kind_t kind = (attn_layout_kind_t)kind_i;
    int P = g->size, L = g->count;
    int64_t d = p->head_dim, BH = p->batch * p->heads, BHkv = p->batch * p->kv_heads;
    attn_layout_t lq, lk;
    ATTN_TRY(layout_init(&lq, kind, p->n_q, P, err));
    ATTN_TRY(layout_init(&lk, kind, p->n_k, P, err));
    int64_t kmax = layout_max_local_count(&lk);
    size_t block_elems = (size_t)(2 * BHkv * kmax * d);
    rank_bufs b[ATTN_MAX_RANKS];
    rank_events ev[ATTN_MAX_RANKS]; /* start and end only */

    /* Buffers, then the rank's shards uploaded and converted (outside the timed region). */
    {
        size_t stage_n = 1;
        for (int i = 0; i < L; i++) {
            int r = g->first + i;
            size_t nq = (size_t)layout_local_count(&lq, r), nk = (size_t)layout_local_count(&lk, r);
            stage_n = std::max(stage_n, std::max((size_t)BH * nq * d, (size_t)BHkv * nk * d));
        }
        dev_buf stage;
        DEV_ALLOC(stage, stage_n * sizeof(float), "ring_cuda upload staging");
        for (int i = 0; i < L; i++) {
            int r = g->first + i;
            size_t nq = (size_t)layout_local_count(&lq, r), nk = (size_t)layout_local_count(&lk, r);
            size_t qn = (size_t)BH * nq * d, kn = (size_t)BHkv * nk * d;
            DEV_ALLOC(b[i].q, qn * sizeof(bf16) + 16, "ring_cuda Q shard (bf16)");
            DEV_ALLOC(b[i].kv[0], block_elems * sizeof(bf16) + 16, "ring_cuda K/V block (bf16)");
            DEV_ALLOC(b[i].kv[1], block_elems * sizeof(bf16) + 16, "ring_cuda K/V block (bf16)");
            DEV_ALLOC(b[i].o, qn * sizeof(float) + 16, "ring_cuda O shard");
            DEV_ALLOC(b[i].o_part, qn * sizeof(float) + 16, "ring_cuda partial O");
            DEV_ALLOC(b[i].lse, (size_t)BH * nq * sizeof(float) + 16, "ring_cuda LSE shard");
            DEV_ALLOC(b[i].lse_part, (size_t)BH * nq * sizeof(float) + 16, "ring_cuda partial LSE");
            cudaStream_t s = g->compute[i];
            if (qn)
                ATTN_TRY(ring_cuda_q_in(b[i].q.ptr, p, h, i, r, qn, stage.as<float>(), s, err));
            if (kn) { /* K then V in one block, so a ring step is one message */
                ATTN_TRY(ring_cuda_kv_in(b[i].kv[0].ptr, p, h, i, r, 0, kn, stage.as<float>(), s, err));
                ATTN_TRY(ring_cuda_kv_in(b[i].kv[0].as<bf16>() + kn, p, h, i, r, 1, kn, stage.as<float>(), s, err));
            }
            ATTN_TRY(ring_cuda_fill(b[i].o.as<float>(), b[i].lse.as<float>(), (int64_t)qn, BH * (int64_t)nq, s, err));
            attn_vis_t dvis;
            ATTN_TRY(cuda_vis_upload(p, b[i].docs, &dvis, s, err)); /* each rank its own copy, as on its own GPU */
            CUDA_TRY(cudaStreamSynchronize(s)); /* the staging buffer is reused by the next rank */
            ATTN_TRY(ev[i].create(0, err));
        }
    }
    ATTN_TRY(gcomm_inputs_ready(g, err));
    /* The comm stream starts where the uploads ended. */
    ring_cuda_member_t m[ATTN_MAX_RANKS];
    cudaEvent_t done[ATTN_MAX_RANKS];
    for (int i = 0; i < L; i++) {
        CUDA_TRY(cudaEventRecord(ev[i].start, g->compute[i]));
        CUDA_TRY(cudaStreamWaitEvent(g->comm[i], ev[i].start, 0));
        m[i] = {g->first + i, 0, 0, 0, 0, 0, b[i].q.ptr, {b[i].kv[0].ptr, b[i].kv[1].ptr}, b[i].o.as<float>(),
                b[i].lse.as<float>(), b[i].o_part.as<float>(), b[i].lse_part.as<float>(),
                b[i].docs.as<int64_t>()};
        done[i] = ev[i].end;
    }
    ATTN_TRY(ring_cuda_loop(g, p, kind, P, m, done, st, err));
    for (int i = 0; i < L; i++) {
        st[i].wall_s = seconds_between(ev[i].start, ev[i].end);
        st[i].device_bytes = (double)ring_cuda_rank_bytes(p, P, kind_i, g->first + i);
        int r = g->first + i;
        size_t qn = (size_t)(BH * layout_local_count(&lq, r) * d), ln = (size_t)(BH * layout_local_count(&lq, r));
        if (qn)
            ATTN_TRY(ring_cuda_ol_out(h, i, r, b[i].o.as<float>(), b[i].lse.as<float>(), (int64_t)ln, d,
                                      g->compute[i], err));
    }
    return ATTN_OK;
}
