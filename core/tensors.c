/* tensors.c — see tensors.h: allocation of a problem's Q, K, V, O and LSE through attn_alloc,
 * and their seeded fill. */
#include "core/tensors.h"

#include <string.h>

#include "core/rng.h"

int tensors_alloc(const attn_problem_t *p, int fill, uint64_t seed, attn_tensors_t *t, attn_err_t *err) {
    size_t es = dtype_size(p->dtype);
    memset(t, 0, sizeof *t);
    t->q = attn_alloc(problem_numel_q(p) * es, err, "Q");
    t->k = attn_alloc(problem_numel_kv(p) * es, err, "K");
    t->v = attn_alloc(problem_numel_kv(p) * es, err, "V");
    t->o = attn_alloc(problem_numel_q(p) * es, err, "O");
    t->lse = attn_alloc(problem_numel_lse(p) * es, err, "LSE");
    if (!t->q || !t->k || !t->v || !t->o || !t->lse) {
        tensors_free(t);
        return ATTN_ERUNTIME;
    }
    memset(t->o, 0, problem_numel_q(p) * es);
    memset(t->lse, 0, problem_numel_lse(p) * es);
    if (fill)
        rng_fill_problem(p, seed, t->q, t->k, t->v);
    t->io = (attn_io_t){.q = t->q, .k = t->k, .v = t->v, .o = t->o, .lse = t->lse};
    return ATTN_OK;
}

void tensors_free(attn_tensors_t *t) {
    attn_free(t->q);
    attn_free(t->k);
    attn_free(t->v);
    attn_free(t->o);
    attn_free(t->lse);
    memset(t, 0, sizeof *t);
}
