/* test_tolerance16.c — the attention-level rules of the 16-bit dtypes (tasks/tolerance.c,
 * docs/tolerances.md) on the CPU, with CPU backends in bf16 / f16 emulation (tests/bf16_emu.h)
 * standing in for the GPU: the emulated naive baseline stays within naive_cuda's a-priori
 * 16 u, its error scales with u (f16's about 8× below bf16's), the emulated blockwise and
 * sliding_window pass the factor-2 rule against it, and a wrong mask fails it. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/tensors.h"
#include "core/threads.h"
#include "tasks/tolerance.h"
#include "tests/bf16_emu.h"
#include "tests/check.h"

/* O and LSE of `be` on p's seeded inputs (float32 arrays, or float64 for the reference). */
static int run(const attn_backend_t *be, const attn_problem_t *p, attn_tensors_t *t) {
    attn_err_t err = {0};
    attn_exec_t x = {.threads = 2, .layout = -1};
    if (tensors_alloc(p, 1, 42, t, &err) != ATTN_OK || be->forward(be, p, &x, &t->io, &err) != ATTN_OK)
        return check(0, be->name, "%s", err.msg), 0;
    return 1;
}

int main(void) {
    parallel_set_blas_threads(2);
    bf16_emu_t naive16, block16, window16;
    if (!bf16_emu_init(&naive16, "naive") || !bf16_emu_init(&block16, "blockwise") ||
        !bf16_emu_init(&window16, "sliding_window"))
        return printf("FAIL: CPU backends missing\n"), 1;
    const attn_backend_t *naive = registry_find("naive");
    double base_rel[2][3] = {{0}}; /* [bf16, f16][mask] */
    for (int mk = 0; mk < 3; mk++)
        for (int di = 0; di < 2; di++) {
            const attn_dtype_t dt = di ? ATTN_F16 : ATTN_BF16;
            const double u = di ? 0x1p-11 : 0x1p-8;
            attn_problem_t p = {.batch = 1, .heads = 4, .kv_heads = 2, .head_dim = 64, .n_q = 513, .n_k = 513,
                                .mask = (attn_mask_t)mk, .window = 130, .dtype = ATTN_F64};
            attn_tensors_t ref = {0}, base = {0}, got = {0};
            if (!run(naive, &p, &ref))
                continue;
            p.dtype = dt;
            if (!run(&naive16.be, &p, &base)) {
                tensors_free(&ref);
                continue;
            }
            size_t no = problem_numel_q(&p), nl = problem_numel_lse(&p);
            const double *o_ref = ref.o, *l_ref = ref.lse;
            double o_max = 0, l_max = 0;
            for (size_t i = 0; i < no; i++)
                o_max = fmax(o_max, fabs(o_ref[i]));
            for (size_t i = 0; i < nl; i++)
                l_max = fmax(l_max, fabs(l_ref[i]));
            attn_errors_t e0 = errors_measure(base.o, base.lse, dt, o_ref, l_ref, no, nl);
            attn_errors_t prior = tolerance_bound("naive_cuda", dt, &e0, o_max, l_max, p.n_k);
            base_rel[di][mk] = e0.rel_l2;
            char name[200];
            snprintf(name, sizeof name, "%s mask %s: emulated naive rel L2 %.3g, within naive_cuda's 16 u (%.3g)",
                     dtype_name(dt), mask_name(p.mask), e0.rel_l2, prior.rel_l2);
            check(errors_within(&e0, &prior) && fabs(prior.rel_l2 - 16 * u) < 1e-12, name, "outside the a-priori bound");
            const attn_backend_t *cands[] = {&block16.be, &window16.be};
            for (int c = 0; c < 2; c++) {
                if (c == 1 && p.mask != ATTN_MASK_WINDOW)
                    continue;
                if (!run(cands[c], &p, &got))
                    continue;
                attn_errors_t e = errors_measure(got.o, got.lse, dt, o_ref, l_ref, no, nl);
                attn_errors_t b = tolerance_bound("blockwise_cuda", dt, &e0, o_max, l_max, p.n_k);
                snprintf(name, sizeof name, "%s %s mask %s: rel L2 %.3g within %.3g (2 × %.3g + 4 ulps)", cands[c]->name,
                         dtype_name(dt), mask_name(p.mask), e.rel_l2, b.rel_l2, e0.rel_l2);
                check(errors_within(&e, &b), name, "max_abs %.3g > %.3g or lse %.3g > %.3g", e.max_abs, b.max_abs,
                      e.lse_max, b.lse_max);
                tensors_free(&got);
            }
            /* A wrong mask (causal for none, none for causal and window) must fail the rule. */
            attn_problem_t w = p;
            w.mask = p.mask == ATTN_MASK_NONE ? ATTN_MASK_CAUSAL : ATTN_MASK_NONE;
            if (run(&block16.be, &w, &got)) {
                attn_errors_t e = errors_measure(got.o, got.lse, dt, o_ref, l_ref, no, nl);
                attn_errors_t b = tolerance_bound("blockwise_cuda", dt, &e0, o_max, l_max, p.n_k);
                snprintf(name, sizeof name, "%s mask %s run as %s: rel L2 %.3g fails %.3g", dtype_name(dt),
                         mask_name(p.mask), mask_name(w.mask), e.rel_l2, b.rel_l2);
                check(!errors_within(&e, &b), name, "a wrong mask passes");
                tensors_free(&got);
            }
            tensors_free(&ref), tensors_free(&base);
        }
    for (int mk = 0; mk < 3; mk++) { /* rounding Q, K, V dominates: the error follows u (ratio 8) */
        double r = base_rel[0][mk] / base_rel[1][mk];
        char name[160];
        snprintf(name, sizeof name, "mask %s: naive bf16 / f16 error ratio %.2f (u ratio 8)", mask_name((attn_mask_t)mk), r);
        check(r > 4 && r < 16, name, "the error does not follow the unit roundoff");
    }
    return check_summary();
}
