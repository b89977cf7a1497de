/* test_layout.c — comm/layout.h on its own, table-driven over kinds × ranks × awkward lengths,
 * against an owner map built here from the rules in docs/ring.md and for the properties the
 * distributed backends rely on (bijection, balance, pieces in local order).
 * Prints "N checks, F failed"; exit 1 on a failure. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/layout.h"
#include "tests/check.h"



/* The expected owner and local row of every token, straight from layout.h's description: ranks
 * (or zigzag chunks) take consecutive blocks whose first n mod k are one token longer. */
static void expected_owners(attn_layout_kind_t kind, int64_t n, int P, int *owner, int64_t *local) {
    if (kind == LAYOUT_STRIPED) {
        for (int p = 0; p < P; p++) {
            int64_t l = 0;
            for (int64_t t = p; t < n; t += P)
                owner[t] = p, local[t] = l++;
        }
        return;
    }
    int64_t k = kind == LAYOUT_CONTIGUOUS ? P : 2 * (int64_t)P;
    int64_t *start = malloc(sizeof(int64_t) * (size_t)(k + 1));
    start[0] = 0;
    for (int64_t c = 0; c < k; c++)
        start[c + 1] = start[c] + n / k + (c < n % k ? 1 : 0);
    for (int p = 0; p < P; p++) {
        int64_t l = 0;
        /* contiguous: block p; zigzag: chunk p, then chunk 2P−1−p after it in local order */
        int64_t chunks[2] = {p, 2 * (int64_t)P - 1 - p};
        for (int j = 0; j < (kind == LAYOUT_ZIGZAG ? 2 : 1); j++)
            for (int64_t t = start[chunks[j]]; t < start[chunks[j] + 1]; t++)
                owner[t] = p, local[t] = l++;
    }
    free(start);
}

static void check_case(attn_layout_kind_t kind, int P, int64_t n) {
    char name[96];
    snprintf(name, sizeof name, "%s P=%d n=%lld", layout_name(kind), P, (long long)n);
    attn_layout_t l;
    attn_err_t err = {0};
    if (!check(layout_init(&l, kind, n, P, &err) == ATTN_OK, name, "layout_init failed: %s", err.msg))
        return;
    int *owner = malloc(sizeof(int) * (size_t)n);
    int64_t *want_local = malloc(sizeof(int64_t) * (size_t)n), *counts = calloc((size_t)P, sizeof(int64_t));
    expected_owners(kind, n, P, owner, want_local);
    for (int64_t t = 0; t < n; t++)
        counts[owner[t]]++;

    /* Counts: as expected, summing to n, balanced, and the max reported. */
    int64_t sum = 0, lo = INT64_MAX, hi = 0, bad_rank = -1;
    for (int p = 0; p < P; p++) {
        int64_t c = layout_local_count(&l, p);
        if (c != counts[p] && bad_rank < 0)
            bad_rank = p;
        sum += c, lo = ATTN_MIN(lo, c), hi = ATTN_MAX(hi, c);
    }
    check(bad_rank < 0, name, "local_count(rank %lld): expected %lld, got %lld", (long long)bad_rank,
          (long long)(bad_rank >= 0 ? counts[bad_rank] : 0),
          (long long)(bad_rank >= 0 ? layout_local_count(&l, (int)bad_rank) : 0));
    check(sum == n, name, "sum of local counts: expected %lld, got %lld", (long long)n, (long long)sum);
    int spread = kind == LAYOUT_ZIGZAG ? 2 : 1;
    check(hi - lo <= spread, name, "shard sizes %lld..%lld differ by more than %d", (long long)lo, (long long)hi,
          spread);
    check(layout_max_local_count(&l) == hi, name, "max_local_count: expected %lld, got %lld", (long long)hi,
          (long long)layout_max_local_count(&l));

    /* global → local: the independent owner map, within range; local → global inverts it. */
    int ok_map = 1, ok_inverse = 1;
    for (int64_t t = 0; t < n && ok_map && ok_inverse; t++) {
        int r = -1;
        int64_t loc = -1;
        layout_global_to_local(&l, t, &r, &loc);
        int64_t count = r >= 0 && r < P ? layout_local_count(&l, r) : -1;
        ok_map = check(r == owner[t] && loc == want_local[t] && loc >= 0 && loc < count, name,
                       "global_to_local(%lld): expected (rank %d, local %lld), got (rank %d, local %lld) of "
                       "local_count %lld",
                       (long long)t, owner[t], (long long)want_local[t], r, (long long)loc, (long long)count);
        if (ok_map)
            ok_inverse = check(layout_local_to_global(&l, r, loc) == t, name,
                               "local_to_global(rank %d, %lld): expected %lld, got %lld", r, (long long)loc,
                               (long long)t, (long long)layout_local_to_global(&l, r, loc));
    }
    /* …and from the other side: every (rank, local row) maps to a token that maps back. */
    for (int p = 0; p < P && ok_inverse; p++)
        for (int64_t i = 0; i < layout_local_count(&l, p) && ok_inverse; i++) {
            int64_t t = layout_local_to_global(&l, p, i);
            int r = -1;
            int64_t loc = -1;
            if (t >= 0 && t < n)
                layout_global_to_local(&l, t, &r, &loc);
            ok_inverse = check(r == p && loc == i, name,
                               "local_to_global(rank %d, %lld) = %lld maps back to (rank %d, local %lld)", p,
                               (long long)i, (long long)t, r, (long long)loc);
        }

    /* Pieces: non-empty, in local order, covering exactly the rank's rows, positions ascending
     * and equal to local_to_global row by row. */
    for (int p = 0; p < P; p++) {
        layout_piece_t pc[2];
        memset(pc, 0xff, sizeof pc);
        int np = layout_pieces(&l, p, pc), max_np = kind == LAYOUT_ZIGZAG ? 2 : 1;
        if (!check(np >= 0 && np <= max_np, name, "rank %d: %d pieces, expected 0..%d", p, np, max_np))
            continue;
        int64_t next_local = 0, prev_pos = -1;
        int ok = 1;
        for (int k = 0; k < np && ok; k++) {
            ok = check(pc[k].count > 0 && pc[k].local_start == next_local && pc[k].pos.stride >= 1, name,
                       "rank %d piece %d: count %lld, local_start %lld (expected %lld), stride %lld", p, k,
                       (long long)pc[k].count, (long long)pc[k].local_start, (long long)next_local,
                       (long long)pc[k].pos.stride);
            for (int64_t i = 0; i < pc[k].count && ok; i++) {
                int64_t pos = pc[k].pos.start + pc[k].pos.stride * i, want = layout_local_to_global(&l, p, next_local + i);
                ok = check(pos == want && pos > prev_pos, name,
                           "rank %d piece %d row %lld: position %lld, expected %lld (previous %lld)", p, k,
                           (long long)i, (long long)pos, (long long)want, (long long)prev_pos);
                prev_pos = pos;
            }
            next_local += pc[k].count;
        }
        if (ok)
            check(next_local == counts[p], name, "rank %d: pieces cover %lld rows, expected %lld", p,
                  (long long)next_local, (long long)counts[p]);
    }
    free(owner), free(want_local), free(counts);
}

static void check_names_and_init(void) {
    for (int k = 0; k < 3; k++) {
        attn_layout_kind_t got = (attn_layout_kind_t)-1;
        const char *s = layout_name((attn_layout_kind_t)k);
        check(layout_parse(s, &got) == 1 && got == (attn_layout_kind_t)k, "layout_parse(layout_name)",
              "'%s': expected kind %d, got %d", s, k, (int)got);
    }
    const char *bad[] = {"", "zig", "Striped", "zigzag ", "auto"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        attn_layout_kind_t got;
        check(layout_parse(bad[i], &got) == 0, "layout_parse rejects", "'%s' was accepted", bad[i]);
    }
    struct { int64_t n; int ranks; } refused[] = {{16, 0}, {16, -1}, {0, 4}, {-1, 2}, {16, 4097}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        for (int k = 0; k < 3; k++) {
            attn_layout_t l;
            attn_err_t err = {0};
            int rc = layout_init(&l, (attn_layout_kind_t)k, refused[i].n, refused[i].ranks, &err);
            check(rc == ATTN_EUSAGE && err.msg[0], "layout_init rejects", "%s n=%lld ranks=%d: rc %d, message '%s'",
                  layout_name((attn_layout_kind_t)k), (long long)refused[i].n, refused[i].ranks, rc, err.msg);
        }
}

int main(void) {
    check_quiet = 1; /* half a million checks: failures only */
    static const int ranks[] = {1, 2, 3, 4, 5, 7, 8, 16, 64};
    check_names_and_init();
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < sizeof ranks / sizeof ranks[0]; i++) {
            int64_t P = ranks[i];
            /* n = 0 is refused by layout_init (checked above), so lengths start at 1. */
            int64_t lens[] = {1, 2, P - 1, P, P + 1, 2 * P - 1, 2 * P, 2 * P + 1, 1000, 4097};
            for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++) {
                int dup = lens[j] < 1;
                for (size_t m = 0; m < j && !dup; m++)
                    dup = lens[m] == lens[j];
                if (!dup)
                    check_case((attn_layout_kind_t)k, (int)P, lens[j]);
            }
        }
    return check_summary();
}
