/* roofline.c — see roofline.h. Nothing here measures: the throughput task hands in the
 * figures it timed, so every rule below can be tested without a machine's noise. */
#include "tasks/roofline.h"

#include "core/device.h"

#include <math.h>
#include <stdio.h>

void roofline_kv_rows(const attn_problem_t *p, int64_t *lo, int64_t *hi) {
    attn_span_t qs = problem_q_span(p);
    int64_t first = qs.start, last = qs.start + qs.stride * (p->n_q - 1);
    const attn_vis_t v = problem_vis(p);
    mask_key_range(&v, first, last, problem_k_span(p), p->n_k, lo, hi);
}

double roofline_kv_bytes(const attn_problem_t *p) {
    int64_t lo, hi;
    roofline_kv_rows(p, &lo, &hi);
    return 2.0 * (double)p->batch * (double)p->kv_heads * (double)(hi - lo) * (double)p->head_dim *
           (double)dtype_size(p->dtype);
}

double roofline_compute_roof(double sgemm_gflops, double fma_gflops) {
    return fmax(sgemm_gflops, fma_gflops); /* fmax drops a NaN operand */
}

int roofline_bound(double intensity, double sgemm_gflops, double read_gbps) {
    return intensity < sgemm_gflops / read_gbps;
}

double roofline_attainable_gflops(double intensity, double sgemm_gflops, double read_gbps) {
    return fmin(sgemm_gflops, intensity * read_gbps);
}

int roofline_check(double frac_of_sgemm, double frac_of_bandwidth, char *reason, size_t len) {
    /* NaN compares false, so a figure that was never measured passes rather than errs. */
    int compute = frac_of_sgemm > ROOFLINE_SLACK, memory = frac_of_bandwidth > ROOFLINE_SLACK;
    if (compute && memory)
        snprintf(reason, len,
                 "%.2f × the sgemm roofline and %.2f × the read bandwidth of the same K/V measured in this run: "
                 "work and bytes were skipped or miscounted",
                 frac_of_sgemm, frac_of_bandwidth);
    else if (compute)
        snprintf(reason, len, "%.2f × the sgemm roofline measured in this run: work was skipped or miscounted",
                 frac_of_sgemm);
    else if (memory)
        snprintf(reason, len,
                 "%.2f × the read bandwidth of the same K/V measured in this run: K/V bytes were skipped or "
                 "miscounted",
                 frac_of_bandwidth);
    return !(compute || memory);
}

int roofline_gemm_kind(attn_dtype_t dt) {
    return dt == ATTN_BF16 ? DEVICE_GEMM_BF16 : dt == ATTN_F16 ? DEVICE_GEMM_F16 : DEVICE_GEMM_F32;
}

size_t roofline_device_elem_bytes(attn_dtype_t dt) { return dtype_is_16bit(dt) ? 2 : dtype_size(dt); }

double roofline_device_kv_bytes(const attn_problem_t *p) {
    return roofline_kv_bytes(p) / (double)dtype_size(p->dtype) * (double)roofline_device_elem_bytes(p->dtype);
}

double roofline_gemm_tflops(int64_t n, double seconds) {
    return seconds > 0 ? 2.0 * (double)n * (double)n * (double)n / seconds / 1e12 : NAN;
}

double roofline_frac_of_peak(double gflops, double gemm_tflops, int devices) {
    return gflops / (gemm_tflops * 1e3 * (devices > 0 ? devices : 1));
}
