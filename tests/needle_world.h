/* needle_world.h — the synthetic needle vocabulary and haystack the needle tests share
 * (test_needle.c, test_needle_bf16.c, test_needle_kvspace.c, test_approx.c): ids 200… for 16 keys
 * and 64 values, filler id 1, haystack of ordinary ids 18…199 from a fixed seed. Header-only. */
#pragma once
#include <stdint.h>
#include <stdlib.h>

#include "core/rng.h"
#include "tasks/needle_run.h"

enum { NEEDLE_VOCAB = 300, NEEDLE_ORDINARY = 200 };

static __attribute__((unused)) needle_vocab_t needle_test_vocab(void) {
    needle_vocab_t nv = {.vocab = NEEDLE_VOCAB, .filler_id = 1};
    for (int i = 0; i < 16; i++)
        nv.key_ids[i] = NEEDLE_ORDINARY + i;
    for (int i = 0; i < 64; i++)
        nv.value_ids[i] = NEEDLE_ORDINARY + 16 + i;
    return nv;
}

/* n ordinary ids (malloc'd; the caller frees). */
static __attribute__((unused)) int32_t *needle_test_hay(int64_t n) {
    int32_t *hay = malloc(n * sizeof *hay);
    for (int64_t i = 0; hay && i < n; i++)
        hay[i] = 18 + (int32_t)(rng_u64(3, 77, (uint64_t)i) % (NEEDLE_ORDINARY - 18));
    return hay;
}
