/* topk_blocks.c — approximate attention by key-tile selection (Quest / SPARSEK-style): each K tile
 * is summarised by the per-channel min and max of its keys; a Q tile scores every K tile it can
 * see by the upper bound max over its rows of Σ_c max(q_c·kmin_c, q_c·kmax_c) on any q·k in it,
 * keeps the --topk best (or --topk P%: P % of the tiles it sees, window included) plus the tiles
 * of its local window (--window W), and attends exactly to the keys of those tiles the mask lets
 * each row see. Declares itself approximate (docs/approximate.md). */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "core/backend.h"
#include "core/threads.h"
#include "impls/cpu/sparse_engine.h"
#include "impls/cpu/tile_engine.h"

/* Per (batch, kv head, K tile): mid = (kmax + kmin)/2 and half = (kmax − kmin)/2 per channel,
 * so that max(q·kmin, q·kmax) = q·mid + |q|·half channel by channel: the bound of a whole Q
 * tile against every K tile is two sgemms. */
typedef struct {
    float *mid, *half; /* (B, H_kv, n_kt, d) */
    int64_t n_kt;
} topk_summary_t;

typedef struct {
    const attn_problem_t *p;
    const attn_io_t *io;
    topk_summary_t *sum;
    int64_t t0, nt; /* the tiles some query can see: only those are summarised */
} summary_job_t;

static void summary_item(void *ctx, int64_t item, int worker) {
    (void)worker;
    const summary_job_t *j = ctx;
    const attn_problem_t *p = j->p;
    int64_t d = p->head_dim, bk = tile_block_k(p), n_kt = j->sum->n_kt;
    int64_t bkv = item / j->nt, t = j->t0 + item % j->nt, j0 = t * bk, cols = ATTN_MIN(bk, p->n_k - j0);
    const float *K = (const float *)j->io->k + (bkv * p->n_k + j0) * d; /* (cols, d) */
    float *mid = j->sum->mid + (bkv * n_kt + t) * d, *half = j->sum->half + (bkv * n_kt + t) * d;
    /* Row by row, channels innermost: K is read in order (a channel at a time strode d floats per
     * key). Each channel still sees its keys in key order, so NaN handling and results are as before. */
    float *lo = half, *hi = mid; /* running min and max, turned into mid and half at the end */
    memcpy(lo, K, (size_t)d * sizeof *lo);
    memcpy(hi, K, (size_t)d * sizeof *hi);
    for (int64_t r = 1; r < cols; r++)
        for (int64_t c = 0; c < d; c++)
            sparse_minmax_add(K[r * d + c], &lo[c], &hi[c]);
    for (int64_t c = 0; c < d; c++) {
        float l = lo[c], h = hi[c];
        sparse_mid_half(l, h, &mid[c], &half[c]);
    }
}

/* Per-worker scratch: |Q| (bq, d), the bounds (bq, n_kt), the tile scores (n_kt), a heap (n_kt). */
static size_t topk_scratch(const attn_problem_t *p) {
    size_t bq = (size_t)tile_block_q(p), d = (size_t)p->head_dim;
    size_t n_kt = ((size_t)p->n_k + (size_t)tile_block_k(p) - 1) / (size_t)tile_block_k(p);
    return (bq * d + bq * n_kt + n_kt) * sizeof(float) + 8 + n_kt * sizeof(int64_t);
}

/* The K tiles a Q tile keeps beyond its window (docs/approximate.md): topk, or topk_pct of the
 * tiles it sees less the window's, at least 0. */
static int64_t topk_budget(const attn_exec_t *x, int64_t seen, int64_t window) {
    if (x->topk_pct > 0) {
        int64_t total = (int64_t)ceil(x->topk_pct / 100.0 * (double)seen - 1e-9);
        return ATTN_MAX(total - window, 0);
    }
    return x->topk;
}

/* The ranking of sparse_tiles.h (the CUDA version sorts by the same order). */
static int ranks_below(const float *sc, int64_t a, int64_t b) { return sparse_ranks_below(sc[a], a, sc[b], b); }

static void heap_down(int64_t *h, int64_t n, int64_t at, const float *sc) {
    for (;;) {
        int64_t m = at, l = 2 * at + 1, r = l + 1;
        if (l < n && ranks_below(sc, h[l], h[m]))
            m = l;
        if (r < n && ranks_below(sc, h[r], h[m]))
            m = r;
        if (m == at)
            return;
        int64_t t = h[at];
        h[at] = h[m], h[m] = t;
        at = m;
    }
}

void topk_blocks_request(const attn_problem_t *p, const attn_exec_t *x, int bk, int64_t r0, int rows,
                         sparse_req_t *rq) {
    attn_span_t qs = problem_q_span(p), ks = problem_k_span(p);
    int64_t i_lo = qs.start + qs.stride * r0, i_hi = qs.start + qs.stride * (r0 + rows - 1);
    int64_t vlo, vhi, wlo, whi, w_lo, w_hi;
    attn_vis_t v = problem_vis(p);
    mask_key_range(&v, i_lo, i_hi, ks, p->n_k, &vlo, &vhi);
    mask_key_range(&(attn_vis_t){ATTN_MASK_WINDOW, x->approx_window, NULL, 0}, i_lo, i_hi, ks, p->n_k, &wlo, &whi);
    sparse_range_and(&wlo, &whi, vlo, vhi);
    sparse_tiles_of(vlo, vhi, bk, &rq->c_lo, &rq->c_hi);
    sparse_tiles_of(wlo, whi, bk, &w_lo, &w_hi);
    int64_t seen = rq->c_hi - rq->c_lo, n_win = w_hi - w_lo, K = topk_budget(x, seen, n_win);
    int all = K >= seen - n_win; /* the budget covers every tile: exact */
    rq->lo[0] = all ? rq->c_lo : w_lo, rq->hi[0] = all ? rq->c_hi : w_hi;
    rq->lo[1] = rq->hi[1] = 0;
    rq->keep = all ? 0 : K;
}

sparse_rule_t topk_blocks_rule(const attn_problem_t *p) { return (sparse_rule_t){problem_vis(p), 0, 0, 0}; }

static int64_t topk_tiles(const sparse_plan_t *s, int64_t bh, int64_t r0, int rows, const float *Q, void *scratch,
                          int64_t *out) {
    const attn_problem_t *p = s->p;
    const topk_summary_t *sum = s->ctx;
    int64_t d = p->head_dim;
    sparse_req_t rq;
    topk_blocks_request(p, s->x, tile_block_k(p), r0, rows, &rq);
    int64_t c_lo = rq.c_lo, w_lo = rq.lo[0], w_hi = rq.hi[0], seen = rq.c_hi - rq.c_lo, K = rq.keep;
    if (K == 0) /* the window alone, or every tile */
        return sparse_tiles_add_range(out, 0, w_lo, w_hi);

    float *qabs = scratch, *bound = qabs + (size_t)tile_block_q(p) * d;
    float *score = bound + (size_t)tile_block_q(p) * sum->n_kt;
    int64_t *heap = (int64_t *)(((uintptr_t)(score + sum->n_kt) + 7) & ~(uintptr_t)7);
    for (int64_t e = 0; e < rows * d; e++)
        qabs[e] = fabsf(Q[e]);
    int64_t kvh = (bh % p->heads) / (p->heads / p->kv_heads), b = bh / p->heads;
    size_t base = (size_t)((b * p->kv_heads + kvh) * sum->n_kt + c_lo) * (size_t)d;
    int nt = (int)seen;
    /* bound (rows, nt) = Q·midᵀ + |Q|·halfᵀ */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, nt, (int)d, 1.0f, Q, (int)d, sum->mid + base, (int)d,
                0.0f, bound, nt);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, nt, (int)d, 1.0f, qabs, (int)d, sum->half + base,
                (int)d, 1.0f, bound, nt);
    for (int t = 0; t < nt; t++) {
        float m = -INFINITY;
        for (int r = 0; r < rows; r++) {
            float v = bound[(size_t)r * nt + t];
            m = sparse_fold(m, v); /* a non-finite key is never silently dropped */
        }
        score[t] = m;
    }
    int64_t n = 0;
    for (int64_t t = 0; t < nt; t++) {
        if (c_lo + t >= w_lo && c_lo + t < w_hi)
            continue;
        if (n < K) {
            heap[n++] = t;
            for (int64_t at = n - 1; at > 0 && ranks_below(score, heap[at], heap[(at - 1) / 2]); at = (at - 1) / 2) {
                int64_t u = heap[at];
                heap[at] = heap[(at - 1) / 2], heap[(at - 1) / 2] = u;
            }
        } else if (ranks_below(score, heap[0], t)) {
            heap[0] = t;
            heap_down(heap, n, 0, score);
        }
    }
    int64_t count = sparse_tiles_add_range(out, 0, w_lo, w_hi);
    for (int64_t e = 0; e < n; e++)
        count = sparse_tiles_add_range(out, count, c_lo + heap[e], c_lo + heap[e] + 1);
    return count;
}

static void topk_row_keys(const sparse_plan_t *s, int64_t i, int64_t lo[2], int64_t hi[2]) {
    attn_vis_t v = problem_vis(s->p);
    mask_key_range(&v, i, i, problem_k_span(s->p), s->p->n_k, &lo[0], &hi[0]);
    lo[1] = hi[1] = 0;
}

static size_t summary_bytes(const attn_problem_t *p) {
    size_t n_kt = ((size_t)p->n_k + (size_t)tile_block_k(p) - 1) / (size_t)tile_block_k(p);
    return attn_size_mul(attn_size_mul((size_t)(p->batch * p->kv_heads), n_kt), 2 * (size_t)p->head_dim * sizeof(float));
}

static size_t topk_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    return attn_size_add(summary_bytes(p), sparse_workspace_bytes(p, x, topk_scratch(p)));
}

/* The summaries of the K tiles some query can see into sum (buf: summary_bytes, caller frees). */
static char *summarise(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, topk_summary_t *sum,
                       attn_err_t *err) {
    *sum = (topk_summary_t){.n_kt = (p->n_k + tile_block_k(p) - 1) / tile_block_k(p)};
    size_t half = summary_bytes(p) / 2;
    char *buf = attn_alloc(2 * half, err, "topk_blocks key tile summaries");
    if (!buf)
        return NULL;
    sum->mid = (float *)buf, sum->half = (float *)(buf + half);
    /* a window mask (or a short query run) sees a band of K: the rest is never scored */
    attn_span_t qs = problem_q_span(p);
    int64_t lo, hi, t1;
    attn_vis_t v = problem_vis(p);
    mask_key_range(&v, qs.start, qs.start + qs.stride * (p->n_q - 1), problem_k_span(p), p->n_k, &lo, &hi);
    summary_job_t sj = {.p = p, .io = io, .sum = sum};
    sparse_tiles_of(lo, hi, tile_block_k(p), &sj.t0, &t1);
    sj.nt = t1 - sj.t0;
    if (sj.nt > 0)
        parallel_for(threads_resolve(x->threads), p->batch * p->kv_heads * sj.nt, summary_item, &sj);
    return buf;
}

/* The sparse engine's plan over a summary (summarise). */
static sparse_plan_t topk_plan(const attn_problem_t *p, const attn_exec_t *x, topk_summary_t *sum) {
    return (sparse_plan_t){.p = p, .x = x, .ctx = sum, .scratch_bytes = topk_scratch(p), .tiles = topk_tiles,
                           .row_keys = topk_row_keys};
}

static int topk_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                        attn_err_t *err) {
    (void)self;
    topk_summary_t sum;
    char *buf = summarise(p, x, io, &sum, err);
    if (!buf)
        return ATTN_ERUNTIME;
    sparse_plan_t s = topk_plan(p, x, &sum);
    int rc = sparse_attend_f32(&s, io, io->keys_visited, err);
    attn_free(buf);
    ATTN_TRY(rc);
    problem_finish_rows(ATTN_F32, io->o, io->lse, problem_numel_lse(p), p->head_dim);
    return ATTN_OK;
}

int topk_blocks_lists(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, int64_t *counts,
                      int64_t *lists, attn_err_t *err) {
    topk_summary_t sum;
    char *buf = summarise(p, x, io, &sum, err);
    if (!buf)
        return ATTN_ERUNTIME;
    sparse_plan_t s = topk_plan(p, x, &sum);
    int rc = sparse_lists(&s, io, counts, lists, err);
    attn_free(buf);
    return rc;
}

const attn_backend_t backend_cpu_topk_blocks = {
    .name = "topk_blocks",
    .device = "cpu",
    .description = "approximate: per Q tile the --topk K tiles by a min/max key bound plus the --window; f32",
    .supports = sparse_supports,
    .forward = topk_forward,
    .workspace_bytes = topk_workspace,
    .approximate = 1,
};
