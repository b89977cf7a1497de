/* needle_emu.h — what the 16-bit-emulated needle tests share (test_needle_bf16.c,
 * test_needle_kvspace.c): needle_world.h's vocabulary and haystack, the retrieval model built for
 * n tokens, and blockwise / sliding_window in bf16/f16 emulation (bf16_emu.h). Header-only. */
#pragma once
#include "tests/bf16_emu.h"
#include "tests/check.h"
#include "tests/needle_world.h"

typedef struct {
    needle_vocab_t nv;
    int32_t *hay; /* n ordinary ids */
    model_t m;
    needle_margins_t mg;
    bf16_emu_t block, window; /* in place: their backends point into them */
} needle_emu_world_t;

/* Builds *w for n tokens, checked as the test "build"; 0 when anything failed. */
static __attribute__((unused)) int needle_emu_world_init(needle_emu_world_t *w, int64_t n) {
    attn_err_t err = {0};
    w->nv = needle_test_vocab();
    w->hay = needle_test_hay(n);
    return check(needle_model_build(&w->m, &w->nv, n + 8, &w->mg, &err) == ATTN_OK &&
                     bf16_emu_init(&w->block, "blockwise") && bf16_emu_init(&w->window, "sliding_window"),
                 "build", "%s", err.msg);
}

static __attribute__((unused)) void needle_emu_world_free(needle_emu_world_t *w) {
    model_free(&w->m);
    free(w->hay);
}
