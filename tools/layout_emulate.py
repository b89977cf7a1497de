#!/usr/bin/python3
# Kept as the shared helper of ring_emulate.py and ulysses_emulate.py (test_layout.c checks comm/layout.c itself).
"""layout_emulate.py — comm/layout.c (layout_local_count, layout_max_local_count,
layout_local_to_global, layout_pieces for contiguous, striped and zigzag) and impls/parallel/dist.c's
host shard copy, transcribed as written; shared by tools/ring_emulate.py and
tools/ulysses_emulate.py. A layout is the tuple (kind, n, P). Not run on its own."""

CONTIGUOUS, STRIPED, ZIGZAG = 0, 1, 2


def cdiv(a, b):  # C integer division (truncation toward zero)
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def block_size(n, k, b):
    return cdiv(n, k) + (1 if b < n % k else 0)


def block_start(n, k, b):
    return b * cdiv(n, k) + (b if b < n % k else n % k)


def layout_local_count(l, rank):
    kind, n, P = l
    if kind == CONTIGUOUS:
        return block_size(n, P, rank)
    if kind == STRIPED:
        return cdiv(n, P) + (1 if rank < n % P else 0)
    return block_size(n, 2 * P, rank) + block_size(n, 2 * P, 2 * P - 1 - rank)


def layout_max_local_count(l):
    return max([0] + [layout_local_count(l, r) for r in range(l[2])])


def layout_local_to_global(l, rank, local):
    kind, n, P = l
    if kind == CONTIGUOUS:
        return block_start(n, P, rank) + local
    if kind == STRIPED:
        return local * P + rank
    first = block_size(n, 2 * P, rank)
    return block_start(n, 2 * P, rank) + local if local < first else block_start(n, 2 * P, 2 * P - 1 - rank) + local - first


def layout_pieces(l, rank):
    """[(pos.start, pos.stride, count, local_start)] as layout_pieces fills pc[]."""
    kind, n, P = l
    count = layout_local_count(l, rank)
    pc = []
    if kind != ZIGZAG:
        if count > 0:
            pc.append((layout_local_to_global(l, rank, 0), P if kind == STRIPED else 1, count, 0))
        return pc
    first = block_size(n, 2 * P, rank)
    second = count - first
    if first > 0:
        pc.append((block_start(n, 2 * P, rank), 1, first, 0))
    if second > 0:
        pc.append((block_start(n, 2 * P, 2 * P - 1 - rank), 1, second, first))
    return pc


def dist_shard_copy(l, rank, outer, d, shard, whole, to_shard):
    """impls/parallel/dist.c: shard (outer, count, d) ↔ whole (outer, n, d), flat arrays."""
    n = l[1]
    count = layout_local_count(l, rank)
    for o in range(outer):
        for start, stride, cnt, ls in layout_pieces(l, rank):
            for r in range(cnt):
                a = (o * count + ls + r) * d
                b = (o * n + start + stride * r) * d
                if to_shard:
                    shard[a:a + d] = whole[b:b + d]
                else:
                    whole[b:b + d] = shard[a:a + d]
