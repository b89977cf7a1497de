/* main.c — attnbench's entry point: dispatches the subcommand and turns its status into the
 * one error message and exit code (2 usage, 1 runtime) that every failure ends in. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"

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

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return ATTN_EUSAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return ATTN_OK;
    }
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
