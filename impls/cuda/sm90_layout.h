/* sm90_layout.h — the index arithmetic of the sm_90 kernel (flash_sm90.cu), compiled by C and by
 * nvcc alike so that tests/test_sm90_layout.c checks on the host what the kernel does on the GPU:
 * 128-byte swizzle and TMA box placement, wgmma shared-memory descriptors, the wgmma accumulator
 * and A-register fragments, the key-tile range and edge test, and the pipeline's stage/parity and
 * ping-pong turn sequence. Derivations: docs/gpu-kernels.md, "flash_sm90.cu". */
#pragma once
#include <stdint.h>

#include "core/mask.h" /* ATTN_HD_INLINE, attn_vis_t */
#include "impls/parallel/piece_vis.h"

/* Tile shapes: a block is 128 query rows (two consumer warpgroups of 64), key tiles of BN keys,
 * K/V in SM90_STAGES stages. Bytes of one bf16/f16 element: 2. Shared tiles are stored as D / 64
 * panels of [rows][64 elements] = rows × 128 bytes, each panel one TMA box under SWIZZLE_128B
 * (a box row may span at most the 128-byte swizzle width). */
enum { SM90_BM = 128, SM90_WG_ROWS = 64, SM90_STAGES = 2, SM90_PANEL = 64, SM90_ELEM = 2 };

/* Keys per tile for head dim d: 128 for d ≤ 128, 64 for d = 256 (shared memory: Q 128·d, and
 * 2 stages of K and V BN·d each, ≤ 227 KB). */
/* Registers per thread after setmaxnreg: the producer warpgroup gives back what the two consumer
 * warpgroups take (FA3's 24/240). The CTA holds 384 × 168 at launch (65536 / 384 rounded down to
 * 8): the exchange must balance, and 240 is what d = 128/256 need to hold O, S and P unspilled. */
enum { SM90_REGS_LAUNCH = 168, SM90_REGS_PRODUCER = 24, SM90_REGS_CONSUMER = 240 };

ATTN_HD_INLINE int sm90_bn(int d) { return d <= 128 ? 128 : 64; }
ATTN_HD_INLINE int sm90_tile_bytes(int rows, int d) { return rows * d * SM90_ELEM; }
/* Dynamic shared memory: Q, K stages, V stages, then the mbarriers (8 bytes each, 16 of room);
 * plus 1024 so the base can be rounded up to the 1024-byte swizzle atom. */
ATTN_HD_INLINE int sm90_smem_bytes(int d) {
    return sm90_tile_bytes(SM90_BM, d) + 2 * SM90_STAGES * sm90_tile_bytes(sm90_bn(d), d) + 16 * 8 + 1024;
}

/* The 128-byte swizzle (CU_TENSOR_MAP_SWIZZLE_128B, wgmma layout type 1) on a shared-memory byte
 * address whose 1024-byte atom is aligned: bits [4:6] (the 16-byte chunk in a 128-byte row) ^=
 * bits [7:9] (the row within the 8-row atom). */
ATTN_HD_INLINE uint32_t sm90_swz128(uint32_t addr) { return addr ^ (((addr >> 7) & 7u) << 4); }

/* Byte offset, from a 1024-aligned tile base, of element (row, col) of a rows × d tile that TMA
 * wrote as d / 64 boxes {64 columns, rows}: panel col / 64 at panel·rows·128, row r of a panel at
 * r·128, swizzled. rows must be a multiple of 8 (each panel a whole number of atoms). */
ATTN_HD_INLINE uint32_t sm90_tile_offset(int rows, int row, int col) {
    uint32_t panel = (uint32_t)(col / SM90_PANEL), pre = panel * (uint32_t)rows * 128u + (uint32_t)row * 128u +
                                                         (uint32_t)(col % SM90_PANEL) * SM90_ELEM;
    return sm90_swz128(pre);
}

/* wgmma shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"): bits 0–13 start
 * address >> 4, 16–29 leading byte offset >> 4, 32–45 stride byte offset >> 4, 49–51 base offset
 * (0: every atom 1024-aligned), 62–63 swizzle mode (1 = 128B). */
enum { SM90_DESC_SW128 = 1 };
ATTN_HD_INLINE uint64_t sm90_desc(uint32_t start, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((start >> 4) & 0x3FFFu) | (uint64_t)((lbo >> 4) & 0x3FFFu) << 16 |
           (uint64_t)((sbo >> 4) & 0x3FFFu) << 32 | (uint64_t)SM90_DESC_SW128 << 62;
}

/* K-major operand (the reduction dimension contiguous): Q as A of S = Q·Kᵀ, K as B. Rows row0 …
 * of a rows × d tile at `base`, k-step kk (columns 16kk … 16kk + 15): the panel of column 16kk,
 * the row offset, and 32 bytes per k-step inside the 128-byte row (the hardware swizzles the sum,
 * as TMA did). SBO = 1024: the next 8 rows; LBO unused under 128B swizzle for K-major (16). */
ATTN_HD_INLINE uint64_t sm90_desc_kmajor(uint32_t base, int rows, int row0, int kk) {
    uint32_t start = base + (uint32_t)(kk * 16 / SM90_PANEL) * (uint32_t)rows * 128u + (uint32_t)row0 * 128u +
                     (uint32_t)(kk * 16 % SM90_PANEL) * SM90_ELEM;
    return sm90_desc(start, 16, 1024);
}
/* MN-major operand: V (keys × d, d contiguous) as B of O += P·V (wgmma imm-trans-b = 1), k-step
 * kk = keys 16kk … 16kk + 15, all d columns: start at key row 16kk of panel 0; LBO = the next 64
 * columns (the next panel, rows·128 bytes); SBO = the next 8 keys (1024 bytes). */
ATTN_HD_INLINE uint64_t sm90_desc_mnmajor(uint32_t base, int rows, int kk) {
    return sm90_desc(base + (uint32_t)kk * 16u * 128u, (uint32_t)rows * 128u, 1024);
}

/* wgmma m64nNk16 f32 accumulator: register i (0 ≤ i < N/2) of thread `tid` (0–127 in the
 * warpgroup) holds (row, col) of the 64 × N tile: warp tid / 32 owns rows 16w … 16w + 15, as
 * mma.m16n8k16's C per 8-column group i / 4. */
ATTN_HD_INLINE int sm90_acc_row(int tid, int i) { return 16 * (tid / 32) + (tid % 32) / 4 + 8 * ((i >> 1) & 1); }
ATTN_HD_INLINE int sm90_acc_col(int tid, int i) { return 8 * (i >> 2) + 2 * (tid % 4) + (i & 1); }

/* P·V's A operand from registers: k-step kk's register r (0–3) packs, low half first, the S
 * accumulators sm90_pa_src(kk, r) and + 1 (wgmma A fragment: a0 row g cols 2t.., a1 row g+8,
 * a2 row g cols 2t+8.., a3 row g+8; the same thread holds them in S). */
ATTN_HD_INLINE int sm90_pa_src(int kk, int r) { return 8 * kk + 2 * r; }

/* Key tiles [*t_lo, *t_hi) of BN keys that queries at band positions [i_lo, i_hi] can see among
 * keys [0, n_k): piece_key_range's hull (mask and documents at the piece's global positions,
 * impls/parallel/piece_vis.h), widened to whole tiles; none when nothing is visible. */
ATTN_HD_INLINE void sm90_key_tiles(const piece_vis_t *pv, int64_t i_lo, int64_t i_hi, int64_t n_k, int bn,
                                   int64_t *t_lo, int64_t *t_hi) {
    int64_t k_lo, k_hi;
    piece_key_range(pv, i_lo, i_hi, n_k, &k_lo, &k_hi);
    if (k_hi <= k_lo) { /* not the tile k_lo falls in */
        *t_lo = *t_hi = 0;
        return;
    }
    *t_lo = k_lo / bn;
    *t_hi = (k_hi + bn - 1) / bn;
}

/* 1 when tile keys [key0, key0 + bn) need per-element masking for rows [i_lo, i_hi]: some key
 * hidden from some row by the mask or the documents, or keys past n_k. Elsewhere every pair is
 * visible and piece_visible is not called. */
ATTN_HD_INLINE int sm90_tile_edge(const piece_vis_t *pv, int64_t i_lo, int64_t i_hi, int64_t key0, int bn,
                                  int64_t n_k) {
    return piece_tile_masked(pv, i_lo, i_hi, key0, key0 + bn) || key0 + bn > n_k;
}

/* The K/V pipeline: iteration it (0, 1, …, the block's it-th key tile) uses stage it % S. A
 * mbarrier starts in phase 0; "wait parity p" returns once the phase of parity p has completed,
 * so it returns at once for p = 1 on a fresh barrier. Consumers wait on full[stage] with the
 * parity of the use (it / S) & 1; the producer waits on empty[stage] with the opposite parity,
 * so its first pass over each stage does not wait. */
enum { SM90_EMPTY_ARRIVALS = 8 }; /* a stage is free once each of the 8 consumer warps has arrived on it */
ATTN_HD_INLINE int sm90_stage(int64_t it) { return (int)(it % SM90_STAGES); }
ATTN_HD_INLINE uint32_t sm90_full_parity(int64_t it) { return (uint32_t)((it / SM90_STAGES) & 1); }
ATTN_HD_INLINE uint32_t sm90_empty_parity(int64_t it) { return (uint32_t)(((it / SM90_STAGES) & 1) ^ 1); }

/* Ping-pong between consumer warpgroups c = 0, 1: each of a WG's `turns` tensor-core turns starts
 * with bar.sync(turn barrier c) and ends with bar.arrive(turn barrier 1 − c), so the two WGs'
 * GEMMs alternate and one's softmax runs under the other's GEMMs. WG 1 opens the first turn of
 * WG 0 (initial arrive); WG 1's last turn has no one after it and must not arrive (a dangling
 * arrival would complete a later barrier use early). Both WGs take the same number of turns. */
ATTN_HD_INLINE int sm90_pp_initial_arrive(int wg, int64_t turns) { return wg == 1 && turns > 0; }
ATTN_HD_INLINE int sm90_pp_end_arrive(int wg, int64_t turn, int64_t turns) { return !(wg == 1 && turn == turns - 1); }
