/* rope.h — rotary position embedding (RoPE, Hugging Face rotate_half pairing, partial rotary)
 * applied in place at global positions start + stride·r, so one call serves a whole sequence, a
 * KV-cache append and a rank's striped or zigzag piece, bitwise alike. Design: docs/rope.md. */
#pragma once
#include <stdint.h>

typedef struct {
    int head_dim, rot_dims; /* rot_dims = fraction·head_dim: even, 2 … head_dim (≤ 256) */
    double theta;           /* base θ, > 0 */
} rope_t;

/* Rotated dims for a head_dim and partial-rotary fraction: fraction·head_dim when that is an
 * even whole number in 2 … head_dim (to 1e-9, so 0.4·80 counts as 32), else −1. The one rule
 * both model_config_validate and rope_init apply. */
int rope_rot_dims(int head_dim, double fraction);

/* Needs rope_rot_dims(head_dim, fraction) > 0, head_dim ≤ 256 and θ > 0 (aborts otherwise: a
 * validated config never gets here with bad values). */
void rope_init(rope_t *r, int head_dim, double theta, double fraction);

/* x: rows × row_stride values; row r's head starts at x + r·row_stride and sits at global
 * position pos_start + pos_stride·r (pos_start ≥ 0, pos_stride ≥ 1, last position < 2^53). */
void rope_apply(const rope_t *r, float *x, int64_t rows, int64_t row_stride, int64_t pos_start, int64_t pos_stride);

/* The float64 reference model's version: the same cosines and sines, no rounding to float. */
void rope_apply_f64(const rope_t *r, double *x, int64_t rows, int64_t row_stride, int64_t pos_start,
                    int64_t pos_stride);

/* The inverse rotation (by −φ at the same positions), which is also the rotation's transpose:
 * the model's backward (model/backward.inc) takes a gradient through RoPE with it. */
void rope_unapply(const rope_t *r, float *x, int64_t rows, int64_t row_stride, int64_t pos_start, int64_t pos_stride);
void rope_unapply_f64(const rope_t *r, double *x, int64_t rows, int64_t row_stride, int64_t pos_start,
                      int64_t pos_stride);
