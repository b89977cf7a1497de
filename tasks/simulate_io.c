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
#include "impls/parallel/ring.h"

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

/* [[x, seconds], ...] with x rising and both positive, into xs / ys. */
static int pairs_load(const char *path, const char *what, json_t *arr, int *n, double *xs, double *ys, attn_err_t *err) {
    if (!json_is_array(arr) || json_array_size(arr) < 1 || json_array_size(arr) > SIM_MAX_POINTS)
        return attn_fail(err, ATTN_EUSAGE, "%s: %s must be 1..%d [x, seconds] pairs", path, what, SIM_MAX_POINTS);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *p = json_array_get(arr, i), *a = json_array_get(p, 0), *b = json_array_get(p, 1);
        double x = json_is_number(a) ? json_number_value(a) : 0, y = json_is_number(b) ? json_number_value(b) : 0;
        if (!json_is_array(p) || json_array_size(p) != 2 || !(x > 0) || !(y > 0) || (i && x <= xs[i - 1]))
            return attn_fail(err, ATTN_EUSAGE, "%s: %s[%zu] is not [x, seconds] with x > 0 rising, seconds > 0", path,
                             what, i);
        xs[i] = x, ys[i] = y, *n = (int)i + 1;
    }
    return ATTN_OK;
}

/* "tiles": {"bq", "bk", "head_dim", "part_s", "merge_row_s", "call_s", "points": [[krows, full_s], ...]} */
static int tiles_load(const char *path, json_t *o, sim_tiles_t *t, attn_err_t *err) {
    double bq = 0, bk = 0, d = 0;
    if (!json_is_object(o) || !num_at(o, "bq", &bq) || !num_at(o, "bk", &bk) || !num_at(o, "head_dim", &d) ||
        !num_at(o, "part_s", &t->part_s) || !num_at(o, "merge_row_s", &t->merge_row_s) ||
        !num_at(o, "call_s", &t->call_s) || !(bq >= 1) || !(bk >= 1) || !(d >= 1) || !(t->part_s >= 0) ||
        !(t->merge_row_s >= 0) || !(t->call_s >= 0))
        return attn_fail(err, ATTN_EUSAGE,
                         "%s: tiles needs bq, bk, head_dim ≥ 1 and part_s, merge_row_s, call_s ≥ 0 (seconds)", path);
    t->bq = (int64_t)bq, t->bk = (int64_t)bk, t->head_dim = (int64_t)d;
    return pairs_load(path, "tiles.points", json_object_get(o, "points"), &t->n, t->krows, t->full_s, err);
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
    if (rc == ATTN_OK && json_object_get(root, "tiles"))
        rc = tiles_load(path, json_object_get(root, "tiles"), &pr->tiles, err);
    json_decref(root);
    return rc;
}

static int tier_load(const char *path, json_t *root, const char *key, sim_tier_t *t, attn_err_t *err) {
    json_t *o = json_object_get(root, key);
    if (!json_is_object(o) || !num_at(o, "latency_s", &t->latency_s) || !num_at(o, "bandwidth_Bps", &t->bandwidth_Bps) ||
        !(t->latency_s >= 0) || !(t->bandwidth_Bps > 0))
        return attn_fail(err, ATTN_EUSAGE, "%s: %s must be {\"latency_s\": ≥ 0, \"bandwidth_Bps\": > 0}", path, key);
    /* optional measured tables: "oneway": [[bytes, s], ...]; "exchange": [[bytes per peer, s], ...]
     * among "exchange_ranks" ranks */
    if (json_object_get(o, "oneway"))
        ATTN_TRY(pairs_load(path, "oneway", json_object_get(o, "oneway"), &t->oneway.n, t->oneway.bytes,
                            t->oneway.seconds, err));
    if (json_object_get(o, "exchange")) {
        double g = 0;
        if (!num_at(o, "exchange_ranks", &g) || !(g >= 2) || g != floor(g))
            return attn_fail(err, ATTN_EUSAGE, "%s: %s.exchange needs an integer exchange_ranks ≥ 2", path, key);
        t->exchange_ranks = (int64_t)g;
        ATTN_TRY(pairs_load(path, "exchange", json_object_get(o, "exchange"), &t->exchange.n, t->exchange.bytes,
                            t->exchange.seconds, err));
    }
    return ATTN_OK;
}

/* Adds (bytes, seconds) to a table kept rising in bytes; a repeated size keeps the first. */
static void table_add(sim_table_t *t, double bytes, double s) {
    int i = t->n;
    if (i >= SIM_MAX_POINTS || !(bytes > 0) || !(s > 0))
        return;
    while (i > 0 && t->bytes[i - 1] > bytes)
        i--;
    if (i > 0 && t->bytes[i - 1] == bytes)
        return;
    memmove(t->bytes + i + 1, t->bytes + i, (size_t)(t->n - i) * sizeof(double));
    memmove(t->seconds + i + 1, t->seconds + i, (size_t)(t->n - i) * sizeof(double));
    t->bytes[i] = bytes, t->seconds[i] = s, t->n++;
}

/* One comm results file as one measured tier: the ping-pong one-way time per size (oneway) and
 * the all-to-all time per size (exchange, at the file's rank count); latency and bandwidth
 * summarise the ends (smallest message's time, largest message's bytes / time). */
static int links_fit(const char *path, json_t *root, sim_links_t *l, attn_err_t *err) {
    json_t *recs = json_object_get(root, "records"), *r;
    size_t i;
    char transport[16] = "";
    sim_tier_t *t = &l->intra;
    json_array_foreach(recs, i, r) {
        json_t *m = json_object_get(r, "metrics");
        const char *be = json_string_value(json_object_get(r, "backend")) ?: "";
        double size, sec;
        if (strcmp(json_string_value(json_object_get(r, "task")) ?: "", "comm") ||
            strcmp(json_string_value(json_object_get(r, "status")) ?: "", "pass") || !num_at(m, "message_bytes", &size))
            continue;
        str_at(r, "transport", transport, sizeof transport, "?");
        if (!strcmp(be, "pingpong") && num_at(m, "latency_s", &sec))
            table_add(&t->oneway, size, sec);
        else if (!strcmp(be, "alltoall") && num_at(m, "time_s", &sec)) {
            json_t *ranks = json_object_get(r, "ranks");
            t->exchange_ranks = json_is_integer(ranks) ? json_integer_value(ranks) : 0;
            table_add(&t->exchange, size, sec);
        }
    }
    if (!t->oneway.n)
        return attn_fail(err, ATTN_EUSAGE, "%s: no passing comm ping-pong records to fit the links to", path);
    if (t->exchange_ranks < 2)
        t->exchange.n = 0;
    t->latency_s = t->oneway.seconds[0];
    t->bandwidth_Bps = t->oneway.bytes[t->oneway.n - 1] / t->oneway.seconds[t->oneway.n - 1];
    snprintf(l->name, sizeof l->name, "table from %.40s (%s)", path, transport);
    snprintf(l->source, sizeof l->source, "measured");
    l->node_size = INT64_MAX; /* one tier: every rank the transport measured */
    l->inter = l->intra;
    return ATTN_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Per size, the median over the files' tables (a size missing from a file is left out of it). */
static void table_median(sim_table_t *out, const sim_table_t *runs, int n_runs) {
    *out = runs[0];
    for (int i = 0; i < out->n; i++) {
        double v[SIM_MAX_LINK_FILES];
        int k = 0;
        for (int f = 0; f < n_runs; f++)
            for (int j = 0; j < runs[f].n; j++)
                if (runs[f].bytes[j] == out->bytes[i])
                    v[k++] = runs[f].seconds[j];
        qsort(v, (size_t)k, sizeof *v, cmp_double);
        out->seconds[i] = k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
    }
}

/* Several comm results files (comma-separated): one tier, per size the median of their times. */
static int links_fit_many(const char *list, sim_links_t *l, attn_err_t *err) {
    sim_table_t one[SIM_MAX_LINK_FILES], ex[SIM_MAX_LINK_FILES];
    char buf[1024], *save = NULL;
    snprintf(buf, sizeof buf, "%s", list);
    int n = 0;
    for (char *f = strtok_r(buf, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        if (n == SIM_MAX_LINK_FILES)
            return attn_fail(err, ATTN_EUSAGE, "--links: at most %d comm files", SIM_MAX_LINK_FILES);
        json_t *root;
        ATTN_TRY(load_json(f, &root, err));
        json_t *checked = NULL;
        int rc = results_read(f, &checked, err);
        json_decref(checked);
        sim_links_t one_l = {0};
        rc = rc == ATTN_OK ? links_fit(f, root, &one_l, err) : rc;
        json_decref(root);
        ATTN_TRY(rc);
        if (n && one_l.intra.exchange_ranks != l->intra.exchange_ranks)
            return attn_fail(err, ATTN_EUSAGE, "--links: %s has all-to-all records at another rank count", f);
        if (!n)
            *l = one_l;
        one[n] = one_l.intra.oneway, ex[n++] = one_l.intra.exchange;
    }
    if (!n)
        return attn_fail(err, ATTN_EUSAGE, "--links '%s': no file named", list);
    table_median(&l->intra.oneway, one, n);
    if (l->intra.exchange.n)
        table_median(&l->intra.exchange, ex, n);
    sim_tier_t *t = &l->intra;
    t->latency_s = t->oneway.seconds[0];
    t->bandwidth_Bps = t->oneway.bytes[t->oneway.n - 1] / t->oneway.seconds[t->oneway.n - 1];
    if (n > 1)
        snprintf(l->name, sizeof l->name, "median of %d comm files", n);
    l->inter = l->intra;
    return ATTN_OK;
}

int sim_links_load(const char *path, sim_links_t *l, attn_err_t *err) {
    if (strchr(path, ','))
        return links_fit_many(path, l, err);
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

/* The median of `reps` thread-CPU timings of one tile_attend_f32 call (a ring rank's compute is
 * thread CPU time): the machine's typical cost, as the single-shot runs it is checked against. */
static double time_call(const attn_problem_t *p, int64_t nq, int64_t nk, const tile_io_t *io, int reps, int *rc,
                        attn_err_t *err) {
    double t[9];
    reps = reps > 9 ? 9 : reps;
    for (int i = 0; i < reps && *rc == ATTN_OK; i++) {
        double t0 = time_thread_cpu_s();
        *rc = tile_attend_f32(p, 1, (attn_span_t){0, 1}, nq, (attn_span_t){0, 1}, nk, io, TILE_SCAN_ALL, NULL, err);
        t[i] = time_thread_cpu_s() - t0;
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1], t[j - 1] = x;
        }
    }
    return t[reps / 2];
}

/* The tile engine's costs on this host, single-threaded, f32, one head of dimension d:
 * - full micro-tiles: qrows query rows against k keys, no mask, at each of krows (the pieces a
 *   plan uses run from a few hundred keys to the whole sequence);
 * - the call: one row against one key;
 * - a partially masked micro-tile: a window of bq keys, where every computed micro-tile is
 *   partial; its cost beyond a full one;
 * - the merge: ring_merge_rows over rows with both sides finite (the exp/log path). */
int sim_profile_measure(int64_t d, const int64_t *krows, int n_rows, sim_profile_t *pr, attn_err_t *err) {
    memset(pr, 0, sizeof *pr);
    snprintf(pr->name, sizeof pr->name, "blockwise tile engine, f32, d=%lld, 1 thread", (long long)d);
    snprintf(pr->source, sizeof pr->source, "measured");
    snprintf(pr->device, sizeof pr->device, "cpu");
    pr->elem_bytes = 4;
    pr->memory_bytes = (double)mem_available_bytes();
    attn_problem_t p = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = d, .mask = ATTN_MASK_NONE, .dtype = ATTN_F32};
    sim_tiles_t *t = &pr->tiles;
    t->bq = tile_block_q(&p), t->bk = tile_block_k(&p), t->head_dim = d;
    const int64_t qrows = 4 * t->bq, wrows = 4096; /* full-tile runs; the window and merge runs */
    int64_t kbig = krows[n_rows - 1] > wrows ? krows[n_rows - 1] : wrows;
    size_t qn = (size_t)(wrows * d), kn = (size_t)(kbig * d);
    float *buf = attn_alloc((3 * qn + 2 * kn + 3 * (size_t)wrows) * sizeof(float), err, "simulate profile tiles");
    if (!buf)
        return ATTN_ERUNTIME;
    float *q = buf, *o = q + qn, *o2 = o + qn, *k = o2 + qn, *v = k + kn, *lse = v + kn, *lse2 = lse + wrows,
          *lacc = lse2 + wrows;
    for (size_t i = 0; i < qn; i++)
        q[i] = rng_value(1, 0, i), o2[i] = rng_value(1, 3, i);
    for (size_t i = 0; i < kn; i++)
        k[i] = rng_value(1, 1, i), v[i] = rng_value(1, 2, i);
    int rc = ATTN_OK;
    parallel_blas_single_begin(); /* a rank's BLAS runs on its own thread: so must this one's */
    tile_io_t io1 = {q, k, v, o, lse, 1, 1};
    t->call_s = time_call(&p, 1, 1, &io1, 9, &rc, err);
    for (int i = 0; i < n_rows && rc == ATTN_OK; i++) {
        int64_t nk = krows[i];
        tile_io_t io = {q, k, v, o, lse, qrows, nk};
        double s = time_call(&p, qrows, nk, &io, 3, &rc, err), tiles = (double)(4 * ((nk + t->bk - 1) / t->bk));
        t->krows[i] = pr->rows[i] = (double)nk;
        t->full_s[i] = fmax(s - t->call_s, 1e-12) / tiles;
        pr->flops_per_s[i] = 4.0 * (double)(d * t->bq * t->bk) / t->full_s[i];
        t->n = pr->n_points = i + 1;
    }
    attn_problem_t pw = p;
    pw.mask = ATTN_MASK_WINDOW, pw.window = t->bq;
    tile_io_t iow = {q, k, v, o, lse, wrows, wrows};
    double full, part, sw = time_call(&pw, wrows, wrows, &iow, 3, &rc, err);
    sim_pair_tiles(ATTN_MASK_WINDOW, wrows, wrows, 0, pw.window, t->bq, t->bk, &full, &part);
    t->part_s = rc == ATTN_OK ? fmax(0, (sw - t->call_s - (full + part) * t->full_s[0]) / part) : 0;
    for (int64_t i = 0; i < wrows; i++)
        lse2[i] = rng_value(1, 4, (uint64_t)i), lacc[i] = rng_value(1, 5, (uint64_t)i);
    double best[5];
    for (int r = 0; r < 5 && rc == ATTN_OK; r++) { /* the merge keeps acc finite: every run takes the same path */
        double t0 = time_thread_cpu_s();
        ring_merge_rows(&p, ATTN_MERGE_F32, wrows, 0, wrows, o2, lacc, o, lse2);
        best[r] = time_thread_cpu_s() - t0;
    }
    double mrg = fmin(fmin(best[0], best[1]), fmin(fmin(best[2], best[3]), best[4]));
    t->merge_row_s = rc == ATTN_OK ? mrg / (double)wrows : 0;
    parallel_blas_single_end();
    attn_free(buf);
    return rc;
}
