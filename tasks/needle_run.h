/* needle_run.h — one needle prompt through the retrieval model: the context, then each asked
 * question with greedy decoding of the value (needle_prompt.h, needle_model.h). */
#pragma once
#include "tasks/needle_prompt.h"

typedef enum { NEEDLE_PREFILL = 0, NEEDLE_QUERY_TAIL } needle_mode_t;

typedef struct {
    const attn_backend_t *be; /* the backend under test */
    attn_problem_t tmpl;      /* its problem template: mask (causal or window), window … */
    attn_exec_t x;            /* how it runs: threads, ranks, transport, layout, faults */
    needle_mode_t mode;
    int ask_all;              /* ask every fact; else facts[0] only */
    int64_t chunk;            /* query-tail context build: tokens per model call (0: 65536) */
    /* The dense layers of the backend's own forwards (prefill context, questions) when not on the
     * host: the GPU's for a GPU backend (impls/cuda/dense_cuda.h); NULL = host cblas. The
     * query-tail band's too when it runs with `band`; the CPU band keeps the host's. */
    const model_dense_t *dense;
    /* With `dense` and a cache in kv_space on its device: the whole forward resident there
     * (model/devops.h; impls/cuda/model_dev.h), only tokens up and logit rows down. NULL: `dense`
     * per call. */
    const struct model_devops *devops;
    /* The KV cache's memory when not the host's: the GPU's for a GPU backend that reads K/V there
     * (attn_backend_t.device_kv; impls/cuda/kv_device.h). The context's rows are put there once
     * per depth, each question's and decoding step's rows once as they come, and every attention
     * call reads the cache where it is (kv_device); the query-tail band then needs `band`, since
     * its K/V are in that space. NULL: host memory, as before. */
    const model_memspace_t *kv_space;
    /* The query-tail band's backend, run in the cache's dtype with `dense`: sliding_window_cuda
     * for a device cache. NULL: the CPU sliding_window in float32 (host caches only). */
    const attn_backend_t *band;
} needle_run_opts_t;

typedef struct {
    int asked, correct;   /* facts asked; facts whose every value token was decoded */
    int in_window;        /* asked facts a window of tmpl.window reaches (all of them without one) */
    double context_s, question_s;
} needle_outcome_t;

/* prefill: every context position through every layer with the backend under test.
 * query-tail: the context only fills the KV cache — layer 0 as a band of mg->band keys on the
 * CPU sliding_window backend (what it leaves out weighs under NEEDLE_LEAK_BOUND: exact to
 * float32 resolution), layer 1 stops at its K/V — then the questions and the decoding run with
 * the backend under test over the whole cache. Each question starts from the same context. */
int needle_run_prompt(const model_t *m, const needle_margins_t *mg, const needle_prompt_t *pr,
                      const needle_run_opts_t *ro, needle_outcome_t *out, attn_err_t *err);

/* The two halves, so a query-tail context (which does not depend on the backend) is built once
 * and asked by several backends. needle_context fills a cache made by needle_cache_init (sized
 * for the prompt and the answer, in the attention's dtype: bf16 or f16 for the GPU backends; in
 * `space`, NULL for the host) with the context and returns its time in *seconds;
 * needle_ask asks from that cache and leaves it holding the context again. */
int needle_cache_init(const model_t *m, const needle_prompt_t *pr, attn_dtype_t dtype,
                      const model_memspace_t *space, model_cache_t *cache, attn_err_t *err);
int needle_context(const model_t *m, const needle_margins_t *mg, const needle_prompt_t *pr,
                   const needle_run_opts_t *ro, model_cache_t *cache, double *seconds, attn_err_t *err);
int needle_ask(const model_t *m, const needle_prompt_t *pr, const needle_run_opts_t *ro, model_cache_t *cache,
               needle_outcome_t *out, attn_err_t *err);
