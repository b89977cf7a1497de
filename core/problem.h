/* problem.h — what one attention call computes: shapes, mask, scale, dtype, tiling.
 * O = softmax(Q Kᵀ · scale + mask) V with query row r at absolute position n_k − n_q + r.
 * Compute kernels see rows through attn_span_t (global position = start + stride·r), so the
 * same kernel serves a whole sequence and a distributed rank's piece of it. */
#pragma once
#include "core/common.h"
#include "core/exec.h"
#include "core/mask.h"

/* ATTN_BF16 and ATTN_F16 (GPU backends): the host arrays are float32 like ATTN_F32; the backend
 * rounds Q, K, V to bfloat16 / IEEE binary16 on the device, computes with float32 accumulation and
 * returns O and LSE in float32. CPU backends decline both. */
typedef enum { ATTN_F32 = 0, ATTN_F64, ATTN_BF16, ATTN_F16 } attn_dtype_t;
typedef struct {
    int64_t batch, heads, kv_heads, head_dim; /* B, H, H_kv, d */
    int64_t n_q, n_k;                         /* query rows, key rows */
    attn_mask_t mask;
    int64_t window;       /* w for ATTN_MASK_WINDOW: key j visible iff i − w < j ≤ i */
    double scale;         /* 0 means the default 1/√d */
    attn_dtype_t dtype;   /* element type of Q, K, V, O; LSE always matches it (bf16: see above) */
    int block_q, block_k; /* tile sizes for tiled backends; 0 = backend default */
    /* Packed documents (core/mask.h attn_vis_t): n_docs + 1 global offsets 0 … n_k, or NULL / 0
     * for one document. Key and query positions are global, so with n_q < n_k the queries (at
     * the end) belong to whichever documents hold their positions. The array is not owned: the
     * layouts core/docs.h builds live until the process ends, so copies of a problem (records,
     * ranks) may keep the pointer. */
    const int64_t *doc;
    int64_t n_docs;
} attn_problem_t;

/* The visibility rule's inputs of a problem. */
static inline attn_vis_t problem_vis(const attn_problem_t *p) {
    attn_vis_t v = {p->mask, p->window, p->doc, p->n_docs};
    return v;
}

enum { ATTN_MAX_RANKS = 64 };

/* Per-rank figures a distributed backend reports when asked (attn_io_t.dist non-NULL). */
typedef struct {
    int ranks;
    double compute_s[ATTN_MAX_RANKS];  /* thread CPU time in compute and merges */
    double comm_s[ATTN_MAX_RANKS];     /* wall time inside communication calls */
    double exposed_s[ATTN_MAX_RANKS];  /* wall time blocked waiting for communication */
    double bytes_sent[ATTN_MAX_RANKS], bytes_recv[ATTN_MAX_RANKS];
    double blocks_computed[ATTN_MAX_RANKS], blocks_skipped[ATTN_MAX_RANKS];
    double critical_path_s;            /* Σ over steps of the slowest rank's compute in that step */
    double wall_s;                     /* slowest rank's wall time from the start barrier to its last step */
    double device_bytes[ATTN_MAX_RANKS]; /* GPU backends: each rank's device buffers (0 on the CPU) */
} attn_dist_stats_t;

/* What a distributed backend's figures should be, from the problem alone (its `expect`). Work
 * is counted in visible (query, key) pairs, so masks and uneven shards are exact. */
typedef struct {
    double imbalance;     /* max/mean work over ranks */
    double critical_path; /* Σ over steps of the busiest rank's work, over mean work per rank (1 = ideal) */
    /* The same two counted in the score elements of the tiles the ranks' kernels compute (a tile
     * the mask touches at all is computed whole): with short documents cost follows tiles, not
     * visible pairs. 0 where a backend does not count them. */
    double imbalance_tiles, critical_path_tiles;
    double bytes_sent[ATTN_MAX_RANKS], bytes_recv[ATTN_MAX_RANKS];
} attn_dist_expect_t;

/* Tensors of one call, row-major: Q (B,H,n_q,d), K,V (B,H_kv,n_k,d), O (B,H,n_q,d),
 * LSE (B,H,n_q) natural log. Element type is problem.dtype. */
typedef struct {
    const void *q, *k, *v;
    void *o, *lse;
    attn_dist_stats_t *dist; /* optional */
    /* forward_rank only: q, k, v, o, lse are this rank's shards under the backend's layout,
     * (outer, local rows, d) as dist_scatter leaves them, not the whole tensors — the model
     * under a distributed backend keeps its tokens sharded through every layer (dist_model.h). */
    int sharded;
    /* Optional: a GPU backend writes here the seconds its compute took on the device, timed with
     * CUDA events around the kernels only (inputs already on the device and converted; copies
     * excluded). The throughput task reports that figure for GPU backends. */
    double *device_s;
    /* Optional: an approximate backend (attn_backend_t.approximate) writes here the (query, key)
     * pairs it attended, summed over batch × heads; exact ones leave it alone. */
    double *keys_visited;
} attn_io_t;

/* Tensors of one backward call (attn_backend_t.backward): the forward's Q, K, V, O and LSE as
 * in attn_io_t, the output gradient dO (B,H,n_q,d); out: dQ (B,H,n_q,d), dK and dV
 * (B,H_kv,n_k,d), each kv head's gradient summed over the query heads of its group. Element
 * type problem.dtype. A row whose LSE is −∞ (it sees no key) contributes nothing. */
typedef struct {
    const void *q, *k, *v, *o, *lse, *d_o;
    void *dq, *dk, *dv;
    attn_dist_stats_t *dist; /* optional, as in attn_io_t */
    double *device_s;        /* optional, as in attn_io_t: a GPU backward's kernels alone */
} attn_grad_io_t;

double problem_scale(const attn_problem_t *p);
const char *dtype_name(attn_dtype_t t);
int dtype_parse(const char *s, attn_dtype_t *out);
/* Bytes of one element of the host arrays (bf16, f16: 4, they hold float32). */
size_t dtype_size(attn_dtype_t t);
/* 1 for the 16-bit device dtypes (bf16, f16): float32 host arrays, rounded on the device. */
int dtype_is_16bit(attn_dtype_t t);

/* Shape checks every user problem must pass before any compute; ATTN_EUSAGE with a message. */
int problem_validate(const attn_problem_t *p, attn_err_t *err);
/* Document offsets off[0..n_docs]: 0 first, n_k last, never decreasing (empty documents allowed). */
int problem_check_docs(const int64_t *off, int64_t n_docs, int64_t n_k, attn_err_t *err);

/* Default spans of a whole problem: queries at the end of the key sequence. */
attn_span_t problem_q_span(const attn_problem_t *p);
attn_span_t problem_k_span(const attn_problem_t *p);

/* Number of visible (query, key) pairs per (batch, head), for FLOP counting: 4·d per pair. */
double problem_visible_pairs(const attn_problem_t *p);
double problem_flops(const attn_problem_t *p);

/* The last step of every whole-problem forward (docs/nonfinite.md): every row of a validated
 * problem sees at least one key, so a row whose LSE came out −∞ had only −∞ scores (from
 * infinite inputs) and its softmax is 0/0: its O and LSE become NaN, as in the float64
 * reference. `rows` rows of O (rows, d) and LSE (rows) in dtype t (f32 or f64). A piece of a
 * problem (a ring step) keeps O = 0, LSE = −∞ for such rows: that is its correct share. */
void problem_finish_rows(attn_dtype_t t, void *o, void *lse, size_t rows, int64_t d);

/* Bytes of Q, K, V, O and LSE together. */
size_t problem_io_bytes(const attn_problem_t *p);
size_t problem_numel_q(const attn_problem_t *p);
size_t problem_numel_kv(const attn_problem_t *p);
size_t problem_numel_lse(const attn_problem_t *p);
/* Bytes of dO, dQ, dK and dV together (what a backward call adds to problem_io_bytes). */
size_t problem_grad_bytes(const attn_problem_t *p);
/* FLOPs of a backward call by FlashAttention's convention: 2.5 × problem_flops (five GEMMs
 * of the forward's size against its two). */
double problem_backward_flops(const attn_problem_t *p);
