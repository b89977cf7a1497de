/* model_dev_index.h — model_dev.cu's index arithmetic, compiled by C and by nvcc alike so that
 * tests/test_model_dev_index.c checks on the host what the kernels do on the device: element t of
 * rows (n, heads·hd) as (row, head, column), its place head-major and in a KV cache slab, and the
 * RoPE pair a thread rotates. */
#pragma once
#include <stdint.h>

#include "core/mask.h" /* ATTN_HD_INLINE */

/* t = (r·heads + h)·hd + i in rows (n, heads·hd). */
ATTN_HD_INLINE void mdev_rows_at(int64_t t, int64_t heads, int64_t hd, int64_t *r, int64_t *h, int64_t *i) {
    *i = t % hd, *h = (t / hd) % heads, *r = t / (hd * heads);
}
/* (r, h, i) in head-major (heads, n, hd). */
ATTN_HD_INLINE int64_t mdev_head_major(int64_t n, int64_t hd, int64_t r, int64_t h, int64_t i) {
    return (h * n + r) * hd + i;
}
/* (r, h, i) in a cache slab (heads, cap, hd) whose row r sits at position at + r. */
ATTN_HD_INLINE int64_t mdev_slab(int64_t cap, int64_t at, int64_t hd, int64_t r, int64_t h, int64_t i) {
    return (h * cap + at + r) * hd + i;
}
/* RoPE thread t of n·heads·half: pair i of head rh (= r·heads + h, starting at rh·hd), row r. */
ATTN_HD_INLINE void mdev_rope_at(int64_t t, int64_t heads, int half, int64_t *rh, int *i, int64_t *r) {
    *i = (int)(t % half), *rh = t / half, *r = *rh / heads;
}
