/* options.h — every flag of every subcommand as one table of rows (cli/options.c): name, field
 * or setter, bounds, default, help, and the subcommands that take it. The table gives the
 * defaults, parses argv and suite files (--config) through the same setters, and prints each
 * subcommand's --help. Only exact flag names match. */
#pragma once
#include <stdio.h>

#include "tasks/settings.h"

/* The subcommands as bits: a row names those that take its flag. */
enum {
    CMD_LIST = 1 << 0,
    CMD_RUN = 1 << 1,
    CMD_ATTEND = 1 << 2,
    CMD_NEEDLE = 1 << 3,
    CMD_PEAK = 1 << 4,
    CMD_COMM = 1 << 5,
    CMD_REPORT = 1 << 6,
    CMD_COMPARE = 1 << 7,
    CMD_SIMULATE = 1 << 8,
};

/* What a run asks for (tasks/settings.h) plus what only the command line carries. */
typedef struct {
    attn_opts_t s;
    char config[512];                                                         /* run, needle */
    char q_path[512], k_path[512], v_path[512], out_path[512], lse_path[512]; /* attend; --out also report */
    int64_t comm_sizes[OPTS_MAX_LIST]; /* comm: message bytes; none given: the default sweep */
    int n_comm_sizes;
    double threshold;       /* compare, report --history */
    char history_dir[512];  /* report: a directory of nightly results files */
    int64_t sim_ranks[OPTS_MAX_LIST]; /* simulate: P values, schemes (sim_scheme_t), constants files */
    int n_sim_ranks, sim_schemes[8], n_sim_schemes;
    char sim_profile[512], sim_links[512];
    char plugin[512], exec_spec[512]; /* the last given; each is loaded when parsed (impls/plugin.h) */
} cli_opts_t;

/* Every subcommand starts from run's defaults, then takes the defaults of its own rows. */
void opts_init(cli_opts_t *c, unsigned cmd);
/* 1 when argv (after the subcommand) holds --help or -h before any "--". */
int opts_wants_help(int argc, char **argv);
/* Parses argv[1..] for subcommand cmd: "--name value" or "--name=value". A name that is no
 * row is an unknown flag; a row of another subcommand is refused naming those that take it.
 * Other arguments go to pos (argc slots; *n_pos of them), or are refused when pos is NULL. */
int opts_parse_argv(cli_opts_t *c, unsigned cmd, int argc, char **argv, char **pos, int *n_pos, attn_err_t *err);
/* Loads a suite file: one run object {"task": ..., ...} or {"runs": [{...}, ...]} with top-level
 * keys shared by all runs. Each run starts from cmd's defaults, takes the file's keys, then the
 * command line's flags (argc/argv) on top, and is validated; errors name the file and the run.
 * A key in the wrong place (out-dir, runs or config inside a run) is refused. Allocates *runs. */
int opts_load_config(const char *path, unsigned cmd, int argc, char **argv, attn_opts_t **runs, int *n_runs,
                     attn_err_t *err);
/* Loads the plugins of $ATTNBENCH_PLUGINS and those that the --plugin and --exec-spec flags of
 * argv (after subcommand `cmd_name`) name, before any flag is parsed: a backend a plugin defines
 * may then be named by --backends anywhere on the line. */
int opts_preload(const char *cmd_name, int argc, char **argv, attn_err_t *err);
/* usage, then the flags cmd takes with their defaults. */
void opts_print_help(FILE *f, unsigned cmd, const char *usage);
/* on: opts_print_help writes the man page's roff instead (attnbench --man, cli/main.c), so the
 * man page and --help come from the same rows and usage texts. */
void opts_help_roff(int on);
/* n bytes of s as roff text (hyphens and backslashes escaped). */
void opts_roff_text(FILE *f, const char *s, size_t n);

/* For the C tests: run's defaults, and one of run's flags set by name ("seq-len") from text. */
void opts_defaults(attn_opts_t *o);
int opts_set(attn_opts_t *o, const char *key, const char *value, attn_err_t *err);
/* The table's own consistency: one row per (name, subcommand), every default parses. */
int opts_check_table(attn_err_t *err);
