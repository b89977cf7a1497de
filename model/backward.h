/* backward.h — the shared decoder's gradient: a cross-entropy loss on a few positions and its
 * gradient w.r.t. the embedded rows (before layer 0), through every op of the forward and the
 * attention backend's backward. The float64 path (naive float64 attention) is the reference;
 * tests/test_model_grad.c checks it by central differences. Design: docs/backward.md. */
#pragma once
#include "model/model.h"

/* loss = (1/count) Σ_j CE(logits at row pos[j], target[j]); a position may repeat. */
typedef struct {
    int64_t count; /* 1 … n */
    const int64_t *pos;
    const int32_t *target;
} model_loss_t;

/* The embedding rows of tokens as double (n, hidden): the input model_loss_backward takes. */
int model_embed_rows(const model_t *m, const int32_t *tokens, int64_t n, double *emb, attn_err_t *err);

/* Runs the model on emb (n, hidden) at positions 0 … n−1 (no KV cache; dense layers on the host
 * whatever m->dense says), attention by att->be on problems shaped like att->tmpl (mask, window,
 * documents; tmpl->dtype f64 = the reference path, f32 = float32 throughout; a distributed
 * backend runs its forward and backward on att->x->ranks local ranks). Writes the loss and, when
 * d_emb is non-NULL, d(loss)/d(emb) (n, hidden). */
int model_loss_backward(const model_t *m, const model_attn_t *att, const double *emb, int64_t n,
                        const model_loss_t *loss, double *loss_out, double *d_emb, attn_err_t *err);
