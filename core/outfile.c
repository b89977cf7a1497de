/* outfile.c — output files (see outfile.h): resolve the target through its symlinks, then stage
 * a temporary beside it and rename, or write straight through to a device/FIFO/socket. The
 * symlink itself is never replaced, and a device node is never turned into a regular file. */
#include "core/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char final[PATH_MAX]; /* the resolved target: renamed over, or opened for write-through */
    char tmp[PATH_MAX];   /* the staged temporary while it exists, else "" */
    int through;          /* not a regular file: write to final directly */
    int append;           /* through a /proc/.../fd link to a regular file: add, do not overwrite */
    int keep_mode;        /* final is a regular file now: the new one gets its permissions */
    mode_t mode;
    int marked;           /* its set's marker: 1 made by this write, 2 there before it */
} plan_t;

static atomic_uint tmp_seq;

static int too_long(const char *path, attn_err_t *err) {
    return attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: path too long", path);
}

/* /dev/stdout → /proc/self/fd/1 → "pipe:[…]" or the file the shell opened: a descriptor, not a
 * name. Renaming over what it points at would not reach the descriptor, so it is written through. */
static int is_fd_link(const char *p) { return !strncmp(p, "/proc/", 6) || !strncmp(p, "/dev/fd/", 8); }

/* Follows path's symlinks one hop at a time (as the kernel would, relative targets against the
 * link's directory) to the name a rename must replace, and decides how to write it. */
static int resolve(const char *path, plan_t *p, attn_err_t *err) {
    memset(p, 0, sizeof *p);
    if (!path || !path[0])
        return attn_fail(err, ATTN_ERUNTIME, "empty output path");
    char cur[PATH_MAX], link[PATH_MAX];
    if (snprintf(cur, sizeof cur, "%s", path) >= (int)sizeof cur)
        return too_long(path, err);
    for (int hop = 0;; hop++) {
        struct stat st;
        if (hop > 40)
            return attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: %s", path, strerror(ELOOP));
        if (lstat(cur, &st) != 0) {
            if (errno != ENOENT)
                return attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: %s", path, strerror(errno));
            memcpy(p->final, cur, sizeof cur); /* a new file (or a dangling link's target) */
            return ATTN_OK;
        }
        if (S_ISLNK(st.st_mode) && is_fd_link(cur)) {
            if (stat(cur, &st) != 0)
                return attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: %s", path, strerror(errno));
            if (S_ISDIR(st.st_mode))
                return attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: is a directory", path);
            memcpy(p->final, cur, sizeof cur);
            p->through = 1, p->append = S_ISREG(st.st_mode);
            return ATTN_OK;
        }
        if (!S_ISLNK(st.st_mode)) {
            if (S_ISDIR(st.st_mode))
                return attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: is a directory", path);
            memcpy(p->final, cur, sizeof cur);
            p->through = !S_ISREG(st.st_mode);
            p->keep_mode = S_ISREG(st.st_mode), p->mode = st.st_mode & 07777;
            return ATTN_OK;
        }
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0)
            return attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: %s", path, strerror(errno));
        link[n] = '\0';
        char *slash = strrchr(cur, '/');
        if (link[0] == '/' || !slash) {
            memcpy(cur, link, (size_t)n + 1);
        } else {
            slash[1] = '\0';
            if (strlen(cur) + (size_t)n >= sizeof cur)
                return too_long(path, err);
            strcat(cur, link);
        }
    }
}

/* Creates p->tmp beside p->final (exclusive: never follows or reuses a name someone left). */
static int make_tmp(plan_t *p, const char *path, attn_err_t *err) {
    if (snprintf(p->tmp, sizeof p->tmp, "%s.tmp.%ld.%u", p->final, (long)getpid(), atomic_fetch_add(&tmp_seq, 1)) >=
        (int)sizeof p->tmp) {
        p->tmp[0] = '\0';
        return too_long(path, err);
    }
    int fd = open(p->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        int e = errno;
        p->tmp[0] = '\0';
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", p->final);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        if (e == ENOENT || e == ENOTDIR)
            attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: directory %s does not exist", path, slash ? dir : ".");
        else
            attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: %s", path, strerror(e));
        return -1;
    }
    if (p->keep_mode)
        (void)fchmod(fd, p->mode); /* best effort: a foreign owner's mode may not be ours to set */
    return fd;
}

/* Flush, fsync, close, keeping the first error. A device or FIFO may not support fsync. */
static int finish(FILE *f, int through) {
    int e = fflush(f) != 0 ? errno : 0;
    if (!e && fsync(fileno(f)) != 0 &&
        !(through && (errno == EINVAL || errno == EROFS || errno == ENOTSUP || errno == EOPNOTSUPP)))
        e = errno;
    if (fclose(f) != 0 && !e)
        e = errno;
    return e;
}

static int put(const outfile_job_t *j, plan_t *p, attn_err_t *err) {
    int fd;
    if (p->through) {
        fd = open(p->final, O_WRONLY | O_NOCTTY | O_CLOEXEC | (p->append ? O_APPEND : 0));
        if (fd < 0)
            return attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: %s", j->path, strerror(errno));
    } else if ((fd = make_tmp(p, j->path, err)) < 0) {
        return ATTN_ERUNTIME;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        return attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: %s", j->path, strerror(e));
    }
    /* A reader that leaves a FIFO early is an EPIPE to report, not a signal that kills the run. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    if (p->through)
        sigaction(SIGPIPE, &ign, &old);
    errno = 0;
    int e = j->fill(f, j->ctx) != 0 ? (errno ? errno : EIO) : 0;
    int e2 = finish(f, p->through);
    if (p->through)
        sigaction(SIGPIPE, &old, NULL);
    e = e ? e : e2;
    return e ? attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: %s", j->path, strerror(e)) : ATTN_OK;
}

/* The directory part of a resolved target ("." for a bare name). */
static void dir_of(const char *final, char *dir, size_t size) {
    snprintf(dir, size, "%s", final);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, size, ".");
    else
        slash == dir ? (void)(dir[1] = '\0') : (void)(*slash = '\0');
}

/* The canonical name of a resolved target (its directory through realpath, then its name), so
 * "o.npy", "./o.npy" and a link to it compare equal; "" when the directory cannot be resolved. */
static void canonical(const plan_t *p, char *out, size_t size) {
    char dir[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(p->final, '/'), *name = slash ? slash + 1 : p->final;
    dir_of(p->final, dir, sizeof dir);
    if (!realpath(dir, real) || snprintf(out, size, "%s/%s", real, name) >= (int)size)
        out[0] = '\0';
}

/* 1 when y is x's set marker, x + OUTFILE_PARTIAL. */
static int marks(const char *x, const char *y) {
    size_t n = strlen(x);
    return !strncmp(x, y, n) && !strcmp(y + n, OUTFILE_PARTIAL);
}

/* Two outputs that name one file would leave only the later one's bytes: refuse it; and one that
 * is another's marker would be overwritten, then removed, by the set's commit. */
static int distinct(const outfile_job_t *jobs, const plan_t *p, int n, attn_err_t *err) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) {
            char a[2 * PATH_MAX], b[2 * PATH_MAX];
            canonical(&p[i], a, sizeof a), canonical(&p[j], b, sizeof b);
            if (!strcmp(p[i].final, p[j].final) || (a[0] && !strcmp(a, b)))
                return attn_fail(err, ATTN_EUSAGE, "%s and %s are the same file: give each output its own path",
                                 jobs[j].path, jobs[i].path);
            int ij = marks(p[i].final, p[j].final) || (a[0] && b[0] && marks(a, b)); /* j is i's marker */
            int ji = marks(p[j].final, p[i].final) || (a[0] && b[0] && marks(b, a));
            if (ij || ji)
                return attn_fail(err, ATTN_EUSAGE, "%s would be the marker of %s while the set is written "
                                 "(docs/outputs.md): give it another name", ij ? jobs[j].path : jobs[i].path,
                                 ij ? jobs[i].path : jobs[j].path);
        }
    return ATTN_OK;
}

/* ---- a set of files: marked while its renames are under way ------------------------------ */

/* The marker of a resolved target: "<target>.partial". */
static int marker_of(const char *final, char *out, size_t size) {
    return snprintf(out, size, "%s%s", final, OUTFILE_PARTIAL) < (int)size;
}

/* fsync each directory that holds a staged target, once, so that its renames (or markers) are on
 * disk before the next step's. Best effort: a filesystem that cannot fsync a directory orders
 * nothing less by the attempt. */
static void sync_dirs(const plan_t *p, int n) {
    for (int i = 0; i < n; i++) {
        char dir[PATH_MAX], other[PATH_MAX];
        int seen = p[i].through;
        dir_of(p[i].final, dir, sizeof dir);
        for (int j = 0; j < i && !seen; j++)
            if (!p[j].through)
                dir_of(p[j].final, other, sizeof other), seen = !strcmp(dir, other);
        int fd = seen ? -1 : open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0)
            (void)fsync(fd), close(fd);
    }
}

/* Ctrl-C, a scheduler's SIGTERM, a closed terminal: held (process-wide, whichever thread takes
 * it) while a set's renames run, and raised once they are done, so only what cannot be caught
 * (SIGKILL, a crash, power loss) can split a set. A signal the process ignores stays ignored. */
static const int held_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
enum { N_HELD = sizeof held_signals / sizeof held_signals[0] };
static volatile sig_atomic_t held_sig;
static void hold(int sig) { held_sig = sig; }

static void hold_signals(struct sigaction *old) {
    struct sigaction h = {.sa_handler = hold, .sa_flags = SA_RESTART}; /* a held signal interrupts no call */
    sigemptyset(&h.sa_mask);
    held_sig = 0;
    for (int i = 0; i < N_HELD; i++) {
        sigaction(held_signals[i], NULL, &old[i]);
        if (old[i].sa_handler != SIG_IGN)
            sigaction(held_signals[i], &h, NULL);
    }
}

static void release_signals(const struct sigaction *old) {
    for (int i = 0; i < N_HELD; i++)
        sigaction(held_signals[i], &old[i], NULL);
    if (held_sig)
        raise(held_sig);
}

/* Removes the markers of the first n targets: all (all = 1: the set is whole now), or only
 * those this write made (it renamed nothing: an earlier write's marker still holds). */
static void unmark(const plan_t *p, int n, int all) {
    for (int i = 0; i < n; i++) {
        char m[PATH_MAX + 16];
        if (p[i].marked && (all || p[i].marked == 1) && marker_of(p[i].final, m, sizeof m))
            unlink(m);
    }
}

/* Every staged target's marker, created before the first rename and on disk (a marker must
 * never be younger than a rename it covers: the directories are synced; its text only explains
 * it, so the file itself is not); p->marked: 1 made here, 2 left by an earlier write that
 * stopped. On a failure the markers made here are gone again. */
static int mark_all(const outfile_job_t *jobs, plan_t *p, int n, attn_err_t *err) {
    static const char line[] = "attnbench: this file's set was being replaced when the write stopped (docs/outputs.md)\n";
    for (int i = 0; i < n; i++) {
        char m[PATH_MAX + 16] = "";
        struct stat st;
        if (p[i].through)
            continue;
        int fd = -1, e = ENAMETOOLONG;
        if (marker_of(p[i].final, m, sizeof m)) {
            p[i].marked = lstat(m, &st) == 0 ? 2 : 1;
            fd = open(m, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666);
            e = errno;
        }
        if (fd >= 0) {
            int bad = write(fd, line, sizeof line - 1) != (ssize_t)(sizeof line - 1);
            e = bad ? (errno ? errno : EIO) : 0;
            close(fd);
            fd = bad ? -1 : fd;
        }
        if (fd < 0) {
            unmark(p, i + 1, 0);
            return attn_fail(err, ATTN_ERUNTIME, "%s: cannot write its marker %s: %s", jobs[i].path, m, strerror(e));
        }
    }
    sync_dirs(p, n);
    return ATTN_OK;
}

/* Renames the staged files in job order. One staged file: its rename is the whole commit. Two
 * or more: marked first, renamed, synced, unmarked; a failure after some renames leaves the
 * markers (the set is mixed: readers must see that), one before any takes them away. */
static int commit(const outfile_job_t *jobs, plan_t *p, int n, attn_err_t *err) {
    int staged = 0, renamed = 0, rc = ATTN_OK;
    for (int i = 0; i < n; i++)
        staged += !p[i].through;
    struct sigaction old[N_HELD];
    if (staged > 1) {
        hold_signals(old);
        rc = mark_all(jobs, p, n, err);
    }
    for (int i = 0; i < n && rc == ATTN_OK; i++) {
        if (p[i].through)
            continue;
        if (rename(p[i].tmp, p[i].final) != 0)
            rc = attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: %s", jobs[i].path, strerror(errno));
        else
            p[i].tmp[0] = '\0', renamed++;
    }
    if (staged > 1) {
        if (rc == ATTN_OK) {
            sync_dirs(p, n); /* the renames on disk before the markers go */
            unmark(p, n, 1);
        } else if (renamed == 0) {
            unmark(p, n, 0);
        }
        release_signals(old);
    }
    return rc;
}

int outfile_write_all(const outfile_job_t *jobs, int n, attn_err_t *err) {
    plan_t *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    if (!p)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    int rc = ATTN_OK;
    for (int i = 0; i < n && rc == ATTN_OK; i++)
        rc = resolve(jobs[i].path, &p[i], err);
    if (rc == ATTN_OK)
        rc = distinct(jobs, p, n, err);
    for (int through = 0; through < 2; through++) /* files staged first, devices written after */
        for (int i = 0; i < n && rc == ATTN_OK; i++)
            if (p[i].through == through)
                rc = put(&jobs[i], &p[i], err);
    if (rc == ATTN_OK)
        rc = commit(jobs, p, n, err);
    for (int i = 0; i < n; i++)
        if (p[i].tmp[0])
            unlink(p[i].tmp);
    free(p);
    return rc;
}

int outfile_incomplete(const char *path, char *marker, size_t size) {
    plan_t p;
    attn_err_t e = {0};
    char m[PATH_MAX + 16];
    struct stat st;
    if (resolve(path, &p, &e) != ATTN_OK || p.through || !marker_of(p.final, m, sizeof m) || lstat(m, &st) != 0)
        return 0;
    if (marker)
        snprintf(marker, size, "%s", m);
    return 1;
}

int outfile_write(const char *path, outfile_fill_fn fill, void *ctx, attn_err_t *err) {
    outfile_job_t job = {path, fill, ctx};
    return outfile_write_all(&job, 1, err);
}

int outfile_check_all(const char *const *paths, int n, attn_err_t *err) {
    outfile_job_t jobs[8];
    plan_t p[8];
    if (n > 8)
        return attn_fail(err, ATTN_ERUNTIME, "internal: outfile_check_all takes at most 8 paths");
    for (int i = 0; i < n; i++) {
        ATTN_TRY(outfile_check(paths[i], err));
        ATTN_TRY(resolve(paths[i], &p[i], err));
        jobs[i] = (outfile_job_t){.path = paths[i]};
    }
    return distinct(jobs, p, n, err);
}

int outfile_check(const char *path, attn_err_t *err) {
    plan_t p;
    ATTN_TRY(resolve(path, &p, err));
    if (p.through)
        return access(p.final, W_OK) == 0 ? ATTN_OK
                                           : attn_fail(err, ATTN_ERUNTIME, "%s: cannot write: %s", path, strerror(errno));
    int fd = make_tmp(&p, path, err);
    if (fd < 0)
        return ATTN_ERUNTIME;
    close(fd);
    unlink(p.tmp);
    return ATTN_OK;
}

/* mkdir -p: each prefix in turn; EEXIST is fine (a regular file in the way fails one step later
 * with ENOTDIR, naming the path). */
int outfile_make_dirs(const char *dir, attn_err_t *err) {
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return attn_fail(err, ATTN_ERUNTIME, "output directory path too long: %s", dir);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return attn_fail(err, ATTN_ERUNTIME, "cannot create directory %s: %s", p, strerror(errno));
        *s = saved;
        if (!saved)
            return ATTN_OK;
    }
}

int outfile_check_dir(const char *dir, attn_err_t *err) {
    if (!dir || !dir[0])
        dir = ".";
    ATTN_TRY(outfile_make_dirs(dir, err));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return attn_fail(err, ATTN_ERUNTIME, "results directory %s: not a directory", dir);
    char probe[PATH_MAX];
    if (snprintf(probe, sizeof probe, "%s/.attnbench-probe.%ld.%u", dir, (long)getpid(),
                 atomic_fetch_add(&tmp_seq, 1)) >= (int)sizeof probe)
        return attn_fail(err, ATTN_ERUNTIME, "results directory %s: path too long", dir);
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        return attn_fail(err, ATTN_ERUNTIME, "results directory %s: cannot create files: %s", dir, strerror(errno));
    close(fd);
    unlink(probe);
    return ATTN_OK;
}
