/* naive.c — the readable specification: materialise S = Q Kᵀ · scale for one (batch, head),
 * mask it, softmax each row, multiply by V. In float64 this is the reference every other
 * backend is checked against. One n_q × n_k score matrix per worker thread. */
#include <math.h>
#include <string.h>

#include "core/backend.h"
#include "impls/cpu/naive.h"
#include "core/threads.h"

typedef struct {
    const attn_problem_t *p;
    attn_span_t qs, ks;
    int64_t n_q, n_k;
    const int64_t *pos; /* naive_attend_rows: row r's global position (else qs) */
    int64_t chunk;      /* rows whose scores are held at once: n_q, or fewer for naive_attend_rows */
    const void *q, *k, *v;
    void *o, *lse;
    void **scratch; /* per worker: S (chunk × n_k) then Kᵀ (d × n_k), element type of p->dtype */
} naive_job_t;

/* The same steps in float and double. The loops run over Kᵀ and over rows of V so that the
 * innermost loop is an axpy the compiler vectorises without reassociating any sum; that keeps
 * the float64 reference fast enough for 4097-token test cases and its rounding plain. */
#define NAIVE_HEAD(T, EXP, LOG)                                                                  \
    static void naive_head_##T(const naive_job_t *j, int64_t bh, T *S, T *Kt) {                 \
        const attn_problem_t *p = j->p;                                                         \
        int64_t d = p->head_dim, nq = j->n_q, nk = j->n_k;                                      \
        int64_t b = bh / p->heads, h = bh % p->heads, kvh = h / (p->heads / p->kv_heads);       \
        const T *Q = (const T *)j->q + bh * nq * d;                    /* (n_q, d) */            \
        const T *K = (const T *)j->k + (b * p->kv_heads + kvh) * nk * d; /* (n_k, d) */          \
        const T *V = (const T *)j->v + (b * p->kv_heads + kvh) * nk * d; /* (n_k, d) */          \
        T *O = (T *)j->o + bh * nq * d;                                /* (n_q, d) */            \
        T *L = (T *)j->lse + bh * nq;                                  /* (n_q) */               \
        T scale = (T)problem_scale(p);                                                          \
        const attn_vis_t vis = problem_vis(p);                                                  \
        for (int64_t r = 0; r < nk; r++)                                                        \
            for (int64_t c = 0; c < d; c++)                                                     \
                Kt[c * nk + r] = K[r * d + c];                                                  \
        for (int64_t r = 0; r < nq; r++) {                                                      \
            T *s = S + (r % j->chunk) * nk; /* each row is finished before the next one */     \
            int64_t i = j->pos ? j->pos[r] : j->qs.start + j->qs.stride * r;                    \
            memset(s, 0, sizeof(T) * (size_t)nk);                                               \
            for (int64_t c = 0; c < d; c++) {                                                   \
                T qc = Q[r * d + c];                                                            \
                const T *kt = Kt + c * nk;                                                      \
                for (int64_t col = 0; col < nk; col++)                                          \
                    s[col] += qc * kt[col];                                                     \
            }                                                                                   \
            T m = -INFINITY;                                                                    \
            for (int64_t col = 0; col < nk; col++) {                                            \
                int64_t jpos = j->ks.start + j->ks.stride * col;                                \
                s[col] = mask_visible(&vis, i, jpos) ? s[col] * scale : -INFINITY;            \
                if (s[col] > m || s[col] != s[col]) /* a NaN score is the max: NaN propagates */ \
                    m = s[col];                                                                 \
            }                                                                                   \
            T *o = O + r * d;                                                                   \
            memset(o, 0, sizeof(T) * (size_t)d);                                                \
            if (m == -INFINITY) { /* no visible key in this piece, or only −∞ scores */        \
                L[r] = -INFINITY;                                                               \
                continue;                                                                       \
            }                                                                                   \
            T l = 0;                                                                            \
            for (int64_t col = 0; col < nk; col++) {                                            \
                s[col] = EXP(s[col] - m);                                                       \
                l += s[col];                                                                    \
            }                                                                                   \
            for (int64_t col = 0; col < nk; col++) { /* masked keys are not seen: 0·∞ is NaN */ \
                if (!mask_visible(&vis, i, j->ks.start + j->ks.stride * col))                  \
                    continue;                                                                   \
                T w = s[col] / l;                                                               \
                const T *vr = V + col * d;                                                      \
                for (int64_t c = 0; c < d; c++)                                                 \
                    o[c] += w * vr[c];                                                          \
            }                                                                                   \
            L[r] = m + LOG(l);                                                                  \
        }                                                                                       \
    }

NAIVE_HEAD(float, expf, logf)
NAIVE_HEAD(double, exp, log)

static void naive_item(void *ctx, int64_t bh, int worker) {
    const naive_job_t *j = ctx;
    size_t s_elems = (size_t)(j->chunk * j->n_k);
    if (j->p->dtype == ATTN_F64) {
        double *S = j->scratch[worker];
        naive_head_double(j, bh, S, S + s_elems);
    } else {
        float *S = j->scratch[worker];
        naive_head_float(j, bh, S, S + s_elems);
    }
}

static int naive_workers(const attn_problem_t *p, int threads) {
    int64_t items = p->batch * p->heads;
    return (int)ATTN_MIN((int64_t)threads_resolve(threads), items);
}

static size_t naive_scratch_bytes(const attn_problem_t *p, int64_t n_q, int64_t n_k) {
    size_t s = attn_size_mul(attn_size_i64(n_q), attn_size_i64(n_k)), kt = attn_size_prod4(p->head_dim, n_k, 1, 1);
    return attn_size_mul(attn_size_add(s, kt), dtype_size(p->dtype));
}

static int naive_run(const attn_problem_t *p, int threads, naive_job_t *job, attn_err_t *err) {
    int workers = naive_workers(p, threads);
    void *scratch[workers];
    job->scratch = scratch;
    int rc = ATTN_OK;
    int got = 0;
    for (; got < workers; got++) {
        scratch[got] = attn_alloc(naive_scratch_bytes(p, job->chunk, job->n_k), err, "naive score matrix");
        if (!scratch[got]) {
            rc = ATTN_ERUNTIME;
            break;
        }
    }
    if (rc == ATTN_OK)
        parallel_for(workers, p->batch * p->heads, naive_item, job);
    for (int w = 0; w < got; w++)
        attn_free(scratch[w]);
    return rc;
}

int naive_attend(const attn_problem_t *p, int threads, attn_span_t qs, int64_t n_q, attn_span_t ks, int64_t n_k,
                 const attn_io_t *io, attn_err_t *err) {
    naive_job_t job = {.p = p, .qs = qs, .ks = ks, .n_q = n_q, .n_k = n_k, .chunk = n_q, .q = io->q, .k = io->k,
                       .v = io->v, .o = io->o, .lse = io->lse};
    return naive_run(p, threads, &job, err);
}

/* Scores of at most this many bytes per worker at once: a sample of rows at 10⁶ keys needs no
 * n_q × n_k matrix, and each row's arithmetic is the same whatever the chunk. */
#define NAIVE_ROWS_SCORE_BYTES (64u << 20)

int naive_attend_rows(const attn_problem_t *p, int threads, const int64_t *pos, int64_t m, const attn_io_t *io,
                      attn_err_t *err) {
    int64_t per_row = p->n_k * (int64_t)dtype_size(p->dtype);
    int64_t chunk = ATTN_MAX((int64_t)1, ATTN_MIN(m, (int64_t)NAIVE_ROWS_SCORE_BYTES / per_row));
    naive_job_t job = {.p = p, .ks = problem_k_span(p), .n_q = m, .n_k = p->n_k, .pos = pos, .chunk = chunk,
                       .q = io->q, .k = io->k, .v = io->v, .o = io->o, .lse = io->lse};
    return naive_run(p, threads, &job, err);
}

static int naive_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    if (p->dtype != ATTN_F32 && p->dtype != ATTN_F64) {
        snprintf(reason, len, "%s runs in float32 or float64 only (got %s)", self->name, dtype_name(p->dtype));
        return 0;
    }
    return backend_check_memory(self, p, x, reason, len);
}

static int naive_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err) {
    (void)self;
    ATTN_TRY(naive_attend(p, x->threads, problem_q_span(p), p->n_q, problem_k_span(p), p->n_k, io, err));
    problem_finish_rows(p->dtype, io->o, io->lse, problem_numel_lse(p), p->head_dim);
    return ATTN_OK;
}

static size_t naive_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self;
    return attn_size_mul((size_t)naive_workers(p, x->threads), naive_scratch_bytes(p, p->n_q, p->n_k));
}

const attn_backend_t backend_cpu_naive = {
    .name = "naive",
    .device = "cpu",
    .description = "materialises the n_q×n_k score matrix; f32 and f64 (the reference)",
    .supports = naive_supports,
    .forward = naive_forward,
    .workspace_bytes = naive_workspace,
    .backward = naive_backward,
    .backward_workspace_bytes = naive_backward_workspace,
};
