/* cli_report.c — `attnbench report FILES... [--out dashboards/index.html]`: one self-contained
 * HTML page from results files (template and Chart.js compiled in, JSON inlined, so it works
 * offline); every file is checked first. The page: README "Dashboards and the regression gate". */
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
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

typedef struct {
    const char *tpl, *m1, *m2, *data; /* the template, its two markers, the JSON to inline */
} page_t;

/* The template with Chart.js at the first marker and the data at the second. */
static int fill_page(FILE *f, void *ctx) {
    const page_t *p = ctx;
    int ok = fwrite(p->tpl, 1, (size_t)(p->m1 - p->tpl), f) == (size_t)(p->m1 - p->tpl);
    ok = ok && fwrite(attn_chartjs, 1, attn_chartjs_len, f) == attn_chartjs_len;
    const char *mid = p->m1 + strlen("/*@CHARTJS@*/");
    ok = ok && fwrite(mid, 1, (size_t)(p->m2 - mid), f) == (size_t)(p->m2 - mid);
    ok = ok && put_script_safe(f, p->data);
    ok = ok && fputs(p->m2 + strlen("/*@DATA@*/"), f) >= 0;
    return ok ? 0 : -1;
}

int cli_report(int argc, char **argv, attn_err_t *err) {
    if (opts_wants_help(argc, argv)) {
        opts_print_help(stdout, CMD_REPORT,
                        "usage: attnbench report RESULTS.json [MORE.json ...] [--out dashboards/index.html]\n\n"
                        "Writes one HTML page that works offline: throughput and memory vs context length per\n"
                        "backend, the exactness table, needle recall heatmaps, per-rank bars of the distributed\n"
                        "backends, and a machine-against-machine chart when the files come from different hosts.\n");
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
    if (rc == ATTN_OK && nf == 0)
        rc = attn_fail(err, ATTN_EUSAGE, "report needs at least one results file (results/*.json)");
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
    const char *tpl = (const char *)attn_report_template;
    const char *m1 = strstr(tpl, "/*@CHARTJS@*/"), *m2 = m1 ? strstr(m1, "/*@DATA@*/") : NULL;
    ATTN_ASSERT(m1 && m2);
    char *data = rc == ATTN_OK ? json_dumps(all, JSON_COMPACT) : NULL;
    if (rc == ATTN_OK && !data)
        rc = attn_fail(err, ATTN_ERUNTIME, "out of memory for the report's data");
    page_t page = {tpl, m1, m2, data};
    if (rc == ATTN_OK)
        rc = outfile_write(out, fill_page, &page, err);
    if (rc == ATTN_OK)
        printf("wrote %s (%d results file(s), %zu bytes of data)\n", out, nf, strlen(data));
    free(data);
    json_decref(all);
    free(files);
    return rc;
}
