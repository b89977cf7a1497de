/* decode.h — short queries on the CPU through the decode split plan (decode_plan.h): the path
 * blockwise takes for decode (n_q ≤ DECODE_SHORT_Q, or too few query tiles to occupy the
 * threads), the same plan the CUDA decode kernels run. docs/decode.md. */
#pragma once
#include "impls/cpu/decode_plan.h"
#include "impls/cpu/tile_engine.h"

enum { DECODE_SHORT_Q = 64 }; /* n_q at or below which the split plan is used whatever the load */

/* The plan blockwise uses for p on `threads` threads; 0 when p goes through the tile engine. */
int decode_plan_cpu(const attn_problem_t *p, int threads, decode_plan_t *pl);
/* Float32 attention of the plan's queries (positions qs) against its keys (positions ks): partials
 * per (batch, kv head, query tile, split), then the merge into io->o, io->lse. Rows that see
 * nothing get O = 0, LSE = −∞ (problem_finish_rows turns whole rows of those into NaN). */
int decode_attend_f32(const attn_problem_t *p, int threads, const decode_plan_t *pl, attn_span_t qs, attn_span_t ks,
                      const tile_io_t *io, attn_err_t *err);
/* The partials and per-thread workspace decode_attend_f32 allocates. */
size_t decode_workspace_bytes(const attn_problem_t *p, int threads, const decode_plan_t *pl);
