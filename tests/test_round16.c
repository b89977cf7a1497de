/* test_round16.c — the host's rounding to the 16-bit dtypes (model_round_f16, model_round_bf16),
 * which the f16/bf16 KV cache and the tests' GPU emulation (tests/bf16_emu.h) rely on: bit-exact
 * against a table of ties, subnormals and overflow, and, where the compiler has _Float16, against
 * its conversion for every binary16 value, the midpoints between them ± 1 float32 ulp, and a
 * million random float32 bit patterns. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"
#include "tests/check.h"

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
/* Equal bit patterns, or both NaN. */
static int same(float a, float b) { return bits(a) == bits(b) || (isnan(a) && isnan(b)); }

int main(void) {
    check_quiet = 1;
    const struct { float x, f16, bf16; const char *what; } table[] = {
        {1.0f, 1.0f, 1.0f, "one"},
        {1.0f + 0x1p-11f, 1.0f, 1.0f, "f16 tie to even (down)"},
        {1.0f + 3 * 0x1p-11f, 1.0f + 0x1p-9f, 1.0f, "f16 tie to even (up)"},
        {1.0f + 0x1p-8f, 1.0f + 0x1p-8f, 1.0f, "bf16 tie to even (down)"},
        {1.0f + 3 * 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-6f, "bf16 tie to even (up)"},
        {65504.0f, 65504.0f, 65536.0f, "f16 max"},
        {65519.996f, 65504.0f, 65536.0f, "below the f16 overflow tie"},
        {65520.0f, INFINITY, 65536.0f, "the f16 overflow tie goes to inf"},
        {-70000.0f, -INFINITY, -70144.0f, "negative overflow"},
        {0x1p-24f, 0x1p-24f, 0x1p-24f, "smallest f16 subnormal"},
        {0x1p-25f, 0.0f, 0x1p-25f, "half the smallest subnormal ties to 0"},
        {0x1p-25f * 1.0000001f, 0x1p-24f, 0x1p-25f, "just above it rounds up"},
        {-0x1p-26f, -0.0f, -0x1p-26f, "negative underflow keeps the sign"},
        {1.5f * 0x1p-24f, 0x1p-23f, 1.5f * 0x1p-24f, "subnormal tie to even"},
        {0x1p-14f - 0x1p-25f, 0x1p-14f, 0x1p-14f, "subnormal rounds up to the smallest normal"},
        {1e-40f, 0.0f, 0x1p-133f, "float32 subnormal (bf16 keeps float32's exponent range)"},
        {-0.0f, -0.0f, -0.0f, "negative zero"},
        {INFINITY, INFINITY, INFINITY, "inf"},
        {3.14159265f, 3.140625f, 3.140625f, "pi"},
        {1000.3f, 1000.5f, 1000.0f, "f16 quantum 0.5 at 1000"},
    };
    char name[160];
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        float f = model_round_f16(table[i].x), b = model_round_bf16(table[i].x);
        snprintf(name, sizeof name, "table: %s (%a)", table[i].what, (double)table[i].x);
        check(same(f, table[i].f16), name, "f16: expected %a, got %a", (double)table[i].f16, (double)f);
        check(same(b, table[i].bf16), name, "bf16: expected %a, got %a", (double)table[i].bf16, (double)b);
    }
    check(isnan(model_round_f16(NAN)) && isnan(model_round_bf16(NAN)), "NaN stays NaN", "it did not");
    check(model_round_dtype(ATTN_F32, 1.0f + 0x1p-20f) == 1.0f + 0x1p-20f &&
              model_round_dtype(ATTN_F16, 1.0f + 0x1p-20f) == 1.0f && model_round_dtype(ATTN_BF16, 1.0f + 0x1p-9f) == 1.0f,
          "model_round_dtype dispatches by dtype", "it did not");
#ifdef __FLT16_MAX__
    long n = 0, bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) { /* every binary16 value and the midpoints above it */
        _Float16 v;
        uint16_t hb = (uint16_t)h;
        memcpy(&v, &hb, sizeof v);
        float x = (float)v;
        if (!isfinite(x))
            continue;
        uint16_t nb = (uint16_t)(h + 1);
        _Float16 nv;
        memcpy(&nv, &nb, sizeof nv);
        float nx = (float)nv, mid = isfinite(nx) && (x >= 0) == (nx >= 0) ? x + (nx - x) / 2 : x;
        const float probes[] = {x, mid, nextafterf(mid, -INFINITY), nextafterf(mid, INFINITY)};
        for (int k = 0; k < 4; k++, n++) {
            float want = (float)(_Float16)probes[k], got = model_round_f16(probes[k]);
            if (!same(want, got) && bad++ < 5)
                printf("FAIL f16 %a: _Float16 %a, got %a\n", (double)probes[k], (double)want, (double)got);
        }
    }
    for (uint64_t i = 0; i < 1000000; i++, n++) { /* random bit patterns: all exponents */
        uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ull; /* splitmix64 */
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        float x = from_bits((uint32_t)(z ^ (z >> 31)));
        float want = (float)(_Float16)x, got = model_round_f16(x);
        if (!same(want, got) && bad++ < 10)
            printf("FAIL f16 %a: _Float16 %a, got %a\n", (double)x, (double)want, (double)got);
    }
    snprintf(name, sizeof name, "model_round_f16 equals _Float16 on %ld values (all f16 values, midpoints ± 1 ulp, random)", n);
    check(bad == 0, name, "%ld differ", bad);
#else
    printf("note: this compiler has no _Float16; the table above is the check\n");
#endif
    check_quiet = 0;
    return check_summary();
}
