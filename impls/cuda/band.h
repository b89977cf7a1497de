/* band.h — the mask of one (query piece, key piece) pair of a ring step in the kernel's terms.
 * Plain C so that tests/test_band.c checks it exhaustively on the CPU (no GPU needed).
 *
 * Query piece at global positions a + S·i (i local), key piece at b + S·j (same stride S: 1
 * for ring and zigzag, P for striped). With δ = a − b:
 *   causal  b + S·j ≤ a + S·i      ⟺  j ≤ i + ⌊δ/S⌋                    → q_off = ⌊δ/S⌋
 *   window  S·(i − j) + δ < w     ⟺  i − j ≤ ⌈(w − δ)/S⌉ − 1
 * and the kernel tests j ≤ q_off + i and j > q_off + i − W, so W = ⌈(w − δ)/S⌉ + q_off.
 * With S = 1 this is q_off = δ, W = w: a shifted copy of the global band. */
#pragma once
#include <stdint.h>

static inline int64_t band_floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static inline void band_for(int64_t a, int64_t b, int64_t S, int64_t w, int64_t *q_off, int64_t *win) {
    int64_t delta = a - b;
    *q_off = band_floor_div(delta, S);
    *win = -band_floor_div(-(w - delta), S) + *q_off;
}

/* The kernel's visibility test (flash.cu `visible`) for local query i and local key j. */
static inline int band_visible(int mask, int64_t q_off, int64_t win, int64_t i, int64_t j) {
    int64_t pos = q_off + i;
    return mask == 0 || (j <= pos && (mask != 2 || j > pos - win));
}
