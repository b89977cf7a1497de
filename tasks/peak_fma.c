/* peak_fma.c — the cores' floating-point peak: independent register-only FMA chains on every
 * thread, no memory traffic. No correct code computes faster, so it is the throughput task's
 * hard compute roof beside OpenBLAS sgemm, which the fused tile kernel can outrun (it has no
 * packing and no thread synchronisation; docs/roofline.md, docs/cpu-kernel.md). */
#include <immintrin.h>
#include <math.h>

#include "core/threads.h"
#include "core/timing.h"
#include "tasks/task.h"

enum { FMA_CHAINS = 16, FMA_ITERS = 1 << 19 }; /* 16 chains cover latency × issue width; ~5 ms at 100 GFLOP/s */

/* 16 chains of x ← x·m + a with m just below 1 and x starting at 0: every value stays finite
 * and normal, so no microcode assist slows a lane. Returns their sum so nothing is dropped. */
__attribute__((target("avx512f"))) static float chains_avx512(long iters) {
    __m512 x[FMA_CHAINS], m = _mm512_set1_ps(0.999f), a = _mm512_set1_ps(1e-3f);
    for (int c = 0; c < FMA_CHAINS; c++)
        x[c] = _mm512_setzero_ps();
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < FMA_CHAINS; c++)
            x[c] = _mm512_fmadd_ps(x[c], m, a);
    __m512 s = x[0];
    for (int c = 1; c < FMA_CHAINS; c++)
        s = _mm512_add_ps(s, x[c]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float chains_avx2(long iters) {
    __m256 x[FMA_CHAINS], m = _mm256_set1_ps(0.999f), a = _mm256_set1_ps(1e-3f);
    for (int c = 0; c < FMA_CHAINS; c++)
        x[c] = _mm256_setzero_ps();
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < FMA_CHAINS; c++)
            x[c] = _mm256_fmadd_ps(x[c], m, a);
    float out[8], s = 0;
    for (int c = 1; c < FMA_CHAINS; c++)
        x[0] = _mm256_add_ps(x[0], x[c]);
    _mm256_storeu_ps(out, x[0]);
    for (int l = 0; l < 8; l++)
        s += out[l];
    return s;
}

typedef struct {
    int wide; /* 16 lanes (AVX-512) or 8 (AVX2) */
    volatile float sink;
} fma_ctx_t;

static void fma_item(void *ctx, int64_t item, int worker) {
    (void)item, (void)worker;
    fma_ctx_t *c = ctx;
    c->sink = c->wide ? chains_avx512(FMA_ITERS) : chains_avx2(FMA_ITERS);
}

double peak_fma_gflops(int threads) {
    __builtin_cpu_init();
    fma_ctx_t c = {.wide = __builtin_cpu_supports("avx512f")};
    if (!c.wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        return NAN;
    int workers = threads_resolve(threads);
    double t0 = time_now_s();
    parallel_for(workers, workers, fma_item, &c);
    double s = time_now_s() - t0;
    double flops = 2.0 * (c.wide ? 16 : 8) * FMA_CHAINS * (double)FMA_ITERS * workers;
    return flops / s / 1e9;
}
