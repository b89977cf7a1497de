/* tile_grad.c — see tile_grad.h. Per visible (Q tile, K tile): S = Q·Kᵀ, P = exp2(S·c − LSE·log2e),
 * dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P∘(dP − D), dK += s·dSᵀ·Q, dQ += s·dS·K: five single-threaded
 * sgemms, the parallelism ours across (batch, kv head, K tile), lowest K tiles (the most
 * causal work) first. */
#include "impls/cpu/tile_grad.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/backend.h"
#include "core/threads.h"
#include "impls/cpu/softmax.h"

typedef struct {
    float *P, *dP, *dk, *dv, *dq, *l2;
} grad_ws_t;

typedef struct {
    const attn_problem_t *p;
    attn_span_t qs, ks;
    int64_t n_q, n_k, n_qt, n_kt;
    int bq, bk, workers;
    tile_grad_io_t io;
    tile_walk_t walk;
    float c, scale;
    softmax_probs_fn probs;
    grad_ws_t *ws;
    pthread_mutex_t *locks; /* one per (batch·head, Q tile) when workers > 1 */
    atomic_llong computed, skipped;
} grad_job_t;

static int64_t pos_at(attn_span_t s, int64_t r) { return s.start + s.stride * r; }

/* 1 when any of x[0 … n) is ±∞ or NaN (all exponent bits set): an integer test that vectorises. */
static int any_nonfinite(const float *x, size_t n) {
    const uint32_t *u = (const uint32_t *)(const void *)x;
    uint32_t hit = 0;
    for (size_t i = 0; i < n; i++)
        hit |= (u[i] & 0x7f800000u) == 0x7f800000u;
    return hit != 0;
}

/* The careful form of a tile crossing a mask edge whose inputs hold a non-finite value
 * (docs/nonfinite.md "The backward"): a pair the mask hides must not reach dV, dK or dQ, where a
 * GEMM would multiply its zero P or dS by ∞ or NaN. Sums over the visible pairs only. */
static void careful_products(grad_job_t *j, grad_ws_t *ws, int rows, int cols, const int64_t *lo, const int64_t *hi,
                             int64_t j0, const float *Q, const float *dO, const float *K, float *dq_out, int accumulate) {
    int64_t d = j->p->head_dim;
    int bk = j->bk;
    if (!accumulate)
        memset(dq_out, 0, sizeof(float) * (size_t)(rows * d));
    for (int r = 0; r < rows; r++)
        for (int col = 0; col < cols; col++) {
            if (j0 + col < lo[r] || j0 + col >= hi[r])
                continue;
            float pw = ws->P[(size_t)r * bk + col], sw = ws->dP[(size_t)r * bk + col] * j->scale;
            for (int64_t c = 0; c < d; c++) {
                ws->dv[col * d + c] += pw * dO[r * d + c];
                ws->dk[col * d + c] += sw * Q[r * d + c];
                dq_out[r * d + c] += sw * K[col * d + c];
            }
        }
}

static size_t grad_ws_floats(int bq, int bk, int64_t d) {
    return 2 * (size_t)bq * (size_t)bk + 2 * (size_t)bk * (size_t)d + (size_t)bq * (size_t)d + (size_t)bq;
}

/* One (Q tile, K tile) of query head bh against the K tile at key rows [j0, j0 + cols). */
static void grad_tile(grad_job_t *j, grad_ws_t *ws, int64_t bh, int64_t qt, int64_t bkv, int64_t j0, int cols) {
    const attn_problem_t *p = j->p;
    const attn_vis_t vis = problem_vis(p);
    const tile_grad_io_t *io = &j->io;
    int64_t d = p->head_dim, r0 = qt * j->bq;
    int rows = (int)ATTN_MIN((int64_t)j->bq, j->n_q - r0);
    int64_t i_lo = pos_at(j->qs, r0), i_hi = pos_at(j->qs, r0 + rows - 1), lo_last, hi_first, unused;
    const float *Q = io->q + (bh * io->q_rows + r0) * d, *dO = io->d_o + (bh * io->q_rows + r0) * d;
    const float *K = io->k + (bkv * io->k_rows + j0) * d, *V = io->v + (bkv * io->k_rows + j0) * d;
    const float *L = io->lse + bh * io->q_rows + r0, *D = io->delta + bh * io->q_rows + r0;
    float *dQ = io->dq + (bh * io->q_rows + r0) * d;
    int bk = j->bk;

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, (int)d, 1.0f, Q, (int)d, K, (int)d, 0.0f, ws->P, bk);
    /* Visibility is monotone in the position: a tile inside the first row's and the last row's
     * ranges is seen whole by every row; otherwise hide what each row does not see. */
    mask_key_range(&vis, i_hi, i_hi, j->ks, j->n_k, &lo_last, &unused);
    mask_key_range(&vis, i_lo, i_lo, j->ks, j->n_k, &unused, &hi_first);
    int partial = !(lo_last <= j0 && j0 + cols <= hi_first);
    int64_t lo[partial ? rows : 1], hi[partial ? rows : 1];
    if (partial)
        for (int r = 0; r < rows; r++) {
            mask_key_range(&vis, pos_at(j->qs, r0 + r), pos_at(j->qs, r0 + r), j->ks, j->n_k, &lo[r], &hi[r]);
            float *s = ws->P + (size_t)r * bk;
            for (int col = 0; col < cols; col++)
                if (j0 + col < lo[r] || j0 + col >= hi[r])
                    s[col] = -INFINITY;
        }
    /* Finite inputs: a hidden pair's P is exactly 0 (−∞ score, finite LSE) and so is its dS, so the
     * GEMMs below add exact zeros for it. With a non-finite value in the tile that no longer holds. */
    int careful = partial && (any_nonfinite(Q, (size_t)(rows * d)) || any_nonfinite(dO, (size_t)(rows * d)) ||
                              any_nonfinite(K, (size_t)(cols * d)) || any_nonfinite(V, (size_t)(cols * d)) ||
                              any_nonfinite(L, (size_t)rows) || any_nonfinite(D, (size_t)rows));
    for (int r = 0; r < rows; r++)
        ws->l2[r] = L[r] == -INFINITY ? -INFINITY : (float)((double)L[r] * M_LOG2E);
    j->probs(ws->P, rows, cols, bk, j->c, ws->l2);
    if (!careful)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, (int)d, rows, 1.0f, ws->P, bk, dO, (int)d, 1.0f,
                    ws->dv, (int)d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, (int)d, 1.0f, dO, (int)d, V, (int)d, 0.0f, ws->dP,
                bk);
    if (careful) { /* P and dS of hidden pairs exactly 0 (a NaN LSE, a non-finite dP); dS kept in dP */
        for (int r = 0; r < rows; r++)
            for (int col = 0; col < cols; col++) {
                int shown = j0 + col >= lo[r] && j0 + col < hi[r];
                float *pw = ws->P + (size_t)r * bk + col, *dw = ws->dP + (size_t)r * bk + col;
                *pw = shown ? *pw : 0.0f;
                *dw = shown ? *pw * (*dw - D[r]) : 0.0f;
            }
        if (j->workers == 1) {
            careful_products(j, ws, rows, cols, lo, hi, j0, Q, dO, K, dQ, 1);
            return;
        }
        careful_products(j, ws, rows, cols, lo, hi, j0, Q, dO, K, ws->dq, 0);
        goto add_dq;
    }
    for (int r = 0; r < rows; r++) {
        float *pr = ws->P + (size_t)r * bk;
        const float *dpr = ws->dP + (size_t)r * bk;
        float Dr = D[r];
        for (int col = 0; col < cols; col++)
            pr[col] = pr[col] * (dpr[col] - Dr);
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, (int)d, rows, j->scale, ws->P, bk, Q, (int)d, 1.0f,
                ws->dk, (int)d);
    if (j->workers == 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)d, cols, j->scale, ws->P, bk, K, (int)d, 1.0f,
                    dQ, (int)d);
        return;
    }
    /* dQ rows are shared with the items of other K tiles: compute the share aside, add it locked
     * (a rows × d add against the tile's five GEMMs). */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)d, cols, j->scale, ws->P, bk, K, (int)d, 0.0f,
                ws->dq, (int)d);
add_dq:;
    pthread_mutex_t *lock = &j->locks[bh * j->n_qt + qt];
    pthread_mutex_lock(lock);
    for (int64_t e = 0; e < rows * d; e++)
        dQ[e] += ws->dq[e];
    pthread_mutex_unlock(lock);
}

static void grad_item(void *ctx, int64_t item, int worker) {
    grad_job_t *j = ctx;
    const attn_problem_t *p = j->p;
    const attn_vis_t vis = problem_vis(p);
    int64_t BHkv = p->batch * p->kv_heads, d = p->head_dim, group = p->heads / p->kv_heads;
    int64_t bkv = item % BHkv, kt = item / BHkv; /* low K tiles first: under causal they carry the most */
    int64_t b = bkv / p->kv_heads, kvh = bkv % p->kv_heads, j0 = kt * j->bk;
    int cols = (int)ATTN_MIN((int64_t)j->bk, j->n_k - j0);
    grad_ws_t *ws = &j->ws[worker];
    memset(ws->dk, 0, sizeof(float) * (size_t)(cols * d));
    memset(ws->dv, 0, sizeof(float) * (size_t)(cols * d));
    int64_t computed = 0, skipped = 0;
    for (int64_t h = kvh * group; h < (kvh + 1) * group; h++)
        for (int64_t qt = 0; qt < j->n_qt; qt++) {
            int64_t r0 = qt * j->bq, rows = ATTN_MIN((int64_t)j->bq, j->n_q - r0), lo, hi;
            mask_key_range(&vis, pos_at(j->qs, r0), pos_at(j->qs, r0 + rows - 1), j->ks, j->n_k, &lo,
                           &hi);
            if (j0 + cols <= lo || j0 >= hi) {
                skipped += j->walk == TILE_SCAN_ALL; /* the band walk does not count what it passes by */
                continue;
            }
            computed++;
            grad_tile(j, ws, b * p->heads + h, qt, bkv, j0, cols);
        }
    if (computed) {
        float *dK = j->io.dk + (bkv * j->io.k_rows + j0) * d, *dV = j->io.dv + (bkv * j->io.k_rows + j0) * d;
        for (int64_t e = 0; e < cols * d; e++) {
            dK[e] += ws->dk[e];
            dV[e] += ws->dv[e];
        }
    }
    atomic_fetch_add(&j->computed, computed);
    atomic_fetch_add(&j->skipped, skipped);
}

static int grad_workers(const attn_problem_t *p, int threads, int64_t n_k) {
    int64_t items = p->batch * p->kv_heads * ((n_k + tile_block_k(p) - 1) / tile_block_k(p));
    return (int)ATTN_MIN((int64_t)threads_resolve(threads), ATTN_MAX(items, 1));
}

static size_t grad_lock_count(const attn_problem_t *p, int workers, int64_t n_q) {
    return workers > 1 ? (size_t)(p->batch * p->heads * ((n_q + tile_block_q(p) - 1) / tile_block_q(p))) : 0;
}

size_t tile_grad_workspace_bytes(const attn_problem_t *p, int threads, int64_t n_q, int64_t n_k) {
    int workers = grad_workers(p, threads, n_k);
    size_t per = grad_ws_floats(tile_block_q(p), tile_block_k(p), p->head_dim) * sizeof(float);
    return attn_size_add(attn_size_mul((size_t)workers, per),
                         attn_size_mul(grad_lock_count(p, workers, n_q), sizeof(pthread_mutex_t)));
}

int tile_grad_f32(const attn_problem_t *p, int threads, attn_span_t qs, int64_t n_q, attn_span_t ks, int64_t n_k,
                  const tile_grad_io_t *io, tile_walk_t walk, tile_stats_t *stats, attn_err_t *err) {
    if (n_q <= 0 || n_k <= 0) {
        if (stats)
            *stats = (tile_stats_t){0, 0};
        return ATTN_OK;
    }
    grad_job_t j = {.p = p, .qs = qs, .ks = ks, .n_q = n_q, .n_k = n_k, .bq = tile_block_q(p), .bk = tile_block_k(p),
                    .workers = grad_workers(p, threads, n_k), .io = *io, .walk = walk,
                    .c = (float)(problem_scale(p) * M_LOG2E), .scale = (float)problem_scale(p),
                    .probs = softmax_probs_select()};
    j.n_qt = (n_q + j.bq - 1) / j.bq;
    j.n_kt = (n_k + j.bk - 1) / j.bk;
    atomic_init(&j.computed, 0);
    atomic_init(&j.skipped, 0);
    size_t per = grad_ws_floats(j.bq, j.bk, p->head_dim), n_locks = grad_lock_count(p, j.workers, n_q);
    float *block = attn_alloc(per * (size_t)j.workers * sizeof(float), err, "blockwise backward tile workspace");
    pthread_mutex_t *locks = n_locks ? attn_alloc(n_locks * sizeof(pthread_mutex_t), err, "backward dQ locks") : NULL;
    if (!block || (n_locks && !locks)) {
        attn_free(block), attn_free(locks);
        return ATTN_ERUNTIME;
    }
    for (size_t i = 0; i < n_locks; i++)
        pthread_mutex_init(&locks[i], NULL);
    grad_ws_t ws[j.workers];
    int64_t d = p->head_dim;
    for (int w = 0; w < j.workers; w++) {
        float *base = block + per * (size_t)w;
        size_t pq = (size_t)j.bq * (size_t)j.bk, kd = (size_t)j.bk * (size_t)d;
        ws[w] = (grad_ws_t){.P = base, .dP = base + pq, .dk = base + 2 * pq, .dv = base + 2 * pq + kd,
                            .dq = base + 2 * pq + 2 * kd, .l2 = base + 2 * pq + 2 * kd + (size_t)j.bq * (size_t)d};
    }
    j.ws = ws;
    j.locks = locks;
    parallel_for(j.workers, p->batch * p->kv_heads * j.n_kt, grad_item, &j);
    for (size_t i = 0; i < n_locks; i++)
        pthread_mutex_destroy(&locks[i]);
    attn_free(block), attn_free(locks);
    if (stats) {
        stats->tiles_computed = atomic_load(&j.computed);
        stats->tiles_skipped = atomic_load(&j.skipped);
    }
    return ATTN_OK;
}

void tile_grad_delta(const float *o, const float *d_o, int64_t rows, int64_t d, float *D) {
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t c = 0; c < d; c++)
            s += (double)o[r * d + c] * d_o[r * d + c];
        D[r] = (float)s;
    }
}

int tile_backward_whole(const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g, tile_walk_t walk,
                        attn_err_t *err) {
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p), rows = problem_numel_lse(p);
    float *D = attn_alloc(rows * sizeof(float) + 1, err, "backward D = rowsum(dO∘O)");
    if (!D)
        return ATTN_ERUNTIME;
    memset(g->dq, 0, nq * sizeof(float));
    memset(g->dk, 0, nkv * sizeof(float));
    memset(g->dv, 0, nkv * sizeof(float));
    tile_grad_delta(g->o, g->d_o, (int64_t)rows, p->head_dim, D);
    tile_grad_io_t t = {g->q, g->k, g->v, g->d_o, g->lse, D, g->dq, g->dk, g->dv, p->n_q, p->n_k};
    int rc = tile_grad_f32(p, x->threads, problem_q_span(p), p->n_q, problem_k_span(p), p->n_k, &t, walk, NULL, err);
    attn_free(D);
    return rc;
}

size_t tile_backward_workspace(const struct attn_backend *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    return attn_size_add(attn_size_mul(problem_numel_lse(p), sizeof(float)),
                         tile_grad_workspace_bytes(p, x->threads, p->n_q, p->n_k));
}
