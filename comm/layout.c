/* layout.c — the token layouts of layout.h. Every map is O(1): blocks of sizes q+1 (the first r
 * of them) and q, with n = qP + r (2P chunks for zigzag). */
#include "comm/layout.h"

#include <string.h>

static const char *names[] = {"contiguous", "striped", "zigzag"};
const char *layout_name(attn_layout_kind_t k) { return names[k]; }
int layout_parse(const char *s, attn_layout_kind_t *out) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) {
            *out = (attn_layout_kind_t)i;
            return 1;
        }
    return 0;
}

int layout_init(attn_layout_t *l, attn_layout_kind_t kind, int64_t n, int ranks, attn_err_t *err) {
    if (n < 1 || ranks < 1 || ranks > 4096)
        return attn_fail(err, ATTN_EUSAGE, "layout of %lld tokens over %d ranks (need n ≥ 1, 1 ≤ P ≤ 4096)",
                         (long long)n, ranks);
    *l = (attn_layout_t){kind, n, ranks};
    return ATTN_OK;
}

/* n tokens in k blocks as even as possible: block b starts at block_start and has block_size. */
static int64_t block_size(int64_t n, int64_t k, int64_t b) { return n / k + (b < n % k); }
static int64_t block_start(int64_t n, int64_t k, int64_t b) { return b * (n / k) + (b < n % k ? b : n % k); }
/* The block holding token t. */
static int64_t block_of(int64_t n, int64_t k, int64_t t) {
    int64_t q = n / k, r = n % k;
    return t < r * (q + 1) ? t / (q + 1) : r + (t - r * (q + 1)) / q;
}

int64_t layout_local_count(const attn_layout_t *l, int rank) {
    int64_t P = l->ranks;
    switch (l->kind) {
    case LAYOUT_CONTIGUOUS: return block_size(l->n, P, rank);
    case LAYOUT_STRIPED: return l->n / P + (rank < l->n % P);
    case LAYOUT_ZIGZAG: return block_size(l->n, 2 * P, rank) + block_size(l->n, 2 * P, 2 * P - 1 - rank);
    }
    return 0;
}

int64_t layout_max_local_count(const attn_layout_t *l) {
    int64_t m = 0;
    for (int r = 0; r < l->ranks; r++) /* O(P): under zigzag the largest shard can be any rank's */
        m = ATTN_MAX(m, layout_local_count(l, r));
    return m;
}

void layout_global_to_local(const attn_layout_t *l, int64_t t, int *rank, int64_t *local) {
    int64_t P = l->ranks;
    if (l->kind == LAYOUT_STRIPED) {
        *rank = (int)(t % P);
        *local = t / P;
        return;
    }
    int64_t k = l->kind == LAYOUT_CONTIGUOUS ? P : 2 * P, b = block_of(l->n, k, t);
    int64_t within = t - block_start(l->n, k, b);
    if (l->kind == LAYOUT_CONTIGUOUS || b < P) {
        *rank = (int)b;
        *local = within;
    } else { /* second chunk of rank 2P−1−b, after its first chunk */
        *rank = (int)(2 * P - 1 - b);
        *local = block_size(l->n, k, *rank) + within;
    }
}

int64_t layout_local_to_global(const attn_layout_t *l, int rank, int64_t local) {
    int64_t P = l->ranks;
    switch (l->kind) {
    case LAYOUT_CONTIGUOUS: return block_start(l->n, P, rank) + local;
    case LAYOUT_STRIPED: return local * P + rank;
    case LAYOUT_ZIGZAG: {
        int64_t first = block_size(l->n, 2 * P, rank);
        return local < first ? block_start(l->n, 2 * P, rank) + local
                             : block_start(l->n, 2 * P, 2 * P - 1 - rank) + local - first;
    }
    }
    return -1;
}

int layout_pieces(const attn_layout_t *l, int rank, layout_piece_t pc[2]) {
    int64_t P = l->ranks, count = layout_local_count(l, rank);
    int n = 0;
    if (l->kind != LAYOUT_ZIGZAG) {
        if (count > 0)
            pc[n++] = (layout_piece_t){{layout_local_to_global(l, rank, 0), l->kind == LAYOUT_STRIPED ? P : 1}, count, 0};
        return n;
    }
    int64_t first = block_size(l->n, 2 * P, rank), second = count - first;
    if (first > 0)
        pc[n++] = (layout_piece_t){{block_start(l->n, 2 * P, rank), 1}, first, 0};
    if (second > 0)
        pc[n++] = (layout_piece_t){{block_start(l->n, 2 * P, 2 * P - 1 - rank), 1}, second, first};
    return n;
}
