/* needle.c — the needle-in-a-haystack task: per context length, backend and depth, one prompt
 * through the retrieval model, one record of recall against the recall the mask allows, written
 * as it finishes so --resume can go on. Design: docs/needle-model.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/haystack.h"
#include "comm/layout.h"
#include "tasks/approx.h"
#include "tasks/needle_resume.h"
#include "tasks/needle_run.h"
#include "tasks/task.h"
#include "core/timing.h"
#ifdef ATTN_HAVE_CUDA
#include "impls/cuda/dense_cuda.h"
#include "impls/cuda/kv_device.h"
#include "impls/cuda/model_dev.h"
#endif

typedef struct {
    attn_tokenizer_t *tok;
    needle_vocab_t nv;
    int32_t *intro, *outro, *qprefix;
    size_t n_intro, n_outro, n_qprefix;
} needle_text_ids_t;

static void text_free(needle_text_ids_t *t) {
    free(t->intro), free(t->outro), free(t->qprefix);
    tok_free(t->tok);
}

/* The tokenizer, the ids of the needle symbols, and the fixed sentences around them. The
 * filler (the answer when no needle is found) is the id of ".". */
static int text_load(const attn_opts_t *o, needle_text_ids_t *t, attn_err_t *err) {
    memset(t, 0, sizeof *t);
    const char *path = o->tokenizer[0] ? o->tokenizer : haystack_default_tokenizer();
    ATTN_TRY(tok_load(path, &t->tok, err));
    t->nv.vocab = tok_vocab_size(t->tok);
    char piece[16];
    for (int i = 0; i < NEEDLE_KEYS + NEEDLE_VALUES; i++) {
        snprintf(piece, sizeof piece, i < NEEDLE_KEYS ? "<k%d>" : "<v%d>", i < NEEDLE_KEYS ? i : i - NEEDLE_KEYS);
        int32_t id = tok_piece_to_id(t->tok, piece);
        if (id < 0)
            return attn_fail(err, ATTN_EUSAGE,
                             "tokenizer %s has no piece %s: the needle task needs the 80 needle symbols as "
                             "user-defined pieces (the set-up's tokenizer has them)", path, piece);
        if (i < NEEDLE_KEYS)
            t->nv.key_ids[i] = id;
        else
            t->nv.value_ids[i - NEEDLE_KEYS] = id;
    }
    int32_t *dot;
    size_t n_dot;
    ATTN_TRY(tok_encode(t->tok, ".", 1, &dot, &n_dot, err));
    t->nv.filler_id = n_dot ? dot[n_dot - 1] : 0;
    free(dot);
    static const char intro[] = "The special magic code is", outro[] = ".",
                      question[] = "What is the special magic code? The special magic code is";
    ATTN_TRY(tok_encode(t->tok, intro, strlen(intro), &t->intro, &t->n_intro, err));
    ATTN_TRY(tok_encode(t->tok, outro, strlen(outro), &t->outro, &t->n_outro, err));
    return tok_encode(t->tok, question, strlen(question), &t->qprefix, &t->n_qprefix, err);
}

static int haystack_ids(const attn_opts_t *o, const needle_text_ids_t *t, int64_t n, int32_t **ids, attn_err_t *err) {
    if (!strcmp(o->haystack, "noise"))
        return haystack_noise(t->tok, n, o->seed, ids, err);
    return haystack_corpus(t->tok, o->haystack[0] ? o->haystack : haystack_default_corpus(), n, ids, err);
}

/* The record's config: the model's attention shape, the mask the backend runs with. */
static attn_problem_t case_problem(const attn_opts_t *o, const attn_backend_t *be, int64_t n, int64_t n_q) {
    attn_problem_t p = {.batch = 1, .heads = 2, .kv_heads = 1, .head_dim = 128, .n_q = n_q, .n_k = n,
                        .dtype = dtype_is_16bit(o->dtype) ? o->dtype : ATTN_F32}; /* bf16, f16: the GPU backends */
    int sw = !strncmp(be->name, "sliding_window", 14); /* and sliding_window_cuda: window masks only */
    p.mask = sw ? ATTN_MASK_WINDOW : ATTN_MASK_CAUSAL;
    p.window = sw ? o->window : 0;
    return p;
}

/* How it runs: the run's threads, device, timeout and faults; ranks, transport and layout for a
 * distributed backend only. */
static attn_exec_t case_exec(const attn_opts_t *o, const attn_backend_t *be) {
    attn_exec_t x = {.threads = o->threads, .device = o->device, .layout = -1, .comm_timeout = o->comm_timeout,
                     .fault = o->fault, .fault_rank = o->fault_rank, .fault_step = o->fault_step,
                     .fault_delay_s = o->fault_delay_s};
    attn_exec_t s = settings_exec(o); /* an approximate backend's budget: o is narrowed to one */
    x.approx_window = s.approx_window, x.sinks = s.sinks, x.topk = s.topk, x.topk_pct = s.topk_pct;
    x.kernel = s.kernel; /* --kernel */
    if (be->layout) {
        x.ranks = o->ranks;
        transport_parse(o->transport, &x.transport);
        snprintf(x.local_backend, sizeof x.local_backend, "%s", o->local_backend);
        attn_layout_kind_t k;
        if (strcmp(o->layout, "auto") && layout_parse(o->layout, &k))
            x.layout = (int)k;
    }
    return x;
}

static void case_extras(attn_record_t *r, const attn_opts_t *o, double depth) {
    record_extra_num(r, "depth", depth);
    record_extra_num(r, "needles", o->needles);
    record_extra_str(r, "mode", o->mode);
    record_extra_str(r, "ask", o->ask);
    record_extra_str(r, "haystack", o->haystack[0] ? o->haystack : "kjv");
    if (o->distractors) /* 0 is not written: records of older runs stay as they were */
        record_extra_num(r, "distractors", (double)o->distractors);
}

/* The record of one case, as measured or as --resume expects it (needle_case_fn). */
attn_record_t *needle_case_record(attn_run_t *run, const attn_opts_t *o, const attn_backend_t *be, int64_t n,
                                 int64_t n_q, double depth) {
    attn_exec_t x = case_exec(o, be);
    attn_problem_t p = case_problem(o, be, n, n_q);
    attn_record_t *r = task_record(run, o, "needle", be->name, &p, &x);
    if (r)
        case_extras(r, o, depth);
    approx_record_config(r, be, &x);
    return r;
}

/* The terminal grid: length × depth, recall in percent, per backend (this run's records). */
static void print_grid(const attn_run_t *run, const attn_opts_t *all) {
    for (int b = 0; b < all->n_backends; b++)
    for (int k = 0; k < approx_budget_count(all, registry_find(all->backends[b])); k++) {
        attn_opts_t one, *o = &one;
        approx_opts_at(all, registry_find(all->backends[b]), k, &one);
        attn_exec_t bx = settings_exec(o);
        char budget[64] = "";
        if (registry_find(o->backends[b])->approximate)
            snprintf(budget, sizeof budget, " (sinks %lld, topk %lld%s, window %lld)", (long long)bx.sinks,
                     (long long)(bx.topk_pct > 0 ? bx.topk_pct : bx.topk), bx.topk_pct > 0 ? "%" : "",
                     (long long)bx.approx_window);
        printf("\nneedle recall %% — %s%s, %s, %d needle(s), ask %s (rows: context length, columns: depth %%)\n%10s",
               o->backends[b], budget, o->mode, o->needles, o->ask, "");
        for (int d = 0; d < o->n_depths; d++)
            printf(" %5.0f", o->depths[d]);
        putchar('\n');
        for (int s = 0; s < o->n_seq_len; s++) {
            printf("%10lld", (long long)o->seq_len[s]);
            for (int d = 0; d < o->n_depths; d++) {
                const attn_record_t *r = needle_find(run, o->backends[b], o, o->seq_len[s], o->depths[d]);
                double v = NAN;
                for (int i = 0; r && i < r->n_metrics; i++)
                    if (!strcmp(r->metrics[i].name, "recall"))
                        v = r->metrics[i].value;
                if (isnan(v))
                    printf(" %5s", r ? status_name(r->status) : "-");
                else
                    printf(" %5.0f", 100 * v);
            }
            putchar('\n');
        }
    }
}

static void measure(attn_record_t *r, const needle_outcome_t *out, const needle_margins_t *mg, int64_t n,
                    const approx_probe_t *probe) {
    record_metric(r, "recall", (double)out->correct / out->asked, "fraction");
    record_metric(r, "recall_expected", (double)out->in_window / out->asked, "fraction");
    record_metric(r, "asked", out->asked, "count");
    record_metric(r, "time", out->context_s + out->question_s, "s");
    record_metric(r, "context_time", out->context_s, "s");
    record_metric(r, "question_time", out->question_s, "s");
    record_metric(r, "tokens", (double)n, "tokens");
    record_metric(r, "match_logit", mg->beta, "nat");
    record_metric(r, "prev_token_leak", mg->leak, "fraction");
    if (probe) { /* over every attention call of the case, both layers (docs/approximate.md) */
        record_metric(r, "keys_visited", probe->visited, "pairs");
        record_metric(r, "key_fraction", probe->visible > 0 ? probe->visited / probe->visible : 0, "fraction");
        if (probe->ref2 > 0) /* the exact comparison runs in float32 only (the CUDA versions: bf16) */
            record_metric(r, "out_rel_l2_err", sqrt(probe->err2 / probe->ref2), "1");
        record_metric(r, "question_time_per_asked", out->question_s / out->asked, "s");
        record_set_status(r, REC_APPROXIMATE, NULL);
    } else if (out->correct != out->in_window)
        record_set_status(r, REC_FAIL, "recall %d/%d, the mask allows %d/%d", out->correct, out->asked, out->in_window,
                          out->asked);
}

/* One (length, depth) case for each backend. A query-tail context does not depend on the
 * backend (needle_run.h), so it is built once and every backend asks from it; a prefill context
 * goes through each backend. Each record is written as soon as it is measured. */
typedef struct {
    const attn_opts_t *o;
    attn_run_t *run;
    const model_t *m;
    const needle_margins_t *mg;
    needle_mode_t mode;
    int index, total;
    const model_dense_t *gpu_dense; /* the model's dense layers on the GPU, for GPU backends; NULL: host */
    const struct model_devops *gpu_devops; /* the whole forward on the GPU, for a device KV cache; NULL: none */
    /* The GPU's memory for the KV cache of backends that read K/V there (device_kv), and the
     * query-tail band's backend beside it; NULL: every cache on the host. */
    const model_memspace_t *kv_space;
    const attn_backend_t *gpu_band;
} needle_ctx_t;

static int run_depth(needle_ctx_t *x, const needle_prompt_t *pr, int64_t n, double depth, attn_err_t *err) {
    const attn_opts_t *all = x->o;
    /* [0] in host memory, [1] in the GPU's (x->kv_space), each made when a backend first needs it:
     * the context goes into a device cache once per depth and stays there. */
    model_cache_t caches[2];
    int made[2] = {0, 0};
    double shared[2] = {-1, -1}; /* query-tail: each cache's context build time, once */
    int rc = ATTN_OK;
    for (int b = 0; b < all->n_backends && rc == ATTN_OK; b++)
    for (int k = 0; k < approx_budget_count(all, registry_find(all->backends[b])) && rc == ATTN_OK; k++) {
        const attn_backend_t *be = registry_find(all->backends[b]);
        attn_opts_t one, *o = &one; /* narrowed to this budget of an approximate backend */
        approx_opts_at(all, be, k, &one);
        int at = ++x->index;
        if (needle_find(x->run, be->name, o, n, depth)) {
            task_progress(at, x->total, "needle %s n=%lld depth %g%%: kept from %s", be->name, (long long)n, depth,
                          o->resume);
            continue;
        }
        approx_probe_t probe; /* an approximate backend runs inside a probe: key fraction, output error */
        approx_probe_init(&probe, be);
        /* 16-bit runs only: the band beside it (sliding_window_cuda) has no f32 kernel. */
        /* The GPU distributed backends read a device cache under cuda_local only (one process). */
        int one_process = !be->forward_rank || case_exec(o, be).transport != ATTN_TRANSPORT_NCCL;
        const model_memspace_t *space = be->device_kv && dtype_is_16bit(all->dtype) && one_process ? x->kv_space : NULL;
        int ci = space != NULL;
        model_cache_t *cache = &caches[ci];
        double *shared_s = &shared[ci];
        needle_run_opts_t ro = {.be = be->approximate ? &probe.be : be, .mode = x->mode,
                                .ask_all = !strcmp(o->ask, "all"),
                                .dense = !strcmp(be->device, "cuda") ? x->gpu_dense : NULL,
                                .devops = space ? x->gpu_devops : NULL,
                                .kv_space = space, .band = space ? x->gpu_band : NULL};
        ro.tmpl = case_problem(o, be, n, n);
        ro.x = case_exec(o, be);
        attn_problem_t p = case_problem(o, be, n, x->mode == NEEDLE_PREFILL ? pr->n_ctx : pr->n_question);
        attn_record_t *r = needle_case_record(x->run, o, be, n, p.n_q, depth);
        if (!r) {
            rc = attn_fail(err, ATTN_ERUNTIME, "out of memory for a record");
            break;
        }
        char reason[512];
        needle_outcome_t out = {0};
        attn_err_t cerr = {0};
        int crc = ATTN_OK;
        if (!backend_supports(be, &p, &ro.x, reason, sizeof reason)) {
            record_set_status(r, REC_SKIPPED, "%s", reason);
        } else {
            if (!made[ci]) /* the device's may not fit: that backend's record says so */
                made[ci] = (crc = needle_cache_init(x->m, pr, all->dtype, space, cache, &cerr)) == ATTN_OK;
            if (crc == ATTN_OK && (x->mode == NEEDLE_PREFILL || *shared_s < 0))
                crc = needle_context(x->m, x->mg, pr, &ro, cache, &out.context_s, &cerr);
            if (crc == ATTN_OK && x->mode == NEEDLE_QUERY_TAIL) {
                if (*shared_s < 0)
                    *shared_s = out.context_s;
                out.context_s = *shared_s;
            }
            double ref_ctx = probe.ref_s; /* the probe's exact calls are not the backend's time */
            out.context_s -= x->mode == NEEDLE_PREFILL ? ref_ctx : 0;
            if (crc == ATTN_OK)
                crc = needle_ask(x->m, pr, &ro, cache, &out, &cerr);
            out.question_s -= probe.ref_s - ref_ctx;
            if (crc != ATTN_OK) {
                record_set_status(r, REC_ERROR, "%s", cerr.msg);
                *shared_s = x->mode == NEEDLE_QUERY_TAIL ? -1 : *shared_s; /* rebuild: the cache may be partial */
            } else {
                measure(r, &out, x->mg, n, be->approximate ? &probe : NULL);
            }
        }
        task_progress(at, x->total, "needle %s n=%lld depth %g%%: %s%s%s (%.1f s)", be->name, (long long)n, depth,
                      status_name(r->status), r->reason[0] ? ": " : "", r->reason, out.context_s + out.question_s);
        rc = results_write(x->run, all->out_dir, err); /* kept even if a later case is interrupted */
    }
    for (int c = 0; c < 2; c++)
        if (made[c])
            model_cache_free(&caches[c]);
    return rc;
}

int task_needle(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    needle_text_ids_t t;
    int rc = text_load(o, &t, err);
    if (rc == ATTN_OK && o->resume[0])
        rc = needle_resume_load(o->resume, o, needle_case_record, run, err);
    int variants = 0; /* backends × their budgets */
    for (int b = 0; b < o->n_backends; b++)
        variants += approx_budget_count(o, registry_find(o->backends[b]));
    needle_ctx_t x = {.o = o, .run = run, .total = o->n_seq_len * variants * o->n_depths,
                      .mode = strcmp(o->mode, "query-tail") ? NEEDLE_PREFILL : NEEDLE_QUERY_TAIL};
    needle_text_t text = {t.intro, t.outro, t.qprefix, (int64_t)t.n_intro, (int64_t)t.n_outro, (int64_t)t.n_qprefix};
    for (int s = 0; s < o->n_seq_len && rc == ATTN_OK; s++) {
        int64_t n = o->seq_len[s];
        int32_t *hay = NULL;
        model_t m = {0};
        needle_margins_t mg;
        rc = haystack_ids(o, &t, n, &hay, err);
        if (rc == ATTN_OK)
            rc = needle_model_build(&m, &t.nv, n + NEEDLE_VALUE_LEN, &mg, err);
        x.m = &m, x.mg = &mg;
#ifdef ATTN_HAVE_CUDA
        /* A GPU backend's forwards run the dense layers on the GPU too (cuBLAS float32, no TF32):
         * a 10⁶-token prefill is then bounded by its attention. Without a device the GPU backends
         * are skipped anyway, and the host keeps them. */
        model_dense_t dense = {0};
        for (int b = 0; rc == ATTN_OK && !x.gpu_dense && b < o->n_backends; b++) {
            attn_err_t derr = {0};
            if (!strcmp(registry_find(o->backends[b])->device, "cuda") && cuda_dense_create(&m, o->device, &dense, &derr) == ATTN_OK)
                x.gpu_dense = &dense;
        }
        /* The KV cache on the GPU for the backends that read it there; the band beside it. */
        model_memspace_t space = {0};
        for (int b = 0; rc == ATTN_OK && !x.kv_space && b < o->n_backends; b++) {
            attn_err_t derr = {0};
            if (registry_find(o->backends[b])->device_kv && cuda_kv_space_create(o->device, &space, &derr) == ATTN_OK)
                x.kv_space = &space, x.gpu_band = registry_find("sliding_window_cuda");
        }
        /* With both: every activation of a forward on a device cache stays on the GPU. */
        model_devops_t devops = {0};
        attn_err_t oerr = {0};
        if (rc == ATTN_OK && x.gpu_dense && x.kv_space && cuda_devops_create(&m, &dense, o->device, &devops, &oerr) == ATTN_OK)
            x.gpu_devops = &devops;
#endif
        for (int d = 0; d < o->n_depths && rc == ATTN_OK; d++) {
            needle_prompt_t pr;
            rc = needle_prompt_build_distracted(hay, n, o->depths[d], o->needles, o->distractors, &t.nv, &text,
                                                o->seed + (uint64_t)d, &pr, err);
            if (rc == ATTN_OK)
                rc = run_depth(&x, &pr, n, o->depths[d], err);
            needle_prompt_free(&pr);
        }
#ifdef ATTN_HAVE_CUDA
        if (x.gpu_dense)
            cuda_dense_free(&dense);
        if (x.kv_space)
            cuda_kv_space_free(&space);
        if (x.gpu_devops)
            cuda_devops_free(&devops);
        x.gpu_dense = NULL, x.kv_space = NULL, x.gpu_band = NULL, x.gpu_devops = NULL;
#endif
        model_free(&m);
        free(hay);
    }
    if (rc == ATTN_OK)
        print_grid(run, o);
    text_free(&t);
    return rc;
}
