/* throughput.c — time per call, tokens/s, GFLOP/s and K/V GB/s for each backend, each as a
 * fraction of a roofline measured in the same run (paired repeats on the CPU, CUDA-event kernel
 * time on GPUs). Method: docs/roofline.md. An approximate backend runs once per budget (approx.h)
 * and reports its FLOPs over the pairs it visited, with no roofline verdict. */
#include <math.h>
#include <string.h>

#include "core/backend.h"
#include "core/device.h"
#include "core/threads.h"
#include "tasks/approx.h"
#include "tasks/roofline.h"
#include "tasks/task.h"
#include "core/tensors.h"
#include "core/timing.h"

enum { PEER_SGEMM_N = 2048, PEER_GEMM_N = 8192 };

/* Seconds of the best of 3 plain reads of the K/V rows p makes visible, on the call's threads:
 * the same bytes in the same cache state the call just left, so a call cannot honestly read
 * them faster. Run i of K (and of V) is batch × kv head i, rows [lo, hi). */
static double kv_read_seconds(const attn_problem_t *p, const attn_tensors_t *t, int threads) {
    int64_t lo, hi;
    roofline_kv_rows(p, &lo, &hi);
    size_t row = (size_t)p->head_dim * dtype_size(p->dtype);
    const unsigned char *k = t->k, *v = t->v;
    return peak_read_seconds(k + (size_t)lo * row, v + (size_t)lo * row, p->batch * p->kv_heads,
                             (size_t)p->n_k * row, (size_t)(hi - lo) * row, threads, 3);
}

static double median_of(const double *x, int n) {
    double med, lo, hi;
    stats_summary(x, n, &med, &lo, &hi);
    return med;
}

/* 1 when the medians of the per-repeat fractions of both roofs are possible (roofline_check),
 * else 0 and the reason: the verdict record_roofline gives, and the test the re-measurement in
 * throughput_case repeats. */
static int roofline_possible(const attn_problem_t *p, const double *secs, const double *gflops, const double *peer,
                             const double *fma, const double *read, int reps, char *reason, size_t len) {
    double kv_bytes = roofline_kv_bytes(p), frac[reps], frac_bw[reps];
    for (int i = 0; i < reps; i++) {
        frac[i] = gflops[i] / roofline_compute_roof(peer[i], fma[i]);
        frac_bw[i] = kv_bytes / secs[i] / 1e9 / read[i];
    }
    return roofline_check(median_of(frac, reps), median_of(frac_bw, reps), reason, len);
}

/* Both roofs of one record: the K/V traffic beside the paired read bandwidth, which bound the
 * call's arithmetic intensity puts it under, its fraction of that roof, and the check that no
 * figure sits above a roof measured in this run. */
static void record_roofline(attn_record_t *r, const attn_problem_t *p, const double *secs, const double *gflops,
                            const double *peer, const double *fma, const double *read, int reps) {
    double kv_bytes = roofline_kv_bytes(p), intensity = problem_flops(p) / kv_bytes;
    double kv_gbps[reps], frac_bw[reps], frac_roof[reps];
    for (int i = 0; i < reps; i++) {
        kv_gbps[i] = kv_bytes / secs[i] / 1e9;
        frac_bw[i] = kv_gbps[i] / read[i];
        frac_roof[i] = gflops[i] / roofline_attainable_gflops(intensity, peer[i], read[i]);
    }
    double sgemm = median_of(peer, reps), bw = median_of(read, reps);
    record_metric(r, "kv_bytes", kv_bytes, "B");
    record_timed(r, "kv_gbps", kv_gbps, reps, "GB/s");
    record_timed(r, "read_gbps", read, reps, "GB/s");
    record_timed(r, "frac_of_bandwidth", frac_bw, reps, "1");
    record_metric(r, "intensity", intensity, "FLOP/B");
    record_metric(r, "machine_balance", sgemm / bw, "FLOP/B");
    record_metric(r, "bound", roofline_bound(intensity, sgemm, bw), "1"); /* 0 compute, 1 bandwidth */
    record_timed(r, "frac_of_roofline", frac_roof, reps, "1");
    char reason[256];
    if (r->status == REC_PASS && !roofline_possible(p, secs, gflops, peer, fma, read, reps, reason, sizeof reason))
        record_set_status(r, REC_ERROR, "%s", reason);
}

/* The GPU roof beside a GPU record (docs/roofline.md): per repeat one cuBLAS GEMM of the record's
 * dtype and the best of 3 reads of its K/V's device bytes, on the record's device, right after
 * the backend ran; frac_of_peak and frac_of_bandwidth against them, and the same impossible-figure
 * check as on CPUs. Under nccl every rank drives a GPU of its own: the roof is P of them. A roof
 * that cannot be measured leaves the record as it is, with the reason. */
static void record_device_roofline(attn_record_t *r, const attn_problem_t *p, const attn_exec_t *x, const double *secs,
                                   const double *gflops, int reps) {
    int kind = roofline_gemm_kind(p->dtype), devices = x->transport == ATTN_TRANSPORT_NCCL ? exec_ranks(x) : 1;
    double kv_bytes = roofline_device_kv_bytes(p), peak[reps], read[reps], frac[reps], frac_bw[reps];
    char why[256] = "";
    for (int i = 0; i < reps; i++) {
        double tg = device_peak_gemm_seconds(x->device, kind, PEER_GEMM_N, why, sizeof why), tr = -1;
        for (int k = 0; k < 3 && tg > 0; k++) {
            double t = device_peak_read_seconds(x->device, (size_t)kv_bytes, why, sizeof why);
            if (t <= 0) {
                tg = -1;
                break;
            }
            tr = tr < 0 || t < tr ? t : tr;
        }
        if (tg <= 0) {
            record_extra_str(r, "roofline", why);
            return;
        }
        peak[i] = roofline_gemm_tflops(PEER_GEMM_N, tg) * devices;
        read[i] = kv_bytes / tr / 1e9 * devices;
        frac[i] = roofline_frac_of_peak(gflops[i], peak[i], 1);
        frac_bw[i] = kv_bytes / secs[i] / 1e9 / read[i];
    }
    record_timed(r, "peak_tflops", peak, reps, "TFLOP/s");
    record_timed(r, "frac_of_peak", frac, reps, "1");
    record_timed(r, "read_gbps", read, reps, "GB/s");
    record_timed(r, "frac_of_bandwidth", frac_bw, reps, "1");
    record_metric(r, "kv_bytes", kv_bytes, "B");
    record_extra_str(r, "peak_gemm", kind == DEVICE_GEMM_BF16  ? "cublas bf16 8192^3"
                                     : kind == DEVICE_GEMM_F16 ? "cublas f16 8192^3"
                                                               : "cublas f32 8192^3 (no TF32)");
    if (devices > 1)
        record_extra_num(r, "roof_devices", devices);
    char reason[256];
    const char *roof = kind == DEVICE_GEMM_BF16 ? "GPU roof (cuBLAS bf16 GEMM)" : "GPU roof (cuBLAS f32 GEMM)";
    if (r->status == REC_PASS &&
        !roofline_check_roof(median_of(frac, reps), median_of(frac_bw, reps), roof, reason, sizeof reason))
        record_set_status(r, REC_ERROR, "%s", reason);
}

/* A GPU backend on p: warm-up, then repeats timed by the backend with CUDA events around its
 * kernels (io.device_s); the host wall time of each whole call, copies included, beside it. */
static int throughput_device(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, const attn_backend_t *be,
                             attn_record_t *r, double *median_s, attn_err_t *err) {
    attn_tensors_t t;
    ATTN_TRY(tensors_alloc(p, 1, o->seed, &t, err));
    int reps = o->repeats;
    double secs[reps], wall[reps], dev_s = -1, visited = 0;
    t.io.device_s = &dev_s;
    if (be->approximate)
        t.io.keys_visited = &visited;
    attn_err_t berr = {0};
    int brc = ATTN_OK;
    for (int w = 0; w < o->warmup && brc == ATTN_OK; w++)
        brc = be->forward(be, p, x, &t.io, &berr);
    for (int i = 0; i < reps && brc == ATTN_OK; i++) {
        dev_s = -1;
        double t0 = time_now_s();
        brc = be->forward(be, p, x, &t.io, &berr);
        wall[i] = time_now_s() - t0;
        secs[i] = dev_s;
        if (brc == ATTN_OK && !(dev_s > 0))
            brc = attn_fail(&berr, ATTN_ERUNTIME, "%s reported no device time", be->name);
    }
    tensors_free(&t);
    if (brc != ATTN_OK) {
        record_set_status(r, REC_ERROR, "%s", berr.msg);
        return ATTN_OK;
    }
    /* an approximate backend's work is the pairs it visited, not the problem's */
    double flops = be->approximate ? 4.0 * (double)p->head_dim * visited : problem_flops(p), gflops[reps];
    for (int i = 0; i < reps; i++)
        gflops[i] = flops / secs[i] / 1e9;
    task_record_rates(r, p, secs, gflops, reps);
    record_timed(r, "call_wall_s", wall, reps, "s");
    record_metric(r, "flops", flops, "FLOP");
    record_extra_str(r, "timing", "cuda_events");
    if (be->approximate) { /* no roofline verdict: the exact roof does not bound what skips keys */
        approx_record_visits(r, p, visited);
        record_set_status(r, REC_APPROXIMATE, NULL);
    } else {
        record_device_roofline(r, p, x, secs, gflops, reps);
    }
    *median_s = median_of(secs, reps);
    return ATTN_OK;
}

/* A backend that times itself (an exec: program, on inputs it makes from the seed on its own
 * device): its seconds per repeat, recorded with the same statistics as the harness's own. */
static int throughput_self(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, const attn_backend_t *be,
                           attn_record_t *r, double *median_s) {
    int reps = o->repeats;
    double secs[reps], gflops[reps], flops = problem_flops(p);
    char timing[32];
    attn_err_t berr = {0};
    if (be->time_self(be, p, x, o->seed, o->warmup, reps, secs, timing, sizeof timing, &berr) != ATTN_OK) {
        record_set_status(r, REC_ERROR, "%s", berr.msg);
        return ATTN_OK;
    }
    for (int i = 0; i < reps; i++)
        gflops[i] = flops / secs[i] / 1e9;
    task_record_rates(r, p, secs, gflops, reps);
    record_metric(r, "flops", flops, "FLOP");
    record_extra_str(r, "timing", timing);
    *median_s = median_of(secs, reps);
    return ATTN_OK;
}

/* Under mpi every rank is a process with `threads` threads of its own, so a call can use up to
 * ranks × threads cores (no more than the machine has), and one process's sgemm measures only
 * `threads` of them: the compute roof is that many processes' sgemm (docs/roofline.md). */
static double roof_processes(const attn_exec_t *x, int threads) {
    int ranks = exec_ranks(x);
    if (x->transport != ATTN_TRANSPORT_MPI || ranks <= 1)
        return 1;
    int fit = threads_resolve(0) / (threads > 0 ? threads : 1);
    return ranks < fit ? ranks : fit > 1 ? fit : 1;
}

/* The distributed figures kept over the repeats: per rank the least compute, and the least
 * critical path; the rest (bytes, blocks) are the same in every repeat. Ranks that share cores
 * (threads, or processes on a loaded host) are slowed at random moments, which only adds time:
 * the last repeat alone put striped's ranks 0.87–1.10 of their mean where the work is equal
 * (docs/packed-documents.md). */
static void dist_keep_least(attn_dist_stats_t *acc, const attn_dist_stats_t *rep, int first) {
    attn_dist_stats_t prev = *acc;
    *acc = *rep;
    if (first)
        return;
    for (int r = 0; r < rep->ranks && r < ATTN_MAX_RANKS; r++)
        acc->compute_s[r] = fmin(prev.compute_s[r], rep->compute_s[r]);
    acc->critical_path_s = fmin(prev.critical_path_s, rep->critical_path_s);
}

/* Backend be on problem p: one record. *median_s is the median call time, NaN when the backend
 * declined or failed (the record says why). */
static int throughput_one(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, const attn_backend_t *be, int index,
                          int count, attn_run_t *run, double *median_s, attn_err_t *err) {
    *median_s = NAN;
    attn_record_t *r;
    int runs = task_start_backend(run, o, "throughput", be, p, x, index, count, &r);
    approx_record_config(r, be, x);
    if (!runs)
        return ATTN_OK;
    if (be->time_self)
        return throughput_self(o, p, x, be, r, median_s);
    if (strcmp(be->device, "cpu") != 0)
        return throughput_device(o, p, x, be, r, median_s, err);
    double flops = problem_flops(p);
    int threads = exec_threads(x);
    attn_tensors_t t;
    ATTN_TRY(tensors_alloc(p, 1, o->seed, &t, err));
    attn_dist_stats_t dist = {0}, rep_dist = {0};
    if (be->forward_rank)
        t.io.dist = &rep_dist; /* each call's figures, kept by dist_keep_least */
    double visited = 0;
    if (be->approximate)
        t.io.keys_visited = &visited;
    int reps = o->repeats;
    double secs[reps], gflops[reps], frac[reps], peer[reps], fma[reps], read[reps];
    double roof = roof_processes(x, threads);
    if (roof > 1)
        record_extra_num(r, "roof_processes", roof);
    attn_err_t berr = {0};
    int brc = ATTN_OK;
    parallel_set_blas_threads(threads);
    for (int w = 0; w < o->warmup && brc == ATTN_OK; w++)
        brc = be->forward(be, p, x, &t.io, &berr);
    for (int i = 0; i < reps && brc == ATTN_OK; i++) {
        double ts = peak_sgemm_seconds(PEER_SGEMM_N, threads, err);
        if (ts < 0) {
            tensors_free(&t);
            return ATTN_ERUNTIME;
        }
        peer[i] = roof * 2.0 * PEER_SGEMM_N * (double)PEER_SGEMM_N * PEER_SGEMM_N / ts / 1e9;
        fma[i] = roof * peak_fma_gflops(threads);
        double t0 = time_now_s();
        brc = be->forward(be, p, x, &t.io, &berr);
        secs[i] = time_now_s() - t0;
        if (be->forward_rank && brc == ATTN_OK)
            dist_keep_least(&dist, &rep_dist, i == 0);
        gflops[i] = flops / secs[i] / 1e9;
        read[i] = roofline_kv_bytes(p) / kv_read_seconds(p, &t, threads) / 1e9;
    }
    /* A roofline taken while another process held the cores reads low and would make correct
     * work look impossible (the check below). Before that verdict, measure both rooflines
     * again, up to 3 times, and let each repeat's figure be the best seen. */
    if (be->approximate && brc == ATTN_OK) { /* its work is the pairs it visited, not the problem's */
        flops = 4.0 * (double)p->head_dim * visited;
        for (int i = 0; i < reps; i++)
            gflops[i] = flops / secs[i] / 1e9;
    }
    char why[256];
    for (int again = 0; again < 3 && brc == ATTN_OK && !be->approximate &&
                        !roofline_possible(p, secs, gflops, peer, fma, read, reps, why, sizeof why);
         again++) {
        double ts = peak_sgemm_seconds(PEER_SGEMM_N, threads, err);
        if (ts < 0) {
            tensors_free(&t);
            return ATTN_ERUNTIME;
        }
        double pg = roof * 2.0 * PEER_SGEMM_N * (double)PEER_SGEMM_N * PEER_SGEMM_N / ts / 1e9;
        double rg = roofline_kv_bytes(p) / kv_read_seconds(p, &t, threads) / 1e9, fg = roof * peak_fma_gflops(threads);
        for (int i = 0; i < reps; i++) {
            peer[i] = peer[i] > pg ? peer[i] : pg, read[i] = read[i] > rg ? read[i] : rg;
            fma[i] = fma[i] > fg ? fma[i] : fg; /* NaN (no FMA ISA) stays NaN: fmax ignores it later */
        }
        record_extra_num(r, "roofline_remeasured", again + 1);
    }
    tensors_free(&t);
    if (brc != ATTN_OK) {
        record_set_status(r, REC_ERROR, "%s", berr.msg);
        return ATTN_OK;
    }
    for (int i = 0; i < reps; i++)
        frac[i] = gflops[i] / peer[i]; /* against the roofline as finally measured */
    task_record_rates(r, p, secs, gflops, reps);
    record_timed(r, "sgemm_gflops", peer, reps, "GFLOP/s");
    record_timed(r, "frac_of_sgemm", frac, reps, "1");
    if (isfinite(fma[0]))
        record_timed(r, "fma_gflops", fma, reps, "GFLOP/s");
    record_metric(r, "flops", flops, "FLOP");
    record_metric(r, "threads", threads, "1");
    if (be->forward_rank)
        task_record_dist(r, be, p, x, &dist);
    if (be->approximate) { /* the exact K/V roofline does not bound what skips most of K/V */
        approx_record_visits(r, p, visited);
        record_set_status(r, REC_APPROXIMATE, NULL);
    } else {
        record_roofline(r, p, secs, gflops, peer, fma, read, reps);
    }
    *median_s = median_of(secs, reps);
    return ATTN_OK;
}

static int throughput_case(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, int index, int count,
                           attn_run_t *run, attn_err_t *err) {
    for (int b = 0; b < o->n_backends; b++) {
        const attn_backend_t *be = registry_find(o->backends[b]);
        attn_exec_t budgets[OPTS_MAX_LIST];
        int n_budgets = approx_budgets(o, be, x, budgets);
        for (int k = 0; k < n_budgets && o->direction != ATTN_DIR_BACKWARD; k++) {
            double median_s;
            ATTN_TRY(throughput_one(o, p, &budgets[k], be, index, count, run, &median_s, err));
        }
        if (o->direction != ATTN_DIR_FORWARD)
            ATTN_TRY(throughput_backward_one(o, p, x, be, index, count, run, err));
    }
    peak_release();
    device_peak_release();
    return ATTN_OK;
}

/* One backend's sweep over n_k = n0, 2·n0, … ≤ sweep_max at one (q-len, mask). The next n's
 * time is projected from the last median × its growth in FLOPs (4 for a full or causal square,
 * 2 for a window or a fixed q-len) × the warm-up and repeat calls; a projection over the budget
 * is recorded as skipped rather than dropped, and so is a backend's refusal (naive's n² scores
 * not fitting): the sweep stops at the first record that was not timed. */
static int sweep_backend(const attn_opts_t *o, const attn_backend_t *be, int64_t q_len, attn_mask_t mask,
                         int first_index, int steps, int count, attn_run_t *run, attn_err_t *err) {
    attn_problem_t last;
    attn_exec_t x = settings_exec(o);
    double last_s = NAN;
    for (int s = 0; s < steps; s++) {
        int64_t n = o->seq_len[0] << s;
        attn_problem_t p;
        ATTN_TRY(settings_problem(o, n, q_len ? q_len : n, mask, &p, err));
        if (s > 0 && o->time_budget > 0) {
            double growth = problem_flops(&p) / problem_flops(&last), calls = o->warmup + o->repeats;
            double projected = last_s * growth * calls;
            if (projected > o->time_budget) {
                task_progress(first_index + s + 1, count, "throughput %s n_k=%lld: projected %.3g s, over budget",
                              be->name, (long long)n, projected);
                attn_record_t *r = task_record(run, o, "throughput", be->name, &p, &x);
                record_set_status(r, REC_SKIPPED,
                                  "projected %.3g s > time budget %g s (%g calls × %.3g s at n_k=%lld × %.3g, the "
                                  "growth in FLOPs)",
                                  projected, o->time_budget, calls, last_s, (long long)last.n_k, growth);
                return ATTN_OK;
            }
        }
        ATTN_TRY(throughput_one(o, &p, &x, be, first_index + s, count, run, &last_s, err));
        peak_release();
        device_peak_release();
        if (!isfinite(last_s))
            return ATTN_OK;
        last = p;
    }
    return ATTN_OK;
}

static int throughput_sweep(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    int steps = 1;
    for (int64_t n = o->seq_len[0]; n <= o->sweep_max / 2; n *= 2)
        steps++;
    int n_q = o->n_q_len ? o->n_q_len : 1, count = n_q * o->n_masks * steps;
    for (int q = 0; q < n_q; q++)
        for (int m = 0; m < o->n_masks; m++)
            for (int b = 0; b < o->n_backends; b++)
                ATTN_TRY(sweep_backend(o, registry_find(o->backends[b]), o->n_q_len ? o->q_len[q] : 0, o->masks[m],
                                       (q * o->n_masks + m) * steps, steps, count, run, err));
    return ATTN_OK;
}

int task_throughput(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    if (o->sweep_max && o->n_seq_len != 1)
        return attn_fail(err, ATTN_EUSAGE, "--sweep-max sweeps from one --seq-len (got %d values)", o->n_seq_len);
    if (o->sweep_max && o->direction != ATTN_DIR_FORWARD)
        return attn_fail(err, ATTN_EUSAGE, "--sweep-max times the forward only (drop --direction %s)",
                         direction_name(o->direction));
    static int explained; /* once per process, however many throughput runs a suite has */
    if (!explained++)
        fputs("throughput: GFLOP/s = 4·B·H·d·visible_pairs / time, visible pairs counting only unmasked\n"
              "  (query, key) pairs (causal ≈ n²/2); K/V GB/s = 2·B·H_kv·visible_keys·d·element_bytes / time,\n"
              "  each visible K/V row read once (the least a call must read); bound 1 = bandwidth-bound\n"
              "  (intensity FLOP/B below machine_balance = sgemm / read of the same K/V)\n",
              stderr);
    if (o->direction != ATTN_DIR_FORWARD && explained++ == 1)
        fputs("throughput backward: GFLOP/s = 2.5 × the forward's FLOPs / backward time (FlashAttention's\n"
              "  convention: five GEMMs of the forward's size against two); fwd_gflops from the same repeats\n",
              stderr);
    return o->sweep_max ? throughput_sweep(o, run, err) : task_for_each_case(o, run, throughput_case, err);
}
