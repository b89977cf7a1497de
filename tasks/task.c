/* task.c — the task table and what the tasks share: the case grid, records, progress
 * (task.h). */
#include "tasks/task.h"

#include "comm/layout.h"
#include "core/device.h"
#include "impls/parallel/plan.h"
#include <stdarg.h>
#include <string.h>

static const attn_task_t tasks[] = {
    {"exactness", "max abs / relative L2 / LSE error vs the float64 reference; pass or fail", task_exactness},
    {"throughput", "time, tokens/s, GFLOP/s and fraction of sgemm measured in the same run", task_throughput},
    {"memory", "attn_alloc peak and peak RSS vs the tensors + the backend's declared workspace", task_memory},
    {"capacity", "largest n each backend fits in free memory (allocated, not computed); KV-cache bytes", task_capacity},
    {"model", "the shared llama-style decoder with each backend: logits vs the float64 model, tokens/s", task_model},
    {"precision", "error vs the float64 reference as P (--precision-ranks), n, dtype and merge dtype vary; slope vs log2 P",
     task_precision},
    {"needle", "recall of key → value needles over context length × depth (the constructed retrieval model)", task_needle},
};

int task_count(void) { return (int)(sizeof tasks / sizeof tasks[0]); }
const attn_task_t *task_get(int i) { return &tasks[i]; }
const attn_task_t *task_find(const char *name) {
    for (int i = 0; i < task_count(); i++)
        if (strcmp(tasks[i].name, name) == 0)
            return &tasks[i];
    return NULL;
}

static int progress_on = 1;
void task_set_progress(int on) { progress_on = on; }

void task_progress(int i, int n, const char *fmt, ...) {
    if (!progress_on)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%d/%d] ", i, n);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int task_for_each_case(const attn_opts_t *o, attn_run_t *run, case_fn fn, attn_err_t *err) {
    attn_exec_t x = settings_exec(o);
    int n_q = o->n_q_len ? o->n_q_len : 1;
    int count = o->n_seq_len * n_q * o->n_masks, index = 0;
    for (int s = 0; s < o->n_seq_len; s++)
        for (int q = 0; q < n_q; q++)
            for (int m = 0; m < o->n_masks; m++) {
                attn_problem_t p;
                ATTN_TRY(settings_problem(o, o->seq_len[s], o->n_q_len ? o->q_len[q] : o->seq_len[s], o->masks[m], &p,
                                      err));
                ATTN_TRY(fn(o, &p, &x, index++, count, run, err));
            }
    return ATTN_OK;
}

attn_record_t *task_record(attn_run_t *run, const attn_opts_t *o, const char *task, const char *backend,
                           const attn_problem_t *p, const attn_exec_t *x) {
    attn_record_t *r = results_add(run, task, backend, p);
    const attn_backend_t *be = registry_find(backend);
    if (r && be && be->layout) {
        r->ranks = exec_ranks(x);
        snprintf(r->transport, sizeof r->transport, "%s", o->transport);
        snprintf(r->local_backend, sizeof r->local_backend, "%s", x->local_backend);
        snprintf(r->layout, sizeof r->layout, "%s",
                 x->layout >= 0 ? layout_name((attn_layout_kind_t)x->layout) : be->layout);
        if (x->merge == ATTN_MERGE_BF16) /* the default (f32) is not written: older files stay as they were */
            record_extra_str(r, "merge_dtype", "bf16");
        if (!strncmp(backend, "usp", 3)) { /* the mesh the call ran on, the default resolved */
            int U = x->ulysses_degree ? x->ulysses_degree : plan_usp_default_degree(p->kv_heads, r->ranks);
            record_extra_num(r, "ulysses_degree", U);
            record_extra_num(r, "ring_degree", r->ranks % U ? 0 : r->ranks / U);
        }
    }
    if (r && be && be->peer_name) { /* a plugin's or an exec: program's backend */
        snprintf(r->peer_name, sizeof r->peer_name, "%s", be->peer_name);
        snprintf(r->peer_version, sizeof r->peer_version, "%s", be->peer_version ? be->peer_version : "");
        snprintf(r->peer_kind, sizeof r->peer_kind, "%s", be->peer_kind ? be->peer_kind : "");
    }
    if (r && be && strcmp(be->device, "cpu") != 0)
        snprintf(r->device, sizeof r->device, "%s:%d", be->device, x->device);
    if (r && be && !strcmp(be->device, "cuda") && strcmp(backend, "naive_cuda")) { /* the flash kernel it ran */
        const char *k = device_flash_kernel(x->device, x->kernel, p);
        if (k)
            record_extra_str(r, "kernel", k);
    }
    if (r && p->doc && p->n_docs > 1) { /* the layout, JSON config only: the CSV keeps its columns */
        docs_summary_t ds = docs_summary(p->doc, p->n_docs);
        char hash[24];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)ds.hash);
        record_extra_num(r, "docs", (double)ds.count);
        record_extra_num(r, "doc_len_min", (double)ds.min);
        record_extra_num(r, "doc_len_mean", ds.mean);
        record_extra_num(r, "doc_len_max", (double)ds.max);
        record_extra_str(r, "doc_hash", hash);
    }
    if (r) {
        record_extra_num(r, "repeats", o->repeats);
        record_extra_num(r, "warmup", o->warmup);
    }
    return r;
}

int task_start_backend(attn_run_t *run, const attn_opts_t *o, const char *task, const attn_backend_t *be,
                       const attn_problem_t *p, const attn_exec_t *x, int index, int count, attn_record_t **rec) {
    task_progress(index + 1, count, "%s %s n_k=%lld n_q=%lld mask=%s", task, be->name, (long long)p->n_k,
                  (long long)p->n_q, mask_name(p->mask));
    *rec = task_record(run, o, task, be->name, p, x);
    char reason[512];
    if (!backend_supports(be, p, x, reason, sizeof reason)) {
        record_set_status(*rec, REC_SKIPPED, "%s", reason);
        return 0;
    }
    if (*rec && be->decode_split) { /* the decode plan's split, when the backend runs one for p (docs/decode.md) */
        int split = be->decode_split(be, p, x);
        if (split > 0)
            record_extra_num(*rec, "split", split);
    }
    return 1;
}

int task_start_backward(attn_run_t *run, const attn_opts_t *o, const char *task, const attn_backend_t *be,
                        const attn_problem_t *p, const attn_exec_t *x, int index, int count, attn_record_t **rec) {
    task_progress(index + 1, count, "%s backward %s n_k=%lld n_q=%lld mask=%s", task, be->name, (long long)p->n_k,
                  (long long)p->n_q, mask_name(p->mask));
    *rec = task_record(run, o, task, be->name, p, x);
    record_extra_str(*rec, "direction", "backward");
    char reason[512];
    if (!backend_supports_backward(be, p, x, reason, sizeof reason)) {
        record_set_status(*rec, REC_SKIPPED, "%s", reason);
        return 0;
    }
    return 1;
}

void task_record_rates(attn_record_t *r, const attn_problem_t *p, const double *secs, const double *gflops, int reps) {
    double tok[reps];
    for (int i = 0; i < reps; i++)
        tok[i] = (double)(p->batch * p->n_q) / secs[i];
    record_timed(r, "time_s", secs, reps, "s");
    record_timed(r, "tokens_per_s", tok, reps, "tok/s");
    record_timed(r, "gflops", gflops, reps, "GFLOP/s");
}
