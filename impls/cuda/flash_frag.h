/* flash_frag.h — flash.cu's index arithmetic, compiled by C and by nvcc alike so that
 * tests/test_flash_frag.c checks on the host what the kernel does on the device: the mma
 * accumulator layout, which lane holds a (row, key) score, the swizzled tile offsets, and the
 * bf16 and f16 non-finite tests. Layouts: docs/gpu-kernels.md; why the kernel needs them: docs/nonfinite.md. */
#pragma once
#include <stdint.h>

#include "core/mask.h" /* ATTN_HD_INLINE */

/* m16n8k16 accumulator c[e] of `lane` in an 8-column tile: row g + 8·(e / 2), column 2t + e % 2
 * (g = lane / 4, t = lane % 4). In flash.cu, s[n][e] is score (row, key n·8 + that column) and
 * o[n][e] is O (row, column n·8 + that column), rows counted within the warp's 16. */
ATTN_HD_INLINE int frag_row(int lane, int e) { return lane / 4 + 8 * (e >> 1); }
ATTN_HD_INLINE int frag_col(int lane, int n, int e) { return n * 8 + 2 * (lane % 4) + (e & 1); }

/* The inverse for the scores: the lane (within the same quad of rows) whose s[key / 8][e] holds
 * (row, key), 0 ≤ row < 16, 0 ≤ key < 64, and that e. */
ATTN_HD_INLINE int frag_lane_of(int row, int key) { return (row % 8) * 4 + (key % 8) / 2; }
ATTN_HD_INLINE int frag_e_of(int row, int key) { return 2 * (row / 8) + (key & 1); }

/* The lane holding the scores of `lane`'s rows at keys 2·src, 2·src + 1 (mod 8): lanes of one quad
 * share their rows, each holds a quarter of the keys. */
ATTN_HD_INLINE int frag_quad_lane(int lane, int src) { return (lane & ~3) + src; }

/* Element offset of (row, col) in a swizzled tile of d columns (d a multiple of 64): the 16-byte
 * chunk index col / 8 is XORed with row % 8; col % 8 stays inside the chunk. */
ATTN_HD_INLINE int frag_swz(int d, int row, int col) { return row * d + ((((col >> 3) ^ (row & 7)) << 3) | (col & 7)); }

/* The ldmatrix row addresses (element offsets in the swizzled tiles) that `lane` supplies, so that
 * matrix lane / 8 of the .x4 load gets the 8 rows of lanes 8·(lane / 8) … +7 (docs/gpu-kernels.md):
 * Q's A fragment of column step kk for the warp's 16 rows (a0 rows 0–7, a1 rows 8–15, a2 and a3
 * the next 8 columns); K's B fragments of key tiles 2np and 2np + 1 at column step kk (b0 b1 of
 * each); V's B fragments of column tiles 2dp and 2dp + 1 at key step kk (the .trans load). */
ATTN_HD_INLINE int frag_q_ldsm(int d, int warp, int lane, int kk) {
    return frag_swz(d, warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, kk * 16 + (lane >> 4) * 8);
}
ATTN_HD_INLINE int frag_k_ldsm(int d, int lane, int np, int kk) {
    return frag_swz(d, np * 16 + (lane & 7) + (lane >> 4) * 8, kk * 16 + ((lane >> 3) & 1) * 8);
}
ATTN_HD_INLINE int frag_v_ldsm(int d, int lane, int kk, int dp) {
    return frag_swz(d, kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, dp * 16 + (lane >> 4) * 8);
}

/* The mma kernels' tile at head dim d (flash_tile.cuh's ftile::shape; flash.cu, flash_decode.cu,
 * sparse_attn.cu): 64 query rows (4 warps × 16) against FRAG_KEYS(d) keys, Q then two stages of K
 * and two of V in shared memory. At d = 256 a thread's O accumulators alone take 128 registers:
 * the key tile halves (S: 16 registers, not 32) and Q's A fragments (64 registers) are read from
 * the shared Q tile at each key tile instead of held, as FlashAttention-2 does; and the tiles fit
 * the smallest per-block shared memory of the GPUs the kernels run on (FRAG_SMEM_LIMIT). */
#define FRAG_ROWS 64
#define FRAG_KEYS(d) ((d) > 128 ? 32 : 64)
#define FRAG_Q_IN_REGS(d) ((d) <= 128)
#define FRAG_SMEM_BYTES(d) ((FRAG_ROWS + 4 * FRAG_KEYS(d)) * (d) * 2)
/* Opt-in dynamic shared memory of one block: 99 KiB on sm_86 and sm_89, 163 KiB on sm_80, 227
 * KiB on sm_90 (CUDA C Programming Guide, compute capabilities table): the least of them. */
#define FRAG_SMEM_LIMIT (99 * 1024)

/* 1 when either bf16 half of a 32-bit word is ±∞ or NaN (exponent bits all set). */
ATTN_HD_INLINE int frag_bf16x2_nonfinite(uint32_t w) {
    return (w & 0x7F80u) == 0x7F80u || (w & 0x7F800000u) == 0x7F800000u;
}

/* The same for two IEEE binary16 halves: 5 exponent bits, 0x7C00 in each half. */
ATTN_HD_INLINE int frag_f16x2_nonfinite(uint32_t w) {
    return (w & 0x7C00u) == 0x7C00u || (w & 0x7C000000u) == 0x7C000000u;
}
