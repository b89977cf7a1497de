/* memory_task.c — peak resident memory of one forward call, measured, next to what the
 * backend declares (tensors + workspace_bytes). The peak is Linux's VmHWM, reset just before
 * the tensors are allocated, minus the RSS at that moment, so earlier cases do not count. */
#include "backend.h"
#include "memory.h"
#include "task.h"
#include "tensors.h"
#include "timing.h"

static int memory_case(const attn_opts_t *o, const attn_problem_t *p, int index, int count, attn_run_t *run,
                       attn_err_t *err) {
    for (int b = 0; b < o->n_backends; b++) {
        const attn_backend_t *be = registry_find(o->backends[b]);
        attn_record_t *r;
        if (!task_start_backend(run, o, "memory", be, p, index, count, &r))
            continue;
        if (mem_reset_peak() != 0) {
            record_set_status(r, REC_SKIPPED, "cannot reset the peak RSS (/proc/self/clear_refs not writable)");
            continue;
        }
        uint64_t before = mem_rss_bytes();
        attn_tensors_t t;
        ATTN_TRY(tensors_alloc(p, 1, o->seed, &t, err));
        attn_err_t berr = {0};
        double t0 = time_now_s();
        int brc = be->forward(be, p, &t.io, &berr);
        double secs = time_now_s() - t0;
        uint64_t peak = mem_peak_rss_bytes();
        tensors_free(&t);
        if (brc != ATTN_OK) {
            record_set_status(r, REC_ERROR, "%s", berr.msg);
            continue;
        }
        double qkvo = (double)(2 * problem_numel_q(p) + 2 * problem_numel_kv(p)) * (double)dtype_size(p->dtype);
        double work = (double)be->workspace_bytes(be, p);
        double measured = peak > before ? (double)(peak - before) : 0.0;
        record_metric(r, "peak_rss_delta_bytes", measured, "B");
        record_metric(r, "qkvo_bytes", qkvo, "B");
        record_metric(r, "analytic_bytes", (double)problem_io_bytes(p) + work, "B");
        record_metric(r, "workspace_bytes", work, "B");
        record_metric(r, "ratio_to_qkvo", measured / qkvo, "1");
        record_metric(r, "time_s", secs, "s");
    }
    return ATTN_OK;
}

int task_memory(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    return task_for_each_case(o, run, memory_case, err);
}
