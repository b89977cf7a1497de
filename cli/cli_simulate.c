/* cli_simulate.c — `attnbench simulate`: the model of tasks/simulate.h over schemes × masks × P ×
 * n as records (task simulate) with every constant in their config, a table on stdout, and, for
 * results files given as arguments, the model checked against what they measured. Model and
 * checks: docs/simulate.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "core/outfile.h"
#include "core/results.h"
#include "core/results_read.h"
#include "tasks/simulate_io.h"

#define SIM_CHECK_TOL 0.20 /* the acceptance: model within 20 % of the measurement */

typedef struct {
    cli_opts_t c;
    sim_profile_t pr;
    sim_links_t links;
    attn_run_t run;
} sim_ctx_t;

static const char sim_usage[] =
    "usage: attnbench simulate [--schemes ring,striped,zigzag,ulysses,usp] [--ranks P,...] [--seq-len N,...]\n"
    "                          [--profile FILE] [--links FILE] [shape flags] [RESULTS.json ...]\n\n"
    "Time per attention call and memory per rank of each scheme at each P and n, from a compute\n"
    "profile (FLOP/s vs tile rows: --profile FILE, else the blockwise tile measured now) and a\n"
    "link model (--links FILE: two tiers and a node size, or an `attnbench comm` results file;\n"
    "else named constants). Results files given as arguments are checked against the model:\n"
    "throughput records (critical path; mpi: wall time) and comm records (per message size).\n"
    "Writes DIR/<run_id>.json and .csv (task simulate). Model: docs/simulate.md.\n";

static const char *layout_of(sim_scheme_t s) {
    return s == SIM_STRIPED ? "striped" : s == SIM_ZIGZAG || s == SIM_USP ? "zigzag" : "contiguous";
}

/* n points of two columns as config keys A_i and B_i (a profile, a tile table, a link table). */
static void record_points(attn_record_t *r, const char *a, const double *va, const char *b, const double *vb, int n) {
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s_%d", a, i);
        record_extra_num(r, key, va[i]);
        snprintf(key, sizeof key, "%s_%d", b, i);
        record_extra_num(r, key, vb[i]);
    }
}

/* A measured link table as PREFIX_bytes_i / PREFIX_s_i. */
static void record_table(attn_record_t *r, const char *prefix, const sim_table_t *t) {
    char a[40], b[40];
    snprintf(a, sizeof a, "%s_bytes", prefix), snprintf(b, sizeof b, "%s_s", prefix);
    record_points(r, a, t->bytes, b, t->seconds, t->n);
}

/* Every constant the record's numbers came from. */
static void record_constants(attn_record_t *r, const sim_profile_t *pr, const sim_links_t *l) {
    record_extra_str(r, "profile", pr->name);
    record_extra_str(r, "profile_source", pr->source);
    record_extra_str(r, "profile_device", pr->device);
    record_extra_num(r, "elem_bytes", pr->elem_bytes);
    record_extra_num(r, "gpu_memory_bytes", pr->memory_bytes);
    record_points(r, "profile_rows", pr->rows, "profile_flops", pr->flops_per_s, pr->n_points);
    const sim_tiles_t *t = &pr->tiles;
    if (t->n) {
        record_extra_num(r, "tile_bq", (double)t->bq);
        record_extra_num(r, "tile_bk", (double)t->bk);
        record_extra_num(r, "tile_head_dim", (double)t->head_dim);
        record_extra_num(r, "tile_part_s", t->part_s);
        record_extra_num(r, "tile_merge_row_s", t->merge_row_s);
        record_extra_num(r, "tile_call_s", t->call_s);
        record_points(r, "tile_krows", t->krows, "tile_full_s", t->full_s, t->n);
    }
    record_extra_str(r, "links", l->name);
    record_extra_str(r, "links_source", l->source);
    record_extra_num(r, "node_size", l->node_size == INT64_MAX ? -1 : (double)l->node_size);
    record_extra_num(r, "intra_latency_s", l->intra.latency_s);
    record_extra_num(r, "intra_bandwidth_Bps", l->intra.bandwidth_Bps);
    record_extra_num(r, "inter_latency_s", l->inter.latency_s);
    record_extra_num(r, "inter_bandwidth_Bps", l->inter.bandwidth_Bps);
    record_table(r, "intra_oneway", &l->intra.oneway);
    record_table(r, "intra_exchange", &l->intra.exchange);
    record_table(r, "inter_oneway", &l->inter.oneway);
    record_table(r, "inter_exchange", &l->inter.exchange);
    if (l->intra.exchange.n || l->inter.exchange.n)
        record_extra_num(r, "exchange_ranks", (double)(l->intra.exchange.n ? l->intra : l->inter).exchange_ranks);
}

static attn_problem_t shape_problem(const sim_shape_t *sh, const sim_profile_t *pr) {
    return (attn_problem_t){.batch = sh->B, .heads = sh->H, .kv_heads = sh->Hkv, .head_dim = sh->d, .n_q = sh->n,
                            .n_k = sh->n, .mask = sh->mask, .window = sh->window,
                            .dtype = pr->elem_bytes == 2 ? ATTN_BF16 : ATTN_F32};
}

static int add_case(sim_ctx_t *x, sim_scheme_t s, const sim_shape_t *sh, int64_t P, attn_err_t *err) {
    sim_result_t res;
    sim_run(s, sh, P, &x->pr, &x->links, &res);
    attn_problem_t p = shape_problem(sh, &x->pr);
    attn_record_t *r = results_add(&x->run, "simulate", sim_scheme_name(s), &p);
    if (!r)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory recording %s at P = %lld", sim_scheme_name(s), (long long)P);
    snprintf(r->transport, sizeof r->transport, "model");
    snprintf(r->layout, sizeof r->layout, "%s", s == SIM_ULYSSES ? "contiguous" : layout_of(s));
    r->ranks = P > 1 << 30 ? 1 << 30 : (int)P;
    record_extra_num(r, "ulysses_degree", (double)res.ulysses_degree);
    record_extra_num(r, "ring_degree", (double)res.ring_degree);
    record_extra_str(r, "steps", res.exact ? "plan" : "closed-form");
    record_constants(r, &x->pr, &x->links);
    if (!res.ok) {
        record_set_status(r, REC_SKIPPED, "%s", res.reason);
        return ATTN_OK;
    }
    record_metric(r, "time_s", res.time_s, "s");
    record_metric(r, "compute_s", res.compute_s, "s");
    record_metric(r, "comm_s", res.comm_s, "s");
    record_metric(r, "exposed_comm_s", res.exposed_s, "s");
    record_metric(r, "memory_bytes", res.memory_bytes, "B");
    record_metric(r, "fits", res.memory_bytes <= x->pr.memory_bytes, "1");
    record_metric(r, "bytes_sent", res.bytes_sent, "B");
    record_metric(r, "work_pairs", res.work_pairs, "1");
    return ATTN_OK;
}

/* ---- checks against results files ------------------------------------------------------------ */

static double metric(json_t *rec, const char *name) {
    json_t *v = json_object_get(json_object_get(rec, "metrics"), name);
    return json_is_number(v) ? json_number_value(v) : NAN;
}
static double config_num(json_t *rec, const char *name) {
    json_t *v = json_object_get(json_object_get(rec, "config"), name);
    return json_is_number(v) ? json_number_value(v) : NAN;
}
static const char *str(json_t *o, const char *name) {
    json_t *v = json_object_get(o, name);
    return json_is_string(v) ? json_string_value(v) : "";
}

static int add_check(sim_ctx_t *x, const char *backend, const char *what, json_t *src, double model, double measured,
                     attn_err_t *err) {
    attn_record_t *r = results_add(&x->run, "simulate", backend, NULL);
    if (!r)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory recording a check");
    snprintf(r->transport, sizeof r->transport, "%s", str(src, "transport"));
    json_t *ranks = json_object_get(src, "ranks");
    r->ranks = json_is_integer(ranks) ? (int)json_integer_value(ranks) : 1;
    record_extra_str(r, "check", what);
    double rel = fabs(model - measured) / measured;
    record_metric(r, "model_s", model, "s");
    record_metric(r, "measured_s", measured, "s");
    record_metric(r, "rel_err", rel, "1");
    record_constants(r, &x->pr, &x->links);
    if (!(rel <= SIM_CHECK_TOL))
        record_set_status(r, REC_FAIL, "model %.4g s vs measured %.4g s: %.1f%% off (limit %.0f%%)", model, measured,
                          100 * rel, 100 * SIM_CHECK_TOL);
    printf("check %-8s %-9s %-6s P=%-3d model %10.4g s  measured %10.4g s  %+6.1f%%  %s\n", backend, what,
           str(src, "transport"), r->ranks, model, measured, 100 * (model - measured) / measured,
           rel <= SIM_CHECK_TOL ? "ok" : "OFF");
    return ATTN_OK;
}

/* A distributed throughput record: its critical path against the model's compute (the profile),
 * and under mpi its wall time against the model's time (profile and links). */
static int check_throughput(sim_ctx_t *x, json_t *rec, attn_err_t *err) {
    sim_scheme_t s;
    const char *be = str(rec, "backend");
    double cp = metric(rec, "critical_path_s"), wall = metric(rec, "wall_s");
    if (!sim_scheme_parse(be, &s) || strcmp(str(rec, "status"), "pass") || !(cp > 0))
        return ATTN_OK;
    attn_mask_t mask = ATTN_MASK_NONE;
    mask_parse(str(json_object_get(rec, "config"), "mask"), &mask);
    sim_shape_t sh = {(int64_t)config_num(rec, "batch"), (int64_t)config_num(rec, "heads"),
                      (int64_t)config_num(rec, "kv_heads"), (int64_t)config_num(rec, "head_dim"),
                      (int64_t)config_num(rec, "seq_len_k"), mask, (int64_t)config_num(rec, "window"), 0, 0};
    if (config_num(rec, "seq_len_q") != (double)sh.n) /* the model has n_q = n_k */
        return ATTN_OK;
    sim_result_t res;
    sim_run(s, &sh, (int64_t)json_integer_value(json_object_get(rec, "ranks")), &x->pr, &x->links, &res);
    if (!res.ok)
        return ATTN_OK;
    ATTN_TRY(add_check(x, be, "compute", rec, res.compute_s, cp, err));
    if (!strcmp(str(rec, "transport"), "mpi") && wall > 0)
        ATTN_TRY(add_check(x, be, "wall", rec, res.time_s, wall, err));
    return ATTN_OK;
}

/* comm records: each size's measured time against the links under test — --links when given
 * (check "link": it should be another run than this file), else the tables of this same file
 * (check "link-self": the interpolation only, not a validation). Ping-pong: one way; all-to-all:
 * sim_alltoall_s. */
static int check_comm(sim_ctx_t *x, const char *path, json_t *root, attn_err_t *err) {
    sim_links_t fit, keep = x->links;
    int self = !x->c.sim_links[0];
    if (self) {
        ATTN_TRY(sim_links_load(path, &fit, err));
        x->links = fit;
    }
    const char *what = self ? "link-self" : "link";
    json_t *rec;
    size_t i;
    int rc = ATTN_OK;
    json_array_foreach(json_object_get(root, "records"), i, rec) {
        double size = metric(rec, "message_bytes");
        if (rc != ATTN_OK || strcmp(str(rec, "task"), "comm") || strcmp(str(rec, "status"), "pass"))
            continue;
        if (!strcmp(str(rec, "backend"), "pingpong"))
            rc = add_check(x, "pingpong", what, rec, sim_message_s(&x->links.intra, size), metric(rec, "latency_s"), err);
        else if (!strcmp(str(rec, "backend"), "alltoall"))
            rc = add_check(x, "alltoall", what, rec,
                           sim_alltoall_s(&x->links, json_integer_value(json_object_get(rec, "ranks")), size),
                           metric(rec, "time_s"), err);
        else
            continue;
        if (rc == ATTN_OK) /* the size belongs in the record of its check */
            record_extra_num(&x->run.records[x->run.n_records - 1], "message_bytes", size);
    }
    x->links = keep;
    return rc;
}

static int check_file(sim_ctx_t *x, const char *path, attn_err_t *err) {
    json_t *root, *rec;
    ATTN_TRY(results_read(path, &root, err));
    size_t i;
    int rc = ATTN_OK, comm = 0;
    json_array_foreach(json_object_get(root, "records"), i, rec) {
        if (!strcmp(str(rec, "task"), "throughput") && rc == ATTN_OK)
            rc = check_throughput(x, rec, err);
        comm |= !strcmp(str(rec, "task"), "comm");
    }
    if (rc == ATTN_OK && comm)
        rc = check_comm(x, path, root, err);
    json_decref(root);
    return rc;
}

/* ---- output ---------------------------------------------------------------------------------- */

static double rec_metric(const attn_record_t *r, const char *name) {
    for (int i = 0; i < r->n_metrics; i++)
        if (!strcmp(r->metrics[i].name, name))
            return r->metrics[i].value;
    return NAN;
}

static void print_table(const sim_ctx_t *x, FILE *f) {
    fprintf(f, "simulate: profile %s (%s), links %s (%s), %.3g GiB per device\n", x->pr.name, x->pr.source,
            x->links.name, x->links.source, x->pr.memory_bytes / 1073741824.0);
    fprintf(f, "%-8s %-7s %7s %11s %11s %11s %11s %11s %10s %4s\n", "scheme", "mask", "P", "n", "time", "compute",
            "comm", "exposed", "memory", "fits");
    fprintf(f, "%-8s %-7s %7s %11s %11s %11s %11s %11s %10s %4s\n", "", "", "", "tokens", "s", "s", "s", "s", "GiB", "");
    for (int k = 0; k < x->run.n_records; k++) {
        const attn_record_t *r = &x->run.records[k];
        if (r->n_extra && !strcmp(r->extra[0].key, "check"))
            continue;
        fprintf(f, "%-8s %-7s %7d %11lld ", r->backend, mask_name(r->config.mask), r->ranks, (long long)r->config.n_k);
        if (r->status != REC_PASS) {
            fprintf(f, "%s: %s\n", status_name(r->status), r->reason);
            continue;
        }
        fprintf(f, "%11.4g %11.4g %11.4g %11.4g %10.4g %4s\n", rec_metric(r, "time_s"), rec_metric(r, "compute_s"),
                rec_metric(r, "comm_s"), rec_metric(r, "exposed_comm_s"), rec_metric(r, "memory_bytes") / 1073741824.0,
                rec_metric(r, "fits") > 0 ? "yes" : "no");
    }
}

/* ---- the subcommand -------------------------------------------------------------------------- */

static int sim_setup(sim_ctx_t *x, attn_err_t *err) {
    if (x->c.sim_profile[0]) {
        ATTN_TRY(sim_profile_load(x->c.sim_profile, &x->pr, err));
    } else {
        const int64_t krows[] = {256, 1024, 4096, 16384, 65536};
        fprintf(stderr, "simulate: measuring the tile engine against 256 … 65536 keys (d = %lld)\n",
                (long long)x->c.s.head_dim);
        ATTN_TRY(sim_profile_measure(x->c.s.head_dim, krows, 5, &x->pr, err));
    }
    if (x->c.sim_links[0])
        return sim_links_load(x->c.sim_links, &x->links, err);
    sim_links_default(&x->links);
    return ATTN_OK;
}

static int sim_main(sim_ctx_t *x, char **files, int nf, int argc, char **argv, attn_err_t *err) {
    const attn_opts_t *o = &x->c.s;
    if (o->kv_heads > o->heads || o->heads % o->kv_heads)
        return attn_fail(err, ATTN_EUSAGE, "--heads %lld is not a multiple of --kv-heads %lld", (long long)o->heads,
                         (long long)o->kv_heads);
    ATTN_TRY(outfile_check_dir(o->out_dir, err));
    ATTN_TRY(sim_setup(x, err));
    ATTN_TRY(results_run_init(&x->run, argc, argv, 0, 1, err));
    for (int si = 0; si < x->c.n_sim_schemes; si++)
        for (int mi = 0; mi < o->n_masks; mi++)
            for (int pi = 0; pi < x->c.n_sim_ranks; pi++)
                for (int ni = 0; ni < o->n_seq_len; ni++) {
                    sim_shape_t sh = {o->batch, o->heads, o->kv_heads, o->head_dim, o->seq_len[ni], o->masks[mi],
                                      o->window, 0, 0};
                    ATTN_TRY(add_case(x, (sim_scheme_t)x->c.sim_schemes[si], &sh, x->c.sim_ranks[pi], err));
                }
    print_table(x, stdout);
    for (int i = 0; i < nf; i++)
        ATTN_TRY(check_file(x, files[i], err));
    fflush(stdout);
    ATTN_TRY(results_write(&x->run, o->out_dir, err));
    fprintf(stderr, "wrote %s/%s.json and .csv\n", o->out_dir, x->run.run_id);
    return ATTN_OK;
}

int cli_simulate(int argc, char **argv, attn_err_t *err) {
    if (opts_wants_help(argc, argv)) {
        opts_print_help(stdout, CMD_SIMULATE, sim_usage);
        return ATTN_OK;
    }
    sim_ctx_t *x = calloc(1, sizeof *x);
    char **files = calloc((size_t)argc + 1, sizeof *files);
    int nf = 0, rc = x && files ? ATTN_OK : attn_fail(err, ATTN_ERUNTIME, "out of memory");
    if (rc == ATTN_OK) {
        opts_init(&x->c, CMD_SIMULATE);
        rc = opts_parse_argv(&x->c, CMD_SIMULATE, argc, argv, files, &nf, err);
    }
    for (int i = 0; rc == ATTN_OK && i < nf; i++) { /* every file readable before anything runs */
        json_t *root;
        rc = results_read(files[i], &root, err);
        if (rc == ATTN_OK)
            json_decref(root);
    }
    if (rc == ATTN_OK)
        rc = sim_main(x, files, nf, argc, argv, err);
    if (x)
        results_run_free(&x->run);
    free(x), free(files);
    return rc;
}
