/* test_supports_backward.c — the supports_backward hook (core/backend.h): a backend whose backward
 * declines a case (here a stand-in that declines causal masks) gets a `skipped` record with the
 * reason from every task that runs a backward (exactness, throughput, memory, model), the task
 * returns ATTN_OK and the backward is never called on the declined case; in a CUDA build, the GPU
 * backends' hooks decline what their backward cannot run, naming why, without a device. */
#include <stdio.h>
#include <string.h>

#include "cli/options.h"
#include "core/backend.h"
#include "tasks/task.h"
#include "tests/check.h"

static const char WHY[] = "the stand-in's backward declines causal masks";
static attn_backend_t standin;
static const attn_backend_t *naive;
static int declined_calls, taken_calls;

static int standin_takes(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *why,
                         size_t len) {
    (void)self, (void)x;
    if (p->mask == ATTN_MASK_CAUSAL) {
        snprintf(why, len, "%s", WHY);
        return 0;
    }
    return 1;
}

static int standin_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x,
                            const attn_grad_io_t *g, attn_err_t *err) {
    (void)self;
    if (p->mask == ATTN_MASK_CAUSAL) {
        declined_calls++;
        return attn_fail(err, ATTN_ERUNTIME, "the backward ran on a case its hook declines");
    }
    taken_calls++;
    return naive->backward(naive, p, x, g, err);
}

static void run_task(const char *task, const char *direction, int (*fn)(const attn_opts_t *, attn_run_t *, attn_err_t *),
                     int want_fwd) {
    attn_opts_t o;
    opts_defaults(&o);
    attn_err_t err = {0};
    const char *kv[][2] = {{"backends", "bwd_standin"}, {"seq-len", "48"}, {"heads", "2"}, {"kv-heads", "1"},
                           {"head-dim", "16"}, {"mask", "none,causal"}, {"threads", "1"}, {"direction", direction},
                           {"repeats", "1"}, {"warmup", "0"}, {"layers", "1"}, {"vocab", "50"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (opts_set(&o, kv[i][0], kv[i][1], &err) != ATTN_OK) {
            check(0, task, "option %s: %s", kv[i][0], err.msg);
            return;
        }
    declined_calls = taken_calls = 0;
    attn_run_t run;
    char *argv[] = {"test_supports_backward"};
    char name[96];
    snprintf(name, sizeof name, "%s --direction %s runs (ATTN_OK)", task, direction);
    if (!check(results_run_init(&run, 1, argv, o.seed, 1, &err) == ATTN_OK && fn(&o, &run, &err) == ATTN_OK, name,
               "%s", err.msg))
        return;
    int skipped = 0, bwd_ok = 0, fwd = 0, errors = 0;
    for (int i = 0; i < run.n_records; i++) {
        const attn_record_t *r = &run.records[i];
        int bwd = 0;
        for (int e = 0; e < r->n_extra; e++)
            bwd |= !strcmp(r->extra[e].key, "direction") && !r->extra[e].is_num && !strcmp(r->extra[e].str, "backward");
        if (r->status == REC_ERROR)
            errors++;
        if (!bwd) {
            fwd++;
            continue;
        }
        if (r->config.mask == ATTN_MASK_CAUSAL)
            skipped += r->status == REC_SKIPPED && strstr(r->reason, WHY) != NULL;
        else
            bwd_ok += r->status == REC_PASS;
    }
    snprintf(name, sizeof name, "%s --direction %s: causal backward skipped with the reason", task, direction);
    check(skipped == 1 && declined_calls == 0 && errors == 0, name, "%d skipped, %d calls, %d errors (%d records)",
          skipped, declined_calls, errors, run.n_records);
    snprintf(name, sizeof name, "%s --direction %s: the taken backward case passes", task, direction);
    check(bwd_ok == 1 && taken_calls >= 1, name, "%d passed, %d calls", bwd_ok, taken_calls);
    snprintf(name, sizeof name, "%s --direction %s: forward records", task, direction);
    check(fwd == want_fwd, name, "%d, want %d", fwd, want_fwd);
    results_run_free(&run);
}

/* A GPU backend's hook, called directly (it needs no device): declines with `want` in the reason. */
static void gpu_declines(const char *backend, attn_problem_t p, attn_exec_t x, const char *want) {
    const attn_backend_t *b = registry_find(backend);
    if (!b)
        return; /* a CPU-only build */
    char why[512] = "", name[160];
    snprintf(name, sizeof name, "%s's supports_backward declines (%s)", backend, want);
    check(b->supports_backward && !b->supports_backward(b, &p, &x, why, sizeof why) && strstr(why, want), name,
          "got '%s'", why);
}

/* A hook whose check needs the device (free memory): whatever it says without one, the reason is
 * not `unwanted` (a transport it no longer declines). */
static void gpu_not_declined_for(const char *backend, attn_problem_t p, attn_exec_t x, const char *unwanted) {
    const attn_backend_t *b = registry_find(backend);
    if (!b)
        return;
    char why[512] = "", name[160];
    snprintf(name, sizeof name, "%s's supports_backward does not decline for '%s'", backend, unwanted);
    check(b->supports_backward && (b->supports_backward(b, &p, &x, why, sizeof why) || !strstr(why, unwanted)), name,
          "got '%s'", why);
}

static void gpu_takes(const char *backend, attn_problem_t p, attn_exec_t x) {
    const attn_backend_t *b = registry_find(backend);
    if (!b)
        return;
    char why[512] = "", name[160];
    snprintf(name, sizeof name, "%s's supports_backward takes %s d=%lld P=%d %s", backend, dtype_name(p.dtype),
             (long long)p.head_dim, x.ranks, transport_name(x.transport));
    check(b->supports_backward && b->supports_backward(b, &p, &x, why, sizeof why), name, "declines: %s", why);
}

int main(void) {
    task_set_progress(0);
    naive = registry_find("naive");
    standin = *naive;
    standin.name = "bwd_standin";
    standin.backward = standin_backward;
    standin.supports_backward = standin_takes;
    attn_err_t err = {0};
    if (!check(registry_add(&standin, &err) == ATTN_OK, "register the stand-in", "%s", err.msg))
        return check_summary();
    /* backend_supports_backward itself: the hook's reason comes back as the decline. */
    attn_problem_t p = {.batch = 1, .heads = 2, .kv_heads = 1, .head_dim = 16, .n_q = 8, .n_k = 8,
                        .mask = ATTN_MASK_CAUSAL, .dtype = ATTN_F32};
    attn_exec_t x = exec_default();
    char why[512] = "";
    check(!backend_supports_backward(&standin, &p, &x, why, sizeof why) && !strcmp(why, WHY),
          "backend_supports_backward returns the hook's reason", "'%s'", why);
    check(backend_supports(&standin, &p, &x, why, sizeof why), "the forward still takes the case", "%s", why);
    run_task("exactness", "backward", task_exactness, 0);
    run_task("exactness", "both", task_exactness, 2);
    run_task("throughput", "backward", task_throughput, 0);
    run_task("memory", "both", task_memory, 2);
    run_task("model", "backward", task_model, 0);

    /* The GPU backends' hooks (CUDA builds; skipped silently in CPU-only ones). */
    attn_problem_t g = {.batch = 1, .heads = 8, .kv_heads = 2, .head_dim = 64, .n_q = 256, .n_k = 256,
                        .mask = ATTN_MASK_CAUSAL, .dtype = ATTN_BF16};
    attn_problem_t f16 = g, d96 = g, f32 = g;
    f16.dtype = ATTN_F16, d96.head_dim = 96, f32.dtype = ATTN_F32;
    attn_exec_t one = exec_default(), loc = one, nccl = one;
    loc.ranks = nccl.ranks = 2;
    loc.transport = ATTN_TRANSPORT_CUDA_LOCAL, nccl.transport = ATTN_TRANSPORT_NCCL;
    gpu_declines("blockwise_cuda", f32, one, "bf16 or f16");
    gpu_declines("sliding_window_cuda", d96, one, "head dims");
    gpu_takes("blockwise_cuda", g, one);
    gpu_takes("blockwise_cuda", f16, one);
    gpu_declines("ring_cuda", f32, loc, "bf16 or f16");
    gpu_declines("ring_cuda", d96, loc, "head dims");
    gpu_takes("ring_cuda", f16, loc);
    gpu_takes("zigzag_cuda", g, nccl);
    gpu_takes("striped_cuda", g, loc);
    gpu_declines("ulysses_cuda", f16, loc, "bf16");
    gpu_declines("ulysses_cuda", d96, loc, "head dims");
    gpu_not_declined_for("ulysses_cuda", g, nccl, "cuda_local");
    gpu_declines("usp_cuda", g, nccl, "cuda_local only");
    gpu_declines("usp_cuda", f32, loc, "bf16 or f16");
    gpu_declines("usp_cuda", d96, loc, "head dims");
    return check_summary();
}
