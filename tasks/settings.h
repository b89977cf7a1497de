/* settings.h — what one run asks for (task, backends, the case grid, shapes, execution, the
 * tasks' own knobs), as the tasks read it, and the problem of one case built from it. The CLI
 * fills it from flags and suite files through one table (cli/options.c). */
#pragma once
#include "core/docs.h"
#include "core/problem.h"

#define OPTS_MAX_LIST 32

typedef struct {
    char task[32];
    char backends[OPTS_MAX_LIST][48];
    int n_backends;
    int64_t seq_len[OPTS_MAX_LIST];
    int n_seq_len;
    int64_t q_len[OPTS_MAX_LIST]; /* empty: q-len = seq-len */
    int n_q_len;
    attn_mask_t masks[3];
    int n_masks;
    int64_t batch, heads, kv_heads, head_dim, window;
    /* packed documents, at most one of: --doc-lens (kept lengths), --cu-seqlens (a .npy file of
     * offsets), --docs (a seeded distribution); each case's layout comes from settings_problem */
    const int64_t *doc_lens;
    int64_t n_doc_lens;
    char cu_seqlens[512];
    docs_spec_t docs;
    attn_dtype_t dtype;
    /* the dtype a distributed backend merges its partial results in (f32 or bf16: core/exec.h) */
    attn_dtype_t merge_dtype;
    double scale;
    int block_q, block_k;
    int ranks;
    int ulysses_degree; /* usp: U of U × R = P; 0 = gcd(P, H_kv) */
    double comm_timeout;
    char transport[16], layout[16], local_backend[24];
    attn_fault_t fault; /* hidden --inject-fault */
    int fault_rank, fault_step;
    double fault_delay_s;
    int fault_backward; /* the fault fires in the backward (exec.h) */
    uint64_t seed;
    int threads, repeats, warmup;
    int device; /* CUDA device ordinal for GPU backends */
    char out_dir[512];
    /* model task */
    char model_config[512], weights[512];
    int layers, vocab; /* 0: the default config's */
    /* peak: sgemm sizes, MiB per stream array */
    int64_t sizes[OPTS_MAX_LIST];
    int n_sizes;
    int64_t stream_mib;
    /* throughput sweep: n_k doubles from the first --seq-len up to sweep_max (0 = no sweep);
     * the next n is skipped when its projected time exceeds time_budget seconds (0 = none) */
    int64_t sweep_max;
    double time_budget;
    /* needle: depths in percent (--depths 0:100:10 or a list), facts per prompt, which are
     * asked (one: the first; all), mode (prefill | query-tail), haystack (a text file, "noise",
     * "" = the default corpus), tokenizer model ("" = the default), a results file to resume */
    double depths[101];
    int n_depths, needles;
    char ask[8], mode[16], haystack[512], tokenizer[512], resume[512];
    /* precision: the ranks P each distributed backend is swept over */
    int64_t precision_ranks[OPTS_MAX_LIST];
    int n_precision_ranks;
    /* approximate backends (docs/approximate.md): --sinks values (sinks_window), --topk values
     * (topk_blocks: a tile count, or a percent where topk_pct[i] > 0); a list is a sweep */
    int64_t sinks[OPTS_MAX_LIST], topk[OPTS_MAX_LIST];
    double topk_pct[OPTS_MAX_LIST];
    int n_sinks, n_topk;
    int64_t distractors; /* needle: distractor sentences per prompt (needle_prompt.h) */
    /* exactness, throughput, memory: which pass (--direction): ATTN_DIR_* */
    int direction;
} attn_opts_t;

enum { ATTN_DIR_FORWARD = 0, ATTN_DIR_BACKWARD = 1, ATTN_DIR_BOTH = 2 };
/* "forward", "backward", "both". */
const char *direction_name(int direction);

/* The document layout of n_k tokens the settings ask for (kept: core/docs.h), or NULL / 0. */
int settings_docs(const attn_opts_t *o, int64_t n_k, const int64_t **doc, int64_t *n_docs, attn_err_t *err);
/* Builds the problem of one case, its documents included; validates it (ATTN_EUSAGE on
 * impossible shapes). */
int settings_problem(const attn_opts_t *o, int64_t n_k, int64_t n_q, attn_mask_t mask, attn_problem_t *p,
                     attn_err_t *err);
/* How the run's cases execute (threads, device, ranks, transport, layout, timeout, faults; the
 * approximate backends' first --sinks and --topk values and --window: tasks/approx.h sweeps). */
attn_exec_t settings_exec(const attn_opts_t *o);
/* Validates every case of a run up front (shapes), before anything is computed. */
int settings_validate_run(const attn_opts_t *o, attn_err_t *err);
