/* flash_bwd_frag.h — flash_bwd.cu's index arithmetic, compiled by C and by nvcc alike so that
 * tests/test_flash_bwd.c replays the kernel's tile loop on the host (in float64, with ldmatrix
 * and mma.sync emulated from the PTX tables) against the float64 naive backward. The accumulator
 * layout (frag_row, frag_col) and the swizzle (frag_swz) are the forward's: flash_frag.h. */
#pragma once
#include <stdint.h>

#include "core/mask.h"
#include "impls/cuda/flash_frag.h"
#include "impls/parallel/piece_vis.h"

/* Tile shape of the backward: a block owns BWD_BC keys of one (batch, kv head) and walks query
 * tiles of BWD_BR rows; each of the BWD_WARPS warps owns 16 of the keys (dK, dV rows) in the
 * key-major products and 16 of the query rows in dQ = dS·K. */
enum { BWD_BR = 64, BWD_BC = 64, BWD_WARPS = 4, BWD_THREADS = 32 * BWD_WARPS };

/* ldmatrix.x4 row addresses, per lane, of a 16 × 16 piece at (row0, col0) of a row-major tile:
 * - as an A operand (rows = the MMA's M), or as a B operand read with .trans (rows = the MMA's K,
 *   the tile stored K-major: V, dO, Q, K in P·V-like products): matrices 0..3 are
 *   (rows 0-7, cols 0-7), (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 8-15);
 * - as a B operand read without .trans (rows = the MMA's N, the tile stored N-major: K in Q·Kᵀ,
 *   Q in K·Qᵀ, dO in V·dOᵀ): matrices (rows 0-7, cols 0-7), (rows 0-7, cols 8-15),
 *   (rows 8-15, cols 0-7), (rows 8-15, cols 8-15) — b0 b1 of the first 8 rows, then of the next. */
ATTN_HD_INLINE int bwd_ldsm_a_row(int lane) { return (lane & 7) + ((lane >> 3) & 1) * 8; }
ATTN_HD_INLINE int bwd_ldsm_a_col(int lane) { return (lane >> 4) * 8; }
ATTN_HD_INLINE int bwd_ldsm_b_row(int lane) { return (lane & 7) + (lane >> 4) * 8; }
ATTN_HD_INLINE int bwd_ldsm_b_col(int lane) { return ((lane >> 3) & 1) * 8; }

/* A fragment of a 16 × 16 piece of a product's accumulators (16 rows × 2 n-tiles of 8), the
 * forward's P packing: register i holds acc[2kk + i/2][2(i%2)], [2(i%2) + 1]. */
ATTN_HD_INLINE int bwd_pack_n(int kk, int i) { return 2 * kk + i / 2; }
ATTN_HD_INLINE int bwd_pack_e(int i, int half) { return 2 * (i % 2) + half; }

/* dSᵀ of warp `warp` (its 16 keys as rows, 64 queries as columns, accumulator s[n][e]) is stored
 * for dQ = dS·K as the row-major 64 × 64 tile dS[query][key], swizzled as a d = 64 tile. */
ATTN_HD_INLINE int bwd_ds_store(int warp, int lane, int n, int e) {
    return frag_swz(BWD_BC, frag_col(lane, n, e), warp * 16 + frag_row(lane, e));
}

/* Query head j (0 ≤ j < group) of kv head kvh in batch b: the (batch·head) slab whose dK, dV
 * add up in that kv head's block. */
ATTN_HD_INLINE int64_t bwd_q_slab(int64_t b, int64_t heads, int64_t kvh, int64_t group, int64_t j) {
    return b * heads + kvh * group + j;
}

/* dQ accumulator element (float32 workspace, atomicAdd) of a warp's accumulator acc[n][e] in the
 * dS·K product: query row r0 + 16·warp + frag_row, column frag_col, in slab `slab` (ld rows). */
ATTN_HD_INLINE int64_t bwd_dq_index(int64_t slab, int64_t ld, int64_t r0, int warp, int lane, int n, int e, int d) {
    return (slab * ld + r0 + warp * 16 + frag_row(lane, e)) * d + frag_col(lane, n, e);
}

/* Query tile rows [r0, r0 + BWD_BR) (band positions pv->q_off + r, real rows < n_q) against key
 * tile [key0, key0 + BWD_BC) of a piece pair (piece_vis.h: the mask in band positions, documents at
 * the pieces' global positions; one contiguous problem is piece_vis_global): 0 when no pair is
 * visible (skipped), 1 when every real pair is (no per-element test), 2 when some but maybe not
 * all are (piece_visible per element; also past n_k). The forward's decisions (flash.cu):
 * piece_key_range's hull, then piece_tile_masked. */
ATTN_HD_INLINE int bwd_tile_kind(const piece_vis_t *pv, int64_t r0, int64_t n_q, int64_t key0, int64_t n_k) {
    int64_t r1 = r0 + BWD_BR < n_q ? r0 + BWD_BR : n_q, i_lo = pv->q_off + r0, i_hi = pv->q_off + r1 - 1, k_lo, k_hi;
    if (r1 <= r0)
        return 0;
    piece_key_range(pv, i_lo, i_hi, n_k, &k_lo, &k_hi);
    if (key0 >= k_hi || key0 + BWD_BC <= k_lo)
        return 0;
    return piece_tile_masked(pv, i_lo, i_hi, key0, key0 + BWD_BC) || key0 + BWD_BC > n_k ? 2 : 1;
}
