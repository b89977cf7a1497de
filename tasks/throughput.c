/* throughput.c — time per call, tokens/s and GFLOP/s (4·d FLOPs per visible query–key pair, so
 * causal counts about half) for each backend. Each timed repeat is paired with an sgemm timing
 * on the same threads, and the ratio is taken per pair before the median: on a shared machine
 * both halves of a pair see the same interference. */
#include "backend.h"
#include "parallel.h"
#include "task.h"
#include "tensors.h"
#include "timing.h"

enum { PEER_SGEMM_N = 2048 };

/* Per-rank figures of a distributed backend and what they add up to: load imbalance (max/mean
 * compute), the critical path, and overlap = 1 − exposed / total communication, each beside
 * its analytic expectation (the backend's `expect`). Bytes are exact: a rank whose traffic
 * differs from the analytic count fails the record (K/V expanded to H heads would). */
static void record_dist(attn_record_t *r, const attn_backend_t *be, const attn_problem_t *p,
                        const attn_dist_stats_t *d) {
    int P = d->ranks;
    double sum = 0, worst = 0, comm = 0, exposed = 0;
    for (int i = 0; i < P; i++) {
        sum += d->compute_s[i];
        worst = d->compute_s[i] > worst ? d->compute_s[i] : worst;
        comm += d->comm_s[i];
        exposed += d->exposed_s[i];
    }
    attn_dist_expect_t e = {0};
    be->expect(be, p, &e);
    record_metric(r, "imbalance", sum > 0 ? worst / (sum / P) : 1.0, "1");
    record_metric(r, "imbalance_expected", e.imbalance, "1");
    record_metric(r, "critical_path_s", d->critical_path_s, "s");
    /* In units of the mean rank's compute, as the expectation is: 1 = perfectly balanced. */
    record_metric(r, "critical_path_ratio", sum > 0 ? d->critical_path_s / (sum / P) : 1.0, "1");
    record_metric(r, "critical_path_expected", e.critical_path, "1");
    record_metric(r, "wall_s", d->wall_s, "s");
    record_metric(r, "overlap", comm > 0 ? 1.0 - exposed / comm : 1.0, "1");
    record_per_rank(r, "compute_s", "s", d->compute_s, P);
    record_per_rank(r, "comm_s", "s", d->comm_s, P);
    record_per_rank(r, "exposed_s", "s", d->exposed_s, P);
    record_per_rank(r, "bytes_sent", "B", d->bytes_sent, P);
    record_per_rank(r, "bytes_sent_expected", "B", e.bytes_sent, P);
    record_per_rank(r, "bytes_recv", "B", d->bytes_recv, P);
    record_per_rank(r, "bytes_recv_expected", "B", e.bytes_recv, P);
    record_per_rank(r, "blocks_computed", "1", d->blocks_computed, P);
    record_per_rank(r, "blocks_skipped", "1", d->blocks_skipped, P);
    for (int i = 0; i < P; i++)
        if (d->bytes_sent[i] != e.bytes_sent[i] || d->bytes_recv[i] != e.bytes_recv[i]) {
            record_set_status(r, REC_FAIL, "rank %d moved %.0f B out / %.0f B in, the analytic count is %.0f / %.0f", i,
                              d->bytes_sent[i], d->bytes_recv[i], e.bytes_sent[i], e.bytes_recv[i]);
            break;
        }
}

static int throughput_case(const attn_opts_t *o, const attn_problem_t *p, int index, int count, attn_run_t *run,
                           attn_err_t *err) {
    double flops = problem_flops(p);
    int threads = problem_threads(p);
    for (int b = 0; b < o->n_backends; b++) {
        const attn_backend_t *be = registry_find(o->backends[b]);
        attn_record_t *r;
        if (!task_start_backend(run, o, "throughput", be, p, index, count, &r))
            continue;
        attn_tensors_t t;
        ATTN_TRY(tensors_alloc(p, 1, o->seed, &t, err));
        attn_dist_stats_t dist = {0};
        if (be->forward_rank)
            t.io.dist = &dist; /* figures of the last repeat */
        int reps = o->repeats;
        double secs[reps], gflops[reps], frac[reps], peer[reps];
        attn_err_t berr = {0};
        int brc = ATTN_OK;
        parallel_set_blas_threads(threads);
        for (int w = 0; w < o->warmup && brc == ATTN_OK; w++)
            brc = be->forward(be, p, &t.io, &berr);
        for (int i = 0; i < reps && brc == ATTN_OK; i++) {
            double ts = peak_sgemm_seconds(PEER_SGEMM_N, threads, err);
            if (ts < 0) {
                tensors_free(&t);
                return ATTN_ERUNTIME;
            }
            peer[i] = 2.0 * PEER_SGEMM_N * (double)PEER_SGEMM_N * PEER_SGEMM_N / ts / 1e9;
            double t0 = time_now_s();
            brc = be->forward(be, p, &t.io, &berr);
            secs[i] = time_now_s() - t0;
            gflops[i] = flops / secs[i] / 1e9;
            frac[i] = gflops[i] / peer[i];
        }
        tensors_free(&t);
        if (brc != ATTN_OK) {
            record_set_status(r, REC_ERROR, "%s", berr.msg);
            continue;
        }
        double tok[reps];
        for (int i = 0; i < reps; i++)
            tok[i] = (double)(p->batch * p->n_q) / secs[i];
        record_timed(r, "time_s", secs, reps, "s");
        record_timed(r, "tokens_per_s", tok, reps, "tok/s");
        record_timed(r, "gflops", gflops, reps, "GFLOP/s");
        record_timed(r, "sgemm_gflops", peer, reps, "GFLOP/s");
        record_timed(r, "frac_of_sgemm", frac, reps, "1");
        record_metric(r, "flops", flops, "FLOP");
        record_metric(r, "threads", threads, "1");
        if (be->forward_rank)
            record_dist(r, be, p, &dist);
    }
    peak_release();
    return ATTN_OK;
}

int task_throughput(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    return task_for_each_case(o, run, throughput_case, err);
}
