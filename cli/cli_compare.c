/* cli_compare.c — `attnbench compare BASE.json NEW.json [--threshold 5%]`, the gate of the
 * scheduled jobs: exit 1 when a record that passed fails, or a timed metric is worse by more than
 * the threshold beyond both runs' spreads (so noise does not flap the gate). The rule in full:
 * README "Dashboards and the regression gate". */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/gate.h"
#include "cli/options.h"

/* One line of the fixed-width table per gate line. */
static void print_line(void *ctx, const gate_line_t *l) {
    (void)ctx;
    char ratio[32] = "";
    switch (l->kind) {
    case GATE_STATUS:
        printf("%-52.52s %-22s %14s %14s %9s  %s\n", l->name, "status", l->base_s, l->new_s, "", l->note);
        break;
    case GATE_LACKS:
        printf("%-52.52s %-22.22s %14s %14s %9s  %s\n", l->name, l->metric, l->base_s, l->new_s, "", l->note);
        break;
    case GATE_METRIC:
        if (l->ratio == l->ratio)
            snprintf(ratio, sizeof ratio, "%.3f", l->ratio);
        printf("%-52.52s %-22.22s %14.6g %14.6g %9s  %s\n", l->name, l->metric, l->base, l->now, ratio,
               l->verdict > 0 ? "REGRESSED" : l->verdict < 0 ? "improved" : "");
        break;
    case GATE_ONLY:
        printf("only in %s: %s (%s)\n", l->side ? "NEW " : "BASE", l->name, l->note);
        break;
    }
}

static const char *host(json_t *root) {
    json_t *v = json_object_get(json_object_get(root, "run"), "host");
    return json_is_string(v) ? json_string_value(v) : "";
}

int cli_compare(int argc, char **argv, attn_err_t *err) {
    if (opts_wants_help(argc, argv)) {
        opts_print_help(stdout, CMD_COMPARE,
                        "usage: attnbench compare BASE.json NEW.json [--threshold 5%]\n\n"
                        "Matches records on (task, backend, device, transport, ranks, layout, config) and prints\n"
                        "NEW/BASE per metric. Exit 1 when a record that passed in BASE fails or errors in NEW, or\n"
                        "when a timed metric is worse by more than the threshold beyond both runs' spreads (NEW's\n"
                        "best repeat against BASE's worst). Records without a match are listed, and so is a\n"
                        "metric one file lacks. Exit 2: bad usage, a file that is not an attnbench results file\n"
                        "(docs/results-schema.md: a status or value it cannot read), or one with no records.\n");
        return ATTN_OK;
    }
    cli_opts_t c;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    int nf = 0;
    if (!files)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    opts_init(&c, CMD_COMPARE);
    int rc = opts_parse_argv(&c, CMD_COMPARE, argc, argv, files, &nf, err);
    double thr = c.threshold;
    if (rc == ATTN_OK && nf > 2)
        rc = attn_fail(err, ATTN_EUSAGE, "compare takes two files, BASE and NEW; '%s' is a third", files[2]);
    if (rc == ATTN_OK && nf != 2)
        rc = attn_fail(err, ATTN_EUSAGE, "compare needs two files: BASE.json NEW.json");
    if (rc != ATTN_OK) {
        free(files);
        return rc;
    }
    json_t *broot = NULL, *nroot = NULL;
    gate_sum_t sum = {0};
    rc = gate_load(files[0], &broot, err);
    if (rc == ATTN_OK)
        rc = gate_load(files[1], &nroot, err);
    if (rc == ATTN_OK) {
        printf("compare %s (%s) → %s (%s), threshold %.3g%% beyond the spreads\n\n", files[0], host(broot), files[1],
               host(nroot), 100 * thr);
        printf("%-52s %-22s %14s %14s %9s  %s\n", "case", "metric", "base", "new", "new/base", "verdict");
        rc = gate_run(broot, nroot, thr, print_line, NULL, &sum, err);
    }
    if (rc == ATTN_OK) {
        printf("\n%d matched record(s): %d status regression(s), %d timed metric(s) worse, %d better\n", sum.matched,
               sum.flips, sum.worse, sum.better);
        if (sum.flips || sum.worse)
            rc = attn_fail(err, ATTN_ERUNTIME, "%d status regression(s) and %d timed metric(s) worse than %s allows",
                           sum.flips, sum.worse, "the threshold beyond the spreads");
    }
    free(files);
    json_decref(broot), json_decref(nroot);
    return rc;
}
