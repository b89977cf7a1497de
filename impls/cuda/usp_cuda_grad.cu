/* usp_cuda_grad.cu — usp_cuda's backward on cuda_local: the U × R mesh's Ulysses members hold
 * disjoint query heads (H/U each, with the kv heads they read: usp_cuda_takes), and a member's
 * gradient needs only its own heads, so each member u's R ranks run the GPU ring backward
 * (ring_cuda_grad.cu) across the R groups on u's heads, on a cuda_local communicator of R
 * ranks, and dK/dV of a kv head read by several members are summed. On one device the forward's
 * head re-shard is a cut of the whole tensors (usp_grad_heads.h); the U rings run one after
 * another. Design and what is unverified: docs/backward.md ("GPU usp"). */
#include <string.h>

#include <algorithm>

#include "impls/cuda/cuda_util.cuh" /* first: it includes the C headers with C linkage */
#include "impls/cuda/ring_cuda_grad.h"
#include "impls/cuda/usp_cuda.h"
#include "impls/cuda/usp_cuda_grad.h"

extern "C" {
#include "impls/cuda/usp_grad_heads.h"
#include "impls/parallel/plan.h"
}

namespace {

/* The mesh of the forward (usp_cuda_takes has accepted it) and member u's heads as a problem. */
int member_problem(const attn_problem_t *p, const plan_usp_mesh_t &m, int u, plan_heads_t *hd, attn_problem_t *pu) {
    *hd = plan_ulysses_heads(p->heads, p->kv_heads, m.U, u);
    *pu = *p;
    pu->heads = hd->hq, pu->kv_heads = hd->kvn; /* they line up: usp_cuda_takes */
    return ATTN_OK;
}

/* Host buffers of one member's tensors, freed on every return path. */
struct member_bufs {
    float *t[9] = {}; /* q, o, d_o, dq, lse, k, v, dk, dv */
    member_bufs() = default;
    member_bufs(const member_bufs &) = delete;
    member_bufs &operator=(const member_bufs &) = delete;
    ~member_bufs() {
        for (float *f : t)
            attn_free(f);
    }
};

} // namespace

int usp_cuda_grad_takes(const attn_problem_t *p, const attn_exec_t *x, int kind, int U, char *why, size_t len) {
    if (x->transport == ATTN_TRANSPORT_NCCL) {
        snprintf(why, len, "the GPU usp backward runs on cuda_local only: under nccl each process holds one member "
                           "of one ring, and the head re-shard would need the forward's device all-to-alls in the "
                           "backward, which are not written");
        return 0;
    }
    if (!usp_cuda_takes(p, kind, U, exec_ranks(x), why, len))
        return 0;
    return ring_cuda_grad_takes(p, x, why, len);
}

size_t usp_cuda_grad_bytes(const attn_problem_t *p, int kind, int U, int ranks) {
    plan_usp_mesh_t m;
    attn_err_t err = {};
    if (plan_usp_mesh((attn_layout_kind_t)kind, p->heads, p->kv_heads, ranks > 1 ? ranks : 1, U, &m, &err))
        return 0;
    size_t most = 0;
    for (int u = 0; u < m.U; u++) {
        plan_heads_t hd;
        attn_problem_t pu;
        member_problem(p, m, u, &hd, &pu);
        size_t ring = 0;
        for (int g = 0; g < m.R; g++)
            ring = attn_size_add(ring, ring_cuda_grad_rank_bytes(&pu, m.R, kind, g));
        most = std::max(most, ring);
    }
    return most;
}

int usp_cuda_backward_local(const attn_problem_t *p, const attn_exec_t *x, int kind, int U, const attn_grad_io_t *g,
                            double *device_s, attn_err_t *err) {
    char why[256];
    if (!usp_cuda_grad_takes(p, x, kind, U, why, sizeof why))
        return attn_fail(err, ATTN_EUSAGE, "%s", why);
    plan_usp_mesh_t m;
    ATTN_TRY(plan_usp_mesh((attn_layout_kind_t)kind, p->heads, p->kv_heads, exec_ranks(x), U, &m, err));
    int64_t B = p->batch, H = p->heads, Hkv = p->kv_heads, d = p->head_dim;
    float *dq = (float *)g->dq, *dk = (float *)g->dk, *dv = (float *)g->dv;
    memset(dq, 0, problem_numel_q(p) * sizeof(float)); /* every member adds its heads' part */
    memset(dk, 0, problem_numel_kv(p) * sizeof(float));
    memset(dv, 0, problem_numel_kv(p) * sizeof(float));
    attn_exec_t xr = *x;
    xr.ranks = m.R; /* one ring of the R groups, on this device */
    double dev = 0;
    for (int u = 0; u < m.U; u++) {
        plan_heads_t hd;
        attn_problem_t pu;
        member_problem(p, m, u, &hd, &pu);
        size_t qn = problem_numel_q(&pu), kn = problem_numel_kv(&pu), ln = problem_numel_lse(&pu);
        member_bufs mb;
        for (int a = 0; a < 9; a++)
            if (!(mb.t[a] = (float *)attn_alloc((a < 4 ? qn : a == 4 ? ln : kn) * sizeof(float) + 16, err,
                                                "usp_cuda backward member tensors")))
                return ATTN_ERUNTIME;
        float *q = mb.t[0], *o = mb.t[1], *d_o = mb.t[2], *gq = mb.t[3], *lse = mb.t[4], *k = mb.t[5], *v = mb.t[6];
        float *gk = mb.t[7], *gv = mb.t[8];
        int64_t qrows = p->n_q * d, krows = p->n_k * d;
        usp_grad_heads((float *)g->q, q, B, H, hd.q0, hd.hq, qrows, 0);
        usp_grad_heads((float *)g->o, o, B, H, hd.q0, hd.hq, qrows, 0);
        usp_grad_heads((float *)g->d_o, d_o, B, H, hd.q0, hd.hq, qrows, 0);
        usp_grad_heads((float *)g->lse, lse, B, H, hd.q0, hd.hq, p->n_q, 0);
        usp_grad_heads((float *)g->k, k, B, Hkv, hd.kv0, hd.kvn, krows, 0);
        usp_grad_heads((float *)g->v, v, B, Hkv, hd.kv0, hd.kvn, krows, 0);
        attn_grad_io_t gu = {q, k, v, o, lse, d_o, gq, gk, gv, nullptr, nullptr};
        ring_cuda_stats_t st[ATTN_MAX_RANKS] = {};
        ATTN_TRY(ring_cuda_backward_local(&pu, &xr, kind, &gu, st, err));
        double wall = 0;
        for (int r = 0; r < m.R; r++)
            wall = std::max(wall, st[r].wall_s);
        dev += wall;
        usp_grad_heads(dq, gq, B, H, hd.q0, hd.hq, qrows, 1);
        usp_grad_heads(dk, gk, B, Hkv, hd.kv0, hd.kvn, krows, 1);
        usp_grad_heads(dv, gv, B, Hkv, hd.kv0, hd.kvn, krows, 1);
    }
    if (device_s)
        *device_s = dev;
    return ATTN_OK;
}
