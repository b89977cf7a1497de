/* test_ulysses_grad_plan.c — ulysses_cuda's backward exchanges (ulysses_grad_plan.h, the slabs and
 * all-to-all sizes ulysses_cuda_grad.cu runs) replayed on the host with plain copies: every section
 * of the in exchange lands in the head owner's buffer at the rows of the whole tensor (shards made
 * from comm/layout.h, not from the plan), and the out exchange brings dQ back and sums dK, dV of
 * kv heads held by several ranks (GQA) to the group's total. Uneven shards, ranks without tokens,
 * n_q < n_k, GQA with replicated and with whole kv heads, P = 1 … 8. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "impls/cuda/flash_bwd_frag.h" /* bwd_q_slab: the query heads flash_bwd sums into a kv head */
#include "impls/cuda/ulysses_grad_plan.h"
#include "tests/check.h"

/* The copy_slabs kernel's loop on the host; add: float32 rows added instead of copied. */
static void host_slab(char *dst, const char *src, ulysses_slab_t s, int64_t rb, int add) {
    for (int64_t o1 = 0; o1 < s.O1; o1++)
        for (int64_t o2 = 0; o2 < s.O2; o2++)
            for (int64_t t = 0; t < s.R; t++) {
                char *d = dst + (s.d0 + o1 * s.dA + o2 * s.dB + t) * rb;
                const char *x = src + (s.s0 + o1 * s.sA + o2 * s.sB + t) * rb;
                if (!add) {
                    memcpy(d, x, (size_t)rb);
                    continue;
                }
                float a, b;
                for (int64_t i = 0; i < rb; i += 4) {
                    memcpy(&a, d + i, 4), memcpy(&b, x + i, 4);
                    a += b;
                    memcpy(d + i, &a, 4);
                }
            }
}

/* A byte of section t's row (b, h, pos) of the whole tensor. */
static unsigned char pattern(int t, int64_t b, int64_t h, int64_t pos, int64_t i) {
    uint64_t z = ((((uint64_t)t * 131 + (uint64_t)b) * 257 + (uint64_t)h) * 1000003 + (uint64_t)pos) * 4099 + (uint64_t)i;
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return (unsigned char)(z ^ (z >> 31));
}

/* The gradient value of element c of row (b, h, pos) (exact in float32, also times the group). */
static float grad_value(int t, int64_t b, int64_t h, int64_t pos, int64_t c) {
    return (float)(((((b * 16 + h) * 512 + pos) * 8 + c) % 100003) + 1 + 0.5 * (t - UG_DQ));
}

static int run_case(int64_t B, int64_t H, int64_t Hkv, int64_t d, int64_t n_q, int64_t n_k, int P) {
    attn_problem_t p = {.batch = B, .heads = H, .kv_heads = Hkv, .head_dim = d, .n_q = n_q, .n_k = n_k,
                        .dtype = ATTN_BF16};
    char name[160];
    snprintf(name, sizeof name, "B=%lld H=%lld H_kv=%lld d=%lld n_q=%lld n_k=%lld P=%d", (long long)B, (long long)H,
             (long long)Hkv, (long long)d, (long long)n_q, (long long)n_k, P);
    static ulysses_grad_plan_t g;
    attn_err_t err = {0};
    if (!check(ulysses_grad_plan(&p, P, &g, &err) == 0, "plan", "%s: %s", name, err.msg))
        return 0;
    attn_layout_t lay[2];
    layout_init(&lay[0], LAYOUT_CONTIGUOUS, n_q, P, &err), layout_init(&lay[1], LAYOUT_CONTIGUOUS, n_k, P, &err);
    int ok = 1;
    char *shard[ATTN_MAX_RANKS][UG_SECTIONS] = {{0}}, *heads[ATTN_MAX_RANKS][UG_SECTIONS] = {{0}};
    char *sendb[ATTN_MAX_RANKS], *recvb[ATTN_MAX_RANKS];
    int64_t sb[ATTN_MAX_RANKS][ATTN_MAX_RANKS], so[ATTN_MAX_RANKS][ATTN_MAX_RANKS];
    int64_t rb[ATTN_MAX_RANKS][ATTN_MAX_RANKS], ro[ATTN_MAX_RANKS][ATTN_MAX_RANKS];
    for (int r = 0; r < P; r++) /* the shards of the in sections, from the layout */
        for (int t = UG_IN_FIRST; t < UG_IN_END; t++) {
            int qr = ulysses_grad_is_query(t);
            int64_t rbytes = ulysses_grad_row_bytes(&g, t), Ht = qr ? H : Hkv, tok = layout_local_count(&lay[!qr], r);
            ok &= tok == (qr ? g.m[r] : g.k[r]);
            shard[r][t] = calloc((size_t)(B * Ht * tok * rbytes) + 1, 1);
            for (int64_t b = 0; b < B; b++)
                for (int64_t h = 0; h < Ht; h++)
                    for (int64_t l = 0; l < tok; l++) {
                        int64_t pos = layout_local_to_global(&lay[!qr], r, l);
                        ok &= pos == (qr ? g.m0[r] : g.k0[r]) + l; /* plan_ulysses_row0 is the layout's start */
                        for (int64_t i = 0; i < rbytes; i++)
                            shard[r][t][((b * Ht + h) * tok + l) * rbytes + i] = (char)pattern(t, b, h, pos, i);
                    }
        }
    check(ok, "row0", "%s: the plan's token counts or starts differ from the contiguous layout", name);
    double moved_s[ATTN_MAX_RANKS] = {0}, moved_r[ATTN_MAX_RANKS] = {0}; /* to / from other ranks */
    for (int out = 0; out < 2; out++) {
        int t0 = out ? UG_OUT_FIRST : UG_IN_FIRST, t1 = out ? UG_OUT_END : UG_IN_END;
        for (int me = 0; me < P; me++) {
            int64_t total = ulysses_grad_alltoall(&g, me, out, sb[me], so[me], rb[me], ro[me]);
            for (int q = 0; q < P; q++)
                if (q != me)
                    moved_s[me] += (double)sb[me][q], moved_r[me] += (double)rb[me][q];
            sendb[me] = calloc((size_t)total + 1, 1), recvb[me] = calloc((size_t)total + 1, 1);
        }
        for (int me = 0; me < P; me++) /* pack: in, me owns the shard; out, me owns the heads */
            for (int peer = 0; peer < P; peer++)
                for (int t = t0; t < t1; t++) {
                    int r = out ? peer : me, q = out ? me : peer;
                    ulysses_slab_t s = ulysses_grad_slab(&g, r, q, t, out ? UG_HEADS : UG_SHARD, UG_MSG);
                    host_slab(sendb[me] + so[me][peer] + ulysses_grad_section_off(&g, r, q, t),
                              out ? heads[q][t] : shard[r][t], s, ulysses_grad_row_bytes(&g, t), 0);
                }
        for (int a = 0; a < P; a++) /* the all-to-all: a's message to b */
            for (int b = 0; b < P; b++) {
                ok &= sb[a][b] == rb[b][a];
                memcpy(recvb[b] + ro[b][a], sendb[a] + so[a][b], (size_t)sb[a][b]);
            }
        for (int me = 0; me < P; me++) { /* unpack */
            for (int t = t0; t < t1; t++) {
                int qr = ulysses_grad_is_query(t);
                int64_t rbytes = ulysses_grad_row_bytes(&g, t);
                size_t bytes = out ? (size_t)(B * (qr ? H * g.m[me] : Hkv * g.k[me]) * rbytes)
                                   : (size_t)(B * (qr ? g.hd[me].hq * n_q : g.hd[me].kvn * n_k) * rbytes);
                char **dst = out ? &shard[me][t] : &heads[me][t];
                *dst = malloc(bytes + 1);
                if (out && t != UG_DQ)
                    memset(*dst, 0, bytes); /* dK, dV: summed into zeros */
                else
                    memset(*dst, 0xff, bytes); /* NaN: a row nothing writes shows */
            }
            for (int peer = 0; peer < P; peer++)
                for (int t = t0; t < t1; t++) {
                    int r = out ? me : peer, q = out ? peer : me;
                    ulysses_slab_t s = ulysses_grad_slab(&g, r, q, t, UG_MSG, out ? UG_SHARD : UG_HEADS);
                    host_slab(out ? shard[r][t] : heads[q][t], recvb[me] + ro[me][peer] + ulysses_grad_section_off(&g, r, q, t),
                              s, ulysses_grad_row_bytes(&g, t), out && t != UG_DQ);
                }
        }
        for (int me = 0; me < P; me++)
            free(sendb[me]), free(recvb[me]);
        if (out)
            break;
        /* In exchange done: each head owner's rows are the whole tensor's of its heads. */
        int in_ok = 1;
        for (int q = 0; q < P; q++)
            for (int t = UG_IN_FIRST; t < UG_IN_END; t++) {
                int qr = ulysses_grad_is_query(t);
                int64_t rbytes = ulysses_grad_row_bytes(&g, t), nh = qr ? g.hd[q].hq : g.hd[q].kvn;
                int64_t h0 = qr ? g.hd[q].q0 : g.hd[q].kv0, seq = qr ? n_q : n_k;
                for (int64_t b = 0; b < B; b++)
                    for (int64_t j = 0; j < nh; j++)
                        for (int64_t pos = 0; pos < seq; pos++)
                            for (int64_t i = 0; i < rbytes; i++)
                                in_ok &= (unsigned char)heads[q][t][((b * nh + j) * seq + pos) * rbytes + i] ==
                                         pattern(t, b, h0 + j, pos, i);
            }
        check(in_ok, "in exchange", "%s: a head owner's Q/dO/LSE/D/K/V rows differ from the whole tensor's", name);
        ok &= in_ok;
        /* The compute, as the kernel's GQA reads it: dQ of each local head; dK, dV of each local kv
         * head times the local query heads flash_bwd sums into it (bwd_q_slab over the local
         * problem: hq heads, kvn kv heads), each of which must read that kv head's K/V as the
         * exchange delivered it (plan_ulysses_kv_of over the global group). */
        int gqa_ok = 1;
        for (int q = 0; q < P; q++) {
            const plan_heads_t *h = &g.hd[q];
            int64_t cnt[64] = {0}, lg = h->hq / h->kvn;
            for (int64_t kvh = 0; kvh < h->kvn; kvh++)
                for (int64_t j = 0; j < lg; j++) {
                    int64_t local = bwd_q_slab(0, h->hq, kvh, lg, j);
                    gqa_ok &= local >= 0 && local < h->hq && plan_ulysses_kv_of(h, H / Hkv, local) == kvh;
                    cnt[kvh]++;
                }
            for (int t = UG_OUT_FIRST; t < UG_OUT_END; t++) {
                int qr = t == UG_DQ;
                int64_t nh = qr ? h->hq : h->kvn, seq = qr ? n_q : n_k;
                float *f = malloc(sizeof(float) * (size_t)(B * nh * seq * d) + 4);
                for (int64_t b = 0; b < B; b++)
                    for (int64_t j = 0; j < nh; j++)
                        for (int64_t pos = 0; pos < seq; pos++)
                            for (int64_t c = 0; c < d; c++)
                                f[((b * nh + j) * seq + pos) * d + c] =
                                    grad_value(t, b, (qr ? h->q0 : h->kv0) + j, pos, c) * (float)(qr ? 1 : cnt[j]);
                heads[q][t] = (char *)f;
            }
        }
        check(gqa_ok, "kernel GQA order", "%s: a local query head flash_bwd sums into kv head k reads another", name);
        ok &= gqa_ok;
    }
    /* Out exchange done: dQ as written, dK and dV summed over the group's H / H_kv query heads. */
    int out_ok = 1;
    for (int r = 0; r < P; r++)
        for (int t = UG_OUT_FIRST; t < UG_OUT_END; t++) {
            int qr = t == UG_DQ;
            int64_t Ht = qr ? H : Hkv, tok = qr ? g.m[r] : g.k[r];
            const float *f = (const float *)shard[r][t];
            for (int64_t b = 0; b < B; b++)
                for (int64_t h = 0; h < Ht; h++)
                    for (int64_t l = 0; l < tok; l++)
                        for (int64_t c = 0; c < d; c++) {
                            int64_t pos = layout_local_to_global(&lay[!qr], r, l);
                            float want = grad_value(t, b, h, pos, c) * (float)(qr ? 1 : H / Hkv);
                            out_ok &= f[((b * Ht + h) * tok + l) * d + c] == want;
                        }
        }
    check(out_ok, "out exchange", "%s: dQ, or dK/dV summed over the group, differ on the shards", name);
    for (int me = 0; me < P; me++) { /* the per-rank byte figures: both exchanges, self part left out */
        double ts, tr;
        ulysses_grad_traffic(&g, me, &ts, &tr);
        ok &= check(ts == moved_s[me] && tr == moved_r[me], "traffic", "%s rank %d: %.0f / %.0f B, exchanges %.0f / %.0f",
                    name, me, ts, tr, moved_s[me], moved_r[me]);
    }
    check(ok, name, "sizes of the two sides of an exchange differ, or a check above failed");
    for (int r = 0; r < P; r++)
        for (int t = 0; t < UG_SECTIONS; t++)
            free(shard[r][t]), free(heads[r][t]);
    return ok && out_ok;
}

int main(void) {
    static const int64_t cases[][7] = {
        /* B, H, H_kv, d, n_q, n_k, P */
        {1, 2, 1, 4, 5, 5, 1},   {2, 4, 4, 4, 13, 13, 2},  {2, 8, 2, 4, 10, 37, 8}, {1, 8, 2, 4, 37, 37, 4},
        {2, 6, 3, 2, 7, 7, 3},   {1, 4, 1, 4, 5, 9, 4},    {1, 8, 8, 2, 3, 3, 8},   {2, 8, 4, 4, 21, 50, 2},
        {1, 16, 4, 2, 1, 19, 8}, {3, 12, 4, 2, 11, 11, 6}, {1, 6, 6, 4, 20, 23, 3},
    };
    int passed = 0, n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++)
        passed += run_case(cases[i][0], cases[i][1], cases[i][2], cases[i][3], cases[i][4], cases[i][5], (int)cases[i][6]);
    printf("%d of %d cases\n", passed, n);
    /* The plan refuses what the forward refuses: H not divisible by P. */
    attn_problem_t bad = {.batch = 1, .heads = 6, .kv_heads = 3, .head_dim = 4, .n_q = 8, .n_k = 8};
    static ulysses_grad_plan_t g;
    attn_err_t err = {0};
    check(ulysses_grad_plan(&bad, 4, &g, &err) == ATTN_EUSAGE && strstr(err.msg, "split"),
          "H = 6 over P = 4 refused", "%s", err.msg);
    return check_summary();
}
