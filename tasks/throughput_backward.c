/* throughput_backward.c — `throughput --direction backward|both`: the backward's time and
 * GFLOP/s, counting its FLOPs as 2.5 × the forward's (FlashAttention's benchmark convention: five
 * GEMMs of the forward's size against two), beside the forward's GFLOP/s measured in the same
 * repeats (forward, then backward, alternately) so that their ratio is free of the machine's
 * drift. Distributed backends add their backward's per-rank figures. docs/backward.md. */
#include <math.h>
#include <string.h>

#include "core/backend.h"
#include "core/rng.h"
#include "core/tensors.h"
#include "core/threads.h"
#include "core/timing.h"
#include "tasks/task.h"

int throughput_backward_one(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x,
                            const attn_backend_t *be, int index, int count, attn_run_t *run, attn_err_t *err) {
    attn_record_t *r;
    if (!task_start_backward(run, o, "throughput", be, p, x, index, count, &r))
        return ATTN_OK;
    record_extra_str(r, "flops_rule", "backward = 2.5 x forward FLOPs (FlashAttention convention)");
    int threads = exec_threads(x), reps = o->repeats;
    attn_tensors_t t;
    ATTN_TRY(tensors_alloc(p, 1, o->seed, &t, err));
    size_t nq = problem_numel_q(p), nkv = problem_numel_kv(p), es = dtype_size(p->dtype);
    void *d_o = attn_alloc(nq * es + 1, err, "dO"), *dq = attn_alloc(nq * es + 1, err, "dQ");
    void *dk = attn_alloc(nkv * es + 1, err, "dK"), *dv = attn_alloc(nkv * es + 1, err, "dV");
    if (!d_o || !dq || !dk || !dv) {
        attn_free(d_o), attn_free(dq), attn_free(dk), attn_free(dv);
        tensors_free(&t);
        return ATTN_ERUNTIME;
    }
    rng_fill(d_o, p->dtype, o->seed, RNG_TENSOR_DO, p->batch * p->heads, p->n_q, problem_q_span(p), p->n_k,
             p->head_dim);
    attn_dist_stats_t dist = {0};
    attn_grad_io_t g = {.q = t.q, .k = t.k, .v = t.v, .o = t.o, .lse = t.lse, .d_o = d_o, .dq = dq, .dk = dk, .dv = dv,
                        .dist = be->backward_rank ? &dist : NULL}; /* figures of the last repeat */
    /* GPU backends time their kernels with events (attn_io_t.device_s): both directions are
     * taken from those when both report them, as the forward-only task does. */
    double fdev = 0, bdev = 0, walls[reps];
    t.io.device_s = &fdev, g.device_s = &bdev;
    double fsecs[reps], bsecs[reps], fg[reps], bg[reps], ratio[reps];
    double fflops = problem_flops(p), bflops = problem_backward_flops(p);
    attn_err_t berr = {0};
    int brc = ATTN_OK;
    parallel_set_blas_threads(threads);
    for (int w = 0; w < o->warmup && brc == ATTN_OK; w++) {
        brc = be->forward(be, p, x, &t.io, &berr);
        if (brc == ATTN_OK)
            brc = be->backward(be, p, x, &g, &berr);
    }
    if (o->warmup == 0 && brc == ATTN_OK) /* the backward needs the forward's O and LSE */
        brc = be->forward(be, p, x, &t.io, &berr);
    for (int i = 0; i < reps && brc == ATTN_OK; i++) {
        double t0 = time_now_s();
        brc = be->forward(be, p, x, &t.io, &berr);
        double t1 = time_now_s();
        if (brc == ATTN_OK)
            brc = be->backward(be, p, x, &g, &berr);
        double t2 = time_now_s();
        fsecs[i] = t1 - t0, bsecs[i] = t2 - t1, walls[i] = t2 - t1;
        if (fdev > 0 && bdev > 0)
            fsecs[i] = fdev, bsecs[i] = bdev;
        fg[i] = fflops / fsecs[i] / 1e9, bg[i] = bflops / bsecs[i] / 1e9;
        ratio[i] = bg[i] / fg[i];
    }
    attn_free(d_o), attn_free(dq), attn_free(dk), attn_free(dv);
    tensors_free(&t);
    if (brc != ATTN_OK) {
        record_set_status(r, REC_ERROR, "%s", berr.msg);
        return ATTN_OK;
    }
    task_record_rates(r, p, bsecs, bg, reps);
    record_metric(r, "flops", bflops, "FLOP");
    record_timed(r, "fwd_time_s", fsecs, reps, "s");
    record_timed(r, "fwd_gflops", fg, reps, "GFLOP/s");
    record_timed(r, "bwd_over_fwd_gflops", ratio, reps, "1");
    if (fdev > 0 && bdev > 0) {
        record_timed(r, "wall_time_s", walls, reps, "s"); /* copies and conversions included */
        record_extra_str(r, "timing", "cuda_events");
    }
    record_metric(r, "threads", threads, "1");
    if (be->backward_rank)
        task_record_dist_backward(r, be, p, x, &dist);
    return ATTN_OK;
}
