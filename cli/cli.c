/* cli.c — the list, run, attend and peak subcommands (see cli.h): each parses its flags (shared
 * ones through options.c) and hands the problem to the tasks or a backend. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "comm/comm.h"
#include "core/device.h"
#include "impls/parallel/dist.h"
#include "core/npy.h"
#include "cli/options.h"
#include "core/threads.h"
#include "core/results.h"
#include "tasks/task.h"

static int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

/* ---- list ---------------------------------------------------------------------------------- */

int cli_list(int argc, char **argv, attn_err_t *err) {
    if (wants_help(argc, argv)) {
        puts("usage: attnbench list\n\nPrints every backend with the masks and dtypes it accepts (probed through its\n"
             "supports() on a small problem), the tasks and the transports of this build.");
        return ATTN_OK;
    }
    if (argc > 1)
        return attn_fail(err, ATTN_EUSAGE, "list takes no arguments (got '%s')", argv[1]);
    printf("%-20s %-6s %-6s %-6s %-6s %-12s  %s\n", "backend", "device", "none", "causal", "window", "dtypes",
           "description");
    char no_dev[256];
    int have_gpu = device_count(no_dev, sizeof no_dev) > 0;
    for (int i = 0; i < registry_count(); i++) {
        const attn_backend_t *b = registry_get(i);
        attn_problem_t p = {.batch = 1, .heads = 2, .kv_heads = 1, .head_dim = 64, .n_q = 8, .n_k = 8, .window = 4};
        attn_exec_t x = exec_default();
        char reason[512], dtypes[24] = "";
        const char *masks[3];
        int probe = have_gpu || strcmp(b->device, "cpu") == 0; /* without a device a GPU backend declines all */
        for (int m = 0; m < 3; m++) { /* a mask is accepted when some dtype runs it */
            p.mask = (attn_mask_t)m;
            masks[m] = probe ? "no" : "-";
            for (int t = 0; t < 3 && probe; t++) {
                p.dtype = (attn_dtype_t)t;
                if (backend_supports(b, &p, &x, reason, sizeof reason))
                    masks[m] = "yes";
            }
        }
        p.mask = ATTN_MASK_WINDOW;
        for (int t = 0; t < 3 && probe; t++) {
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

/* Parses the flags, or the --config suite with the flags on top, into a list of runs. */
static int load_runs(int argc, char **argv, attn_opts_t **runs, int *n_runs, attn_err_t *err) {
    attn_opts_t first;
    opts_defaults(&first);
    ATTN_TRY(opts_parse_argv(&first, argc, argv, err));
    if (first.config[0])
        return opts_load_config(first.config, argc, argv, runs, n_runs, err);
    *runs = malloc(sizeof first);
    if (!*runs)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    **runs = first;
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
                   int (*fn)(const attn_opts_t *, attn_run_t *, attn_err_t *), attn_err_t *err) {
    attn_run_t run;
    ATTN_TRY(results_run_init(&run, argc, argv, runs[0].seed, runs[0].threads, err));
    comm_mpi_version(run.mpi_version, sizeof run.mpi_version); /* the comm room is above core */
    attn_exec_t none = {.threads = runs[0].threads};
    run.threads = exec_threads(&none);
    if (runs[0].device != 0)
        results_run_set_device(&run, runs[0].device);
    int rc = ATTN_OK;
    for (int i = 0; i < n_runs && rc == ATTN_OK; i++) {
        attn_exec_t t = {.threads = runs[i].threads};
        parallel_set_blas_threads(exec_threads(&t));
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

int cli_run(int argc, char **argv, attn_err_t *err) {
    if (wants_help(argc, argv)) {
        puts("usage: attnbench run --task T --backends A,B [flags]   or   attnbench run --config suites/NAME.json\n\n"
             "Runs the task over every (seq-len × q-len × mask) case for each backend and writes\n"
             "results/<run_id>.json and .csv (atomically, only once the whole run finished).\n"
             "Exit status: 0 all records pass or skip, 1 a record failed or errored, 2 bad usage.\n");
        opts_print_flags(stdout);
        return ATTN_OK;
    }
    attn_opts_t *runs = NULL;
    int n_runs = 0;
    ATTN_TRY(load_runs(argc, argv, &runs, &n_runs, err));
    int rc = ATTN_OK;
    for (int i = 0; i < n_runs && rc == ATTN_OK; i++)
        rc = opts_validate_run(&runs[i], err);
    if (rc == ATTN_OK)
        rc = with_transport(runs, n_runs, err);
    if (rc == ATTN_OK && comm_mpi_world() && comm_mpi_world()->rank != 0)
        rc = dist_follow(err); /* ranks 1..P−1 serve rank 0's distributed calls */
    else if (rc == ATTN_OK)
        rc = execute(argc, argv, runs, n_runs, NULL, err);
    dist_stop_followers();
    comm_mpi_finalize();
    free(runs);
    return rc;
}

/* `attnbench needle …` is `attnbench run --task needle --window 4096 …`: the needle defaults go
 * in front, so the user's own flags (later on the line) override them. */
int cli_needle(int argc, char **argv, attn_err_t *err) {
    if (wants_help(argc, argv)) {
        puts("usage: attnbench needle --backends A,B --seq-len N,... [--depths 0:100:10] [--needles K] [--ask one|all]\n"
             "                        [--mode prefill|query-tail] [--window W] [--ranks P] [--haystack FILE|noise]\n"
             "                        [--resume results/RUN.json]\n\n"
             "Hides key → value needles at each depth of a haystack of each length, asks for them, and\n"
             "decodes the answer greedily with the constructed retrieval model (docs/needle-model.md).\n"
             "One record per (backend, length, depth): recall, the recall the mask allows, time. Records\n"
             "are written as they finish; a grid per backend is printed at the end. Defaults: --seq-len\n"
             "4096, --window 4096 (sliding_window), depths 0:100:10, one needle, prefill.\n");
        opts_print_flags(stdout);
        return ATTN_OK;
    }
    char **args = malloc((size_t)(argc + 7) * sizeof *args);
    if (!args)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    char *front[] = {"--task", "needle", "--window", "4096", "--seq-len", "4096"};
    args[0] = argv[0];
    memcpy(args + 1, front, sizeof front);
    memcpy(args + 7, argv + 1, (size_t)(argc - 1) * sizeof *args);
    args[argc + 6] = NULL;
    int rc = cli_run(argc + 6, args, err);
    free(args);
    return rc;
}

/* --stream-mib belongs to peak alone, so it is taken out of argv here rather than added to the
 * flags every subcommand shares; the rest goes to the shared parser. `kept` has argc slots. */
static int take_stream_mib(int argc, char **argv, char **kept, int *n_kept, attn_err_t *err) {
    *n_kept = 0;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--stream-mib") == 0) {
            if (i + 1 == argc)
                return attn_fail(err, ATTN_EUSAGE, "flag '--stream-mib' needs a value");
            v = argv[++i];
        } else if (strncmp(argv[i], "--stream-mib=", 13) == 0) {
            v = argv[i] + 13;
        }
        if (!v) {
            kept[(*n_kept)++] = argv[i];
            continue;
        }
        char *end;
        long long mib = strtoll(v, &end, 10);
        if (end == v || *end || mib < 1 || mib > 1 << 20)
            return attn_fail(err, ATTN_EUSAGE, "--stream-mib: '%s' is not a size in 1..1048576 MiB", v);
        peak_set_stream_mib(mib);
    }
    return ATTN_OK;
}

int cli_peak(int argc, char **argv, attn_err_t *err) {
    if (wants_help(argc, argv)) {
        puts("usage: attnbench peak [--sizes 512,1024,2048,4096] [--stream-mib M] [--threads T] [--repeats R]\n"
             "                      [--warmup W]\n\n"
             "Measures the roofline the throughput task's fractions are taken against, on --threads threads:\n"
             "OpenBLAS sgemm GFLOP/s for n×n×n products (2n³ FLOPs), and memory bandwidth in GB/s (1e9 B/s)\n"
             "from a STREAM-like triad a = b + s·c (12 B per element) and a read of b and c (8 B per element)\n"
             "over three arrays of M MiB each [256, at most 3/8 of available memory together], the median\n"
             "of --repeats passes (_max is STREAM's best). Write-allocate traffic is not counted (STREAM's\n"
             "convention). machine_balance = best sgemm / read bandwidth, in FLOP/B: calls of lower\n"
             "arithmetic intensity are bandwidth-bound. Writes results like `run`.");
        return ATTN_OK;
    }
    char **kept = malloc(sizeof *kept * (size_t)(argc > 0 ? argc : 1));
    if (!kept)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    int n_kept;
    attn_opts_t *runs = NULL;
    int n_runs = 0;
    int rc = take_stream_mib(argc, argv, kept, &n_kept, err);
    if (rc == ATTN_OK)
        rc = load_runs(n_kept, kept, &runs, &n_runs, err);
    if (rc == ATTN_OK)
        rc = execute(argc, argv, runs, 1, task_peak, err); /* argv whole: the command line as typed */
    free(runs);
    free(kept);
    return rc;
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

static int attend_inputs(const attn_opts_t *o, npy_array_t *q, npy_array_t *k, npy_array_t *v, attn_problem_t *p,
                         attn_err_t *err) {
    ATTN_TRY(npy_read(o->q_path, q, err));
    ATTN_TRY(npy_read(o->k_path, k, err));
    ATTN_TRY(npy_read(o->v_path, v, err));
    ATTN_TRY(check_4d("q", o->q_path, q, err));
    ATTN_TRY(check_4d("k", o->k_path, k, err));
    ATTN_TRY(check_4d("v", o->v_path, v, err));
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
    return problem_validate(p, err);
}

int cli_attend(int argc, char **argv, attn_err_t *err) {
    if (wants_help(argc, argv)) {
        puts("usage: attnbench attend --backend NAME --q q.npy --k k.npy --v v.npy --out o.npy [--lse lse.npy]\n"
             "                        [--mask none|causal|window] [--window W] [--scale S] [--threads T]\n"
             "                        [--dtype bf16 --device N]   (GPU backends)\n\n"
             "Q (B,H,n_q,d), K and V (B,H_kv,n_k,d), float32 or float64, C order; queries sit at the end of\n"
             "the key sequence. GQA comes from K's head count. O (B,H,n_q,d) and LSE (B,H,n_q, natural log)\n"
             "are float64 when all inputs are float64 and the backend runs float64, else float32 (with\n"
             "--dtype bf16 the inputs are rounded to bfloat16 on the GPU; O and LSE still come back float32).\n"
             "The default mask is none.");
        return ATTN_OK;
    }
    attn_opts_t o;
    opts_defaults(&o);
    o.masks[0] = ATTN_MASK_NONE;
    o.n_backends = 0;
    ATTN_TRY(opts_parse_argv(&o, argc, argv, err));
    if (o.n_backends != 1)
        return attn_fail(err, ATTN_EUSAGE, "attend needs exactly one --backend");
    if (o.n_masks != 1)
        return attn_fail(err, ATTN_EUSAGE, "attend takes one --mask");
    if (!o.q_path[0] || !o.k_path[0] || !o.v_path[0] || !o.out_path[0])
        return attn_fail(err, ATTN_EUSAGE, "attend needs --q, --k, --v and --out");
    const attn_backend_t *b = registry_find(o.backends[0]);
    npy_array_t q = {0}, k = {0}, v = {0};
    attn_problem_t p;
    attn_exec_t x = opts_exec(&o); /* --ranks, --transport and --layout reach a distributed backend */
    void *out = NULL, *lse = NULL;
    char reason[512];
    int rc = attend_inputs(&o, &q, &k, &v, &p, err);
    if (rc == ATTN_OK) {
        p.dtype = ATTN_F64;
        int all64 = q.dtype == ATTN_F64 && k.dtype == ATTN_F64 && v.dtype == ATTN_F64;
        if (!all64 || o.dtype == ATTN_BF16 || !backend_supports(b, &p, &x, reason, sizeof reason)) {
            /* --dtype bf16 (GPU backends): float32 arrays, rounded to bfloat16 on the device */
            p.dtype = o.dtype == ATTN_BF16 ? ATTN_BF16 : ATTN_F32;
            rc = to_f32(&q, err);
            if (rc == ATTN_OK)
                rc = to_f32(&k, err);
            if (rc == ATTN_OK)
                rc = to_f32(&v, err);
        }
    }
    if (rc == ATTN_OK && !backend_supports(b, &p, &x, reason, sizeof reason))
        rc = attn_fail(err, ATTN_ERUNTIME, "%s", reason);
    if (rc == ATTN_OK) {
        out = attn_alloc(problem_numel_q(&p) * dtype_size(p.dtype), err, "O");
        lse = attn_alloc(problem_numel_lse(&p) * dtype_size(p.dtype), err, "LSE");
        rc = out && lse ? ATTN_OK : ATTN_ERUNTIME;
    }
    if (rc == ATTN_OK) {
        parallel_set_blas_threads(exec_threads(&x));
        attn_io_t io = {.q = q.data, .k = k.data, .v = v.data, .o = out, .lse = lse};
        rc = b->forward(b, &p, &x, &io, err);
    }
    if (rc == ATTN_OK) {
        int64_t shape[4] = {p.batch, p.heads, p.n_q, p.head_dim};
        rc = npy_write(o.out_path, p.dtype, 4, shape, out, err);
        if (rc == ATTN_OK && o.lse_path[0])
            rc = npy_write(o.lse_path, p.dtype, 3, shape, lse, err);
    }
    attn_free(out);
    attn_free(lse);
    npy_free(&q);
    npy_free(&k);
    npy_free(&v);
    return rc;
}
