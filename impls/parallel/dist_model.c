/* dist_model.c — the decoder with its tokens sharded over the ranks (dist_model.h): each rank
 * runs model_forward_rank on its pieces; under mpi the followers keep the weights per model. */
#include "impls/parallel/dist_model.h"

#include <stdlib.h>
#include <string.h>

#include "impls/parallel/dist.h"

enum { TAG_WEIGHTS = 1 << 22, TAG_TOKENS = (1 << 22) - 1, TAG_GATHERED = (1 << 22) - 2 };

typedef struct {
    const model_t *m;
    const attn_backend_t *be;
    const attn_problem_t *p;
    const attn_exec_t *x;
    const int32_t *tokens; /* the whole sequence */
    int64_t n, n_logits;
    double *logits; /* rank 0 */
    float *whole;   /* rank 0's (n, hidden) gather target */
} model_call_t;

typedef struct {
    attn_comm_t *c;
    const attn_backend_t *be;
    attn_layout_t l;
} rank_ctx_t;

static int attend(void *ctx, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err) {
    rank_ctx_t *r = ctx;
    return r->be->forward_rank(r->be, p, x, r->c, io, err);
}

/* The root reads `whole` right after: under `local` every rank's copy must have landed (a shared
 * gather is each thread's own copy, with no wait in it). */
static int gather(void *ctx, const float *rows, float *whole, int64_t width, attn_err_t *err) {
    rank_ctx_t *r = ctx;
    ATTN_TRY(dist_gather(r->c, &r->l, 1, width, rows, whole, err));
    return r->c->shared_memory ? comm_barrier(r->c, TAG_GATHERED, err) : ATTN_OK;
}

static int model_rank(attn_comm_t *c, void *arg, attn_err_t *err) {
    const model_call_t *call = arg;
    rank_ctx_t ctx = {.c = c, .be = call->be};
    attn_layout_kind_t kind = LAYOUT_CONTIGUOUS;
    if (call->x->layout >= 0)
        kind = (attn_layout_kind_t)call->x->layout;
    else if (!layout_parse(call->be->layout, &kind)) /* zigzag_balanced: its bounds come from the problem */
        return attn_fail(err, ATTN_EUSAGE, "%s does not run the model task (its layout is cut per problem)",
                         call->be->name);
    ATTN_TRY(layout_init(&ctx.l, kind, call->n, c->size, err));
    layout_piece_t pc[2];
    int np = layout_pieces(&ctx.l, c->rank, pc);
    int64_t nl = layout_local_count(&ctx.l, c->rank);
    model_shard_t sh = {.n_pieces = np, .n_total = call->n, .root = c->rank == 0, .whole = call->whole,
                        .attend = attend, .gather = gather, .ctx = &ctx};
    int32_t *tok = malloc((size_t)(nl + 1) * sizeof *tok);
    if (!tok)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: out of memory for %lld tokens", c->rank, (long long)nl);
    for (int i = 0; i < np; i++) {
        sh.pos[i] = pc[i].pos, sh.count[i] = pc[i].count, sh.local_start[i] = pc[i].local_start;
        for (int64_t r = 0; r < pc[i].count; r++)
            tok[pc[i].local_start + r] = call->tokens[pc[i].pos.start + pc[i].pos.stride * r];
    }
    int rc = model_forward_rank(call->m, &sh, call->be, call->p, call->x, tok, nl, call->n_logits,
                                c->rank == 0 ? call->logits : NULL, err);
    free(tok);
    return rc;
}

/* Point-to-point from rank 0 to every follower (src == 0), or into this follower. */
static int fan_out(attn_comm_t *c, void *buf, size_t bytes, int tag, attn_err_t *err) {
    if (c->rank != 0) {
        comm_req_t r = {0};
        ATTN_TRY(comm_irecv(c, buf, bytes, 0, tag, &r, err));
        return comm_wait(c, &r, err);
    }
    for (int q = 1; q < c->size; q++) {
        comm_req_t r = {0};
        ATTN_TRY(comm_isend(c, buf, bytes, q, tag, &r, err));
        ATTN_TRY(comm_wait(c, &r, err));
    }
    return ATTN_OK;
}

static int move_weights(attn_comm_t *c, const model_t *m, attn_err_t *err) {
    int count = model_weight_count(&m->cfg);
    float **ptrs = calloc((size_t)count, sizeof *ptrs);
    int64_t *numel = calloc((size_t)count, sizeof *numel);
    int rc = ptrs && numel ? ATTN_OK : attn_fail(err, ATTN_ERUNTIME, "out of memory");
    int n = rc == ATTN_OK ? model_weights(m, ptrs, numel, count) : 0;
    for (int i = 0; i < n && rc == ATTN_OK; i++)
        rc = fan_out(c, ptrs[i], (size_t)numel[i] * sizeof(float), TAG_WEIGHTS + i, err);
    free(ptrs), free(numel);
    return rc;
}

int dist_model_forward(const model_t *m, const attn_backend_t *be, const attn_problem_t *tmpl, const attn_exec_t *x,
                       const int32_t *tokens, int64_t n, int64_t n_logits, double *logits, attn_err_t *err) {
    int P = x->ranks;
    double timeout = x->comm_timeout > 0 ? x->comm_timeout : 300.0;
    float *whole = attn_alloc((size_t)(n * m->cfg.hidden_size) * sizeof(float), err, "model gathered rows");
    if (!whole)
        return ATTN_ERUNTIME;
    model_call_t call = {m, be, tmpl, x, tokens, n, n_logits, logits, whole};
    int rc;
    if (x->transport == ATTN_TRANSPORT_LOCAL) {
        rc = comm_local_run(P, timeout, exec_threads(x), model_rank, &call, err);
    } else {
        static uint64_t followers_hold; /* the model id the followers have the weights of */
        attn_comm_t *c = comm_mpi_world();
        dist_model_cmd_t mc = {.model_id = m->id, .weights_follow = m->id != followers_hold, .cfg = m->cfg, .n = n,
                               .n_logits = n_logits};
        rc = dist_announce_model(be, tmpl, x, &mc, err);
        if (rc == ATTN_OK && mc.weights_follow)
            rc = move_weights(c, m, err);
        if (rc == ATTN_OK)
            followers_hold = m->id;
        if (rc == ATTN_OK)
            rc = fan_out(c, (void *)tokens, (size_t)n * sizeof *tokens, TAG_TOKENS, err);
        if (rc == ATTN_OK)
            rc = model_rank(c, &call, err);
        if (rc != ATTN_OK) /* followers may be blocked on this rank: the job cannot go on */
            comm_mpi_abort(0, err->msg, 1);
    }
    attn_free(whole);
    return rc;
}

int dist_model_follow(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x, const dist_model_cmd_t *mc,
                      attn_err_t *err) {
    static model_t held; /* the last model rank 0 sent, kept for the calls that follow */
    static uint64_t held_id;
    attn_comm_t *c = comm_mpi_world();
    if (mc->weights_follow) {
        model_free(&held);
        held_id = 0;
        ATTN_TRY(model_init_zero(&held, &mc->cfg, err));
        ATTN_TRY(move_weights(c, &held, err));
        held_id = mc->model_id;
    }
    if (held_id != mc->model_id)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: asked for model %llu but holds %llu", c->rank,
                         (unsigned long long)mc->model_id, (unsigned long long)held_id);
    int32_t *tokens = malloc((size_t)mc->n * sizeof *tokens);
    if (!tokens)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: out of memory for %lld tokens", c->rank, (long long)mc->n);
    int rc = fan_out(c, tokens, (size_t)mc->n * sizeof *tokens, TAG_TOKENS, err);
    model_call_t call = {&held, be, p, x, tokens, mc->n, mc->n_logits, NULL, NULL};
    if (rc == ATTN_OK)
        rc = model_rank(c, &call, err);
    free(tokens);
    return rc;
}

int dist_model_run(const model_t *m, model_cache_t *cache, const attn_backend_t *be, const attn_problem_t *tmpl,
                   const attn_exec_t *x, const int32_t *tokens, int64_t n, int64_t n_logits, double *logits,
                   attn_err_t *err) {
    if (be->forward_rank && !cache && x->ranks > 1 && tmpl->dtype == ATTN_F32 && n >= 2 * (int64_t)x->ranks &&
        n_logits >= 1 && n_logits <= n)
        return dist_model_forward(m, be, tmpl, x, tokens, n, n_logits, logits, err);
    return model_forward(m, cache, be, tmpl, x, tokens, n, n_logits, logits, err);
}
