/* tensors.h — owning storage for one problem's Q, K, V, O and LSE in the problem's dtype,
 * for the tasks and tests that run backends on seeded inputs. */
#pragma once
#include "core/problem.h"

typedef struct {
    attn_io_t io;
    void *q, *k, *v, *o, *lse;
} attn_tensors_t;

/* Allocates all five (O and LSE zeroed); with fill, Q/K/V come from the seeded generator. */
int tensors_alloc(const attn_problem_t *p, int fill, uint64_t seed, attn_tensors_t *t, attn_err_t *err);
void tensors_free(attn_tensors_t *t);
