/* tile_engine.c — see tile_engine.h. A tile's compute is the fused kernel of tile_kernel.h
 * where the CPU has one (AVX-512), else two single-threaded CBLAS sgemm calls around the
 * online softmax; the tiles visited and the keys each row sees are decided here either way.
 * The parallelism is ours, across batch × heads × query tiles, heaviest causal tiles first. */
#include "impls/cpu/tile_engine.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "core/backend.h"
#include "core/threads.h"
#include "impls/cpu/softmax.h"
#include "impls/cpu/tile_kernel.h"

typedef struct {
    float *S, *m, *l, *alpha; /* the sgemm path's */
    tile_kernel_ws_t k;       /* the fused kernel's */
} tile_ws_t;

typedef struct {
    const attn_problem_t *p;
    attn_vis_t vis;
    attn_span_t qs, ks;
    int64_t n_q, n_k, n_qt;
    int bq, bk;
    tile_io_t io;
    tile_walk_t walk;
    float c; /* scale · log2(e) */
    softmax_tile_fn softmax;
    const tile_kernel_t *kern; /* NULL: the sgemm path */
    tile_ws_t *ws;
    atomic_llong computed, skipped;
} tile_job_t;

/* The fused kernel, unless impl asks for sgemm or the call has fewer query rows than the kernel
 * fills its vector lanes with (a decode row would use 1 lane of 16: sgemm is faster there). */
static const tile_kernel_t *impl_kernel(tile_impl_t impl, int64_t n_q) {
    const tile_kernel_t *k = impl == TILE_IMPL_BLAS ? NULL : tile_kernel_select();
    return k && n_q >= k->min_rows ? k : NULL;
}

static int block_q_of(const tile_kernel_t *k, const attn_problem_t *p) {
    return p->block_q > 0 ? p->block_q : k ? k->default_bq : TILE_DEFAULT_BQ;
}
static int block_k_of(const tile_kernel_t *k, const attn_problem_t *p) {
    return p->block_k > 0 ? p->block_k : k ? k->default_bk : TILE_DEFAULT_BK;
}

int tile_block_q_with(tile_impl_t impl, const attn_problem_t *p) { return block_q_of(impl_kernel(impl, p->n_q), p); }
int tile_block_k_with(tile_impl_t impl, const attn_problem_t *p) { return block_k_of(impl_kernel(impl, p->n_q), p); }
int tile_block_q(const attn_problem_t *p) { return tile_block_q_with(TILE_IMPL_AUTO, p); }
int tile_block_k(const attn_problem_t *p) { return tile_block_k_with(TILE_IMPL_AUTO, p); }
const char *tile_impl_name(tile_impl_t impl) {
    const tile_kernel_t *k = impl_kernel(impl, INT64_MAX);
    return k ? k->name : "blas";
}

static int64_t pos_at(attn_span_t s, int64_t r) { return s.start + s.stride * r; }

/* Sets the scores a partially visible tile's mask hides to −∞, row by row. */
static void mask_tile(const tile_job_t *j, float *S, int64_t r0, int rows, int64_t j0, int cols) {
    for (int r = 0; r < rows; r++) {
        int64_t i = pos_at(j->qs, r0 + r), lo, hi;
        mask_key_range(&j->vis, i, i, j->ks, j->n_k, &lo, &hi);
        float *s = S + (size_t)r * j->bk;
        for (int col = 0; col < cols; col++)
            if (j0 + col < lo || j0 + col >= hi)
                s[col] = -INFINITY;
    }
}


/* O += P·V of a partially masked tile whose V holds a non-finite value: only the keys each
 * row sees, since a masked key's weight 0 times ∞ or NaN would be NaN in the GEMM, and a row
 * must not depend on a key it does not see (docs/nonfinite.md). Rare, so plain loops. */
static void pv_visible(const tile_job_t *j, const float *S, const float *V, float *O, int64_t r0, int rows, int64_t j0,
                       int cols) {
    int64_t d = j->p->head_dim;
    for (int r = 0; r < rows; r++) {
        int64_t i = pos_at(j->qs, r0 + r), lo, hi;
        mask_key_range(&j->vis, i, i, j->ks, j->n_k, &lo, &hi);
        for (int col = 0; col < cols; col++)
            if (j0 + col >= lo && j0 + col < hi)
                for (int64_t c = 0; c < d; c++)
                    O[r * d + c] += S[(size_t)r * j->bk + col] * V[col * d + c];
    }
}

/* Set by the thread that calls tile_attend_f32; only that thread (worker 0) calls it. */
static _Thread_local void (*progress_fn)(void *);
static _Thread_local void *progress_arg;

void tile_set_progress(void (*fn)(void *arg), void *arg) {
    progress_fn = fn;
    progress_arg = arg;
}

/* The K tiles kt_first .. kt_end−1 of one Q tile through the fused kernel: the same skips
 * and partial-tile rule as the sgemm path below, with each row's visible keys of a partial tile
 * handed to the kernel as a range instead of −∞ written into S. */
static void tile_fused(tile_job_t *j, tile_ws_t *ws, const float *Q, const float *K, const float *V, float *O,
                       float *LSE, int64_t r0, int rows, int64_t lo, int64_t hi, int64_t kt_first, int64_t kt_end,
                       int64_t lo_last, int64_t hi_first) {
    const tile_kernel_t *kern = j->kern;
    tile_kernel_ws_t *w = &ws->k;
    int64_t d = j->p->head_dim, computed = 0, skipped = 0;
    /* Each row's visible keys, looked up once per Q tile (two binary searches a row under
     * documents) rather than once per partial K tile: with short documents most computed tiles
     * are partial (striped at n = 32768: 3.38 → 3.23 ns per tile element; docs/packed-documents.md). */
    enum { ROWS_KEPT = 256 };
    int64_t row_lo[ROWS_KEPT], row_hi[ROWS_KEPT];
    int looked_up = 0; /* row_lo / row_hi hold this Q tile's rows (when rows ≤ ROWS_KEPT) */
    kern->begin(w, Q, rows);
    for (int64_t kt = kt_first; kt < kt_end; kt++) {
        int64_t j0 = kt * j->bk;
        int cols = (int)ATTN_MIN((int64_t)j->bk, j->n_k - j0);
        if (j0 + cols <= lo || j0 >= hi) {
            skipped++;
            continue;
        }
        computed++;
        int partial = !(lo_last <= j0 && j0 + cols <= hi_first), visible_only = 0;
        if (partial) {
            for (int r = 0; r < rows; r++) {
                int64_t a, b;
                if (looked_up) {
                    a = row_lo[r], b = row_hi[r];
                } else {
                    int64_t i = pos_at(j->qs, r0 + r);
                    mask_key_range(&j->vis, i, i, j->ks, j->n_k, &a, &b);
                    if (rows <= ROWS_KEPT)
                        row_lo[r] = a, row_hi[r] = b;
                }
                w->lo[r] = (int32_t)ATTN_MIN(ATTN_MAX(a - j0, 0), (int64_t)cols);
                w->hi[r] = (int32_t)ATTN_MIN(ATTN_MAX(b - j0, 0), (int64_t)cols);
            }
            looked_up = rows <= ROWS_KEPT;
            visible_only = !tile_all_finite(V + j0 * d, (size_t)cols * (size_t)d);
        }
        kern->block(w, K + j0 * d, V + j0 * d, cols, partial, visible_only);
    }
    kern->end(w, O, LSE);
    atomic_fetch_add(&j->computed, computed);
    atomic_fetch_add(&j->skipped, skipped);
}

static void tile_item(void *ctx, int64_t item, int worker) {
    tile_job_t *j = ctx;
    if (worker == 0 && progress_fn)
        progress_fn(progress_arg);
    const attn_problem_t *p = j->p;
    int64_t d = p->head_dim, bh_count = p->batch * p->heads;
    /* Last query tiles first: under a causal mask they carry the most key tiles. */
    int64_t bh = item % bh_count, qt = j->n_qt - 1 - item / bh_count;
    int64_t b = bh / p->heads, h = bh % p->heads, kvh = h / (p->heads / p->kv_heads);
    int64_t r0 = qt * j->bq;
    int rows = (int)ATTN_MIN((int64_t)j->bq, j->n_q - r0);
    const tile_io_t *io = &j->io;
    const float *Q = io->q + (bh * io->q_rows + r0) * d;                /* (rows, d) */
    const float *K = io->k + (b * p->kv_heads + kvh) * io->k_rows * d;  /* (n_k, d) */
    const float *V = io->v + (b * p->kv_heads + kvh) * io->k_rows * d;  /* (n_k, d) */
    float *O = io->o + (bh * io->q_rows + r0) * d;                      /* (rows, d), accumulator */
    float *LSE = io->lse + bh * io->q_rows + r0;                        /* (rows) */
    tile_ws_t *ws = &j->ws[worker];

    int64_t i_lo = pos_at(j->qs, r0), i_hi = pos_at(j->qs, r0 + rows - 1), lo, hi;
    mask_key_range(&j->vis, i_lo, i_hi, j->ks, j->n_k, &lo, &hi);
    int64_t n_kt = (j->n_k + j->bk - 1) / j->bk;
    int64_t kt_first = 0, kt_end = n_kt;
    if (j->walk == TILE_BAND_ONLY) {
        kt_first = lo / j->bk;
        kt_end = hi > lo ? (hi - 1) / j->bk + 1 : kt_first;
    }
    /* Per-row visibility is monotone in the position, so the first row's range ends earliest
     * and the last row's begins latest: a tile inside both is visible to every row. */
    int64_t lo_last, hi_first, unused;
    mask_key_range(&j->vis, i_hi, i_hi, j->ks, j->n_k, &lo_last, &unused);
    mask_key_range(&j->vis, i_lo, i_lo, j->ks, j->n_k, &unused, &hi_first);

    if (j->kern) {
        tile_fused(j, ws, Q, K, V, O, LSE, r0, rows, lo, hi, kt_first, kt_end, lo_last, hi_first);
        atomic_fetch_add(&j->skipped, n_kt - (kt_end - kt_first));
        return;
    }
    memset(O, 0, sizeof(float) * (size_t)(rows * d));
    for (int r = 0; r < rows; r++) {
        ws->m[r] = -INFINITY;
        ws->l[r] = 0.0f;
    }
    int64_t computed = 0, skipped = 0;
    for (int64_t kt = kt_first; kt < kt_end; kt++) {
        int64_t j0 = kt * j->bk;
        int cols = (int)ATTN_MIN((int64_t)j->bk, j->n_k - j0);
        if (j0 + cols <= lo || j0 >= hi) {
            skipped++;
            continue;
        }
        computed++;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, (int)d, 1.0f, Q, (int)d, K + j0 * d,
                    (int)d, 0.0f, ws->S, j->bk);
        int partial = !(lo_last <= j0 && j0 + cols <= hi_first);
        if (partial)
            mask_tile(j, ws->S, r0, rows, j0, cols);
        j->softmax(ws->S, rows, cols, j->bk, j->c, ws->m, ws->l, ws->alpha);
        for (int r = 0; r < rows; r++)
            if (ws->alpha[r] != 1.0f)
                cblas_sscal((int)d, ws->alpha[r], O + r * d, 1);
        if (partial && !tile_all_finite(V + j0 * d, (size_t)cols * (size_t)d))
            pv_visible(j, ws->S, V + j0 * d, O, r0, rows, j0, cols);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)d, cols, 1.0f, ws->S, j->bk,
                        V + j0 * d, (int)d, 1.0f, O, (int)d);
    }
    for (int r = 0; r < rows; r++) {
        if (ws->l[r] == 0.0f) { /* nothing visible in this piece, or only −∞ scores: its share is 0 */
            memset(O + r * d, 0, sizeof(float) * (size_t)d);
            LSE[r] = -INFINITY;
            continue;
        }
        if (ws->l[r] != ws->l[r]) { /* a NaN score: scaling by 1/NaN would leave a zero O at 0 */
            for (int64_t c = 0; c < d; c++)
                O[r * d + c] = ws->l[r];
            LSE[r] = ws->l[r];
            continue;
        }
        cblas_sscal((int)d, 1.0f / ws->l[r], O + r * d, 1);
        LSE[r] = (float)((double)ws->m[r] * j->c * M_LN2 + log((double)ws->l[r]));
    }
    atomic_fetch_add(&j->computed, computed);
    atomic_fetch_add(&j->skipped, skipped + (n_kt - (kt_end - kt_first)));
}

static int tile_workers(const tile_kernel_t *k, const attn_problem_t *p, int threads, int64_t n_q) {
    int bq = block_q_of(k, p);
    int64_t items = p->batch * p->heads * ((n_q + bq - 1) / bq);
    return (int)ATTN_MIN((int64_t)threads_resolve(threads), ATTN_MAX(items, 1));
}

/* Floats of one worker's workspace: the kernel's, or one S tile and three row vectors. */
static size_t worker_floats(const tile_kernel_t *k, int bq, int bk, int64_t d) {
    return k ? k->ws_floats(bq, bk, (int)d) : (size_t)bq * ((size_t)bk + 3);
}

size_t tile_workspace_bytes_with(tile_impl_t impl, const attn_problem_t *p, int threads, int64_t n_q) {
    const tile_kernel_t *k = impl_kernel(impl, n_q);
    size_t per = worker_floats(k, block_q_of(k, p), block_k_of(k, p), p->head_dim) * sizeof(float);
    return attn_size_mul((size_t)tile_workers(k, p, threads, n_q), per);
}

size_t tile_workspace_bytes(const attn_problem_t *p, int threads, int64_t n_q) {
    return tile_workspace_bytes_with(TILE_IMPL_AUTO, p, threads, n_q);
}

int tile_attend_f32_with(tile_impl_t impl, const attn_problem_t *p, int threads, attn_span_t qs, int64_t n_q,
                         attn_span_t ks, int64_t n_k, const tile_io_t *io, tile_walk_t walk, tile_stats_t *stats,
                         attn_err_t *err) {
    const tile_kernel_t *kern = impl_kernel(impl, n_q);
    int workers = tile_workers(kern, p, threads, n_q);
    tile_job_t j = {.p = p, .vis = problem_vis(p), .qs = qs, .ks = ks, .n_q = n_q, .n_k = n_k, .bq = block_q_of(kern, p),
                    .bk = block_k_of(kern, p), .io = *io, .walk = walk,
                    .c = (float)(problem_scale(p) * M_LOG2E), .softmax = softmax_tile_select(), .kern = kern};
    j.n_qt = (n_q + j.bq - 1) / j.bq;
    atomic_init(&j.computed, 0);
    atomic_init(&j.skipped, 0);
    size_t per = worker_floats(j.kern, j.bq, j.bk, p->head_dim);
    float *block = attn_alloc(per * (size_t)workers * sizeof(float), err, "blockwise tile workspace");
    if (!block)
        return ATTN_ERUNTIME;
    tile_ws_t ws[workers];
    for (int w = 0; w < workers; w++) {
        float *base = block + per * (size_t)w;
        if (j.kern) {
            ws[w] = (tile_ws_t){0};
            j.kern->init(&ws[w].k, base, j.bq, j.bk, (int)p->head_dim, j.c);
            continue;
        }
        ws[w] = (tile_ws_t){.S = base, .m = base + (size_t)j.bq * j.bk, .l = base + (size_t)j.bq * (j.bk + 1),
                            .alpha = base + (size_t)j.bq * (j.bk + 2)};
    }
    j.ws = ws;
    parallel_for(workers, p->batch * p->heads * j.n_qt, tile_item, &j);
    attn_free(block);
    if (stats) {
        stats->tiles_computed = atomic_load(&j.computed);
        stats->tiles_skipped = atomic_load(&j.skipped);
    }
    return ATTN_OK;
}

int tile_attend_f32(const attn_problem_t *p, int threads, attn_span_t qs, int64_t n_q, attn_span_t ks, int64_t n_k,
                    const tile_io_t *io, tile_walk_t walk, tile_stats_t *stats, attn_err_t *err) {
    return tile_attend_f32_with(TILE_IMPL_AUTO, p, threads, qs, n_q, ks, n_k, io, walk, stats, err);
}

int tile_backend_supports_dtype(const attn_backend_t *self, const attn_problem_t *p, char *reason, size_t len) {
    if (p->dtype != ATTN_F32) {
        snprintf(reason, len, "%s runs in float32 only (got %s)", self->name, dtype_name(p->dtype));
        return 0;
    }
    return 1;
}

size_t tile_backend_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    return tile_workspace_bytes(p, x->threads, p->n_q);
}
