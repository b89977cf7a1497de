/* band.h — the mask of one (query piece, key piece) pair of a ring step in the kernel's terms:
 * a shifted causal or window band (q_off, W) in local indices. Plain C so that tests/test_band.c
 * checks it exhaustively on the CPU. Derivation: docs/ring.md. */
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
