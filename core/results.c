/* results.c — the run's record store and its three views: JSON (jansson), CSV (libcsv) and the
 * fixed-width terminal table (see results.h and README "Results"). Both files go through
 * core/outfile.h together: staged, then renamed only once both are complete, so a reader (a
 * dashboard polling results/) never sees a half-written file or a JSON without its CSV. */
#include "core/results.h"
#include "core/results_read.h"

#include "core/outfile.h"
#include "core/timing.h"
#include "core/device.h"

#include <csv.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/sysinfo.h"

enum { COL_EXTRA = 19, N_EXTRA = 5, COL_METRIC = 24, NCOLS = 29 };

const char *const results_csv_columns[] = {
    "run_id", "task", "backend", "local_backend", "device", "transport", "ranks", "layout",
    "batch", "heads", "kv_heads", "head_dim", "seq_len_q", "seq_len_k", "mask", "window", "dtype",
    "block_q", "block_k",
    /* The documented extra set: record_extra_* keys with these names get a column. Any other
     * key goes to the JSON config only, so the CSV keeps one shape across all tasks. */
    "mode", "depth", "needles", "repeats", "warmup",
    "metric", "value", "unit", "status", "reason"};
const int results_csv_ncolumns = NCOLS;
_Static_assert(sizeof results_csv_columns / sizeof results_csv_columns[0] == NCOLS, "CSV columns");

/* ---- run ---------------------------------------------------------------------------------- */

/* splitmix64 finaliser: spreads pid and clock bits over the whole word before truncating. */
static uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int results_run_init(attn_run_t *run, int argc, char **argv, uint64_t seed, int threads, attn_err_t *err) {
    memset(run, 0, sizeof *run);
    struct timespec wall, mono;
    clock_gettime(CLOCK_REALTIME, &wall);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    struct tm tm;
    gmtime_r(&wall.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    strftime(run->started_at, sizeof run->started_at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* The timestamp alone collides when two runs start in the same second (a sweep script, a
     * CI matrix); the pid separates processes on one host, the monotonic nanoseconds separate
     * hosts and containers that reuse pids. 24 bits: ~600 runs in one second for a 1% clash. */
    uint64_t ns = (uint64_t)mono.tv_sec * 1000000000ull + (uint64_t)mono.tv_nsec;
    uint64_t tag = mix64(mix64((uint64_t)getpid()) ^ ns) & 0xffffff;
    snprintf(run->run_id, sizeof run->run_id, "%s-%06" PRIx64, stamp, tag);

    size_t len = 1;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    run->command_line = malloc(len);
    if (!run->command_line)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory: command line needs %zu bytes", len);
    run->command_line[0] = '\0';
    for (int i = 0; i < argc; i++)
        strcat(strcat(run->command_line, i ? " " : ""), argv[i]);
    run->seed = seed;
    run->threads = threads;

    attn_sysinfo_t si;
    sysinfo_collect(&si);
    snprintf(run->host, sizeof run->host, "%s", si.host);
    snprintf(run->os, sizeof run->os, "%s", si.os);
    snprintf(run->cpu_model, sizeof run->cpu_model, "%s", si.cpu_model);
    run->cores = si.cores;
    run->memory_bytes = si.memory_bytes;
    snprintf(run->blas, sizeof run->blas, "%s", si.blas);
    snprintf(run->compiler, sizeof run->compiler, "%s", si.compiler);
    snprintf(run->build_type, sizeof run->build_type, "%s", si.build_type);
    snprintf(run->git_sha, sizeof run->git_sha, "%s", si.git_sha);
    results_run_set_device(run, 0);
    return ATTN_OK;
}

void results_run_set_device(attn_run_t *run, int ordinal) {
    run->gpu_model[0] = run->gpu_driver[0] = run->cuda_version[0] = '\0';
    device_describe(ordinal, run->gpu_model, sizeof run->gpu_model, run->gpu_driver, sizeof run->gpu_driver,
                    run->cuda_version, sizeof run->cuda_version);
    char why[256] = "", pci[32] = "";
    if (device_count(why, sizeof why) <= ordinal)
        gpu_state_unknown(&run->gpu_state, why[0] ? why : "no such CUDA device");
    else if (!device_pci_bus_id(ordinal, pci, sizeof pci))
        gpu_state_unknown(&run->gpu_state, "CUDA did not report the device's PCI bus id");
    else
        gpu_state_read(NULL, pci, ordinal, &run->gpu_state);
}

void results_run_free(attn_run_t *run) {
    for (int i = 0; i < run->n_records; i++) {
        attn_record_t *r = &run->records[i];
        for (int k = 0; k < r->n_per_rank; k++)
            free(r->per_rank[k].values);
        free(r->per_rank);
        free(r->metrics);
        free(r->extra);
    }
    free(run->records);
    free(run->command_line);
    free(run->placement);
    memset(run, 0, sizeof *run);
}

/* ---- records ------------------------------------------------------------------------------ */

attn_record_t *results_add(attn_run_t *run, const char *task, const char *backend, const attn_problem_t *config) {
    if (run->n_records == run->cap_records) {
        int cap = run->cap_records ? 2 * run->cap_records : 16;
        attn_record_t *grown = realloc(run->records, (size_t)cap * sizeof *grown);
        if (!grown)
            return NULL;
        run->records = grown;
        run->cap_records = cap;
    }
    attn_record_t *r = &run->records[run->n_records++];
    memset(r, 0, sizeof *r);
    snprintf(r->task, sizeof r->task, "%s", task);
    snprintf(r->backend, sizeof r->backend, "%s", backend);
    strcpy(r->device, "cpu");
    strcpy(r->transport, "none");
    strcpy(r->layout, "none");
    r->ranks = 1;
    if (config)
        r->config = *config;
    r->status = REC_PASS;
    return r;
}

void record_set_status(attn_record_t *r, attn_status_t s, const char *reason_fmt, ...) {
    r->status = s;
    r->reason[0] = '\0';
    if (reason_fmt) {
        va_list ap;
        va_start(ap, reason_fmt);
        vsnprintf(r->reason, sizeof r->reason, reason_fmt, ap);
        va_end(ap);
    }
}

/* The record_* setters return nothing, so a lost allocation shows up in the record itself
 * rather than vanishing: a metric that silently went missing would read as "not measured". */
static void record_oom(attn_record_t *r, const char *what) {
    record_set_status(r, REC_ERROR, "out of memory recording %s", what);
}

void record_metric(attn_record_t *r, const char *name, double value, const char *unit) {
    attn_metric_t *m = NULL;
    for (int i = 0; i < r->n_metrics && !m; i++)
        if (strcmp(r->metrics[i].name, name) == 0)
            m = &r->metrics[i]; /* same name again replaces: JSON keys must stay unique */
    if (!m) {
        if (r->n_metrics == r->cap_metrics) {
            int cap = r->cap_metrics ? 2 * r->cap_metrics : 8;
            attn_metric_t *grown = realloc(r->metrics, (size_t)cap * sizeof *grown);
            if (!grown) {
                record_oom(r, name);
                return;
            }
            r->metrics = grown;
            r->cap_metrics = cap;
        }
        m = &r->metrics[r->n_metrics++];
        snprintf(m->name, sizeof m->name, "%s", name);
    }
    snprintf(m->unit, sizeof m->unit, "%s", unit ? unit : "");
    m->value = value;
}

void record_timed(attn_record_t *r, const char *name, const double *samples, int n, const char *unit) {
    double med, lo, hi; /* NaN without samples: the metrics exist but read as null */
    stats_summary(samples, n, &med, &lo, &hi);
    char key[sizeof r->metrics[0].name + 8];
    record_metric(r, name, med, unit);
    snprintf(key, sizeof key, "%s_min", name);
    record_metric(r, key, lo, unit);
    snprintf(key, sizeof key, "%s_max", name);
    record_metric(r, key, hi, unit);
}

void record_per_rank(attn_record_t *r, const char *name, const char *unit, const double *values, int n) {
    double *copy = malloc((size_t)ATTN_MAX(n, 1) * sizeof *copy);
    if (!copy) {
        record_oom(r, name);
        return;
    }
    if (n > 0)
        memcpy(copy, values, (size_t)n * sizeof *copy);
    attn_per_rank_t *pr = NULL;
    for (int i = 0; i < r->n_per_rank && !pr; i++)
        if (strcmp(r->per_rank[i].name, name) == 0)
            pr = &r->per_rank[i];
    if (pr) {
        free(pr->values);
    } else {
        attn_per_rank_t *grown = realloc(r->per_rank, (size_t)(r->n_per_rank + 1) * sizeof *grown);
        if (!grown) {
            free(copy);
            record_oom(r, name);
            return;
        }
        r->per_rank = grown;
        pr = &r->per_rank[r->n_per_rank++];
        snprintf(pr->name, sizeof pr->name, "%s", name);
    }
    snprintf(pr->unit, sizeof pr->unit, "%s", unit ? unit : "");
    pr->values = copy;
    pr->n = ATTN_MAX(n, 0);
}

static attn_extra_t *extra_slot(attn_record_t *r, const char *key) {
    for (int i = 0; i < r->n_extra; i++)
        if (strcmp(r->extra[i].key, key) == 0)
            return &r->extra[i];
    attn_extra_t *grown = realloc(r->extra, (size_t)(r->n_extra + 1) * sizeof *grown);
    if (!grown) {
        record_oom(r, key);
        return NULL;
    }
    r->extra = grown;
    attn_extra_t *e = &r->extra[r->n_extra++];
    memset(e, 0, sizeof *e);
    snprintf(e->key, sizeof e->key, "%s", key);
    return e;
}

void record_extra_str(attn_record_t *r, const char *key, const char *value) {
    attn_extra_t *e = extra_slot(r, key);
    if (e) {
        snprintf(e->str, sizeof e->str, "%s", value);
        e->is_num = 0;
    }
}

void record_extra_num(attn_record_t *r, const char *key, double value) {
    attn_extra_t *e = extra_slot(r, key);
    if (e) {
        e->num = value;
        e->is_num = 1;
    }
}

/* ---- JSON ---------------------------------------------------------------------------------- */

/* json_object_set_new / json_array_append_new take ownership even when they fail, so a NULL
 * from any constructor (out of memory) just clears ok and nothing leaks. */
#define SET(obj, key, val) (ok &= json_object_set_new((obj), (key), (val)) == 0)

static json_t *jstr(const char *s) {
    json_t *j = json_string(s);
    if (j || !s)
        return j;
    /* Not UTF-8 (an argv byte, a locale-encoded host name): keep the ASCII, mark the rest. */
    char *c = strdup(s);
    if (!c)
        return NULL;
    for (unsigned char *p = (unsigned char *)c; *p; p++)
        if (*p >= 0x80)
            *p = '?';
    j = json_string(c);
    free(c);
    return j;
}
static json_t *jstr_or_null(const char *s) { return s[0] ? jstr(s) : json_null(); } /* "" = unknown */
static json_t *jreal(double v) { return isfinite(v) ? json_real(v) : json_null(); } /* JSON has no inf/nan */
/* Extras such as repeats=10 read better as 10 than 10.0; fractions (depth) stay reals. */
static json_t *jnum(double v) {
    return isfinite(v) && v == trunc(v) && fabs(v) < 9007199254740992.0 ? json_integer((json_int_t)v) : jreal(v);
}

/* NVML's view of the device (core/gpu_state.h): unknown fields null, the reason beside them. */
static json_t *gpu_state_json(const attn_gpu_state_t *g) {
    json_t *o = json_object();
    if (!o)
        return NULL;
    int ok = 1;
    SET(o, "sm_clock_mhz", jnum(g->sm_clock_mhz));
    SET(o, "mem_clock_mhz", jnum(g->mem_clock_mhz));
    SET(o, "sm_clock_max_mhz", jnum(g->sm_clock_max_mhz));
    SET(o, "mem_clock_max_mhz", jnum(g->mem_clock_max_mhz));
    SET(o, "power_limit_w", jreal(g->power_limit_w));
    SET(o, "ecc", g->ecc < 0 ? json_null() : json_boolean(g->ecc));
    SET(o, "persistence", g->persistence < 0 ? json_null() : json_boolean(g->persistence));
    SET(o, "reason", jstr_or_null(g->reason));
    if (!ok)
        json_decref(o);
    return ok ? o : NULL;
}

static json_t *run_json(const attn_run_t *run) {
    int ok = 1;
    json_t *o = json_object();
    SET(o, "run_id", jstr(run->run_id));
    SET(o, "started_at", jstr(run->started_at));
    SET(o, "git_sha", jstr_or_null(run->git_sha));
    SET(o, "command_line", jstr(run->command_line ? run->command_line : ""));
    /* jansson integers are signed 64-bit; a seed above that is kept exact as a decimal string. */
    SET(o, "seed", run->seed <= INT64_MAX ? json_integer((json_int_t)run->seed)
                                          : json_sprintf("%" PRIu64, run->seed));
    SET(o, "host", jstr_or_null(run->host));
    SET(o, "os", jstr_or_null(run->os));
    SET(o, "cpu_model", jstr_or_null(run->cpu_model));
    SET(o, "cores", json_integer(run->cores));
    SET(o, "threads", json_integer(run->threads));
    SET(o, "memory_bytes", json_integer((json_int_t)run->memory_bytes));
    SET(o, "blas", jstr_or_null(run->blas));
    SET(o, "gpu_model", jstr_or_null(run->gpu_model));
    SET(o, "gpu_driver", jstr_or_null(run->gpu_driver));
    SET(o, "cuda_version", jstr_or_null(run->cuda_version));
    char nccl[32] = ""; /* known once a run has used the nccl transport */
    snprintf(nccl, sizeof nccl, "%s", run->nccl_version);
    if (!nccl[0])
        device_nccl_version(nccl, sizeof nccl);
    SET(o, "nccl_version", jstr_or_null(nccl));
    SET(o, "mpi_version", jstr_or_null(run->mpi_version));
    SET(o, "compiler", jstr_or_null(run->compiler));
    SET(o, "build_type", jstr_or_null(run->build_type));
    SET(o, "gpu_state", gpu_state_json(&run->gpu_state));
    if (run->n_placement > 0) { /* schema 2: one entry per rank of an mpi/nccl run */
        json_t *arr = json_array();
        for (int i = 0; i < run->n_placement && arr; i++) {
            const attn_placement_t *pl = &run->placement[i];
            json_t *e = json_object();
            SET(e, "rank", json_integer(pl->rank));
            SET(e, "host", jstr(pl->host));
            SET(e, "local_rank", pl->local_rank >= 0 ? json_integer(pl->local_rank) : json_null());
            SET(e, "cuda_visible_devices", jstr_or_null(pl->gpus));
            SET(e, "slurm_job_id", jstr_or_null(pl->job));
            ok &= json_array_append_new(arr, e) == 0;
        }
        SET(o, "placement", arr);
    }
    if (!ok)
        json_decref(o);
    return ok ? o : NULL;
}

json_t *results_config_json(const attn_record_t *r) {
    int ok = 1;
    const attn_problem_t *c = &r->config;
    json_t *cfg = json_object();
    SET(cfg, "batch", json_integer(c->batch));
    SET(cfg, "heads", json_integer(c->heads));
    SET(cfg, "kv_heads", json_integer(c->kv_heads));
    SET(cfg, "head_dim", json_integer(c->head_dim));
    SET(cfg, "seq_len_q", json_integer(c->n_q));
    SET(cfg, "seq_len_k", json_integer(c->n_k));
    SET(cfg, "mask", json_string(mask_name(c->mask)));
    SET(cfg, "window", json_integer(c->window));
    SET(cfg, "dtype", json_string(dtype_name(c->dtype)));
    SET(cfg, "block_q", json_integer(c->block_q));
    SET(cfg, "block_k", json_integer(c->block_k));
    for (int i = 0; i < r->n_extra; i++)
        SET(cfg, r->extra[i].key, r->extra[i].is_num ? jnum(r->extra[i].num) : jstr(r->extra[i].str));
    if (!ok)
        json_decref(cfg);
    return ok ? cfg : NULL;
}

static json_t *record_json(const attn_record_t *r) {
    int ok = 1;
    json_t *cfg = results_config_json(r), *met = json_object(), *units = json_object(), *pr = json_object();
    for (int i = 0; i < r->n_metrics; i++) {
        SET(met, r->metrics[i].name, jreal(r->metrics[i].value));
        SET(units, r->metrics[i].name, jstr(r->metrics[i].unit));
    }
    for (int i = 0; i < r->n_per_rank; i++) {
        const attn_per_rank_t *p = &r->per_rank[i];
        json_t *arr = json_array();
        for (int k = 0; k < p->n; k++)
            ok &= json_array_append_new(arr, jreal(p->values[k])) == 0;
        SET(pr, p->name, arr); /* units mirror metrics exactly; name a series after its metric */
    }
    json_t *o = json_object();
    SET(o, "task", jstr(r->task));
    SET(o, "backend", jstr(r->backend));
    SET(o, "local_backend", jstr_or_null(r->local_backend));
    SET(o, "device", jstr(r->device));
    SET(o, "transport", jstr(r->transport));
    SET(o, "ranks", json_integer(r->ranks));
    SET(o, "layout", jstr(r->layout));
    SET(o, "config", cfg);
    SET(o, "metrics", met);
    SET(o, "units", units);
    SET(o, "per_rank", pr);
    SET(o, "status", json_string(status_name(r->status)));
    SET(o, "reason", jstr_or_null(r->reason));
    if (r->peer_name[0]) {
        json_t *peer = json_object();
        SET(peer, "name", jstr(r->peer_name));
        SET(peer, "version", jstr(r->peer_version));
        SET(peer, "kind", jstr(r->peer_kind));
        SET(o, "peer", peer);
    }
    if (!ok)
        json_decref(o);
    return ok ? o : NULL;
}

static int fill_json(FILE *f, void *root) {
    return json_dumpf(root, f, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) != 0 || fputc('\n', f) == EOF ? -1 : 0;
}

/* ---- CSV ----------------------------------------------------------------------------------- */

/* Shortest of %.15g..%.17g that reads back as the same double: exact, yet 0.1 stays "0.1". */
static const char *fmt_num(char *buf, size_t size, double v) {
    buf[0] = '\0';
    for (int prec = 15; prec <= 17 && isfinite(v); prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

static const char *fmt_int(char *buf, size_t size, int64_t v) {
    snprintf(buf, size, "%" PRId64, v);
    return buf;
}

static int csv_row(FILE *f, const char *const *cell) {
    for (int i = 0; i < NCOLS; i++) {
        if (i && fputc(',', f) == EOF)
            return -1;
        /* csv_fwrite quotes every field it writes (doubling inner quotes), so only fields that
         * need it go through it: numbers and names stay bare and easy to cut/awk. */
        int quote = cell[i][strcspn(cell[i], ",\"\r\n")] != '\0' || cell[i][0] == ' ';
        if (quote ? csv_fwrite(f, cell[i], strlen(cell[i])) != 0 : fputs(cell[i], f) == EOF)
            return -1;
    }
    return fputc('\n', f) == EOF ? -1 : 0;
}

/* One row per metric, then one per (per-rank series, rank) as "name[rank]"; a record with
 * neither still gets a row so skipped and failed cases stay visible in the CSV. */
static int csv_record(FILE *f, const attn_run_t *run, const attn_record_t *r) {
    const attn_problem_t *c = &r->config;
    char num[NCOLS][96];
#define I(col, v) fmt_int(num[col], sizeof num[col], (v))
    const char *cell[NCOLS] = {
        run->run_id, r->task, r->backend, r->local_backend, r->device, r->transport, I(6, r->ranks),
        r->layout, I(8, c->batch), I(9, c->heads), I(10, c->kv_heads), I(11, c->head_dim),
        I(12, c->n_q), I(13, c->n_k), mask_name(c->mask), I(15, c->window), dtype_name(c->dtype),
        I(17, c->block_q), I(18, c->block_k), "", "", "", "", "", "", "", "",
        status_name(r->status), r->reason};
#undef I
    for (int i = 0; i < r->n_extra; i++)
        for (int k = COL_EXTRA; k < COL_EXTRA + N_EXTRA; k++)
            if (strcmp(r->extra[i].key, results_csv_columns[k]) == 0)
                cell[k] = r->extra[i].is_num ? fmt_num(num[k], sizeof num[k], r->extra[i].num) : r->extra[i].str;
    int rows = 0;
    for (int i = 0; i < r->n_metrics; i++, rows++) {
        cell[COL_METRIC] = r->metrics[i].name;
        cell[COL_METRIC + 1] = fmt_num(num[COL_METRIC + 1], sizeof num[0], r->metrics[i].value);
        cell[COL_METRIC + 2] = r->metrics[i].unit;
        if (csv_row(f, cell) != 0)
            return -1;
    }
    for (int i = 0; i < r->n_per_rank; i++)
        for (int k = 0; k < r->per_rank[i].n; k++, rows++) {
            snprintf(num[COL_METRIC], sizeof num[0], "%s[%d]", r->per_rank[i].name, k);
            cell[COL_METRIC] = num[COL_METRIC];
            cell[COL_METRIC + 1] = fmt_num(num[COL_METRIC + 1], sizeof num[0], r->per_rank[i].values[k]);
            cell[COL_METRIC + 2] = r->per_rank[i].unit;
            if (csv_row(f, cell) != 0)
                return -1;
        }
    return rows ? 0 : csv_row(f, cell);
}

typedef struct {
    const attn_run_t *run;
} csv_src_t;

static int fill_csv(FILE *f, void *ctx) {
    const attn_run_t *run = ((csv_src_t *)ctx)->run;
    if (csv_row(f, results_csv_columns) != 0)
        return -1;
    for (int i = 0; i < run->n_records; i++)
        if (csv_record(f, run, &run->records[i]) != 0)
            return -1;
    return 0;
}

/* ---- files --------------------------------------------------------------------------------- */

int results_write(const attn_run_t *run, const char *out_dir, attn_err_t *err) {
    if (!out_dir || !out_dir[0])
        out_dir = ".";
    char json[PATH_MAX], csv[PATH_MAX];
    const char *id = run->run_id;
    if (snprintf(json, PATH_MAX, "%s/%s.json", out_dir, id) >= PATH_MAX ||
        snprintf(csv, PATH_MAX, "%s/%s.csv", out_dir, id) >= PATH_MAX)
        return attn_fail(err, ATTN_ERUNTIME, "output directory path too long: %s", out_dir);
    ATTN_TRY(outfile_make_dirs(out_dir, err));
    int ok = 1;
    json_t *recs = json_array(), *root = json_object();
    for (int i = 0; i < run->n_records; i++)
        ok &= json_array_append_new(recs, record_json(&run->records[i])) == 0;
    SET(root, "schema", json_string(results_schema_name()));
    SET(root, "run", run_json(run));
    SET(root, "records", recs);
    if (!ok) {
        json_decref(root);
        return attn_fail(err, ATTN_ERUNTIME, "out of memory building %s", json);
    }
    csv_src_t src = {run};
    /* Both or neither: a reader (a dashboard polling results/) never sees a JSON without its CSV. */
    outfile_job_t jobs[2] = {{json, fill_json, root}, {csv, fill_csv, &src}};
    int rc = outfile_write_all(jobs, 2, err);
    json_decref(root);
    return rc;
}

/* ---- terminal table ------------------------------------------------------------------------ */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* 4 significant digits fit a 12-wide column; large counts print in full rather than as 1.235e+05. */
static void fmt_short(char *buf, size_t size, double v) {
    if (isfinite(v) && fabs(v) >= 1e4 && fabs(v) < 1e11)
        snprintf(buf, size, "%.0f", v);
    else
        snprintf(buf, size, "%.4g", v);
}

typedef struct {
    const char *name, *unit;
    int width;
} table_col_t;

static void print_task(const attn_run_t *run, int first, FILE *f) {
    const char *task = run->records[first].task;
    int bw = 7, nmax = 0, ncols = 0;
    for (int i = first; i < run->n_records; i++)
        if (strcmp(run->records[i].task, task) == 0) {
            nmax += run->records[i].n_metrics;
            bw = ATTN_MAX(bw, (int)strlen(run->records[i].backend));
        }
    /* Metric columns in first-appearance order; _min/_max spreads stay in the files only. */
    table_col_t *cols = malloc((size_t)ATTN_MAX(nmax, 1) * sizeof *cols);
    if (!cols) {
        fprintf(f, "# %s: (out of memory formatting the table)\n", task);
        return;
    }
    for (int i = first; i < run->n_records; i++) {
        const attn_record_t *r = &run->records[i];
        if (strcmp(r->task, task) != 0)
            continue;
        for (int m = 0; m < r->n_metrics; m++) {
            const attn_metric_t *mt = &r->metrics[m];
            int seen = ends_with(mt->name, "_min") || ends_with(mt->name, "_max");
            for (int c = 0; c < ncols && !seen; c++)
                seen = strcmp(cols[c].name, mt->name) == 0;
            if (!seen) {
                int w = ATTN_MAX((int)strlen(mt->name), (int)strlen(mt->unit) + 2);
                cols[ncols++] = (table_col_t){mt->name, mt->unit, ATTN_MAX(12, w + 1)};
            }
        }
    }
    /* Config columns: " %4s" ×3, " %5s", " %8s" ×2, " %7s", " %6s", " %5s" = 60 characters. */
    enum { CONFIG_W = 60 };
    char buf[64];
    fprintf(f, "# %s\n#  %-*s %4s %4s %4s %5s %8s %8s %7s %6s %5s", task, bw, "backend", "B", "H", "Hkv",
            "d", "n_q", "n_k", "mask", "w", "dtype");
    for (int c = 0; c < ncols; c++)
        fprintf(f, " %*s", cols[c].width, cols[c].name);
    int last_unit = -1; /* the units row stops at its last unit: no trailing blanks */
    for (int c = 0; c < ncols; c++)
        if (cols[c].unit[0])
            last_unit = c;
    fprintf(f, " %8s\n#  %*s", "status", bw + CONFIG_W, "");
    for (int c = 0; c <= last_unit; c++) {
        buf[0] = '\0';
        if (cols[c].unit[0])
            snprintf(buf, sizeof buf, "[%s]", cols[c].unit);
        fprintf(f, " %*s", cols[c].width, buf);
    }
    fputc('\n', f);
    for (int i = first; i < run->n_records; i++) {
        const attn_record_t *r = &run->records[i];
        const attn_problem_t *p = &r->config;
        if (strcmp(r->task, task) != 0)
            continue;
        strcpy(buf, "-");
        if (p->mask == ATTN_MASK_WINDOW)
            fmt_int(buf, sizeof buf, p->window);
        fprintf(f, "   %-*s %4" PRId64 " %4" PRId64 " %4" PRId64 " %5" PRId64 " %8" PRId64 " %8" PRId64
                   " %7s %6s %5s", bw, r->backend, p->batch, p->heads, p->kv_heads, p->head_dim, p->n_q,
                p->n_k, mask_name(p->mask), buf, dtype_name(p->dtype));
        for (int c = 0; c < ncols; c++) {
            strcpy(buf, "-");
            for (int m = 0; m < r->n_metrics; m++)
                if (strcmp(r->metrics[m].name, cols[c].name) == 0)
                    fmt_short(buf, sizeof buf, r->metrics[m].value);
            fprintf(f, " %*s", cols[c].width, buf);
        }
        fprintf(f, " %8s\n", status_name(r->status));
    }
    for (int i = first; i < run->n_records; i++) {
        const attn_record_t *r = &run->records[i];
        if (strcmp(r->task, task) == 0 && r->reason[0])
            fprintf(f, "  note: %s n_k=%" PRId64 ": %s: %s\n", r->backend, r->config.n_k,
                    status_name(r->status), r->reason);
    }
    fputc('\n', f);
    free(cols);
}

void results_print_table(const attn_run_t *run, FILE *f) {
    for (int i = 0; i < run->n_records; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(run->records[j].task, run->records[i].task) == 0;
        if (!seen)
            print_task(run, i, f);
    }
}
