/* sparse_engine.c — see sparse_engine.h. The loop is tile_engine.c's (single-threaded sgemm per
 * tile, our threads across batch × heads × Q tiles), walking the plan's tile list; per row the
 * keys outside its kept ranges are masked to −∞, so a row depends on no key it does not keep. */
#include "impls/cpu/sparse_engine.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "core/backend.h"
#include "core/threads.h"
#include "impls/cpu/softmax.h"
#include "impls/cpu/tile_engine.h"

typedef struct {
    float *S, *m, *l, *alpha;
    int64_t *lo, *hi; /* (rows, 2) kept ranges of each row of the Q tile */
    int64_t *tiles;   /* n_kt */
    void *scratch;
} sparse_ws_t;

typedef struct {
    const sparse_plan_t *s;
    const attn_io_t *io;
    int bq, bk;
    int64_t n_qt, n_kt;
    float c;
    softmax_tile_fn softmax;
    sparse_ws_t *ws;
    atomic_llong visited;
} sparse_job_t;

int64_t sparse_tiles_add_range(int64_t *list, int64_t n, int64_t t_lo, int64_t t_hi) {
    for (int64_t t = t_lo; t < t_hi; t++) {
        int64_t at = n;
        while (at > 0 && list[at - 1] > t)
            at--;
        if (at > 0 && list[at - 1] == t)
            continue;
        memmove(list + at + 1, list + at, (size_t)(n - at) * sizeof *list);
        list[at] = t;
        n++;
    }
    return n;
}

void sparse_tiles_of(int64_t lo, int64_t hi, int bk, int64_t *t_lo, int64_t *t_hi) {
    *t_lo = lo / bk;
    *t_hi = hi > lo ? (hi - 1) / bk + 1 : *t_lo;
}

/* Keys of [j0, j0 + cols) row r keeps. */
static int64_t kept_in(const sparse_ws_t *w, int r, int64_t j0, int cols) {
    int64_t n = 0;
    for (int k = 0; k < 2; k++) {
        int64_t lo = w->lo[2 * r + k], hi = w->hi[2 * r + k];
        sparse_range_and(&lo, &hi, j0, j0 + cols);
        n += hi > lo ? hi - lo : 0;
    }
    return n;
}

static int keeps(const sparse_ws_t *w, int r, int64_t j) {
    return (j >= w->lo[2 * r] && j < w->hi[2 * r]) || (j >= w->lo[2 * r + 1] && j < w->hi[2 * r + 1]);
}

static void sparse_item(void *ctx, int64_t item, int worker) {
    sparse_job_t *j = ctx;
    const sparse_plan_t *s = j->s;
    const attn_problem_t *p = s->p;
    int64_t d = p->head_dim, bh_count = p->batch * p->heads;
    int64_t bh = item % bh_count, qt = j->n_qt - 1 - item / bh_count; /* heavy causal tiles first */
    int64_t b = bh / p->heads, h = bh % p->heads, kvh = h / (p->heads / p->kv_heads);
    int64_t r0 = qt * j->bq;
    int rows = (int)ATTN_MIN((int64_t)j->bq, p->n_q - r0);
    const float *Q = (const float *)j->io->q + (bh * p->n_q + r0) * d;          /* (rows, d) */
    const float *K = (const float *)j->io->k + (b * p->kv_heads + kvh) * p->n_k * d; /* (n_k, d) */
    const float *V = (const float *)j->io->v + (b * p->kv_heads + kvh) * p->n_k * d; /* (n_k, d) */
    float *O = (float *)j->io->o + (bh * p->n_q + r0) * d;                      /* (rows, d) */
    float *LSE = (float *)j->io->lse + bh * p->n_q + r0;                        /* (rows) */
    sparse_ws_t *w = &j->ws[worker];
    attn_span_t qs = problem_q_span(p);

    for (int r = 0; r < rows; r++) {
        s->row_keys(s, qs.start + qs.stride * (r0 + r), w->lo + 2 * r, w->hi + 2 * r);
        w->m[r] = -INFINITY;
        w->l[r] = 0.0f;
    }
    memset(O, 0, sizeof(float) * (size_t)(rows * d));
    int64_t n_tiles = s->tiles(s, bh, r0, rows, Q, w->scratch, w->tiles);
    int64_t visited = 0;
    for (int64_t t = 0; t < n_tiles; t++) {
        int64_t j0 = w->tiles[t] * j->bk;
        int cols = (int)ATTN_MIN((int64_t)j->bk, p->n_k - j0);
        int64_t kept = 0;
        int partial = 0;
        for (int r = 0; r < rows; r++) {
            int64_t k = kept_in(w, r, j0, cols);
            kept += k;
            partial |= k != cols;
        }
        if (kept == 0)
            continue;
        visited += kept;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, (int)d, 1.0f, Q, (int)d, K + j0 * d, (int)d,
                    0.0f, w->S, j->bk);
        if (partial)
            for (int r = 0; r < rows; r++)
                for (int col = 0; col < cols; col++)
                    if (!keeps(w, r, j0 + col))
                        w->S[(size_t)r * j->bk + col] = -INFINITY;
        j->softmax(w->S, rows, cols, j->bk, j->c, w->m, w->l, w->alpha);
        for (int r = 0; r < rows; r++)
            if (w->alpha[r] != 1.0f)
                cblas_sscal((int)d, w->alpha[r], O + r * d, 1);
        if (partial && !tile_all_finite(V + j0 * d, (size_t)cols * (size_t)d)) {
            /* a dropped key's weight 0 times ∞ or NaN would be NaN in the GEMM (docs/nonfinite.md) */
            for (int r = 0; r < rows; r++)
                for (int col = 0; col < cols; col++)
                    if (keeps(w, r, j0 + col))
                        for (int64_t c = 0; c < d; c++)
                            O[r * d + c] += w->S[(size_t)r * j->bk + col] * V[(j0 + col) * d + c];
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)d, cols, 1.0f, w->S, j->bk, V + j0 * d,
                        (int)d, 1.0f, O, (int)d);
        }
    }
    for (int r = 0; r < rows; r++) {
        if (w->l[r] == 0.0f) { /* no key kept, or only −∞ scores */
            memset(O + r * d, 0, sizeof(float) * (size_t)d);
            LSE[r] = -INFINITY;
        } else if (w->l[r] != w->l[r]) { /* a NaN score: the row is NaN */
            for (int64_t c = 0; c < d; c++)
                O[r * d + c] = w->l[r];
            LSE[r] = w->l[r];
        } else {
            cblas_sscal((int)d, 1.0f / w->l[r], O + r * d, 1);
            LSE[r] = (float)((double)w->m[r] * j->c * M_LN2 + log((double)w->l[r]));
        }
    }
    atomic_fetch_add(&j->visited, visited);
}

static int sparse_workers(const attn_problem_t *p, const attn_exec_t *x) {
    int bq = tile_block_q(p);
    int64_t items = p->batch * p->heads * ((p->n_q + bq - 1) / bq);
    return (int)ATTN_MIN((int64_t)threads_resolve(x->threads), ATTN_MAX(items, 1));
}

/* Bytes of one worker's workspace, rounded to 8 so the next worker's int64 arrays stay aligned. */
static size_t per_worker(const attn_problem_t *p, size_t scratch_bytes) {
    size_t bq = (size_t)tile_block_q(p), bk = (size_t)tile_block_k(p);
    size_t n_kt = ((size_t)p->n_k + bk - 1) / bk;
    size_t f = (bq * (bk + 3) * sizeof(float) + 7) / 8 * 8;
    return f + 4 * bq * sizeof(int64_t) + n_kt * sizeof(int64_t) + (scratch_bytes + 7) / 8 * 8;
}

size_t sparse_workspace_bytes(const attn_problem_t *p, const attn_exec_t *x, size_t scratch_bytes) {
    return attn_size_mul((size_t)sparse_workers(p, x), per_worker(p, scratch_bytes));
}

int sparse_attend_f32(const sparse_plan_t *s, const attn_io_t *io, double *visited, attn_err_t *err) {
    const attn_problem_t *p = s->p;
    int workers = sparse_workers(p, s->x);
    sparse_job_t j = {.s = s, .io = io, .bq = tile_block_q(p), .bk = tile_block_k(p),
                      .c = (float)(problem_scale(p) * M_LOG2E), .softmax = softmax_tile_select()};
    j.n_qt = (p->n_q + j.bq - 1) / j.bq;
    j.n_kt = (p->n_k + j.bk - 1) / j.bk;
    atomic_init(&j.visited, 0);
    size_t per = per_worker(p, s->scratch_bytes);
    char *block = attn_alloc(attn_size_mul(per, (size_t)workers), err, "sparse tile workspace");
    if (!block)
        return ATTN_ERUNTIME;
    sparse_ws_t ws[workers];
    size_t bq = (size_t)j.bq, fl = (bq * ((size_t)j.bk + 3) * sizeof(float) + 7) / 8 * 8;
    for (int w = 0; w < workers; w++) {
        char *base = block + per * (size_t)w;
        float *f = (float *)base;
        int64_t *i = (int64_t *)(base + fl);
        ws[w] = (sparse_ws_t){.S = f, .m = f + bq * j.bk, .l = f + bq * (j.bk + 1), .alpha = f + bq * (j.bk + 2),
                              .lo = i, .hi = i + 2 * bq, .tiles = i + 4 * bq, .scratch = i + 4 * bq + j.n_kt};
    }
    j.ws = ws;
    parallel_for(workers, p->batch * p->heads * j.n_qt, sparse_item, &j);
    attn_free(block);
    if (visited)
        *visited = (double)atomic_load(&j.visited);
    return ATTN_OK;
}

int sparse_lists(const sparse_plan_t *s, const attn_io_t *io, int64_t *counts, int64_t *lists, attn_err_t *err) {
    const attn_problem_t *p = s->p;
    int bq = tile_block_q(p), bk = tile_block_k(p);
    int64_t n_qt = (p->n_q + bq - 1) / bq, n_kt = (p->n_k + bk - 1) / bk, d = p->head_dim;
    void *scratch = attn_alloc(s->scratch_bytes + 8, err, "sparse tile lists scratch");
    if (!scratch)
        return ATTN_ERUNTIME;
    for (int64_t bh = 0; bh < p->batch * p->heads; bh++)
        for (int64_t qt = 0; qt < n_qt; qt++) {
            int64_t r0 = qt * bq, at = bh * n_qt + qt;
            int rows = (int)ATTN_MIN((int64_t)bq, p->n_q - r0);
            const float *Q = (const float *)io->q + (bh * p->n_q + r0) * d;
            counts[at] = s->tiles(s, bh, r0, rows, Q, scratch, lists + at * n_kt);
        }
    attn_free(scratch);
    return ATTN_OK;
}

int sparse_supports_rule(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                         size_t len) {
    if (x->approx_window < 1) {
        snprintf(reason, len, "%s needs a local window ≥ 1 (--window W) so that every row keeps itself", self->name);
        return 0;
    }
    if (p->doc && p->n_docs > 1) { /* which keys a document's sinks and blocks are is not defined yet */
        snprintf(reason, len, "%s declines packed documents (--doc-lens/--docs/--cu-seqlens)", self->name);
        return 0;
    }
    return 1;
}

int sparse_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                    size_t len) {
    return sparse_supports_rule(self, p, x, reason, len) && tile_backend_supports_dtype(self, p, reason, len) && backend_check_memory(self, p, x, reason, len);
}
