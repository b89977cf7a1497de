/* plan.h — the distributed schedules as plain data, computed once for the CPU (ring.c,
 * ulysses.c) and the GPU (ring_cuda.cu, ulysses_cuda.cu) backends and tested exhaustively by
 * tests/test_plan.c: per ring step the source rank, the rows moved and every (query piece, key
 * piece) pair with its skip, key range and kernel band; for Ulysses the head map and counts. */
#pragma once
#include "comm/layout.h"
#include "core/problem.h"
#include "impls/parallel/piece_vis.h"

/* ---- the kernel band of one (query piece, key piece) pair (derivation: docs/distributed-plan.md) ---- */

static inline int64_t plan_floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* Query piece at positions a + S·i, key piece at b + S·j (same stride S), window w: the
 * kernel's query offset and window such that plan_band_visible(i, j) is the global mask. */
static inline void plan_band_for(int64_t a, int64_t b, int64_t S, int64_t w, int64_t *q_off, int64_t *win) {
    int64_t delta = a - b;
    *q_off = plan_floor_div(delta, S);
    *win = -plan_floor_div(-(w - delta), S) + *q_off;
}

/* What the kernel sees for local query i and local key j: the one visibility rule (core/mask.h)
 * at query position q_off + i with window win. The band carries no documents (document offsets
 * are global positions): a kernel in band coordinates takes them through piece_vis.h. */
static inline int plan_band_visible(int mask, int64_t q_off, int64_t win, int64_t i, int64_t j) {
    attn_vis_t v = {(attn_mask_t)mask, win, 0, 0};
    return mask_visible(&v, q_off + i, j);
}

/* ---- ring family (ring, striped, zigzag and their _cuda twins) ---- */

/* One (query piece, key piece) pair: q.pos is in key positions (offset by n_k − n_q). */
typedef struct {
    layout_piece_t q, k;
    int skip;            /* the mask hides every (i, j): nothing to compute */
    int64_t lo, hi;      /* local keys of k visible from at least one query of q: [lo, hi) */
    int64_t q_off, win;  /* the kernel's band (plan_band_for) */
} plan_pair_t;

/* What rank `rank` does at ring step `step`: compute on the block of `src` while sending that
 * block to rank + 1 and receiving next_src's block from rank − 1 (nothing moves at the last step). */
typedef struct {
    int src, next_src, send_to, recv_from;
    int64_t q_rows, k_rows;       /* local rows of the rank's queries and of the block it holds */
    int64_t rows_sent, rows_recv; /* K/V rows this step: bytes = rows · 2·B·H_kv·d·elem */
    int n_pairs;
    plan_pair_t pair[4];          /* query pieces outer, key pieces inner, in local order */
} plan_ring_step_t;

/* What the per-step kernel applies to pair pr under v (piece_vis.h): the band's mask and window,
 * and v's documents (doc: their copy where the kernel runs) at the pieces' global positions. */
static inline piece_vis_t plan_pair_vis(const attn_vis_t *v, const int64_t *doc, const plan_pair_t *pr) {
    piece_vis_t pv = {{v->mask, pr->win, doc, mask_has_docs(v) ? v->n_docs : 0}, pr->q_off, pr->q.pos.start,
                      pr->k.pos.start, pr->q.pos.stride};
    return pv;
}

/* Skip, key range and band of a query piece against a key piece under v (mask, window, documents:
 * a pair whose pieces share no document is skipped like one the causal mask hides). */
void plan_ring_pair(const attn_vis_t *v, const layout_piece_t *q, const layout_piece_t *k, plan_pair_t *out);
/* The query and key layouts of kind over P ranks. LAYOUT_ZIGZAG_BALANCED is zigzag whose 2P query
 * chunks are cut where the analytic critical path in tiles (the CPU engine's default tiles) is
 * least, among zigzag's even cut and cuts at equal work, each query row weighing its visible
 * keys under v plus a per-row α (documents make both uneven); keys follow the same bounds when
 * n_q = n_k, else even chunks (docs/packed-documents.md). Every other kind is layout_init's. */
int plan_layouts(attn_layout_kind_t kind, int64_t n_q, int64_t n_k, const attn_vis_t *v, int P, attn_layout_t *lq,
                 attn_layout_t *lk, attn_err_t *err);
/* Fills *out for (rank, step) of P ranks; ATTN_EUSAGE when the layout cannot take n or P. */
int plan_ring_step(attn_layout_kind_t kind, int64_t n_q, int64_t n_k, const attn_vis_t *v, int P, int rank, int step,
                   plan_ring_step_t *out, attn_err_t *err);
/* Visible (query, key) pairs of one piece pair: the unit of work of the analytic figures. */
double plan_pair_work(const attn_vis_t *v, const plan_pair_t *pr);
/* Score elements of the bq × bk tiles the tile engine computes for a piece pair (every key tile
 * that meets the visible range of a query tile, whole): the work the kernels actually do. */
double plan_pair_tiles(const attn_vis_t *v, const plan_pair_t *pr, int bq, int bk);
/* imbalance_tiles and critical_path_tiles of *out (the rest untouched) and, when work is
 * non-NULL, each rank's tile work, for the tile engine's bq × bk tiles. */
void plan_ring_expect_tiles(attn_layout_kind_t kind, int64_t n_q, int64_t n_k, const attn_vis_t *v, int P, int bq,
                            int bk, attn_dist_expect_t *out, double *work);
/* The analytic figures of the whole ring (imbalance, critical path, bytes per rank for rows of
 * row_bytes = 2·B·H_kv·d·elem bytes) and, when work is non-NULL, each rank's visible pairs. */
void plan_ring_expect(attn_layout_kind_t kind, int64_t n_q, int64_t n_k, const attn_vis_t *v, int P, double row_bytes,
                      attn_dist_expect_t *out, double *work);

/* ---- Ulysses ---- */

/* Rank q's heads after the re-shard: query heads [q0, q0 + hq), kv heads [kv0, kv0 + kvn).
 * lines_up: local head j reads local kv head j / (hq / kvn) (a single-rank kernel's GQA map);
 * otherwise the rank expands its kv heads to hq locally (plan_ulysses_kv_of). */
typedef struct {
    int64_t hq, q0, kv0, kvn;
    int lines_up;
} plan_heads_t;

/* The problem a rank attends after the re-shard: its hq heads and, when they line up, its kvn kv
 * heads; otherwise one kv head per query head (expanded locally). Ulysses and usp. */
static inline attn_problem_t plan_heads_problem(const attn_problem_t *p, const plan_heads_t *h) {
    attn_problem_t lp = *p;
    lp.heads = h->hq;
    lp.kv_heads = h->lines_up ? h->kvn : h->hq;
    return lp;
}

/* Both all-to-alls as rank `rank` runs them, per peer r, in elements. The in exchange moves
 * [Q | K | V] of the sender's tokens for the receiver's heads (one message per peer; the CPU
 * sends the Q part and the K|V part as two exchanges, *_q_off and *_kv_off); the out exchange
 * moves [O | LSE] (d + 1 values a row) of the receiver's tokens for the sender's heads. */
typedef struct {
    int P, rank;
    int64_t group;                          /* H / H_kv query heads per kv head */
    plan_heads_t heads[ATTN_MAX_RANKS];     /* every rank's heads */
    int64_t m[ATTN_MAX_RANKS], k[ATTN_MAX_RANKS]; /* every rank's query and key token counts */
    int64_t send_q[ATTN_MAX_RANKS], send_kv[ATTN_MAX_RANKS], recv_q[ATTN_MAX_RANKS], recv_kv[ATTN_MAX_RANKS];
    int64_t send_out[ATTN_MAX_RANKS], recv_out[ATTN_MAX_RANKS];
    int64_t send_in_off[ATTN_MAX_RANKS], recv_in_off[ATTN_MAX_RANKS];   /* [Q | K | V] as one message */
    int64_t send_q_off[ATTN_MAX_RANKS], recv_q_off[ATTN_MAX_RANKS];     /* Q alone */
    int64_t send_kv_off[ATTN_MAX_RANKS], recv_kv_off[ATTN_MAX_RANKS];   /* K | V alone */
    int64_t send_out_off[ATTN_MAX_RANKS], recv_out_off[ATTN_MAX_RANKS];
    int64_t in_send_total, in_recv_total, out_send_total, out_recv_total;
} plan_ulysses_t;

/* Rank q's heads of H over H_kv split over P ranks (H % P == 0 and H % H_kv == 0 assumed). */
plan_heads_t plan_ulysses_heads(int64_t H, int64_t Hkv, int P, int q);
/* 1 when H splits over P ranks and every rank's kv heads line up: the GPU backend's condition. */
int plan_ulysses_kernel_heads(int64_t H, int64_t Hkv, int P);
/* The kv head (index into the rank's kvn received heads) that its local query head j reads. */
static inline int64_t plan_ulysses_kv_of(const plan_heads_t *h, int64_t group, int64_t j) {
    return (h->q0 + j) / group - h->kv0;
}
/* The row of the whole sequence where rank q's tokens land after the in exchange: the ranks'
 * counts (m or k) before q. Under the contiguous layout that is the global position of q's first
 * token, so row t of the gathered sequence is position t and document offsets hold as they are
 * (ulysses_cuda; tests/test_piece_vis.c). */
static inline int64_t plan_ulysses_row0(const int64_t *count, int q) {
    int64_t at = 0;
    for (int r = 0; r < q; r++)
        at += count[r];
    return at;
}
/* Fills *out for rank `rank` (B, d: batch and head dim; tokens under layout kind); ATTN_EUSAGE
 * when H % P, H % H_kv, or the layout declines. */
int plan_ulysses(int64_t B, int64_t H, int64_t Hkv, int64_t d, int64_t n_q, int64_t n_k, attn_layout_kind_t kind, int P,
                 int rank, plan_ulysses_t *out, attn_err_t *err);

/* ---- usp: Ulysses degree U × ring degree R = P (derivation: docs/usp.md) ---- */

/* The mesh: R Ulysses groups of U ranks; group g is position g of U rings (one per member u).
 * The ranks of group g are those whose shards under the P-rank layout make up the R-rank
 * layout's shard g: g·U + u for contiguous and zigzag, g + R·u for striped. */
typedef struct {
    attn_layout_kind_t kind;
    int P, U, R;
} plan_usp_mesh_t;

/* The default Ulysses degree: gcd(P, H_kv), the largest U over which every rank gets whole kv
 * heads of its own (no kv head sent to two ranks); the ring takes the rest of P. */
int plan_usp_default_degree(int64_t Hkv, int P);
/* Checks U | P and U | H (U = 0: the default) and fills *m; ATTN_EUSAGE otherwise. */
int plan_usp_mesh(attn_layout_kind_t kind, int64_t H, int64_t Hkv, int P, int U, plan_usp_mesh_t *m, attn_err_t *err);
/* rank → (group g ∈ [0, R), member u ∈ [0, U)) and back. */
void plan_usp_coords(const plan_usp_mesh_t *m, int rank, int *group, int *member);
int plan_usp_rank(const plan_usp_mesh_t *m, int group, int member);
/* Tokens rank a holds under the P-rank layout that belong to group g's shard under the R-rank
 * layout (n tokens): the rows a sends g's members (all of a's rows when a is in g and the two
 * layouts nest, e.g. n % P = 0; uneven n moves a few boundary rows across groups). */
int64_t plan_usp_rows(const plan_usp_mesh_t *m, int64_t n, int a, int g);

/* Rank `rank`'s side of usp, per peer r in elements, like plan_ulysses_t: the in exchange moves
 * Q of the sender's rows in the receiver's group shard for the receiver's heads, and K | V the
 * same for the kv heads it reads; the out exchange moves [O | LSE] back. Between them the rank
 * runs the ring (plan_ring_step over R, position `group`) on its group's shard with its heads. */
typedef struct {
    plan_usp_mesh_t mesh;
    int rank, group, member, send_to, recv_from; /* ring neighbours: groups g ± 1, same member */
    int64_t ghq;                                  /* H / U query heads per rank */
    plan_heads_t heads;                           /* this rank's heads: plan_ulysses_heads over U */
    int64_t ring_q, ring_k;                       /* its group shard's query and key rows */
    int64_t send_q[ATTN_MAX_RANKS], send_kv[ATTN_MAX_RANKS], recv_q[ATTN_MAX_RANKS], recv_kv[ATTN_MAX_RANKS];
    int64_t send_out[ATTN_MAX_RANKS], recv_out[ATTN_MAX_RANKS];
    int64_t send_q_off[ATTN_MAX_RANKS], recv_q_off[ATTN_MAX_RANKS];
    int64_t send_kv_off[ATTN_MAX_RANKS], recv_kv_off[ATTN_MAX_RANKS];
    int64_t send_out_off[ATTN_MAX_RANKS], recv_out_off[ATTN_MAX_RANKS];
    int64_t q_send_total, q_recv_total, kv_send_total, kv_recv_total, out_send_total, out_recv_total;
} plan_usp_t;

int plan_usp(const plan_usp_mesh_t *m, int64_t B, int64_t H, int64_t Hkv, int64_t d, int64_t n_q, int64_t n_k,
             int rank, plan_usp_t *out, attn_err_t *err);
/* The analytic figures: bytes per rank (all-to-all in, the ring's K/V rows of 2·B·kvn·d·elem,
 * all-to-all out), and the ring's balance over the R groups (every member of a group does the
 * same work on its heads). */
void plan_usp_expect(const plan_usp_mesh_t *m, int64_t B, int64_t H, int64_t Hkv, int64_t d, int64_t n_q,
                     int64_t n_k, const attn_vis_t *v, double elem, attn_dist_expect_t *out);
