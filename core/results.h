/* results.h — one run's records and their output: results/<run_id>.json (schema
 * attnbench.results/N, see docs/results-schema.md) and results/<run_id>.csv (one row per record ×
 * metric), both written atomically (temporary name, then rename), plus the fixed-width table. */
#pragma once
#include "core/problem.h"

/* The schema's record statuses, the one list every writer and reader uses: X(enum, name, since),
 * since = the schema version that introduced it. A new status is one line here with since = a
 * new version; results_schema_version() follows (the rule: docs/results-schema.md). */
#define ATTN_STATUSES(X)                                                                            \
    X(REC_PASS, "pass", 1)                                                                          \
    X(REC_FAIL, "fail", 1)                                                                          \
    X(REC_SKIPPED, "skipped", 1)                                                                    \
    X(REC_ERROR, "error", 1)                                                                        \
    X(REC_APPROXIMATE, "approximate", 2)

#define ATTN_STATUS_ENUM(e, name, since) e,
typedef enum { ATTN_STATUSES(ATTN_STATUS_ENUM) REC_N_STATUSES } attn_status_t;
#undef ATTN_STATUS_ENUM

/* The version files are written with: the base version of the record and run fields (bump it
 * when a field is added), or the newest status's, whichever is later. */
#define ATTN_RESULTS_BASE_VERSION 2 /* 2: record "peer", run "placement" */
#define ATTN_RESULTS_SCHEMA_PREFIX "attnbench.results/"
int results_schema_version(void);
/* "attnbench.results/<version>" of this build, for the writers. */
const char *results_schema_name(void);
/* The version of a schema string this build reads (1 … results_schema_version()), or 0 for
 * another schema, a malformed version or a newer one. */
int results_schema_parse(const char *schema);
/* 1 and *s set when name is a status of schema version `version`; 0 otherwise. */
int status_parse(const char *name, int version, attn_status_t *s);
/* Run ids as results_run_init makes them, YYYYMMDDTHHMMSSZ-xxxxxx (6 lower-case hex digits): the
 * only shape a reader accepts, since --resume names its output file after it. */
int results_run_id_valid(const char *id);

typedef struct {
    char name[64];
    char unit[24];
    double value;
} attn_metric_t;

typedef struct {
    char name[64];
    char unit[24];
    int n;
    double *values; /* one per rank */
} attn_per_rank_t;

/* Task-specific config beyond the fixed columns (needle depth, mode, ...). */
typedef struct {
    char key[32];
    char str[64]; /* used when is_num == 0 */
    double num;
    int is_num;
} attn_extra_t;

typedef struct {
    char task[32];
    char backend[48];
    char local_backend[48]; /* "" when not a wrapper backend */
    char device[16];        /* "cpu" | "cuda:N" */
    char transport[16];     /* "none" for single-rank backends */
    char layout[16];        /* "none" for single-rank backends */
    int ranks;
    attn_problem_t config;
    attn_extra_t *extra;
    int n_extra;
    attn_metric_t *metrics;
    int n_metrics, cap_metrics;
    attn_per_rank_t *per_rank;
    int n_per_rank;
    attn_status_t status;
    char reason[512];
    /* Schema 2: the implementation measured when it is not attnbench's own (a --plugin's or an
     * exec: program's): JSON "peer": {"name", "version", "kind"}; absent when name is "". */
    char peer_name[64], peer_version[64], peer_kind[16];
} attn_record_t;

/* Schema 2: where one rank of a distributed run over mpi or nccl ran (run field "placement"). */
typedef struct {
    int rank, local_rank;   /* local_rank: among the job's processes on its node; −1 unknown */
    char host[64];
    char gpus[64];          /* CUDA_VISIBLE_DEVICES as the rank saw it; "" unset */
    char job[32];           /* SLURM_JOB_ID; "" outside Slurm */
} attn_placement_t;

typedef struct {
    char run_id[64];
    char started_at[32]; /* ISO 8601 UTC */
    char git_sha[48];
    char *command_line;
    uint64_t seed;
    char host[128], os[128], cpu_model[128];
    int cores, threads;
    uint64_t memory_bytes;
    char blas[160], compiler[96], build_type[24];
    /* GPU / MPI / NCCL fields are JSON null unless those builds (and a device) fill them. */
    char gpu_model[128], gpu_driver[32], cuda_version[32], nccl_version[32], mpi_version[64];
    attn_record_t *records;
    int n_records, cap_records;
    attn_placement_t *placement; /* one per rank, malloc'ed; NULL for a single process */
    int n_placement;
} attn_run_t;

/* Fills run metadata (id, time, machine, build) from the process; argv becomes command_line. */
int results_run_init(attn_run_t *run, int argc, char **argv, uint64_t seed, int threads, attn_err_t *err);
void results_run_free(attn_run_t *run);
/* GPU model, driver and CUDA runtime version of CUDA device `ordinal` into the run metadata
 * (results_run_init describes device 0); left null without CUDA or without that device. */
void results_run_set_device(attn_run_t *run, int ordinal);

/* Appends a record with identity and config filled (device "cpu", transport and layout "none",
 * ranks 1; config may be NULL for all zeros); status starts as pass. Returned pointer is valid
 * until the next results_add (the array is realloc'd). NULL only when out of memory.
 * The record_* setters below cannot fail visibly: if one runs out of memory it marks the record
 * REC_ERROR with a reason instead of dropping the value silently. A name set twice replaces. */
attn_record_t *results_add(attn_run_t *run, const char *task, const char *backend, const attn_problem_t *config);
void record_metric(attn_record_t *r, const char *name, double value, const char *unit);
/* name, name_min, name_max from a sample of timed values (median, min, max); the median of an
 * even count is the mean of the middle two; n == 0 records all three as NaN (JSON null). */
void record_timed(attn_record_t *r, const char *name, const double *samples, int n, const char *unit);
void record_per_rank(attn_record_t *r, const char *name, const char *unit, const double *values, int n);
void record_extra_str(attn_record_t *r, const char *key, const char *value);
void record_extra_num(attn_record_t *r, const char *key, double value);
/* reason_fmt NULL for no reason (an empty literal would trip -Wformat-zero-length). */
void record_set_status(attn_record_t *r, attn_status_t s, const char *reason_fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *status_name(attn_status_t s);

/* Writes <out_dir>/<run_id>.json and .csv through core/outfile.h, both or neither: on failure
 * no final name is created or changed. Creates out_dir if missing. */
int results_write(const attn_run_t *run, const char *out_dir, attn_err_t *err);

/* The terminal view, per task: a fixed-width table with a units row, one line per record with
 * its metrics as columns (_min/_max left to the files), then a note line per record reason. */
void results_print_table(const attn_run_t *run, FILE *f);

/* Column order of the CSV (documented in the README); exposed for tests. Identity and config,
 * then the extra set mode, depth, needles, repeats, warmup (record extras with other keys are
 * JSON-only), then metric, value, unit, status, reason. */
extern const char *const results_csv_columns[];
extern const int results_csv_ncolumns;

