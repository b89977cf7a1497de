/* test_outfile_set.c — a set of outputs (core/outfile.h) lands together or is recognisably
 * incomplete: rename and unlink are interposed here to fail, or to kill the process, at each step
 * of a set's commit, and no state left on disk may show a mixed set without every file of it
 * marked; the results readers refuse a marked file. docs/outputs.md. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/outfile.h"
#include "core/results.h"
#include "core/results_read.h"

/* ---- the fault: the k-th rename, or the k-th unlink of a marker, fails / kills / signals -- */

enum { NONE, FAIL, KILL, SIGNAL };
static int fault, fault_on_unlink, fault_at, renames, marker_unlinks;

static void fire(void) {
    if (fault == KILL)
        _exit(77); /* as a SIGKILL would: no handler, nothing flushed */
    if (fault == SIGNAL)
        raise(SIGTERM); /* outfile holds it until the set is done */
}

int rename(const char *from, const char *to) {
    if (!fault_on_unlink && ++renames == fault_at) {
        if (fault == FAIL)
            return errno = EIO, -1;
        fire();
    }
    return renameat(AT_FDCWD, from, AT_FDCWD, to);
}

int unlink(const char *path) {
    size_t n = strlen(path), k = strlen(OUTFILE_PARTIAL);
    if (fault_on_unlink && n > k && !strcmp(path + n - k, OUTFILE_PARTIAL) && ++marker_unlinks == fault_at)
        fire();
    return unlinkat(AT_FDCWD, path, 0);
}

static void arm(int kind, int on_unlink, int at) {
    fault = kind, fault_on_unlink = on_unlink, fault_at = at, renames = marker_unlinks = 0;
}

/* ---- a set of three files, each saying which write (generation) made it ------------------- */

enum { NF = 3 };
static char dir[200], paths[NF][300];
static const char *const names[NF] = {"r.csv", "r.json", "r.txt"};

typedef struct {
    int gen, file, fail;
} gen_t;

static int fill_gen(FILE *f, void *ctx) {
    const gen_t *g = ctx;
    if (g->fail)
        return errno = ENOSPC, -1;
    return fprintf(f, "gen %d file %d\n", g->gen, g->file) > 0 ? 0 : -1;
}

static int write_set(int gen, int fail_file, attn_err_t *err) {
    gen_t g[NF];
    outfile_job_t jobs[NF];
    for (int i = 0; i < NF; i++) {
        g[i] = (gen_t){gen, i, i == fail_file};
        jobs[i] = (outfile_job_t){paths[i], fill_gen, &g[i]};
    }
    return outfile_write_all(jobs, NF, err);
}

static int gen_of(int i) {
    FILE *f = fopen(paths[i], "r");
    int gen = -1, file = -1;
    if (f && fscanf(f, "gen %d file %d", &gen, &file) != 2)
        gen = -1;
    if (f)
        fclose(f);
    return file == i ? gen : -1;
}

/* Leftovers in dir: temporaries (".tmp.") and markers. */
static void leftovers(int *tmps, int *markers) {
    *tmps = *markers = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        *tmps += strstr(e->d_name, ".tmp.") != NULL;
        size_t n = strlen(e->d_name);
        *markers += n > 8 && !strcmp(e->d_name + n - 8, OUTFILE_PARTIAL);
    }
    if (d)
        closedir(d);
}

/* What a reader that honours the markers may see: either every file of one generation, or every
 * file marked. Returns 1 when the files are of mixed generations (so the caller knows the fault
 * did split the set), and checks the rule. */
static int check_state(const char *name, int *marked_out) {
    int g0 = gen_of(0), mixed = 0, marked = 0;
    for (int i = 0; i < NF; i++) {
        mixed |= gen_of(i) != g0;
        marked += outfile_incomplete(paths[i], NULL, 0);
    }
    check(!mixed || marked == NF, name, "mixed generations (%d %d %d) with %d of %d files marked", gen_of(0),
          gen_of(1), gen_of(2), marked, NF);
    if (marked_out)
        *marked_out = marked;
    return mixed;
}

static void fresh(int gen) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(cmd) != 0)
        exit(2);
    attn_err_t err = {0};
    arm(NONE, 0, 0);
    if (write_set(gen, -1, &err) != ATTN_OK)
        printf("FAIL set-up write: %s\n", err.msg), exit(1);
}

/* The write of generation 2 in a child armed with the fault; returns its wait status. */
static int child_write(int kind, int on_unlink, int at) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        attn_err_t err = {0};
        arm(kind, on_unlink, at);
        _exit(write_set(2, -1, &err) == ATTN_OK ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

static void test_kills(void) {
    char name[160];
    for (int on_unlink = 0; on_unlink < 2; on_unlink++)
        for (int at = 1; at <= NF; at++) {
            const char *step = on_unlink ? "marker removal" : "rename";
            fresh(1);
            int st = child_write(KILL, on_unlink, at), marked;
            snprintf(name, sizeof name, "killed at %s %d: no unmarked mixed set", step, at);
            int mixed = check_state(name, &marked);
            snprintf(name, sizeof name, "killed at %s %d: the fault fired", step, at);
            check(WIFEXITED(st) && WEXITSTATUS(st) == 77, name, "child status %#x", st);
            if (!on_unlink) { /* before rename k: k − 1 files new, so the set is split for k ≥ 2 */
                snprintf(name, sizeof name, "killed at rename %d: %s, every file marked", at,
                         at > 1 ? "the set is split" : "nothing renamed");
                check(mixed == (at > 1) && marked == NF, name, "mixed %d, %d marked", mixed, marked);
            } else { /* every rename done: one generation, the markers not yet removed still there */
                snprintf(name, sizeof name, "killed at marker removal %d: all new, %d marker(s) left", at, NF - at + 1);
                check(!mixed && gen_of(0) == 2 && marked == NF - at + 1, name, "mixed %d, gen %d, %d marked", mixed,
                      gen_of(0), marked);
            }
            /* the next whole write repairs the set */
            attn_err_t err = {0};
            arm(NONE, 0, 0);
            int rc = write_set(3, -1, &err), tmps, markers;
            leftovers(&tmps, &markers);
            snprintf(name, sizeof name, "after the kill at %s %d: no unmarked mixed set", step, at);
            int split = check_state(name, &marked);
            snprintf(name, sizeof name, "after the kill at %s %d: the next write lands whole, unmarked", step, at);
            check(rc == ATTN_OK && !split && gen_of(0) == 3 && markers == 0, name,
                  "rc %d gen %d, %d marker(s)", rc, gen_of(0), markers);
        }
}

static void test_failed_renames(void) {
    char name[160];
    for (int at = 1; at <= NF; at++) {
        fresh(1);
        attn_err_t err = {0};
        arm(FAIL, 0, at);
        int rc = write_set(2, -1, &err), tmps, markers, marked;
        snprintf(name, sizeof name, "rename %d fails: no unmarked mixed set", at);
        int mixed = check_state(name, &marked);
        leftovers(&tmps, &markers);
        snprintf(name, sizeof name, "rename %d fails: error naming %s, no temporaries, %s", at, names[at - 1],
                 at > 1 ? "split and all marked" : "nothing changed, unmarked");
        check(rc == ATTN_ERUNTIME && strstr(err.msg, names[at - 1]) && tmps == 0 &&
                  (at > 1 ? mixed && marked == NF : !mixed && gen_of(0) == 1 && markers == 0),
              name, "rc %d \"%s\", %d tmp, mixed %d, %d marked", rc, err.msg, tmps, mixed, marked);
    }
    /* a set already split stays marked when the next write renames nothing */
    fresh(1);
    child_write(KILL, 0, 2);
    attn_err_t err = {0};
    arm(FAIL, 0, 1);
    write_set(3, -1, &err);
    int marked;
    check_state("a failed write after a kill: no unmarked mixed set", &marked);
    check(marked == NF, "a failed write after a kill keeps the earlier write's markers", "%d of %d marked", marked, NF);
}

static void test_held_signal(void) {
    fresh(1);
    int st = child_write(SIGNAL, 0, 2), marked, tmps, markers;
    check(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "SIGTERM between renames: delivered after the set",
          "child status %#x", st);
    int mixed = check_state("SIGTERM between renames: no unmarked mixed set", &marked);
    leftovers(&tmps, &markers);
    check(!mixed && gen_of(0) == 2 && markers == 0 && tmps == 0, "SIGTERM between renames: the set landed whole",
          "mixed %d gen %d, %d marker(s), %d tmp", mixed, gen_of(0), markers, tmps);
}

static void test_bad_input(void) {
    fresh(1);
    attn_err_t err = {0};
    int rc = write_set(2, 1, &err), tmps, markers;
    leftovers(&tmps, &markers);
    check(rc == ATTN_ERUNTIME && gen_of(0) == 1 && gen_of(1) == 1 && gen_of(2) == 1 && tmps == 0 && markers == 0,
          "a fill that fails: nothing written, no temporaries, no markers", "rc %d, %d tmp, %d markers", rc, tmps,
          markers);
    gen_t g = {2, 0, 0};
    outfile_job_t same[2] = {{paths[0], fill_gen, &g}, {paths[0], fill_gen, &g}};
    rc = outfile_write_all(same, 2, &err);
    leftovers(&tmps, &markers);
    check(rc == ATTN_EUSAGE && gen_of(0) == 1 && tmps == 0 && markers == 0,
          "two outputs naming one file: refused, nothing written", "rc %d, %d tmp, %d markers", rc, tmps, markers);
    char marker_path[320];
    snprintf(marker_path, sizeof marker_path, "%s%s", paths[0], OUTFILE_PARTIAL);
    outfile_job_t marker[2] = {{paths[0], fill_gen, &g}, {marker_path, fill_gen, &g}};
    err = (attn_err_t){0};
    rc = outfile_write_all(marker, 2, &err);
    leftovers(&tmps, &markers);
    check(rc == ATTN_EUSAGE && strstr(err.msg, "would be the marker of") && gen_of(0) == 1 && tmps == 0 &&
              markers == 0 && access(marker_path, F_OK) != 0,
          "an output named as another's marker: refused, nothing written", "rc %d \"%s\", %d tmp, %d markers", rc,
          err.msg, tmps, markers);
}

/* The results files proper: a kill between results_write's renames, then the readers. */
static void test_results_readers(void) {
    char *argv[] = {"attnbench", "run"};
    attn_run_t run;
    attn_err_t err = {0};
    if (!check(results_run_init(&run, 2, argv, 1, 1, &err) == ATTN_OK, "results run", "%s", err.msg))
        return;
    attn_problem_t p = {.batch = 1, .heads = 1, .kv_heads = 1, .head_dim = 8, .n_q = 4, .n_k = 4,
                        .dtype = ATTN_F32};
    record_metric(results_add(&run, "throughput", "naive", &p), "time_s", 1.0, "s");
    char json[400], csv[400];
    snprintf(json, sizeof json, "%s/%s.json", dir, run.run_id);
    snprintf(csv, sizeof csv, "%s/%s.csv", dir, run.run_id);
    fresh(1);
    json_t *root = NULL;
    int ok = results_write(&run, dir, &err) == ATTN_OK && results_read(json, &root, &err) == ATTN_OK;
    json_decref(root), root = NULL;
    check(ok, "results written whole: results_read takes them", "%s", err.msg);
    record_metric(results_add(&run, "throughput", "blockwise", &p), "time_s", 2.0, "s");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        arm(KILL, 0, 2);
        _exit(results_write(&run, dir, &err) == ATTN_OK ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 77 && outfile_incomplete(json, NULL, 0) &&
              outfile_incomplete(csv, NULL, 0),
          "results_write killed between renames: .json and .csv both marked", "status %#x", st);
    attn_err_t rerr = {0};
    int rc = results_read(json, &root, &rerr);
    json_decref(root), root = NULL;
    check(rc == ATTN_EUSAGE && strstr(rerr.msg, OUTFILE_PARTIAL) && strstr(rerr.msg, "different writes"),
          "results_read (report, compare, history) refuses the marked file", "rc %d \"%s\"", rc, rerr.msg);
    rc = results_read_json(json, &root, &rerr);
    check(rc == ATTN_OK && json_array_size(json_object_get(root, "records")) >= 1,
          "results_read_json (--resume) takes the JSON, whole as renamed", "rc %d \"%s\"", rc, rerr.msg);
    json_decref(root), root = NULL;
    rc = results_write(&run, dir, &err);
    ok = rc == ATTN_OK && results_read(json, &root, &rerr) == ATTN_OK &&
         json_array_size(json_object_get(root, "records")) == 2 && !outfile_incomplete(csv, NULL, 0);
    json_decref(root);
    check(ok, "the next results_write repairs the set: read back, both records, unmarked", "%s %s", err.msg, rerr.msg);
    results_run_free(&run);
}

int main(void) {
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/attn_outfile_set.%ld", base, (long)getpid());
    for (int i = 0; i < NF; i++)
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, names[i]);
    test_kills();
    test_failed_renames();
    test_held_signal();
    test_bad_input();
    test_results_readers();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", dir);
    return check_summary();
}
