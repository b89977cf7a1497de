/* haystack.h — the token streams needles are hidden in (README "Needle in a haystack").
 * Two kinds: a text corpus (default: the King James Bible from Debian's bible-kjv, extracted and
 * tokenised at set-up into the build tree) and a seeded synthetic noise stream. Both return
 * exactly n ids that never contain a needle symbol (<kN>, <vN>). */
#pragma once
#include "datasets/tokenizer.h"

/* Where set-up put the default corpus text and the tokenizer trained on it (build/datasets/). */
const char *haystack_default_corpus(void);
const char *haystack_default_tokenizer(void);

/* The corpus file encoded once (as one text: SentencePiece's normaliser turns its line breaks
 * into spaces), then repeated to n ids. The repeat rule: the whole corpus's ids, then the same
 * ids again from the first, … cut at exactly n (the KJV ends a sentence, "Amen.", so a repeat
 * starts on a sentence boundary). A file that is missing, unreadable, empty, encodes to no ids
 * or contains a needle symbol → error naming the path. *ids: malloc'ed. The last corpus's ids
 * are kept for the next call with the same path (one corpus at a time, single-threaded). */
int haystack_corpus(const attn_tokenizer_t *t, const char *path, int64_t n, int32_t **ids, attn_err_t *err);

/* Seeded noise: sentences of random words drawn from the tokenizer's ordinary pieces that begin
 * a word (▁…), a period every 8–20 words; the same seed gives the same n ids. */
int haystack_noise(const attn_tokenizer_t *t, int64_t n, uint64_t seed, int32_t **ids, attn_err_t *err);

/* Needle symbols: keys <k0>…<k{NEEDLE_KEYS-1}> and values <v0>…<v{NEEDLE_VALUES-1}>, user-defined
 * pieces of the trained tokenizer (each encodes to exactly one id). */
enum { NEEDLE_KEYS = 16, NEEDLE_VALUES = 64 };
