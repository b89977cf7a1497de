/* model_task.c — `--task model`: the shared decoder with each backend as its attention; logits
 * against the float64 reference model (float32: at most 4× the float32 naive model's error; bf16
 * and f16: 2× the model's error with naive_cuda in that dtype; docs/tolerances.md) and forward time. Only the
 * last logit rows are kept; past what memory allows for the reference's n² scores, the record
 * carries timings only. --direction backward|both adds the embedding-gradient check
 * (model_backward.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/capacity.h"
#include "impls/parallel/dist_model.h"
#include "model/model.h"
#include "core/threads.h"
#include "tasks/approx.h"
#include "tasks/model_backward.h"
#include "tasks/model_dev_run.h"
#include "tasks/task.h"
#include "tasks/tolerance.h"
#include "core/timing.h"
#ifdef ATTN_HAVE_CUDA
#include "impls/cuda/dense_cuda.h"
#include "impls/cuda/kv_device.h"
#include "impls/cuda/model_dev.h"
#endif

enum { MAX_LOGIT_ROWS = 64 };

/* The model of a run: --model-config or the shape flags (capacity.c reads it the same way), and
 * --weights or seeded weights. */
static int build_model(const attn_opts_t *o, model_t *m, attn_err_t *err) {
    model_config_t c;
    ATTN_TRY(capacity_model_config(o, &c, err));
    return o->weights[0] ? model_load_safetensors(m, &c, o->weights, err) : model_init_random(m, &c, o->seed, err);
}

static double rel_l2(const double *a, const double *ref, size_t n, double *max_abs) {
    double num = 0, den = 0;
    *max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
        *max_abs = fmax(*max_abs, fabs(d));
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* task_for_each_case passes no context: the run's model, built once for all its cases, and the
 * GPU path its GPU backends' forwards take (model_dev_run.h; none without a device). */
static const model_t *current_model;
static const model_dev_path_t *current_dev;

/* One timed forward: resident on the device when the backend takes it there, else the host's. */
static int forward(const model_t *m, int dev, model_cache_t *dc, const attn_backend_t *be, const attn_problem_t *mp,
                   const attn_exec_t *x, const int32_t *tok, int64_t n, int64_t rows, double *got, attn_err_t *err) {
    if (dev)
        return model_dev_run(m, current_dev, dc, be, mp, x, tok, n, rows, got, err);
    return dist_model_run(m, NULL, be, mp, x, tok, n, rows, got, err);
}

static int model_case(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, int index, int count, attn_run_t *run,
                      attn_err_t *err) {
    const model_t *m = current_model;
    const model_config_t *c = &m->cfg;
    int64_t n = p->n_k, rows = n < MAX_LOGIT_ROWS ? n : MAX_LOGIT_ROWS;
    size_t nl = (size_t)(rows * c->vocab_size);
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    double *ref = malloc(nl * sizeof *ref), *base = malloc(nl * sizeof *base), *got = malloc(nl * sizeof *got);
    if (!tok || !ref || !base || !got) {
        free(tok), free(ref), free(base), free(got);
        return attn_fail(err, ATTN_ERUNTIME, "out of memory for %lld tokens' logits", (long long)n);
    }
    model_task_tokens(o->seed, c->vocab_size, n, tok);
    /* The model's attention problem, for supports() and the records. */
    attn_problem_t mp = *p;
    mp.heads = c->num_attention_heads, mp.kv_heads = c->num_key_value_heads, mp.head_dim = c->head_dim;
    mp.n_q = n, mp.batch = 1;
    attn_problem_t p64 = mp, pb = mp;
    const int bf = dtype_is_16bit(mp.dtype); /* bf16 or f16: the GPU backends */
    p64.dtype = ATTN_F64, pb.dtype = bf ? mp.dtype : ATTN_F32;
    attn_exec_t one = *x; /* the reference and the same-precision baseline: single-rank naive */
    one.ranks = 1;
    const attn_backend_t *naive = registry_find("naive"), *base_be = bf ? registry_find("naive_cuda") : naive;
    const char *base_name = !bf ? "naive f32" : mp.dtype == ATTN_F16 ? "naive_cuda f16" : "naive_cuda bf16";
    char why[1024] = "";
    int have_ref = backend_supports(naive, &p64, &one, why, sizeof why);
    if (have_ref && !base_be) {
        have_ref = 0;
        snprintf(why, sizeof why, "the %s baseline model needs naive_cuda, which this build lacks", dtype_name(mp.dtype));
    } else if (have_ref) {
        have_ref = backend_supports(base_be, &pb, &one, why, sizeof why);
    }
    double e0 = 0;
    attn_err_t rerr = {0};
    if (have_ref) {
        task_progress(index + 1, count, "model reference (float64) n=%lld mask=%s", (long long)n, mask_name(p->mask));
        if (dist_model_run(m, NULL, naive, &p64, &one, tok, n, rows, ref, &rerr) != ATTN_OK ||
            dist_model_run(m, NULL, base_be, &pb, &one, tok, n, rows, base, &rerr) != ATTN_OK) {
            have_ref = 0;
            snprintf(why, sizeof why, "%s", rerr.msg);
        } else {
            double mx;
            e0 = rel_l2(base, ref, nl, &mx);
        }
    }
    int threads = exec_threads(x);
    for (int b = 0; b < o->n_backends; b++) {
        const attn_backend_t *be = registry_find(o->backends[b]);
        attn_record_t *r;
        int runs = task_start_backend(run, o, "model", be, &mp, x, index, count, &r);
        approx_record_config(r, be, x); /* an approximate backend runs at the first budget */
        if (!runs)
            continue;
        record_extra_num(r, "layers", c->num_hidden_layers);
        record_extra_num(r, "hidden", c->hidden_size);
        record_extra_num(r, "vocab", c->vocab_size);
        int reps = o->repeats, brc = ATTN_OK;
        double secs[reps], tps[reps];
        attn_err_t berr = {0};
        parallel_set_blas_threads(threads);
        /* A GPU backend on a device KV cache: the whole forward on the device (the cache made
         * once, outside the timings, then refilled by each forward). */
        const int dev = model_dev_takes(current_dev, m, be, &mp, x, n);
        record_extra_str(r, "forward", dev ? "device-resident" : "host layers");
        model_cache_t dc = {0};
        for (int w = 0; w < o->warmup && brc == ATTN_OK; w++)
            brc = forward(m, dev, &dc, be, &mp, x, tok, n, rows, got, &berr);
        for (int i = 0; i < reps && brc == ATTN_OK; i++) {
            if (dev && !dc.k) /* not timed: the cache's allocation */
                brc = model_cache_init_in(&dc, c, mp.dtype, n, current_dev->space, &berr);
            double t0 = time_now_s();
            brc = brc == ATTN_OK ? forward(m, dev, &dc, be, &mp, x, tok, n, rows, got, &berr) : brc;
            secs[i] = time_now_s() - t0;
            tps[i] = (double)n / secs[i];
        }
        if (dc.k)
            model_cache_free(&dc);
        if (brc != ATTN_OK) {
            record_set_status(r, REC_ERROR, "%s", berr.msg);
            continue;
        }
        record_timed(r, "time_s", secs, reps, "s");
        record_timed(r, "tokens_per_s", tps, reps, "tok/s");
        record_metric(r, "params", (double)model_param_count(c), "1");
        record_metric(r, "logit_rows", (double)rows, "1");
        if (!have_ref) {
            record_set_status(r, REC_PASS, "timed only; no float64 reference model: %s", why);
            continue;
        }
        double mx, e = rel_l2(got, ref, nl, &mx), tol = tolerance_model_rel_l2(pb.dtype, e0);
        record_metric(r, "rel_l2_err", e, "1");
        record_metric(r, "max_abs_err", mx, "1");
        record_metric(r, !bf ? "naive_f32_rel_l2" : mp.dtype == ATTN_F16 ? "naive_f16_rel_l2" : "naive_bf16_rel_l2", e0, "1");
        if (be->approximate) { /* what it loses, no verdict (docs/approximate.md) */
            record_set_status(r, REC_APPROXIMATE, NULL);
            continue;
        }
        record_metric(r, "tol_rel_l2", tol, "1");
        if (!(e <= tol))
            record_set_status(r, REC_FAIL, "logits rel L2 %.3g > %.3g (%.0f × the %s model's %.3g)", e, tol,
                              tolerance_model_rel_l2(pb.dtype, 1.0), base_name, e0);
    }
    free(tok), free(ref), free(base), free(got);
    return ATTN_OK;
}

static int backward_case(const attn_opts_t *o, const attn_problem_t *p, const attn_exec_t *x, int index, int count,
                         attn_run_t *run, attn_err_t *err) {
    return model_backward_case(current_model, o, p, x, index, count, run, err);
}

int task_model(const attn_opts_t *o, attn_run_t *run, attn_err_t *err) {
    model_t m;
    ATTN_TRY(build_model(o, &m, err));
    current_model = &m;
    model_dev_path_t dev = {0};
#ifdef ATTN_HAVE_CUDA
    /* The model's weights, its forward's ops and a KV cache space on the GPU when a backend reads
     * K/V there (device_kv); without a device the GPU backends are skipped and none is made. */
    model_dense_t dense = {0};
    model_devops_t ops = {0};
    model_memspace_t space = {0};
    int have_dense = 0, have_space = 0;
    for (int b = 0; !dev.ops && b < o->n_backends && o->direction != ATTN_DIR_BACKWARD; b++) {
        attn_err_t derr = {0};
        if (!registry_find(o->backends[b])->device_kv)
            continue;
        have_dense = cuda_dense_create(&m, o->device, &dense, &derr) == ATTN_OK;
        have_space = have_dense && cuda_kv_space_create(o->device, &space, &derr) == ATTN_OK;
        if (have_space && cuda_devops_create(&m, &dense, o->device, &ops, &derr) == ATTN_OK)
            dev.ops = &ops, dev.space = &space;
        break;
    }
    current_dev = &dev;
#endif
    int rc = o->direction == ATTN_DIR_BACKWARD ? ATTN_OK : task_for_each_case(o, run, model_case, err);
    if (rc == ATTN_OK && o->direction != ATTN_DIR_FORWARD) /* the gradient check (model_backward.h) */
        rc = task_for_each_case(o, run, backward_case, err);
    current_model = NULL;
    current_dev = NULL;
#ifdef ATTN_HAVE_CUDA
    if (dev.ops)
        cuda_devops_free(&ops);
    if (have_space)
        cuda_kv_space_free(&space);
    if (have_dense)
        cuda_dense_free(&dense);
#endif
    (void)dev;
    model_free(&m);
    return rc;
}
