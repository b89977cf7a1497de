/* decode_plan.c — decode_plan_make (decode_plan.h): the split count from the work items the
 * packed query tiles give and the parallel units to fill, and each tile's key range through the
 * one visibility rule (mask_key_range). Host code; the CUDA launcher calls it too. */
#include "impls/cpu/decode_plan.h"

#include <string.h>

#include "core/common.h"

int decode_plan_make(decode_plan_t *pl, int64_t batch, int64_t heads, int64_t kv_heads, int64_t n_q, int64_t q_ld,
                     int64_t n_k, const attn_vis_t *v, attn_span_t qs, attn_span_t ks, int tile_rows,
                     int tile_keys, int units, int waves, int force_split) {
    memset(pl, 0, sizeof *pl);
    if (n_q <= 0 || kv_heads <= 0 || heads % kv_heads != 0 || tile_rows <= 0 || tile_keys <= 0)
        return 0;
    int64_t group = heads / kv_heads, rows = group * n_q, q_tiles = (rows + tile_rows - 1) / tile_rows;
    if (q_tiles > DECODE_MAX_QTILES)
        return 0;
    *pl = (decode_plan_t){.batch = batch, .n_q = n_q, .n_k = n_k, .q_ld = q_ld, .heads = heads, .kv_heads = kv_heads,
                          .group = group, .rows = rows, .tile_rows = tile_rows, .tile_keys = tile_keys,
                          .q_tiles = (int)q_tiles, .k_lo = n_k, .k_hi = 0};
    for (int t = 0; t < pl->q_tiles; t++) {
        int64_t r0 = (int64_t)t * tile_rows, r1 = ATTN_MIN(r0 + tile_rows, rows) - 1;
        /* A tile inside one head holds query rows r0 % n_q … r1 % n_q; one across heads may hold any. */
        int64_t a = 0, b = n_q - 1;
        if (r0 / n_q == r1 / n_q)
            a = r0 % n_q, b = r1 % n_q;
        int64_t i_lo = qs.start + qs.stride * a, i_hi = qs.start + qs.stride * b, unused;
        mask_key_range(v, i_lo, i_hi, ks, n_k, &pl->tile_lo[t], &pl->tile_hi[t]);
        /* Visibility is monotone in the position: the last row's range starts latest, the first
         * row's ends earliest, so keys in both are seen by every row of the tile. */
        mask_key_range(v, i_hi, i_hi, ks, n_k, &pl->full_lo[t], &unused);
        mask_key_range(v, i_lo, i_lo, ks, n_k, &unused, &pl->full_hi[t]);
        if (pl->tile_lo[t] < pl->tile_hi[t]) {
            pl->k_lo = ATTN_MIN(pl->k_lo, pl->tile_lo[t]);
            pl->k_hi = ATTN_MAX(pl->k_hi, pl->tile_hi[t]);
        }
    }
    if (pl->k_lo >= pl->k_hi) { /* no query sees a key of this piece: one empty split */
        pl->k_lo = pl->k_hi = 0;
        pl->chunk = tile_keys;
        pl->split = 1;
        return 1;
    }
    /* Enough work items to give every unit `waves` of them (chunks rounded down, so at least that
     * many), but no chunk under DECODE_MIN_CHUNK_TILES key tiles: each split costs a partial row
     * and a merge read. */
    int64_t key_tiles = (pl->k_hi - pl->k_lo + tile_keys - 1) / tile_keys;
    int64_t items = batch * kv_heads * q_tiles, want = ((int64_t)units * waves + items - 1) / items;
    int64_t fewest = (key_tiles + DECODE_MAX_SPLIT - 1) / DECODE_MAX_SPLIT, chunk_tiles;
    if (force_split > 0)
        chunk_tiles = ATTN_MAX((key_tiles + force_split - 1) / force_split, fewest);
    else
        chunk_tiles = ATTN_MIN(ATTN_MAX(ATTN_MAX(key_tiles / ATTN_MAX(want, (int64_t)1), (int64_t)DECODE_MIN_CHUNK_TILES), fewest),
                               key_tiles);
    pl->chunk = chunk_tiles * tile_keys;
    pl->split = (int)((pl->k_hi - pl->k_lo + pl->chunk - 1) / pl->chunk);
    return 1;
}
