/* exec_process.c — running one external program for the exec: backends (exec_process.h): fork,
 * exec, poll with a timeout on the monotonic clock, kill the whole process group, and quote the
 * program's own stderr in the message when it fails. */
#include "impls/exec_process.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/timing.h"

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Last `cap − 1` bytes of a file, one line (newlines become "; "): the program's own words. */
void exec_file_tail(const char *path, char *out, size_t cap) {
    out[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f), take = n < (long)cap - 1 ? n : (long)cap - 1;
    fseek(f, n - take, SEEK_SET);
    size_t got = fread(out, 1, (size_t)take, f);
    out[got] = '\0';
    fclose(f);
    while (got && (out[got - 1] == '\n' || out[got - 1] == ' '))
        out[--got] = '\0';
    for (char *p = out; *p; p++)
        if (*p == '\n')
            *p = ';';
}

/* Runs argv (extra args appended) with stdin /dev/null, stdout and stderr into dir, in a process
 * group of its own so a timeout kills it and every child it made. */
int exec_process_run(const exec_cmd_t *cmd, const char *const *extra, int n_extra, const char *dir, attn_err_t *err) {
    char *argv[EXEC_MAX_ARGS + 4];
    int n = 0;
    for (int i = 0; i < cmd->argc; i++)
        argv[n++] = cmd->argv[i];
    for (int i = 0; i < n_extra; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    char out_path[PATH_MAX], err_path[PATH_MAX];
    snprintf(out_path, sizeof out_path, "%s/stdout", dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return attn_fail(err, ATTN_ERUNTIME, "%s: fork: %s", cmd->who, strerror(errno));
    if (pid == 0) { /* only async-signal-safe calls until exec */
        setpgid(0, 0);
        int in = open("/dev/null", O_RDONLY), out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600),
            er = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || er < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(er, 2) < 0)
            _exit(126);
        execvp(argv[0], argv);
        static const char msg[] = "exec failed: the command was not found or is not executable\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    setpgid(pid, pid); /* also here: whichever runs first */
    /* Poll without reaping (WNOWAIT): while the leader is an unreaped zombie its group id cannot be
     * reused, so killing the group afterwards reaches only what the program left running. */
    double t0 = time_now_s(), step = 0.002;
    for (;;) {
        siginfo_t info = {0};
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0 && errno != EINTR) {
            kill(-pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return attn_fail(err, ATTN_ERUNTIME, "%s: waitid: %s", cmd->who, strerror(errno));
        }
        if (info.si_pid == pid)
            break;
        if (time_now_s() - t0 >= cmd->timeout_s) {
            kill(-pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return attn_fail(err, ATTN_ERUNTIME, "%s: `%s` did not finish within %g s (timeout_s of %s): killed",
                             cmd->who, cmd->argv[0], cmd->timeout_s, cmd->timeout_from);
        }
        sleep_s(step);
        step = step < 0.05 ? step * 2 : 0.05;
    }
    kill(-pid, SIGKILL); /* anything it left running in its group */
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return ATTN_OK;
    char tail[400];
    exec_file_tail(err_path, tail, sizeof tail);
    if (WIFEXITED(status) && WEXITSTATUS(status) == EXEC_UNAVAILABLE) /* cannot run here: its reason alone */
        return attn_fail(err, EXEC_UNAVAILABLE, "%s", tail[0] ? tail : "the program cannot run on this machine");
    if (WIFSIGNALED(status))
        return attn_fail(err, ATTN_ERUNTIME, "%s: `%s` was killed by signal %d: %s", cmd->who, cmd->argv[0],
                         WTERMSIG(status), tail[0] ? tail : "(no stderr)");
    return attn_fail(err, ATTN_ERUNTIME, "%s: `%s` exited with status %d: %s", cmd->who, cmd->argv[0],
                     WEXITSTATUS(status), tail[0] ? tail : "(no stderr)");
}

/* A fresh private directory (mode 0700) for one call, and its removal. */
int exec_dir_make(const char *who, char *dir, size_t cap, attn_err_t *err) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, cap, "%s/attnbench-exec-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return attn_fail(err, ATTN_ERUNTIME, "%s: cannot make a temporary directory %s: %s", who, dir,
                         strerror(errno));
    return ATTN_OK;
}
void exec_dir_remove(const char *dir) {
    static const char *const names[] = {"q.npy", "k.npy", "v.npy", "o.npy", "lse.npy", "request.json", "stdout",
                                        "stderr"};
    char path[PATH_MAX + 32];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir); /* fails, leaving the directory, if the program wrote files of its own there */
}
