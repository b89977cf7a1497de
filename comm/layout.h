/* layout.h — how a sequence of n tokens is dealt over P ranks (contiguous, striped, zigzag):
 * global index ↔ (rank, local index), and each rank's tokens as at most two pieces of global
 * positions for the compute kernels. The rules for uneven n: docs/ring.md. */
#pragma once
#include "core/problem.h"

/* LAYOUT_ZIGZAG_BALANCED names the zigzag_balanced backend's layout: zigzag whose 2P chunk
 * bounds the plan cuts at equal work from the problem's documents (plan_layouts); layout_init
 * alone, which sees no documents, gives it plain zigzag. --layout does not take it. */
typedef enum { LAYOUT_CONTIGUOUS = 0, LAYOUT_STRIPED, LAYOUT_ZIGZAG, LAYOUT_ZIGZAG_BALANCED } attn_layout_kind_t;

typedef struct {
    attn_layout_kind_t kind;
    int64_t n;
    int ranks;
    const int64_t *bound; /* zigzag only: chunk c is [bound[c], bound[c+1]), 2P + 1 values; NULL = even chunks */
} attn_layout_t;

/* `count` tokens at global positions pos.start + pos.stride·i, stored at local rows local_start + i. */
typedef struct {
    attn_span_t pos;
    int64_t count;
    int64_t local_start;
} layout_piece_t;

const char *layout_name(attn_layout_kind_t k);
int layout_parse(const char *s, attn_layout_kind_t *out); /* 1 on success */
int layout_init(attn_layout_t *l, attn_layout_kind_t kind, int64_t n, int ranks, attn_err_t *err);
/* Zigzag with chunk bounds b[0..2P] (0 = b[0] ≤ … ≤ b[2P] = n; empty chunks allowed): the array
 * must outlive the layout. */
int layout_init_zigzag_bounds(attn_layout_t *l, int64_t n, int ranks, const int64_t *b, attn_err_t *err);
int64_t layout_local_count(const attn_layout_t *l, int rank);
int64_t layout_max_local_count(const attn_layout_t *l);
void layout_global_to_local(const attn_layout_t *l, int64_t t, int *rank, int64_t *local);
int64_t layout_local_to_global(const attn_layout_t *l, int rank, int64_t local);
/* The rank's non-empty pieces in local order (also ascending position); returns 0..2. */
int layout_pieces(const attn_layout_t *l, int rank, layout_piece_t pieces[2]);
