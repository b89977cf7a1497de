/* reference.h — the float64 reference of one case against which exactness and precision measure
 * errors: every query row where the whole naive float64 computation fits in memory (the rule
 * backend_check_memory applies to naive), else a seeded sample of rows with all their keys,
 * computed by the same naive kernel (naive_attend_rows). docs/precision.md. */
#pragma once
#include "core/backend.h"
#include "core/problem.h"
#include "core/results.h"
#include "core/tensors.h"
#include "tasks/tolerance.h"

enum { REF_SAMPLE_ROWS = 256 }; /* rows of a sampled reference (fewer when n_q is smaller) */

typedef struct {
    int sampled;      /* 0: every row (full), 1: a sample */
    int64_t m;        /* rows referenced per (batch, head) */
    int64_t *rows;    /* their local query indices 0 … n_q−1, ascending (first and last included) */
    double *o, *lse;  /* (B,H,m,d) and (B,H,m), float64, finished rows (problem_finish_rows) */
} attn_reference_t;

/* The rows a sample of m rows out of n_q takes with this seed: row 0, row n_q−1, and one row
 * drawn uniformly (rng_u64) from each of m−2 equal strata of the rows between; all rows when
 * m ≥ n_q. rows has room for m. Returns the count written. */
int64_t reference_sample_rows(uint64_t seed, int64_t n_q, int64_t m, int64_t *rows);

/* 1 when the float64 reference of the whole of p fits (naive's own memory check), else 0. */
int reference_full_fits(const attn_problem_t *p, const attn_exec_t *x);

/* Naive in `dtype` (f32 or f64) on ref->rows of p, from the f32 (or f64) inputs in (Q/K/V of
 * the whole problem, in->dtype `in_dtype`), into o (B,H,m,d) and lse (B,H,m) of that dtype,
 * rows finished. Widens the inputs when dtype is f64 and they are f32 (exactly: they are
 * float32 values). */
int reference_naive_rows(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *in, attn_dtype_t in_dtype,
                         const int64_t *rows, int64_t m, attn_dtype_t dtype, void *o, void *lse, attn_err_t *err);

/* Builds the reference of p from inputs `in` (dtype in_dtype): full when it fits, else
 * min(sample, n_q) sampled rows (seed), sample ≤ 0 meaning REF_SAMPLE_ROWS. */
int reference_build(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *in, attn_dtype_t in_dtype,
                    int64_t sample, uint64_t seed, attn_reference_t *ref, attn_err_t *err);
void reference_free(attn_reference_t *ref);

/* Errors of a whole output O (B,H,n_q,d), LSE (B,H,n_q) in dtype against the reference, on its
 * rows only. Allocation failure is reported as an error (ATTN_ERUNTIME). */
int reference_errors(const attn_reference_t *ref, const attn_problem_t *p, const void *o, const void *lse,
                     attn_dtype_t dtype, attn_errors_t *out, attn_err_t *err);
/* Errors of outputs already on the reference's rows ((B,H,m,d), (B,H,m) in dtype). */
attn_errors_t reference_errors_rows(const attn_reference_t *ref, const attn_problem_t *p, const void *o,
                                    const void *lse, attn_dtype_t dtype);
/* Which reference a record was measured against, in its config: ref "full" | "sampled",
 * ref_rows m (the rows: reference_sample_rows(run seed, n_q, m)). */
void reference_record(attn_record_t *r, const attn_reference_t *ref);
/* The same-precision baseline: naive in float32 on the reference's rows, its errors. */
int reference_naive32_errors(const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *in32,
                             const attn_reference_t *ref, attn_errors_t *out, attn_err_t *err);
/* What a case measures against, in one call: p's seeded float32 inputs (in32, p with dtype f32),
 * the reference built from them and the naive float32 baseline's errors on its rows. */
int reference_prepare(const attn_problem_t *p, const attn_exec_t *x, uint64_t seed, attn_tensors_t *in32,
                      attn_reference_t *ref, attn_errors_t *naive32, attn_err_t *err);
/* One backend's forward on io (inputs set, io->o and io->lse its outputs), timed as a whole
 * into *seconds, then its errors against ref into *e: what exactness and precision measure per
 * backend. Not ATTN_OK: the forward or the comparison failed, berr says how. */
int reference_run_forward(const attn_reference_t *ref, const attn_backend_t *be, const attn_problem_t *p,
                          const attn_exec_t *x, attn_io_t *io, attn_errors_t *e, double *seconds, attn_err_t *berr);
/* The three error metrics of e on r: rel_l2_err, max_abs_err, lse_max_abs_err. */
void reference_record_errors(attn_record_t *r, const attn_errors_t *e);
/* Largest finite |O| and |LSE| of the reference (the tolerance floors' magnitudes). */
double reference_o_max(const attn_reference_t *ref, const attn_problem_t *p);
double reference_lse_max(const attn_reference_t *ref, const attn_problem_t *p);
