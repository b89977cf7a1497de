/* plugin.c — the adapter between the public plugin ABI (include/attnbench/backend.h) and the
 * internal backend interface (core/backend.h): dlopen, the version and symbol checks, and one
 * attn_backend_t per plugin backend whose ops translate the problem and call the plugin's.
 * Internal structs never cross the boundary, so they may change while ABI 1 holds. */
#include "impls/plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "include/attnbench/backend.h"

typedef struct {
    attn_backend_t be;
    const attnb_backend_t *pb;
    char name[48], peer_name[64], peer_version[64];
} plugin_backend_t;

enum { MAX_PLUGINS = 16 };
static char loaded_paths[MAX_PLUGINS][PATH_MAX];
static int n_plugins;

static const attnb_backend_t *pb_of(const attn_backend_t *self) { return ((const plugin_backend_t *)self->ctx)->pb; }

static attnb_problem_t to_abi(const attn_problem_t *p) {
    attn_span_t qs = problem_q_span(p), ks = problem_k_span(p);
    return (attnb_problem_t){
        .batch = p->batch, .heads = p->heads, .kv_heads = p->kv_heads, .head_dim = p->head_dim,
        .n_q = p->n_q, .n_k = p->n_k,
        .mask = p->mask == ATTN_MASK_NONE ? ATTNB_MASK_NONE : p->mask == ATTN_MASK_CAUSAL ? ATTNB_MASK_CAUSAL
                                                                                             : ATTNB_MASK_WINDOW,
        .dtype = p->dtype == ATTN_F64 ? ATTNB_F64 : p->dtype == ATTN_BF16 ? ATTNB_BF16 : ATTNB_F32,
        .window = p->window, .scale = problem_scale(p),
        .q_start = qs.start, .q_stride = qs.stride, .k_start = ks.start, .k_stride = ks.stride,
        .block_q = p->block_q, .block_k = p->block_k,
        .doc = p->n_docs > 1 ? p->doc : NULL, .n_docs = p->n_docs > 1 ? p->n_docs : 0,
    };
}

static int plug_supports(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason,
                         size_t len) {
    (void)x;
    if (p->dtype == ATTN_F16) { /* to_abi would pass it on as f32: the ABI has no float16 */
        snprintf(reason, len, "%s: plugin ABI %d has no f16 dtype (f32, f64, bf16)", self->name, ATTNBENCH_ABI_VERSION);
        return 0;
    }
    attnb_problem_t ap = to_abi(p);
    char why[400] = "";
    if (pb_of(self)->supports(&ap, why, sizeof why))
        return 1;
    snprintf(reason, len, "%s declines: %s", self->name, why[0] ? why : "(the plugin gave no reason)");
    return 0;
}

static size_t plug_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)x;
    attnb_problem_t ap = to_abi(p);
    return pb_of(self)->workspace ? pb_of(self)->workspace(&ap) : 0;
}

static int plug_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io,
                        attn_err_t *err) {
    attnb_problem_t ap = to_abi(p);
    size_t ws = plug_workspace(self, p, x);
    attnb_call_t call = {.q = io->q, .k = io->k, .v = io->v, .o = io->o, .lse = io->lse,
                         .workspace_bytes = ws, .threads = exec_threads(x)};
    if (ws && !(call.workspace = attn_alloc(ws, err, "plugin workspace"))) /* counted by the memory task */
        return ATTN_ERUNTIME;
    char msg[512] = "";
    int rc = pb_of(self)->forward(&ap, &call, msg, sizeof msg);
    attn_free(call.workspace);
    if (rc != 0)
        return attn_fail(err, ATTN_ERUNTIME, "%s (plugin %s): %s", self->name, self->peer_name,
                         msg[0] ? msg : "forward failed without a message");
    if (io->device_s && call.device_seconds > 0)
        *io->device_s = call.device_seconds;
    /* as every built-in whole-problem forward ends (docs/nonfinite.md) */
    problem_finish_rows(p->dtype, io->o, io->lse, problem_numel_lse(p), p->head_dim);
    return ATTN_OK;
}

static size_t plug_backward_workspace(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x) {
    (void)x;
    attnb_problem_t ap = to_abi(p);
    return pb_of(self)->backward_workspace ? pb_of(self)->backward_workspace(&ap) : 0;
}

/* Installed only for plugin backends with a backward: the rest keep backward NULL, so
 * backend_supports_backward declines them as it does built-in forward-only backends. */
static int plug_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                         const attn_grad_io_t *g, attn_err_t *err) {
    attnb_problem_t ap = to_abi(p);
    size_t ws = plug_backward_workspace(self, p, x);
    attnb_grad_call_t call = {.q = g->q, .k = g->k, .v = g->v, .o = g->o, .lse = g->lse, .d_o = g->d_o,
                              .dq = g->dq, .dk = g->dk, .dv = g->dv, .workspace_bytes = ws,
                              .threads = exec_threads(x)};
    if (ws && !(call.workspace = attn_alloc(ws, err, "plugin backward workspace")))
        return ATTN_ERUNTIME;
    char msg[512] = "";
    int rc = pb_of(self)->backward(&ap, &call, msg, sizeof msg);
    attn_free(call.workspace);
    if (rc != 0)
        return attn_fail(err, ATTN_ERUNTIME, "%s (plugin %s): %s", self->name, self->peer_name,
                         msg[0] ? msg : "backward failed without a message");
    return ATTN_OK;
}

static int name_ok(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 40)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* Everything a plugin's table must satisfy, checked before any of its backends is registered. */
static int check_table(const char *path, const attnb_plugin_t *t, attn_err_t *err) {
    if (t->n_backends < 1 || t->n_backends > 32 || !t->backends)
        return attn_fail(err, ATTN_EUSAGE, "--plugin %s: %d backends (1..32 expected)", path, (int)t->n_backends);
    for (int i = 0; i < t->n_backends; i++) {
        const attnb_backend_t *b = &t->backends[i];
        if (!name_ok(b->name))
            return attn_fail(err, ATTN_EUSAGE, "--plugin %s: backend %d's name '%.60s' is not 1..40 of [a-z0-9_]", path,
                             i, b->name ? b->name : "(null)");
        if (!b->supports || !b->forward)
            return attn_fail(err, ATTN_EUSAGE, "--plugin %s: backend '%s' lacks supports or forward", path, b->name);
        if (!b->device || (strcmp(b->device, "cpu") && strcmp(b->device, "cuda")))
            return attn_fail(err, ATTN_EUSAGE, "--plugin %s: backend '%s': device must be \"cpu\" or \"cuda\"", path,
                             b->name);
        if (registry_find(b->name))
            return attn_fail(err, ATTN_EUSAGE, "--plugin %s: backend '%s' is already defined", path, b->name);
        for (int j = 0; j < i; j++)
            if (!strcmp(t->backends[j].name, b->name))
                return attn_fail(err, ATTN_EUSAGE, "--plugin %s: backend '%s' twice in its table", path, b->name);
    }
    return ATTN_OK;
}

int plugin_load(const char *path, attn_err_t *err) {
    char real[PATH_MAX];
    if (!realpath(path, real))
        return attn_fail(err, ATTN_EUSAGE, "--plugin %s: cannot load: %s", path,
                         errno == ENOENT ? "no such file" : strerror(errno));
    for (int i = 0; i < n_plugins; i++)
        if (!strcmp(loaded_paths[i], real))
            return ATTN_OK;
    if (n_plugins == MAX_PLUGINS)
        return attn_fail(err, ATTN_EUSAGE, "--plugin %s: at most %d plugins", path, MAX_PLUGINS);
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return attn_fail(err, ATTN_EUSAGE, "--plugin %s: cannot load: %s", path, dlerror());
    const attnb_plugin_t *(*entry)(void);
    *(void **)&entry = dlsym(h, ATTNBENCH_PLUGIN_SYMBOL); /* POSIX's blessed cast to a function pointer */
    const attnb_plugin_t *t = entry ? entry() : NULL;
    int rc = ATTN_OK;
    if (!entry)
        rc = attn_fail(err, ATTN_EUSAGE, "--plugin %s: no symbol '%s' (not an attnbench plugin)", path,
                       ATTNBENCH_PLUGIN_SYMBOL);
    else if (!t)
        rc = attn_fail(err, ATTN_EUSAGE, "--plugin %s: %s() returned no table", path, ATTNBENCH_PLUGIN_SYMBOL);
    else if (t->abi_version != ATTNBENCH_ABI_VERSION) /* read first: nothing else of t is trusted */
        rc = attn_fail(err, ATTN_EUSAGE,
                       "--plugin %s: built for plugin ABI version %d%s, this attnbench speaks version %d only "
                       "(include/attnbench/backend.h): rebuild it against that header",
                       path, (int)t->abi_version,
                       t->abi_version == 0 ? " (the unstable draft, without documents and backward)" : "",
                       ATTNBENCH_ABI_VERSION);
    else
        rc = check_table(path, t, err);
    plugin_backend_t *wrap = rc == ATTN_OK ? calloc((size_t)t->n_backends, sizeof *wrap) : NULL;
    if (rc == ATTN_OK && !wrap)
        rc = attn_fail(err, ATTN_ERUNTIME, "out of memory loading %s", path);
    if (rc != ATTN_OK) {
        dlclose(h);
        return rc;
    }
    for (int i = 0; i < t->n_backends; i++) { /* the process keeps h and wrap: the registry points into them */
        plugin_backend_t *w = &wrap[i];
        w->pb = &t->backends[i];
        snprintf(w->name, sizeof w->name, "%s", w->pb->name);
        snprintf(w->peer_name, sizeof w->peer_name, "%s", t->name && *t->name ? t->name : path);
        snprintf(w->peer_version, sizeof w->peer_version, "%s", t->version && *t->version ? t->version : "unversioned");
        w->be = (attn_backend_t){.name = w->name, .device = w->pb->device,
                                 .description = w->pb->description ? w->pb->description : "(plugin)",
                                 .supports = plug_supports, .forward = plug_forward, .workspace_bytes = plug_workspace,
                                 .ctx = w, .peer_kind = "plugin", .peer_name = w->peer_name,
                                 .peer_version = w->peer_version};
        if (w->pb->backward) {
            w->be.backward = plug_backward;
            w->be.backward_workspace_bytes = plug_backward_workspace;
        }
        ATTN_TRY(registry_add(&w->be, err)); /* names were checked: this cannot fail */
    }
    snprintf(loaded_paths[n_plugins++], PATH_MAX, "%s", real);
    return ATTN_OK;
}

int plugin_load_env(attn_err_t *err) {
    const char *env = getenv("ATTNBENCH_PLUGINS");
    if (!env || !*env)
        return ATTN_OK;
    char *copy = strdup(env);
    if (!copy)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    int rc = ATTN_OK;
    for (char *save = NULL, *p = strtok_r(copy, ":", &save); p && rc == ATTN_OK; p = strtok_r(NULL, ":", &save))
        rc = plugin_load(p, err);
    if (rc != ATTN_OK) /* say where the path came from */
        snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg), " (from ATTNBENCH_PLUGINS)");
    free(copy);
    return rc;
}
