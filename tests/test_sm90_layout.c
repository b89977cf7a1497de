/* test_sm90_layout.c — flash_sm90.cu's index arithmetic (impls/cuda/sm90_layout.h) checked on the
 * CPU against the PTX ISA's definitions, written out here independently: the 128-byte swizzle and
 * TMA box placement, wgmma descriptors decoded and walked as the tensor cores walk them, the
 * accumulator and A-register fragments, the key-tile range against piece_visible, and the K/V
 * pipeline's mbarrier parities and ping-pong turns simulated under random schedules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "impls/cuda/sm90_layout.h"
#include "tests/check.h"

/* ---- swizzle and TMA boxes -------------------------------------------------------------------- */

/* PTX ISA (wgmma / tensor copy, 128B swizzle): within each 1024-byte atom, the 16-byte chunk
 * index (address bits 4–6) is XORed with the 128-byte row index (bits 7–9). */
static uint32_t ref_swz(uint32_t a) {
    uint32_t chunk = (a >> 4) & 7, row = (a >> 7) & 7;
    return (a & ~(7u << 4)) | ((chunk ^ row) << 4);
}

static void swizzle(void) {
    int bad = 0;
    for (uint32_t a = 0; a < (1u << 18); a++)
        bad += sm90_swz128(a) != ref_swz(a) || sm90_swz128(sm90_swz128(a)) != a;
    check(bad == 0, "128B swizzle = PTX bits[4:6] ^= bits[7:9], an involution", "%d addresses differ", bad);
}

/* TMA, box {64 elements, rows}, SWIZZLE_128B, landing at a 1024-aligned address: box row r is
 * 128 bytes at r·128, its 16-byte chunk c goes to chunk c ^ (r % 8) (CUDA programming guide, TMA
 * swizzle). A rows × d tile is d / 64 such boxes one after another. Every element placed once,
 * inside the tile, and the shapes keep each panel whole atoms (base offset 0 in descriptors). */
static void tma_boxes(void) {
    const int shapes[][2] = {{SM90_BM, 64}, {SM90_BM, 128}, {SM90_BM, 256}, {128, 64}, {128, 128}, {64, 256}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rows = shapes[s][0], d = shapes[s][1], bad = 0, bytes = sm90_tile_bytes(rows, d);
        unsigned char *seen = calloc((size_t)bytes, 1);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < d; c++) {
                uint32_t box = (uint32_t)(c / 64) * (uint32_t)rows * 128u, ce = (uint32_t)(c % 64) * 2u;
                uint32_t want = box + (uint32_t)r * 128u + (((ce / 16u) ^ ((uint32_t)r % 8u)) * 16u) + ce % 16u;
                uint32_t got = sm90_tile_offset(rows, r, c);
                bad += got != want || got + 1 >= (uint32_t)bytes;
                if (got + 1 < (uint32_t)bytes)
                    bad += seen[got]++ != 0;
            }
        bad += rows % 8 != 0 || (rows * 128) % 1024 != 0;
        free(seen);
        char name[80];
        snprintf(name, sizeof name, "TMA box placement, %d x %d tile", rows, d);
        check(bad == 0, name, "%d elements placed wrongly", bad);
    }
    /* the dynamic shared memory fits an H100/H200 block (227 KB) for every head dim */
    int over = 0;
    for (int d = 64; d <= 256; d *= 2)
        over += sm90_smem_bytes(d) > 227 * 1024;
    check(over == 0, "shared memory fits 227 KB for d = 64, 128, 256", "%d head dims over", over);
}

/* ---- wgmma descriptors ------------------------------------------------------------------------- */

typedef struct {
    uint32_t start, lbo, sbo, base_off, mode;
} desc_t;

/* PTX ISA, "Matrix Descriptor Format" for wgmma, decoded field by field. */
static desc_t decode(uint64_t d) {
    desc_t x = {(uint32_t)(d & 0x3FFF) << 4, (uint32_t)((d >> 16) & 0x3FFF) << 4, (uint32_t)((d >> 32) & 0x3FFF) << 4,
                (uint32_t)((d >> 49) & 7), (uint32_t)(d >> 62)};
    return x;
}

/* Where the tensor cores read element (mn, k), 0 ≤ k < 16, of the operand a descriptor names,
 * for bf16/f16 with 128B swizzle (PTX canonical layouts, as CUTLASS writes them in 16-byte
 * units): K-major ((8,m),(8 elems,2)) : ((128 B, SBO), (2 B, 16 B)); MN-major ((64 elems, n),
 * (8, k)) : ((2 B, LBO), (128 B, SBO)); the swizzle applies to the absolute address. */
static uint32_t hw_addr_k(desc_t x, int mn, int k) {
    return ref_swz(x.start + (uint32_t)(mn / 8) * x.sbo + (uint32_t)(mn % 8) * 128u + (uint32_t)k * 2u);
}
static uint32_t hw_addr_mn(desc_t x, int mn, int k) {
    return ref_swz(x.start + (uint32_t)(mn / 64) * x.lbo + (uint32_t)(mn % 64) * 2u + (uint32_t)(k / 8) * x.sbo +
                   (uint32_t)(k % 8) * 128u);
}

static void descriptors(void) {
    /* 1024-aligned tile bases as the kernel lays them out, near the top of 228 KB too. */
    const uint32_t bases[] = {0x400, 0x8000, 0x37C00 - 0x10000};
    for (int d = 64; d <= 256; d *= 2) {
        int bn = sm90_bn(d), bad = 0;
        for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
            uint32_t base = bases[b];
            for (int kk = 0; kk < d / 16; kk++) {
                /* A = Q rows of warpgroup wg: 64 × 16 of the 128 × d Q tile. */
                for (int wg = 0; wg < 2; wg++) {
                    desc_t x = decode(sm90_desc_kmajor(base, SM90_BM, wg * SM90_WG_ROWS, kk));
                    bad += x.mode != 1 || x.base_off != 0;
                    for (int m = 0; m < 64; m++)
                        for (int k = 0; k < 16; k++)
                            bad += hw_addr_k(x, m, k) !=
                                   base + sm90_tile_offset(SM90_BM, wg * SM90_WG_ROWS + m, kk * 16 + k);
                }
                /* B = K tile (bn keys × d), N = bn keys, K = d. */
                desc_t x = decode(sm90_desc_kmajor(base, bn, 0, kk));
                bad += x.mode != 1 || x.base_off != 0;
                for (int n = 0; n < bn; n++)
                    for (int k = 0; k < 16; k++)
                        bad += hw_addr_k(x, n, k) != base + sm90_tile_offset(bn, n, kk * 16 + k);
            }
            /* B = V tile of O += P·V: K = keys 16kk…, N = the d columns, MN-major. */
            for (int kk = 0; kk < bn / 16; kk++) {
                desc_t x = decode(sm90_desc_mnmajor(base, bn, kk));
                bad += x.mode != 1 || x.base_off != 0;
                for (int n = 0; n < d; n++)
                    for (int k = 0; k < 16; k++)
                        bad += hw_addr_mn(x, n, k) != base + sm90_tile_offset(bn, kk * 16 + k, n);
            }
        }
        char name[96];
        snprintf(name, sizeof name, "wgmma descriptors address Q, K, V elements (d=%d, BN=%d)", d, bn);
        check(bad == 0, name, "%d operand elements read from the wrong shared address", bad);
    }
    /* The 14-bit start field holds every shared address of a 228 KB block. */
    desc_t top = decode(sm90_desc(228 * 1024 - 16, 16, 1024));
    check(top.start == 228 * 1024 - 16 && top.lbo == 16 && top.sbo == 1024, "descriptor fields round-trip",
          "start %u lbo %u sbo %u", top.start, top.lbo, top.sbo);
}

/* ---- fragments --------------------------------------------------------------------------------- */

/* PTX ISA, wgmma .m64nNk16 D fragment: warp w of the warpgroup holds rows 16w…16w+15; in it lane
 * (g = lane/4, t = lane%4) holds, for each 8-column group j, d[4j], d[4j+1] at row g, columns
 * 8j + 2t, +1 and d[4j+2], d[4j+3] at row g + 8. */
static void accumulator(void) {
    for (int n = 64; n <= 256; n *= 2) {
        int bad = 0;
        static int seen[64][256];
        memset(seen, 0, sizeof seen);
        for (int tid = 0; tid < 128; tid++)
            for (int j = 0; j < n / 8; j++)
                for (int q = 0; q < 4; q++) {
                    int w = tid / 32, g = (tid % 32) / 4, t = tid % 4, i = 4 * j + q;
                    int row = 16 * w + g + (q >= 2 ? 8 : 0), col = 8 * j + 2 * t + (q % 2);
                    bad += sm90_acc_row(tid, i) != row || sm90_acc_col(tid, i) != col;
                    if (sm90_acc_row(tid, i) < 64 && sm90_acc_col(tid, i) < n && sm90_acc_col(tid, i) >= 0)
                        seen[sm90_acc_row(tid, i)][sm90_acc_col(tid, i)]++;
                }
        for (int r = 0; r < 64; r++)
            for (int c = 0; c < n; c++)
                bad += seen[r][c] != 1;
        char name[64];
        snprintf(name, sizeof name, "accumulator fragment m64n%dk16: PTX layout, bijection", n);
        check(bad == 0, name, "%d mismatches", bad);
    }
}

/* PTX ISA, wgmma A from registers (bf16/f16, k16): a0 row g cols 2t, 2t+1; a1 row g+8; a2 row g
 * cols 2t+8, 2t+9; a3 row g+8; rows offset by 16w. Packing S accumulators sm90_pa_src(kk, r) + h
 * must give P at exactly those (row, key 16kk + col) for every BN. */
static void p_fragment(void) {
    int bad = 0;
    for (int bn = 64; bn <= 128; bn += 64)
        for (int tid = 0; tid < 128; tid++)
            for (int kk = 0; kk < bn / 16; kk++)
                for (int r = 0; r < 4; r++)
                    for (int h = 0; h < 2; h++) {
                        int w = tid / 32, g = (tid % 32) / 4, t = tid % 4;
                        int row = 16 * w + g + 8 * (r % 2), key = 16 * kk + 2 * t + 8 * (r / 2) + h;
                        int i = sm90_pa_src(kk, r) + h;
                        bad += i >= bn / 2 || sm90_acc_row(tid, i) != row || sm90_acc_col(tid, i) != key;
                    }
    check(bad == 0, "S accumulators repacked as P's A registers", "%d elements land on another (row, key)", bad);
}

/* ---- key tiles against the one visibility rule --------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static int64_t rnd(int64_t n) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (int64_t)(rng % (uint64_t)n);
}

/* Half the cases one contiguous problem (band = global positions: piece_visible must equal
 * mask_visible), half a strided ring piece pair (query row r at q0 + S·r, key j at k0 + S·j) with
 * documents over the global line; the tile range and edge test against piece_visible per pair. */
static void key_tiles(void) {
    int bad = 0, cases = 0, tiles_edge = 0, tiles_plain = 0, strided = 0;
    for (int c = 0; c < 3000; c++) {
        const int64_t S = rnd(2) ? 1 : 2 + rnd(3);
        int64_t n_k = 1 + rnd(700), docs[9];
        const int64_t G = S * n_k + S; /* the global line the pieces are dealt from */
        int64_t n_docs = rnd(3) == 0 ? 1 + rnd(8) : 1;
        docs[0] = 0, docs[n_docs] = G;
        for (int64_t i = 1; i < n_docs; i++)
            docs[i] = rnd(G + 1);
        for (int64_t i = 1; i < n_docs; i++) /* sort: non-decreasing offsets */
            for (int64_t k = i; k > 0 && docs[k - 1] > docs[k]; k--) {
                int64_t t = docs[k];
                docs[k] = docs[k - 1], docs[k - 1] = t;
            }
        attn_vis_t v = {(attn_mask_t)rnd(3), 1 + rnd(300), docs, n_docs};
        int bn = rnd(2) ? 64 : 128;
        int64_t i_lo, i_hi;
        piece_vis_t pv;
        if (S == 1) {
            i_lo = rnd(n_k + 200) - 100, i_hi = i_lo + rnd(SM90_BM);
            if (n_docs > 1 && (i_lo < 0 || i_hi >= n_k))
                continue; /* documents cover positions 0 … n_k only */
            pv = piece_vis_global(v, 0);
        } else { /* band positions = local rows (q_off 0), globals inside the documented line */
            i_lo = rnd(n_k), i_hi = i_lo + rnd(SM90_BM);
            if (i_hi >= n_k)
                i_hi = n_k - 1;
            pv = (piece_vis_t){v, 0, rnd(S), rnd(S), S};
            strided++;
        }
        int64_t t_lo, t_hi;
        sm90_key_tiles(&pv, i_lo, i_hi, n_k, bn, &t_lo, &t_hi);
        cases++;
        int first_hit = 0, last_hit = 0;
        for (int64_t i = i_lo; i <= i_hi; i++)
            for (int64_t j = 0; j < n_k; j++) {
                const int seen = piece_visible(&pv, i, j);
                bad += S == 1 && seen != mask_visible(&v, i, j);
                if (seen) {
                    bad += j / bn < t_lo || j / bn >= t_hi; /* a visible key outside the range */
                    first_hit |= j / bn == t_lo, last_hit |= j / bn == t_hi - 1;
                }
            }
        /* the range is tight at both ends for one problem; a strided piece's document ends are
         * rounded to key rows, and the hull may hold a tile no row sees (costs a tile, never a key) */
        bad += S == 1 && t_lo < t_hi && (!first_hit || !last_hit);
        for (int64_t t = t_lo; t < t_hi; t++) {
            if (sm90_tile_edge(&pv, i_lo, i_hi, t * bn, bn, n_k)) {
                tiles_edge++;
                continue;
            }
            tiles_plain++;
            for (int64_t i = i_lo; i <= i_hi; i++) /* unmasked tile: every pair visible, in range */
                for (int64_t j = t * bn; j < t * bn + bn; j++)
                    bad += j >= n_k || !piece_visible(&pv, i, j);
        }
    }
    check(bad == 0 && tiles_edge > 0 && tiles_plain > 0 && strided > 500,
          "key tiles and edge tiles against piece_visible (one problem and strided pieces)",
          "%d violations over %d cases (%d strided; %d edge, %d plain tiles)", bad, cases, strided, tiles_edge,
          tiles_plain);
}

/* ---- pipeline ----------------------------------------------------------------------------------- */

/* mbarrier: arrivals pending and transaction bytes pending in the current phase; the phase flips
 * when both reach 0. wait(parity) passes once the phase of that parity has completed, i.e. when
 * the current phase's parity differs. */
typedef struct {
    int phase, count, pending, tx;
} mbar_t;
static void mb_init(mbar_t *b, int count) { b->phase = 0, b->count = count, b->pending = count, b->tx = 0; }
static void mb_flip(mbar_t *b) {
    if (b->pending == 0 && b->tx == 0)
        b->phase ^= 1, b->pending = b->count;
}
static void mb_arrive(mbar_t *b, int tx) {
    b->tx += tx, b->pending--;
    mb_flip(b);
}
static int mb_ready(const mbar_t *b, uint32_t parity) { return (uint32_t)b->phase != parity; }

/* A named barrier of 256 threads used as a turn token: one WG's bar.arrive, the other's bar.sync. */
typedef struct {
    int arrivals, over;
} turn_t;

enum { MAXT = 24 };
typedef struct {
    mbar_t full_k[SM90_STAGES], full_v[SM90_STAGES], empty[SM90_STAGES];
    int slot_k[SM90_STAGES], slot_v[SM90_STAGES], readers[SM90_STAGES]; /* tile held; WGs still on it */
    int tx_k[SM90_STAGES], tx_v[SM90_STAGES];                           /* copies in flight */
    turn_t turn[2];
    int errors;
} pipe_t;

/* Producer: wait for the stage to be empty, then arrive.expect_tx on full_k and issue K's copy,
 * then the same for V. One step at a time; returns 1 when it moved. */
typedef struct {
    int it, sub, done;
    int tile_k[SM90_STAGES], tile_v[SM90_STAGES]; /* the tile each copy in flight carries */
} prod_t;
static int producer_step(pipe_t *p, prod_t *s, int T) {
    if (s->it >= T)
        return s->done = 1, 0;
    int st = sm90_stage(s->it);
    if (s->sub == 0) {
        if (!mb_ready(&p->empty[st], sm90_empty_parity(s->it)))
            return 0;
        p->errors += p->readers[st] != 0; /* refilling a stage a WG still reads */
        p->readers[st] = 2;
        mb_arrive(&p->full_k[st], 1); /* expect_tx and the arrival together: no flip until the bytes land */
        p->tx_k[st] = 1, s->tile_k[st] = (int)s->it;
        s->sub = 1;
        return 1;
    }
    mb_arrive(&p->full_v[st], 1);
    p->tx_v[st] = 1, s->tile_v[st] = (int)s->it;
    s->sub = 0, s->it++;
    return 1;
}

static void sim_fail(pipe_t *p) { p->errors++; }

/* Copy completion: the engine writes the tile and completes its bytes on the barrier. */
static int copy_step(pipe_t *p, int st, int kv, int tile) {
    if (kv == 0 && p->tx_k[st]) {
        p->tx_k[st] = 0, p->slot_k[st] = tile;
        p->full_k[st].tx -= 1;
        mb_flip(&p->full_k[st]);
        return 1;
    }
    if (kv == 1 && p->tx_v[st]) {
        p->tx_v[st] = 0, p->slot_v[st] = tile;
        p->full_v[st].tx -= 1;
        mb_flip(&p->full_v[st]);
        return 1;
    }
    return 0;
}

/* A consumer warpgroup, as flash_sm90.cu's consumer loop: per tile, wait K, take the turn, P·V of
 * the previous tile (wait its V) and S of this one, give the turn, release the previous stage;
 * then one last turn for the last tile's P·V. */
typedef struct {
    int wg, it, pc, done;
} cons_t;
static int consumer_step(pipe_t *p, cons_t *c, int T) {
    int64_t turns = T > 0 ? T + 1 : 0;
    switch (c->pc) {
    case 0: /* entry */
        if (sm90_pp_initial_arrive(c->wg, turns)) {
            p->turn[0].over += p->turn[0].arrivals != 0;
            p->turn[0].arrivals++;
        }
        c->pc = T > 0 ? 1 : 9;
        return 1;
    case 1: /* wait K of tile it (it < T), or go to the last turn */
        if (c->it == T) {
            c->pc = 5;
            return 1;
        }
        if (!mb_ready(&p->full_k[sm90_stage(c->it)], sm90_full_parity(c->it)))
            return 0;
        c->pc = 2;
        return 1;
    case 2: /* take the turn */
    case 5:
        if (p->turn[c->wg].arrivals == 0)
            return 0;
        p->turn[c->wg].arrivals--;
        c->pc = c->pc == 2 ? 3 : 6;
        return 1;
    case 3: /* P·V of tile it − 1 (V must be in), S of tile it */
    case 6:
        if (c->it > 0) {
            int st = sm90_stage(c->it - 1);
            if (!mb_ready(&p->full_v[st], sm90_full_parity(c->it - 1)))
                return 0;
            if (p->slot_v[st] != c->it - 1)
                sim_fail(p);
        }
        if (c->pc == 3 && p->slot_k[sm90_stage(c->it)] != c->it)
            sim_fail(p);
        {
            int64_t turn = c->it; /* turn index = tile index; the last turn is T */
            if (sm90_pp_end_arrive(c->wg, turn, turns)) {
                turn_t *o = &p->turn[1 - c->wg];
                o->over += o->arrivals != 0;
                o->arrivals++;
            }
        }
        if (c->it > 0) { /* release the previous tile's stage: lane 0 of each of the WG's 4 warps */
            int st = sm90_stage(c->it - 1), phase = p->empty[st].phase;
            p->readers[st]--;
            for (int w = 0; w < 4; w++)
                mb_arrive(&p->empty[st], 0);
            /* the stage frees exactly when both warpgroups' 8 warps have arrived, and the next
             * phase starts with its full count */
            int flipped = p->empty[st].phase != phase;
            p->errors += flipped != (p->readers[st] == 0) || (flipped && p->empty[st].pending != p->empty[st].count);
        }
        if (c->pc == 6) {
            c->pc = 9;
        } else {
            c->it++;
            c->pc = 1;
        }
        return 1;
    default:
        c->done = 1;
        return 0;
    }
}

static void pipeline(void) {
    int bad = 0, deadlocks = 0, runs = 0;
    for (int T = 0; T <= MAXT; T++)
        for (int seed = 0; seed < 200; seed++) {
            pipe_t p;
            memset(&p, 0, sizeof p);
            for (int s = 0; s < SM90_STAGES; s++) {
                mb_init(&p.full_k[s], 1), mb_init(&p.full_v[s], 1), mb_init(&p.empty[s], SM90_EMPTY_ARRIVALS);
                p.slot_k[s] = p.slot_v[s] = -1;
            }
            prod_t pr;
            memset(&pr, 0, sizeof pr);
            cons_t cs[2] = {{0, 0, 0, 0}, {1, 0, 0, 0}};
            rng = 0x1234567ull * (uint64_t)(seed + 1) + (uint64_t)T;
            for (;;) {
                /* actors: producer, two consumers, 2·STAGES copy engines; try them in a random
                 * order until one moves; none can and not all are done: a deadlock */
                enum { NA = 3 + 2 * SM90_STAGES };
                int order[NA], moved = 0;
                for (int i = 0; i < NA; i++)
                    order[i] = i;
                for (int i = NA - 1; i > 0; i--) {
                    int j = (int)rnd(i + 1), t = order[i];
                    order[i] = order[j], order[j] = t;
                }
                for (int i = 0; i < NA && !moved; i++) {
                    int who = order[i];
                    if (who == 0)
                        moved = producer_step(&p, &pr, T);
                    else if (who <= 2)
                        moved = consumer_step(&p, &cs[who - 1], T);
                    else {
                        int st = (who - 3) / 2, kv = (who - 3) % 2;
                        moved = copy_step(&p, st, kv, kv ? pr.tile_v[st] : pr.tile_k[st]);
                    }
                }
                if (moved)
                    continue;
                if (!(pr.done && cs[0].done && cs[1].done))
                    deadlocks++;
                break;
            }
            runs++;
            bad += p.errors + p.turn[0].over + p.turn[1].over;
            bad += p.turn[0].arrivals != 0 || p.turn[1].arrivals != 0; /* no dangling arrival */
            bad += !(cs[0].done && cs[1].done && pr.it == T);
        }
    check(bad == 0 && deadlocks == 0, "K/V pipeline: parities, stage reuse, ping-pong turns",
          "%d errors, %d deadlocks over %d schedules", bad, deadlocks, runs);
}

/* setmaxnreg: multiples of 8 in [24, 256]; the consumers take no more than the producer frees. */
static void registers(void) {
    int ok = SM90_REGS_PRODUCER % 8 == 0 && SM90_REGS_CONSUMER % 8 == 0 && SM90_REGS_PRODUCER >= 24 &&
             SM90_REGS_CONSUMER <= 256 && SM90_REGS_LAUNCH == 65536 / 384 / 8 * 8 &&
             128 * SM90_REGS_PRODUCER + 256 * SM90_REGS_CONSUMER <= 384 * SM90_REGS_LAUNCH;
    check(ok, "register exchange between producer and consumers balances", "producer %d, consumers %d, launch %d",
          SM90_REGS_PRODUCER, SM90_REGS_CONSUMER, SM90_REGS_LAUNCH);
}

int main(void) {
    registers();
    swizzle();
    tma_boxes();
    descriptors();
    accumulator();
    p_fragment();
    key_tiles();
    pipeline();
    return check_summary();
}
