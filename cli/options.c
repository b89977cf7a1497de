/* options.c — see options.h. One table maps each option name to its setter; getopt_long is
 * built from the same table so the two cannot drift apart. */
#include "cli/options.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "comm/comm.h"
#include "core/device.h"
#include "comm/layout.h"
#include "tasks/task.h"

void opts_defaults(attn_opts_t *o) {
    memset(o, 0, sizeof *o);
    strcpy(o->task, "exactness");
    strcpy(o->backends[0], "blockwise");
    o->n_backends = 1;
    o->seq_len[0] = 1024;
    o->n_seq_len = 1;
    o->masks[0] = ATTN_MASK_CAUSAL;
    o->n_masks = 1;
    o->batch = 1;
    o->heads = 8;
    o->kv_heads = 8;
    o->head_dim = 64;
    o->window = 256;
    o->dtype = ATTN_F32;
    o->ranks = 1;
    o->comm_timeout = 300.0;
    strcpy(o->transport, "local");
    strcpy(o->layout, "auto");
    o->seed = 1234;
    o->repeats = 5;
    o->warmup = 1;
    strcpy(o->out_dir, "results");
    for (int i = 0; i <= 10; i++)
        o->depths[i] = 10.0 * i;
    o->n_depths = 11;
    o->needles = 1;
    strcpy(o->ask, "one");
    strcpy(o->mode, "prefill");
}

/* --depths A:B:S (A, A+S, … ≤ B) or a comma list; percents in 0 … 100. */
static int parse_depths(attn_opts_t *o, const char *key, const char *v, attn_err_t *err) {
    double a, b, st;
    int used = 0, n = 0;
    if (sscanf(v, "%lf:%lf:%lf%n", &a, &b, &st, &used) == 3 && !v[used]) {
        if (!(a >= 0 && b <= 100 && a <= b && st > 0))
            return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' needs 0 ≤ A ≤ B ≤ 100 and a step > 0", key, v);
        for (double d = a; d <= b + 1e-9; d += st) {
            if (n == 101)
                return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' gives more than 101 depths", key, v);
            o->depths[n++] = d;
        }
    } else {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", v);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            char *end;
            double d = strtod(t, &end);
            if (end == t || *end || !(d >= 0 && d <= 100))
                return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' is not a depth in 0 … 100 (or A:B:STEP)", key, t);
            if (n == 101)
                return attn_fail(err, ATTN_EUSAGE, "--%s: more than 101 depths", key);
            o->depths[n++] = d;
        }
    }
    if (n == 0)
        return attn_fail(err, ATTN_EUSAGE, "--%s: no depth in '%s'", key, v);
    o->n_depths = n;
    return ATTN_OK;
}

static int parse_i64(const char *key, const char *s, int64_t lo, int64_t hi, int64_t *out, attn_err_t *err) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' is not an integer", key, s);
    if (v < lo || v > hi)
        return attn_fail(err, ATTN_EUSAGE, "--%s: %lld is out of range %lld..%lld", key, v, (long long)lo,
                         (long long)hi);
    *out = v;
    return ATTN_OK;
}

/* A real number in (0, hi] — or [0, hi] with allow_zero; `what` completes "--key: 'v' is not …". */
static int parse_double(const char *key, const char *s, int allow_zero, double hi, const char *what, double *out,
                        attn_err_t *err) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(allow_zero ? v >= 0 : v > 0) || v > hi)
        return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' is not %s", key, s, what);
    *out = v;
    return ATTN_OK;
}

static int parse_int(const char *key, const char *s, int lo, int hi, int *out, attn_err_t *err) {
    int64_t v;
    ATTN_TRY(parse_i64(key, s, lo, hi, &v, err));
    *out = (int)v;
    return ATTN_OK;
}

/* Splits a comma list into at most OPTS_MAX_LIST non-empty items, calling fn on each. */
typedef int (*item_fn)(attn_opts_t *o, const char *key, const char *item, int index, attn_err_t *err);
static int parse_list(attn_opts_t *o, const char *key, const char *s, item_fn fn, int *count, attn_err_t *err) {
    char buf[2048];
    if (strlen(s) >= sizeof buf)
        return attn_fail(err, ATTN_EUSAGE, "--%s: value too long", key);
    strcpy(buf, s);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == OPTS_MAX_LIST)
            return attn_fail(err, ATTN_EUSAGE, "--%s: at most %d values", key, OPTS_MAX_LIST);
        ATTN_TRY(fn(o, key, tok, n, err));
        n++;
    }
    if (n == 0)
        return attn_fail(err, ATTN_EUSAGE, "--%s: empty list", key);
    *count = n;
    return ATTN_OK;
}

static int item_backend(attn_opts_t *o, const char *key, const char *s, int i, attn_err_t *err) {
    if (!registry_find(s)) {
        char names[512] = "";
        for (int b = 0; b < registry_count(); b++) {
            strcat(names, b ? ", " : "");
            strcat(names, registry_get(b)->name);
        }
        return attn_fail(err, ATTN_EUSAGE, "--%s: unknown backend '%s' (available: %s)", key, s, names);
    }
    snprintf(o->backends[i], sizeof o->backends[i], "%s", s);
    return ATTN_OK;
}
static int item_seq(attn_opts_t *o, const char *key, const char *s, int i, attn_err_t *err) {
    return parse_i64(key, s, 1, INT64_C(1) << 32, &o->seq_len[i], err);
}
static int item_qlen(attn_opts_t *o, const char *key, const char *s, int i, attn_err_t *err) {
    return parse_i64(key, s, 1, INT64_C(1) << 32, &o->q_len[i], err);
}
static int item_size(attn_opts_t *o, const char *key, const char *s, int i, attn_err_t *err) {
    return parse_i64(key, s, 1, 16384, &o->sizes[i], err);
}
static int item_mask(attn_opts_t *o, const char *key, const char *s, int i, attn_err_t *err) {
    if (!mask_parse(s, &o->masks[i]))
        return attn_fail(err, ATTN_EUSAGE, "--%s: unknown mask '%s' (none, causal, window)", key, s);
    return ATTN_OK;
}

static int set_path(char *dst, size_t cap, const char *key, const char *s, attn_err_t *err) {
    if (!*s || strlen(s) >= cap)
        return attn_fail(err, ATTN_EUSAGE, "--%s: path empty or too long", key);
    strcpy(dst, s);
    return ATTN_OK;
}

int opts_set(attn_opts_t *o, const char *key, const char *v, attn_err_t *err) {
#define IS(name) (strcmp(key, name) == 0)
    if (IS("task")) {
        if (!task_find(v)) {
            char names[256] = "";
            for (int i = 0; i < task_count(); i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", task_get(i)->name);
            return attn_fail(err, ATTN_EUSAGE, "--task: unknown task '%s' (%s)", v, names);
        }
        snprintf(o->task, sizeof o->task, "%s", v);
        return ATTN_OK;
    }
    if (IS("backends") || IS("backend"))
        return parse_list(o, key, v, item_backend, &o->n_backends, err);
    if (IS("seq-len"))
        return parse_list(o, key, v, item_seq, &o->n_seq_len, err);
    if (IS("q-len"))
        return parse_list(o, key, v, item_qlen, &o->n_q_len, err);
    if (IS("mask"))
        return parse_list(o, key, v, item_mask, &o->n_masks, err);
    if (IS("sizes"))
        return parse_list(o, key, v, item_size, &o->n_sizes, err);
    if (IS("batch"))
        return parse_i64(key, v, 1, 1 << 20, &o->batch, err);
    if (IS("heads"))
        return parse_i64(key, v, 1, 1 << 16, &o->heads, err);
    if (IS("kv-heads"))
        return parse_i64(key, v, 1, 1 << 16, &o->kv_heads, err);
    if (IS("head-dim"))
        return parse_i64(key, v, 1, 256, &o->head_dim, err);
    if (IS("window"))
        return parse_i64(key, v, 1, INT64_C(1) << 32, &o->window, err);
    if (IS("dtype")) {
        if (!dtype_parse(v, &o->dtype))
            return attn_fail(err, ATTN_EUSAGE, "--dtype: unknown dtype '%s' (f32, f64, bf16)", v);
        return ATTN_OK;
    }
    if (IS("scale"))
        return parse_double(key, v, 0, 1e30, "a positive number", &o->scale, err);
    if (IS("sweep-max"))
        return parse_i64(key, v, 1, INT64_C(1) << 32, &o->sweep_max, err);
    if (IS("time-budget"))
        return parse_double(key, v, 1, 1e9, "a non-negative number of seconds", &o->time_budget, err);
    if (IS("block-q"))
        return parse_int(key, v, 1, 4096, &o->block_q, err);
    if (IS("block-k"))
        return parse_int(key, v, 1, 4096, &o->block_k, err);
    if (IS("ranks"))
        return parse_int(key, v, 1, ATTN_MAX_RANKS, &o->ranks, err);
    if (IS("comm-timeout"))
        return parse_double(key, v, 0, 1e6, "a positive number of seconds", &o->comm_timeout, err);
    if (IS("transport")) {
        attn_transport_t t;
        if (!transport_parse(v, &t))
            return attn_fail(err, ATTN_EUSAGE, "--transport: '%s' is not a transport (local, mpi, cuda_local, nccl)", v);
        if (transport_over_mpi(t) && !comm_mpi_available())
            return attn_fail(err, ATTN_EUSAGE, "--transport %s: this build has no MPI (Open MPI was not found)", v);
        if ((t == ATTN_TRANSPORT_CUDA_LOCAL || t == ATTN_TRANSPORT_NCCL) && !device_cuda_built())
            return attn_fail(err, ATTN_EUSAGE, "--transport %s: this build has no CUDA backends (nvcc was not found)", v);
        snprintf(o->transport, sizeof o->transport, "%s", v);
        return ATTN_OK;
    }
    if (IS("layout")) {
        attn_layout_kind_t k;
        if (strcmp(v, "auto") && !layout_parse(v, &k))
            return attn_fail(err, ATTN_EUSAGE, "--layout: '%s' is not a layout (auto, contiguous, striped, zigzag)", v);
        snprintf(o->layout, sizeof o->layout, "%s", v);
        return ATTN_OK;
    }
    if (IS("local-backend")) {
        const attn_backend_t *be = registry_find(v);
        if (!be || be->forward_rank)
            return attn_fail(err, ATTN_EUSAGE, "--local-backend: '%s' is not a single-rank backend (blockwise, naive, sliding_window)", v);
        snprintf(o->local_backend, sizeof o->local_backend, "%s", v);
        return ATTN_OK;
    }
    if (IS("inject-fault")) { /* hidden, for the fault tests (problem.h) */
        char kind[8];
        int rank, step, used = 0;
        if (!strcmp(v, "local-positions")) {
            o->fault = ATTN_FAULT_LOCAL_POSITIONS;
            return ATTN_OK;
        }
        if (sscanf(v, "drop-step:%d%n", &step, &used) == 1 && !v[used] && step >= 0) {
            o->fault = ATTN_FAULT_DROP_STEP;
            o->fault_step = step;
            return ATTN_OK;
        }
        used = 0;
        if (sscanf(v, "%7[a-z]:%d:%d%n", kind, &rank, &step, &used) != 3 || v[used] || rank < 0 || step < 0 ||
            (strcmp(kind, "exit") && strcmp(kind, "stall")))
            return attn_fail(err, ATTN_EUSAGE,
                             "--inject-fault: '%s' is not exit:RANK:STEP, stall:RANK:STEP, drop-step:STEP or local-positions", v);
        o->fault = strcmp(kind, "exit") ? ATTN_FAULT_STALL : ATTN_FAULT_EXIT;
        o->fault_rank = rank;
        o->fault_step = step;
        return ATTN_OK;
    }
    if (IS("depths"))
        return parse_depths(o, key, v, err);
    if (IS("needles"))
        return parse_int(key, v, 1, 16, &o->needles, err);
    if (IS("ask")) {
        if (strcmp(v, "one") && strcmp(v, "all"))
            return attn_fail(err, ATTN_EUSAGE, "--ask: '%s' is not one or all", v);
        snprintf(o->ask, sizeof o->ask, "%s", v);
        return ATTN_OK;
    }
    if (IS("mode")) {
        if (strcmp(v, "prefill") && strcmp(v, "query-tail"))
            return attn_fail(err, ATTN_EUSAGE, "--mode: '%s' is not prefill or query-tail", v);
        snprintf(o->mode, sizeof o->mode, "%s", v);
        return ATTN_OK;
    }
    if (IS("haystack"))
        return set_path(o->haystack, sizeof o->haystack, key, v, err);
    if (IS("tokenizer"))
        return set_path(o->tokenizer, sizeof o->tokenizer, key, v, err);
    if (IS("resume"))
        return set_path(o->resume, sizeof o->resume, key, v, err);
    if (IS("seed")) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || end == v || *end || *v == '-')
            return attn_fail(err, ATTN_EUSAGE, "--seed: '%s' is not a non-negative integer", v);
        o->seed = s;
        return ATTN_OK;
    }
    if (IS("threads"))
        return parse_int(key, v, 0, 1024, &o->threads, err);
    if (IS("device"))
        return parse_int(key, v, 0, 1023, &o->device, err);
    if (IS("repeats"))
        return parse_int(key, v, 1, 1000, &o->repeats, err);
    if (IS("warmup"))
        return parse_int(key, v, 0, 1000, &o->warmup, err);
    if (IS("model-config"))
        return set_path(o->model_config, sizeof o->model_config, key, v, err);
    if (IS("weights"))
        return set_path(o->weights, sizeof o->weights, key, v, err);
    if (IS("layers"))
        return parse_int(key, v, 1, 1024, &o->layers, err);
    if (IS("vocab"))
        return parse_int(key, v, 2, 1 << 24, &o->vocab, err);
    if (IS("out-dir"))
        return set_path(o->out_dir, sizeof o->out_dir, key, v, err);
    if (IS("config"))
        return set_path(o->config, sizeof o->config, key, v, err);
    if (IS("q"))
        return set_path(o->q_path, sizeof o->q_path, key, v, err);
    if (IS("k"))
        return set_path(o->k_path, sizeof o->k_path, key, v, err);
    if (IS("v"))
        return set_path(o->v_path, sizeof o->v_path, key, v, err);
    if (IS("out"))
        return set_path(o->out_path, sizeof o->out_path, key, v, err);
    if (IS("lse"))
        return set_path(o->lse_path, sizeof o->lse_path, key, v, err);
#undef IS
    return attn_fail(err, ATTN_EUSAGE, "unknown option '%s'", key);
}

static const char *const option_names[] = {
    "task",    "backends",      "backend",      "seq-len", "q-len",   "mask",         "sizes",   "batch",
    "heads",   "kv-heads",      "head-dim",     "window",  "dtype",   "scale",        "block-q", "block-k",
    "ranks",   "transport",     "layout",       "local-backend",      "inject-fault", "seed",    "threads",
    "repeats", "warmup",        "comm-timeout", "model-config",       "weights",      "layers",  "vocab",
    "out-dir", "config",        "q",            "k",       "v",       "out",          "lse",
    "sweep-max", "time-budget", "depths", "needles", "ask", "mode", "haystack", "tokenizer", "resume", "device",
};
enum { N_OPTIONS = sizeof option_names / sizeof option_names[0] };

int opts_parse_argv(attn_opts_t *o, int argc, char **argv, attn_err_t *err) {
    struct option longopts[N_OPTIONS + 2];
    for (int i = 0; i < N_OPTIONS; i++)
        longopts[i] = (struct option){option_names[i], required_argument, NULL, 0};
    longopts[N_OPTIONS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[N_OPTIONS + 1] = (struct option){0, 0, 0, 0};
    optind = 0; /* 0, not 1: GNU getopt then re-initialises fully between calls */
    opterr = 0; /* we print our own single message */
    for (;;) {
        int index = -1;
        int c = getopt_long(argc, argv, ":h", longopts, &index);
        if (c == -1)
            break;
        if (c == 'h') {
            o->help = 1;
            continue;
        }
        if (c == '?')
            return attn_fail(err, ATTN_EUSAGE, "unknown flag '%s' (see --help)", argv[optind - 1]);
        if (c == ':')
            return attn_fail(err, ATTN_EUSAGE, "flag '%s' needs a value", argv[optind - 1]);
        ATTN_TRY(opts_set(o, longopts[index].name, optarg, err));
    }
    if (optind < argc)
        return attn_fail(err, ATTN_EUSAGE, "unexpected argument '%s' (see --help)", argv[optind]);
    return ATTN_OK;
}

/* JSON scalars and arrays of scalars become the same text a flag would carry. */
static int json_to_text(const char *path, const char *key, json_t *v, char *out, size_t cap, attn_err_t *err) {
    out[0] = '\0';
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (json_is_array(v) && n == 0)
        return attn_fail(err, ATTN_EUSAGE, "%s: key '%s' is an empty list", path, key);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_is_array(v) ? json_array_get(v, i) : v;
        char item[600];
        if (json_is_string(x))
            snprintf(item, sizeof item, "%s", json_string_value(x));
        else if (json_is_integer(x))
            snprintf(item, sizeof item, "%lld", (long long)json_integer_value(x));
        else if (json_is_real(x))
            snprintf(item, sizeof item, "%.17g", json_real_value(x));
        else
            return attn_fail(err, ATTN_EUSAGE, "%s: key '%s' must be a string, a number or a list of them", path,
                             key);
        if (strlen(out) + strlen(item) + 2 > cap)
            return attn_fail(err, ATTN_EUSAGE, "%s: key '%s' is too long", path, key);
        if (i)
            strcat(out, ",");
        strcat(out, item);
    }
    return ATTN_OK;
}

static int apply_object(attn_opts_t *o, const char *path, const char *where, json_t *obj, attn_err_t *err) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "runs") == 0 || strcmp(key, "description") == 0)
            continue;
        if (strcmp(key, "config") == 0)
            return attn_fail(err, ATTN_EUSAGE, "%s: %s: 'config' cannot be nested", path, where);
        char text[2048];
        ATTN_TRY(json_to_text(path, key, v, text, sizeof text, err));
        attn_err_t sub = {0};
        if (opts_set(o, key, text, &sub) != ATTN_OK)
            return attn_fail(err, ATTN_EUSAGE, "%s: %s: %s", path, where, sub.msg);
    }
    return ATTN_OK;
}

int opts_load_config(const char *path, int argc, char **argv, attn_opts_t **runs, int *n_runs, attn_err_t *err) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        return attn_fail(err, ATTN_EUSAGE, "%s: %s (line %d, column %d)", path, jerr.text, jerr.line, jerr.column);
    int rc = ATTN_OK;
    json_t *list = json_object_get(root, "runs");
    if (!json_is_object(root)) {
        rc = attn_fail(err, ATTN_EUSAGE, "%s: top level must be a JSON object", path);
        goto done;
    }
    if (list && (!json_is_array(list) || json_array_size(list) == 0)) {
        rc = attn_fail(err, ATTN_EUSAGE, "%s: 'runs' must be a non-empty list of objects", path);
        goto done;
    }
    int n = list ? (int)json_array_size(list) : 1;
    *runs = calloc((size_t)n, sizeof **runs);
    if (!*runs) {
        rc = attn_fail(err, ATTN_ERUNTIME, "out of memory reading %s", path);
        goto done;
    }
    for (int i = 0; i < n && rc == ATTN_OK; i++) {
        attn_opts_t *o = &(*runs)[i];
        char where[32];
        snprintf(where, sizeof where, list ? "runs[%d]" : "top level", i);
        opts_defaults(o);
        rc = apply_object(o, path, "top level", root, err);
        if (rc == ATTN_OK && list) {
            json_t *entry = json_array_get(list, (size_t)i);
            rc = json_is_object(entry) ? apply_object(o, path, where, entry, err)
                                       : attn_fail(err, ATTN_EUSAGE, "%s: %s must be an object", path, where);
        }
        if (rc == ATTN_OK)
            rc = opts_parse_argv(o, argc, argv, err);
    }
    *n_runs = n;
    if (rc != ATTN_OK) {
        free(*runs);
        *runs = NULL;
    }
done:
    json_decref(root);
    return rc;
}

int opts_problem(const attn_opts_t *o, int64_t n_k, int64_t n_q, attn_mask_t mask, attn_problem_t *p, attn_err_t *err) {
    *p = (attn_problem_t){.batch = o->batch, .heads = o->heads, .kv_heads = o->kv_heads, .head_dim = o->head_dim,
                          .n_q = n_q, .n_k = n_k, .mask = mask, .window = mask == ATTN_MASK_WINDOW ? o->window : 0,
                          .scale = o->scale, .dtype = o->dtype, .block_q = o->block_q, .block_k = o->block_k};
    return problem_validate(p, err);
}

attn_exec_t opts_exec(const attn_opts_t *o) {
    attn_exec_t x = {.threads = o->threads, .device = o->device, .ranks = o->ranks, .comm_timeout = o->comm_timeout,
                     .layout = -1, .fault = o->fault, .fault_rank = o->fault_rank, .fault_step = o->fault_step};
    transport_parse(o->transport, &x.transport); /* checked when the flag was parsed */
    attn_layout_kind_t k;
    if (layout_parse(o->layout, &k))
        x.layout = (int)k;
    snprintf(x.local_backend, sizeof x.local_backend, "%s", o->local_backend[0] ? o->local_backend : "blockwise");
    return x;
}

int opts_validate_run(const attn_opts_t *o, attn_err_t *err) {
    for (int s = 0; s < o->n_seq_len; s++)
        for (int q = 0; q < (o->n_q_len ? o->n_q_len : 1); q++)
            for (int m = 0; m < o->n_masks; m++) {
                attn_problem_t p;
                int64_t nq = o->n_q_len ? o->q_len[q] : o->seq_len[s];
                ATTN_TRY(opts_problem(o, o->seq_len[s], nq, o->masks[m], &p, err));
            }
    attn_exec_t x = opts_exec(o);
    return exec_validate(&x, err);
}

void opts_print_flags(FILE *f) {
    fputs("shared flags:\n"
          "  --task T           exactness | throughput | memory | capacity | model | needle (run)\n"
          "  --backends A,B     backends to run (see `attnbench list`)\n"
          "  --seq-len N,...    key length(s) n_k                          [1024]\n"
          "  --q-len N,...      query rows n_q ≤ n_k, at the sequence end  [= seq-len]\n"
          "  --heads H          query heads                                [8]\n"
          "  --kv-heads H       key/value heads, H % H_kv = 0 (GQA/MQA)    [8]\n"
          "  --head-dim D       1..256                                     [64]\n"
          "  --batch B                                                     [1]\n"
          "  --mask M,...       none | causal | window                     [causal]\n"
          "  --window W         window size for --mask window              [256]\n"
          "  --dtype T          f32 | f64 | bf16 (GPU backends: bfloat16 compute, f32 out) [f32]\n"
          "  --scale S          softmax scale                              [1/sqrt(d)]\n"
          "  --block-q/-k N     tile sizes of tiled backends               [128/256]\n"
          "  --ranks P          ranks of the distributed backends (ring, striped, zigzag, ulysses) [1]\n"
          "  --transport T      local (P ranks as threads) | mpi (under mpirun -np P) [local];\n"
          "                     *_cuda backends: cuda_local (P virtual ranks on one GPU) | nccl (mpirun, a GPU each)\n"
          "  --layout L         ulysses' sequence shards: contiguous | striped | zigzag [auto]\n"
          "  --local-backend B  ulysses: backend run on each head shard      [blockwise]\n"
          "  --comm-timeout S   seconds without progress before a rank fails [300]\n"
          "  --seed S           input seed                                 [1234]\n"
          "  --model-config F   model task: HF-style config.json           [shape flags, 4 layers]\n"
          "  --weights F        model task: .safetensors weights           [seeded]\n"
          "  --layers L, --vocab V  model task without a config            [4, 32000]\n"
          "  --threads T        worker threads, 0 = all cores              [0]\n"
          "  --device N         CUDA device of the GPU backends            [0]\n"
          "  --sweep-max N      throughput: n_k doubles from the first --seq-len up to N [off]\n"
          "  --time-budget S    sweep: skip (and stop at) the next n_k whose warm-up + repeats are\n"
          "                     projected to take more than S seconds      [0 = none]\n"
          "  --depths A:B:S     needle: depths, percent of the haystack, or a list [0:100:10]\n"
          "  --needles K        needle: facts per prompt, 1..16             [1]\n"
          "  --ask one|all      needle: ask the fact at the depth, or every fact [one]\n"
          "  --mode M           needle: prefill | query-tail               [prefill]\n"
          "  --haystack F       needle: a text file, or noise               [the KJV corpus]\n"
          "  --tokenizer F      needle: SentencePiece model                 [build/datasets/kjv.model]\n"
          "  --resume F.json    needle: keep F's records, run only the cases it lacks\n"
          "  --repeats R        timed repeats (median, min, max)           [5]\n"
          "  --warmup W         untimed warm-up runs                       [1]\n"
          "  --out-dir DIR      where results/<run_id>.json/.csv go        [results]\n"
          "  --config FILE      JSON suite; flags given on the command line override it\n",
          f);
}
