/* attnbench/backend.h — the public plugin ABI: a shared object built against this header alone
 * exports `attnbench_plugin`, a table of attention backends that `attnbench --plugin PATH.so`
 * runs through every task and gate like its built-in ones. Self-contained (C99, <stddef.h> and
 * <stdint.h> only); attnbench translates it to its internal structs in impls/plugin.c. */
#ifndef ATTNBENCH_BACKEND_H
#define ATTNBENCH_BACKEND_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version 1: the problem with packed documents, the forward and the optional backward. A
 * layout change bumps the number; a plugin built for another version (0 was the unstable draft
 * without documents and backward) is refused at load. */
#define ATTNBENCH_ABI_VERSION 1
#define ATTNBENCH_PLUGIN_SYMBOL "attnbench_plugin"

/* Key j visible from query i (global positions): NONE all; CAUSAL j ≤ i; WINDOW i − w < j ≤ i;
 * with packed documents (attnb_problem_t.doc), also j in i's document. */
typedef enum { ATTNB_MASK_NONE = 0, ATTNB_MASK_CAUSAL = 1, ATTNB_MASK_WINDOW = 2 } attnb_mask_t;
/* Element type of Q, K, V, O and LSE. BF16: the arrays hold float32 values that bfloat16
 * represents exactly (Q, K, V); compute in bfloat16 with float32 accumulation, return float32. */
typedef enum { ATTNB_F32 = 0, ATTNB_F64 = 1, ATTNB_BF16 = 2 } attnb_dtype_t;

/* One attention call: O = softmax(Q Kᵀ · scale + mask) V, LSE = log Σ_j exp(scale · q·k_j) over
 * visible keys, natural log. Query row r is at global position q_start + q_stride·r, key row c
 * at k_start + k_stride·c (a whole problem: q_start = n_k − n_q, k_start = 0, strides 1). */
typedef struct {
    int64_t batch, heads, kv_heads, head_dim; /* B, H, H_kv (H % H_kv == 0, GQA), d */
    int64_t n_q, n_k;
    int32_t mask;      /* attnb_mask_t */
    int32_t dtype;     /* attnb_dtype_t */
    int64_t window;    /* w of ATTNB_MASK_WINDOW */
    double scale;      /* already resolved (1/√d unless the user set it), never 0 */
    int64_t q_start, q_stride, k_start, k_stride;
    int32_t block_q, block_k; /* the user's tile sizes (--block-q/-k), 0 = the plugin's choice */
    /* Packed documents (FlashAttention's cu_seqlens): doc[0..n_docs], non-decreasing global
     * positions 0 … (whole problem's n_k), document d holding [doc[d], doc[d+1]) (empty ones
     * allowed); a query sees keys of its own document only. NULL (n_docs 0 or 1): one document.
     * Host memory, valid during the call; a plugin that cannot honour it declines in supports. */
    const int64_t *doc;
    int64_t n_docs;
} attnb_problem_t;

/* The document holding global position i: the last d with doc[d] ≤ i (binary search). */
static inline int64_t attnb_doc_of(const attnb_problem_t *p, int64_t i) {
    int64_t a = 0, b = p->n_docs - 1;
    while (a < b) {
        int64_t mid = a + (b - a + 1) / 2;
        if (p->doc[mid] <= i)
            a = mid;
        else
            b = mid - 1;
    }
    return a;
}

/* The rule above for query row r and key row c of p (attnbench's own, core/mask.h). */
static inline int attnb_visible(const attnb_problem_t *p, int64_t r, int64_t c) {
    int64_t i = p->q_start + p->q_stride * r, j = p->k_start + p->k_stride * c;
    if (!(p->mask == ATTNB_MASK_NONE || (j <= i && (p->mask != ATTNB_MASK_WINDOW || j > i - p->window))))
        return 0;
    if (!p->doc || p->n_docs <= 1)
        return 1;
    int64_t d = attnb_doc_of(p, i);
    return j >= p->doc[d] && j < p->doc[d + 1];
}

/* Host arrays, row-major: Q (B, H, n_q, d), K and V (B, H_kv, n_k, d), O (B, H, n_q, d),
 * LSE (B, H, n_q). A row that sees no key gets O = 0, LSE = −∞. */
typedef struct {
    const void *q, *k, *v;
    void *o, *lse;
    void *workspace;        /* workspace() bytes, 64-byte aligned, or NULL when it asked none */
    size_t workspace_bytes;
    int32_t threads;        /* worker threads the plugin may use (≥ 1) */
    /* Out, optional: a GPU plugin writes the seconds its kernels took on the device (events around
     * the kernels only); the throughput task then reports that instead of host wall time. */
    double device_seconds;
} attnb_call_t;

/* Host arrays of one backward call, element type p->dtype, row-major as in attnb_call_t: in Q,
 * K, V, O, LSE (the backend's own forward's) and dO (B, H, n_q, d); out dQ (B, H, n_q, d), dK
 * and dV (B, H_kv, n_k, d), overwritten, each kv head's gradient summed over the query heads
 * of its group. A row with LSE = −∞ contributes nothing. With P = exp(scale·QKᵀ − LSE) on
 * visible pairs: dV = Pᵀ dO, dS = P ∘ (dO Vᵀ − rowsum(dO ∘ O)), dQ = scale·dS K, dK = scale·dSᵀ Q. */
typedef struct {
    const void *q, *k, *v, *o, *lse, *d_o;
    void *dq, *dk, *dv;
    void *workspace;        /* backward_workspace() bytes, 64-byte aligned, or NULL */
    size_t workspace_bytes;
    int32_t threads;
} attnb_grad_call_t;

typedef struct {
    const char *name;        /* [a-z0-9_], 1..40 characters, unique among all backends */
    const char *device;      /* "cpu" or "cuda" (a cuda plugin still gets and returns host arrays) */
    const char *description; /* one line for `attnbench list` */
    /* 1 when the plugin computes p; else 0 and a reason ("declines mask window: ..."). */
    int (*supports)(const attnb_problem_t *p, char *reason, size_t reason_len);
    /* Bytes of scratch the harness allocates for forward (counted by the memory task); may be NULL. */
    size_t (*workspace)(const attnb_problem_t *p);
    /* 0 on success; otherwise non-zero with a message in msg. p has passed supports(). May be
     * called from several threads at once (the ranks of a local run, ulysses' head shards). */
    int (*forward)(const attnb_problem_t *p, attnb_call_t *call, char *msg, size_t msg_len);
    /* Optional: the backward pass (0 on success, else non-zero with msg), called after this
     * backend's forward on the same p; p has passed supports(). NULL: the backend declines
     * backward cases ("has no backward pass"). Same threading rule as forward. */
    int (*backward)(const attnb_problem_t *p, attnb_grad_call_t *call, char *msg, size_t msg_len);
    /* Bytes of scratch the harness allocates for backward; may be NULL (none). */
    size_t (*backward_workspace)(const attnb_problem_t *p);
} attnb_backend_t;

typedef struct {
    int32_t abi_version;     /* ATTNBENCH_ABI_VERSION the plugin was built with: first, always */
    const char *name;        /* the plugin, recorded with its records */
    const char *version;     /* its own version string */
    int32_t n_backends;
    const attnb_backend_t *backends;
} attnb_plugin_t;

/* The one symbol a plugin exports (ATTNBENCH_PLUGIN_SYMBOL). */
const attnb_plugin_t *attnbench_plugin(void);

#ifdef __cplusplus
}
#endif
#endif
