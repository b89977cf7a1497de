/* test_needle_bf16.c — the needle's GPU plumbing without a GPU: the retrieval model with the
 * CPU backends in bf16 emulation (tests/bf16_emu.h) stands in for a GPU backend, so the bf16
 * KV cache (prefill, and query-tail's float32 band context under bf16 questions — the issue's
 * "holds 0 of 4100 positions (f32)") and the dense-layer hook (needle_run_opts_t.dense; on a GPU
 * the cuBLAS one of impls/cuda/dense_cuda.cu) are the only differences from the host path.
 * Exact backends recall every needle, the window exactly the ones in reach; a dense hook that
 * computes the wrong product loses them, so the hook is what runs. Argument bf16 (default) or
 * f16: the same in f16 emulation, with an f16 KV cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/threads.h"
#include "tasks/needle_run.h"
#include "tests/check.h"
#include "tests/needle_emu.h"

enum { N = 1024 };

static const int32_t intro[] = {10, 11, 12}, outro[] = {13}, qprefix[] = {14, 15, 16, 17};
static const needle_text_t text = {intro, outro, qprefix, 3, 1, 4};
static attn_dtype_t dt = ATTN_BF16; /* the emulated GPU dtype: bf16 or f16 */

/* The host stand-in for the GPU's dense layers: the same product summed in double, rounded once
 * (cuBLAS sums in another order: a float32-rounding difference, which the model must tolerate).
 * `wrong` gives every row the product of the row before it: an off-by-one hook. */
static int cpu_linear(const model_dense_t *d, float *out, const float *x, const float *w, int64_t n, int64_t out_dim,
                      int64_t in_dim, attn_err_t *err) {
    (void)err;
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + (d->ctx && r > 0 ? r - 1 : r) * in_dim;
        for (int64_t o = 0; o < out_dim; o++) {
            double s = 0;
            for (int64_t i = 0; i < in_dim; i++)
                s += (double)xr[i] * w[o * in_dim + i];
            out[r * out_dim + o] = (float)s;
        }
    }
    return ATTN_OK;
}

static int wrong_flag = 1;
static const model_dense_t cpu_dense = {cpu_linear, NULL}, bad_dense = {cpu_linear, &wrong_flag};

/* Depths 0, 50, 100: asked, correct and in-window counts. */
static int column(const model_t *m, const needle_margins_t *mg, const needle_vocab_t *nv, const int32_t *hay,
                  const attn_backend_t *be, needle_mode_t mode, attn_mask_t mask, int64_t window,
                  const model_dense_t *dense, int *asked, int *correct, int *in_window) {
    *asked = *correct = *in_window = 0;
    needle_run_opts_t ro = {.be = be, .mode = mode, .chunk = 700, .dense = dense};
    ro.tmpl.mask = mask, ro.tmpl.window = window, ro.tmpl.dtype = dt;
    ro.x = (attn_exec_t){.threads = 2, .layout = -1};
    for (int depth = 0; depth <= 100; depth += 50) {
        needle_prompt_t pr;
        needle_outcome_t out;
        attn_err_t err = {0};
        int rc = needle_prompt_build(hay, N, depth, 1, nv, &text, 7 + (uint64_t)depth, &pr, &err);
        if (rc == ATTN_OK)
            rc = needle_run_prompt(m, mg, &pr, &ro, &out, &err);
        if (rc != ATTN_OK)
            return check(0, "needle run", "%s depth %d: %s", be->name, depth, err.msg);
        *asked += out.asked, *correct += out.correct, *in_window += out.in_window;
        needle_prompt_free(&pr);
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc > 1 && (!dtype_parse(argv[1], &dt) || !dtype_is_16bit(dt)))
        return printf("usage: test_needle_bf16 [bf16|f16]\n"), 2;
    parallel_set_blas_threads(2);
    needle_emu_world_t W;
    if (!needle_emu_world_init(&W, N))
        return check_summary();
    char line[200];
    for (int mode = 0; mode < 2; mode++)
        for (int dn = 0; dn < 2; dn++) {
            int asked, correct, inw;
            const model_dense_t *dense = dn ? &cpu_dense : NULL;
            if (column(&W.m, &W.mg, &W.nv, W.hay, &W.block.be, (needle_mode_t)mode, ATTN_MASK_CAUSAL, 0, dense, &asked, &correct, &inw)) {
                snprintf(line, sizeof line, "blockwise %s-emulated %s, dense %s: recall %d/%d", dtype_name(dt),
                         mode ? "query-tail" : "prefill", dn ? "hook" : "host", correct, asked);
                check(asked == 3 && correct == asked, line, "an exact backend missed a needle");
            }
        }
    int64_t w = N * 45 / 100;
    for (int mode = 0; mode < 2; mode++) {
        int asked, correct, inw;
        if (column(&W.m, &W.mg, &W.nv, W.hay, &W.window.be, (needle_mode_t)mode, ATTN_MASK_WINDOW, w, &cpu_dense, &asked, &correct, &inw)) {
            snprintf(line, sizeof line, "sliding_window %s-emulated w=%lld %s, dense hook: recall %d/%d, in window %d",
                     dtype_name(dt), (long long)w, mode ? "query-tail" : "prefill", correct, asked, inw);
            check(correct == inw && inw > 0 && inw < asked, line, "recall differs from the in-window count");
        }
    }
    int asked, correct, inw;
    if (column(&W.m, &W.mg, &W.nv, W.hay, &W.block.be, NEEDLE_PREFILL, ATTN_MASK_CAUSAL, 0, &bad_dense, &asked, &correct, &inw)) {
        snprintf(line, sizeof line, "a wrong dense hook (rows off by one): recall %d/%d < 1/2", correct, asked);
        check(2 * correct < asked, line, "the hook is not what runs");
    }
    needle_emu_world_free(&W);
    return check_summary();
}
