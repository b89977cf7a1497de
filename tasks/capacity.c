/* capacity.c — `--task capacity`: per backend and mask, the longest sequence whose analytic bytes
 * fit in the memory available now, confirmed by touching every page (no attention computed);
 * then KV-cache bytes of a 7B-class decoder and of the run's model. Details: docs/memory.md. */
#include "tasks/capacity.h"

#include <inttypes.h>
#include <string.h>

#include "core/memory.h"
#include "tasks/task.h"
#include "core/timing.h"

enum { MAX_LOG2_N = 30 };

uint64_t capacity_case_bytes(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x) {
    return attn_size_add(problem_io_bytes(p), be->workspace_bytes(be, p, x)); /* saturates: never fits */
}

uint64_t kv_cache_bytes(const model_config_t *c, int64_t n, size_t elem_bytes) {
    return attn_size_mul(attn_size_prod4(2, n, c->num_hidden_layers, c->num_key_value_heads),
                         attn_size_prod4(c->head_dim, (int64_t)elem_bytes, 1, 1));
}

static uint64_t bytes_at(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x, int64_t n) {
    attn_problem_t q = *p;
    q.n_q = q.n_k = n;
    return capacity_case_bytes(be, &q, x);
}

int64_t capacity_max_seq_len(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x, uint64_t budget,
                             int64_t *refined) {
    /* The size arithmetic saturates (attn_size_*), so a figure too large to count never fits. The
     * bytes need not grow with n at small n: short queries take the decode plan's workspace. */
    int64_t best = 0;
    for (int k = 0; k <= MAX_LOG2_N; k++) {
        int64_t n = (int64_t)1 << k;
        if (bytes_at(be, p, x, n) > budget)
            break;
        best = n;
    }
    if (refined) { /* lo fits, hi does not (or lies past the cap) */
        int64_t lo = best, hi = best == (int64_t)1 << MAX_LOG2_N ? best + 1 : 2 * best;
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            if (bytes_at(be, p, x, mid) <= budget)
                lo = mid;
            else
                hi = mid;
        }
        *refined = lo;
    }
    return best;
}

int capacity_model_config(const attn_opts_t *o, model_config_t *c, attn_err_t *err) {
    model_config_defaults(c);
    if (o->model_config[0])
        return model_config_load(o->model_config, c, err);
    c->num_attention_heads = (int)o->heads;
    c->num_key_value_heads = (int)o->kv_heads;
    c->head_dim = (int)o->head_dim;
    c->hidden_size = (int)(o->heads * o->head_dim);
    c->intermediate_size = (c->hidden_size * 8 / 3 + 31) / 32 * 32; /* llama's 8/3·hidden, rounded */
    if (o->layers)
        c->num_hidden_layers = o->layers;
    if (o->vocab)
        c->vocab_size = o->vocab;
    return model_config_validate(c, err);
}

/* The budget is taken once, so every record of a run is measured against the same figure. */
typedef struct {
    uint64_t available; /* MemAvailable at the start of the task */
    uint64_t reserve;   /* kept free for everything beside the case: stacks, BLAS buffers, page tables */
    uint64_t budget;    /* available − reserve */
    uint64_t confirmed; /* the largest allocation confirmed so far in this run */
} capacity_ctx_t;

static int capacity_backend(const attn_opts_t *o, const attn_backend_t *be, attn_mask_t mask, capacity_ctx_t *ctx,
                            int index, int count, attn_run_t *run, attn_err_t *err) {
    attn_problem_t p;
    ATTN_TRY(settings_problem(o, 1, 1, mask, &p, err));
    attn_exec_t x = settings_exec(o);
    if (strcmp(be->device, "cpu") != 0) { /* its workspace_bytes are device bytes, not host memory */
        attn_record_t *r = task_record(run, o, "capacity", be->name, &p, &x);
        record_set_status(r, REC_SKIPPED, "capacity confirms host memory; %s allocates on the %s device", be->name,
                          be->device);
        return ATTN_OK;
    }
    int64_t refined = 0, n = capacity_max_seq_len(be, &p, &x, ctx->budget, &refined);
    p.n_q = p.n_k = n > 0 ? n : 1;
    attn_record_t *r;
    if (!task_start_backend(run, o, "capacity", be, &p, &x, index, count, &r))
        return ATTN_OK;
    uint64_t bytes = capacity_case_bytes(be, &p, &x);
    record_metric(r, "available_bytes", (double)ctx->available, "B");
    record_metric(r, "budget_bytes", (double)ctx->budget, "B");
    if (n == 0) {
        record_set_status(r, REC_SKIPPED, "even n = 1 needs %" PRIu64 " bytes, over the budget of %" PRIu64, bytes,
                          ctx->budget);
        return ATTN_OK;
    }
    record_metric(r, "max_seq_len", (double)n, "tok");
    record_metric(r, "max_seq_len_refined", (double)refined, "tok");
    record_metric(r, "analytic_bytes", (double)bytes, "B");
    record_metric(r, "workspace_bytes", (double)be->workspace_bytes(be, &p, &x), "B");
    if (n < (int64_t)1 << MAX_LOG2_N)
        record_metric(r, "analytic_bytes_2n", (double)bytes_at(be, &p, &x, 2 * n), "B");
    if (bytes <= ctx->confirmed) { /* an allocation at least this large already succeeded */
        record_extra_str(r, "confirmed_by", "earlier allocation");
        return ATTN_OK;
    }
    attn_err_t cerr = {0};
    double t0 = time_now_s();
    int rc = mem_confirm(bytes, ctx->reserve / 2, exec_threads(&x), &cerr);
    record_metric(r, "confirm_s", time_now_s() - t0, "s");
    if (rc != ATTN_OK) {
        record_set_status(r, REC_FAIL, "the analytic %" PRIu64 " bytes fit the budget but could not be held: %s", bytes,
                          cerr.msg);
        return ATTN_OK;
    }
    record_extra_str(r, "confirmed_by", "allocation");
    ctx->confirmed = bytes;
    return ATTN_OK;
}

static const int64_t kv_lengths[] = {4096, 32768, 131072, 1048576};

static int kv_rows(attn_run_t *run, const char *label, const model_config_t *c, size_t elem, uint64_t available,
                   attn_err_t *err) {
    for (size_t i = 0; i < sizeof kv_lengths / sizeof kv_lengths[0]; i++) {
        int64_t n = kv_lengths[i];
        attn_problem_t p = {.batch = 1, .heads = c->num_attention_heads, .kv_heads = c->num_key_value_heads,
                            .head_dim = c->head_dim, .n_q = n, .n_k = n, .mask = ATTN_MASK_CAUSAL};
        attn_record_t *r = results_add(run, "kv_cache", label, &p);
        if (!r)
            return attn_fail(err, ATTN_ERUNTIME, "out of memory for the kv_cache records");
        uint64_t bytes = kv_cache_bytes(c, n, elem);
        record_extra_num(r, "layers", c->num_hidden_layers);
        record_extra_num(r, "elem_bytes", (double)elem);
        record_metric(r, "kv_cache_bytes", (double)bytes, "B");
        record_metric(r, "kv_cache_gib", (double)bytes / 1073741824.0, "GiB");
        record_metric(r, "bytes_per_token", (double)kv_cache_bytes(c, 1, elem), "B");
        if (available)
            record_metric(r, "frac_of_available", (double)bytes / (double)available, "1");
    }
    return ATTN_OK;
}

int task_capacity(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    capacity_ctx_t ctx = {.available = mem_available_bytes()};
    uint64_t min_reserve = (uint64_t)256 << 20;
    ctx.reserve = ctx.available / 32 > min_reserve ? ctx.available / 32 : min_reserve;
    ctx.budget = ctx.available > ctx.reserve ? ctx.available - ctx.reserve : 0;
    if (ctx.available == 0)
        return attn_fail(err, ATTN_ERUNTIME, "capacity: MemAvailable cannot be read (/proc/meminfo)");
    int count = o->n_masks * o->n_backends, index = 0;
    for (int m = 0; m < o->n_masks; m++)
        for (int b = 0; b < o->n_backends; b++)
            ATTN_TRY(capacity_backend(o, registry_find(o->backends[b]), o->masks[m], &ctx, index++, count, run, err));
    /* Llama-2-7B's attention: 32 layers, 32 kv heads of 128 (no GQA), f16. */
    model_config_t seven;
    model_config_defaults(&seven);
    seven.hidden_size = 4096, seven.num_hidden_layers = 32, seven.num_attention_heads = 32;
    seven.num_key_value_heads = 32, seven.head_dim = 128, seven.intermediate_size = 11008;
    ATTN_TRY(kv_rows(run, "7b-class/f16", &seven, 2, ctx.available, err));
    model_config_t own;
    ATTN_TRY(capacity_model_config(o, &own, err));
    return kv_rows(run, "run-model/f32", &own, sizeof(float), ctx.available, err);
}
