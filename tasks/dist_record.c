/* dist_record.c — a distributed backend's per-rank figures in its record, forward (its expect)
 * and backward (its backward_expect), beside their analytic expectations (docs/ring.md). */
#include "core/backend.h"
#include "tasks/task.h"

/* Per-rank figures of a distributed backend and what they add up to: load imbalance (max/mean
 * compute), the critical path, and overlap = 1 − exposed / total communication, each beside
 * its analytic expectation (the backend's `expect`). Bytes are exact: a rank whose traffic
 * differs from the analytic count fails the record (K/V expanded to H heads would). */
static void record_dist_expect(attn_record_t *r, const attn_exec_t *x, const attn_dist_stats_t *d,
                               const attn_dist_expect_t *ep) {
    int P = d->ranks;
    double sum = 0, worst = 0, comm = 0, exposed = 0;
    for (int i = 0; i < P; i++) {
        sum += d->compute_s[i];
        worst = d->compute_s[i] > worst ? d->compute_s[i] : worst;
        comm += d->comm_s[i];
        exposed += d->exposed_s[i];
    }
    attn_dist_expect_t e = *ep;
    record_metric(r, "imbalance", sum > 0 ? worst / (sum / P) : 1.0, "1");
    record_metric(r, "imbalance_expected", e.imbalance, "1");
    record_metric(r, "critical_path_s", d->critical_path_s, "s");
    /* In units of the mean rank's compute, as the expectation is: 1 = perfectly balanced. */
    record_metric(r, "critical_path_ratio", sum > 0 ? d->critical_path_s / (sum / P) : 1.0, "1");
    record_metric(r, "critical_path_expected", e.critical_path, "1");
    if (e.imbalance_tiles > 0) { /* in tiles computed, as the CPU ring counts its work */
        record_metric(r, "imbalance_expected_tiles", e.imbalance_tiles, "1");
        record_metric(r, "critical_path_expected_tiles", e.critical_path_tiles, "1");
    }
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
    if (d->device_bytes[0] > 0)
        record_per_rank(r, "device_bytes", "B", d->device_bytes, P);
    if (x->transport == ATTN_TRANSPORT_CUDA_LOCAL) /* see impls/cuda/gcomm.cuh */
        record_extra_str(r, "timing_scope", "virtual ranks on one GPU: schedule check only");
    for (int i = 0; i < P; i++)
        if (d->bytes_sent[i] != e.bytes_sent[i] || d->bytes_recv[i] != e.bytes_recv[i]) {
            record_set_status(r, REC_FAIL, "rank %d moved %.0f B out / %.0f B in, the analytic count is %.0f / %.0f", i,
                              d->bytes_sent[i], d->bytes_recv[i], e.bytes_sent[i], e.bytes_recv[i]);
            break;
        }
}

void task_record_dist(attn_record_t *r, const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x,
                      const attn_dist_stats_t *d) {
    attn_dist_expect_t e = {0};
    be->expect(be, p, x, &e);
    record_dist_expect(r, x, d, &e);
}

void task_record_dist_backward(attn_record_t *r, const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x,
                               const attn_dist_stats_t *d) {
    attn_dist_expect_t e = {0};
    be->backward_expect(be, p, x, &e);
    record_dist_expect(r, x, d, &e);
}
