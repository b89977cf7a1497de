/* test_approx.c — the approximate backends (sinks_window, topk_blocks): with a budget that covers
 * every key they are exact attention, held to blockwise's tolerance against the float64
 * reference; the keys they report visiting are the keys their rule keeps, counted pair by pair;
 * top-k finds a planted key a window misses; the exactness task records them as approximate. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tests/needle_world.h"
#include "core/backend.h"
#include "core/tensors.h"
#include "core/threads.h"
#include "core/rng.h"
#include "tasks/approx.h"
#include "tasks/needle_run.h"
#include "tasks/tolerance.h"
#include "tests/approx_records.h"
#include "tests/exactness_case.h"

typedef struct {
    attn_mask_t mask;
    int64_t n_k, n_q, heads, kv_heads, d, window;
    int bq, bk;
} shape_t;

/* Multi-tile shapes: causal prefill, a query tail, a window mask, no mask, GQA, ragged tiles. */
static const shape_t shapes[] = {
    {ATTN_MASK_CAUSAL, 1000, 1000, 4, 2, 64, 0, 64, 128},
    {ATTN_MASK_CAUSAL, 777, 100, 2, 1, 32, 0, 32, 64},
    {ATTN_MASK_WINDOW, 600, 600, 2, 2, 16, 100, 16, 32},
    {ATTN_MASK_NONE, 500, 300, 3, 1, 48, 0, 64, 96},
    {ATTN_MASK_CAUSAL, 129, 129, 1, 1, 8, 0, 0, 0},
};

typedef struct {
    attn_tensors_t in32, ref;
    attn_errors_t naive32;
    double o_max, lse_max;
} fixture_t;

static attn_problem_t problem_of(const shape_t *s, attn_dtype_t t) {
    return (attn_problem_t){.batch = 1, .heads = s->heads, .kv_heads = s->kv_heads, .head_dim = s->d, .n_q = s->n_q,
                            .n_k = s->n_k, .mask = s->mask, .window = s->window, .dtype = t, .block_q = s->bq,
                            .block_k = s->bk};
}

/* Seeded f32 inputs (then plant(), when given, edits them), the float64 reference on the same
 * values, and naive f32's own error. */
static int fixture(const attn_problem_t *p32, uint64_t seed, void (*plant)(const attn_problem_t *, attn_tensors_t *),
                   fixture_t *f) {
    attn_problem_t p64 = *p32;
    p64.dtype = ATTN_F64;
    attn_err_t err = {0};
    if (tensors_alloc(p32, 1, seed, &f->in32, &err) || tensors_alloc(&p64, 0, 0, &f->ref, &err))
        return !check(0, "allocate", "%s", err.msg);
    if (plant)
        plant(p32, &f->in32);
    const float *src[3] = {f->in32.q, f->in32.k, f->in32.v};
    double *dst[3] = {f->ref.q, f->ref.k, f->ref.v};
    size_t len[3] = {problem_numel_q(p32), problem_numel_kv(p32), problem_numel_kv(p32)};
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < len[t]; i++)
            dst[t][i] = src[t][i];
    const attn_backend_t *naive = registry_find("naive");
    attn_exec_t x = exec_default();
    x.threads = 2;
    attn_tensors_t base;
    if (naive->forward(naive, &p64, &x, &f->ref.io, &err) || tensors_alloc(p32, 0, 0, &base, &err))
        return !check(0, "reference", "%s", err.msg);
    attn_io_t io = f->in32.io;
    io.o = base.o, io.lse = base.lse;
    if (naive->forward(naive, p32, &x, &io, &err))
        return !check(0, "naive f32", "%s", err.msg);
    size_t n_o = problem_numel_q(p32), n_l = problem_numel_lse(p32);
    f->naive32 = errors_measure(base.o, base.lse, ATTN_F32, f->ref.o, f->ref.lse, n_o, n_l);
    f->o_max = f->lse_max = 0;
    for (size_t i = 0; i < n_o; i++)
        f->o_max = fmax(f->o_max, fabs(((double *)f->ref.o)[i]));
    for (size_t i = 0; i < n_l; i++)
        f->lse_max = fmax(f->lse_max, fabs(((double *)f->ref.lse)[i]));
    tensors_free(&base);
    return 0;
}

/* Runs be at x on f's inputs: its errors against the reference, and the pairs it visited. */
static int run_backend(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x, const fixture_t *f,
                       attn_errors_t *e, double *visited, attn_tensors_t *out) {
    attn_err_t err = {0};
    char why[256];
    if (!check(backend_supports(be, p, x, why, sizeof why), be->name, "declined: %s", why))
        return 1;
    if (tensors_alloc(p, 0, 0, out, &err))
        return !check(0, "allocate", "%s", err.msg);
    attn_io_t io = f->in32.io;
    io.o = out->o, io.lse = out->lse, io.keys_visited = visited;
    if (be->forward(be, p, x, &io, &err))
        return !check(0, be->name, "forward: %s", err.msg);
    *e = errors_measure(out->o, out->lse, ATTN_F32, f->ref.o, f->ref.lse, problem_numel_q(p), problem_numel_lse(p));
    return 0;
}

/* The (query, key) pairs sinks_window keeps, by the per-pair rule: visible, and a sink or in the window. */
static double sinks_pairs(const attn_problem_t *p, int64_t S, int64_t W) {
    double n = 0;
    attn_vis_t v = problem_vis(p), band = {ATTN_MASK_WINDOW, W, NULL, 0};
    for (int64_t r = 0; r < p->n_q; r++) {
        int64_t i = p->n_k - p->n_q + r;
        for (int64_t j = 0; j < p->n_k; j++)
            n += mask_visible(&v, i, j) && (j < S || mask_visible(&band, i, j));
    }
    return n * (double)(p->batch * p->heads);
}

static void full_budget(const shape_t *s, int si) {
    attn_problem_t p = problem_of(s, ATTN_F32);
    fixture_t f;
    if (fixture(&p, 100 + (uint64_t)si, NULL, &f))
        return;
    attn_errors_t tol = tolerance_bound("blockwise", ATTN_F32, &f.naive32, f.o_max, f.lse_max, p.n_k);
    double all = (double)(p.batch * p.heads) * problem_visible_pairs(&p);
    const int bk = s->bk ? s->bk : 256;
    /* budgets that cover every key: topk ≥ the tiles; sinks ≥ n; under causal also S + W ≥ n */
    struct {
        const char *be;
        int64_t sinks, topk, window;
        double pct;
    } budgets[] = {
        {"topk_blocks", 0, (s->n_k + bk - 1) / bk, 1, 0},
        {"topk_blocks", 0, 0, 1, 100},
        {"sinks_window", s->n_k, 0, 1, 0},
        {"sinks_window", s->n_k / 2, 0, s->n_k - s->n_k / 2, 0},
    };
    for (int b = 0; b < 4; b++) {
        if (b == 3 && s->mask == ATTN_MASK_NONE) /* a window reaches only back: not every key */
            continue;
        attn_exec_t x = exec_default();
        x.threads = 2, x.sinks = budgets[b].sinks, x.topk = budgets[b].topk, x.topk_pct = budgets[b].pct;
        x.approx_window = budgets[b].window;
        const attn_backend_t *be = registry_find(budgets[b].be);
        attn_errors_t e;
        double visited = -1;
        attn_tensors_t out = {0};
        char name[200];
        snprintf(name, sizeof name, "%s S=%lld K=%lld (%g%%) W=%lld mask=%s n_k=%lld n_q=%lld H=%lld/%lld d=%lld",
                 be->name, (long long)x.sinks, (long long)x.topk, x.topk_pct, (long long)x.approx_window,
                 mask_name(p.mask), (long long)p.n_k, (long long)p.n_q, (long long)p.heads, (long long)p.kv_heads,
                 (long long)p.head_dim);
        if (run_backend(be, &p, &x, &f, &e, &visited, &out) == 0) {
            check(errors_within(&e, &tol), name, "rel_l2 %.3g (tol %.3g), max_abs %.3g (tol %.3g), lse %.3g (tol %.3g)",
                  e.rel_l2, tol.rel_l2, e.max_abs, tol.max_abs, e.lse_max, tol.lse_max);
            check(visited == all, "visits every visible pair", "%s: visited %.0f of %.0f", name, visited, all);
        }
        tensors_free(&out);
    }
    /* a budget short of every key: sinks_window visits exactly the pairs its rule keeps */
    attn_exec_t x = exec_default();
    x.threads = 2, x.sinks = 5, x.approx_window = 37;
    attn_errors_t e;
    double visited = -1, want = sinks_pairs(&p, 5, 37);
    attn_tensors_t out = {0};
    if (run_backend(registry_find("sinks_window"), &p, &x, &f, &e, &visited, &out) == 0)
        check(visited == want, "sinks_window visits the pairs its rule keeps", "mask %s n_k %lld: %.0f, per pair %.0f",
              mask_name(p.mask), (long long)p.n_k, visited, want);
    tensors_free(&out);
    /* topk_blocks with one tile and W = 1: the window of a Q tile (bq ≤ bk rows) touches at most 2
     * K tiles, so a row visits at most 3 tiles, fewer than all, and at least itself */
    x = exec_default();
    x.threads = 2, x.topk = 1, x.approx_window = 1;
    if (s->n_k > 2 * bk && run_backend(registry_find("topk_blocks"), &p, &x, &f, &e, &visited, &out) == 0)
        check(visited <= 3.0 * bk * (double)(p.n_q * p.heads) && visited < all && visited >= (double)(p.n_q * p.heads),
              "topk_blocks K=1 visits between the row itself and 3 tiles per row", "%s n_k %lld: %.0f of %.0f",
              mask_name(p.mask), (long long)p.n_k, visited, all);
    tensors_free(&out);
    tensors_free(&f.in32), tensors_free(&f.ref);
}

/* A key far in the past aligned with every query, with a large value: exact attention puts most of
 * its weight there. The min/max bound must rank its tile first (topk 1 ≈ exact), while sinks and a
 * short window miss it. */
enum { PLANT_AT = 700 };
static void plant_key(const attn_problem_t *p, attn_tensors_t *t) {
    float *q = t->q, *k = t->k, *v = t->v;
    int64_t d = p->head_dim;
    for (int64_t c = 0; c < d; c++) {
        k[PLANT_AT * d + c] = c < 4 ? 8.0f : 0.0f; /* score 4·3·8/√32 ≈ 17: e^17 outweighs 2047 keys */
        v[PLANT_AT * d + c] = 5.0f;
    }
    for (int64_t r = 0; r < p->n_q; r++)
        for (int64_t c = 0; c < 4; c++)
            q[r * d + c] = 3.0f;
}

static void planted_key(void) {
    shape_t s = {ATTN_MASK_CAUSAL, 2048, 16, 1, 1, 32, 0, 16, 64};
    attn_problem_t p = problem_of(&s, ATTN_F32);
    fixture_t f;
    if (fixture(&p, 7, plant_key, &f))
        return;
    attn_exec_t x = exec_default();
    x.threads = 2, x.topk = 1, x.approx_window = 64;
    attn_errors_t et, es;
    double vt = 0, vs = 0;
    attn_tensors_t out = {0};
    if (run_backend(registry_find("topk_blocks"), &p, &x, &f, &et, &vt, &out) == 0)
        check(et.rel_l2 < 1e-2 && approx_key_fraction(&p, vt) < 0.1, "topk_blocks K=1 finds the planted key",
              "rel_l2 %.3g (want < 1e-2) visiting %.3g of the keys", et.rel_l2, approx_key_fraction(&p, vt));
    tensors_free(&out);
    x.sinks = 4;
    if (run_backend(registry_find("sinks_window"), &p, &x, &f, &es, &vs, &out) == 0)
        check(es.rel_l2 > 0.5, "sinks_window misses the planted key", "rel_l2 %.3g (want > 0.5)", es.rel_l2);
    tensors_free(&out);
    tensors_free(&f.in32), tensors_free(&f.ref);
}

/* Through the exactness task as users run it: one record per budget, status approximate, error
 * and key fraction recorded; the full budget's error within blockwise's tolerance of that case. */
static void task_records(void) {
    attn_run_t run;
    attn_err_t err = {0};
    task_set_progress(0);
    if (!check(exactness_case("backends=blockwise,topk_blocks,sinks_window seq-len=700 mask=causal heads=2 kv-heads=1 "
                              "head-dim=32 block-q=32 block-k=64 window=16 topk=1,100% sinks=0,700",
                              2, "test_approx", &run, &err) == ATTN_OK,
               "exactness run", "%s", err.msg))
        return;
    check_approx_records(&run, "blockwise", 700);
}

/* Needles with distractors on synthetic ids (as test_needle.c): the prompt holds every
 * distractor sentence and exact attention still recalls every needle; topk_blocks with a budget
 * over every tile recalls them too; sinks + a short window loses the ones outside it. */
static void needle_distractors(void) {
    enum { N = 4096, D = 60 };
    needle_vocab_t nv = needle_test_vocab();
    static const int32_t intro[] = {10, 11, 12}, outro[] = {13}, qprefix[] = {14, 15, 16, 17};
    const needle_text_t text = {intro, outro, qprefix, 3, 1, 4};
    int32_t *hay = needle_test_hay(N);
    model_t m;
    needle_margins_t mg;
    attn_err_t err = {0};
    if (!check(needle_model_build(&m, &nv, N + 8, &mg, &err) == ATTN_OK, "needle model", "%s", err.msg)) {
        free(hay);
        return;
    }
    const char *names[] = {"blockwise", "topk_blocks", "sinks_window"};
    for (int b = 0; b < 3; b++) {
        int correct = 0, asked = 0, sentences_ok = 1;
        for (int depth = 0; depth <= 100; depth += 25) {
            needle_prompt_t pr;
            if (!check(needle_prompt_build_distracted(hay, N, depth, 2, D, &nv, &text, 9 + (uint64_t)depth, &pr, &err) ==
                           ATTN_OK,
                       "distracted prompt", "%s", err.msg))
                break;
            int64_t intros = 0;
            for (int64_t i = 0; i + 2 < pr.n_ctx; i++)
                intros += pr.ctx[i] == 10 && pr.ctx[i + 1] == 11 && pr.ctx[i + 2] == 12;
            sentences_ok &= intros == 2 + D;
            needle_run_opts_t ro = {.be = registry_find(names[b]), .mode = NEEDLE_QUERY_TAIL, .ask_all = 1};
            ro.tmpl.mask = ATTN_MASK_CAUSAL;
            ro.x = exec_default();
            ro.x.threads = 2, ro.x.approx_window = b == 2 ? 64 : 1, ro.x.sinks = 4, ro.x.topk_pct = 100;
            needle_outcome_t out;
            if (!check(needle_run_prompt(&m, &mg, &pr, &ro, &out, &err) == ATTN_OK, "needle run", "%s", err.msg)) {
                needle_prompt_free(&pr);
                break;
            }
            asked += out.asked, correct += out.correct;
            needle_prompt_free(&pr);
        }
        check(sentences_ok, "distracted prompts hold 2 needles + 60 distractors", "a count differs");
        char name[128];
        snprintf(name, sizeof name, "%s with %d distractors: recall %d/%d", names[b], D, correct, asked);
        check(asked == 10 && (b < 2 ? correct == asked : correct < asked), name,
              b < 2 ? "want every needle (exact, or a budget over every tile)" : "want some lost outside the window");
    }
    model_free(&m);
    free(hay);
}

int main(void) {
    parallel_set_blas_threads(1);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        full_budget(&shapes[i], (int)i);
    planted_key();
    task_records();
    needle_distractors();
    return check_summary();
}
