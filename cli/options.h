/* options.h — the flags every subcommand shares, parsed once. Command-line flags and JSON
 * suite files (--config) go through the same setter, opts_set(), so a key means the same thing
 * and is validated the same way in both places. */
#pragma once
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
    attn_dtype_t dtype;
    double scale;
    int block_q, block_k;
    int ranks;
    double comm_timeout;
    char transport[16], layout[16], local_backend[24];
    attn_fault_t fault; /* hidden --inject-fault */
    int fault_rank, fault_step;
    uint64_t seed;
    int threads, repeats, warmup;
    int device; /* CUDA device ordinal for GPU backends */
    char out_dir[512];
    char config[512];
    /* model task */
    char model_config[512], weights[512];
    int layers, vocab; /* 0: the default config's */
    /* attend */
    char q_path[512], k_path[512], v_path[512], out_path[512], lse_path[512];
    /* peak */
    int64_t sizes[OPTS_MAX_LIST];
    int n_sizes;
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
    int help;
} attn_opts_t;

void opts_defaults(attn_opts_t *o);
/* Sets one option by its flag name without dashes ("seq-len", "heads", ...) from text.
 * ATTN_EUSAGE with a message naming the option on any bad value or unknown name. */
int opts_set(attn_opts_t *o, const char *key, const char *value, attn_err_t *err);
/* Parses argv after the subcommand; records which keys were given so they override config. */
int opts_parse_argv(attn_opts_t *o, int argc, char **argv, attn_err_t *err);
/* Loads a suite file: either one run object {"task": ..., ...} or {"runs": [{...}, ...]} with
 * top-level keys shared by all runs. Each run starts from `base` (defaults), takes the file's
 * keys, then the command line's explicit flags (argc/argv) on top. Allocates *runs. */
int opts_load_config(const char *path, int argc, char **argv, attn_opts_t **runs, int *n_runs, attn_err_t *err);
/* Builds the problem of one case; validates it (ATTN_EUSAGE on impossible shapes). */
int opts_problem(const attn_opts_t *o, int64_t n_k, int64_t n_q, attn_mask_t mask, attn_problem_t *p, attn_err_t *err);
/* The execution settings of the run (threads, device, ranks, transport, layout, faults). */
attn_exec_t opts_exec(const attn_opts_t *o);
/* Validates every case of a run up front (shapes, backend names), before anything is computed. */
int opts_validate_run(const attn_opts_t *o, attn_err_t *err);
/* Usage text of the shared flags. */
void opts_print_flags(FILE *f);
