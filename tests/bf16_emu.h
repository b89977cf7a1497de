/* bf16_emu.h — a CPU stand-in for a GPU backend in bf16 or f16, for the tests: Q, K and V rounded
 * to bfloat16 / binary16 (ties to even; model_round_dtype) as the GPU backends' upload does, then
 * the wrapped CPU backend in float32 (float32 accumulation, as on the GPU). Not emulated: the GPU
 * kernels' rounding of P to 16 bits before P·V (one more u-sized relative error per weight). */
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "model/model.h"

typedef struct {
    attn_backend_t be; /* first: the wrapper is passed as an attn_backend_t */
    const attn_backend_t *inner;
    char name[64];
} bf16_emu_t;

static int bf16_emu_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                             size_t len) {
    const bf16_emu_t *e = (const bf16_emu_t *)self;
    attn_problem_t q = *p;
    if (dtype_is_16bit(q.dtype))
        q.dtype = ATTN_F32;
    return backend_supports(e->inner, &q, x, reason, len);
}

static int bf16_emu_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                            const attn_io_t *io, attn_err_t *err) {
    const bf16_emu_t *e = (const bf16_emu_t *)self;
    attn_problem_t q = *p;
    if (!dtype_is_16bit(q.dtype))
        return e->inner->forward(e->inner, p, x, io, err);
    q.dtype = ATTN_F32;
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p);
    float *r = malloc(sizeof(float) * (nq + 2 * nkv) + 1);
    if (!r)
        return attn_fail(err, ATTN_ERUNTIME, "%s emulation: out of memory", dtype_name(p->dtype));
    const float *src[3] = {io->q, io->k, io->v};
    size_t n[3] = {nq, nkv, nkv}, at = 0;
    for (int t = 0; t < 3; at += n[t], t++)
        for (size_t i = 0; i < n[t]; i++)
            r[at + i] = model_round_dtype(p->dtype, src[t][i]);
    attn_io_t rio = *io;
    rio.q = r, rio.k = r + nq, rio.v = r + nq + nkv;
    int rc = e->inner->forward(e->inner, &q, x, &rio, err);
    free(r);
    return rc;
}

/* Wraps the CPU backend `name`; 0 when it is not registered. */
static __attribute__((unused)) int bf16_emu_init(bf16_emu_t *e, const char *name) {
    memset(e, 0, sizeof *e);
    e->inner = registry_find(name);
    if (!e->inner)
        return 0;
    snprintf(e->name, sizeof e->name, "%s+emu16", name);
    e->be = (attn_backend_t){.name = e->name, .device = "cpu", .description = "bf16 / f16 emulation",
                             .supports = bf16_emu_supports, .forward = bf16_emu_forward};
    return 1;
}
