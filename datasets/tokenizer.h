/* tokenizer.h — SentencePiece behind a C API (tokenizer.cc is the only C++ in the product).
 * Every call returns ATTN_OK or fills err; no C++ exception crosses this boundary. Ids are
 * int32 like the model's tokens. */
#pragma once
#include "core/common.h"

typedef struct attn_tokenizer attn_tokenizer_t;

/* Loads a SentencePiece .model file; a missing, truncated, non-model or non-regular file →
 * ATTN_EUSAGE (the path is the user's input; exit 2 like a bad --haystack). */
int tok_load(const char *path, attn_tokenizer_t **out, attn_err_t *err);
void tok_free(attn_tokenizer_t *t);
int tok_vocab_size(const attn_tokenizer_t *t);

/* Encodes len bytes of text; *ids is malloc'ed (free()), *n its length. */
int tok_encode(const attn_tokenizer_t *t, const char *text, size_t len, int32_t **ids, size_t *n, attn_err_t *err);
/* Decodes n ids; *text is malloc'ed, NUL-terminated. An id outside the vocabulary → error. */
int tok_decode(const attn_tokenizer_t *t, const int32_t *ids, size_t n, char **text, attn_err_t *err);
/* The piece of an id (NULL when out of range; the string lives as long as t) and the id of a
 * piece (-1 when it is not in the vocabulary). */
const char *tok_id_to_piece(const attn_tokenizer_t *t, int32_t id);
int32_t tok_piece_to_id(const attn_tokenizer_t *t, const char *piece);

/* Trains a unigram model from a text file into <model_prefix>.model (written atomically):
 * byte-identical for a given corpus, vocab size and symbols (one thread, no sentence sampling). user_symbols are
 * kept whole as single pieces (needle keys and values). */
int tok_train(const char *corpus_path, const char *model_prefix, int vocab_size, const char *const *user_symbols,
              int n_user_symbols, attn_err_t *err);
