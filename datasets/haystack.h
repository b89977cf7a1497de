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

/* A haystack file must be a regular file of at most this many bytes (16× the KJV text): a FIFO,
 * a device such as /dev/zero or a directory never ends or is no text, and SentencePiece holds the
 * whole text and its pieces in memory at once. Anything else is one ATTN_EUSAGE message. */
#define HAYSTACK_MAX_BYTES (64ll << 20)

/* The in-memory half of haystack_corpus, which the file reader and the fuzz target share: len
 * bytes of text encoded, refused (naming `name`) when they encode to nothing or hold a needle
 * symbol. *ids: malloc'ed, *n ≥ 1 ids. */
int haystack_encode(const attn_tokenizer_t *t, const char *name, const char *text, size_t len, int32_t **ids,
                    size_t *n, attn_err_t *err);

/* Seeded noise: sentences of random words drawn from the tokenizer's ordinary pieces that begin
 * a word (▁…), a period every 8–20 words; the same seed gives the same n ids. */
int haystack_noise(const attn_tokenizer_t *t, int64_t n, uint64_t seed, int32_t **ids, attn_err_t *err);

/* Needle symbols: keys <k0>…<k{NEEDLE_KEYS-1}> and values <v0>…<v{NEEDLE_VALUES-1}>, user-defined
 * pieces of the trained tokenizer (each encodes to exactly one id). */
enum { NEEDLE_KEYS = 16, NEEDLE_VALUES = 64 };
