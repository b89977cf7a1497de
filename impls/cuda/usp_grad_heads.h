/* usp_grad_heads.h — usp_cuda's backward on cuda_local (usp_cuda_grad.cu) cuts each Ulysses member's
 * heads out of the whole tensors and adds its gradients back; compiled by nvcc and by C, so
 * tests/test_usp_grad_heads.c replays the cut and the GQA sums on the host. */
#pragma once
#include <stdint.h>

/* Heads [h0, h0 + nh) of x (B, H, rows floats a head) ↔ y (B, nh, rows): back = 0 copies them
 * into y; back = 1 adds y into them (dQ into a zeroed tensor: members' query heads are disjoint;
 * dK/dV: a kv head read by several members gets each one's part of its group's sum). */
static inline void usp_grad_heads(float *x, float *y, int64_t B, int64_t H, int64_t h0, int64_t nh, int64_t rows,
                                  int back) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < nh; h++) {
            float *xa = x + (b * H + h0 + h) * rows, *ya = y + (b * nh + h) * rows;
            for (int64_t i = 0; i < rows; i++) {
                if (back)
                    xa[i] += ya[i];
                else
                    ya[i] = xa[i];
            }
        }
}
