/* test_flash_frag.c — flash.cu's index arithmetic (impls/cuda/flash_frag.h) checked on the CPU:
 * the accumulator layout against the PTX mma tables of docs/gpu-kernels.md, the shuffle walk of
 * the masked-key P·V fallback (docs/nonfinite.md), the swizzle, and the bf16 non-finite test.
 * Wrong arithmetic here is a silently wrong GPU answer that no GPU-less CI would see. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "impls/cuda/flash_frag.h"
#include "tests/check.h"

enum { BC = 64, THREADS = 128 };

static float bf16_bits_to_float(uint32_t h) {
    uint32_t u = h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* C fragment (PTX m16n8k16): c0 c1 row g, cols 2t, 2t+1; c2 c3 row g+8. The scores of one warp
 * (16 rows × 64 keys in s[8][4] of 32 lanes) must cover every (row, key) exactly once, and the
 * inverse must find each. */
static void accumulator_layout(void) {
    int seen[16][BC] = {{0}}, bad = 0;
    for (int lane = 0; lane < 32; lane++)
        for (int n = 0; n < BC / 8; n++)
            for (int e = 0; e < 4; e++) {
                int g = lane / 4, t = lane % 4, row = frag_row(lane, e), key = frag_col(lane, n, e);
                int ptx_row = e < 2 ? g : g + 8, ptx_col = n * 8 + 2 * t + (e % 2);
                bad += row != ptx_row || key != ptx_col;
                bad += frag_lane_of(row, key) != lane || frag_e_of(row, key) != e || key / 8 != n;
                seen[row][key]++;
            }
    for (int r = 0; r < 16; r++)
        for (int k = 0; k < BC; k++)
            bad += seen[r][k] != 1;
    check(bad == 0, "accumulator layout", "%d (lane, n, e) ↔ (row, key) mismatches against the PTX table", bad);
}

/* The MMA path packs P's A fragment as pa[i] = (s[2kk + i/2][2(i%2)], s[2kk + i/2][2(i%2) + 1]);
 * PTX's A layout: a0 row g cols 2t, 2t+1; a1 row g+8; a2 row g cols 2t+8, 2t+9; a3 row g+8. The
 * fallback must multiply the same P values, so both must name the same (row, key). */
static void p_a_fragment(void) {
    int bad = 0;
    for (int lane = 0; lane < 32; lane++)
        for (int kk = 0; kk < BC / 16; kk++)
            for (int i = 0; i < 4; i++)
                for (int h = 0; h < 2; h++) {
                    int n = 2 * kk + i / 2, e = 2 * (i % 2) + h;
                    int a_row = lane / 4 + 8 * (i % 2), a_key = kk * 16 + 2 * (lane % 4) + 8 * (i / 2) + h;
                    bad += frag_row(lane, e) != a_row || frag_col(lane, n, e) != a_key;
                }
    check(bad == 0, "P as the A fragment", "%d packed P elements name another (row, key) than PTX's A layout", bad);
}

/* pv_visible_only: lane `lane` fetches s[n][e] of lane frag_quad_lane(lane, src) for every n, e, src and
 * adds it to row frag_row(lane, e). That value must be the score of exactly that row, and the walk
 * must meet each of the lane's two rows' 64 keys exactly once. */
static void fallback_walk(void) {
    int bad = 0;
    for (int lane = 0; lane < 32; lane++) {
        int seen[2][BC] = {{0}};
        for (int n = 0; n < BC / 8; n++)
            for (int e = 0; e < 4; e++)
                for (int src = 0; src < 4; src++) {
                    int from = frag_quad_lane(lane, src), r = e >> 1;
                    bad += frag_row(from, e) != frag_row(lane, e) || frag_row(lane, e) != lane / 4 + 8 * r;
                    seen[r][frag_col(from, n, e)]++;
                }
        for (int r = 0; r < 2; r++)
            for (int k = 0; k < BC; k++)
                bad += seen[r][k] != 1;
    }
    check(bad == 0, "fallback walk", "%d wrong rows or keys not met exactly once", bad);
}

/* The swizzle: a bijection of each tile row onto itself, whole 16-byte chunks kept together (what
 * cp.async writes at frag_swz(d, row, 8c) is read element-wise at frag_swz(d, row, 8c + i)), and
 * the fallback's bf16 pair (col, col + 1), col even, adjacent. Also: the non-finite scan's 16-byte
 * chunks (thread + i·THREADS) cover the tile once. */
static void swizzle(void) {
    for (int d = 64; d <= 128; d += 64) {
        int bad = 0;
        static int seen[BC * 128];
        memset(seen, 0, sizeof seen);
        for (int row = 0; row < BC; row++)
            for (int col = 0; col < d; col++) {
                int at = frag_swz(d, row, col);
                bad += at / d != row || at - frag_swz(d, row, col & ~7) != (col & 7);
                if (col % 2 == 0)
                    bad += frag_swz(d, row, col + 1) != at + 1;
                if (at >= 0 && at < BC * d)
                    seen[at]++;
                else
                    bad++;
            }
        for (int i = 0; i < BC * d; i++)
            bad += seen[i] != 1;
        int chunks = BC * d / 8, per = chunks / THREADS;
        bad += chunks % THREADS != 0 || per * THREADS != chunks;
        check(bad == 0, "swizzle", "d=%d: %d elements placed wrongly", d, bad);
    }
}

/* Every bf16 bit pattern, in either half of a word (the other half finite, or also non-finite). */
static void bf16_nonfinite(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int want = !isfinite(bf16_bits_to_float(h));
        bad += frag_bf16x2_nonfinite(h) != want;                 /* low half; high half +0 */
        bad += frag_bf16x2_nonfinite(h << 16 | 0x3F80u) != want; /* high half; low half 1.0 */
        bad += frag_bf16x2_nonfinite(h << 16 | 0x7F80u) != 1;    /* low half +∞ */
    }
    check(bad == 0, "bf16 non-finite test", "%d of 65536 bit patterns misjudged", bad);
}

/* The same for IEEE binary16 (the f16 kernels): every bit pattern, judged by its exponent field
 * decoded independently (all ones: ±∞ or NaN), then by the host's _Float16 where there is one. */
static void f16_nonfinite(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int want = ((h >> 10) & 0x1F) == 0x1F;
#ifdef __FLT16_MAX__
        _Float16 v;
        uint16_t hb = (uint16_t)h;
        memcpy(&v, &hb, sizeof v);
        bad += want != !isfinite((float)v);
#endif
        bad += frag_f16x2_nonfinite(h) != want;                 /* low half; high half +0 */
        bad += frag_f16x2_nonfinite(h << 16 | 0x3C00u) != want; /* high half; low half 1.0 */
        bad += frag_f16x2_nonfinite(h << 16 | 0x7C00u) != 1;    /* low half +∞ */
    }
    check(bad == 0, "f16 non-finite test", "%d of 65536 bit patterns misjudged", bad);
    /* The two tests are not interchangeable: f16's +∞ (0x7C00) is a finite bf16 (2⁵⁷), and bf16's
     * 1.0 (0x3F80) is a finite f16 while 0x7F80 is +∞ in bf16 and NaN in f16. */
    check(!frag_bf16x2_nonfinite(0x7C00u) && frag_f16x2_nonfinite(0x7C00u) && !frag_f16x2_nonfinite(0x3F80u),
          "f16 and bf16 tests differ where the formats do", "a kernel would need only one");
}

int main(void) {
    accumulator_layout();
    p_a_fragment();
    fallback_walk();
    swizzle();
    bf16_nonfinite();
    f16_nonfinite();
    return check_summary();
}
