/* cli.c — the list, run, attend and peak subcommands (see cli.h): each parses its flags (shared
 * ones through options.c) and hands the problem to the tasks or a backend. */
#include "cli/cli.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "comm/comm.h"
#include "core/device.h"
#include "impls/parallel/dist.h"
#include "impls/parallel/dist_model.h"
#include "core/npy.h"
#include "core/outfile.h"
#include "cli/options.h"
#include "core/threads.h"
#include "core/results.h"
#include "tasks/task.h"

/* ---- list ---------------------------------------------------------------------------------- */

static const char list_usage[] =
    "usage: attnbench list\n"
    "\n"
    "Prints every backend with the masks and dtypes it accepts (probed through its\n"
    "supports() on a small problem), the tasks and the transports of this build.\n";

int cli_list(int argc, char **argv, attn_err_t *err) {
    if (opts_wants_help(argc, argv)) {
        opts_print_help(stdout, CMD_LIST, list_usage);
        return ATTN_OK;
    }
    cli_opts_t none;
    opts_init(&none, CMD_LIST);
    ATTN_TRY(opts_parse_argv(&none, CMD_LIST, argc, argv, NULL, NULL, err));
    printf("%-20s %-6s %-6s %-6s %-6s %-12s  %s\n", "backend", "device", "none", "causal", "window", "dtypes",
           "description");
    char no_dev[256];
    int have_gpu = device_count(no_dev, sizeof no_dev) > 0;
    for (int i = 0; i < registry_count(); i++) {
        const attn_backend_t *b = registry_get(i);
        attn_problem_t p = {.batch = 1, .heads = 2, .kv_heads = 1, .head_dim = 64, .n_q = 8, .n_k = 8, .window = 4};
        attn_exec_t x = exec_default();
        x.approx_window = 4; /* the approximate backends need a local window: the flags' kind of case */
        char reason[512], dtypes[24] = "";
        const char *masks[3];
        int probe = have_gpu || strcmp(b->device, "cpu") == 0; /* without a device a GPU backend declines all */
        for (int m = 0; m < 3; m++) { /* a mask is accepted when some dtype runs it */
            p.mask = (attn_mask_t)m;
            masks[m] = probe ? "no" : "-";
            for (int t = 0; t <= ATTN_F16 && probe; t++) { /* every attn_dtype_t */
                p.dtype = (attn_dtype_t)t;
                if (backend_supports(b, &p, &x, reason, sizeof reason))
                    masks[m] = "yes";
            }
        }
        p.mask = ATTN_MASK_WINDOW;
        for (int t = 0; t <= ATTN_F16 && probe; t++) {
            p.dtype = (attn_dtype_t)t;
            if (backend_supports(b, &p, &x, reason, sizeof reason))
                snprintf(dtypes + strlen(dtypes), sizeof dtypes - strlen(dtypes), "%s%s", *dtypes ? "," : "",
                         dtype_name(p.dtype));
        }
        printf("%-20s %-6s %-6s %-6s %-6s %-12s  %s\n", b->name, b->device, masks[0], masks[1], masks[2],
               probe ? dtypes : "-", b->description);
    }
    if (device_cuda_built() && !have_gpu)
        printf("\ncuda backends (-): %s; they decline every case (recorded as skipped)\n", no_dev);
    else if (device_cuda_built())
        printf("\ncuda backends: %d device%s (--device N)\n", device_count(NULL, 0),
               device_count(NULL, 0) == 1 ? "" : "s");
    printf("\n%-16s %s\n", "task", "measures");
    for (int i = 0; i < task_count(); i++)
        printf("%-16s %s\n", task_get(i)->name, task_get(i)->description);
    printf("%-16s %s\n", "peak", "(attnbench peak) sgemm GFLOP/s roofline");
    char mpi[64];
    comm_mpi_version(mpi, sizeof mpi);
    printf("\n%-16s %s\n", "transport", "ranks");
    printf("%-16s %s\n", "local", "1..64 threads of one process (--ranks P)");
    if (comm_mpi_available())
        printf("%-16s %s (%s)\n", "mpi", "one process per rank: mpirun -np P ... --transport mpi", mpi);
    else
        printf("%-16s %s\n", "mpi", "not in this build (Open MPI was not found at configure time)");
    if (device_cuda_built()) {
        printf("%-16s %s\n", "cuda_local", "*_cuda backends: P virtual ranks on one GPU (a schedule check, not multi-GPU)");
        printf("%-16s %s\n", "nccl", "*_cuda backends: mpirun -np P, a GPU per rank; libnccl.so.2 loaded at run time");
    } else {
        printf("%-16s %s\n", "cuda_local, nccl", "not in this build (nvcc was not found at configure time)");
    }
    return ATTN_OK;
}

/* ---- run / peak ---------------------------------------------------------------------------- */

/* Parses the flags, or the --config suite with the flags on top, into a list of validated runs. */
static int load_runs(unsigned cmd, int argc, char **argv, attn_opts_t **runs, int *n_runs, attn_err_t *err) {
    cli_opts_t first;
    opts_init(&first, cmd);
    ATTN_TRY(opts_parse_argv(&first, cmd, argc, argv, NULL, NULL, err));
    if (first.config[0])
        return opts_load_config(first.config, cmd, argc, argv, runs, n_runs, err);
    ATTN_TRY(settings_validate_run(&first.s, err));
    *runs = malloc(sizeof first.s);
    if (!*runs)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    **runs = first.s;
    *n_runs = 1;
    return ATTN_OK;
}

static int count_bad(const attn_run_t *run) {
    int bad = 0;
    for (int i = 0; i < run->n_records; i++)
        bad += run->records[i].status == REC_FAIL || run->records[i].status == REC_ERROR;
    return bad;
}

/* Runs every run through fn, then writes one results file pair and prints the table. Nothing is
 * written unless every run finished; failed or errored records make the exit status 1. */
static int execute(int argc, char **argv, attn_opts_t *runs, int n_runs,
                   int (*fn)(const attn_opts_t *, attn_run_t *, attn_err_t *), attn_placement_t *placement,
                   int n_placement, attn_err_t *err) {
    attn_run_t run;
    if (results_run_init(&run, argc, argv, runs[0].seed, runs[0].threads, err) != ATTN_OK) {
        free(placement);
        return err->code;
    }
    run.placement = placement; /* the run owns it now */
    run.n_placement = n_placement;
    comm_mpi_version(run.mpi_version, sizeof run.mpi_version); /* the comm room is above core */
    run.threads = threads_resolve(runs[0].threads);
    if (runs[0].device != 0)
        results_run_set_device(&run, runs[0].device);
    int rc = ATTN_OK;
    for (int i = 0; i < n_runs && rc == ATTN_OK; i++) /* a results directory we cannot write fails now */
        rc = outfile_check_dir(runs[i].out_dir, err);
    for (int i = 0; i < n_runs && rc == ATTN_OK; i++) {
        parallel_set_blas_threads(threads_resolve(runs[i].threads));
        rc = fn ? fn(&runs[i], &run, err) : task_find(runs[i].task)->run(&runs[i], &run, err);
    }
    if (rc == ATTN_OK) {
        results_print_table(&run, stdout);
        fflush(stdout); /* the table before the "wrote" line on a shared terminal */
        rc = results_write(&run, runs[0].out_dir, err);
        if (rc == ATTN_OK)
            fprintf(stderr, "wrote %s/%s.json and .csv\n", runs[0].out_dir, run.run_id);
    }
    if (rc == ATTN_OK && count_bad(&run) > 0)
        rc = attn_fail(err, ATTN_ERUNTIME, "%d of %d records failed or errored (see %s/%s.json)", count_bad(&run),
                       run.n_records, runs[0].out_dir, run.run_id);
    results_run_free(&run);
    return rc;
}

/* Under --transport mpi every process of the job parses the same flags, then joins MPI; a
 * run that names no rank count takes the job's size. */
/* The transport flag was checked when parsed, so it parses here. */
static int over_mpi(const attn_opts_t *o) {
    attn_transport_t t = ATTN_TRANSPORT_LOCAL;
    transport_parse(o->transport, &t);
    return transport_over_mpi(t);
}

static int with_transport(attn_opts_t *runs, int n_runs, attn_err_t *err) {
    int mpi = 0;
    for (int i = 0; i < n_runs; i++)
        mpi |= over_mpi(&runs[i]);
    if (!mpi)
        return ATTN_OK;
    ATTN_TRY(comm_mpi_init(NULL, NULL, err));
    int size = comm_mpi_world()->size;
    for (int i = 0; i < n_runs; i++) {
        if (!over_mpi(&runs[i]))
            continue;
        if (runs[i].ranks == 1)
            runs[i].ranks = size;
        if (runs[i].ranks != size)
            return attn_fail(err, ATTN_EUSAGE, "--ranks %d but mpirun started %d processes", runs[i].ranks, size);
    }
    return ATTN_OK;
}

/* run and needle: the same runs, each subcommand with its own flags and defaults. */
static int run_runs(unsigned cmd, int argc, char **argv, attn_err_t *err) {
    attn_opts_t *runs = NULL;
    int n_runs = 0;
    ATTN_TRY(load_runs(cmd, argc, argv, &runs, &n_runs, err));
    int rc = with_transport(runs, n_runs, err);
    attn_placement_t *placement = NULL;
    int n_placement = 0;
    if (rc == ATTN_OK && comm_mpi_world())
        rc = cli_gather_placement(comm_mpi_world(), &placement, &n_placement, err);
    if (rc == ATTN_OK && comm_mpi_world() && comm_mpi_world()->rank != 0)
        rc = dist_follow(dist_model_follow, err); /* ranks 1..P−1 serve rank 0's distributed calls */
    else if (rc == ATTN_OK)
        rc = execute(argc, argv, runs, n_runs, NULL, placement, n_placement, err);
    else
        free(placement);
    dist_stop_followers();
    comm_mpi_finalize();
    free(runs);
    return rc;
}

static const char run_usage[] =
    "usage: attnbench run --task T --backends A,B [flags]   or   attnbench run --config suites/NAME.json\n"
    "\n"
    "Runs the task over every (seq-len × q-len × mask) case for each backend and writes\n"
    "results/<run_id>.json and .csv (atomically, only once the whole run finished).\n"
    "Exit status: 0 all records pass or skip, 1 a record failed or errored, 2 bad usage.\n";

int cli_run(int argc, char **argv, attn_err_t *err) {
    if (opts_wants_help(argc, argv)) {
        opts_print_help(stdout, CMD_RUN, run_usage);
        return ATTN_OK;
    }
    return run_runs(CMD_RUN, argc, argv, err);
}

static const char needle_usage[] =
    "usage: attnbench needle --backends A,B --seq-len N,... [--depths 0:100:10] [--needles K] [--ask one|all]\n"
    "                        [--mode prefill|query-tail] [--window W] [--ranks P] [--haystack FILE|noise]\n"
    "                        [--resume results/RUN.json]\n"
    "\n"
    "Hides key → value needles at each depth of a haystack of each length, asks for them, and\n"
    "decodes the answer greedily with the constructed retrieval model (docs/needle-model.md).\n"
    "One record per (backend, length, depth): recall, the recall the mask allows, time. Records\n"
    "are written as they finish; a grid per backend is printed at the end. Defaults: --seq-len\n"
    "4096, --window 4096 (sliding_window), depths 0:100:10, one needle, prefill.\n";

/* `attnbench needle …` is `attnbench run --task needle` with the needle flags and defaults
 * (--seq-len 4096, --window 4096: the table's needle rows). */
int cli_needle(int argc, char **argv, attn_err_t *err) {
    if (opts_wants_help(argc, argv)) {
        opts_print_help(stdout, CMD_NEEDLE, needle_usage);
        return ATTN_OK;
    }
    return run_runs(CMD_NEEDLE, argc, argv, err);
}

static const char peak_usage[] =
    "usage: attnbench peak [--sizes 512,1024,2048,4096] [--stream-mib M] [--threads T] [--repeats R]\n"
    "                      [--warmup W] [--device N]\n"
    "\n"
    "Measures the roofline the throughput task's fractions are taken against, on --threads threads:\n"
    "OpenBLAS sgemm GFLOP/s for n×n×n products (2n³ FLOPs), and memory bandwidth in GB/s (1e9 B/s)\n"
    "from a STREAM-like triad a = b + s·c (12 B per element) and a read of b and c (8 B per element)\n"
    "over three arrays of M MiB each [256, at most 3/8 of available memory together], the median\n"
    "of --repeats passes (_max is STREAM's best). Write-allocate traffic is not counted (STREAM's\n"
    "convention). machine_balance = best sgemm / read bandwidth, in FLOP/B: calls of lower\n"
    "arithmetic intensity are bandwidth-bound. With a CUDA device (--device N) also the GPU's roof:\n"
    "cuBLAS GEMM TFLOP/s at 8192³ in bf16, f16 and f32 (no TF32), fp32 accumulation, and the\n"
    "read-only bandwidth of 2 GiB of device memory, timed by CUDA events. Writes results like `run`.\n";

int cli_peak(int argc, char **argv, attn_err_t *err) {
    if (opts_wants_help(argc, argv)) {
        opts_print_help(stdout, CMD_PEAK, peak_usage);
        return ATTN_OK;
    }
    cli_opts_t c;
    opts_init(&c, CMD_PEAK);
    ATTN_TRY(opts_parse_argv(&c, CMD_PEAK, argc, argv, NULL, NULL, err));
    return execute(argc, argv, &c.s, 1, task_peak, NULL, 0, err);
}

/* ---- attend -------------------------------------------------------------------------------- */

static int to_f32(npy_array_t *a, attn_err_t *err) {
    if (a->dtype == ATTN_F32)
        return ATTN_OK;
    float *f = attn_alloc(a->numel * sizeof(float), err, "float32 copy");
    if (!f)
        return ATTN_ERUNTIME;
    for (size_t i = 0; i < a->numel; i++)
        f[i] = (float)((double *)a->data)[i];
    attn_free(a->data);
    a->data = f;
    a->dtype = ATTN_F32;
    return ATTN_OK;
}

static int check_4d(const char *what, const char *path, const npy_array_t *a, attn_err_t *err) {
    if (a->ndim != 4)
        return attn_fail(err, ATTN_EUSAGE, "%s: --%s must be 4-D (batch, heads, seq, head_dim); got %d dimensions",
                         path, what, a->ndim);
    for (int i = 0; i < 4; i++)
        if (a->shape[i] < 1)
            return attn_fail(err, ATTN_EUSAGE, "%s: --%s has an empty dimension", path, what);
    return ATTN_OK;
}

static int attend_inputs(const cli_opts_t *c, npy_array_t *q, npy_array_t *k, npy_array_t *v, attn_problem_t *p,
                         attn_err_t *err) {
    const attn_opts_t *o = &c->s;
    ATTN_TRY(npy_read(c->q_path, q, err));
    ATTN_TRY(npy_read(c->k_path, k, err));
    ATTN_TRY(npy_read(c->v_path, v, err));
    ATTN_TRY(check_4d("q", c->q_path, q, err));
    ATTN_TRY(check_4d("k", c->k_path, k, err));
    ATTN_TRY(check_4d("v", c->v_path, v, err));
    for (int i = 0; i < 4; i++)
        if (k->shape[i] != v->shape[i])
            return attn_fail(err, ATTN_EUSAGE, "k and v shapes differ in dimension %d (%lld vs %lld)", i,
                             (long long)k->shape[i], (long long)v->shape[i]);
    if (q->shape[0] != k->shape[0] || q->shape[3] != k->shape[3])
        return attn_fail(err, ATTN_EUSAGE, "q (%lld,…,%lld) and k (%lld,…,%lld) disagree on batch or head_dim",
                         (long long)q->shape[0], (long long)q->shape[3], (long long)k->shape[0],
                         (long long)k->shape[3]);
    *p = (attn_problem_t){.batch = q->shape[0], .heads = q->shape[1], .kv_heads = k->shape[1], .head_dim = q->shape[3],
                          .n_q = q->shape[2], .n_k = k->shape[2], .mask = o->masks[0],
                          .window = o->masks[0] == ATTN_MASK_WINDOW ? o->window : 0, .scale = o->scale,
                          .block_q = o->block_q, .block_k = o->block_k};
    if (o->cu_seqlens[0]) /* the offsets must end at K's length */
        ATTN_TRY(docs_from_npy(o->cu_seqlens, p->n_k, &p->doc, &p->n_docs, err));
    return problem_validate(p, err);
}

/* dO: Q's shape. */
static int attend_grad_input(const cli_opts_t *c, const attn_problem_t *p, npy_array_t *dO, attn_err_t *err) {
    ATTN_TRY(npy_read(c->do_path, dO, err));
    ATTN_TRY(check_4d("do", c->do_path, dO, err));
    int64_t want[4] = {p->batch, p->heads, p->n_q, p->head_dim};
    for (int i = 0; i < 4; i++)
        if (dO->shape[i] != want[i])
            return attn_fail(err, ATTN_EUSAGE, "%s: --do must have q's shape (%lld,%lld,%lld,%lld); dimension %d is %lld",
                             c->do_path, (long long)want[0], (long long)want[1], (long long)want[2],
                             (long long)want[3], i, (long long)dO->shape[i]);
    return ATTN_OK;
}

/* backend_supports, or its backward form when the backward runs too. */
static int supports_dir(const attn_backend_t *b, const attn_problem_t *p, const attn_exec_t *x, int bwd, char *reason,
                        size_t len) {
    return bwd ? backend_supports_backward(b, p, x, reason, len) : backend_supports(b, p, x, reason, len);
}

static const char attend_usage[] =
    "usage: attnbench attend --backend NAME --q q.npy --k k.npy --v v.npy --out o.npy [--lse lse.npy]\n"
    "                        [--mask none|causal|window] [--window W] [--scale S] [--threads T]\n"
    "                        [--cu-seqlens offsets.npy]   (packed documents: int32/int64, 0 … n_k)\n"
    "                        [--dtype bf16|f16 --device N]   (GPU backends)\n"
    "\n"
    "Q (B,H,n_q,d), K and V (B,H_kv,n_k,d), float32 or float64, C order; queries sit at the end of\n"
    "the key sequence. GQA comes from K's head count. O (B,H,n_q,d) and LSE (B,H,n_q, natural log)\n"
    "are float64 when all inputs are float64 and the backend runs float64, else float32 (with\n"
    "--dtype bf16 or f16 the inputs are rounded to bfloat16 or float16 on the GPU; O and LSE still\n"
    "come back float32).\n"
    "The default mask is none.\n"
    "\n"
    "Backward: add --do do.npy --dq dq.npy --dk dk.npy --dv dv.npy (the forward runs first; --out\n"
    "and --lse are then optional). dO has Q's shape; dK and dV are summed over each kv head's\n"
    "query heads (GQA). Every output is written, or none.\n";

/* One warning line naming the first non-finite input value, by file and (b, h, i, c): the run goes
 * on (exit 0) and its rows come out NaN as docs/nonfinite.md says, but the user should know where
 * that came from. Then one line if f32 scores can overflow: finite inputs, yet +inf scores.
 * d_o (NULL: no backward) is looked at last: a non-finite dO reaches only the gradients. */
static void warn_inputs(const cli_opts_t *c, const attn_problem_t *p, const void *q, const void *k, const void *v,
                        const void *d_o) {
    const char *files[4] = {c->q_path, c->k_path, c->v_path, c->do_path};
    const void *arrs[4] = {q, k, v, d_o};
    int64_t heads[4] = {p->heads, p->kv_heads, p->kv_heads, p->heads}, rows[4] = {p->n_q, p->n_k, p->n_k, p->n_q};
    double amax[2] = {0, 0};
    int f64 = p->dtype == ATTN_F64;
    for (int a = 0; a < (d_o ? 4 : 3); a++) {
        size_t len = (size_t)(p->batch * heads[a] * rows[a] * p->head_dim);
        for (size_t i = 0; i < len; i++) {
            double x = f64 ? ((const double *)arrs[a])[i] : ((const float *)arrs[a])[i];
            if (!isfinite(x)) {
                size_t d = (size_t)p->head_dim, r = (size_t)rows[a], h = (size_t)heads[a];
                fprintf(stderr, "attnbench attend: warning: %s holds %g at [%zu, %zu, %zu, %zu]; "
                        "%s come out NaN (docs/nonfinite.md)\n", files[a], x, i / d / r / h,
                        i / d / r % h, i / d % r, i % d,
                        a < 3 ? "rows that see it" : "the gradients it reaches");
                return;
            }
            if (a < 2 && fabs(x) > amax[a])
                amax[a] = fabs(x);
        }
    }
    double scale = p->scale > 0 ? p->scale : 1.0 / sqrt((double)p->head_dim);
    double bound = amax[0] * amax[1] * (double)p->head_dim * scale;
    if (!f64 && bound > FLT_MAX)
        fprintf(stderr, "attnbench attend: warning: scores can reach %.3g, beyond float32's range; "
                "rows whose scores overflow come out NaN (docs/nonfinite.md)\n", bound);
}

int cli_attend(int argc, char **argv, attn_err_t *err) {
    if (opts_wants_help(argc, argv)) {
        opts_print_help(stdout, CMD_ATTEND, attend_usage);
        return ATTN_OK;
    }
    cli_opts_t c;
    opts_init(&c, CMD_ATTEND);
    ATTN_TRY(opts_parse_argv(&c, CMD_ATTEND, argc, argv, NULL, NULL, err));
    const attn_opts_t o = c.s;
    if (o.n_backends != 1)
        return attn_fail(err, ATTN_EUSAGE, "attend needs exactly one --backend");
    if (o.n_masks != 1)
        return attn_fail(err, ATTN_EUSAGE, "attend takes one --mask");
    int bwd = c.do_path[0] || c.dq_path[0] || c.dk_path[0] || c.dv_path[0];
    if (bwd && !(c.do_path[0] && c.dq_path[0] && c.dk_path[0] && c.dv_path[0]))
        return attn_fail(err, ATTN_EUSAGE, "attend's backward needs all of --do, --dq, --dk and --dv");
    if (!c.q_path[0] || !c.k_path[0] || !c.v_path[0] || (!c.out_path[0] && !bwd))
        return attn_fail(err, ATTN_EUSAGE, "attend needs --q, --k, --v and --out (or the backward's --do, --dq, --dk, --dv)");
    if (!c.out_path[0] && c.lse_path[0])
        return attn_fail(err, ATTN_EUSAGE, "attend: --lse goes with --out");
    /* a bad output path fails before the compute; the used ones first, in order */
    const char *all_outs[6] = {c.out_path, c.lse_path, c.dq_path, c.dk_path, c.dv_path}, *outs[6];
    int n_outs = 0;
    for (int i = 0; i < 5; i++)
        if (all_outs[i][0])
            outs[n_outs++] = all_outs[i];
    ATTN_TRY(outfile_check_all(outs, n_outs, err));
    const attn_backend_t *b = registry_find(o.backends[0]);
    npy_array_t q = {0}, k = {0}, v = {0};
    attn_problem_t p;
    attn_exec_t x = settings_exec(&o); /* one rank; a ring-family backend keeps its own layout */
    void *out = NULL, *lse = NULL;
    char reason[512];
    npy_array_t dO = {0};
    void *grads[3] = {NULL, NULL, NULL};
    int rc = attend_inputs(&c, &q, &k, &v, &p, err);
    if (rc == ATTN_OK && bwd)
        rc = attend_grad_input(&c, &p, &dO, err);
    if (rc == ATTN_OK) {
        p.dtype = ATTN_F64;
        int all64 = q.dtype == ATTN_F64 && k.dtype == ATTN_F64 && v.dtype == ATTN_F64 && (!bwd || dO.dtype == ATTN_F64);
        if (!all64 || dtype_is_16bit(o.dtype) || !supports_dir(b, &p, &x, bwd, reason, sizeof reason)) {
            /* --dtype bf16 / f16 (GPU backends): float32 arrays, rounded to 16 bits on the device */
            p.dtype = dtype_is_16bit(o.dtype) ? o.dtype : ATTN_F32;
            rc = to_f32(&q, err);
            if (rc == ATTN_OK)
                rc = to_f32(&k, err);
            if (rc == ATTN_OK)
                rc = to_f32(&v, err);
            if (rc == ATTN_OK && bwd)
                rc = to_f32(&dO, err);
        }
    }
    if (rc == ATTN_OK && !supports_dir(b, &p, &x, bwd, reason, sizeof reason))
        rc = attn_fail(err, ATTN_ERUNTIME, "%s", reason);
    for (int i = 0; i < 3 && rc == ATTN_OK && bwd; i++) {
        grads[i] = attn_alloc((i ? problem_numel_kv(&p) : problem_numel_q(&p)) * dtype_size(p.dtype), err,
                              i == 0 ? "dQ" : i == 1 ? "dK" : "dV");
        rc = grads[i] ? ATTN_OK : ATTN_ERUNTIME;
    }
    if (rc == ATTN_OK) {
        out = attn_alloc(problem_numel_q(&p) * dtype_size(p.dtype), err, "O");
        lse = attn_alloc(problem_numel_lse(&p) * dtype_size(p.dtype), err, "LSE");
        rc = out && lse ? ATTN_OK : ATTN_ERUNTIME;
    }
    if (rc == ATTN_OK) {
        parallel_set_blas_threads(exec_threads(&x));
        attn_io_t io = {.q = q.data, .k = k.data, .v = v.data, .o = out, .lse = lse};
        warn_inputs(&c, &p, q.data, k.data, v.data, bwd ? dO.data : NULL);
        rc = b->forward(b, &p, &x, &io, err);
    }
    if (rc == ATTN_OK && bwd) {
        attn_grad_io_t g = {.q = q.data, .k = k.data, .v = v.data, .o = out, .lse = lse, .d_o = dO.data,
                            .dq = grads[0], .dk = grads[1], .dv = grads[2]};
        rc = b->backward(b, &p, &x, &g, err);
    }
    if (rc == ATTN_OK) {
        int64_t shape[4] = {p.batch, p.heads, p.n_q, p.head_dim}, kv_shape[4] = {p.batch, p.kv_heads, p.n_k, p.head_dim};
        npy_src_t srcs[5] = {{p.dtype, 4, shape, out}, {p.dtype, 3, shape, lse}, {p.dtype, 4, shape, grads[0]},
                             {p.dtype, 4, kv_shape, grads[1]}, {p.dtype, 4, kv_shape, grads[2]}};
        outfile_job_t jobs[5];
        int n = 0;
        for (int i = 0; i < 5; i++)
            if (all_outs[i][0])
                jobs[n++] = (outfile_job_t){all_outs[i], npy_fill, &srcs[i]};
        rc = outfile_write_all(jobs, n, err); /* every output, or none */
    }
    for (int i = 0; i < 3; i++)
        attn_free(grads[i]);
    npy_free(&dO);
    attn_free(out);
    attn_free(lse);
    npy_free(&q);
    npy_free(&k);
    npy_free(&v);
    return rc;
}
