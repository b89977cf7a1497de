/* simulate.h — `attnbench simulate`'s model: time per attention call and memory per rank of the
 * ring family, Ulysses and USP at any P, from a compute profile (FLOP/s vs tile rows) and a
 * two-tier link model (latency, bandwidth), over the schedule of impls/parallel/plan.h.
 * Formulas and what the model ignores: docs/simulate.md. */
#pragma once
#include "comm/layout.h"
#include "core/mask.h"
#include "core/problem.h"

enum { SIM_MAX_POINTS = 32, SIM_EXACT_MAX_P = ATTN_MAX_RANKS };

/* Achieved attention FLOP/s (4·d per visible (query, key) pair per head) of one rank's tile on a
 * rows × rows block, at a few sizes; interpolated linearly in log(rows), clamped at the ends. */
typedef struct {
    char name[64], source[32], device[64]; /* source: "measured" (here, now) | "assumed" | a file's own word */
    double elem_bytes;                     /* bytes per Q/K/V/O element on the wire and in memory */
    double memory_bytes;                   /* per device: what `fits` compares against */
    int n_points;
    double rows[SIM_MAX_POINTS], flops_per_s[SIM_MAX_POINTS];
} sim_profile_t;

typedef struct {
    double latency_s, bandwidth_Bps; /* one message of b bytes: latency + b / bandwidth */
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
double sim_message_s(const sim_tier_t *t, double bytes);
/* One all-to-all of `bytes` to each of the P−1 others over consecutive ranks placed on nodes. */
double sim_alltoall_s(const sim_links_t *l, int64_t P, double bytes);

/* Visible (query, key) pairs of one plan pair in O(1), from its kernel band (plan_band_for). */
double sim_pair_pairs(attn_mask_t mask, int64_t window, int64_t q_count, int64_t k_count, int64_t q_off, int64_t win);
/* Each rank's visible pairs over the whole ring (P ≤ SIM_EXACT_MAX_P), from plan_ring_step. */
int sim_ring_work(attn_layout_kind_t kind, int64_t n, attn_mask_t mask, int64_t window, int P, double *work);
/* USP's Ulysses degree: the largest U dividing P and H, at most the node size. */
int64_t sim_usp_degree(int64_t P, int64_t H, int64_t node_size);

/* One scheme at P ranks: fills *out (out->ok 0 with a reason when the scheme declines). */
void sim_run(sim_scheme_t s, const sim_shape_t *sh, int64_t P, const sim_profile_t *pr, const sim_links_t *l,
             sim_result_t *out);
