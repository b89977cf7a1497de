/* layout.c — the token layouts of layout.h. Every map is O(1): blocks of sizes q+1 (the first r
 * of them) and q, with n = qP + r (2P chunks for zigzag). */
#include "comm/layout.h"
#include "core/mask.h"

#include <string.h>

static const char *names[] = {"contiguous", "striped", "zigzag", "zigzag_balanced"};
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
    *l = (attn_layout_t){kind == LAYOUT_ZIGZAG_BALANCED ? LAYOUT_ZIGZAG : kind, n, ranks, NULL};
    return ATTN_OK;
}

int layout_init_zigzag_bounds(attn_layout_t *l, int64_t n, int ranks, const int64_t *b, attn_err_t *err) {
    ATTN_TRY(layout_init(l, LAYOUT_ZIGZAG, n, ranks, err));
    if (b[0] != 0 || b[2 * ranks] != n)
        return attn_fail(err, ATTN_EUSAGE, "zigzag bounds must run from 0 to %lld", (long long)n);
    for (int c = 0; c < 2 * ranks; c++)
        if (b[c + 1] < b[c])
            return attn_fail(err, ATTN_EUSAGE, "zigzag bounds must not decrease (chunk %d)", c);
    l->bound = b;
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

/* Zigzag chunk c of 2P: its first token, its size, and the chunk holding token t (bounds or even). */
static int64_t zz_start(const attn_layout_t *l, int64_t c) {
    return l->bound ? l->bound[c] : block_start(l->n, 2 * (int64_t)l->ranks, c);
}
static int64_t zz_size(const attn_layout_t *l, int64_t c) { return zz_start(l, c + 1) - zz_start(l, c); }
static int64_t zz_of(const attn_layout_t *l, int64_t t) {
    if (!l->bound)
        return block_of(l->n, 2 * (int64_t)l->ranks, t);
    /* the last chunk starting at or before t: never an empty one */
    return mask_last_at_or_before(l->bound, 2 * (int64_t)l->ranks, t);
}

int64_t layout_local_count(const attn_layout_t *l, int rank) {
    int64_t P = l->ranks;
    switch (l->kind) {
    case LAYOUT_CONTIGUOUS: return block_size(l->n, P, rank);
    case LAYOUT_STRIPED: return l->n / P + (rank < l->n % P);
    case LAYOUT_ZIGZAG:
    case LAYOUT_ZIGZAG_BALANCED: return zz_size(l, rank) + zz_size(l, 2 * P - 1 - rank);
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
    if (l->kind == LAYOUT_CONTIGUOUS) {
        int64_t b = block_of(l->n, P, t);
        *rank = (int)b;
        *local = t - block_start(l->n, P, b);
        return;
    }
    int64_t b = zz_of(l, t), within = t - zz_start(l, b);
    if (b < P) {
        *rank = (int)b;
        *local = within;
    } else { /* second chunk of rank 2P−1−b, after its first chunk */
        *rank = (int)(2 * P - 1 - b);
        *local = zz_size(l, *rank) + within;
    }
}

int64_t layout_local_to_global(const attn_layout_t *l, int rank, int64_t local) {
    int64_t P = l->ranks;
    switch (l->kind) {
    case LAYOUT_CONTIGUOUS: return block_start(l->n, P, rank) + local;
    case LAYOUT_STRIPED: return local * P + rank;
    case LAYOUT_ZIGZAG:
    case LAYOUT_ZIGZAG_BALANCED: {
        int64_t first = zz_size(l, rank);
        return local < first ? zz_start(l, rank) + local : zz_start(l, 2 * P - 1 - rank) + local - first;
    }
    }
    return -1;
}

int layout_pieces(const attn_layout_t *l, int rank, layout_piece_t pc[2]) {
    int64_t P = l->ranks, count = layout_local_count(l, rank);
    int n = 0;
    if (l->kind != LAYOUT_ZIGZAG && l->kind != LAYOUT_ZIGZAG_BALANCED) {
        if (count > 0)
            pc[n++] = (layout_piece_t){{layout_local_to_global(l, rank, 0), l->kind == LAYOUT_STRIPED ? P : 1}, count, 0};
        return n;
    }
    int64_t first = zz_size(l, rank), second = count - first;
    if (first > 0)
        pc[n++] = (layout_piece_t){{zz_start(l, rank), 1}, first, 0};
    if (second > 0)
        pc[n++] = (layout_piece_t){{zz_start(l, 2 * P - 1 - rank), 1}, second, first};
    return n;
}
