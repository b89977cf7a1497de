/* gate.h — the regression gate's rule, written once for `attnbench compare` (which prints it) and
 * `attnbench report --history` (which charts it over a directory of nightly results): match the
 * records of BASE and NEW, flag a record that passed and now fails or errors, and a timed metric
 * worse by more than the threshold beyond both runs' spreads. The rule: README "Dashboards and the
 * regression gate". */
#pragma once
#include <jansson.h>

#include "core/common.h"

typedef enum {
    GATE_STATUS, /* a matched record whose status changed */
    GATE_LACKS,  /* a metric one side lacks or has no value for */
    GATE_METRIC, /* a metric both sides have */
    GATE_ONLY,   /* a record without a match (side 0 BASE, 1 NEW) */
} gate_kind_t;

typedef struct {
    gate_kind_t kind;
    const char *name;           /* the case's short label */
    const char *metric;         /* GATE_LACKS, GATE_METRIC; "status" for GATE_STATUS */
    const char *base_s, *new_s; /* GATE_STATUS: the statuses; GATE_LACKS: values as text or "-" */
    double base, now, ratio;    /* GATE_METRIC; ratio NaN where new/base is undefined */
    int verdict;                /* 1 worse (REGRESSED), -1 better (improved), 0 neither */
    const char *note;           /* GATE_LACKS: only in NEW / only in BASE / no value; GATE_ONLY: its status */
    int side;                   /* GATE_ONLY */
} gate_line_t;

typedef struct {
    int matched, flips, worse, better;
} gate_sum_t;

typedef void (*gate_line_fn)(void *ctx, const gate_line_t *line);

/* results_read, and an error for a file with no records (a gate that compares nothing must not pass). */
int gate_load(const char *path, json_t **root, attn_err_t *err);
/* Every line of BASE against NEW, in compare's printing order, to fn; the counts to *sum. The
 * gate fails when sum->flips or sum->worse is non-zero. thr: a fraction, 0 ≤ thr < 1. */
int gate_run(json_t *base, json_t *now, double thr, gate_line_fn fn, void *ctx, gate_sum_t *sum, attn_err_t *err);
/* A short name for a record: task backend n_k[/n_q] mask [P=] [depth=]; comm records by size. */
void gate_label(json_t *rec, char *out, size_t cap);
