/* test_flash_frag.c — flash.cu's index arithmetic (impls/cuda/flash_frag.h) checked on the CPU:
 * the accumulator layout against the PTX mma tables of docs/gpu-kernels.md, the shuffle walk of
 * the masked-key P·V fallback (docs/nonfinite.md), the swizzle, the bf16 and f16 non-finite
 * tests, the tile shape per head dim and its shared memory, and the tile loop (load_tile,
 * ldmatrix, mma) emulated at d 64, 128, 256. Wrong arithmetic here is a silently wrong GPU answer
 * that no GPU-less CI would see. */
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
 * must meet each of the lane's two rows' keys exactly once: 64 keys, and 32 at d = 256 (FRAG_KEYS). */
static void fallback_walk(void) {
    int bad = 0;
    for (int keys = FRAG_KEYS(256); keys <= BC; keys *= 2)
        for (int lane = 0; lane < 32; lane++) {
            int seen[2][BC] = {{0}};
            for (int n = 0; n < keys / 8; n++)
                for (int e = 0; e < 4; e++)
                    for (int src = 0; src < 4; src++) {
                        int from = frag_quad_lane(lane, src), r = e >> 1;
                        bad += frag_row(from, e) != frag_row(lane, e) || frag_row(lane, e) != lane / 4 + 8 * r;
                        seen[r][frag_col(from, n, e)]++;
                    }
            for (int r = 0; r < 2; r++)
                for (int k = 0; k < BC; k++)
                    bad += seen[r][k] != (k < keys);
        }
    check(bad == 0, "fallback walk", "%d wrong rows or keys not met exactly once", bad);
}

/* The swizzle: a bijection of each tile row onto itself, whole 16-byte chunks kept together (what
 * cp.async writes at frag_swz(d, row, 8c) is read element-wise at frag_swz(d, row, 8c + i)), and
 * the fallback's bf16 pair (col, col + 1), col even, adjacent. Also: the non-finite scan's 16-byte
 * chunks (thread + i·THREADS) cover the tile once. */
static void swizzle(void) {
    for (int d = 64; d <= 256; d *= 2) {
        int bad = 0;
        static int seen[BC * 256];
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

/* ---- the tile loop's data movement at every head dim's shape (flash_tile.cuh), emulated on a
 * float tile: load_tile's chunk walk into the swizzled layout, ldmatrix .x4 (.trans for V) at the
 * addresses frag_q_ldsm / frag_k_ldsm / frag_v_ldsm give, mma m16n8k16 by PTX's fragment tables;
 * S = Q·Kᵀ and O = P·V of every warp must come out exactly (small integers: no rounding). ---- */

enum { MAXD = 256 };
typedef struct { float lo, hi; } reg2; /* a 32-bit register of two 16-bit elements, kept as floats */

_Static_assert(FRAG_SMEM_BYTES(64) <= FRAG_SMEM_LIMIT && FRAG_SMEM_BYTES(128) <= FRAG_SMEM_LIMIT &&
                   FRAG_SMEM_BYTES(256) <= FRAG_SMEM_LIMIT,
               "the tiles fit one block's shared memory on sm_80 to sm_90");

/* ftile::load_tile<T, d, rows>: thread tid's i-th 16-byte chunk is idx = tid + i·THREADS, row
 * idx / (d/8), columns 8·(idx % (d/8)) … +7, written whole at frag_swz(d, row, col). Every element
 * of the rows × d tile written once; returns the number of faults. */
static int load_tile_emul(float *tile, const float *src, int rows, int d) {
    static int seen[64 * MAXD];
    int chunks = d / 8, per = rows * chunks / THREADS, bad = rows * chunks % THREADS != 0;
    memset(seen, 0, sizeof seen);
    for (int tid = 0; tid < THREADS; tid++)
        for (int i = 0; i < per; i++) {
            int idx = tid + i * THREADS, row = idx / chunks, col = (idx % chunks) * 8, at = frag_swz(d, row, col);
            for (int c = 0; c < 8; c++) {
                bad += at + c < 0 || at + c >= rows * d;
                if (at + c >= 0 && at + c < rows * d) {
                    tile[at + c] = src[row * d + col + c];
                    seen[at + c]++;
                }
            }
        }
    for (int i = 0; i < rows * d; i++)
        bad += seen[i] != 1;
    return bad;
}

/* ldmatrix.m8n8.x4: lane L supplies the address of row L % 8 of matrix L / 8; lane t receives of
 * matrix m the pair (row t/4, cols 2(t%4), +1), or with .trans the pair (rows 2(t%4), +1; col t/4). */
static void ldsm_emul(reg2 (*r)[4], const float *tile, const int *addr, int trans) {
    for (int t = 0; t < 32; t++)
        for (int m = 0; m < 4; m++)
            if (!trans)
                r[t][m] = (reg2){tile[addr[m * 8 + t / 4] + 2 * (t % 4)], tile[addr[m * 8 + t / 4] + 2 * (t % 4) + 1]};
            else
                r[t][m] = (reg2){tile[addr[m * 8 + 2 * (t % 4)] + t / 4], tile[addr[m * 8 + 2 * (t % 4) + 1] + t / 4]};
}

/* mma.m16n8k16.row.col: A (16 × 16) a0 (g, 2t…), a1 (g+8, 2t…), a2 (g, 2t+8…), a3 (g+8, 2t+8…);
 * B (16 × 8) b0 (k 2t…, n g), b1 (k 2t+8…, n g); C c0 c1 (g, 2t…), c2 c3 (g+8, 2t…). c += A·B. */
static void mma_emul(float (*c)[4], const reg2 (*a)[4], const reg2 *b0, const reg2 *b1) {
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        int g = l / 4, t = l % 4;
        for (int i = 0; i < 4; i++) {
            int row = g + 8 * (i % 2), k = 2 * t + 8 * (i / 2);
            A[row][k] = a[l][i].lo, A[row][k + 1] = a[l][i].hi;
        }
        B[2 * t][g] = b0[l].lo, B[2 * t + 1][g] = b0[l].hi, B[2 * t + 8][g] = b1[l].lo, B[2 * t + 9][g] = b1[l].hi;
    }
    for (int l = 0; l < 32; l++)
        for (int e = 0; e < 4; e++) {
            float acc = 0;
            for (int k = 0; k < 16; k++)
                acc += A[frag_row(l, e)][k] * B[k][frag_col(l, 0, e)];
            c[l][e] += acc;
        }
}

/* An integer in [-3, 3] from (i, stream) by a multiplicative hash. */
static float small_int(uint32_t i, uint32_t stream) {
    uint32_t h = (i + 0x9E3779B9u * (stream + 1)) * 0x85EBCA6Bu;
    h ^= h >> 15, h *= 0xC2B2AE35u, h ^= h >> 13;
    return (float)((int)(h % 7) - 3);
}

/* One head dim: Q (64 × d), K and V (FRAG_KEYS(d) × d) through load_tile, then per warp the
 * kernels' ftile::scores and ftile::pv_mma loops (Q's fragments read at frag_q_ldsm, held or not),
 * against S and O summed directly. s[n][lane][e] and o[n][lane][e]: the kernels' s[n][e], o[n][e]. */
static void tile_loop(int d) {
    static float q[64 * MAXD], k[64 * MAXD], v[64 * MAXD], sq[64 * MAXD], sk[64 * MAXD], sv[64 * MAXD];
    static float s[8][32][4], o[MAXD / 8][32][4];
    const int keys = FRAG_KEYS(d), rows = FRAG_ROWS;
    int bad = 0;
    for (int i = 0; i < rows * d; i++) /* hashed small integers: no period a wrong index could land on */
        q[i] = small_int((uint32_t)i, 0);
    for (int i = 0; i < keys * d; i++)
        k[i] = small_int((uint32_t)i, 1), v[i] = small_int((uint32_t)i, 2);
    bad += load_tile_emul(sq, q, rows, d) + load_tile_emul(sk, k, keys, d) + load_tile_emul(sv, v, keys, d);
    for (int w = 0; w < 4; w++) {
        memset(s, 0, sizeof s), memset(o, 0, sizeof o);
        int addr[32];
        reg2 qa[32][4], bk[32][4], bv[32][4], pa[32][4], b[4][32];
        for (int kk = 0; kk < d / 16; kk++) { /* scores */
            for (int l = 0; l < 32; l++)
                addr[l] = frag_q_ldsm(d, w, l, kk);
            ldsm_emul(qa, sq, addr, 0);
            for (int np = 0; np < keys / 16; np++) {
                for (int l = 0; l < 32; l++)
                    addr[l] = frag_k_ldsm(d, l, np, kk);
                ldsm_emul(bk, sk, addr, 0);
                for (int l = 0; l < 32; l++)
                    for (int m = 0; m < 4; m++)
                        b[m][l] = bk[l][m];
                mma_emul(s[2 * np], (const reg2(*)[4])qa, b[0], b[1]);
                mma_emul(s[2 * np + 1], (const reg2(*)[4])qa, b[2], b[3]);
            }
        }
        for (int l = 0; l < 32; l++)
            for (int n = 0; n < keys / 8; n++)
                for (int e = 0; e < 4; e++) {
                    double want = 0;
                    for (int c = 0; c < d; c++)
                        want += (double)q[(w * 16 + frag_row(l, e)) * d + c] * k[frag_col(l, n, e) * d + c];
                    bad += s[n][l][e] != want;
                }
        for (int kk = 0; kk < keys / 16; kk++) { /* O += P·V, P packed from the S accumulators */
            for (int l = 0; l < 32; l++) {
                pa[l][0] = (reg2){s[2 * kk][l][0], s[2 * kk][l][1]}, pa[l][1] = (reg2){s[2 * kk][l][2], s[2 * kk][l][3]};
                pa[l][2] = (reg2){s[2 * kk + 1][l][0], s[2 * kk + 1][l][1]};
                pa[l][3] = (reg2){s[2 * kk + 1][l][2], s[2 * kk + 1][l][3]};
            }
            for (int dp = 0; dp < d / 16; dp++) {
                for (int l = 0; l < 32; l++)
                    addr[l] = frag_v_ldsm(d, l, kk, dp);
                ldsm_emul(bv, sv, addr, 1);
                for (int l = 0; l < 32; l++)
                    for (int m = 0; m < 4; m++)
                        b[m][l] = bv[l][m];
                mma_emul(o[2 * dp], (const reg2(*)[4])pa, b[0], b[1]);
                mma_emul(o[2 * dp + 1], (const reg2(*)[4])pa, b[2], b[3]);
            }
        }
        for (int l = 0; l < 32; l++)
            for (int n = 0; n < d / 8; n++)
                for (int e = 0; e < 4; e++) {
                    double want = 0;
                    for (int j = 0; j < keys; j++) {
                        double p = 0;
                        for (int c = 0; c < d; c++)
                            p += (double)q[(w * 16 + frag_row(l, e)) * d + c] * k[j * d + c];
                        want += p * v[j * d + frag_col(l, n, e)];
                    }
                    bad += o[n][l][e] != want;
                }
    }
    /* The non-finite scan of a keys × d V tile: its 16-byte chunks (thread + i·THREADS) once each. */
    bad += keys * d / 8 % THREADS != 0;
    check(bad == 0, "tile loop: load, ldmatrix, mma", "d=%d (%d keys, Q %s): %d wrong S, O or tile elements", d, keys,
          FRAG_Q_IN_REGS(d) ? "held" : "read per tile", bad);
}

/* The shape per head dim: d = 256 halves the key tile and reads Q per tile (flash_frag.h), and every
 * shape fits the least per-block shared memory (99 KiB, sm_86/89) with Q and two stages of K and V. */
static void shapes(void) {
    int bad = 0;
    for (int d = 64; d <= 256; d *= 2) {
        int bytes = (64 + 2 * 2 * FRAG_KEYS(d)) * d * 2;
        bad += FRAG_SMEM_BYTES(d) != bytes || bytes > FRAG_SMEM_LIMIT || FRAG_KEYS(d) % 16 != 0;
    }
    bad += FRAG_KEYS(64) != 64 || FRAG_KEYS(128) != 64 || FRAG_KEYS(256) != 32 || !FRAG_Q_IN_REGS(128) ||
           FRAG_Q_IN_REGS(256) || FRAG_SMEM_BYTES(256) != 98304 || FRAG_SMEM_LIMIT != 101376;
    check(bad == 0, "tile shapes", "%d wrong key tiles or shared-memory budgets", bad);
}

int main(void) {
    accumulator_layout();
    p_a_fragment();
    fallback_walk();
    swizzle();
    bf16_nonfinite();
    f16_nonfinite();
    shapes();
    for (int d = 64; d <= 256; d *= 2)
        tile_loop(d);
    return check_summary();
}
