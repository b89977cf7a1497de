/* flash_decode.h — the decode split path of blockwise_cuda (flash_decode.cu): the plan on the
 * current device, its partials' bytes, the launch on data already on the device. flash.cu's
 * forward takes it when cuda_decode_plan says so. docs/decode.md. */
#pragma once
#include "core/backend.h"
#include "impls/cpu/decode_plan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 and the plan when p takes the split kernels on the current device (n_q ≤ 64, or B·H·⌈n_q/64⌉
 * below the SM count, and the packed rows fit the plan); 0 otherwise or without a device. */
int cuda_decode_plan(const attn_problem_t *p, decode_plan_t *pl);
/* The split the record's config gets (backend decode_split): device x->device; 0 = no split plan. */
int cuda_decode_split(const attn_problem_t *p, const attn_exec_t *x);
/* Device bytes of the partial O and LSE (0 when split = 1: the split kernel writes O itself). */
size_t cuda_decode_part_bytes(const attn_problem_t *p, const decode_plan_t *pl);

#ifdef __cplusplus
}
#include "impls/cuda/cuda_backends.h"
/* The split kernel, then the merge when split > 1, on Q, K, V in p->dtype (bf16 or f16) already on the device (call's
 * q_off, kv_ld, mask, window; q_ld = n_q), `part` holding cuda_decode_part_bytes. */
int cuda_decode_launch(const attn_problem_t *p, const decode_plan_t *pl, const cuda_flash_call *c, float *part,
                       cudaStream_t st, attn_err_t *err);
struct dev_buf;
struct event_pair;
/* The one timed launch of blockwise_cuda's forward: the split path when cuda_decode_plan takes p
 * (its partials allocated into part, which the caller keeps until the stream is done), else
 * cuda_flash_launch, between ev.start and ev.stop (created here) on s. */
int cuda_flash_launch_timed(const attn_problem_t *p, const cuda_flash_call *c, dev_buf &part, event_pair &ev,
                            cudaStream_t s, attn_err_t *err);
/* blockwise_cuda's timed run of a call on device data (flash.cu's forward, kv_device.cu's): the
 * split path when cuda_decode_plan takes p (its partials allocated here), else cuda_flash_launch,
 * between two events; then O and LSE (nq, nl floats) back to io (cuda_finish). */
int cuda_flash_run_timed(const attn_problem_t *p, const cuda_flash_call *c, const dev_buf &o, const dev_buf &lse,
                         size_t nq, size_t nl, const attn_io_t *io, cudaStream_t s, attn_err_t *err);
#endif
