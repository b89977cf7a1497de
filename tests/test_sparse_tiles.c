/* test_sparse_tiles.c — the CUDA approximate backends' index arithmetic (impls/cuda/sparse_attn.cu)
 * replayed on the host with the kernels' own functions (impls/cpu/sparse_tiles.h): the select
 * kernel's lists — the bound in the kernel's channel order, its 4-row folds, the bitonic network,
 * the top `keep`, the compaction — must equal the CPU backends' lists on the same inputs, ties
 * included; the attention kernel's walk over those lists (64-row blocks, 64-key steps, 32 at d = 256, the keep
 * rule), summed in float64, must reproduce the CPU backends' output and visited pairs. No GPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/backend.h"
#include "core/rng.h"
#include "core/tensors.h"
#include "core/threads.h"
#include "impls/cpu/sparse_engine.h"
#include "impls/cuda/flash_frag.h"
#include "tasks/tolerance.h"

enum { SINKS = 0, TOPK = 1 };

typedef struct {
    int be;
    attn_mask_t mask;
    int64_t n_k, n_q, heads, kv_heads, d, window;
    int bq, bk;
    int64_t sinks, topk, approx_window;
    double pct;
    int fill; /* 0: quantised random; 1: every key equal (all bounds tie); 2: a NaN key heads a tile */
} case_t;

/* The select kernel's lists, (list_heads, n_qt, cap) as on the device, from the host functions it
 * shares: the requests plan_of builds, the summary kernel's min/max, the select kernel's steps. */
typedef struct {
    int64_t n_qt, n_kt, cap, list_heads;
    int32_t *list, *count;
    int64_t chosen; /* lists with a top-k choice (keep > 0) */
} gpu_lists_t;

static sparse_req_t request(const case_t *c, const attn_problem_t *p, const attn_exec_t *x, int64_t qt) {
    sparse_req_t r;
    int64_t r0 = qt * c->bq;
    int rows = (int)ATTN_MIN((int64_t)c->bq, p->n_q - r0);
    if (c->be == TOPK)
        topk_blocks_request(p, x, c->bk, r0, rows, &r);
    else
        sinks_window_request(p, x, c->bk, r0, rows, &r);
    return r;
}

/* summary_kernel: per (b·kv head, tile, channel), rows in order. */
static void summarise(const attn_problem_t *p, int bk, const float *K, float *mid, float *half) {
    int64_t n_kt = (p->n_k + bk - 1) / bk, d = p->head_dim;
    for (int64_t bkv = 0; bkv < p->batch * p->kv_heads; bkv++)
        for (int64_t t = 0; t < n_kt; t++)
            for (int64_t c = 0; c < d; c++) {
                const float *k = K + (bkv * p->n_k + t * bk) * d;
                int64_t cols = ATTN_MIN((int64_t)bk, p->n_k - t * bk);
                float lo = k[c], hi = k[c];
                for (int64_t r = 1; r < cols; r++)
                    sparse_minmax_add(k[r * d + c], &lo, &hi);
                sparse_mid_half(lo, hi, &mid[(bkv * n_kt + t) * d + c], &half[(bkv * n_kt + t) * d + c]);
            }
}

/* select_kernel for one (Q tile, list head): thread (ty, tx) folds rows rc + 4·ty … + 3 of each
 * 64-row chunk for its tiles, channels ascending (32 at a time, in order), into an atomic max. */
static int64_t select_one(const case_t *c, const attn_problem_t *p, const sparse_req_t *rq, int64_t lh, int64_t qt,
                          const float *Q, const float *mid, const float *half, int32_t *list, int64_t cap) {
    if (rq->keep == 0)
        return sparse_req_fixed_list(rq, list);
    int64_t nt = rq->c_hi - rq->c_lo, n2 = sparse_pow2(nt), r0 = qt * c->bq, d = p->head_dim;
    int64_t n_kt = (p->n_k + c->bk - 1) / c->bk;
    int rows = (int)ATTN_MIN((int64_t)c->bq, p->n_q - r0);
    int64_t b = lh / p->heads, kvh = (lh % p->heads) / (p->heads / p->kv_heads);
    const float *q = Q + (lh * p->n_q + r0) * d;
    int64_t sum0 = ((b * p->kv_heads + kvh) * n_kt + rq->c_lo) * d;
    uint64_t *keys = malloc((size_t)n2 * sizeof *keys);
    unsigned char *flags = calloc((size_t)nt, 1);
    for (int64_t i = 0; i < n2; i++)
        keys[i] = i < nt && !sparse_req_holds(rq, rq->c_lo + i) ? sparse_tile_key(-INFINITY, rq->c_lo + i) : 0;
    for (int64_t i = 0; i < nt; i++) {
        if (sparse_req_holds(rq, rq->c_lo + i))
            continue;
        for (int rc = 0; rc < rows; rc += 64)
            for (int ty = 0; ty < 16; ty++) {
                float m = -INFINITY;
                for (int a = 0; a < 4; a++) {
                    int r = rc + ty * 4 + a;
                    if (r >= rows)
                        continue;
                    float s_mid = 0, s_half = 0;
                    for (int64_t ch = 0; ch < d; ch++)
                        sparse_bound_add(q[r * d + ch], mid[sum0 + i * d + ch], half[sum0 + i * d + ch], &s_mid,
                                         &s_half);
                    m = sparse_fold(m, s_mid + s_half);
                }
                uint64_t k = sparse_tile_key(m, rq->c_lo + i);
                keys[i] = k > keys[i] ? k : keys[i];
            }
    }
    for (int64_t k = 2; k <= n2; k <<= 1)
        for (int64_t j = k >> 1; j > 0; j >>= 1)
            for (int64_t i = 0; i < n2; i++)
                sparse_bitonic_step(keys, i, k, j);
    for (int64_t i = 0; i < nt; i++)
        flags[i] = (unsigned char)sparse_req_holds(rq, rq->c_lo + i);
    int wild = 0; /* a chosen key naming no candidate: the kernel would write out of bounds */
    for (int64_t i = 0; i < rq->keep; i++) {
        int64_t at = sparse_key_tile(keys[i]) - rq->c_lo;
        if (keys[i] == 0 || at < 0 || at >= nt)
            wild = 1;
        else
            flags[at] = 1;
    }
    int64_t n = 0;
    for (int64_t i = 0; i < nt; i++)
        if (flags[i] && n < cap)
            list[n++] = (int32_t)(rq->c_lo + i);
    free(keys);
    free(flags);
    return wild ? -1 : n;
}

static void gpu_lists(const case_t *c, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                      gpu_lists_t *g) {
    g->n_qt = (p->n_q + c->bq - 1) / c->bq;
    g->n_kt = (p->n_k + c->bk - 1) / c->bk;
    g->list_heads = c->be == TOPK ? p->batch * p->heads : 1;
    g->cap = 1, g->chosen = 0;
    for (int64_t qt = 0; qt < g->n_qt; qt++) {
        sparse_req_t r = request(c, p, x, qt);
        g->cap = ATTN_MAX(g->cap, sparse_req_len_max(&r));
    }
    size_t ns = (size_t)(p->batch * p->kv_heads * g->n_kt * p->head_dim);
    float *mid = malloc(ns * sizeof *mid), *half = malloc(ns * sizeof *half);
    summarise(p, c->bk, io->k, mid, half);
    g->list = malloc((size_t)(g->list_heads * g->n_qt * g->cap) * sizeof *g->list);
    g->count = malloc((size_t)(g->list_heads * g->n_qt) * sizeof *g->count);
    for (int64_t lh = 0; lh < g->list_heads; lh++)
        for (int64_t qt = 0; qt < g->n_qt; qt++) {
            sparse_req_t r = request(c, p, x, qt);
            int64_t at = lh * g->n_qt + qt;
            g->count[at] = (int32_t)select_one(c, p, &r, lh, qt, io->q, mid, half, g->list + at * g->cap, g->cap);
            g->chosen += r.keep > 0;
        }
    free(mid);
    free(half);
}

/* sparse_attn_kernel in float64: each 64-row block walks its Q tile's list in steps of the
 * kernel's key tile at d (64 keys, 32 at d = 256: sparse_sub_key0) and keeps (row, key) by
 * sparse_keeps; O (B,H,n_q,d), LSE, and the kept pairs of real rows. */
static double walk_f64(const case_t *c, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                       const gpu_lists_t *g, double *O, double *LSE) {
    sparse_rule_t rule = c->be == TOPK ? topk_blocks_rule(p) : sinks_window_rule(p, x);
    int64_t d = p->head_dim, m_blocks = (p->n_q + 63) / 64, q_off = p->n_k - p->n_q;
    double scale = problem_scale(p), visited = 0;
    double *s = malloc(64 * (size_t)p->n_k * sizeof *s);
    char *on = malloc(64 * (size_t)p->n_k);
    for (int64_t bh = 0; bh < p->batch * p->heads; bh++) {
        int64_t kvb = (bh / p->heads) * p->kv_heads + (bh % p->heads) / (p->heads / p->kv_heads);
        const float *K = (const float *)io->k + kvb * p->n_k * d, *V = (const float *)io->v + kvb * p->n_k * d;
        for (int64_t mb = 0; mb < m_blocks; mb++) {
            int64_t r0 = mb * 64, at = (g->list_heads == 1 ? 0 : bh) * g->n_qt + sparse_block_qtile(r0, c->bq);
            const int keys = FRAG_KEYS((int)d);
            int64_t steps = sparse_sub_steps(g->count[at] > 0 ? g->count[at] : 0, c->bk, keys);
            memset(on, 0, 64 * (size_t)p->n_k);
            for (int64_t it = 0; it < steps; it++) {
                int64_t key0 = sparse_sub_key0(g->list + at * g->cap, it, c->bk, keys);
                for (int row = 0; row < 64 && r0 + row < p->n_q; row++)
                    for (int key = 0; key < keys; key++) {
                        int64_t j = key0 + key;
                        if (j >= p->n_k || !sparse_keeps(&rule, q_off + r0 + row, j))
                            continue;
                        const float *q = (const float *)io->q + (bh * p->n_q + r0 + row) * d;
                        double dot = 0;
                        for (int64_t ch = 0; ch < d; ch++)
                            dot += (double)q[ch] * K[j * d + ch];
                        s[row * p->n_k + j] = dot * scale;
                        visited += 1;
                        on[row * p->n_k + j]++; /* a key met twice would count twice on the device */
                    }
            }
            for (int row = 0; row < 64 && r0 + row < p->n_q; row++) {
                double mx = -INFINITY, l = 0, *o = O + (bh * p->n_q + r0 + row) * d;
                for (int64_t j = 0; j < p->n_k; j++)
                    for (int t = 0; t < on[row * p->n_k + j]; t++)
                        mx = fmax(mx, s[row * p->n_k + j]);
                memset(o, 0, (size_t)d * sizeof *o);
                for (int64_t j = 0; j < p->n_k; j++)
                    for (int t = 0; t < on[row * p->n_k + j]; t++) {
                        double w = exp(s[row * p->n_k + j] - mx);
                        l += w;
                        for (int64_t ch = 0; ch < d; ch++)
                            o[ch] += w * V[j * d + ch];
                    }
                for (int64_t ch = 0; ch < d && l > 0; ch++)
                    o[ch] /= l;
                LSE[bh * p->n_q + r0 + row] = l > 0 ? mx + log(l) : -INFINITY;
            }
        }
    }
    free(s);
    free(on);
    return visited;
}

/* Values k/4, |k| ≤ 8: exact in bf16, and every bound a sum of exact products that float32
 * holds exactly in any order — so the kernel's order and the CPU sgemm's give the same bits,
 * and equal bounds are true ties. */
static void fill(const case_t *c, const attn_problem_t *p, attn_tensors_t *t, uint64_t seed) {
    size_t len[3] = {problem_numel_q(p), problem_numel_kv(p), problem_numel_kv(p)};
    float *dst[3] = {t->q, t->k, t->v};
    for (int a = 0; a < 3; a++)
        for (size_t i = 0; i < len[a]; i++)
            dst[a][i] = c->fill == 1 && a == 1 ? 0.5f : (float)((int)(rng_u64(seed, (uint32_t)a, i) % 17) - 8) / 4;
    if (c->fill == 2 && p->n_k > c->bk) /* row 0 of tile 1, channel 0: that tile's bound is NaN */
        ((float *)t->k)[(size_t)c->bk * (size_t)p->head_dim] = NAN;
}

static attn_problem_t problem_of(const case_t *c) {
    return (attn_problem_t){.batch = 1, .heads = c->heads, .kv_heads = c->kv_heads, .head_dim = c->d, .n_q = c->n_q,
                            .n_k = c->n_k, .mask = c->mask, .window = c->window, .dtype = ATTN_F32, .block_q = c->bq,
                            .block_k = c->bk};
}

static attn_exec_t exec_of(const case_t *c) {
    attn_exec_t x = exec_default();
    x.threads = 2, x.sinks = c->sinks, x.topk = c->topk, x.topk_pct = c->pct, x.approx_window = c->approx_window;
    return x;
}

static void name_of(const case_t *c, char *buf, size_t len) {
    snprintf(buf, len, "%s n_k=%lld n_q=%lld %s w=%lld H=%lld/%lld d=%lld tiles %dx%d S=%lld K=%lld (%g%%) W=%lld%s",
             c->be == TOPK ? "topk" : "sinks", (long long)c->n_k, (long long)c->n_q, mask_name(c->mask),
             (long long)c->window, (long long)c->heads, (long long)c->kv_heads, (long long)c->d, c->bq, c->bk,
             (long long)c->sinks, (long long)c->topk, c->pct, (long long)c->approx_window,
             c->fill == 1 ? " all-equal keys" : c->fill == 2 ? " NaN key" : "");
}

/* The lists of the two must be equal, entry by entry; returns the number that differ. */
static int64_t compare_lists(const attn_problem_t *p, const gpu_lists_t *g, const int64_t *counts,
                             const int64_t *lists, int64_t *chosen) {
    int64_t bad = 0;
    *chosen = 0;
    for (int64_t bh = 0; bh < p->batch * p->heads; bh++)
        for (int64_t qt = 0; qt < g->n_qt; qt++) {
            int64_t at = bh * g->n_qt + qt, gat = (g->list_heads == 1 ? 0 : bh) * g->n_qt + qt;
            const int64_t *cl = lists + at * g->n_kt;
            const int32_t *gl = g->list + gat * g->cap;
            int differs = counts[at] != g->count[gat];
            for (int64_t e = 0; !differs && e < counts[at]; e++)
                differs = cl[e] != gl[e];
            bad += differs;
            *chosen += counts[at];
        }
    return bad;
}

static int64_t lists_chosen, lists_all; /* over all cases: how much of the select path ran */

static void run_case(const case_t *c, uint64_t seed, int attend) {
    char name[256];
    name_of(c, name, sizeof name);
    attn_problem_t p = problem_of(c);
    attn_exec_t x = exec_of(c);
    attn_err_t err = {0};
    attn_tensors_t t;
    if (!check(tensors_alloc(&p, 0, 0, &t, &err) == ATTN_OK, name, "allocate: %s", err.msg))
        return;
    fill(c, &p, &t, seed);
    const attn_backend_t *be = registry_find(c->be == TOPK ? "topk_blocks" : "sinks_window");
    char why[256];
    if (!check(backend_supports(be, &p, &x, why, sizeof why), name, "declined: %s", why)) {
        tensors_free(&t);
        return;
    }
    gpu_lists_t g;
    gpu_lists(c, &p, &x, &t.io, &g);
    lists_chosen += g.chosen, lists_all += g.list_heads * g.n_qt;
    int64_t *counts = malloc((size_t)(p.heads * g.n_qt) * sizeof *counts);
    int64_t *lists = malloc((size_t)(p.heads * g.n_qt * g.n_kt) * sizeof *lists), chosen;
    int rc = c->be == TOPK ? topk_blocks_lists(&p, &x, &t.io, counts, lists, &err)
                           : sinks_window_lists(&p, &x, &t.io, counts, lists, &err);
    if (check(rc == ATTN_OK, name, "CPU lists: %s", err.msg)) {
        int64_t bad = compare_lists(&p, &g, counts, lists, &chosen);
        check(bad == 0, name, "lists: %lld of %lld (head, Q tile) lists differ from the CPU's", (long long)bad,
              (long long)(p.heads * g.n_qt));
    }
    if (attend) { /* the walk against the CPU backend's output, the f32 tolerance of blockwise's loop */
        attn_tensors_t cpu, ref64, n32;
        attn_problem_t p64 = p;
        p64.dtype = ATTN_F64;
        tensors_alloc(&p, 0, 0, &cpu, &err), tensors_alloc(&p64, 0, 0, &ref64, &err), tensors_alloc(&p, 0, 0, &n32, &err);
        double visited = -1, walked = walk_f64(c, &p, &x, &t.io, &g, ref64.o, ref64.lse);
        attn_io_t io = t.io;
        io.o = cpu.o, io.lse = cpu.lse, io.keys_visited = &visited;
        rc = be->forward(be, &p, &x, &io, &err);
        /* naive f32 against naive f64 on the same inputs: the same-precision baseline */
        const attn_backend_t *naive = registry_find("naive");
        attn_tensors_t in64, nref;
        tensors_alloc(&p64, 0, 0, &in64, &err), tensors_alloc(&p64, 0, 0, &nref, &err);
        size_t len[3] = {problem_numel_q(&p), problem_numel_kv(&p), problem_numel_kv(&p)};
        const float *src[3] = {t.q, t.k, t.v};
        double *dst[3] = {in64.q, in64.k, in64.v};
        for (int a = 0; a < 3; a++)
            for (size_t i = 0; i < len[a]; i++)
                dst[a][i] = src[a][i];
        attn_io_t nio = t.io, rio = in64.io;
        nio.o = n32.o, nio.lse = n32.lse, rio.o = nref.o, rio.lse = nref.lse;
        if (check(rc == ATTN_OK && naive->forward(naive, &p, &x, &nio, &err) == ATTN_OK &&
                      naive->forward(naive, &p64, &x, &rio, &err) == ATTN_OK,
                  name, "forward: %s", err.msg)) {
            size_t n_o = problem_numel_q(&p), n_l = problem_numel_lse(&p);
            attn_errors_t base = errors_measure(n32.o, n32.lse, ATTN_F32, nref.o, nref.lse, n_o, n_l);
            double o_max = 0, lse_max = 0;
            for (size_t i = 0; i < n_o; i++)
                o_max = fmax(o_max, fabs(((double *)ref64.o)[i]));
            for (size_t i = 0; i < n_l; i++)
                lse_max = fmax(lse_max, fabs(((double *)ref64.lse)[i]));
            attn_errors_t tol = tolerance_bound("blockwise", ATTN_F32, &base, o_max, lse_max, p.n_k);
            attn_errors_t e = errors_measure(cpu.o, cpu.lse, ATTN_F32, ref64.o, ref64.lse, n_o, n_l);
            check(errors_within(&e, &tol) && visited == walked, name,
                  "walk vs CPU: rel_l2 %.3g (tol %.3g), max_abs %.3g (tol %.3g), lse %.3g (tol %.3g); visited %.0f, "
                  "walked %.0f",
                  e.rel_l2, tol.rel_l2, e.max_abs, tol.max_abs, e.lse_max, tol.lse_max, visited, walked);
        }
        tensors_free(&cpu), tensors_free(&ref64), tensors_free(&n32), tensors_free(&in64), tensors_free(&nref);
    }
    free(counts), free(lists), free(g.list), free(g.count);
    tensors_free(&t);
}

/* Fixed cases (ties, NaN, tails, GQA, windows, every budget kind) then seeded random ones. */
static const case_t fixed[] = {
    {TOPK, ATTN_MASK_CAUSAL, 1000, 1000, 4, 2, 32, 0, 128, 256, 0, 1, 64, 0, 0},
    {TOPK, ATTN_MASK_CAUSAL, 1000, 1000, 2, 1, 32, 0, 64, 64, 0, 3, 1, 0, 1},
    {TOPK, ATTN_MASK_NONE, 1500, 700, 2, 2, 16, 0, 192, 128, 0, 0, 100, 30, 0},
    {TOPK, ATTN_MASK_WINDOW, 1200, 1200, 1, 1, 16, 500, 64, 128, 0, 2, 10, 0, 0},
    {TOPK, ATTN_MASK_CAUSAL, 1300, 1300, 1, 1, 16, 0, 128, 64, 0, 4, 1, 0, 2},
    {TOPK, ATTN_MASK_CAUSAL, 2000, 64, 2, 1, 64, 0, 128, 128, 0, 0, 64, 5, 0},
    {TOPK, ATTN_MASK_CAUSAL, 700, 700, 1, 1, 16, 0, 64, 256, 0, 0, 1, 100, 0},
    {SINKS, ATTN_MASK_CAUSAL, 1000, 1000, 2, 2, 32, 0, 128, 256, 64, 0, 100, 0, 0},
    {SINKS, ATTN_MASK_CAUSAL, 900, 200, 2, 1, 16, 0, 64, 64, 300, 0, 250, 0, 0},
    {SINKS, ATTN_MASK_WINDOW, 800, 800, 1, 1, 16, 300, 192, 128, 5, 0, 37, 0, 0},
    {SINKS, ATTN_MASK_NONE, 600, 600, 1, 1, 16, 0, 64, 128, 0, 0, 600, 0, 0},
    {TOPK, ATTN_MASK_CAUSAL, 700, 700, 2, 1, 256, 0, 128, 128, 0, 2, 1, 0, 0},  /* d = 256: 32-key sub-steps */
    {SINKS, ATTN_MASK_CAUSAL, 500, 300, 1, 1, 256, 0, 64, 192, 64, 0, 100, 0, 0},
};

static case_t random_case(uint64_t seed, int i) {
    uint64_t draw = 0; /* each PICK its own draw */
#define PICK(arr) arr[rng_u64(seed, 100 + (uint32_t)i, draw++) % (sizeof arr / sizeof arr[0])]
    static const attn_mask_t masks[] = {ATTN_MASK_NONE, ATTN_MASK_CAUSAL, ATTN_MASK_CAUSAL, ATTN_MASK_WINDOW};
    static const int bqs[] = {64, 128, 192}, bks[] = {64, 128, 256}, heads[] = {1, 2, 4};
    static const int64_t topks[] = {0, 1, 2, 3, 7}, sinks[] = {0, 1, 63, 64, 300, 5000};
    static const double pcts[] = {0, 0, 1, 5, 10, 30, 50, 100};
    case_t c = {.be = (int)(rng_u64(seed, 1, (uint64_t)i) % 2), .mask = PICK(masks), .bq = PICK(bqs),
                .bk = PICK(bks), .heads = PICK(heads), .d = 16};
    c.n_k = 1 + (int64_t)(rng_u64(seed, 2, (uint64_t)i) % 1800);
    c.n_q = rng_u64(seed, 3, (uint64_t)i) % 2 ? c.n_k : 1 + (int64_t)(rng_u64(seed, 4, (uint64_t)i) % (uint64_t)c.n_k);
    c.kv_heads = c.heads > 1 && rng_u64(seed, 5, (uint64_t)i) % 2 ? c.heads / 2 : c.heads;
    c.window = c.mask == ATTN_MASK_WINDOW ? 1 + (int64_t)(rng_u64(seed, 6, (uint64_t)i) % (uint64_t)c.n_k) : 0;
    c.approx_window = 1 + (int64_t)(rng_u64(seed, 7, (uint64_t)i) % (uint64_t)(c.n_k / 4 + 1));
    c.sinks = PICK(sinks), c.topk = PICK(topks), c.pct = PICK(pcts);
    c.fill = rng_u64(seed, 8, (uint64_t)i) % 8 == 0;
    return c;
#undef PICK
}

/* The helpers on their own: the key order is the CPU's ranking (ties to the later tile), the
 * bitonic network sorts, the fixed list merges overlapping ranges once. */
static void helpers(void) {
    static const float sc[] = {-INFINITY, -2.5f, -0.0f, 0.0f, 1.0f, 1.0f, INFINITY};
    int bad = 0;
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 7; b++)
            for (int64_t ta = 3; ta < 5; ta++)
                for (int64_t tb = 3; tb < 5; tb++)
                    if (ta != tb)
                        bad += sparse_ranks_below(sc[a], ta, sc[b], tb) !=
                               (sparse_tile_key(sc[a], ta) < sparse_tile_key(sc[b], tb));
    check(bad == 0, "sort keys order as sparse_ranks_below", "%d pairs disagree", bad);
    uint64_t k[64];
    for (int i = 0; i < 64; i++)
        k[i] = rng_u64(5, 9, (uint64_t)i) % 1000;
    for (int64_t s = 2; s <= 64; s <<= 1)
        for (int64_t j = s >> 1; j > 0; j >>= 1)
            for (int64_t i = 0; i < 64; i++)
                sparse_bitonic_step(k, i, s, j);
    int sorted = 1;
    for (int i = 1; i < 64; i++)
        sorted &= k[i - 1] >= k[i];
    check(sorted, "bitonic network sorts 64 keys descending", "out of order");
    sparse_req_t r = {{5, 0}, {9, 7}, 0, 0, 0};
    int32_t out[16];
    int64_t n = sparse_req_fixed_list(&r, out);
    check(n == 9 && out[0] == 0 && out[8] == 8, "fixed list of [5, 9) and [0, 7)", "%lld tiles, %d … %d",
          (long long)n, out[0], out[n - 1]);
    /* The sub-step walk (the d = 256 kernel's 32-key tiles) meets the keys of the listed tiles in
     * order, each once, as the 64-key walk does. */
    static const int32_t lst[] = {0, 3, 4, 9};
    int walk_bad = 0;
    for (int bk = 64; bk <= 256; bk += 64)
        for (int keys = 16; keys <= 64; keys *= 2) {
            int64_t steps = sparse_sub_steps(4, bk, keys), next = 0;
            walk_bad += steps * keys != 4 * bk;
            for (int64_t it = 0; it < steps; it++) {
                int64_t key0 = sparse_sub_key0(lst, it, bk, keys), want = (int64_t)lst[next / bk] * bk + next % bk;
                walk_bad += key0 != want || (it % (SPARSE_STEP / keys) == 0 && key0 != sparse_step_key0(lst, it / (SPARSE_STEP / keys), bk));
                next += keys;
            }
        }
    check(walk_bad == 0, "sub-step walk of listed tiles", "%d keys met out of order", walk_bad);
}

int main(void) {
    parallel_set_blas_threads(1);
    helpers();
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        run_case(&fixed[i], 11 + i, fixed[i].fill != 2);
    for (int i = 0; i < 60; i++) {
        case_t c = random_case(2026, i);
        run_case(&c, 500 + (uint64_t)i, i % 3 == 0 && c.n_k <= 1200);
    }
    check(lists_chosen > 100, "the select path ran", "%lld of %lld lists had a top-k choice", (long long)lists_chosen,
          (long long)lists_all);
    printf("%lld of %lld lists had a top-k choice\n", (long long)lists_chosen, (long long)lists_all);
    return check_summary();
}
