/* exec.c — backends that are external programs (`--backends exec:NAME --exec-spec FILE`), for
 * kernels in other languages. forward writes Q, K, V as .npy into a private temporary directory,
 * runs the program, reads O and LSE back; time_self lets the program time itself on its own
 * seeded inputs. Every run is bounded by the spec's timeout. Protocol: docs/exec-protocol.md. */
#include "impls/plugin.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/npy.h"
#include "impls/exec_process.h"

enum { MAX_SPECS = 16 };

typedef struct {
    attn_backend_t be;
    char name[48], peer[64], version[64], device[8], spec[PATH_MAX], description[160];
    char *argv[EXEC_MAX_ARGS]; /* the command; each call appends its mode and request */
    int argc;
    int dtypes;         /* bit per attn_dtype_t it computes in (a string or a list in the spec) */
    int masks;          /* bit per attn_mask_t it takes */
    double max_bytes, timeout_s;
    char unavailable[400]; /* non-empty: why every case is declined */
} exec_backend_t;

static exec_backend_t *specs[MAX_SPECS];
static int n_specs;

static const exec_backend_t *ex_of(const attn_backend_t *self) { return self->ctx; }

static int run_program(const exec_backend_t *e, const char *const *extra, int n_extra, const char *dir,
                       attn_err_t *err) {
    exec_cmd_t cmd = {e->name, e->argv, e->argc, e->timeout_s, e->spec};
    return exec_process_run(&cmd, extra, n_extra, dir, err);
}

/* The request: the problem, positions, and the files, as JSON (docs/exec-protocol.md). */
static int write_request(const exec_backend_t *e, const attn_problem_t *p, const attn_exec_t *x, const char *dir,
                         const char *mode, uint64_t seed, int warmup, int repeats, attn_err_t *err) {
    char path[PATH_MAX], f[5][PATH_MAX];
    static const char *const fn[5] = {"q", "k", "v", "o", "lse"};
    for (int i = 0; i < 5; i++)
        snprintf(f[i], sizeof f[i], "%s/%s.npy", dir, fn[i]);
    snprintf(path, sizeof path, "%s/request.json", dir);
    json_t *r = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:f, s:s, s:I, s:I, s:i, s:i}", "mode",
                          mode, "peer", e->peer, "batch", (json_int_t)p->batch, "heads", (json_int_t)p->heads,
                          "kv_heads", (json_int_t)p->kv_heads, "head_dim", (json_int_t)p->head_dim, "n_q",
                          (json_int_t)p->n_q, "n_k", (json_int_t)p->n_k, "mask", mask_name(p->mask), "window",
                          (json_int_t)p->window, "scale", problem_scale(p), "dtype", dtype_name(p->dtype), "q_start",
                          (json_int_t)problem_q_span(p).start, "k_start", (json_int_t)problem_k_span(p).start,
                          "threads", exec_threads(x), "device", x->device);
    int ok = r != NULL;
    if (ok && !strcmp(mode, "forward"))
        ok = !json_object_set_new(r, "q", json_string(f[0])) && !json_object_set_new(r, "k", json_string(f[1])) &&
             !json_object_set_new(r, "v", json_string(f[2])) && !json_object_set_new(r, "o", json_string(f[3])) &&
             !json_object_set_new(r, "lse", json_string(f[4]));
    else if (ok)
        ok = !json_object_set_new(r, "seed", json_integer((json_int_t)(seed & INT64_MAX))) &&
             !json_object_set_new(r, "warmup", json_integer(warmup)) &&
             !json_object_set_new(r, "repeats", json_integer(repeats));
    ok = ok && json_dump_file(r, path, JSON_COMPACT) == 0;
    json_decref(r);
    return ok ? ATTN_OK : attn_fail(err, ATTN_ERUNTIME, "%s: cannot write %s", e->name, path);
}

/* ---- the backend ops ---------------------------------------------------------------------- */

static double io_bytes_f(const attn_problem_t *p) {
    return (double)dtype_size(p->dtype) *
           (2.0 * (double)problem_numel_q(p) + 2.0 * (double)problem_numel_kv(p) + (double)problem_numel_lse(p));
}

static int ex_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                       size_t len) {
    (void)x;
    const exec_backend_t *e = ex_of(self);
    if (e->unavailable[0]) {
        snprintf(reason, len, "%s cannot run here: %s", e->name, e->unavailable);
        return 0;
    }
    if (!(e->dtypes & (1 << p->dtype))) {
        char have[64] = "";
        for (int t = ATTN_F32; t <= ATTN_F16; t++)
            if (e->dtypes & (1 << t))
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", have[0] ? ", " : "",
                         dtype_name((attn_dtype_t)t));
        snprintf(reason, len, "%s computes in %s only (its spec's dtype), not %s", e->name, have, dtype_name(p->dtype));
        return 0;
    }
    if (!(e->masks & (1 << p->mask))) {
        snprintf(reason, len, "%s declines mask %s (its spec's masks)", e->name, mask_name(p->mask));
        return 0;
    }
    if (io_bytes_f(p) > e->max_bytes) {
        snprintf(reason, len, "%s: Q, K, V, O and LSE would be %.0f bytes, over its spec's max_bytes %.0f", e->name,
                 io_bytes_f(p), e->max_bytes);
        return 0;
    }
    return 1;
}

static size_t ex_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)self, (void)p, (void)x;
    return 0; /* the program's memory is its own process's */
}

/* path must hold `numel` elements of shape (a, b, c[, d]); copied into dst as the problem's dtype. */
static int read_output(const exec_backend_t *e, const char *path, const char *what, const int64_t *shape, int ndim,
                       attn_dtype_t dtype, void *dst, attn_err_t *err) {
    npy_array_t a = {0};
    attn_err_t sub = {0};
    if (npy_read(path, &a, &sub) != ATTN_OK)
        return attn_fail(err, ATTN_ERUNTIME, "%s: its %s: %s", e->name, what, sub.msg);
    int same = a.ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = a.shape[i] == shape[i];
    if (!same) {
        npy_free(&a);
        char got[160] = "", want[160] = "";
        for (int i = 0; i < a.ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)a.shape[i]);
        for (int i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "", (long long)shape[i]);
        return attn_fail(err, ATTN_ERUNTIME, "%s: its %s has shape (%s), expected (%s)", e->name, what, got, want);
    }
    for (size_t i = 0; i < a.numel; i++) {
        double v = a.dtype == ATTN_F64 ? ((const double *)a.data)[i] : (double)((const float *)a.data)[i];
        if (dtype == ATTN_F64)
            ((double *)dst)[i] = v;
        else
            ((float *)dst)[i] = (float)v;
    }
    npy_free(&a);
    return ATTN_OK;
}

static int ex_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                      attn_err_t *err) {
    const exec_backend_t *e = ex_of(self);
    char dir[PATH_MAX], path[5][PATH_MAX + 16];
    ATTN_TRY(exec_dir_make(e->name, dir, sizeof dir, err));
    static const char *const fn[5] = {"q", "k", "v", "o", "lse"};
    for (int i = 0; i < 5; i++)
        snprintf(path[i], sizeof path[i], "%s/%s.npy", dir, fn[i]);
    attn_dtype_t file_t = p->dtype == ATTN_F64 ? ATTN_F64 : ATTN_F32; /* bf16, f16 cases: float32 arrays */
    int64_t qs[4] = {p->batch, p->heads, p->n_q, p->head_dim}, ks[4] = {p->batch, p->kv_heads, p->n_k, p->head_dim};
    int rc = npy_write(path[0], file_t, 4, qs, io->q, err);
    if (rc == ATTN_OK)
        rc = npy_write(path[1], file_t, 4, ks, io->k, err);
    if (rc == ATTN_OK)
        rc = npy_write(path[2], file_t, 4, ks, io->v, err);
    if (rc == ATTN_OK)
        rc = write_request(e, p, x, dir, "forward", 0, 0, 0, err);
    char req[PATH_MAX + 16];
    snprintf(req, sizeof req, "%s/request.json", dir);
    const char *extra[2] = {"forward", req};
    if (rc == ATTN_OK && (rc = run_program(e, extra, 2, dir, err)) == EXEC_UNAVAILABLE)
        rc = err->code = ATTN_ERUNTIME; /* a runtime failure here, whatever the program's reason */
    if (rc == ATTN_OK)
        rc = read_output(e, path[3], "O (o.npy)", qs, 4, p->dtype, io->o, err);
    if (rc == ATTN_OK)
        rc = read_output(e, path[4], "LSE (lse.npy)", qs, 3, p->dtype, io->lse, err);
    exec_dir_remove(dir);
    return rc;
}

/* The program's reply to "time": the last stdout line that is a JSON object,
 * {"seconds": [repeats values > 0], "timing": "cuda_events" | "wall" | …}. */
static int ex_time_self(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, uint64_t seed,
                        int warmup, int repeats, double *secs, char *timing, size_t timing_len, attn_err_t *err) {
    const exec_backend_t *e = ex_of(self);
    char dir[PATH_MAX], req[PATH_MAX + 16], out[PATH_MAX + 16];
    ATTN_TRY(exec_dir_make(e->name, dir, sizeof dir, err));
    snprintf(req, sizeof req, "%s/request.json", dir);
    snprintf(out, sizeof out, "%s/stdout", dir);
    const char *extra[2] = {"time", req};
    int rc = write_request(e, p, x, dir, "time", seed, warmup, repeats, err);
    if (rc == ATTN_OK && (rc = run_program(e, extra, 2, dir, err)) == EXEC_UNAVAILABLE)
        rc = err->code = ATTN_ERUNTIME;
    json_t *reply = NULL;
    if (rc == ATTN_OK) {
        FILE *f = fopen(out, "r");
        char line[65536];
        while (f && fgets(line, sizeof line, f))
            if (line[0] == '{') {
                json_decref(reply);
                reply = json_loads(line, 0, NULL);
            }
        if (f)
            fclose(f);
        if (!reply)
            rc = attn_fail(err, ATTN_ERUNTIME, "%s: printed no JSON line on stdout (expected {\"seconds\": [...]})",
                           e->name);
    }
    json_t *s = reply ? json_object_get(reply, "seconds") : NULL;
    if (rc == ATTN_OK && (!json_is_array(s) || (int)json_array_size(s) != repeats))
        rc = attn_fail(err, ATTN_ERUNTIME, "%s: its reply's \"seconds\" is not a list of %d numbers", e->name, repeats);
    for (int i = 0; i < repeats && rc == ATTN_OK; i++) {
        secs[i] = json_number_value(json_array_get(s, (size_t)i));
        if (!json_is_number(json_array_get(s, (size_t)i)) || !(secs[i] > 0) || !isfinite(secs[i]))
            rc = attn_fail(err, ATTN_ERUNTIME, "%s: its seconds[%d] is not a positive number", e->name, i);
    }
    const char *t = reply ? json_string_value(json_object_get(reply, "timing")) : NULL;
    snprintf(timing, timing_len, "%s", t ? t : "peer");
    json_decref(reply);
    exec_dir_remove(dir);
    return rc;
}

/* ---- the spec ----------------------------------------------------------------------------- */

static int spec_fail(attn_err_t *err, const char *path, const char *what) {
    return attn_fail(err, ATTN_EUSAGE, "--exec-spec %s: %s", path, what);
}

/* No version in the spec: the program's own answer to `--version` (its last stdout line). */
static int ask_version(exec_backend_t *e, attn_err_t *err) {
    char dir[PATH_MAX], out[PATH_MAX + 16], line[256] = "";
    ATTN_TRY(exec_dir_make(e->name, dir, sizeof dir, err));
    const char *extra[1] = {"--version"};
    attn_err_t sub = {0};
    int rc = run_program(e, extra, 1, dir, &sub);
    if (rc == ATTN_OK) {
        snprintf(out, sizeof out, "%s/stdout", dir);
        exec_file_tail(out, line, sizeof line);
        char *last = strrchr(line, ';');
        snprintf(e->version, sizeof e->version, "%s", last ? last + 1 : line);
    }
    exec_dir_remove(dir);
    if (rc == EXEC_UNAVAILABLE) {
        snprintf(e->unavailable, sizeof e->unavailable, "%.399s", sub.msg);
        snprintf(e->version, sizeof e->version, "unavailable");
        return ATTN_OK;
    }
    if (rc != ATTN_OK)
        return attn_fail(err, ATTN_EUSAGE, "--exec-spec %s: no \"version\", and `%s --version` failed: %s", e->spec,
                         e->argv[0], sub.msg);
    if (!e->version[0])
        snprintf(e->version, sizeof e->version, "unversioned");
    return ATTN_OK;
}

static int parse_spec(exec_backend_t *e, const char *path, json_t *root, attn_err_t *err) {
    static const char *const keys[] = {"name", "command", "dtype", "peer", "version", "max_bytes", "timeout_s",
                                       "masks", "device", "description"};
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        size_t k = 0;
        while (k < sizeof keys / sizeof keys[0] && strcmp(keys[k], key))
            k++;
        if (k == sizeof keys / sizeof keys[0])
            return attn_fail(err, ATTN_EUSAGE, "--exec-spec %s: unknown key '%s'", path, key);
    }
    const char *name = json_string_value(json_object_get(root, "name"));
    size_t nl = name ? strlen(name) : 0;
    if (nl < 1 || nl > 32 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != nl)
        return spec_fail(err, path, "\"name\" must be 1..32 of [a-z0-9_]");
    snprintf(e->name, sizeof e->name, "exec:%s", name);
    json_t *cmd = json_object_get(root, "command");
    if (!json_is_array(cmd) || json_array_size(cmd) < 1 || json_array_size(cmd) > EXEC_MAX_ARGS)
        return spec_fail(err, path, "\"command\" must be a list of 1..32 strings (argv)");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", e->spec);
    char *slash = strrchr(dir, '/');
    *slash = '\0'; /* e->spec is a real path */
    for (size_t i = 0; i < json_array_size(cmd); i++) {
        const char *a = json_string_value(json_array_get(cmd, i));
        if (!a || !*a)
            return spec_fail(err, path, "\"command\" must be a list of non-empty strings");
        /* "{spec_dir}" stands for the spec's directory, so a spec may name a program beside it */
        char buf[2 * PATH_MAX];
        const char *at = strstr(a, "{spec_dir}");
        if (at)
            snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - a), a, dir, at + 10);
        else
            snprintf(buf, sizeof buf, "%s", a);
        if (!(e->argv[e->argc++] = strdup(buf)))
            return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    }
    /* "dtype": one name, or a non-empty list of them (a peer that computes in bf16 and f16). */
    json_t *dts = json_object_get(root, "dtype");
    size_t n_dt = json_is_array(dts) ? json_array_size(dts) : 1;
    e->dtypes = 0;
    for (size_t i = 0; i < n_dt; i++) {
        const char *dt = json_string_value(json_is_array(dts) ? json_array_get(dts, i) : dts);
        attn_dtype_t t;
        if (!dt || !dtype_parse(dt, &t))
            return spec_fail(err, path, "\"dtype\" must be f32, f64, bf16 or f16, or a non-empty list of them (the "
                                        "dtypes the program computes in)");
        e->dtypes |= 1 << t;
    }
    if (!e->dtypes)
        return spec_fail(err, path, "\"dtype\" must be f32, f64, bf16 or f16, or a non-empty list of them (the "
                                    "dtypes the program computes in)");
    json_t *peer = json_object_get(root, "peer"), *ver = json_object_get(root, "version");
    if ((peer && !json_is_string(peer)) || (ver && !json_is_string(ver)))
        return spec_fail(err, path, "\"peer\" and \"version\" must be strings");
    snprintf(e->peer, sizeof e->peer, "%s", peer ? json_string_value(peer) : name);
    snprintf(e->version, sizeof e->version, "%s", ver ? json_string_value(ver) : "");
    const char *dev = json_string_value(json_object_get(root, "device"));
    if (json_object_get(root, "device") && (!dev || (strcmp(dev, "cpu") && strcmp(dev, "cuda"))))
        return spec_fail(err, path, "\"device\" must be \"cpu\" or \"cuda\"");
    snprintf(e->device, sizeof e->device, "%s", dev ? dev : "cpu");
    json_t *mb = json_object_get(root, "max_bytes"), *to = json_object_get(root, "timeout_s");
    e->max_bytes = mb ? json_number_value(mb) : 1073741824.0;
    e->timeout_s = to ? json_number_value(to) : 600;
    if ((mb && !json_is_number(mb)) || !(e->max_bytes >= 1))
        return spec_fail(err, path, "\"max_bytes\" must be a number ≥ 1 (bytes of Q, K, V, O and LSE)");
    if ((to && !json_is_number(to)) || !(e->timeout_s > 0 && e->timeout_s <= 86400))
        return spec_fail(err, path, "\"timeout_s\" must be a number of seconds in (0, 86400]");
    json_t *desc = json_object_get(root, "description");
    if (desc && !json_is_string(desc))
        return spec_fail(err, path, "\"description\" must be a string");
    snprintf(e->description, sizeof e->description, "%s%s", desc ? "" : "external program: ",
             desc ? json_string_value(desc) : e->argv[e->argc - 1]);
    json_t *masks = json_object_get(root, "masks");
    e->masks = masks ? 0 : 7;
    if (masks && (!json_is_array(masks) || json_array_size(masks) == 0))
        return spec_fail(err, path, "\"masks\" must be a non-empty list of none, causal, window");
    for (size_t i = 0; masks && i < json_array_size(masks); i++) {
        attn_mask_t m;
        const char *s = json_string_value(json_array_get(masks, i));
        if (!s || !mask_parse(s, &m))
            return spec_fail(err, path, "\"masks\" must be a non-empty list of none, causal, window");
        e->masks |= 1 << m;
    }
    return ATTN_OK;
}

int exec_spec_load(const char *path, attn_err_t *err) {
    char real[PATH_MAX];
    if (!realpath(path, real))
        return attn_fail(err, ATTN_EUSAGE, "--exec-spec %s: %s", path, errno == ENOENT ? "no such file" : strerror(errno));
    for (int i = 0; i < n_specs; i++)
        if (!strcmp(specs[i]->spec, real))
            return ATTN_OK;
    if (n_specs == MAX_SPECS)
        return attn_fail(err, ATTN_EUSAGE, "--exec-spec %s: at most %d specs", path, MAX_SPECS);
    json_error_t jerr;
    json_t *root = json_load_file(real, 0, &jerr);
    if (!root)
        return attn_fail(err, ATTN_EUSAGE, "--exec-spec %s: %s (line %d, column %d)", path, jerr.text, jerr.line,
                         jerr.column);
    exec_backend_t *e = calloc(1, sizeof *e);
    int rc = e ? ATTN_OK : attn_fail(err, ATTN_ERUNTIME, "out of memory");
    if (rc == ATTN_OK) {
        snprintf(e->spec, sizeof e->spec, "%s", real);
        rc = json_is_object(root) ? parse_spec(e, path, root, err) : spec_fail(err, path, "must be a JSON object");
    }
    json_decref(root);
    if (rc == ATTN_OK && registry_find(e->name))
        rc = attn_fail(err, ATTN_EUSAGE, "--exec-spec %s: backend '%s' is already defined", path, e->name);
    if (rc == ATTN_OK && !e->version[0])
        rc = ask_version(e, err);
    if (rc == ATTN_OK) {
        e->be = (attn_backend_t){.name = e->name, .device = e->device, .description = e->description,
                                 .supports = ex_supports, .forward = ex_forward, .workspace_bytes = ex_workspace,
                                 .ctx = e, .peer_kind = "exec", .peer_name = e->peer, .peer_version = e->version,
                                 .time_self = ex_time_self};
        rc = registry_add(&e->be, err);
    }
    if (rc != ATTN_OK) {
        for (int i = 0; e && i < e->argc; i++)
            free(e->argv[i]);
        free(e);
        return rc;
    }
    specs[n_specs++] = e;
    return ATTN_OK;
}
