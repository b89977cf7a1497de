/* simulate.h — `attnbench simulate`'s model: time per attention call and memory per rank of the
 * ring family, Ulysses and USP at any P, from a compute profile (FLOP/s vs tile rows) and a
 * two-tier link model (latency, bandwidth), over the schedule of impls/parallel/plan.h.
 * Formulas and what the model ignores: docs/simulate.md. */
#pragma once
#include "comm/layout.h"
#include "core/mask.h"
#include "core/problem.h"

enum { SIM_MAX_POINTS = 32, SIM_EXACT_MAX_P = ATTN_MAX_RANKS };

/* What the CPU tile engine (impls/cpu/tile_engine.c) really spends, measured: it walks bq × bk
 * micro-tiles, computes every one the mask does not hide in full, masks the partially visible
 * ones (the diagonal) element by element, and a ring step merges each pair's partial result.
 * n == 0: not given, the FLOP/s points alone model the compute. */
typedef struct {
    int64_t bq, bk, head_dim; /* the micro-tile and the d it was timed at (costs scale with d) */
    int n;                    /* points: key rows of the piece → seconds per full micro-tile */
    double krows[SIM_MAX_POINTS], full_s[SIM_MAX_POINTS];
    double part_s;      /* one partially masked micro-tile: the full one plus the mask */
    double merge_row_s; /* ring.c's log-sum-exp merge of one query row of one head */
    double call_s;      /* fixed cost of one tile_attend_f32 call (workspace, dispatch) */
} sim_tiles_t;

/* Achieved attention FLOP/s (4·d per visible (query, key) pair per head) of one rank's tile on a
 * rows × rows block, at a few sizes; interpolated linearly in log(rows), clamped at the ends.
 * With tiles.n > 0 the compute is the tile model instead (docs/simulate.md). */
typedef struct {
    char name[64], source[32], device[64]; /* source: "measured" (here, now) | "assumed" | a file's own word */
    double elem_bytes;                     /* bytes per Q/K/V/O element on the wire and in memory */
    double memory_bytes;                   /* per device: what `fits` compares against */
    int n_points;
    double rows[SIM_MAX_POINTS], flops_per_s[SIM_MAX_POINTS];
    sim_tiles_t tiles;
} sim_profile_t;

/* A measured table: seconds at bytes[i] (rising), interpolated linearly in log-log; below the
 * first point its time, beyond the last the last point's bandwidth. */
typedef struct {
    int n;
    double bytes[SIM_MAX_POINTS], seconds[SIM_MAX_POINTS];
} sim_table_t;

/* One tier. The simple form (assumed tiers): a message of b bytes takes latency + b / bandwidth.
 * Measured tiers (an `attnbench comm` file) carry tables instead: `oneway` the ping-pong
 * one-way time, `exchange` the all-to-all time among exchange_ranks ranks (every rank sending
 * and receiving at once, as a ring step does); latency and bandwidth then summarise the ends. */
typedef struct {
    double latency_s, bandwidth_Bps;
    sim_table_t oneway, exchange;
    int64_t exchange_ranks;
} sim_tier_t;

/* Ranks 0 … node_size−1 share a node (intra tier), the next node_size the next, and so on. */
typedef struct {
    char name[64], source[32];
    int64_t node_size;
    sim_tier_t intra, inter;
} sim_links_t;

typedef enum { SIM_RING, SIM_STRIPED, SIM_ZIGZAG, SIM_ULYSSES, SIM_USP, SIM_N_SCHEMES } sim_scheme_t;

typedef struct {
    int64_t B, H, Hkv, d, n; /* n = n_q = n_k */
    attn_mask_t mask;
    int64_t window;
    int64_t ulysses_degree; /* usp: U (0 = sim_usp_degree's choice) */
    int closed_form;        /* 1: steps in closed form even where the plan could run (the tests) */
} sim_shape_t;

typedef struct {
    int ok;              /* 0: the scheme cannot run this case; reason says why */
    char reason[200];
    double time_s;       /* Σ over steps of the slowest rank's max(compute, comm), plus all-to-alls */
    double compute_s;    /* the critical path: Σ over steps of the slowest rank's compute */
    double comm_s;       /* Σ over steps of the slowest rank's communication */
    double exposed_s;    /* time_s − compute_s: communication not hidden behind compute */
    double memory_bytes; /* per rank, the busiest */
    double bytes_sent;   /* per rank, the busiest */
    double work_pairs;   /* visible (query, key) pairs of the busiest rank, per head */
    int64_t ulysses_degree, ring_degree;
    int exact;           /* 1: every (rank, step) from plan_ring_step; 0: the steps in closed form */
} sim_result_t;

const char *sim_scheme_name(sim_scheme_t s);
int sim_scheme_parse(const char *name, sim_scheme_t *out);

double sim_flops(const sim_profile_t *pr, double rows);
double sim_table_s(const sim_table_t *t, double bytes);
/* One message of `bytes`, one way (nothing else moving). */
double sim_message_s(const sim_tier_t *t, double bytes);
/* Every rank of the tier sends `bytes` in all and receives as many at once (a ring step, or an
 * all-to-all's total): the exchange table at that total, else one message. */
double sim_exchange_s(const sim_tier_t *t, double bytes);
/* One all-to-all of `bytes` to each of the P−1 others over consecutive ranks placed on nodes. */
double sim_alltoall_s(const sim_links_t *l, int64_t P, double bytes);

/* Micro-tiles the tile engine computes for one piece (q_count × k_count, band q_off / win as in
 * sim_pair_pairs), weighted by the rows of each query tile over bq: full ones and partially
 * masked ones. O(q_count / bq). */
void sim_pair_tiles(attn_mask_t mask, int64_t q_count, int64_t k_count, int64_t q_off, int64_t win, int64_t bq,
                    int64_t bk, double *full, double *partial);
/* Seconds one rank spends on one piece for BH (batch × heads) heads of dimension d: the tile
 * model when the profile has one, else visible pairs at the profile's FLOP/s; `merge`: a ring
 * step, which merges the piece's rows into the running result. */
double sim_pair_s(const sim_profile_t *pr, attn_mask_t mask, int64_t window, int64_t q_count, int64_t k_count,
                  int64_t q_off, int64_t win, double BH, int64_t d, int merge);
/* Visible (query, key) pairs of one plan pair in O(1), from its kernel band (plan_band_for). */
double sim_pair_pairs(attn_mask_t mask, int64_t window, int64_t q_count, int64_t k_count, int64_t q_off, int64_t win);
/* Each rank's visible pairs over the whole ring (P ≤ SIM_EXACT_MAX_P), from plan_ring_step. */
int sim_ring_work(attn_layout_kind_t kind, int64_t n, attn_mask_t mask, int64_t window, int P, double *work);
/* USP's Ulysses degree: the largest U dividing P and H, at most the node size. */
int64_t sim_usp_degree(int64_t P, int64_t H, int64_t node_size);

/* One scheme at P ranks: fills *out (out->ok 0 with a reason when the scheme declines). */
void sim_run(sim_scheme_t s, const sim_shape_t *sh, int64_t P, const sim_profile_t *pr, const sim_links_t *l,
             sim_result_t *out);
