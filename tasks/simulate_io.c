/* simulate_io.c — where simulate's constants come from: a profile or links JSON file, a links
 * fit to an `attnbench comm` results file, the blockwise tile measured here and now, or the
 * named defaults. Formats: docs/simulate.md. */
#include "tasks/simulate_io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/memory.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/results_read.h"
#include "core/timing.h"
#include "impls/cpu/tile_engine.h"

static int num_at(json_t *o, const char *key, double *out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v))
        return 0;
    *out = json_number_value(v);
    return 1;
}

static void str_at(json_t *o, const char *key, char *out, size_t cap, const char *fallback) {
    json_t *v = json_object_get(o, key);
    snprintf(out, cap, "%s", json_is_string(v) ? json_string_value(v) : fallback);
}

static int load_json(const char *path, json_t **root, attn_err_t *err) {
    json_error_t je;
    *root = json_load_file(path, 0, &je);
    if (!*root)
        return attn_fail(err, ATTN_EUSAGE, "%s: %s (line %d)", path, je.text, je.line);
    if (!json_is_object(*root)) {
        json_decref(*root);
        return attn_fail(err, ATTN_EUSAGE, "%s: not a JSON object", path);
    }
    return ATTN_OK;
}

int sim_profile_load(const char *path, sim_profile_t *pr, attn_err_t *err) {
    json_t *root;
    ATTN_TRY(load_json(path, &root, err));
    memset(pr, 0, sizeof *pr);
    str_at(root, "name", pr->name, sizeof pr->name, path);
    str_at(root, "source", pr->source, sizeof pr->source, "file");
    str_at(root, "device", pr->device, sizeof pr->device, "?");
    json_t *pts = json_object_get(root, "points");
    int rc = ATTN_OK;
    if (!num_at(root, "elem_bytes", &pr->elem_bytes) || !(pr->elem_bytes > 0) ||
        !num_at(root, "memory_bytes", &pr->memory_bytes) || !(pr->memory_bytes > 0))
        rc = attn_fail(err, ATTN_EUSAGE, "%s: needs positive numbers elem_bytes and memory_bytes", path);
    else if (!json_is_array(pts) || json_array_size(pts) < 1 || json_array_size(pts) > SIM_MAX_POINTS)
        rc = attn_fail(err, ATTN_EUSAGE, "%s: points must be 1..%d [rows, flops_per_s] pairs", path, SIM_MAX_POINTS);
    for (size_t i = 0; rc == ATTN_OK && i < json_array_size(pts); i++) {
        json_t *p = json_array_get(pts, i);
        json_t *a = json_array_get(p, 0), *b = json_array_get(p, 1);
        double rows = json_is_number(a) ? json_number_value(a) : 0, f = json_is_number(b) ? json_number_value(b) : 0;
        if (!json_is_array(p) || json_array_size(p) != 2 || !(rows >= 1) || !(f > 0) || (i && rows <= pr->rows[i - 1]))
            rc = attn_fail(err, ATTN_EUSAGE, "%s: points[%zu] is not [rows, flops_per_s] with rows ≥ 1 rising, flops > 0",
                           path, i);
        pr->rows[i] = rows, pr->flops_per_s[i] = f, pr->n_points = (int)i + 1;
    }
    json_decref(root);
    return rc;
}

static int tier_load(const char *path, json_t *root, const char *key, sim_tier_t *t, attn_err_t *err) {
    json_t *o = json_object_get(root, key);
    if (!json_is_object(o) || !num_at(o, "latency_s", &t->latency_s) || !num_at(o, "bandwidth_Bps", &t->bandwidth_Bps) ||
        !(t->latency_s >= 0) || !(t->bandwidth_Bps > 0))
        return attn_fail(err, ATTN_EUSAGE, "%s: %s must be {\"latency_s\": ≥ 0, \"bandwidth_Bps\": > 0}", path, key);
    return ATTN_OK;
}

/* Ping-pong records of one comm results file: latency at the smallest message, bandwidth at the largest. */
static int links_fit(const char *path, json_t *root, sim_links_t *l, attn_err_t *err) {
    json_t *recs = json_object_get(root, "records"), *r;
    size_t i;
    double lo = INFINITY, hi = 0;
    char transport[16] = "";
    json_array_foreach(recs, i, r) {
        json_t *m = json_object_get(r, "metrics");
        double size, lat, bw;
        if (strcmp(json_string_value(json_object_get(r, "task")) ?: "", "comm") ||
            strcmp(json_string_value(json_object_get(r, "backend")) ?: "", "pingpong") || !num_at(m, "message_bytes", &size) ||
            !num_at(m, "latency_s", &lat) || !num_at(m, "p2p_gbps", &bw))
            continue;
        str_at(r, "transport", transport, sizeof transport, "?");
        if (size < lo)
            lo = size, l->intra.latency_s = lat;
        if (size > hi)
            hi = size, l->intra.bandwidth_Bps = bw * 1e9;
    }
    if (!(hi > 0))
        return attn_fail(err, ATTN_EUSAGE, "%s: no passing comm ping-pong records to fit the links to", path);
    snprintf(l->name, sizeof l->name, "fit to %.40s (%s)", path, transport);
    snprintf(l->source, sizeof l->source, "measured");
    l->node_size = INT64_MAX; /* one tier: every rank the transport measured */
    l->inter = l->intra;
    return ATTN_OK;
}

int sim_links_load(const char *path, sim_links_t *l, attn_err_t *err) {
    json_t *root;
    ATTN_TRY(load_json(path, &root, err));
    memset(l, 0, sizeof *l);
    int rc;
    if (json_object_get(root, "schema")) {
        json_t *checked = NULL; /* a results file must pass the reader first */
        rc = results_read(path, &checked, err);
        json_decref(checked);
        rc = rc == ATTN_OK ? links_fit(path, root, l, err) : rc;
    } else {
        double node = 0;
        str_at(root, "name", l->name, sizeof l->name, path);
        str_at(root, "source", l->source, sizeof l->source, "file");
        rc = num_at(root, "node_size", &node) && node >= 1 && node == floor(node)
                 ? ATTN_OK
                 : attn_fail(err, ATTN_EUSAGE, "%s: node_size must be a positive integer", path);
        l->node_size = (int64_t)node;
        if (rc == ATTN_OK)
            rc = tier_load(path, root, "intra", &l->intra, err);
        if (rc == ATTN_OK)
            rc = tier_load(path, root, "inter", &l->inter, err);
    }
    json_decref(root);
    return rc;
}

void sim_links_default(sim_links_t *l) {
    *l = (sim_links_t){.name = "nominal host links", .source = "assumed", .node_size = INT64_MAX,
                       .intra = {SIM_DEFAULT_LATENCY_S, SIM_DEFAULT_BANDWIDTH_BPS},
                       .inter = {SIM_DEFAULT_LATENCY_S, SIM_DEFAULT_BANDWIDTH_BPS}};
}

/* One rank's blockwise tile, single-threaded (as a ring step runs it), rows × rows, no mask, one
 * head of dimension d; thread CPU time, as the backends time a rank's compute. */
int sim_profile_measure(int64_t d, const int64_t *rows, int n_rows, sim_profile_t *pr, attn_err_t *err) {
    memset(pr, 0, sizeof *pr);
    snprintf(pr->name, sizeof pr->name, "blockwise tile, f32, d=%lld, 1 thread", (long long)d);
    snprintf(pr->source, sizeof pr->source, "measured");
    snprintf(pr->device, sizeof pr->device, "cpu");
    pr->elem_bytes = 4;
    pr->memory_bytes = (double)mem_available_bytes();
    int64_t big = rows[n_rows - 1];
    size_t el = (size_t)(big * d);
    float *buf = attn_alloc((4 * el + (size_t)big) * sizeof(float), err, "simulate profile tiles");
    if (!buf)
        return ATTN_ERUNTIME;
    for (size_t i = 0; i < 3 * el; i++)
        buf[i] = rng_value(1, 0, i);
    int rc = ATTN_OK;
    parallel_blas_single_begin(); /* a rank's BLAS runs on its own thread: so must this one's */
    for (int i = 0; i < n_rows && rc == ATTN_OK; i++) {
        int64_t n = rows[i];
        attn_problem_t p = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = d, .n_q = n, .n_k = n,
                            .mask = ATTN_MASK_NONE, .dtype = ATTN_F32};
        tile_io_t io = {buf, buf + el, buf + 2 * el, buf + 3 * el, buf + 4 * el, n, n};
        double best = INFINITY;
        for (int rep = 0; rep < 3 && rc == ATTN_OK; rep++) { /* the fastest of three: the machine's, not the neighbours' */
            double t0 = time_thread_cpu_s();
            rc = tile_attend_f32(&p, 1, (attn_span_t){0, 1}, n, (attn_span_t){0, 1}, n, &io, TILE_SCAN_ALL, NULL, err);
            best = fmin(best, time_thread_cpu_s() - t0);
        }
        pr->rows[i] = (double)n, pr->flops_per_s[i] = 4.0 * (double)d * (double)n * (double)n / fmax(best, 1e-9);
        pr->n_points = i + 1;
    }
    parallel_blas_single_end();
    attn_free(buf);
    return rc;
}
