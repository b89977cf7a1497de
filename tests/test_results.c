/* test_results.c — round trip of results.c: builds a three-record run, writes it, reads the JSON
 * back with jansson and the CSV with libcsv, checks that failed writes leave no files, and that
 * the terminal table has its units row. Usage: test_results <scratch-dir> [--show] (--show
 * prints the table). Exit status 1 on any failure. */
#include <csv.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/results.h"
#include "tests/check.h"



static const char *SKIP_REASON = "needs AVX-512, \"avx512f\" absent, skipped";

static void build_run(attn_run_t *run, attn_err_t *err) {
    char *argv[] = {"attnbench", "throughput", "--out", "dir with space"};
    if (results_run_init(run, 4, argv, 12345, 4, err) != ATTN_OK)
        return;
    attn_problem_t p = {.batch = 1, .heads = 8, .kv_heads = 8, .head_dim = 64, .n_q = 1024, .n_k = 1024,
                        .mask = ATTN_MASK_CAUSAL, .dtype = ATTN_F32};
    attn_record_t *r = results_add(run, "throughput", "naive", &p);
    double t[] = {3.0, 1.0, 2.0, 10.0};
    record_timed(r, "time_ms", t, 4, "ms");
    record_metric(r, "gflops", 0.1 + 0.2, "GFLOP/s"); /* 0.30000000000000004: needs 17 digits */
    record_extra_num(r, "repeats", 4);
    record_extra_num(r, "warmup", 1);
    record_extra_str(r, "json_only", "x"); /* not a CSV column */

    r = results_add(run, "throughput", "ring", &p);
    snprintf(r->local_backend, sizeof r->local_backend, "tiled");
    snprintf(r->transport, sizeof r->transport, "shm");
    snprintf(r->layout, sizeof r->layout, "striped");
    r->ranks = 4;
    double per[] = {1.5, 1.25, 1.75, 2.0};
    record_per_rank(r, "compute_ms", "ms", per, 4);
    record_metric(r, "max_abs_err", INFINITY, "");
    record_extra_str(r, "mode", "striped");
    record_extra_num(r, "depth", 0.25);

    p.mask = ATTN_MASK_WINDOW;
    p.window = 128;
    r = results_add(run, "throughput", "avx512", &p);
    record_set_status(r, REC_SKIPPED, "%s", SKIP_REASON);
}

/* ---- JSON -------------------------------------------------------------------------------- */

static double jnum_at(json_t *root, int rec, const char *obj, const char *key) {
    json_t *v = json_object_get(json_object_get(json_array_get(json_object_get(root, "records"), rec), obj), key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static void check_json(const char *path, const attn_run_t *run) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!check(root != NULL, "json parses", "expected valid JSON in %s, got %s (line %d)", path, jerr.text,
               jerr.line))
        return;
    const char *schema = json_string_value(json_object_get(root, "schema"));
    check(schema && strcmp(schema, "attnbench.results/2") == 0, "json schema", "expected attnbench.results/2 got %s",
          schema ? schema : "(missing)");
    json_t *jrun = json_object_get(root, "run");
    static const char *keys[] = {"run_id", "started_at", "git_sha", "command_line", "seed", "host", "os",
                                 "cpu_model", "cores", "threads", "memory_bytes", "blas", "gpu_model",
                                 "gpu_driver", "cuda_version", "nccl_version", "mpi_version", "compiler",
                                 "build_type", "gpu_state"};
    int missing = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!json_object_get(jrun, keys[i]) && ++missing)
            printf("  missing run.%s\n", keys[i]);
    check(missing == 0 && json_object_size(jrun) == 20, "json run fields", "expected 20 run fields, got %zu (%d missing)",
          json_object_size(jrun), missing);
    const char *cl = json_string_value(json_object_get(jrun, "command_line"));
    check(cl && strcmp(cl, "attnbench throughput --out dir with space") == 0, "json command_line",
          "expected argv joined, got %s", cl ? cl : "(null)");
    check(json_integer_value(json_object_get(jrun, "seed")) == 12345, "json seed", "expected 12345 got %lld",
          (long long)json_integer_value(json_object_get(jrun, "seed")));
    check(json_is_null(json_object_get(jrun, "gpu_model")), "json gpu_model null", "expected null");
    const char *id = json_string_value(json_object_get(jrun, "run_id"));
    check(id && strcmp(id, run->run_id) == 0, "json run_id", "expected %s got %s", run->run_id, id ? id : "(null)");

    json_t *recs = json_object_get(root, "records");
    check(json_array_size(recs) == 3, "json record count", "expected 3 got %zu", json_array_size(recs));
    struct { int rec; const char *obj, *key; double want; } nums[] = {
        {0, "metrics", "gflops", 0.1 + 0.2}, {0, "metrics", "time_ms", 2.5}, {0, "metrics", "time_ms_min", 1.0},
        {0, "metrics", "time_ms_max", 10.0}, {0, "config", "repeats", 4},    {0, "config", "seq_len_k", 1024},
        {0, "config", "window", 0},          {1, "config", "depth", 0.25},   {2, "config", "window", 128},
        {1, "ranks", NULL, 4},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        double got = nums[i].key ? jnum_at(root, nums[i].rec, nums[i].obj, nums[i].key)
                                 : json_number_value(json_object_get(json_array_get(recs, nums[i].rec), nums[i].obj));
        char name[96];
        snprintf(name, sizeof name, "json record %d %s.%s exact", nums[i].rec, nums[i].obj, nums[i].key ? nums[i].key : "");
        check(got == nums[i].want, name, "expected %.17g got %.17g", nums[i].want, got);
    }
    json_t *r0 = json_array_get(recs, 0), *r1 = json_array_get(recs, 1), *r2 = json_array_get(recs, 2);
    json_t *inf = json_object_get(json_object_get(r1, "metrics"), "max_abs_err");
    check(inf && json_is_null(inf), "json non-finite is null", "expected null for INFINITY, got type %d",
          inf ? (int)json_typeof(inf) : -1);
    const char *u = json_string_value(json_object_get(json_object_get(r0, "units"), "gflops"));
    check(u && strcmp(u, "GFLOP/s") == 0, "json units", "expected GFLOP/s got %s", u ? u : "(missing)");
    for (int i = 0; i < 3; i++) { /* consumers pair units with metrics key for key */
        json_t *rec = json_array_get(recs, (size_t)i), *met = json_object_get(rec, "metrics");
        json_t *units = json_object_get(rec, "units");
        int same = json_object_size(met) == json_object_size(units);
        const char *key;
        json_t *val;
        json_object_foreach(met, key, val) {
            same &= json_object_get(units, key) != NULL;
        }
        char name[64];
        snprintf(name, sizeof name, "json record %d units match metrics", i);
        check(same, name, "expected the same keys, got %zu metrics and %zu units", json_object_size(met),
              json_object_size(units));
    }
    json_t *pr = json_object_get(json_object_get(r1, "per_rank"), "compute_ms");
    check(json_array_size(pr) == 4 && json_real_value(json_array_get(pr, 1)) == 1.25, "json per_rank",
          "expected 4 values with [1] = 1.25, got %zu values", json_array_size(pr));
    check(json_is_null(json_object_get(r0, "local_backend")) &&
              strcmp(json_string_value(json_object_get(r1, "local_backend")), "tiled") == 0,
          "json local_backend", "expected null then \"tiled\"");
    const char *reason = json_string_value(json_object_get(r2, "reason"));
    check(json_is_null(json_object_get(r0, "reason")) && reason && strcmp(reason, SKIP_REASON) == 0,
          "json reason", "expected null then %s, got %s", SKIP_REASON, reason ? reason : "(null)");
    const char *st = json_string_value(json_object_get(r2, "status"));
    check(st && strcmp(st, "skipped") == 0, "json status", "expected skipped got %s", st ? st : "(null)");
    const char *mask = json_string_value(json_object_get(json_object_get(r2, "config"), "mask"));
    check(mask && strcmp(mask, "window") == 0, "json mask name", "expected window got %s", mask ? mask : "(null)");
    const char *xo = json_string_value(json_object_get(json_object_get(r0, "config"), "json_only"));
    check(xo && strcmp(xo, "x") == 0, "json extra not in CSV set", "expected config.json_only = x");
    json_decref(root);
}

/* ---- CSV --------------------------------------------------------------------------------- */

enum { MAX_ROWS = 32, MAX_FIELDS = 40 };
typedef struct {
    char *cell[MAX_ROWS][MAX_FIELDS];
    int nfields[MAX_ROWS];
    int row, field;
} csv_doc_t;

static void on_field(void *s, size_t len, void *data) {
    csv_doc_t *d = data;
    if (d->row < MAX_ROWS && d->field < MAX_FIELDS)
        d->cell[d->row][d->field] = strndup(s ? s : "", len);
    d->field++;
}
static void on_row(int c, void *data) {
    (void)c;
    csv_doc_t *d = data;
    if (d->row < MAX_ROWS)
        d->nfields[d->row] = d->field;
    d->row++;
    d->field = 0;
}

/* Index of the first data row whose column col equals want, or -1. */
static int find_row(const csv_doc_t *d, int col, const char *want) {
    for (int r = 1; r < d->row && r < MAX_ROWS; r++)
        if (d->cell[r][col] && strcmp(d->cell[r][col], want) == 0)
            return r;
    return -1;
}
static int col_of(const char *name) {
    for (int i = 0; i < results_csv_ncolumns; i++)
        if (strcmp(results_csv_columns[i], name) == 0)
            return i;
    return 0;
}

static void check_csv(const char *path) {
    static csv_doc_t d;
    FILE *f = fopen(path, "rb");
    if (!check(f != NULL, "csv opens", "expected %s to exist", path))
        return;
    struct csv_parser p;
    csv_init(&p, CSV_STRICT | CSV_STRICT_FINI);
    char buf[4096];
    size_t n;
    int parse_ok = 1;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        parse_ok &= csv_parse(&p, buf, n, on_field, on_row, &d) == n;
    parse_ok &= csv_fini(&p, on_field, on_row, &d) == 0;
    const char *perr = csv_strerror(csv_error(&p));
    csv_free(&p);
    fclose(f);
    check(parse_ok, "csv parses strictly", "expected no libcsv error, got %s", perr);

    int header_ok = d.nfields[0] == results_csv_ncolumns;
    for (int i = 0; i < results_csv_ncolumns && header_ok; i++)
        header_ok = d.cell[0][i] && strcmp(d.cell[0][i], results_csv_columns[i]) == 0;
    check(header_ok, "csv header", "expected results_csv_columns (%d), got %d fields", results_csv_ncolumns,
          d.nfields[0]);
    int bad = 0;
    for (int r = 0; r < d.row && r < MAX_ROWS; r++)
        if (d.nfields[r] != results_csv_ncolumns && ++bad)
            printf("  row %d has %d fields\n", r, d.nfields[r]);
    check(bad == 0, "csv field counts", "expected %d fields on every row, %d rows differ", results_csv_ncolumns, bad);
    /* naive: time_ms{,_min,_max}, gflops; ring: max_abs_err + 4 ranks; avx512: one bare row. */
    check(d.row == 1 + 4 + 5 + 1, "csv row count", "expected 11 rows got %d", d.row);

    int metric = col_of("metric"), value = col_of("value");
    int r = find_row(&d, metric, "gflops");
    check(r > 0 && strtod(d.cell[r][value], NULL) == 0.1 + 0.2, "csv value exact", "expected 0.30000000000000004 got %s",
          r > 0 ? d.cell[r][value] : "(no row)");
    check(r > 0 && strcmp(d.cell[r][col_of("repeats")], "4") == 0, "csv extra column", "expected repeats=4 got %s",
          r > 0 ? d.cell[r][col_of("repeats")] : "(no row)");
    r = find_row(&d, metric, "compute_ms[2]");
    check(r > 0 && strcmp(d.cell[r][value], "1.75") == 0, "csv per-rank row", "expected compute_ms[2] = 1.75 got %s",
          r > 0 ? d.cell[r][value] : "(no row)");
    r = find_row(&d, metric, "max_abs_err");
    check(r > 0 && d.cell[r][value][0] == '\0', "csv non-finite empty", "expected empty value got %s",
          r > 0 ? d.cell[r][value] : "(no row)");
    r = find_row(&d, col_of("reason"), SKIP_REASON);
    check(r > 0 && d.cell[r][metric][0] == '\0' && strcmp(d.cell[r][col_of("status")], "skipped") == 0,
          "csv quoted reason", "expected the skipped row with reason %s", SKIP_REASON);
    for (int i = 0; i < MAX_ROWS; i++)
        for (int j = 0; j < MAX_FIELDS; j++)
            free(d.cell[i][j]);
}

/* ---- files ------------------------------------------------------------------------------- */

/* Names in dir other than . and ..; writes them space-separated into list. */
static int list_dir(const char *dir, char *list, size_t size) {
    DIR *dp = opendir(dir);
    int n = 0;
    list[0] = '\0';
    if (!dp)
        return 0;
    for (struct dirent *e; (e = readdir(dp));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            n++;
            strncat(list, e->d_name, size - strlen(list) - 2);
            strcat(list, " ");
        }
    closedir(dp);
    return n;
}

static void check_failure(const attn_run_t *run, const char *name, const char *out_dir, const char *dir_to_list,
                          int want_entries) {
    attn_err_t err = {0};
    int rc = results_write(run, out_dir, &err);
    char label[96], list[1024];
    snprintf(label, sizeof label, "write fails: %s", name);
    check(rc == ATTN_ERUNTIME && err.code == ATTN_ERUNTIME && strstr(err.msg, out_dir), label,
          "expected ATTN_ERUNTIME naming %s, got rc=%d msg=%s", out_dir, rc, err.msg);
    snprintf(label, sizeof label, "no files left: %s", name);
    int n = list_dir(dir_to_list, list, sizeof list);
    check(n == want_entries, label, "expected %d entries in %s, got %d: %s", want_entries, dir_to_list, n, list);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s <scratch-dir> [--show]\n", argv[0]);
        return 2;
    }
    attn_run_t run;
    attn_err_t err = {0};
    build_run(&run, &err);
    if (!check(err.code == ATTN_OK && run.n_records == 3, "build run", "expected 3 records, got %s", err.msg))
        return 1;

    const char *id = run.run_id; /* YYYYMMDDTHHMMSSZ-xxxxxx */
    check(strlen(id) == 23 && id[8] == 'T' && id[15] == 'Z' && id[16] == '-' && strspn(id + 17, "0123456789abcdef") == 6,
          "run_id format", "expected YYYYMMDDTHHMMSSZ-xxxxxx got %s", id);
    /* A second process started at once must get another id (same second, different pid). */
    int fds[2];
    char child_id[64] = "";
    if (pipe(fds) == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            attn_run_t other;
            attn_err_t e = {0};
            results_run_init(&other, 0, NULL, 1, 1, &e);
            ssize_t w = write(fds[1], other.run_id, strlen(other.run_id) + 1);
            _exit(w > 0 ? 0 : 1);
        }
        close(fds[1]);
        ssize_t got = read(fds[0], child_id, sizeof child_id - 1);
        (void)got;
        close(fds[0]);
        waitpid(pid, NULL, 0);
    }
    check(child_id[0] && strcmp(child_id, id) != 0, "run_id unique across processes", "expected two ids, got %s and %s",
          id, child_id);

    char dir[1024], out[1200], path[1400], list[1024];
    snprintf(dir, sizeof dir, "%s/%s", argv[1], id);
    snprintf(out, sizeof out, "%s/nested/out", dir); /* exercises mkdir -p */
    attn_err_t werr = {0};
    int rc = results_write(&run, out, &werr);
    check(rc == ATTN_OK, "results_write", "expected ATTN_OK got %d: %s", rc, werr.msg);
    int n = list_dir(out, list, sizeof list);
    check(n == 2 && !strstr(list, ".tmp"), "no temp files", "expected exactly <id>.json and <id>.csv, got %s", list);
    snprintf(path, sizeof path, "%s/%s.json", out, id);
    check_json(path, &run);
    snprintf(path, sizeof path, "%s/%s.csv", out, id);
    check_csv(path);

    check_failure(&run, "under /proc", "/proc/attnbench-nope", "/proc/attnbench-nope", 0);
    snprintf(path, sizeof path, "%s/afile", dir);
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
    snprintf(out, sizeof out, "%s/afile/sub", dir);
    check_failure(&run, "path under a regular file", out, dir, 2); /* nested/ and afile */
    /* The CSV's final name is taken by a directory: the JSON is already renamed when the CSV
     * rename fails, so this exercises the roll-back of a half-finished write. */
    snprintf(out, sizeof out, "%s/clash", dir);
    snprintf(path, sizeof path, "%s/%s.csv", out, id);
    if (mkdir(out, 0777) != 0 || mkdir(path, 0777) != 0)
        perror(path);
    check_failure(&run, "csv rename blocked", out, out, 1); /* only the blocking directory */

    f = tmpfile();
    char table[8192] = "";
    if (f) {
        results_print_table(&run, f);
        rewind(f);
        size_t len = fread(table, 1, sizeof table - 1, f);
        table[len] = '\0';
        fclose(f);
    }
    check(strstr(table, "[GFLOP/s]") && strstr(table, "[ms]"), "table units row", "expected [GFLOP/s] and [ms] in:\n%s",
          table);
    check(strstr(table, "note: avx512 n_k=1024: skipped: needs AVX-512") != NULL, "table note", "expected a note line in:\n%s",
          table);
    check(!strstr(table, "time_ms_min"), "table hides _min/_max", "expected no time_ms_min column in:\n%s", table);
    if (argc > 2 && strcmp(argv[2], "--show") == 0)
        fputs(table, stdout);

    results_run_free(&run);
    return check_summary();
}
