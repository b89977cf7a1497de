/* test_options.c — the flag table (cli/options.c): its defaults are the ones every flag had
 * before the table, names match exactly, each subcommand takes only its rows, and every suite
 * in suites/ loads. usage: test_options SUITES_DIR SCRATCH */
#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/options.h"
#include "core/device.h"
#include "tests/check.h"

/* The defaults as opts_defaults wrote them field by field before the table existed. */
static void defaults_before_the_table(attn_opts_t *o) {
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
    o->merge_dtype = ATTN_F32; /* new: issue 20 */
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
    strcpy(o->kernel, "auto");
    for (int i = 0; i < 7; i++) /* new: issue 20, --precision-ranks 1,2,4,…,64 */
        o->precision_ranks[i] = INT64_C(1) << i;
    o->n_precision_ranks = 7;
    o->sinks[0] = 4; /* new: issue 22, the approximate backends' --sinks 4 and --topk 5% */
    o->n_sinks = 1;
    o->topk_pct[0] = 5;
    o->n_topk = 1;
}

static int parse(unsigned cmd, const char *line, cli_opts_t *c, attn_err_t *err) {
    char buf[512], *argv[32] = {"cmd"};
    int argc = 1;
    snprintf(buf, sizeof buf, "%s", line);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && argc < 32; t = strtok_r(NULL, " ", &save))
        argv[argc++] = t;
    opts_init(c, cmd);
    *err = (attn_err_t){0};
    return opts_parse_argv(c, cmd, argc, argv, NULL, NULL, err);
}

static void test_defaults(void) {
    attn_err_t err = {0};
    check(opts_check_table(&err) == ATTN_OK, "table: one row per (flag, subcommand), every default parses", "%s",
          err.msg);
    attn_opts_t want, got;
    defaults_before_the_table(&want);
    opts_defaults(&got);
    size_t at = 0;
    while (at < sizeof want && ((unsigned char *)&want)[at] == ((unsigned char *)&got)[at])
        at++;
    check(at == sizeof want, "run's defaults are the ones before the table", "byte %zu of attn_opts_t differs", at);
    cli_opts_t c;
    opts_init(&c, CMD_NEEDLE);
    check(c.s.window == 4096 && c.s.seq_len[0] == 4096 && c.s.n_seq_len == 1 && !strcmp(c.s.task, "needle"),
          "needle: window 4096, seq-len 4096, task needle", "window %lld, seq-len %lld, task %s", (long long)c.s.window,
          (long long)c.s.seq_len[0], c.s.task);
    opts_init(&c, CMD_ATTEND);
    check(c.s.n_backends == 0 && c.s.n_masks == 1 && c.s.masks[0] == ATTN_MASK_NONE, "attend: no backend, mask none",
          "%d backends, %d masks, mask %d", c.s.n_backends, c.s.n_masks, (int)c.s.masks[0]);
    opts_init(&c, CMD_COMM);
    check(c.s.repeats == 20 && c.s.ranks == 0 && c.n_comm_sizes == 0, "comm: repeats 20, ranks and sizes unset",
          "repeats %d ranks %d sizes %d", c.s.repeats, c.s.ranks, c.n_comm_sizes);
    opts_init(&c, CMD_PEAK);
    check(c.s.stream_mib == 256 && c.s.n_sizes == 0 && c.s.repeats == 5 && c.s.seed == 1234,
          "peak: stream-mib 256, default sizes, run's repeats and seed", "stream-mib %lld, %d sizes, repeats %d",
          (long long)c.s.stream_mib, c.s.n_sizes, c.s.repeats);
    opts_init(&c, CMD_COMPARE);
    check(c.threshold == 0.05, "compare: threshold 0.05", "%.17g", c.threshold);
    opts_init(&c, CMD_REPORT);
    check(!strcmp(c.out_path, "dashboards/index.html"), "report: --out dashboards/index.html", "'%s'", c.out_path);
}

static void test_argv(void) {
    const struct {
        unsigned cmd;
        const char *line, *error; /* NULL: parses */
    } cases[] = {
        {CMD_RUN, "--se 7", "unknown flag '--se'"},
        {CMD_RUN, "--ba blockwise", "unknown flag '--ba'"},
        {CMD_RUN, "--w 5", "unknown flag '--w'"},
        {CMD_RUN, "--seq-len=7 --heads=4 --kv-heads 2", NULL},
        {CMD_RUN, "--backend naive", NULL},
        {CMD_RUN, "--heads", "flag '--heads' needs a value"},
        {CMD_RUN, "--heads=", "--heads: '' is not an integer"},
        {CMD_RUN, "-x", "unknown flag '-x'"},
        {CMD_RUN, "stray", "unexpected argument 'stray'"},
        {CMD_RUN, "--threshold 5%", "flag '--threshold' does not apply to run (it is taken by report, compare)"},
        {CMD_RUN, "--q q.npy", "does not apply to run (it is taken by attend)"},
        {CMD_RUN, "--sizes 64", "does not apply to run (it is taken by peak, comm)"},
        {CMD_ATTEND, "--ranks 2", "does not apply to attend (it is taken by run, needle, comm, simulate)"},
        {CMD_ATTEND, "--merge-dtype bf16", NULL},
        {CMD_RUN, "--dtype float32 --merge-dtype bfloat16", NULL},
        {CMD_RUN, "--merge-dtype float64", "--merge-dtype: unknown dtype 'float64' (f32, bf16)"},
        {CMD_RUN, "--merge-dtype f64", "--merge-dtype: unknown dtype 'f64' (f32, bf16)"},
        {CMD_PEAK, "--seq-len 64", "does not apply to peak"},
        {CMD_NEEDLE, "--heads 4", "does not apply to needle (it is taken by run, simulate)"},
        {CMD_COMM, "--sizes 1073741825", "--sizes: 1073741825 is out of range 1..1073741824"},
        {CMD_PEAK, "--sizes 16385", "--sizes: 16385 is out of range 1..16384"},
        {CMD_RUN, "--mask none,causal,window,none", "--mask: at most 3 masks"},
        {CMD_LIST, "--heads 2", "does not apply to list"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cli_opts_t c;
        attn_err_t err;
        int rc = parse(cases[i].cmd, cases[i].line, &c, &err);
        char name[160];
        snprintf(name, sizeof name, "argv '%s' %s", cases[i].line, cases[i].error ? "refused" : "parses");
        if (cases[i].error)
            check(rc == ATTN_EUSAGE && strstr(err.msg, cases[i].error), name, "expected '%s', got rc %d '%s'",
                  cases[i].error, rc, err.msg);
        else
            check(rc == ATTN_OK, name, "%s", err.msg);
    }
    cli_opts_t c;
    attn_err_t err;
    parse(CMD_RUN, "--seq-len=7,9 --heads=4 --scale=0.5", &c, &err);
    check(c.s.n_seq_len == 2 && c.s.seq_len[1] == 9 && c.s.heads == 4 && c.s.scale == 0.5,
          "--name=value sets the field", "seq-len %d values, heads %lld, scale %g", c.s.n_seq_len, (long long)c.s.heads,
          c.s.scale);
    char *argv[] = {"compare", "a.json", "--threshold=2%", "--", "--b.json"}, *pos[5];
    int n_pos = 0;
    opts_init(&c, CMD_COMPARE);
    int rc = opts_parse_argv(&c, CMD_COMPARE, 5, argv, pos, &n_pos, &err);
    check(rc == ATTN_OK && n_pos == 2 && !strcmp(pos[1], "--b.json") && c.threshold == 0.02,
          "compare: files around flags, '--' ends the flags", "rc %d, %d files, threshold %g", rc, n_pos, c.threshold);
}

/* A suite written to scratch, loaded for run: NULL error means it loads. */
static void suite_case(const char *scratch, const char *name, const char *json, const char *error) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.json", scratch, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        check(0, name, "cannot write %s", path);
        return;
    }
    fputs(json, f);
    fclose(f);
    char *argv[] = {"run"};
    attn_opts_t *runs = NULL;
    int n = 0;
    attn_err_t err = {0};
    int rc = opts_load_config(path, CMD_RUN, 1, argv, &runs, &n, &err);
    char label[160];
    snprintf(label, sizeof label, "suite %s %s", name, error ? "refused" : "loads");
    if (error)
        check(rc == ATTN_EUSAGE && strstr(err.msg, path) && strstr(err.msg, error), label,
              "expected '%s: …%s…', got rc %d '%s'", path, error, rc, err.msg);
    else
        check(rc == ATTN_OK, label, "%s", err.msg);
    free(runs);
}

static void test_suite_keys(const char *scratch) {
    suite_case(scratch, "top_out_dir", "{\"out-dir\": \"x\", \"runs\": [{\"seq-len\": 16}, {\"seq-len\": 32}]}", NULL);
    suite_case(scratch, "run_out_dir", "{\"runs\": [{\"seq-len\": 16}, {\"seq-len\": 32, \"out-dir\": \"x\"}]}",
               "runs[1]: out-dir applies to the whole suite; put it at the top level");
    suite_case(scratch, "nested_runs", "{\"runs\": [{\"seq-len\": 16, \"runs\": [{\"heads\": 2}]}]}",
               "runs[0]: 'runs' cannot be nested in a run");
    suite_case(scratch, "nested_config", "{\"runs\": [{\"config\": \"other.json\"}]}",
               "runs[0]: 'config' cannot be nested");
    suite_case(scratch, "second_run_shape", "{\"runs\": [{\"seq-len\": 16}, {\"heads\": 6, \"kv-heads\": 4}]}",
               "runs[1]: heads (6) must be a multiple of kv-heads (4)");
    suite_case(scratch, "second_run_value", "{\"runs\": [{\"seq-len\": 16}, {\"heads\": 0}]}",
               "runs[1]: --heads: 0 is out of range");
    suite_case(scratch, "other_command_key", "{\"task\": \"exactness\", \"threshold\": \"5%\"}",
               "top level: option 'threshold' does not apply to run (it is taken by report, compare)");
    suite_case(scratch, "abbreviated_key", "{\"task\": \"exactness\", \"seq\": 16}", "unknown option 'seq'");
}

/* Every committed suite loads with run's rows; on a build without CUDA the GPU suite names
 * CUDA backends or transports this build has not, and says so. */
static void test_committed_suites(const char *dir) {
    DIR *d = opendir(dir);
    if (!check(d != NULL, "suites directory", "cannot open %s", dir))
        return;
    int seen = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json"))
            continue;
        char path[1024], name[300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(name, sizeof name, "suites/%s loads", e->d_name);
        json_t *root = json_load_file(path, 0, NULL);
        json_t *list = json_object_get(root, "runs");
        int want = list ? (int)json_array_size(list) : 1;
        json_decref(root);
        char *argv[] = {"run"};
        attn_opts_t *runs = NULL;
        int n = 0;
        attn_err_t err = {0};
        int rc = opts_load_config(path, CMD_RUN, 1, argv, &runs, &n, &err);
        free(runs);
        seen++;
        if (rc != ATTN_OK && !device_cuda_built() && (strstr(err.msg, "_cuda'") || strstr(err.msg, "no CUDA"))) {
            printf("skip %s: this build has no CUDA (%s)\n", name, err.msg);
            continue;
        }
        check(rc == ATTN_OK && n == want, name, "rc %d, %d of %d runs: %s", rc, n, want, err.msg);
    }
    closedir(d);
    check(seen >= 3, "suites found", "%d suite files in %s", seen, dir);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_options SUITES_DIR SCRATCH\n");
        return 2;
    }
    test_defaults();
    test_argv();
    test_suite_keys(argv[2]);
    test_committed_suites(argv[1]);
    return check_summary();
}
