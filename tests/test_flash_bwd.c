/* test_flash_bwd.c — flash_bwd.cu's tile loop replayed on the host in float64: ldmatrix (plain and
 * .trans) and mma.sync m16n8k16 emulated from the PTX tables, every address and index taken from
 * impls/cuda/flash_bwd_frag.h as the kernel takes them, against the float64 naive backward (and a
 * plain loop where query positions start before the keys, as in a ring step). Also the tile
 * bounds against core/mask.h. No GPU needed; bf16 rounding is not emulated (docs/backward.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "impls/cuda/flash_bwd_frag.h"
#include "impls/parallel/plan.h"
#include "tests/check.h"

enum { BR = BWD_BR, BC = BWD_BC, WARPS = BWD_WARPS, MAXD = 128 };

/* ---- PTX emulation (from the PTX ISA tables, not from flash_frag.h) ---- */

typedef double reg2[2]; /* a 32-bit register: two 16-bit elements, the low one first */

/* ldmatrix.x4: lanes 8i … 8i+7 give the row addresses of matrix i; without .trans thread t gets
 * row t/4, elements 2(t%4), 2(t%4)+1 of matrix i; with .trans rows 2(t%4), 2(t%4)+1 of column t/4. */
static void ldsm_x4(reg2 out[32][4], const double *tile, const int addr[32], int trans) {
    for (int t = 0; t < 32; t++)
        for (int i = 0; i < 4; i++)
            for (int h = 0; h < 2; h++)
                out[t][i][h] = trans ? tile[addr[8 * i + 2 * (t % 4) + h] + t / 4] : tile[addr[8 * i + t / 4] + 2 * (t % 4) + h];
}

/* mma.m16n8k16.row.col: a0 (g, 2q..), a1 (g+8, 2q..), a2 (g, 2q+8..), a3 (g+8, 2q+8..); b0 (k 2q..,
 * n g), b1 (k 2q+8.., n g); c0 c1 (g, 2q..), c2 c3 (g+8, 2q..); g = lane/4, q = lane%4. */
static void mma(double c[32][4], reg2 a[32][4], reg2 b0[32], reg2 b1[32]) {
    double A[16][16], B[16][8], C[16][8];
    for (int t = 0; t < 32; t++) {
        int g = t / 4, q = t % 4;
        for (int h = 0; h < 2; h++) {
            A[g][2 * q + h] = a[t][0][h], A[g + 8][2 * q + h] = a[t][1][h];
            A[g][2 * q + 8 + h] = a[t][2][h], A[g + 8][2 * q + 8 + h] = a[t][3][h];
            B[2 * q + h][g] = b0[t][h], B[2 * q + 8 + h][g] = b1[t][h];
            C[g][2 * q + h] = c[t][h], C[g + 8][2 * q + h] = c[t][2 + h];
        }
    }
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 8; n++)
            for (int k = 0; k < 16; k++)
                C[m][n] += A[m][k] * B[k][n];
    for (int t = 0; t < 32; t++)
        for (int h = 0; h < 2; h++)
            c[t][h] = C[t / 4][2 * (t % 4) + h], c[t][2 + h] = C[t / 4 + 8][2 * (t % 4) + h];
}

/* ---- the kernel, warp by warp (flash_bwd.cu's structure and index functions) ---- */

typedef struct {
    const double *q, *k, *v, *d_o, *lse2, *delta; /* lse2, delta: what the prep kernel makes */
    double *dq_acc, *dk, *dv;
    int64_t n_q, n_k, q_off, batch, heads, kv_heads, d;
    attn_vis_t vis;
    double scale;
    int64_t q_ld, kv_ld; /* rows between slabs (a ring step's buffers hold more rows than it uses) */
    int accumulate;      /* dK, dV added to rather than written */
    int64_t g_q0, g_k0, g_stride; /* a ring piece pair's global positions (stride 0: contiguous), as the kernel's */
} emu_t;

/* The kernel's bwd_pv and cuda_flash_bwd_launch's stride-0 rule. */
static piece_vis_t emu_pv(const emu_t *p) {
    piece_vis_t pv = {p->vis, p->q_off, p->g_stride ? p->g_q0 : p->q_off, p->g_stride ? p->g_k0 : 0,
                      p->g_stride ? p->g_stride : 1};
    return pv;
}

static void load_tile(double *tile, const double *src, int64_t row0, int64_t n, int d) {
    for (int row = 0; row < 64; row++)
        for (int col = 0; col < d; col += 8)
            for (int i = 0; i < 8; i++)
                tile[frag_swz(d, row, col) + i] = row0 + row < n ? src[(row0 + row) * d + col + i] : 0.0;
}

static double acc_s[WARPS][32][BR / 8][4], acc_dp[WARPS][32][BR / 8][4];
static double acc_dk[WARPS][32][MAXD / 8][4], acc_dv[WARPS][32][MAXD / 8][4];

static void mma_abt(double acc[32][BR / 8][4], const double *a, int row0, const double *b, int d) {
    double c[32][4];
    reg2 fa[32][4], fb[32][4], b0[32], b1[32], b2[32], b3[32];
    int addr[32];
    for (int n = 0; n < BR / 8; n++)
        for (int t = 0; t < 32; t++)
            memset(acc[t][n], 0, sizeof acc[t][n]);
    for (int kk = 0; kk < d / 16; kk++) {
        for (int l = 0; l < 32; l++)
            addr[l] = frag_swz(d, row0 + bwd_ldsm_a_row(l), kk * 16 + bwd_ldsm_a_col(l));
        ldsm_x4(fa, a, addr, 0);
        for (int np = 0; np < BR / 16; np++) {
            for (int l = 0; l < 32; l++)
                addr[l] = frag_swz(d, np * 16 + bwd_ldsm_b_row(l), kk * 16 + bwd_ldsm_b_col(l));
            ldsm_x4(fb, b, addr, 0);
            for (int half = 0; half < 2; half++) {
                for (int t = 0; t < 32; t++) {
                    memcpy(c[t], acc[t][2 * np + half], sizeof c[t]);
                    memcpy(b0[t], fb[t][2 * half], sizeof b0[t]), memcpy(b1[t], fb[t][2 * half + 1], sizeof b1[t]);
                }
                mma(c, fa, b0, b1);
                for (int t = 0; t < 32; t++)
                    memcpy(acc[t][2 * np + half], c[t], sizeof c[t]);
            }
        }
    }
    (void)b2, (void)b3;
}

static void mma_xb(double out[32][MAXD / 8][4], double x[32][BR / 8][4], const double *b, int d) {
    double c[32][4];
    reg2 fa[32][4], fb[32][4], b0[32], b1[32];
    int addr[32];
    for (int kk = 0; kk < BR / 16; kk++) {
        for (int t = 0; t < 32; t++)
            for (int i = 0; i < 4; i++)
                for (int h = 0; h < 2; h++)
                    fa[t][i][h] = x[t][bwd_pack_n(kk, i)][bwd_pack_e(i, h)];
        for (int dp = 0; dp < d / 16; dp++) {
            for (int l = 0; l < 32; l++)
                addr[l] = frag_swz(d, kk * 16 + bwd_ldsm_a_row(l), dp * 16 + bwd_ldsm_a_col(l));
            ldsm_x4(fb, b, addr, 1);
            for (int half = 0; half < 2; half++) {
                for (int t = 0; t < 32; t++) {
                    memcpy(c[t], out[t][2 * dp + half], sizeof c[t]);
                    memcpy(b0[t], fb[t][2 * half], sizeof b0[t]), memcpy(b1[t], fb[t][2 * half + 1], sizeof b1[t]);
                }
                mma(c, fa, b0, b1);
                for (int t = 0; t < 32; t++)
                    memcpy(out[t][2 * dp + half], c[t], sizeof c[t]);
            }
        }
    }
}

static int64_t tiles_visited, tiles_masked;
static double worst_err;

/* One block: (batch·kv head bkv, key tile kt). */
static void emu_block(const emu_t *p, int64_t bkv, int64_t kt) {
    static double sK[BC * MAXD], sV[BC * MAXD], sQ[BR * MAXD], sdO[BR * MAXD], sdS[BR * BC], sL[BR], sD[BR];
    int d = (int)p->d;
    int64_t b = bkv / p->kv_heads, kvh = bkv % p->kv_heads, group = p->heads / p->kv_heads, key0 = kt * BC;
    const piece_vis_t pvis = emu_pv(p); /* `pv` below is a probability, as in the kernel */
    load_tile(sK, p->k + bkv * p->kv_ld * d, key0, p->n_k, d);
    load_tile(sV, p->v + bkv * p->kv_ld * d, key0, p->n_k, d);
    memset(acc_dk, 0, sizeof acc_dk), memset(acc_dv, 0, sizeof acc_dv);
    for (int64_t j = 0; j < group; j++) {
        int64_t slab = bwd_q_slab(b, p->heads, kvh, group, j);
        for (int64_t r0 = 0; r0 < p->n_q; r0 += BR) {
            int kind = bwd_tile_kind(&pvis, r0, p->n_q, key0, p->n_k);
            if (kind == 0)
                continue;
            tiles_visited++, tiles_masked += kind == 2;
            load_tile(sQ, p->q + slab * p->q_ld * d, r0, p->n_q, d);
            load_tile(sdO, p->d_o + slab * p->q_ld * d, r0, p->n_q, d);
            for (int i = 0; i < BR; i++) {
                sL[i] = r0 + i < p->n_q ? p->lse2[slab * p->q_ld + r0 + i] : INFINITY;
                sD[i] = r0 + i < p->n_q ? p->delta[slab * p->q_ld + r0 + i] : 0.0;
            }
            for (int w = 0; w < WARPS; w++) {
                mma_abt(acc_s[w], sK, w * 16, sQ, d);
                for (int l = 0; l < 32; l++)
                    for (int n = 0; n < BR / 8; n++)
                        for (int e = 0; e < 4; e++) {
                            int qr = frag_col(l, n, e);
                            double pv = exp2(acc_s[w][l][n][e] * p->scale * M_LOG2E - sL[qr]);
                            int64_t key = key0 + w * 16 + frag_row(l, e);
                            if (kind == 2 && (key >= p->n_k || !piece_visible(&pvis, p->q_off + r0 + qr, key)))
                                pv = 0;
                            acc_s[w][l][n][e] = pv;
                        }
                mma_xb(acc_dv[w], acc_s[w], sdO, d);
                mma_abt(acc_dp[w], sV, w * 16, sdO, d);
                for (int l = 0; l < 32; l++)
                    for (int n = 0; n < BR / 8; n++)
                        for (int e = 0; e < 4; e++) {
                            acc_s[w][l][n][e] *= acc_dp[w][l][n][e] - sD[frag_col(l, n, e)];
                            sdS[bwd_ds_store(w, l, n, e)] = acc_s[w][l][n][e];
                        }
                mma_xb(acc_dk[w], acc_s[w], sQ, d);
            }
            /* after __syncthreads: dQ += dS·K per warp, 16 columns at a time */
            for (int w = 0; w < WARPS; w++)
                for (int dp2 = 0; dp2 < d / 16; dp2++) {
                    double acc[2][32][4];
                    memset(acc, 0, sizeof acc);
                    for (int kk = 0; kk < BC / 16; kk++) {
                        reg2 fa[32][4], fb[32][4], b0[32], b1[32];
                        int addr[32];
                        for (int l = 0; l < 32; l++)
                            addr[l] = frag_swz(BC, w * 16 + bwd_ldsm_a_row(l), kk * 16 + bwd_ldsm_a_col(l));
                        ldsm_x4(fa, sdS, addr, 0);
                        for (int l = 0; l < 32; l++)
                            addr[l] = frag_swz(d, kk * 16 + bwd_ldsm_a_row(l), dp2 * 16 + bwd_ldsm_a_col(l));
                        ldsm_x4(fb, sK, addr, 1);
                        for (int h = 0; h < 2; h++) {
                            for (int t = 0; t < 32; t++)
                                memcpy(b0[t], fb[t][2 * h], sizeof b0[t]), memcpy(b1[t], fb[t][2 * h + 1], sizeof b1[t]);
                            mma(acc[h], fa, b0, b1);
                        }
                    }
                    for (int h = 0; h < 2; h++)
                        for (int l = 0; l < 32; l++)
                            for (int e = 0; e < 4; e++)
                                if (r0 + w * 16 + frag_row(l, e) < p->n_q)
                                    p->dq_acc[bwd_dq_index(slab, p->q_ld, r0, w, l, 2 * dp2 + h, e, d)] += acc[h][l][e];
                }
        }
    }
    for (int w = 0; w < WARPS; w++)
        for (int l = 0; l < 32; l++)
            for (int n = 0; n < d / 8; n++)
                for (int e = 0; e < 4; e++) {
                    int64_t key = key0 + w * 16 + frag_row(l, e);
                    if (key >= p->n_k)
                        continue;
                    int64_t at = (bkv * p->kv_ld + key) * d + frag_col(l, n, e);
                    p->dk[at] = (p->accumulate ? p->dk[at] : 0) + acc_dk[w][l][n][e] * p->scale;
                    p->dv[at] = (p->accumulate ? p->dv[at] : 0) + acc_dv[w][l][n][e];
                }
}

/* Slabs of n rows (d columns) copied into slabs of ld rows, the rows between filled with NaN. */
static double *spread(const double *x, int64_t slabs, int64_t n, int64_t ld, int64_t d) {
    double *y = malloc(sizeof(double) * (size_t)(slabs * ld * d) + 8);
    for (int64_t i = 0; i < slabs * ld * d; i++)
        y[i] = NAN;
    for (int64_t sl = 0; sl < slabs; sl++)
        memcpy(y + sl * ld * d, x + sl * n * d, sizeof(double) * (size_t)(n * d));
    return y;
}

/* The rows back, counting padding elements that are no longer NaN in *bad. */
static void gather(double *x, const double *y, int64_t slabs, int64_t n, int64_t ld, int64_t d, int *bad) {
    for (int64_t sl = 0; sl < slabs; sl++) {
        memcpy(x + sl * n * d, y + sl * ld * d, sizeof(double) * (size_t)(n * d));
        for (int64_t i = n * d; i < ld * d; i++)
            *bad += !isnan(y[sl * ld * d + i]);
    }
}

/* cuda_flash_bwd_launch as a ring step calls it: slabs q_ld > n_q and kv_ld > n_k rows apart (the
 * rows between are NaN and must be neither read nor written), dK and dV added to what is there.
 * Returns the padding elements written (must be 0); dq, dk, dv as from emu_backward. */
static int emu_backward_strided(const attn_problem_t *pr, int64_t q_off, const int64_t piece[3], const double *q,
                                const double *k, const double *v, const double *o, const double *lse, const double *d_o,
                                double *dq, double *dk, double *dv) {
    int64_t BH = pr->batch * pr->heads, BHkv = pr->batch * pr->kv_heads, d = pr->head_dim;
    int64_t nq = pr->n_q, nk = pr->n_k, qld = nq + 3, kld = nk + 5;
    double *Q = spread(q, BH, nq, qld, d), *dO = spread(d_o, BH, nq, qld, d), *K = spread(k, BHkv, nk, kld, d);
    double *V = spread(v, BHkv, nk, kld, d), *L = malloc(sizeof(double) * (size_t)(BH * qld)),
           *D = malloc(sizeof(double) * (size_t)(BH * qld));
    double *dQ = spread(dq, BH, 0, qld, d), *dK = spread(dk, BHkv, 0, kld, d), *dV = spread(dv, BHkv, 0, kld, d);
    int bad = 0;
    for (int64_t bh = 0; bh < BH; bh++)
        for (int64_t r = 0; r < qld; r++) {
            double sum = 0, l = r < nq ? lse[bh * nq + r] : NAN;
            for (int64_t c = 0; r < nq && c < d; c++)
                sum += d_o[(bh * nq + r) * d + c] * o[(bh * nq + r) * d + c];
            L[bh * qld + r] = l == -INFINITY ? INFINITY : l * M_LOG2E;
            D[bh * qld + r] = l == -INFINITY ? 0 : sum;
        }
    for (int64_t sl = 0; sl < BH; sl++) /* the dQ accumulator starts at 0 on the rows in use */
        memset(dQ + sl * qld * d, 0, sizeof(double) * (size_t)(nq * d));
    for (int64_t sl = 0; sl < BHkv; sl++) /* dK, dV start at 1 and −2: accumulate must keep them */
        for (int64_t i = 0; i < nk * d; i++)
            dK[sl * kld * d + i] = 1, dV[sl * kld * d + i] = -2;
    emu_t e = {Q, K, V, dO, L, D, dQ, dK, dV, nq, nk, q_off, pr->batch, pr->heads, pr->kv_heads, d,
               problem_vis(pr), problem_scale(pr), qld, kld, 1, piece[0], piece[1], piece[2]};
    for (int64_t bkv = 0; bkv < BHkv; bkv++)
        for (int64_t kt = (nk + BC - 1) / BC - 1; kt >= 0; kt--)
            emu_block(&e, bkv, kt);
    gather(dq, dQ, BH, nq, qld, d, &bad);
    gather(dk, dK, BHkv, nk, kld, d, &bad);
    gather(dv, dV, BHkv, nk, kld, d, &bad);
    for (int64_t i = 0; i < BH * nq * d; i++)
        dq[i] *= e.scale;
    for (int64_t i = 0; i < BHkv * nk * d; i++)
        dk[i] -= 1, dv[i] += 2;
    free(Q), free(dO), free(K), free(V), free(L), free(D), free(dQ), free(dK), free(dV);
    return bad;
}

/* The whole backward as blockwise_cuda runs it: prep, every block, the dQ scale. */
static void emu_backward(const attn_problem_t *pr, int64_t q_off, const int64_t piece[3], const double *q,
                         const double *k, const double *v, const double *o, const double *lse, const double *d_o,
                         double *dq, double *dk, double *dv) {
    int64_t rows = pr->batch * pr->heads * pr->n_q, d = pr->head_dim;
    double *lse2 = malloc(sizeof(double) * (size_t)rows), *delta = malloc(sizeof(double) * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t c = 0; c < d; c++)
            s += d_o[r * d + c] * o[r * d + c];
        lse2[r] = lse[r] == -INFINITY ? INFINITY : lse[r] * M_LOG2E;
        delta[r] = lse[r] == -INFINITY ? 0 : s;
    }
    memset(dq, 0, sizeof(double) * (size_t)(rows * d));
    emu_t e = {q, k, v, d_o, lse2, delta, dq, dk, dv, pr->n_q, pr->n_k, q_off, pr->batch, pr->heads, pr->kv_heads, d,
               problem_vis(pr), problem_scale(pr), pr->n_q, pr->n_k, 0, piece[0], piece[1], piece[2]};
    for (int64_t bkv = 0; bkv < pr->batch * pr->kv_heads; bkv++)
        for (int64_t kt = (pr->n_k + BC - 1) / BC - 1; kt >= 0; kt--)
            emu_block(&e, bkv, kt);
    for (int64_t i = 0; i < rows * d; i++)
        dq[i] *= e.scale;
    free(lse2), free(delta);
}

/* ---- references ---- */

/* Forward and backward by plain loops in float64, query row r at global position q0 + S·r and key
 * j at k0 + S·j under the global rule gv (mask_visible alone: no band, no piece_vis.h). */
static void plain_both(const attn_problem_t *pr, const attn_vis_t *gv, int64_t q0, int64_t k0, int64_t S,
                       const double *q, const double *k, const double *v, const double *d_o, double *o, double *lse,
                       double *dq, double *dk, double *dv) {
    int64_t d = pr->head_dim, nq = pr->n_q, nk = pr->n_k, group = pr->heads / pr->kv_heads;
    double s = problem_scale(pr), *P = malloc(sizeof(double) * (size_t)nk);
    memset(dq, 0, sizeof(double) * (size_t)(pr->batch * pr->heads * nq * d));
    memset(dk, 0, sizeof(double) * (size_t)(pr->batch * pr->kv_heads * nk * d));
    memset(dv, 0, sizeof(double) * (size_t)(pr->batch * pr->kv_heads * nk * d));
    for (int64_t bh = 0; bh < pr->batch * pr->heads; bh++) {
        int64_t bkv = (bh / pr->heads) * pr->kv_heads + (bh % pr->heads) / group;
        const double *K = k + bkv * nk * d, *V = v + bkv * nk * d;
        for (int64_t r = 0; r < nq; r++) {
            const double *Q = q + (bh * nq + r) * d, *G = d_o + (bh * nq + r) * d;
            double *O = o + (bh * nq + r) * d, mx = -INFINITY, l = 0, D = 0;
            for (int64_t j = 0; j < nk; j++) {
                double x = 0;
                for (int64_t c = 0; c < d; c++)
                    x += Q[c] * K[j * d + c];
                P[j] = mask_visible(gv, q0 + S * r, k0 + S * j) ? x * s : -INFINITY;
                mx = fmax(mx, P[j]);
            }
            for (int64_t j = 0; j < nk; j++)
                l += P[j] == -INFINITY ? 0 : exp(P[j] - mx);
            lse[bh * nq + r] = l > 0 ? mx + log(l) : -INFINITY;
            for (int64_t j = 0; j < nk; j++)
                P[j] = l > 0 && P[j] != -INFINITY ? exp(P[j] - lse[bh * nq + r]) : 0;
            for (int64_t c = 0; c < d; c++) {
                O[c] = 0;
                for (int64_t j = 0; j < nk; j++)
                    O[c] += P[j] * V[j * d + c];
                D += O[c] * G[c];
            }
            for (int64_t j = 0; j < nk; j++) {
                if (P[j] == 0)
                    continue;
                double dp = 0;
                for (int64_t c = 0; c < d; c++)
                    dp += G[c] * V[j * d + c], dv[(bkv * nk + j) * d + c] += P[j] * G[c];
                double ds = P[j] * (dp - D);
                for (int64_t c = 0; c < d; c++) {
                    dq[(bh * nq + r) * d + c] += s * ds * K[j * d + c];
                    dk[(bkv * nk + j) * d + c] += s * ds * Q[c];
                }
            }
        }
    }
    free(P);
}

static double rel_err(const double *x, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++)
        num += (x[i] - ref[i]) * (x[i] - ref[i]), den += ref[i] * ref[i];
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static uint64_t rng = 12345;
static double uniform(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) / 9007199254740992.0 * 2 - 1;
}

/* A ring piece pair as the kernel gets it: the global rule and the pieces' global positions (query
 * row r at q0 + S·r, key j at k0 + S·j); pr then carries the band (mask, window win, q_off) and
 * the global document offsets, as plan_pair_vis hands them to the launch. */
typedef struct {
    attn_vis_t gv;
    int64_t q0, k0, S;
} piece_t;

/* One case: the emulation against naive float64 (q_off other than n_k − n_q, or a ring piece pair
 * pc: against the plain loops at global positions). */
static void run_case(attn_problem_t pr, int64_t q_off, int strided, const piece_t *pc) {
    size_t nq = problem_numel_q(&pr), nkv = problem_numel_kv(&pr), nl = problem_numel_lse(&pr);
    double *t[13];
    size_t sizes[13] = {nq, nkv, nkv, nq, nq, nl, nq, nkv, nkv, nq, nkv, nkv, 1};
    for (int i = 0; i < 13; i++)
        t[i] = malloc(sizeof(double) * sizes[i]);
    double *q = t[0], *k = t[1], *v = t[2], *d_o = t[3], *o = t[4], *lse = t[5], *rq = t[6], *rk = t[7], *rv = t[8];
    double *eq = t[9], *ek = t[10], *ev = t[11];
    for (size_t i = 0; i < nq; i++)
        q[i] = uniform() * 2, d_o[i] = uniform();
    for (size_t i = 0; i < nkv; i++)
        k[i] = uniform() * 2, v[i] = uniform();
    pr.dtype = ATTN_F64;
    attn_err_t err = {0};
    attn_exec_t x = exec_default();
    x.threads = 1;
    int ok = 1;
    attn_vis_t own = problem_vis(&pr);
    int64_t piece[3] = {pc ? pc->q0 : 0, pc ? pc->k0 : 0, pc ? pc->S : 0}; /* stride 0: contiguous */
    if (!pc && q_off == pr.n_k - pr.n_q) {
        const attn_backend_t *nb = registry_find("naive");
        attn_io_t io = {.q = q, .k = k, .v = v, .o = o, .lse = lse};
        attn_grad_io_t g = {.q = q, .k = k, .v = v, .o = o, .lse = lse, .d_o = d_o, .dq = rq, .dk = rk, .dv = rv};
        ok = nb->forward(nb, &pr, &x, &io, &err) == ATTN_OK && nb->backward(nb, &pr, &x, &g, &err) == ATTN_OK;
    } else {
        plain_both(&pr, pc ? &pc->gv : &own, pc ? pc->q0 : q_off, pc ? pc->k0 : 0, pc ? pc->S : 1, q, k, v, d_o, o,
                   lse, rq, rk, rv);
    }
    char name[200];
    snprintf(name, sizeof name,
             "B=%lld H=%lld H_kv=%lld d=%lld n_q=%lld n_k=%lld q_off=%lld mask=%s w=%lld docs=%lld%s piece q0=%lld "
             "k0=%lld S=%lld",
             (long long)pr.batch, (long long)pr.heads, (long long)pr.kv_heads, (long long)pr.head_dim,
             (long long)pr.n_q, (long long)pr.n_k, (long long)q_off, mask_name(pr.mask), (long long)pr.window,
             (long long)pr.n_docs, strided ? " strided+accumulate" : "", (long long)piece[0], (long long)piece[1],
             (long long)piece[2]);
    if (check(ok, "reference", "%s: %s", name, err.msg)) {
        if (strided)
            check(emu_backward_strided(&pr, q_off, piece, q, k, v, o, lse, d_o, eq, ek, ev) == 0, "strided slabs",
                  "%s: padding rows written", name);
        else
            emu_backward(&pr, q_off, piece, q, k, v, o, lse, d_o, eq, ek, ev);
        double e3[3] = {rel_err(eq, rq, nq), rel_err(ek, rk, nkv), rel_err(ev, rv, nkv)};
        for (int i = 0; i < 3; i++)
            worst_err = fmax(worst_err, e3[i]);
        check(e3[0] < 1e-12 && e3[1] < 1e-12 && e3[2] < 1e-12, "emulated kernel vs float64",
              "%s: rel L2 dQ %.3g dK %.3g dV %.3g", name, e3[0], e3[1], e3[2]);
    }
    for (int i = 0; i < 13; i++)
        free(t[i]);
}

/* The tile bounds of one contiguous problem: piece_key_range of the global view (the hull
 * bwd_tile_kind starts from) is mask_key_range (identity key span); bwd_tile_kind 0 only when no
 * pair of the tile is visible, 1 only when every real pair is. */
static void tile_bounds(void) {
    static int64_t docs[][6] = {{0, 1, 70, 70, 140, 200}, {0, 64, 128, 129, 190, 200}};
    int bad_range = 0, bad_kind = 0, n = 0;
    for (int dv = -1; dv < 2; dv++)
        for (int m = 0; m < 3; m++)
            for (int64_t w = 1; w < 150; w += 37) {
                attn_vis_t vis = {(attn_mask_t)m, w, dv >= 0 ? docs[dv] : NULL, dv >= 0 ? 5 : 0};
                int64_t n_k = 200;
                for (int64_t i_lo = 0; i_lo < n_k; i_lo += 7)
                    for (int64_t i_hi = i_lo; i_hi < n_k; i_hi += 23) {
                        int64_t a, b, c, e;
                        piece_vis_t g = piece_vis_global(vis, 0);
                        piece_key_range(&g, i_lo, i_hi, n_k, &a, &b);
                        mask_key_range(&vis, i_lo, i_hi, (attn_span_t){0, 1}, n_k, &c, &e);
                        bad_range += (a < b || c < e) && (a != c || b != e);
                    }
                for (int64_t q_off = -130; q_off <= 80; q_off += 70)
                    for (int64_t n_q = 1; n_q <= 200 - (q_off > 0 ? q_off : 0); n_q += 61)
                        for (int64_t r0 = 0; r0 < n_q; r0 += BR)
                            for (int64_t key0 = 0; key0 < n_k; key0 += BC) {
                                piece_vis_t pv = piece_vis_global(vis, q_off);
                                int kind = bwd_tile_kind(&pv, r0, n_q, key0, n_k), any = 0, all = 1;
                                for (int64_t r = r0; r < r0 + BR && r < n_q; r++)
                                    for (int64_t j = key0; j < key0 + BC; j++) {
                                        int sees = j < n_k && mask_visible(&vis, q_off + r, j);
                                        any |= sees, all &= sees;
                                    }
                                bad_kind += (kind == 0 && any) || (kind == 1 && !all);
                                n++;
                            }
            }
    check(bad_range == 0, "key range", "%d query runs where piece_key_range differs from mask_key_range", bad_range);
    check(bad_kind == 0, "tile kind", "%d of %d tile pairs skipped with a visible pair or left unmasked with a "
                                      "hidden one", bad_kind, n);
}

/* Documents of random lengths 1 … max_len over n tokens (a length-1 one first); returns n_docs. */
static int64_t doc_layout(int64_t n, int64_t max_len, int64_t *off, int64_t cap) {
    int64_t k = 0;
    off[0] = 0;
    while (off[k] < n && k + 1 < cap) {
        int64_t len = k == 0 ? 1 : 1 + (int64_t)((uniform() + 1) / 2 * (double)max_len);
        off[k + 1] = off[k] + len < n ? off[k] + len : n;
        k++;
    }
    off[k] = n;
    return k;
}

/* The tile decisions of ring piece pairs (flash_bwd under the GPU ring backward): for every pair
 * of every step of ring, striped and zigzag, packed documents at global positions and the band of
 * plan_pair_vis, bwd_tile_kind over its 64 × 64 tiles never skips a tile with a visible pair nor
 * calls one unmasked that holds a hidden pair — judged by mask_visible at global positions. */
static void ring_tile_kinds(void) {
    static const attn_layout_kind_t kinds[] = {LAYOUT_CONTIGUOUS, LAYOUT_STRIPED, LAYOUT_ZIGZAG};
    static const int Ps[] = {1, 2, 3, 5, 8};
    static int64_t off[400];
    int bad = 0, tiles = 0, masked = 0, skipped = 0;
    for (int t = 0; t < 3; t++) {
        int64_t n_k = 300 + 50 * t, n_q = t == 2 ? 211 : n_k;
        int64_t nd = doc_layout(n_k, t == 0 ? 6 : t == 1 ? 90 : 250, off, 400);
        for (int pi = 0; pi < 5; pi++)
            for (int ki = 0; ki < 3; ki++)
                for (int m = 0; m < 3; m++) {
                    int P = Ps[pi];
                    attn_vis_t v = {(attn_mask_t)m, 37 + 40 * t, off, nd};
                    for (int r = 0; r < P; r++)
                        for (int st = 0; st < P; st++) {
                            plan_ring_step_t ps;
                            attn_err_t err = {0};
                            if (plan_ring_step(kinds[ki], n_q, n_k, &v, P, r, st, &ps, &err) != ATTN_OK)
                                continue;
                            for (int i = 0; i < ps.n_pairs; i++) {
                                const plan_pair_t *pr = &ps.pair[i];
                                if (pr->skip)
                                    continue;
                                piece_vis_t pv = plan_pair_vis(&v, v.doc, pr);
                                int64_t S = pr->q.pos.stride, nq = pr->q.count, nk = pr->k.count;
                                for (int64_t r0 = 0; r0 < nq; r0 += BR)
                                    for (int64_t key0 = 0; key0 < nk; key0 += BC) {
                                        int kind = bwd_tile_kind(&pv, r0, nq, key0, nk), any = 0, all = 1;
                                        for (int64_t q = r0; q < r0 + BR && q < nq; q++)
                                            for (int64_t j = key0; j < key0 + BC; j++) {
                                                int sees = j < nk && mask_visible(&v, pr->q.pos.start + S * q,
                                                                                  pr->k.pos.start + S * j);
                                                any |= sees, all &= sees;
                                            }
                                        bad += (kind == 0 && any) || (kind == 1 && !all);
                                        tiles++, masked += kind == 2, skipped += kind == 0;
                                    }
                            }
                        }
                }
    }
    check(bad == 0 && masked > 0 && skipped > 0, "ring tile kinds",
          "%d of %d tiles of ring pieces (%d masked, %d skipped) skipped with a visible pair or left unmasked with a "
          "hidden one", bad, tiles, masked, skipped);
}

/* The emulated kernel on ring piece pairs with packed documents, against plain loops at global
 * positions: per layout and mask, the first pair at P = 3 (rank 1, every step) whose documents cut
 * it (piece_docs_cut over the whole pair), with n_q < n_k once. */
static void ring_piece_cases(void) {
    static const attn_layout_kind_t kinds[] = {LAYOUT_CONTIGUOUS, LAYOUT_STRIPED, LAYOUT_ZIGZAG};
    static int64_t off[200];
    int64_t n_k = 260, nd = doc_layout(n_k, 70, off, 200);
    int ran = 0;
    for (int ki = 0; ki < 3; ki++)
        for (int m = 0; m < 3; m++) {
            int64_t n_q = m == 2 ? 200 : n_k;
            attn_vis_t v = {(attn_mask_t)m, 90, off, nd};
            int done = 0;
            for (int st = 0; st < 3 && !done; st++) {
                plan_ring_step_t ps;
                attn_err_t err = {0};
                if (plan_ring_step(kinds[ki], n_q, n_k, &v, 3, 1, st, &ps, &err) != ATTN_OK)
                    continue;
                for (int i = 0; i < ps.n_pairs && !done; i++) {
                    const plan_pair_t *pr = &ps.pair[i];
                    piece_vis_t pv = plan_pair_vis(&v, v.doc, pr);
                    int64_t nq = pr->q.count, nk = pr->k.count;
                    if (pr->skip || nq == 0 || nk == 0 ||
                        !piece_docs_cut(&pv, pr->q_off, pr->q_off + nq - 1, 0, nk))
                        continue;
                    attn_problem_t p = {.batch = 1, .heads = 2, .kv_heads = 1, .head_dim = 64, .n_q = nq, .n_k = nk,
                                        .mask = (attn_mask_t)m, .window = pr->win, .doc = off, .n_docs = nd,
                                        .dtype = ATTN_F64};
                    piece_t pc = {v, pr->q.pos.start, pr->k.pos.start, pr->q.pos.stride};
                    run_case(p, pr->q_off, ki == 1, &pc); /* striped: also as a ring step's buffers */
                    done = 1, ran++;
                }
            }
        }
    check(ran >= 6, "ring piece cases", "only %d of 9 (layout, mask) pairs had a pair cut by documents", ran);
}

/* dSᵀ's store: the 4 warps × 32 lanes × 8 × 4 accumulators fill the 64 × 64 tile once, at
 * (query, key) = (frag_col, 16·warp + frag_row). */
static void ds_store(void) {
    static int seen[BR * BC];
    int bad = 0;
    memset(seen, 0, sizeof seen);
    for (int w = 0; w < WARPS; w++)
        for (int l = 0; l < 32; l++)
            for (int n = 0; n < BR / 8; n++)
                for (int e = 0; e < 4; e++) {
                    int at = bwd_ds_store(w, l, n, e);
                    bad += at != frag_swz(BC, frag_col(l, n, e), w * 16 + frag_row(l, e)) || at < 0 || at >= BR * BC;
                    if (at >= 0 && at < BR * BC)
                        seen[at]++;
                }
    for (int i = 0; i < BR * BC; i++)
        bad += seen[i] != 1;
    check(bad == 0, "dS store", "%d elements of the dS tile written wrongly", bad);
}

int main(void) {
    tile_bounds();
    ring_tile_kinds();
    ds_store();
    static int64_t off[] = {0, 1, 40, 41, 100, 130};
    attn_problem_t base = {.batch = 1, .heads = 2, .kv_heads = 1, .head_dim = 64, .n_q = 130, .n_k = 130,
                           .dtype = ATTN_F64, .window = 50};
    for (int m = 0; m < 3; m++) {
        attn_problem_t p = base;
        p.mask = (attn_mask_t)m;
        run_case(p, 0, 0, NULL); /* GQA group 2, two key tiles with a partial one */
        p.n_q = 70, p.heads = 3, p.kv_heads = 3, p.batch = 2;
        run_case(p, p.n_k - p.n_q, 0, NULL); /* n_q < n_k, no GQA, batch 2 */
    }
    attn_problem_t p = base;
    p.head_dim = 128, p.mask = ATTN_MASK_CAUSAL, p.n_q = 77, p.n_k = 77;
    run_case(p, 0, 0, NULL); /* d = 128, one partial tile */
    p = base;
    p.mask = ATTN_MASK_CAUSAL, p.doc = off, p.n_docs = 5;
    run_case(p, 0, 0, NULL); /* documents, a length-1 one among them */
    p = base;
    p.mask = ATTN_MASK_WINDOW, p.n_q = 90, p.heads = 4, p.kv_heads = 2;
    run_case(p, -30, 0, NULL); /* a ring step: queries before the keys, the first rows see nothing (LSE −∞) */
    p.mask = ATTN_MASK_CAUSAL, p.batch = 2;
    run_case(p, -30, 1, NULL); /* the same as a ring step's buffers are laid out: strided slabs, accumulate */
    ring_piece_cases(); /* ring pieces with packed documents (piece_vis.h at global positions) */
    printf("tiles visited %lld (masked %lld); worst rel L2 of the emulation %.3g\n", (long long)tiles_visited,
           (long long)tiles_masked, worst_err);
    return check_summary();
}
