/* test_band.c — the GPU ring's masking (the band of impls/parallel/plan.h) checked exhaustively on
 * the CPU: every layout, P, mask, rank, step and piece pair must agree with mask_visible on global
 * positions (docs/ring.md). Wrong arithmetic here is a silently wrong GPU answer no GPU-less CI sees. */
#include <stdio.h>

#include "comm/layout.h"
#include "core/mask.h"
#include "impls/parallel/plan.h"

int main(void) {
    long pairs = 0, checked = 0, bad = 0;
    int64_t sizes[][2] = {{37, 37}, {64, 64}, {29, 61}, {1, 50}, {100, 103}};
    int64_t windows[] = {1, 3, 8, 17, 1000};
    for (int kind = 0; kind < 3; kind++)
        for (int P = 1; P <= 8; P++)
            for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
                for (int m = 0; m < 3; m++)
                    for (size_t wi = 0; wi < (m == ATTN_MASK_WINDOW ? 5u : 1u); wi++) {
                        int64_t n_q = sizes[z][0], n_k = sizes[z][1], w = m == ATTN_MASK_WINDOW ? windows[wi] : 0;
                        attn_layout_t lq, lk;
                        attn_err_t err = {0};
                        if (layout_init(&lq, (attn_layout_kind_t)kind, n_q, P, &err) ||
                            layout_init(&lk, (attn_layout_kind_t)kind, n_k, P, &err))
                            continue; /* a layout this n cannot take */
                        for (int r = 0; r < P; r++)
                            for (int src = 0; src < P; src++) {
                                layout_piece_t qp[2], kp[2];
                                int nqp = layout_pieces(&lq, r, qp), nkp = layout_pieces(&lk, src, kp);
                                for (int a = 0; a < nqp; a++)
                                    for (int b = 0; b < nkp; b++) {
                                        if (!qp[a].count || !kp[b].count)
                                            continue;
                                        int64_t q0 = qp[a].pos.start + n_k - n_q, S = qp[a].pos.stride, lo, hi, off, win;
                                        if (kp[b].pos.stride != S && kp[b].count > 1 && qp[a].count > 1) {
                                            printf("FAIL strides differ: %lld vs %lld\n", (long long)S,
                                                   (long long)kp[b].pos.stride);
                                            return 1;
                                        }
                                        mask_key_range(&(attn_vis_t){(attn_mask_t)m, w, 0, 0}, q0, q0 + S * (qp[a].count - 1), kp[b].pos,
                                                       kp[b].count, &lo, &hi);
                                        plan_band_for(q0, kp[b].pos.start, S, w, &off, &win);
                                        pairs++;
                                        for (int64_t i = 0; i < qp[a].count; i++)
                                            for (int64_t j = 0; j < kp[b].count; j++) {
                                                int want = mask_visible(&(attn_vis_t){(attn_mask_t)m, w, 0, 0}, q0 + S * i,
                                                                        kp[b].pos.start + kp[b].pos.stride * j);
                                                int got = plan_band_visible(m, off, win, i, j);
                                                checked++;
                                                if (want != got || (want && lo >= hi)) {
                                                    if (bad++ < 10)
                                                        printf("FAIL %s P=%d n_q=%lld n_k=%lld %s w=%lld rank %d src %d "
                                                               "i=%lld j=%lld: want %d got %d (skip %d)\n",
                                                               layout_name((attn_layout_kind_t)kind), P,
                                                               (long long)n_q, (long long)n_k,
                                                               mask_name((attn_mask_t)m), (long long)w, r, src,
                                                               (long long)i, (long long)j, want, got, lo >= hi);
                                                }
                                            }
                                    }
                            }
                    }
    printf("band: %ld piece pairs, %ld (i, j) checked, %ld wrong\n", pairs, checked, bad);
    return bad || checked == 0;
}
