/* train_tokenizer.c — set-up step: trains the needle task's SentencePiece model on a corpus
 * (build/datasets/kjv.txt) with the 80 needle symbols as user-defined pieces, deterministically
 * (tokenizer.h). usage: train_tokenizer CORPUS MODEL_PREFIX VOCAB_SIZE */
#include <stdio.h>
#include <stdlib.h>

#include "datasets/haystack.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: train_tokenizer CORPUS MODEL_PREFIX VOCAB_SIZE\n");
        return ATTN_EUSAGE;
    }
    static char names[NEEDLE_KEYS + NEEDLE_VALUES][8];
    const char *syms[NEEDLE_KEYS + NEEDLE_VALUES];
    for (int i = 0; i < NEEDLE_KEYS + NEEDLE_VALUES; i++) {
        snprintf(names[i], sizeof names[i], i < NEEDLE_KEYS ? "<k%d>" : "<v%d>", i < NEEDLE_KEYS ? i : i - NEEDLE_KEYS);
        syms[i] = names[i];
    }
    attn_err_t err = {0};
    if (tok_train(argv[1], argv[2], atoi(argv[3]), syms, NEEDLE_KEYS + NEEDLE_VALUES, &err) != ATTN_OK) {
        fprintf(stderr, "train_tokenizer: error: %s\n", err.msg);
        return err.code ? err.code : ATTN_ERUNTIME;
    }
    return ATTN_OK;
}
