/* cli_report.c — `attnbench report FILES... [--out dashboards/index.html]`: one self-contained
 * HTML page from results files (template and Chart.js compiled in, JSON inlined, so it works
 * offline); every file is checked first. --history DIR adds the regression gate's history
 * (report_history.c). The page: README "Dashboards and the regression gate". */
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "cli/report_history.h"
#include "core/outfile.h"
#include "core/results.h"
#include "core/results_read.h"

extern const unsigned char attn_report_template[], attn_chartjs[];
extern const size_t attn_report_template_len, attn_chartjs_len;

/* Writes s, turning "</" into "<\/" so inlined data cannot close its <script> element. */
static int put_script_safe(FILE *f, const char *s) {
    int ok = 1;
    for (const char *p = s; *p && ok; p++) {
        if (p[0] == '<' && p[1] == '/')
            ok = fputs("<\\/", f) >= 0, p++;
        else
            ok = fputc(*p, f) != EOF;
    }
    return ok;
}

/* The template's markers, in page order, and what goes at each. */
static const char *const markers[] = {"/*@CHARTJS@*/", "/*@DATA@*/", "/*@HISTORY@*/"};
enum { N_MARKERS = sizeof markers / sizeof markers[0] };

typedef struct {
    const char *tpl, *at[N_MARKERS], *fill[N_MARKERS]; /* at: each marker in tpl; fill: data (NULL: Chart.js) */
} page_t;

/* The template with Chart.js and the JSON data at their markers. */
static int fill_page(FILE *f, void *ctx) {
    const page_t *p = ctx;
    const char *from = p->tpl;
    int ok = 1;
    for (int i = 0; i < N_MARKERS && ok; i++) {
        ok = fwrite(from, 1, (size_t)(p->at[i] - from), f) == (size_t)(p->at[i] - from);
        if (p->fill[i])
            ok = ok && put_script_safe(f, p->fill[i]);
        else
            ok = ok && fwrite(attn_chartjs, 1, attn_chartjs_len, f) == attn_chartjs_len;
        from = p->at[i] + strlen(markers[i]);
    }
    return ok && fputs(from, f) >= 0 ? 0 : -1;
}

int cli_report(int argc, char **argv, attn_err_t *err) {
    if (opts_wants_help(argc, argv)) {
        opts_print_help(stdout, CMD_REPORT,
                        "usage: attnbench report RESULTS.json [MORE.json ...] [--history DIR] [--out dashboards/index.html]\n\n"
                        "Writes one HTML page that works offline, in views: an overview (throughput and memory vs\n"
                        "context length per backend, the exactness table, needle recall heatmaps, per-rank bars of\n"
                        "the distributed backends); cross-hardware (the same case on each machine, CPU beside GPU,\n"
                        "as ratios to a baseline machine chosen in the page); the roofline (each record's fraction\n"
                        "of its machine's measured compute and bandwidth peaks); peers (torch SDPA and other outside\n"
                        "implementations beside ours, with the ratio); and with --history, the regression gate's\n"
                        "history: each night of DIR against the night before on the same machine, compare's rule.\n");
        return ATTN_OK;
    }
    cli_opts_t c;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    int nf = 0;
    if (!files)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    opts_init(&c, CMD_REPORT);
    int rc = opts_parse_argv(&c, CMD_REPORT, argc, argv, files, &nf, err);
    const char *out = c.out_path;
    if (rc == ATTN_OK && nf == 0 && !c.history_dir[0])
        rc = attn_fail(err, ATTN_EUSAGE, "report needs at least one results file (results/*.json) or --history DIR");
    char *dir = rc == ATTN_OK ? strdup(out) : NULL; /* --out's directory is made, and --out checked, first */
    if (rc == ATTN_OK && !dir)
        rc = attn_fail(err, ATTN_ERUNTIME, "out of memory");
    if (rc == ATTN_OK && strchr(out, '/'))
        rc = outfile_make_dirs(dirname(dir), err);
    free(dir);
    if (rc == ATTN_OK)
        rc = outfile_check(out, err);
    json_t *all = json_array();
    for (int i = 0; i < nf && rc == ATTN_OK; i++) {
        json_t *root;
        rc = results_read(files[i], &root, err);
        if (rc == ATTN_OK)
            json_array_append_new(all, root);
    }
    json_t *hist = NULL;
    if (rc == ATTN_OK && c.history_dir[0])
        rc = report_history(c.history_dir, c.threshold, &hist, err);
    page_t page = {.tpl = (const char *)attn_report_template};
    for (int i = 0; i < N_MARKERS; i++) {
        page.at[i] = strstr(i ? page.at[i - 1] : page.tpl, markers[i]);
        ATTN_ASSERT(page.at[i]);
    }
    char *data = rc == ATTN_OK ? json_dumps(all, JSON_COMPACT) : NULL;
    char *hdata = rc == ATTN_OK ? (hist ? json_dumps(hist, JSON_COMPACT) : strdup("null")) : NULL;
    if (rc == ATTN_OK && (!data || !hdata))
        rc = attn_fail(err, ATTN_ERUNTIME, "out of memory for the report's data");
    page.fill[1] = data, page.fill[2] = hdata;
    if (rc == ATTN_OK)
        rc = outfile_write(out, fill_page, &page, err);
    if (rc == ATTN_OK)
        printf("wrote %s (%d results file(s)%s, %zu bytes of data)\n", out, nf, hist ? " and a gate history" : "",
               strlen(data) + strlen(hdata));
    free(data), free(hdata);
    json_decref(all), json_decref(hist);
    free(files);
    return rc;
}
