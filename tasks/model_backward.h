/* model_backward.h — `--task model --direction backward|both`: the gradient of a cross-entropy
 * loss on a few positions w.r.t. the embedded rows, each backend's float32 model against the
 * float64 model (model/backward.h; bound and figures: docs/backward.md "The model's gradient"). */
#pragma once
#include "model/model.h"
#include "tasks/task.h"

/* The task's seeded tokens (uniform over the vocabulary): the forward's and the backward's. */
void model_task_tokens(uint64_t seed, int vocab, int64_t n, int32_t *tok);

/* One case of the run's grid for model m: a record per backend (direction "backward"). */
int model_backward_case(const model_t *m, const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x,
                        int index, int count, attn_run_t *run, attn_err_t *err);
