/* test_ring_cuda_grad_plan.c — the GPU ring backward's step logic (ring_cuda_grad_plan.h, the
 * functions ring_cuda_grad.cu calls) on the host against plan_ring_step, the plan ring_grad.c runs:
 * the block held at each step, the launches' row offsets and bands (every visible (query, key)
 * pair computed exactly once), and the dK/dV accumulators' hops (each block's sum, every rank's
 * share in it once, home after P steps), and the bytes each rank moves (ring_grad_step_bytes) against
 * ring_backward_expect over the GPU ring's forward expectation, the count its per-rank records are
 * failed against. P = 1 … 8, masks, n_q < n_k, ring/striped/zigzag. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "impls/cuda/ring_cuda_grad_plan.h"
#include "impls/parallel/ring.h"
#include "tests/check.h"

/* The GPU ring backends' forward expectation (dist_cuda.cu's dist_cuda_expect for the ring
 * family): K/V elements of 2 bytes. */
static attn_layout_kind_t expect_kind;
static void gpu_ring_expect(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                            attn_dist_expect_t *out) {
    (void)self;
    dist_ring_expect(expect_kind, p, exec_ranks(x), 2.0, out);
}

/* One case; returns 1 if every check held (failures are reported as they occur). */
static int run_case(attn_layout_kind_t kind, int P, attn_mask_t mask, int64_t n_q, int64_t n_k, int64_t w) {
    attn_problem_t p = {.batch = 2, .heads = 2, .kv_heads = 1, .head_dim = 64, .n_q = n_q, .n_k = n_k, .mask = mask,
                        .window = w, .dtype = ATTN_BF16};
    const attn_vis_t vis = problem_vis(&p);
    attn_layout_t lq, lk;
    attn_err_t err = {0};
    char name[160];
    snprintf(name, sizeof name, "%s P=%d mask=%s n_q=%lld n_k=%lld w=%lld", layout_name(kind), P, mask_name(mask),
             (long long)n_q, (long long)n_k, (long long)w);
    if (!check(plan_layouts(kind, n_q, n_k, &vis, P, &lq, &lk, &err) == ATTN_OK, "layouts", "%s: %s", name, err.msg))
        return 0;
    int *cnt = calloc((size_t)(n_q * n_k), sizeof(int));
    int ok = 1;
    /* the accumulators: which block each holds and whose shares are in it (a bit per rank) */
    int acc_blk[ATTN_MAX_RANKS][2], in_blk[ATTN_MAX_RANKS];
    int64_t sent[ATTN_MAX_RANKS] = {0}, recvd[ATTN_MAX_RANKS] = {0}, row = 2 * p.batch * p.kv_heads * p.head_dim;
    unsigned acc_in[ATTN_MAX_RANKS][2], in_in[ATTN_MAX_RANKS];
    for (int s = 0; s < P && ok; s++) {
        for (int me = 0; me < P && ok; me++) {
            plan_ring_step_t ps;
            if (!check(plan_ring_step(kind, n_q, n_k, &vis, P, me, s, &ps, &err) == ATTN_OK, "step", "%s: %s", name,
                       err.msg))
                return free(cnt), 0;
            ok &= ps.src == ring_grad_block_at(me, s, P) && (s == P - 1 || ps.next_src == ring_grad_recv_block(me, s, P));
            ok &= ps.k_rows == layout_local_count(&lk, ps.src) && ps.q_rows == layout_local_count(&lq, me);
            ring_grad_bytes_t by = ring_grad_step_bytes(&ps, s, P, row, layout_local_count(&lk, ring_grad_recv_block(me, s, P)));
            sent[me] += by.kv_sent + by.hop_sent, recvd[me] += by.kv_recv + by.hop_recv;
            for (int pi = 0; pi < ps.n_pairs && ok; pi++) {
                const plan_pair_t *pr = &ps.pair[pi];
                if (pr->skip)
                    continue;
                ring_grad_launch_t l = ring_grad_launch_of(pr);
                ok &= l.q_row0 >= 0 && l.q_row0 + l.n_q <= ps.q_rows && l.k_row0 >= 0 && l.k_row0 + l.n_k <= ps.k_rows;
                const attn_vis_t band = {mask, l.window, NULL, 0}; /* what flash_bwd applies at (q_off + r, j) */
                for (int64_t r = 0; r < l.n_q && ok; r++)
                    for (int64_t j = 0; j < l.n_k; j++)
                        if (mask_visible(&band, l.q_off + r, j)) {
                            int64_t qg = layout_local_to_global(&lq, me, l.q_row0 + r);
                            int64_t kg = layout_local_to_global(&lk, ps.src, l.k_row0 + j);
                            cnt[qg * n_k + kg]++;
                        }
            }
            int a = ring_grad_acc_buffer(s);
            acc_blk[me][a] = ps.src, acc_in[me][a] = 1u << me;
            if (s > 0) { /* the partial sum received at the previous hop is this block's */
                ok &= in_blk[me] == ps.src && !(in_in[me] & (1u << me));
                acc_in[me][a] |= in_in[me];
            }
            ok &= ring_grad_acc_buffer(s) != ring_grad_acc_buffer(s + 1); /* step s's hop source kept */
        }
        if (P > 1) /* the hop: each rank receives its left neighbour's accumulator of this step */
            for (int me = 0; me < P; me++) {
                int from = (me - 1 + P) % P, a = ring_grad_acc_buffer(s);
                in_blk[me] = acc_blk[from][a], in_in[me] = acc_in[from][a];
                ok &= in_blk[me] == ring_grad_recv_block(me, s, P);
            }
    }
    check(ok, "steps", "%s: block held, launch rows and accumulator blocks as plan_ring_step", name);
    int cover = 1;
    for (int64_t i = 0; i < n_q && cover; i++)
        for (int64_t j = 0; j < n_k; j++)
            if (cnt[i * n_k + j] != mask_visible(&vis, i + n_k - n_q, j)) {
                check(0, "coverage", "%s: (q %lld, k %lld) computed %d times", name, (long long)i, (long long)j,
                      cnt[i * n_k + j]);
                cover = 0;
                break;
            }
    unsigned all = P >= 32 ? ~0u : (1u << P) - 1;
    int home = 1;
    for (int me = 0; me < P && ok; me++) {
        int blk = P > 1 ? in_blk[me] : acc_blk[me][0];
        unsigned in = P > 1 ? in_in[me] : acc_in[me][0];
        home &= blk == me && in == all;
    }
    check(home, "home", "%s: after P steps each rank holds its own block's dK/dV with every rank's share", name);
    attn_backend_t self = {.name = "gpu ring", .expect = gpu_ring_expect};
    attn_exec_t x = exec_default();
    x.ranks = P;
    attn_dist_expect_t e = {0};
    expect_kind = kind;
    ring_backward_expect(&self, &p, &x, &e);
    int bytes = 1;
    for (int me = 0; me < P; me++)
        if ((double)sent[me] != e.bytes_sent[me] || (double)recvd[me] != e.bytes_recv[me]) {
            check(0, "bytes", "%s: rank %d moves %lld B out / %lld B in, ring_backward_expect %.0f / %.0f", name, me,
                  (long long)sent[me], (long long)recvd[me], e.bytes_sent[me], e.bytes_recv[me]);
            bytes = 0;
            break;
        }
    free(cnt);
    return ok && cover && home && bytes;
}

int main(void) {
    check_quiet = 1;
    attn_layout_kind_t kinds[] = {LAYOUT_CONTIGUOUS, LAYOUT_STRIPED, LAYOUT_ZIGZAG};
    attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    int64_t nks[] = {37, 64};
    int cases = 0, good = 0;
    for (int ki = 0; ki < 3; ki++)
        for (int P = 1; P <= 8; P++)
            for (int mi = 0; mi < 3; mi++)
                for (int ni = 0; ni < 2; ni++)
                    for (int qv = 0; qv < 2; qv++) {
                        int64_t nk = nks[ni], nq = qv ? nk / 3 : nk;
                        cases++;
                        good += run_case(kinds[ki], P, masks[mi], nq, nk, nk * 3 / 10);
                    }
    check_quiet = 0;
    check(good == cases, "ring_cuda_grad plan", "%d of %d cases (kinds × P = 1 … 8 × masks × n_q ≤ n_k)", good, cases);
    return check_summary();
}
