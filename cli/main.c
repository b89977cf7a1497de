/* main.c — attnbench's entry point: dispatches the subcommand and turns its status into the
 * one error message and exit code (2 usage, 1 runtime) that every failure ends in. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"

#ifndef ATTN_VERSION
#define ATTN_VERSION "dev"
#endif

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv, attn_err_t *err);
    const char *help;
} command_t;

static const command_t commands[] = {
    {"list", cli_list, "backends, tasks and transports, with what each supports"},
    {"run", cli_run, "run a task (exactness, throughput, memory, model) or a --config suite; writes results/"},
    {"needle", cli_needle, "needle-in-a-haystack recall grid (length × depth) per backend; writes results/"},
    {"attend", cli_attend, "one attention call on .npy inputs (for cross-checking with NumPy/PyTorch)"},
    {"peak", cli_peak, "sgemm GFLOP/s: the roofline throughput is compared with"},
    {"report", cli_report, "results files (several machines welcome) → one offline HTML dashboard"},
    {"compare", cli_compare, "BASE.json vs NEW.json per metric; exit 1 on a regression (the scheduled jobs' gate)"},
    {"simulate", cli_simulate, "time per call and memory per rank of ring/striped/zigzag/ulysses/usp at any P (a model)"},
    {"comm", cli_comm, "transport latency and bandwidth (ping-pong, all-to-all): the roofline of overlap"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f) {
    fputs("usage: attnbench <command> [flags]   (attnbench <command> --help for its flags)\n\ncommands:\n", f);
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
}

/* attnbench --man (hidden): the man page attnbench.1, written at build time (CMakeLists.txt) from
 * the same commands table, usage texts and flag rows as --help: each command's --help, as roff. */
static int print_man(void) {
    printf(".TH ATTNBENCH 1 \"\" \"attnbench %s\" \"User Commands\"\n", ATTN_VERSION);
    puts(".SH NAME\nattnbench \\- long\\-context attention evaluation and benchmarking suite");
    puts(".SH SYNOPSIS\n.B attnbench\n.I command\n[\\fIflags\\fR]\n.br\n.B attnbench\n.I command\n\\fB\\-\\-help\\fR");
    puts(".SH DESCRIPTION\nOne executable runs interchangeable attention backends (CPU, CUDA, distributed over\n"
         "threads, MPI or NCCL) through four tasks \\(em exactness against a float64 reference,\n"
         "throughput, memory and needle\\-in\\-a\\-haystack recall \\(em and writes each run as\n"
         ".I results/<run_id>.json\nand\n.IR .csv .\nEvery command takes its flags as\n"
         ".B \\-\\-name value\nor\n.BR \\-\\-name=value ;\nthis page lists each command's, as its\n"
         ".B \\-\\-help\ndoes.");
    puts(".SH COMMANDS");
    opts_help_roff(1);
    int rc = ATTN_OK;
    for (int i = 0; i < N_COMMANDS && rc == ATTN_OK; i++) {
        printf(".SS \"attnbench %s\"\n", commands[i].name);
        opts_roff_text(stdout, commands[i].help, strlen(commands[i].help));
        putchar('\n');
        char name[32], help[] = "--help";
        snprintf(name, sizeof name, "%s", commands[i].name);
        char *argv[] = {name, help, NULL};
        attn_err_t err = {0};
        rc = commands[i].fn(2, argv, &err);
    }
    opts_help_roff(0);
    puts(".SH EXIT STATUS\n0: done, every record passed or was skipped.\n1: a record failed or errored, a gate "
         "found a regression, or the run broke.\n2: bad usage or input (one message naming it); nothing is written.");
    puts(".SH FILES\n.TP\n.I results/<run_id>.json, results/<run_id>.csv\nthe results of a run "
         "(\\fB\\-\\-out\\-dir\\fR).\n.TP\n.I share/attnbench/suites/*.json\n"
         "the suites, for \\fBattnbench run \\-\\-config\\fR (installed under the prefix).");
    puts(".SH SEE ALSO\n.BR mpirun (1);\nthe README of the attnbench sources.");
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return ATTN_EUSAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return ATTN_OK;
    }
    if (strcmp(argv[1], "--man") == 0)
        return print_man();
    for (int i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        attn_err_t err = {0};
        int rc = opts_preload(commands[i].name, argc - 1, argv + 1, &err); /* --plugin, --exec-spec */
        if (rc == ATTN_OK)
            rc = commands[i].fn(argc - 1, argv + 1, &err);
        if (rc != ATTN_OK)
            fprintf(stderr, "attnbench %s: error: %s\n", commands[i].name, err.msg[0] ? err.msg : "failed");
        return rc;
    }
    fprintf(stderr, "attnbench: error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return ATTN_EUSAGE;
}
