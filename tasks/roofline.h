/* roofline.h — the roofline the throughput task places each record on: sgemm GFLOP/s for
 * compute and a plain read of the same K/V bytes for memory traffic, both measured in the same
 * run. Pure functions of the problem and the measured figures, so the bound classification
 * and the impossible-figure check are unit tested with synthetic numbers (test_roofline.c). */
#pragma once
#include "core/problem.h"

/* The compute roof a figure must stay under: the larger of the sgemm measured beside it and the
 * cores' FMA peak (peak_fma_gflops; NaN when not measured). sgemm alone was the roof while every
 * tile went through sgemm; the fused AVX-512 tile kernel has no packing or thread
 * synchronisation and runs at 1.0–1.1 × sgemm, which is not impossible (docs/roofline.md). */
double roofline_compute_roof(double sgemm_gflops, double fma_gflops);

/* How far above a roofline a median figure may sit before it is an error rather than noise.
 * The compute roofline is OpenBLAS sgemm, which attention's own sgemm tiles cannot beat; the
 * bandwidth roofline is a vectorised read of exactly the bytes the call must read. 10% covers
 * the pair-to-pair noise of a shared 2-core machine; a figure beyond it means work or bytes
 * were skipped or miscounted. */
#define ROOFLINE_SLACK 1.1

/* Key rows [*lo, *hi) visible to at least one query of p (the same in every batch and kv
 * head): all of them for none and causal, the band of the window for window. */
void roofline_kv_rows(const attn_problem_t *p, int64_t *lo, int64_t *hi);

/* The least K/V traffic of one call: every visible key row of K and V read once, at the
 * problem's element size: B · H_kv · (hi − lo) · d · 2 · sizeof(element). GQA query heads
 * share their kv head's rows, so they are not counted again. */
double roofline_kv_bytes(const attn_problem_t *p);

/* 1 when a call of `intensity` FLOP per K/V byte is bandwidth-bound, i.e. below the machine
 * balance sgemm_gflops / read_gbps (FLOP/B); 0 when compute-bound. */
int roofline_bound(double intensity, double sgemm_gflops, double read_gbps);

/* The roofline itself: attainable GFLOP/s = min(sgemm, intensity × bandwidth). A figure's
 * fraction of it is frac_of_sgemm when compute-bound and kv_gbps / read_gbps when not. */
double roofline_attainable_gflops(double intensity, double sgemm_gflops, double read_gbps);

/* 1 when both medians are possible (≤ ROOFLINE_SLACK); otherwise 0 and the reason, naming the
 * larger excess first. NaN fractions (nothing measured) pass: there is nothing to judge. */
int roofline_check(double frac_of_sgemm, double frac_of_bandwidth, char *reason, size_t len);

/* ---- GPU roof (docs/roofline.md) --------------------------------------------------------------
 * A GPU record's compute roof is a cuBLAS GEMM in the record's dtype (device.h DEVICE_GEMM_*:
 * bf16 or f16 on tensor cores, f32 without TF32, as the f32 backends run) measured beside it, and its
 * memory roof a read-only pass over as many device bytes as its K/V, so a K/V that fits in L2
 * is judged against L2 speed as the CPU's is against its caches. */
int roofline_gemm_kind(attn_dtype_t dt);
/* Bytes of one K/V element on the device: 2 in bf16 and f16 (the host arrays hold float32), else dtype_size. */
size_t roofline_device_elem_bytes(attn_dtype_t dt);
/* roofline_kv_bytes at the device's element size. */
double roofline_device_kv_bytes(const attn_problem_t *p);
/* TFLOP/s of an n×n×n GEMM (2n³ FLOP) that took `seconds`; NaN when seconds ≤ 0. */
double roofline_gemm_tflops(int64_t n, double seconds);
/* A record's GFLOP/s as a fraction of `devices` GPUs of gemm_tflops each (units: GFLOP/s
 * against TFLOP/s, the slip this exists to keep in one place). */
double roofline_frac_of_peak(double gflops, double gemm_tflops, int devices);
