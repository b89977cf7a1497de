/* options.c — the flag table (see options.h) and what it drives: defaults, the argv loop, suite
 * files and --help. A new flag is one row here plus its field in tasks/settings.h (or in
 * cli_opts_t when only the command line reads it). */
#include "cli/options.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "comm/layout.h"
#include "core/backend.h"
#include "core/device.h"
#include "core/docs.h"
#include "impls/plugin.h"
#include "tasks/simulate.h"
#include "tasks/task.h"

#define TOPK_MAX (INT64_C(1) << 32)

static const char *const cmd_names[] = {"list", "run", "attend", "needle", "peak", "comm", "report", "compare", "simulate"};
enum { N_CMDS = sizeof cmd_names / sizeof cmd_names[0] };

typedef enum { OPT_INT, OPT_I64, OPT_REAL, OPT_PATH, OPT_CHOICE, OPT_DTYPE, OPT_I64_LIST, OPT_SET } opt_kind_t;
enum { OPT_TOP_ONLY = 1 }; /* suite files: only at the top level (a whole-suite setting) */

typedef struct opt_row opt_row_t;
typedef int (*opt_setter_t)(cli_opts_t *c, const char *key, const char *v, attn_err_t *err);
struct opt_row {
    const char *name, *alias; /* alias: accepted too, never shown */
    unsigned cmds, hide;      /* subcommands that take it; those whose --help leaves it out */
    opt_kind_t kind;
    size_t off, size; /* the field in cli_opts_t */
    int counted;      /* lists: an int count follows at count_off */
    size_t count_off;
    int64_t lo, hi; /* integers, list items */
    int zero_ok;    /* reals: [0, hi] rather than (0, hi] */
    double rhi;
    const char *what; /* reals: completes "--key: 'v' is not …"; choices: "a|b|c" */
    opt_setter_t set;
    unsigned flags;
    const char *def;   /* applied through the row's own parser; NULL: zero */
    const char *shown; /* the default as --help shows it, when def alone would not say */
    const char *meta, *help;
};

/* ---- setters of the rows a plain kind cannot express --------------------------------------- */

static int set_task(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    (void)key;
    if (!task_find(v)) {
        char names[256] = "";
        for (int i = 0; i < task_count(); i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", task_get(i)->name);
        return attn_fail(err, ATTN_EUSAGE, "--task: unknown task '%s' (%s)", v, names);
    }
    snprintf(c->s.task, sizeof c->s.task, "%s", v);
    return ATTN_OK;
}

/* `needle` takes "task" only so a suite's needle run may name itself; any other task belongs to run. */
static int set_task_needle(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    if (strcmp(v, "needle") != 0)
        return attn_fail(err, ATTN_EUSAGE, "--task %s: needle runs only the needle task (use `attnbench run --task %s`)",
                         v, v);
    return set_task(c, key, v, err);
}

/* A comma list with no empty item: "64,,128", ",64" and "64," are typing slips, not lists. */
static int list_well_formed(const char *key, const char *s, attn_err_t *err) {
    size_t n = strlen(s);
    if (n && s[0] != ',' && s[n - 1] != ',' && !strstr(s, ",,"))
        return ATTN_OK;
    return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' has an empty item", key, s);
}

/* Splits a comma list into at most OPTS_MAX_LIST non-empty items, calling fn(ctx, …) on each. */
typedef int (*item_fn)(void *ctx, const char *key, const char *item, int index, attn_err_t *err);
static int parse_list(void *ctx, const char *key, const char *s, item_fn fn, int *count, attn_err_t *err) {
    char buf[2048];
    if (strlen(s) >= sizeof buf)
        return attn_fail(err, ATTN_EUSAGE, "--%s: value too long", key);
    ATTN_TRY(list_well_formed(key, s, err));
    strcpy(buf, s);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == OPTS_MAX_LIST)
            return attn_fail(err, ATTN_EUSAGE, "--%s: at most %d values", key, OPTS_MAX_LIST);
        ATTN_TRY(fn(ctx, key, tok, n, err));
        n++;
    }
    if (n == 0)
        return attn_fail(err, ATTN_EUSAGE, "--%s: empty list", key);
    *count = n;
    return ATTN_OK;
}

static int item_backend(void *ctx, const char *key, const char *s, int i, attn_err_t *err) {
    cli_opts_t *c = ctx;
    if (!registry_find(s)) {
        char names[512] = "";
        for (int b = 0; b < registry_count(); b++) {
            strcat(names, b ? ", " : "");
            strcat(names, registry_get(b)->name);
        }
        return attn_fail(err, ATTN_EUSAGE, "--%s: unknown backend '%s' (available: %s)", key, s, names);
    }
    snprintf(c->s.backends[i], sizeof c->s.backends[i], "%s", s);
    return ATTN_OK;
}
static int set_backends(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    return parse_list(c, key, v, item_backend, &c->s.n_backends, err);
}

static int item_mask(void *ctx, const char *key, const char *s, int i, attn_err_t *err) {
    cli_opts_t *c = ctx;
    if (i == 3)
        return attn_fail(err, ATTN_EUSAGE, "--%s: at most 3 masks", key);
    if (!mask_parse(s, &c->s.masks[i]))
        return attn_fail(err, ATTN_EUSAGE, "--%s: unknown mask '%s' (none, causal, window)", key, s);
    return ATTN_OK;
}
static int set_masks(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    return parse_list(c, key, v, item_mask, &c->s.n_masks, err);
}

static int set_direction(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    (void)key;
    for (int d = ATTN_DIR_FORWARD; d <= ATTN_DIR_BOTH; d++)
        if (!strcmp(v, direction_name(d))) {
            c->s.direction = d;
            return ATTN_OK;
        }
    return attn_fail(err, ATTN_EUSAGE, "--direction: '%s' is not a direction (forward, backward, both)", v);
}

static int set_transport(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    (void)key;
    attn_transport_t t;
    if (!transport_parse(v, &t))
        return attn_fail(err, ATTN_EUSAGE, "--transport: '%s' is not a transport (local, mpi, cuda_local, nccl)", v);
    if (transport_over_mpi(t) && !comm_mpi_available())
        return attn_fail(err, ATTN_EUSAGE, "--transport %s: this build has no MPI (Open MPI was not found)", v);
    if ((t == ATTN_TRANSPORT_CUDA_LOCAL || t == ATTN_TRANSPORT_NCCL) && !device_cuda_built())
        return attn_fail(err, ATTN_EUSAGE, "--transport %s: this build has no CUDA backends (nvcc was not found)", v);
    snprintf(c->s.transport, sizeof c->s.transport, "%s", v);
    return ATTN_OK;
}
/* comm moves host buffers: the GPU transports, which move device buffers, are not for it. */
static int set_comm_transport(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    ATTN_TRY(set_transport(c, key, v, err));
    if (strcmp(v, "local") && strcmp(v, "mpi"))
        return attn_fail(err, ATTN_EUSAGE, "--transport %s: attnbench comm measures the host transports (local, mpi)",
                         v);
    return ATTN_OK;
}

static int set_layout(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    (void)key;
    attn_layout_kind_t k;
    if (strcmp(v, "auto") && !layout_parse(v, &k))
        return attn_fail(err, ATTN_EUSAGE, "--layout: '%s' is not a layout (auto, contiguous, striped, zigzag)", v);
    snprintf(c->s.layout, sizeof c->s.layout, "%s", v);
    return ATTN_OK;
}

static int set_local_backend(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    (void)key;
    const attn_backend_t *be = registry_find(v);
    if (!be || be->forward_rank)
        return attn_fail(err, ATTN_EUSAGE,
                         "--local-backend: '%s' is not a single-rank backend (blockwise, naive, sliding_window)", v);
    snprintf(c->s.local_backend, sizeof c->s.local_backend, "%s", v);
    return ATTN_OK;
}

static int set_doc_lens(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    ATTN_TRY(list_well_formed(key, v, err));
    return docs_parse_lens(v, &c->s.doc_lens, &c->s.n_doc_lens, err);
}
static int set_docs(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    (void)key;
    return docs_parse_spec(v, &c->s.docs, err);
}

/* Hidden, for the fault tests (problem.h). */
static int set_fault(cli_opts_t *c, const char *key, const char *v_in, attn_err_t *err) {
    (void)key;
    attn_opts_t *o = &c->s;
    char kind[8], v[96];
    int rank, step, used = 0;
    /* A ":backward" suffix moves the fault into the backward's steps (core/exec.h). */
    size_t len = strlen(v_in), sfx = strlen(":backward");
    o->fault_backward = len > sfx && !strcmp(v_in + len - sfx, ":backward");
    snprintf(v, sizeof v, "%.*s", (int)(o->fault_backward ? len - sfx : len), v_in);
    if (!strcmp(v, "local-positions")) {
        o->fault = ATTN_FAULT_LOCAL_POSITIONS;
        return ATTN_OK;
    }
    if (sscanf(v, "drop-step:%d%n", &step, &used) == 1 && !v[used] && step >= 0) {
        o->fault = ATTN_FAULT_DROP_STEP;
        o->fault_step = step;
        return ATTN_OK;
    }
    double secs;
    used = 0; /* slow:RANK:STEP:SECONDS, the rank sleeps then goes on (the soak test's slow rank) */
    if (sscanf(v, "slow:%d:%d:%lf%n", &rank, &step, &secs, &used) == 3 && !v[used] && rank >= 0 && step >= 0 &&
        secs > 0 && secs <= 3600) {
        o->fault = ATTN_FAULT_SLOW;
        o->fault_rank = rank;
        o->fault_step = step;
        o->fault_delay_s = secs;
        return ATTN_OK;
    }
    used = 0;
    if (sscanf(v, "%7[a-z]:%d:%d%n", kind, &rank, &step, &used) != 3 || v[used] || rank < 0 || step < 0 ||
        (strcmp(kind, "exit") && strcmp(kind, "stall")))
        return attn_fail(
            err, ATTN_EUSAGE,
            "--inject-fault: '%s' is not exit:RANK:STEP, stall:RANK:STEP, slow:RANK:STEP:SECONDS (0 < S ≤ 3600), "
            "drop-step:STEP or local-positions (the first four may end in :backward)",
            v_in);
    o->fault = strcmp(kind, "exit") ? ATTN_FAULT_STALL : ATTN_FAULT_EXIT;
    o->fault_rank = rank;
    o->fault_step = step;
    return ATTN_OK;
}

/* --depths A:B:S (A, A+S, … ≤ B) or a comma list; percents in 0 … 100. */
static int set_depths(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    attn_opts_t *o = &c->s;
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
        ATTN_TRY(list_well_formed(key, v, err));
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

static int set_schemes(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    ATTN_TRY(list_well_formed(key, v, err));
    c->n_sim_schemes = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        sim_scheme_t s;
        if (!sim_scheme_parse(t, &s) || c->n_sim_schemes == 8)
            return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' is not a scheme (ring, striped, zigzag, ulysses, usp)", key, t);
        c->sim_schemes[c->n_sim_schemes++] = (int)s;
    }
    return ATTN_OK;
}

static int set_seed(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    (void)key;
    char *end;
    errno = 0;
    unsigned long long s = strtoull(v, &end, 10);
    if (errno || end == v || *end || *v == '-')
        return attn_fail(err, ATTN_EUSAGE, "--seed: '%s' is not a non-negative integer", v);
    c->s.seed = s;
    return ATTN_OK;
}

/* --plugin A.so[,B.so]: loaded now (once per file), so later flags can name its backends. */
static int set_plugin(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    ATTN_TRY(list_well_formed(key, v, err));
    char buf[2048];
    if (strlen(v) >= sizeof buf)
        return attn_fail(err, ATTN_EUSAGE, "--%s: value too long", key);
    strcpy(buf, v);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        ATTN_TRY(plugin_load(t, err));
    snprintf(c->plugin, sizeof c->plugin, "%s", v);
    return ATTN_OK;
}
static int set_exec_spec(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    (void)key;
    ATTN_TRY(exec_spec_load(v, err));
    snprintf(c->exec_spec, sizeof c->exec_spec, "%s", v);
    return ATTN_OK;
}

/* "5%" or a fraction, 0 ≤ t < 1. */
static int set_threshold(cli_opts_t *c, const char *key, const char *s, attn_err_t *err) {
    (void)key;
    char *end;
    double v = strtod(s, &end);
    int pct = *end == '%';
    if (end == s || (pct ? end[1] != '\0' : *end != '\0') || !(v >= 0))
        return attn_fail(err, ATTN_EUSAGE, "--threshold: '%s' is not a percentage like 5%% (or a fraction like 0.05)",
                         s);
    c->threshold = pct ? v / 100 : v;
    if (c->threshold >= 1)
        return attn_fail(err, ATTN_EUSAGE, "--threshold: '%s' is 100%% or more", s);
    return ATTN_OK;
}

/* --topk K or P% items: a tile count 0..2^32, or a percent in (0, 100]. */
static int item_topk(void *ctx, const char *key, const char *s, int i, attn_err_t *err) {
    attn_opts_t *o = &((cli_opts_t *)ctx)->s;
    char *end;
    errno = 0;
    o->topk[i] = 0, o->topk_pct[i] = 0;
    if (*s && s[strlen(s) - 1] == '%') {
        double v = strtod(s, &end);
        if (end != s + strlen(s) - 1 || !(v > 0 && v <= 100))
            return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' is not a percent in (0, 100] (like 5%%)", key, s);
        o->topk_pct[i] = v;
        return ATTN_OK;
    }
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > TOPK_MAX)
        return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' is not a tile count in 0..4294967296 or a percent like 5%%", key, s);
    o->topk[i] = v;
    return ATTN_OK;
}
static int set_topk(cli_opts_t *c, const char *key, const char *v, attn_err_t *err) {
    return parse_list(c, key, v, item_topk, &c->s.n_topk, err);
}

/* ---- the table ------------------------------------------------------------------------------ */

#define FIELD(m) .off = offsetof(cli_opts_t, m), .size = sizeof(((cli_opts_t *)0)->m)
#define COUNT(m) .counted = 1, .count_off = offsetof(cli_opts_t, m)
#define RUN CMD_RUN
#define NDL CMD_NEEDLE
#define ATT CMD_ATTEND
#define PEAK CMD_PEAK
#define COMM CMD_COMM
#define N32 (INT64_C(1) << 32)
#define SIM CMD_SIMULATE

static const opt_row_t rows[] = {
    {"plugin", .cmds = ~0u >> (32 - N_CMDS), .kind = OPT_SET, FIELD(plugin), .set = set_plugin, .flags = OPT_TOP_ONLY,
     .shown = "$ATTNBENCH_PLUGINS", .meta = "F.so",
     .help = "backends from a shared object built on include/attnbench/backend.h (repeatable)"},
    {"exec-spec", .cmds = CMD_LIST | RUN | NDL | ATT, .kind = OPT_SET, FIELD(exec_spec), .set = set_exec_spec,
     .flags = OPT_TOP_ONLY, .meta = "F.json", .help = "backend exec:NAME, an external program (docs/exec-protocol.md)"},
    {"task", .cmds = RUN, .kind = OPT_SET, FIELD(s.task), .set = set_task, .def = "exactness", .meta = "T",
     .help = "exactness | throughput | memory | capacity | model | needle | precision"},
    {"direction", .cmds = RUN, .kind = OPT_SET, FIELD(s.direction), .set = set_direction, .def = "forward",
     .meta = "D", .help = "exactness, throughput, memory, model: forward | backward | both (docs/backward.md)"},
    {"task", .cmds = NDL, .hide = NDL, .kind = OPT_SET, FIELD(s.task), .set = set_task_needle, .def = "needle", .meta = "T",
     .help = "the needle task"},
    {"backends", "backend", RUN | NDL, 0, .kind = OPT_SET, FIELD(s.backends), COUNT(s.n_backends), .set = set_backends,
     .def = "blockwise", .meta = "A,B", .help = "backends to run (see `attnbench list`)"},
    {"backend", "backends", ATT, 0, .kind = OPT_SET, FIELD(s.backends), COUNT(s.n_backends), .set = set_backends,
     .meta = "NAME", .help = "the backend to call (see `attnbench list`)"},
    {"seq-len", .cmds = RUN, .kind = OPT_I64_LIST, FIELD(s.seq_len), COUNT(s.n_seq_len), .lo = 1, .hi = N32,
     .def = "1024", .meta = "N,...", .help = "key length(s) n_k"},
    {"seq-len", .cmds = NDL, .kind = OPT_I64_LIST, FIELD(s.seq_len), COUNT(s.n_seq_len), .lo = 1, .hi = N32,
     .def = "4096", .meta = "N,...", .help = "context length(s)"},
    {"q-len", .cmds = RUN, .kind = OPT_I64_LIST, FIELD(s.q_len), COUNT(s.n_q_len), .lo = 1, .hi = N32,
     .shown = "= seq-len", .meta = "N,...", .help = "query rows n_q ≤ n_k, at the sequence end"},
    {"heads", .cmds = RUN | SIM, .kind = OPT_I64, FIELD(s.heads), .lo = 1, .hi = 1 << 16, .def = "8", .meta = "H",
     .help = "query heads"},
    {"kv-heads", .cmds = RUN | SIM, .kind = OPT_I64, FIELD(s.kv_heads), .lo = 1, .hi = 1 << 16, .def = "8", .meta = "H",
     .help = "key/value heads, H % H_kv = 0 (GQA/MQA)"},
    {"head-dim", .cmds = RUN | SIM, .kind = OPT_I64, FIELD(s.head_dim), .lo = 1, .hi = 256, .def = "64", .meta = "D",
     .help = "1..256"},
    {"batch", .cmds = RUN | SIM, .kind = OPT_I64, FIELD(s.batch), .lo = 1, .hi = 1 << 20, .def = "1", .meta = "B",
     .help = "batch size"},
    {"mask", .cmds = RUN | SIM, .kind = OPT_SET, FIELD(s.masks), COUNT(s.n_masks), .set = set_masks, .def = "causal",
     .meta = "M,...", .help = "none | causal | window"},
    {"mask", .cmds = ATT, .kind = OPT_SET, FIELD(s.masks), COUNT(s.n_masks), .set = set_masks, .def = "none",
     .meta = "M", .help = "none | causal | window"},
    {"window", .cmds = RUN | ATT | SIM, .kind = OPT_I64, FIELD(s.window), .lo = 1, .hi = N32, .def = "256", .meta = "W",
     .help = "window size for --mask window; the approximate backends' local window"},
    {"doc-lens", .cmds = RUN, .kind = OPT_SET, FIELD(s.doc_lens), .set = set_doc_lens, .shown = "one document",
     .meta = "L,...", .help = "packed documents: their lengths, summing to each --seq-len"},
    {"cu-seqlens", .cmds = RUN | ATT, .kind = OPT_PATH, FIELD(s.cu_seqlens), .shown = "one document", .meta = "F.npy",
     .help = "packed documents: int32/int64 offsets 0 … seq-len (FlashAttention's cu_seqlens)"},
    {"docs", .cmds = RUN, .kind = OPT_SET, FIELD(s.docs), .set = set_docs, .shown = "one document", .meta = "D",
     .help = "packed documents drawn with --seed: uniform:MIN:MAX | lognormal:MEAN:SIGMA (of log length)"},
    {"window", .cmds = NDL, .kind = OPT_I64, FIELD(s.window), .lo = 1, .hi = N32, .def = "4096", .meta = "W",
     .help = "window of the sliding_window and approximate backends"},
    {"distractors", .cmds = RUN | NDL, .kind = OPT_I64, FIELD(s.distractors), .lo = 0, .hi = 1 << 24, .def = "0",
     .meta = "N", .help = "needle: needle sentences with other keys and values in each prompt"},
    {"sinks", .cmds = RUN | NDL | ATT, .kind = OPT_I64_LIST, FIELD(s.sinks), COUNT(s.n_sinks), .lo = 0, .hi = N32,
     .def = "4", .meta = "S,...", .help = "sinks_window: first keys every query keeps (a list sweeps)"},
    {"topk", .cmds = RUN | NDL | ATT, .kind = OPT_SET, FIELD(s.topk), COUNT(s.n_topk), .set = set_topk, .def = "5%",
     .meta = "K|P%,...", .help = "topk_blocks: key tiles per query tile beyond the window, or P% of the tiles\nit "
                                 "sees, window included (a list sweeps)"},
    {"dtype", .cmds = RUN | NDL | ATT, .kind = OPT_DTYPE, FIELD(s.dtype), .what = "f32|f64|bf16|f16", .def = "f32",
     .meta = "T", .help = "f32 | f64 | bf16 | f16 (GPU backends: bfloat16 or float16 compute, f32 out)"},
    {"merge-dtype", .cmds = RUN | ATT, .kind = OPT_DTYPE, FIELD(s.merge_dtype), .what = "f32|bf16", .def = "f32",
     .meta = "T", .help = "f32 | bf16: the dtype a distributed backend merges its partial results in"},
    {"scale", .cmds = RUN | ATT, .kind = OPT_REAL, FIELD(s.scale), .rhi = 1e30, .what = "a positive number",
     .shown = "1/sqrt(d)", .meta = "S", .help = "softmax scale"},
    {"block-q", .cmds = RUN | ATT, .kind = OPT_INT, FIELD(s.block_q), .lo = 1, .hi = 4096, .shown = "96 fused, 128 sgemm", .meta = "N",
     .help = "query tile of the tiled backends"},
    {"block-k", .cmds = RUN | ATT, .kind = OPT_INT, FIELD(s.block_k), .lo = 1, .hi = 4096, .shown = "128 fused, 256 sgemm", .meta = "N",
     .help = "key tile of the tiled backends"},
    {"ranks", .cmds = RUN | NDL, .kind = OPT_INT, FIELD(s.ranks), .lo = 1, .hi = ATTN_MAX_RANKS, .def = "1",
     .meta = "P", .help = "ranks of the distributed backends (ring, striped, zigzag, ulysses)"},
    {"ranks", .cmds = COMM, .kind = OPT_INT, FIELD(s.ranks), .lo = 1, .hi = ATTN_MAX_RANKS, .shown = "2 | job size",
     .meta = "P", .help = "local: 2..64; mpi: the job size"},
    {"transport", .cmds = RUN | NDL, .kind = OPT_SET, FIELD(s.transport), .set = set_transport, .def = "local",
     .meta = "T",
     .help = "local (P ranks as threads) | mpi (under mpirun -np P);\n*_cuda backends: cuda_local (P virtual "
             "ranks on one GPU) | nccl (mpirun, a GPU each)"},
    {"transport", .cmds = COMM, .kind = OPT_SET, FIELD(s.transport), .set = set_comm_transport, .def = "local",
     .meta = "T", .help = "local (P ranks as threads) | mpi (under mpirun -np P)"},
    {"layout", .cmds = RUN | NDL, .kind = OPT_SET, FIELD(s.layout), .set = set_layout, .def = "auto", .meta = "L",
     .help = "ulysses' sequence shards: contiguous | striped | zigzag"},
    {"local-backend", .cmds = RUN | NDL, .kind = OPT_SET, FIELD(s.local_backend), .set = set_local_backend,
     .shown = "blockwise", .meta = "B", .help = "ulysses: backend run on each head shard"},
    {"ulysses-degree", .cmds = RUN | NDL, .kind = OPT_INT, FIELD(s.ulysses_degree), .lo = 1, .hi = ATTN_MAX_RANKS,
     .shown = "gcd(P, H_kv)", .meta = "U", .help = "usp, usp_cuda: Ulysses degree U (heads over U ranks), ring degree R = P / U"},
    {"comm-timeout", .cmds = RUN | NDL | COMM, .kind = OPT_REAL, FIELD(s.comm_timeout), .rhi = 1e6,
     .what = "a positive number of seconds", .def = "300", .meta = "S",
     .help = "seconds without progress before a rank fails"},
    {"inject-fault", .cmds = RUN | NDL, .hide = ~0u, .kind = OPT_SET, FIELD(s.fault), .set = set_fault, .meta = "F",
     .help = "fault tests: exit:RANK:STEP | stall:RANK:STEP | slow:RANK:STEP:S | drop-step:STEP | local-positions"},
    {"seed", .cmds = RUN | NDL, .kind = OPT_SET, FIELD(s.seed), .set = set_seed, .def = "1234", .meta = "S",
     .help = "input seed"},
    {"model-config", .cmds = RUN, .kind = OPT_PATH, FIELD(s.model_config), .shown = "shape flags, 4 layers",
     .meta = "F", .help = "model task: HF-style config.json"},
    {"weights", .cmds = RUN, .kind = OPT_PATH, FIELD(s.weights), .shown = "seeded", .meta = "F",
     .help = "model task: .safetensors weights"},
    {"layers", .cmds = RUN, .kind = OPT_INT, FIELD(s.layers), .lo = 1, .hi = 1024, .shown = "4", .meta = "L",
     .help = "model task without a config: decoder layers"},
    {"vocab", .cmds = RUN, .kind = OPT_INT, FIELD(s.vocab), .lo = 2, .hi = 1 << 24, .shown = "32000", .meta = "V",
     .help = "model task without a config: vocabulary size"},
    {"threads", .cmds = RUN | NDL | ATT | PEAK, .kind = OPT_INT, FIELD(s.threads), .lo = 0, .hi = 1024, .def = "0",
     .meta = "T", .help = "worker threads, 0 = all cores"},
    {"device", .cmds = RUN | NDL | ATT | PEAK, .kind = OPT_INT, FIELD(s.device), .lo = 0, .hi = 1023, .def = "0", .meta = "N",
     .help = "CUDA device of the GPU backends"},
    {"sweep-max", .cmds = RUN, .kind = OPT_I64, FIELD(s.sweep_max), .lo = 1, .hi = N32, .shown = "off", .meta = "N",
     .help = "throughput: n_k doubles from the first --seq-len up to N"},
    {"time-budget", .cmds = RUN, .kind = OPT_REAL, FIELD(s.time_budget), .zero_ok = 1, .rhi = 1e9,
     .what = "a non-negative number of seconds", .shown = "0 = none", .meta = "S",
     .help = "sweep: skip (and stop at) the next n_k whose warm-up + repeats are\nprojected to take more than S "
             "seconds"},
    {"depths", .cmds = RUN | NDL, .kind = OPT_SET, FIELD(s.depths), COUNT(s.n_depths), .set = set_depths,
     .def = "0:100:10", .meta = "A:B:S", .help = "needle: depths, percent of the haystack, or a list"},
    {"needles", .cmds = RUN | NDL, .kind = OPT_INT, FIELD(s.needles), .lo = 1, .hi = 16, .def = "1", .meta = "K",
     .help = "needle: facts per prompt, 1..16"},
    {"ask", .cmds = RUN | NDL, .kind = OPT_CHOICE, FIELD(s.ask), .what = "one|all", .def = "one", .meta = "one|all",
     .help = "needle: ask the fact at the depth, or every fact"},
    {"mode", .cmds = RUN | NDL, .kind = OPT_CHOICE, FIELD(s.mode), .what = "prefill|query-tail", .def = "prefill",
     .meta = "M", .help = "needle: prefill | query-tail"},
    {"haystack", .cmds = RUN | NDL, .kind = OPT_PATH, FIELD(s.haystack), .shown = "the KJV corpus", .meta = "F",
     .help = "needle: a text file (regular, at most 64 MiB), or noise"},
    {"tokenizer", .cmds = RUN | NDL, .kind = OPT_PATH, FIELD(s.tokenizer), .shown = "build/datasets/kjv.model",
     .meta = "F", .help = "needle: SentencePiece model"},
    {"resume", .cmds = RUN | NDL, .kind = OPT_PATH, FIELD(s.resume), .meta = "F.json",
     .help = "needle: keep F's records, run only the cases it lacks"},
    {"precision-ranks", .cmds = RUN, .kind = OPT_I64_LIST, FIELD(s.precision_ranks), COUNT(s.n_precision_ranks),
     .lo = 1, .hi = ATTN_MAX_RANKS, .def = "1,2,4,8,16,32,64", .meta = "P,...",
     .help = "precision: ranks P each distributed backend is swept over"},
    {"sizes", .cmds = PEAK, .kind = OPT_I64_LIST, FIELD(s.sizes), COUNT(s.n_sizes), .lo = 1, .hi = 16384,
     .shown = "512,1024,2048,4096", .meta = "N,...", .help = "sgemm sizes n (n×n×n products)"},
    {"stream-mib", .cmds = PEAK, .kind = OPT_I64, FIELD(s.stream_mib), .lo = 1, .hi = 1 << 20, .def = "256",
     .meta = "M", .help = "MiB per stream array (the three together at most 3/8 of available memory)"},
    {"sizes", .cmds = COMM, .kind = OPT_I64_LIST, FIELD(comm_sizes), COUNT(n_comm_sizes), .lo = 1,
     .hi = INT64_C(1) << 30, .shown = "8, 32, ..., 32 MiB, 64 MiB", .meta = "B,...",
     .help = "message sizes in bytes, 1..2^30"},
    {"repeats", .cmds = RUN | PEAK, .kind = OPT_INT, FIELD(s.repeats), .lo = 1, .hi = 1000, .def = "5", .meta = "R",
     .help = "timed repeats (median, min, max)"},
    {"repeats", .cmds = COMM, .kind = OPT_INT, FIELD(s.repeats), .lo = 1, .hi = 1000, .def = "20", .meta = "R",
     .help = "timed iterations per size, at most"},
    {"warmup", .cmds = RUN | PEAK | COMM, .kind = OPT_INT, FIELD(s.warmup), .lo = 0, .hi = 1000, .def = "1",
     .meta = "W", .help = "untimed warm-up runs"},
    {"out-dir", .cmds = RUN | NDL | PEAK | COMM | SIM, .kind = OPT_PATH, FIELD(s.out_dir), .flags = OPT_TOP_ONLY,
     .def = "results", .meta = "DIR", .help = "where the results files go"},
    {"config", .cmds = RUN | NDL, .kind = OPT_PATH, FIELD(config), .meta = "FILE",
     .help = "JSON suite; flags given on the command line override it"},
    {"q", .cmds = ATT, .kind = OPT_PATH, FIELD(q_path), .meta = "q.npy", .help = "queries (B,H,n_q,d)"},
    {"k", .cmds = ATT, .kind = OPT_PATH, FIELD(k_path), .meta = "k.npy", .help = "keys (B,H_kv,n_k,d)"},
    {"v", .cmds = ATT, .kind = OPT_PATH, FIELD(v_path), .meta = "v.npy", .help = "values (B,H_kv,n_k,d)"},
    {"out", .cmds = ATT, .kind = OPT_PATH, FIELD(out_path), .meta = "o.npy", .help = "where O (B,H,n_q,d) goes"},
    {"lse", .cmds = ATT, .kind = OPT_PATH, FIELD(lse_path), .meta = "lse.npy", .help = "where LSE (B,H,n_q) goes"},
    {"do", .cmds = ATT, .kind = OPT_PATH, FIELD(do_path), .meta = "do.npy",
     .help = "output gradient dO (B,H,n_q,d): run the backward too (needs --dq, --dk, --dv)"},
    {"dq", .cmds = ATT, .kind = OPT_PATH, FIELD(dq_path), .meta = "dq.npy", .help = "where dQ (B,H,n_q,d) goes"},
    {"dk", .cmds = ATT, .kind = OPT_PATH, FIELD(dk_path), .meta = "dk.npy", .help = "where dK (B,H_kv,n_k,d) goes"},
    {"dv", .cmds = ATT, .kind = OPT_PATH, FIELD(dv_path), .meta = "dv.npy", .help = "where dV (B,H_kv,n_k,d) goes"},
    {"out", .cmds = CMD_REPORT, .kind = OPT_PATH, FIELD(out_path), .def = "dashboards/index.html", .meta = "FILE",
     .help = "the HTML page"},
    {"schemes", .cmds = SIM, .kind = OPT_SET, FIELD(sim_schemes), COUNT(n_sim_schemes), .set = set_schemes,
     .def = "ring,striped,zigzag,ulysses,usp", .meta = "S,...", .help = "ring | striped | zigzag | ulysses | usp"},
    {"ranks", .cmds = SIM, .kind = OPT_I64_LIST, FIELD(sim_ranks), COUNT(n_sim_ranks), .lo = 2, .hi = 1 << 24,
     .def = "8,64,1024,16384", .meta = "P,...", .help = "ranks (GPUs) to simulate"},
    {"seq-len", .cmds = SIM, .kind = OPT_I64_LIST, FIELD(s.seq_len), COUNT(s.n_seq_len), .lo = 2,
     .hi = INT64_C(1) << 40, .def = "131072,1048576,10000000", .meta = "N,...", .help = "tokens n (n_q = n_k)"},
    {"profile", .cmds = SIM, .kind = OPT_PATH, FIELD(sim_profile), .shown = "the blockwise tile, measured now",
     .meta = "F", .help = "compute profile JSON (docs/simulate.md)"},
    {"links", .cmds = SIM, .kind = OPT_PATH, FIELD(sim_links), .shown = "nominal, assumed", .meta = "F",
     .help = "links JSON (two tiers, node size) or an `attnbench comm` results file"},
    {"history", .cmds = CMD_REPORT, .kind = OPT_PATH, FIELD(history_dir), .meta = "DIR",
     .help = "nightly results files: the regression gate's history (compare's rule, night after night)"},
    {"threshold", .cmds = CMD_COMPARE | CMD_REPORT, .kind = OPT_SET, FIELD(threshold), .set = set_threshold, .def = "5%",
     .meta = "T", .help = "a percentage like 5% (or a fraction like 0.05)"},
};
enum { N_ROWS = sizeof rows / sizeof rows[0] };

/* ---- values -------------------------------------------------------------------------------- */

static int parse_i64(const char *key, const char *s, int64_t lo, int64_t hi, int64_t *out, attn_err_t *err) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE && end != s && *end == '\0') /* digits, but beyond 64 bits */
        return attn_fail(err, ATTN_EUSAGE, "--%s: %s is out of range %lld..%lld", key, s, (long long)lo, (long long)hi);
    if (errno || end == s || *end != '\0')
        return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' is not an integer", key, s);
    if (v < lo || v > hi)
        return attn_fail(err, ATTN_EUSAGE, "--%s: %lld is out of range %lld..%lld", key, v, (long long)lo,
                         (long long)hi);
    *out = v;
    return ATTN_OK;
}

/* An integer list row's items, each within the row's bounds, into its int64_t array. */
typedef struct {
    const opt_row_t *row;
    void *field;
} i64_list_t;
static int item_i64(void *ctx, const char *key, const char *s, int i, attn_err_t *err) {
    const i64_list_t *l = ctx;
    return parse_i64(key, s, l->row->lo, l->row->hi, (int64_t *)l->field + i, err);
}

/* "a|b|c" → "a, b or c" */
static void choices_text(const char *choices, const char *last_sep, char *out, size_t cap) {
    int n = 1;
    for (const char *p = choices; *p; p++)
        n += *p == '|';
    out[0] = '\0';
    const char *p = choices;
    for (int i = 0; i < n; i++) {
        size_t len = strcspn(p, "|");
        size_t at = strlen(out);
        snprintf(out + at, cap - at, "%s%.*s", i == 0 ? "" : i == n - 1 ? last_sep : ", ", (int)len, p);
        p += len + (p[len] == '|');
    }
}

static int is_choice(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        size_t len = strcspn(p, "|");
        if (len == n && !strncmp(p, v, n))
            return 1;
        p += len + (p[len] == '|');
    }
    return 0;
}

static int row_set(cli_opts_t *c, const opt_row_t *r, const char *key, const char *v, attn_err_t *err) {
    char *field = (char *)c + r->off;
    char text[128];
    int64_t x;
    switch (r->kind) {
    case OPT_INT:
        ATTN_TRY(parse_i64(key, v, r->lo, r->hi, &x, err));
        *(int *)field = (int)x;
        return ATTN_OK;
    case OPT_I64:
        return parse_i64(key, v, r->lo, r->hi, (int64_t *)field, err);
    case OPT_REAL: {
        char *end;
        double d = strtod(v, &end);
        if (end == v || *end || !(r->zero_ok ? d >= 0 : d > 0) || d > r->rhi)
            return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' is not %s", key, v, r->what);
        *(double *)field = d;
        return ATTN_OK;
    }
    case OPT_PATH:
        if (!*v || strlen(v) >= r->size)
            return attn_fail(err, ATTN_EUSAGE, "--%s: path empty or too long", key);
        strcpy(field, v);
        return ATTN_OK;
    case OPT_CHOICE:
        if (!is_choice(r->what, v) || strlen(v) >= r->size) {
            choices_text(r->what, " or ", text, sizeof text);
            return attn_fail(err, ATTN_EUSAGE, "--%s: '%s' is not %s", key, v, text);
        }
        strcpy(field, v);
        return ATTN_OK;
    case OPT_DTYPE: { /* dtype_parse's spellings (f32, float32, …) of the dtypes the row lists */
        attn_dtype_t t;
        if (!dtype_parse(v, &t) || !is_choice(r->what, dtype_name(t))) {
            choices_text(r->what, ", ", text, sizeof text);
            return attn_fail(err, ATTN_EUSAGE, "--%s: unknown dtype '%s' (%s)", key, v, text);
        }
        *(attn_dtype_t *)field = t;
        return ATTN_OK;
    }
    case OPT_I64_LIST: {
        i64_list_t list = {r, field};
        return parse_list(&list, key, v, item_i64, (int *)((char *)c + r->count_off), err);
    }
    case OPT_SET:
        return r->set(c, key, v, err);
    }
    return attn_fail(err, ATTN_EUSAGE, "--%s: no parser", key);
}

static int row_default(cli_opts_t *c, const opt_row_t *r, attn_err_t *err) {
    memset((char *)c + r->off, 0, r->size);
    if (r->counted)
        *(int *)((char *)c + r->count_off) = 0;
    return r->def ? row_set(c, r, r->name, r->def, err) : ATTN_OK;
}

/* ---- lookup --------------------------------------------------------------------------------- */

static int row_named(const opt_row_t *r, const char *name) {
    return !strcmp(r->name, name) || (r->alias && !strcmp(r->alias, name));
}

/* The row of `name` that cmd takes. `dashes` is "--" for flags, "" for suite keys. */
static int row_find(const char *name, unsigned cmd, const char *dashes, const opt_row_t **out, attn_err_t *err) {
    unsigned takers = 0;
    for (int i = 0; i < N_ROWS; i++) {
        if (!row_named(&rows[i], name))
            continue;
        if (rows[i].cmds & cmd) {
            *out = &rows[i];
            return ATTN_OK;
        }
        takers |= rows[i].cmds;
    }
    if (!takers)
        return *dashes ? attn_fail(err, ATTN_EUSAGE, "unknown flag '--%s' (see --help)", name)
                       : attn_fail(err, ATTN_EUSAGE, "unknown option '%s'", name);
    char list[128] = "";
    for (int k = 0; k < N_CMDS; k++)
        if (takers & (1u << k))
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", *list ? ", " : "", cmd_names[k]);
    const char *self = "?";
    for (int k = 0; k < N_CMDS; k++)
        if (cmd == 1u << k)
            self = cmd_names[k];
    return attn_fail(err, ATTN_EUSAGE, "%s '%s%s' does not apply to %s (it is taken by %s)",
                     *dashes ? "flag" : "option", dashes, name, self, list);
}

/* ---- defaults and argv ---------------------------------------------------------------------- */

void opts_init(cli_opts_t *c, unsigned cmd) {
    memset(c, 0, sizeof *c);
    attn_err_t err = {0};
    for (int pass = 0; pass < 2; pass++) {
        unsigned want = pass == 0 ? CMD_RUN : cmd;
        if (pass == 1 && cmd == CMD_RUN)
            break;
        for (int i = 0; i < N_ROWS; i++)
            if ((rows[i].cmds & want) && row_default(c, &rows[i], &err) != ATTN_OK)
                ATTN_ASSERT(!"a default of the flag table does not parse (opts_check_table)");
    }
}

int opts_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

int opts_parse_argv(cli_opts_t *c, unsigned cmd, int argc, char **argv, char **pos, int *n_pos, attn_err_t *err) {
    int flags_done = 0;
    if (n_pos)
        *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (flags_done || a[0] != '-' || !a[1]) {
            if (!pos)
                return attn_fail(err, ATTN_EUSAGE, "unexpected argument '%s' (see --help)", a);
            pos[(*n_pos)++] = argv[i];
            continue;
        }
        if (!strcmp(a, "--")) {
            flags_done = 1;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            continue;
        if (a[1] != '-')
            return attn_fail(err, ATTN_EUSAGE, "unknown flag '%s' (see --help)", a);
        char name[64];
        size_t len = strcspn(a + 2, "=");
        if (len >= sizeof name)
            return attn_fail(err, ATTN_EUSAGE, "unknown flag '%.40s…' (see --help)", a);
        memcpy(name, a + 2, len);
        name[len] = '\0';
        const opt_row_t *r;
        ATTN_TRY(row_find(name, cmd, "--", &r, err));
        const char *v = a[2 + len] == '=' ? a + 3 + len : i + 1 < argc ? argv[++i] : NULL;
        if (!v)
            return attn_fail(err, ATTN_EUSAGE, "flag '--%s' needs a value", name);
        ATTN_TRY(row_set(c, r, name, v, err));
    }
    return ATTN_OK;
}

int opts_preload(const char *cmd_name, int argc, char **argv, attn_err_t *err) {
    unsigned cmd = 0;
    for (int k = 0; k < N_CMDS; k++)
        if (!strcmp(cmd_names[k], cmd_name))
            cmd = 1u << k;
    ATTN_TRY(plugin_load_env(err));
    cli_opts_t c;
    memset(&c, 0, sizeof c);
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        const char *a = argv[i], *v = NULL;
        for (const char *name = "plugin"; name; name = strcmp(name, "plugin") ? NULL : "exec-spec") {
            size_t n = strlen(name);
            if (strncmp(a, "--", 2) || strncmp(a + 2, name, n) || (a[2 + n] && a[2 + n] != '='))
                continue;
            v = a[2 + n] == '=' ? a + 3 + n : i + 1 < argc ? argv[i + 1] : NULL;
            const opt_row_t *r;
            attn_err_t ignored = {0}; /* a flag cmd does not take, or without a value: the parse says so */
            if (v && row_find(name, cmd, "--", &r, &ignored) == ATTN_OK)
                ATTN_TRY(row_set(&c, r, name, v, err));
        }
    }
    return ATTN_OK;
}

/* ---- suite files ---------------------------------------------------------------------------- */

/* JSON scalars and arrays of scalars become the same text a flag would carry. */
static int json_to_text(const char *path, const char *where, const char *key, json_t *v, char *out, size_t cap,
                        attn_err_t *err) {
    out[0] = '\0';
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (json_is_array(v) && n == 0)
        return attn_fail(err, ATTN_EUSAGE, "%s: %s: key '%s' is an empty list", path, where, key);
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
            return attn_fail(err, ATTN_EUSAGE, "%s: %s: key '%s' must be a string, a number or a list of them", path,
                             where, key);
        if (strlen(out) + strlen(item) + 2 > cap)
            return attn_fail(err, ATTN_EUSAGE, "%s: %s: key '%s' is too long", path, where, key);
        if (i)
            strcat(out, ",");
        strcat(out, item);
    }
    return ATTN_OK;
}

/* The keys of one object: the top level (in_run 0) or runs[i]. */
static int apply_object(cli_opts_t *c, unsigned cmd, const char *path, const char *where, int in_run, json_t *obj,
                        attn_err_t *err) {
    const char *key;
    json_t *v;
    /* the keys that define backends first, so "backends" may name theirs in any key order */
    for (int pass = 0; pass < 2; pass++)
    json_object_foreach(obj, key, v) {
        if ((pass == 0) != (!strcmp(key, "plugin") || !strcmp(key, "exec-spec")))
            continue;
        if (!strcmp(key, "description") || (!in_run && !strcmp(key, "runs")))
            continue;
        if (!strcmp(key, "runs"))
            return attn_fail(err, ATTN_EUSAGE,
                             "%s: %s: 'runs' cannot be nested in a run (list every run in the "
                             "top-level 'runs')",
                             path, where);
        if (!strcmp(key, "config"))
            return attn_fail(err, ATTN_EUSAGE, "%s: %s: 'config' cannot be nested", path, where);
        const opt_row_t *r;
        attn_err_t sub = {0};
        char text[2048];
        if (row_find(key, cmd, "", &r, &sub) != ATTN_OK)
            return attn_fail(err, ATTN_EUSAGE, "%s: %s: %s", path, where, sub.msg);
        if (in_run && (r->flags & OPT_TOP_ONLY))
            return attn_fail(err, ATTN_EUSAGE, "%s: %s: %s applies to the whole suite; put it at the top level", path,
                             where, key);
        ATTN_TRY(json_to_text(path, where, key, v, text, sizeof text, err));
        if (row_set(c, r, key, text, &sub) != ATTN_OK)
            return attn_fail(err, ATTN_EUSAGE, "%s: %s: %s", path, where, sub.msg);
    }
    return ATTN_OK;
}

/* One run: defaults, the top level, runs[i], the command line; then its cases validated. */
static int load_run(json_t *root, json_t *list, int i, const char *path, unsigned cmd, int argc, char **argv,
                    attn_opts_t *out, attn_err_t *err) {
    char where[32];
    snprintf(where, sizeof where, list ? "runs[%d]" : "top level", i);
    cli_opts_t c;
    opts_init(&c, cmd);
    ATTN_TRY(apply_object(&c, cmd, path, "top level", 0, root, err));
    if (list) {
        json_t *entry = json_array_get(list, (size_t)i);
        if (!json_is_object(entry))
            return attn_fail(err, ATTN_EUSAGE, "%s: %s must be an object", path, where);
        ATTN_TRY(apply_object(&c, cmd, path, where, 1, entry, err));
    }
    ATTN_TRY(opts_parse_argv(&c, cmd, argc, argv, NULL, NULL, err));
    attn_err_t sub = {0};
    if (settings_validate_run(&c.s, &sub) != ATTN_OK)
        return attn_fail(err, ATTN_EUSAGE, "%s: %s: %s", path, where, sub.msg);
    *out = c.s;
    return ATTN_OK;
}

int opts_load_config(const char *path, unsigned cmd, int argc, char **argv, attn_opts_t **runs, int *n_runs,
                     attn_err_t *err) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        return attn_fail(err, ATTN_EUSAGE, "%s: %s (line %d, column %d)", path, jerr.text, jerr.line, jerr.column);
    int rc = ATTN_OK;
    json_t *list = json_object_get(root, "runs");
    *runs = NULL;
    if (!json_is_object(root))
        rc = attn_fail(err, ATTN_EUSAGE, "%s: top level must be a JSON object", path);
    else if (list && (!json_is_array(list) || json_array_size(list) == 0))
        rc = attn_fail(err, ATTN_EUSAGE, "%s: 'runs' must be a non-empty list of objects", path);
    int n = list ? (int)json_array_size(list) : 1;
    if (rc == ATTN_OK && !(*runs = calloc((size_t)n, sizeof **runs)))
        rc = attn_fail(err, ATTN_ERUNTIME, "out of memory reading %s", path);
    for (int i = 0; i < n && rc == ATTN_OK; i++)
        rc = load_run(root, list, i, path, cmd, argc, argv, &(*runs)[i], err);
    *n_runs = n;
    if (rc != ATTN_OK) {
        free(*runs);
        *runs = NULL;
    }
    json_decref(root);
    return rc;
}

/* ---- help ----------------------------------------------------------------------------------- */

static int help_roff; /* opts_help_roff: the man page's form of --help */

void opts_help_roff(int on) { help_roff = on; }

/* Text for roff: backslashes and hyphens escaped, a control character at a line's start quoted. */
void opts_roff_text(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n && s[i]; i++) {
        if ((i == 0 || s[i - 1] == '\n') && (s[i] == '.' || s[i] == '\''))
            fputs("\\&", f);
        if (s[i] == '\\')
            fputs("\\e", f);
        else if (s[i] == '-')
            fputs("\\-", f);
        else
            fputc(s[i], f);
    }
}

/* usage's first paragraph (the synopsis) unfilled, the rest as paragraphs; each flag a tagged
 * paragraph. The same rows, in the same order, as the text form below. */
static void print_help_roff(FILE *f, unsigned cmd, const char *usage) {
    size_t syn = strstr(usage, "\n\n") ? (size_t)(strstr(usage, "\n\n") - usage) : strlen(usage);
    fputs(".PP\n.nf\n", f);
    opts_roff_text(f, usage, syn);
    fputs("\n.fi\n", f);
    for (const char *p = usage + syn; *p;) {
        while (*p == '\n')
            p++;
        size_t len = strstr(p, "\n\n") ? (size_t)(strstr(p, "\n\n") - p) : strlen(p);
        if (len) {
            fputs(".PP\n", f);
            opts_roff_text(f, p, len);
            fputs(p[len - 1] == '\n' ? "" : "\n", f);
        }
        p += len;
    }
    for (int i = 0; i < N_ROWS; i++) {
        const opt_row_t *r = &rows[i];
        if (!(r->cmds & cmd) || (r->hide & cmd))
            continue;
        fputs(".TP\n\\fB", f);
        opts_roff_text(f, "--", 2);
        opts_roff_text(f, r->name, strlen(r->name));
        fputs("\\fR \\fI", f);
        opts_roff_text(f, r->meta, strlen(r->meta));
        fputs("\\fR\n", f);
        for (const char *p = r->help; *p;) {
            size_t len = strcspn(p, "\n");
            opts_roff_text(f, p, len);
            p += len;
            if (*p == '\n')
                fputs("\n.br\n", f), p++;
        }
        const char *shown = r->shown ? r->shown : r->def;
        if (shown) {
            fputs(" [", f);
            opts_roff_text(f, shown, strlen(shown));
            fputc(']', f);
        }
        fputc('\n', f);
    }
    fputs(".TP\n\\fB\\-\\-help\\fR, \\fB\\-h\\fR\nthis text\n", f);
}

void opts_print_help(FILE *f, unsigned cmd, const char *usage) {
    if (help_roff) {
        print_help_roff(f, cmd, usage);
        return;
    }
    fputs(usage, f);
    fputs("\nflags:\n", f);
    for (int i = 0; i < N_ROWS; i++) {
        const opt_row_t *r = &rows[i];
        if (!(r->cmds & cmd) || (r->hide & cmd))
            continue;
        char head[64];
        snprintf(head, sizeof head, "--%s %s", r->name, r->meta);
        fprintf(f, "  %-18s ", head);
        for (const char *p = r->help; *p; p++) /* continuation lines under the first */
            if (*p == '\n')
                fputs("\n                     ", f);
            else
                fputc(*p, f);
        const char *shown = r->shown ? r->shown : r->def;
        if (shown)
            fprintf(f, " [%s]", shown);
        fputc('\n', f);
    }
    fputs("  --help, -h         this text\n", f);
}

/* ---- for the tests -------------------------------------------------------------------------- */

void opts_defaults(attn_opts_t *o) {
    cli_opts_t c;
    opts_init(&c, CMD_RUN);
    *o = c.s;
}

int opts_set(attn_opts_t *o, const char *key, const char *value, attn_err_t *err) {
    cli_opts_t c;
    opts_init(&c, CMD_RUN);
    c.s = *o;
    const opt_row_t *r;
    ATTN_TRY(row_find(key, CMD_RUN, "", &r, err));
    ATTN_TRY(row_set(&c, r, key, value, err));
    *o = c.s;
    return ATTN_OK;
}

int opts_check_table(attn_err_t *err) {
    for (int i = 0; i < N_ROWS; i++) {
        const opt_row_t *r = &rows[i];
        if (!r->cmds || !r->help || !*r->help || !r->meta || (r->kind == OPT_SET && !r->set) || !r->size)
            return attn_fail(err, ATTN_EUSAGE, "row --%s: no subcommand, help, value name, setter or field", r->name);
        for (int j = 0; j < i; j++)
            if ((row_named(&rows[j], r->name) || (r->alias && row_named(&rows[j], r->alias))) &&
                (rows[j].cmds & r->cmds))
                return attn_fail(err, ATTN_EUSAGE, "rows %d and %d: --%s twice for one subcommand", j, i, r->name);
        cli_opts_t c;
        memset(&c, 0, sizeof c);
        attn_err_t sub = {0};
        if (row_default(&c, r, &sub) != ATTN_OK)
            return attn_fail(err, ATTN_EUSAGE, "row --%s: default '%s' does not parse: %s", r->name, r->def, sub.msg);
    }
    return ATTN_OK;
}
