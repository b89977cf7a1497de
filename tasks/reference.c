/* reference.c — the float64 reference of a case, whole or on a seeded sample of query rows
 * (reference.h). Both come from the naive kernel: the sample runs naive_attend_rows, which
 * computes each row exactly as naive_attend does, so a sampled row equals the full one bit for
 * bit (tests/test_reference.c). */
#include "tasks/reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/rng.h"
#include "core/timing.h"
#include "impls/cpu/naive.h"

enum { REF_STREAM_ROWS = 3001 }; /* rng_u64 stream of the sampled rows */

int64_t reference_sample_rows(uint64_t seed, int64_t n_q, int64_t m, int64_t *rows) {
    if (m >= n_q || n_q <= 2) {
        int64_t k = ATTN_MIN(m, n_q);
        for (int64_t r = 0; r < k; r++)
            rows[r] = r;
        return k;
    }
    if (m < 2) { /* the last row: the one every mask and every ring step reaches */
        rows[0] = n_q - 1;
        return m > 0;
    }
    /* m − 2 strata over rows 1 … n_q − 2 (n_q − 2 ≥ m − 1 rows): stratum s is [lo, hi) with
     * lo = 1 + s·(n_q−2)/(m−2); each holds at least one row, so the rows are distinct and sorted. */
    rows[0] = 0;
    int64_t inner = n_q - 2, strata = m - 2;
    for (int64_t s = 0; s < strata; s++) {
        int64_t lo = 1 + s * inner / strata, hi = 1 + (s + 1) * inner / strata;
        rows[1 + s] = lo + (int64_t)(rng_u64(seed, REF_STREAM_ROWS, (uint64_t)s) % (uint64_t)(hi - lo));
    }
    rows[m - 1] = n_q - 1;
    return m;
}

int reference_full_fits(const attn_problem_t *p, const attn_exec_t *x) {
    attn_problem_t p64 = *p;
    p64.dtype = ATTN_F64;
    char reason[512];
    return backend_supports(registry_find("naive"), &p64, x, reason, sizeof reason);
}

int reference_naive_rows(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *in, attn_dtype_t in_dtype,
                         const int64_t *rows, int64_t m, attn_dtype_t dtype, void *o, void *lse, attn_err_t *err) {
    ATTN_ASSERT((dtype == ATTN_F32 || dtype == ATTN_F64) && (in_dtype == dtype || in_dtype == ATTN_F32));
    attn_problem_t pr = *p;
    pr.dtype = dtype;
    int64_t bh = p->batch * p->heads, d = p->head_dim, n_kv = (int64_t)problem_numel_kv(p);
    size_t es = dtype_size(dtype);
    int widen = dtype != in_dtype;
    int64_t *pos = attn_alloc((size_t)m * sizeof *pos, err, "reference row positions");
    void *q = attn_alloc(attn_size_prod4(bh, m, d, (int64_t)es), err, "reference Q rows");
    void *k = widen ? attn_alloc((size_t)n_kv * es, err, "reference K") : NULL;
    void *v = widen ? attn_alloc((size_t)n_kv * es, err, "reference V") : NULL;
    int rc = ATTN_ERUNTIME;
    if (pos && q && (!widen || (k && v))) {
        for (int64_t r = 0; r < m; r++)
            pos[r] = p->n_k - p->n_q + rows[r];
        /* Q (B,H,n_q,d) → its rows (B,H,m,d); float32 values widen to float64 exactly */
        for (int64_t o_ = 0; o_ < bh; o_++)
            for (int64_t r = 0; r < m; r++)
                for (int64_t c = 0; c < d; c++) {
                    size_t src = (size_t)((o_ * p->n_q + rows[r]) * d + c), dst = (size_t)((o_ * m + r) * d + c);
                    if (dtype == ATTN_F64)
                        ((double *)q)[dst] = in_dtype == ATTN_F64 ? ((const double *)in->q)[src]
                                                                  : ((const float *)in->q)[src];
                    else
                        ((float *)q)[dst] = ((const float *)in->q)[src];
                }
        for (int64_t i = 0; widen && i < n_kv; i++) {
            ((double *)k)[i] = ((const float *)in->k)[i];
            ((double *)v)[i] = ((const float *)in->v)[i];
        }
        attn_io_t io = {.q = q, .k = widen ? k : in->k, .v = widen ? v : in->v, .o = o, .lse = lse};
        rc = naive_attend_rows(&pr, x->threads, pos, m, &io, err);
        if (rc == ATTN_OK)
            problem_finish_rows(dtype, o, lse, (size_t)(bh * m), d);
    }
    attn_free(pos);
    attn_free(q);
    attn_free(k);
    attn_free(v);
    return rc;
}

int reference_build(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *in, attn_dtype_t in_dtype,
                    int64_t sample, uint64_t seed, attn_reference_t *ref, attn_err_t *err) {
    memset(ref, 0, sizeof *ref);
    int full = reference_full_fits(p, x);
    int64_t want = full ? p->n_q : ATTN_MIN(sample > 0 ? sample : REF_SAMPLE_ROWS, p->n_q);
    int64_t bh = p->batch * p->heads;
    ref->rows = attn_alloc((size_t)want * sizeof *ref->rows, err, "reference rows");
    if (!ref->rows)
        return ATTN_ERUNTIME;
    ref->m = reference_sample_rows(seed, p->n_q, want, ref->rows);
    ref->sampled = ref->m < p->n_q;
    ref->o = attn_alloc(attn_size_prod4(bh, ref->m, p->head_dim, sizeof(double)), err, "reference O");
    ref->lse = attn_alloc(attn_size_prod4(bh, ref->m, 1, sizeof(double)), err, "reference LSE");
    int rc = ref->o && ref->lse ? reference_naive_rows(p, x, in, in_dtype, ref->rows, ref->m, ATTN_F64, ref->o,
                                                       ref->lse, err)
                                : ATTN_ERUNTIME;
    if (rc != ATTN_OK)
        reference_free(ref);
    return rc;
}

void reference_free(attn_reference_t *ref) {
    attn_free(ref->rows);
    attn_free(ref->o);
    attn_free(ref->lse);
    memset(ref, 0, sizeof *ref);
}

attn_errors_t reference_errors_rows(const attn_reference_t *ref, const attn_problem_t *p, const void *o,
                                    const void *lse, attn_dtype_t dtype) {
    size_t rows = (size_t)(p->batch * p->heads * ref->m);
    return errors_measure(o, lse, dtype, ref->o, ref->lse, rows * (size_t)p->head_dim, rows);
}

int reference_errors(const attn_reference_t *ref, const attn_problem_t *p, const void *o, const void *lse,
                     attn_dtype_t dtype, attn_errors_t *out, attn_err_t *err) {
    if (!ref->sampled) {
        *out = reference_errors_rows(ref, p, o, lse, dtype);
        return ATTN_OK;
    }
    int64_t bh = p->batch * p->heads, d = p->head_dim, m = ref->m;
    size_t es = dtype_size(dtype);
    char *go = attn_alloc(attn_size_prod4(bh, m, d, (int64_t)es), err, "sampled O rows");
    char *gl = attn_alloc(attn_size_prod4(bh, m, 1, (int64_t)es), err, "sampled LSE rows");
    if (!go || !gl) {
        attn_free(go);
        attn_free(gl);
        return ATTN_ERUNTIME;
    }
    for (int64_t b = 0; b < bh; b++)
        for (int64_t r = 0; r < m; r++) {
            size_t src = (size_t)(b * p->n_q + ref->rows[r]), dst = (size_t)(b * m + r);
            memcpy(go + dst * (size_t)d * es, (const char *)o + src * (size_t)d * es, (size_t)d * es);
            memcpy(gl + dst * es, (const char *)lse + src * es, es);
        }
    *out = reference_errors_rows(ref, p, go, gl, dtype);
    attn_free(go);
    attn_free(gl);
    return ATTN_OK;
}

void reference_record(attn_record_t *r, const attn_reference_t *ref) {
    if (!r)
        return;
    record_extra_str(r, "ref", ref->sampled ? "sampled" : "full");
    record_extra_num(r, "ref_rows", (double)ref->m);
}

int reference_run_forward(const attn_reference_t *ref, const attn_backend_t *be, const attn_problem_t *p,
                          const attn_exec_t *x, attn_io_t *io, attn_errors_t *e, double *seconds, attn_err_t *berr) {
    double t0 = time_now_s();
    int rc = be->forward(be, p, x, io, berr);
    *seconds = time_now_s() - t0; /* the forward alone: the comparison is not the backend's time */
    return rc == ATTN_OK ? reference_errors(ref, p, io->o, io->lse, p->dtype, e, berr) : rc;
}

void reference_record_errors(attn_record_t *r, const attn_errors_t *e) {
    record_metric(r, "rel_l2_err", e->rel_l2, "1");
    record_metric(r, "max_abs_err", e->max_abs, "1");
    record_metric(r, "lse_max_abs_err", e->lse_max, "1");
}

int reference_naive32_errors(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *in32,
                             const attn_reference_t *ref, attn_errors_t *out, attn_err_t *err) {
    int64_t bh = p->batch * p->heads;
    float *o32 = attn_alloc(attn_size_prod4(bh, ref->m, p->head_dim, sizeof(float)), err, "naive f32 rows");
    float *l32 = attn_alloc(attn_size_prod4(bh, ref->m, 1, sizeof(float)), err, "naive f32 LSE rows");
    int rc = o32 && l32 ? reference_naive_rows(p, x, in32, ATTN_F32, ref->rows, ref->m, ATTN_F32, o32, l32, err)
                        : ATTN_ERUNTIME;
    if (rc == ATTN_OK)
        *out = reference_errors_rows(ref, p, o32, l32, ATTN_F32);
    attn_free(o32);
    attn_free(l32);
    return rc;
}

double reference_o_max(const attn_reference_t *ref, const attn_problem_t *p) {
    size_t n = (size_t)(p->batch * p->heads * ref->m * p->head_dim);
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ref->o[i]))
            m = fmax(m, fabs(ref->o[i]));
    return m;
}

double reference_lse_max(const attn_reference_t *ref, const attn_problem_t *p) {
    size_t n = (size_t)(p->batch * p->heads * ref->m);
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ref->lse[i]))
            m = fmax(m, fabs(ref->lse[i]));
    return m;
}

int reference_prepare(const attn_problem_t *p, const attn_exec_t *x, uint64_t seed, attn_tensors_t *in32,
                      attn_reference_t *ref, attn_errors_t *naive32, attn_err_t *err) {
    attn_problem_t p32 = *p;
    p32.dtype = ATTN_F32;
    ATTN_TRY(tensors_alloc(&p32, 1, seed, in32, err));
    ATTN_TRY(reference_build(p, x, &in32->io, ATTN_F32, 0, seed, ref, err));
    return reference_naive32_errors(p, x, &in32->io, ref, naive32, err);
}
