/* decode.c — the CPU run of the decode split plan (decode_plan.h): one work item per (batch, kv
 * head, packed query tile, key chunk) writes a partial O and LSE, then every row merges its
 * partials by the log-sum-exp rule. blockwise takes this path for short queries (decode.h). */
#include "impls/cpu/decode.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "core/threads.h"
#include "impls/cpu/softmax.h"

typedef struct {
    const attn_problem_t *p;
    const decode_plan_t *pl;
    attn_span_t qs, ks;
    tile_io_t io;
    float *o_part, *lse_part; /* (B·H_kv, split, rows, d), (B·H_kv, split, rows) */
    float *ws;                /* per worker: Q, O (tile_rows × d), S (tile_rows × tile_keys), m, l, alpha */
    size_t ws_per;
    float c;
    softmax_tile_fn softmax;
} decode_job_t;

static size_t ws_floats(const decode_plan_t *pl, int64_t d) {
    return (size_t)pl->tile_rows * (size_t)(2 * d + pl->tile_keys + 3);
}

static void decode_item(void *ctx, int64_t item, int worker) {
    decode_job_t *j = ctx;
    const attn_problem_t *p = j->p;
    const attn_vis_t vis = problem_vis(p);
    const decode_plan_t *pl = j->pl;
    int64_t d = p->head_dim, bk = pl->tile_keys;
    int s = (int)(item % pl->split), t = (int)(item / pl->split % pl->q_tiles);
    int64_t bg = item / pl->split / pl->q_tiles, b = bg / pl->kv_heads, g = bg % pl->kv_heads;
    int64_t r0 = (int64_t)t * pl->tile_rows;
    int rows = (int)ATTN_MIN((int64_t)pl->tile_rows, pl->rows - r0);
    float *Q = j->ws + j->ws_per * (size_t)worker, *O = Q + (size_t)pl->tile_rows * d;
    float *S = O + (size_t)pl->tile_rows * d, *m = S + (size_t)pl->tile_rows * bk, *l = m + pl->tile_rows,
          *alpha = l + pl->tile_rows;
    const float *K = j->io.k + (b * p->kv_heads + g) * j->io.k_rows * d; /* (n_k, d) */
    const float *V = j->io.v + (b * p->kv_heads + g) * j->io.k_rows * d;

    int64_t pos[rows], lo[rows], hi[rows]; /* each packed row's global position and visible keys */
    for (int r = 0; r < rows; r++) {
        memcpy(Q + r * d, j->io.q + decode_out_row(pl, b, g, r0 + r) * d, sizeof(float) * (size_t)d);
        pos[r] = j->qs.start + j->qs.stride * decode_qrow_of(pl, r0 + r);
        mask_key_range(&vis, pos[r], pos[r], j->ks, pl->n_k, &lo[r], &hi[r]);
        m[r] = -INFINITY, l[r] = 0.0f;
    }
    memset(O, 0, sizeof(float) * (size_t)(rows * d));
    int64_t c_lo, c_hi;
    decode_chunk(pl, t, s, &c_lo, &c_hi);
    for (int64_t j0 = c_lo; j0 < c_hi; j0 += bk) {
        int cols = (int)ATTN_MIN(bk, c_hi - j0);
        int partial = !(pl->full_lo[t] <= j0 && j0 + cols <= pl->full_hi[t]); /* as the GPU kernel decides */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, (int)d, 1.0f, Q, (int)d, K + j0 * d, (int)d,
                    0.0f, S, (int)bk);
        for (int r = 0; partial && r < rows; r++)
            for (int col = 0; col < cols; col++)
                if (!mask_visible(&vis, pos[r], j->ks.start + j->ks.stride * (j0 + col)))
                    S[r * bk + col] = -INFINITY;
        j->softmax(S, rows, cols, (int)bk, j->c, m, l, alpha);
        for (int r = 0; r < rows; r++)
            if (alpha[r] != 1.0f)
                cblas_sscal((int)d, alpha[r], O + r * d, 1);
        if (partial && !tile_all_finite(V + j0 * d, (size_t)cols * (size_t)d)) {
            /* a hidden key's weight 0 times a non-finite V would be NaN (docs/nonfinite.md) */
            for (int r = 0; r < rows; r++)
                for (int col = 0; col < cols; col++)
                    if (lo[r] <= j0 + col && j0 + col < hi[r])
                        for (int64_t c = 0; c < d; c++)
                            O[r * d + c] += S[r * bk + col] * V[(j0 + col) * d + c];
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)d, cols, 1.0f, S, (int)bk, V + j0 * d,
                        (int)d, 1.0f, O, (int)d);
        }
    }
    for (int r = 0; r < rows; r++) {
        int64_t at = decode_part_row(pl, b, g, s, r0 + r);
        float *op = j->o_part + at * d;
        if (l[r] == 0.0f || l[r] != l[r]) { /* nothing seen here (share 0), or a NaN score (must reach O) */
            for (int64_t c = 0; c < d; c++)
                op[c] = l[r] == 0.0f ? 0.0f : l[r];
            j->lse_part[at] = l[r] == 0.0f ? -INFINITY : l[r];
            continue;
        }
        for (int64_t c = 0; c < d; c++)
            op[c] = O[r * d + c] / l[r];
        j->lse_part[at] = (float)((double)m[r] * j->c * M_LN2 + log((double)l[r]));
    }
}

/* One row per item: O = Σ_s w_s · O_s, LSE = the merged one (decode_merge_lse). */
static void merge_item(void *ctx, int64_t item, int worker) {
    (void)worker;
    decode_job_t *j = ctx;
    const decode_plan_t *pl = j->pl;
    int64_t d = j->p->head_dim, r = item % pl->rows, bg = item / pl->rows, b = bg / pl->kv_heads, g = bg % pl->kv_heads;
    int64_t first = decode_part_row(pl, b, g, 0, r), stride = pl->rows;
    float mx, sum, *o = j->io.o + decode_out_row(pl, b, g, r) * d;
    j->io.lse[decode_out_row(pl, b, g, r)] = decode_merge_lse(j->lse_part + first, stride, pl->split, &mx, &sum);
    memset(o, 0, sizeof(float) * (size_t)d);
    for (int s = 0; s < pl->split; s++) {
        float w = decode_merge_weight(j->lse_part[first + s * stride], mx, sum);
        if (w == 0.0f)
            continue; /* a part that saw nothing: skipped, so a 0 weight never meets a non-finite O */
        const float *op = j->o_part + (first + s * stride) * d;
        for (int64_t c = 0; c < d; c++)
            o[c] += w * op[c];
    }
}

int decode_attend_f32(const attn_problem_t *p, int threads, const decode_plan_t *pl, attn_span_t qs, attn_span_t ks,
                      const tile_io_t *io, attn_err_t *err) {
    int64_t d = p->head_dim, slabs = p->batch * p->kv_heads;
    int64_t items = slabs * pl->q_tiles * pl->split;
    int workers = (int)ATTN_MIN((int64_t)threads_resolve(threads), items);
    size_t parts = (size_t)(slabs * pl->split * pl->rows);
    decode_job_t j = {.p = p, .pl = pl, .qs = qs, .ks = ks, .io = *io, .ws_per = ws_floats(pl, d),
                      .c = (float)(problem_scale(p) * M_LOG2E), .softmax = softmax_tile_select()};
    size_t floats = attn_size_add(attn_size_mul(parts, (size_t)d + 1), attn_size_mul(j.ws_per, (size_t)workers));
    float *block = attn_alloc(attn_size_mul(floats, sizeof(float)), err, "decode partials and workspace");
    if (!block)
        return ATTN_ERUNTIME;
    j.o_part = block, j.lse_part = block + parts * (size_t)d, j.ws = j.lse_part + parts;
    parallel_for(workers, items, decode_item, &j);
    parallel_for((int)ATTN_MIN((int64_t)threads_resolve(threads), slabs * pl->rows), slabs * pl->rows, merge_item, &j);
    attn_free(block);
    return ATTN_OK;
}

size_t decode_workspace_bytes(const attn_problem_t *p, int threads, const decode_plan_t *pl) {
    int64_t slabs = p->batch * p->kv_heads, items = slabs * pl->q_tiles * pl->split;
    size_t parts = (size_t)(slabs * pl->split * pl->rows);
    size_t workers = (size_t)ATTN_MIN((int64_t)threads_resolve(threads), items);
    return attn_size_mul(attn_size_add(attn_size_mul(parts, (size_t)p->head_dim + 1),
                                       attn_size_mul(ws_floats(pl, p->head_dim), workers)),
                         sizeof(float));
}

int decode_plan_cpu(const attn_problem_t *p, int threads, decode_plan_t *pl) {
    /* Short queries (n_q ≤ 64), or too few (batch, head, query tile) items to occupy every thread. */
    int64_t items = p->batch * p->heads * ((p->n_q + tile_block_q(p) - 1) / tile_block_q(p));
    int units = threads_resolve(threads);
    if (p->n_q > DECODE_SHORT_Q && items >= units)
        return 0;
    const attn_vis_t vis = problem_vis(p);
    return decode_plan_make(pl, p->batch, p->heads, p->kv_heads, p->n_q, p->n_q, p->n_k, &vis,
                            problem_q_span(p), problem_k_span(p), tile_block_q(p), tile_block_k(p), units, 2, 0);
}
