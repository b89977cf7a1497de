/* dist.c — the shared machinery of the distributed backends (see dist.h): dist_forward on the
 * problem's transport, rank 0's announcements and the followers' loop under mpi, shard moves. */
#include "impls/parallel/dist.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/docs.h"
#include "impls/cpu/tile_engine.h"
#include "core/timing.h"

enum { TAG_SHARD = 1 << 20 }; /* above any step tag a backend uses */

void dist_shard_copy(const attn_layout_t *l, int rank, int64_t outer, int64_t d, float *shard, float *whole,
                       int to_shard) {
    layout_piece_t pc[2];
    int n = layout_pieces(l, rank, pc);
    int64_t count = layout_local_count(l, rank);
    for (int64_t o = 0; o < outer; o++)
        for (int i = 0; i < n; i++)
            for (int64_t r = 0; r < pc[i].count; r++) {
                float *a = shard + (o * count + pc[i].local_start + r) * d;
                float *b = whole + (o * l->n + pc[i].pos.start + pc[i].pos.stride * r) * d;
                memcpy(to_shard ? a : b, to_shard ? b : a, (size_t)d * sizeof(float));
            }
}

int dist_shard_runs(const attn_layout_t *l, int rank, int64_t outer, int64_t d, dist_run_t *runs, int cap) {
    layout_piece_t pc[2];
    int n = layout_pieces(l, rank, pc), at = 0;
    int64_t count = layout_local_count(l, rank);
    for (int64_t o = 0; o < outer; o++)
        for (int i = 0; i < n; i++) {
            if (!pc[i].count)
                continue;
            if (at == cap)
                return -1;
            runs[at++] = (dist_run_t){.dst = (o * count + pc[i].local_start) * d,
                                      .src = (o * l->n + pc[i].pos.start) * d,
                                      .src_pitch = pc[i].pos.stride * d, .rows = pc[i].count};
        }
    return at;
}

dist_copy2d_t dist_run_copy2d(const dist_run_t *r, int64_t d, size_t elem, int to_shard) {
    size_t whole = (size_t)r->src * elem, shard = (size_t)r->dst * elem, wp = (size_t)r->src_pitch * elem;
    size_t row = (size_t)d * elem;
    if (to_shard)
        return (dist_copy2d_t){shard, row, whole, wp, row, (size_t)r->rows};
    return (dist_copy2d_t){whole, wp, shard, row, row, (size_t)r->rows};
}

/* Rank 0 moves every other rank's shard through one staging buffer, a peer at a time. */
static int root_exchange(attn_comm_t *c, const attn_layout_t *l, int64_t outer, int64_t d, float *whole,
                         int to_peers, attn_err_t *err) {
    size_t cap = (size_t)(outer * layout_max_local_count(l) * d);
    float *stage = attn_alloc(cap * sizeof(float) + 1, err, "shard staging buffer");
    if (!stage)
        return ATTN_ERUNTIME;
    int rc = ATTN_OK;
    for (int q = 1; q < c->size && rc == ATTN_OK; q++) {
        size_t bytes = (size_t)(outer * layout_local_count(l, q) * d) * sizeof(float);
        if (!bytes)
            continue;
        comm_req_t req = {0};
        if (to_peers)
            dist_shard_copy(l, q, outer, d, stage, whole, 1);
        rc = to_peers ? comm_isend(c, stage, bytes, q, TAG_SHARD, &req, err)
                      : comm_irecv(c, stage, bytes, q, TAG_SHARD, &req, err);
        if (rc == ATTN_OK)
            rc = comm_wait(c, &req, err);
        if (rc == ATTN_OK && !to_peers)
            dist_shard_copy(l, q, outer, d, stage, whole, 0);
    }
    attn_free(stage);
    return rc;
}

static int peer_exchange(attn_comm_t *c, const attn_layout_t *l, int64_t outer, int64_t d, float *shard, int recv,
                         attn_err_t *err) {
    size_t bytes = (size_t)(outer * layout_local_count(l, c->rank) * d) * sizeof(float);
    if (!bytes)
        return ATTN_OK;
    comm_req_t req = {0};
    ATTN_TRY(recv ? comm_irecv(c, shard, bytes, 0, TAG_SHARD, &req, err)
                  : comm_isend(c, shard, bytes, 0, TAG_SHARD, &req, err));
    return comm_wait(c, &req, err);
}

int dist_scatter(attn_comm_t *c, const attn_layout_t *l, int64_t outer, int64_t d, const float *whole,
                 float *shard, attn_err_t *err) {
    if (c->shared_memory || c->rank == 0)
        dist_shard_copy(l, c->rank, outer, d, shard, (float *)whole, 1);
    if (c->shared_memory)
        return ATTN_OK;
    return c->rank == 0 ? root_exchange(c, l, outer, d, (float *)whole, 1, err)
                        : peer_exchange(c, l, outer, d, shard, 1, err);
}

int dist_gather(attn_comm_t *c, const attn_layout_t *l, int64_t outer, int64_t d, const float *shard, float *whole,
                attn_err_t *err) {
    if (c->shared_memory || c->rank == 0)
        dist_shard_copy(l, c->rank, outer, d, (float *)shard, whole, 0);
    if (c->shared_memory)
        return ATTN_OK;
    return c->rank == 0 ? root_exchange(c, l, outer, d, whole, 0, err)
                        : peer_exchange(c, l, outer, d, (float *)shard, 0, err);
}

enum { N_FIELDS = 8 };

int dist_report(attn_comm_t *c, const dist_rank_stats_t *mine, attn_dist_stats_t *out, attn_err_t *err) {
    int P = c->size, me = c->rank, S = mine->n_steps;
    if (S < 1 || S > 64 || S * P > 4096)
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: %d steps on %d ranks is too many to report", me, S, P);
    /* Taken before the reductions below add their own bytes. */
    double fields[N_FIELDS * ATTN_MAX_RANKS] = {0}, steps[4096] = {0};
    double mine_v[N_FIELDS] = {mine->compute_s,         c->stats.total_s,   c->stats.exposed_s,
                               (double)c->stats.bytes_sent, (double)c->stats.bytes_recv, mine->blocks_computed,
                               mine->blocks_skipped,    mine->wall_s};
    for (int f = 0; f < N_FIELDS; f++)
        fields[f * P + me] = mine_v[f];
    for (int s = 0; s < S; s++)
        steps[s * P + me] = mine->step_compute[s];
    ATTN_TRY(comm_allreduce(c, fields, N_FIELDS * P, COMM_SUM, TAG_SHARD + 1, err));
    ATTN_TRY(comm_allreduce(c, steps, S * P, COMM_SUM, TAG_SHARD + 2, err));
    if (me != 0 || !out)
        return ATTN_OK;
    out->ranks = P;
    double *dst[N_FIELDS - 1] = {out->compute_s,  out->comm_s,          out->exposed_s,     out->bytes_sent,
                                 out->bytes_recv, out->blocks_computed, out->blocks_skipped};
    out->wall_s = out->critical_path_s = 0;
    for (int r = 0; r < P; r++) {
        for (int f = 0; f < N_FIELDS - 1; f++)
            dst[f][r] = fields[f * P + r];
        out->wall_s = fmax(out->wall_s, fields[(N_FIELDS - 1) * P + r]);
    }
    for (int s = 0; s < S; s++) {
        double worst = 0;
        for (int r = 0; r < P; r++)
            worst = fmax(worst, steps[s * P + r]);
        out->critical_path_s += worst;
    }
    return ATTN_OK;
}

static int fault_point(attn_comm_t *c, const attn_exec_t *x, int step, attn_err_t *err);

int dist_fault_point(attn_comm_t *c, const attn_exec_t *x, int step, attn_err_t *err) {
    return x->fault_backward ? ATTN_OK : fault_point(c, x, step, err);
}

int dist_fault_point_backward(attn_comm_t *c, const attn_exec_t *x, int step, attn_err_t *err) {
    return x->fault_backward ? fault_point(c, x, step, err) : ATTN_OK;
}

static int fault_point(attn_comm_t *c, const attn_exec_t *x, int step, attn_err_t *err) {
    if ((x->fault != ATTN_FAULT_EXIT && x->fault != ATTN_FAULT_STALL && x->fault != ATTN_FAULT_SLOW) ||
        c->rank != x->fault_rank || step != x->fault_step)
        return ATTN_OK;
    if (x->fault == ATTN_FAULT_SLOW) { /* late, not dead: the peers wait up to their timeout */
        fprintf(stderr, "attnbench: rank %d: injected fault: slow by %g s at step %d\n", c->rank, x->fault_delay_s,
                step);
        fflush(stderr);
        struct timespec t = {(time_t)x->fault_delay_s,
                             (long)((x->fault_delay_s - (double)(time_t)x->fault_delay_s) * 1e9)};
        while (nanosleep(&t, &t) && errno == EINTR) {
        }
        return ATTN_OK;
    }
    if (x->fault == ATTN_FAULT_EXIT) {
        if (!c->shared_memory) { /* a real process death, as a crash would be */
            fprintf(stderr, "attnbench: rank %d: injected fault: exiting at step %d\n", c->rank, step);
            fflush(stderr);
            _exit(3);
        }
        return attn_fail(err, ATTN_ERUNTIME, "rank %d: injected fault: exited at step %d", c->rank, step);
    }
    /* Stall: stop communicating. Peers time out; under local the thread then returns so the
     * process can end, under mpi the job is ended by the peer that timed out. */
    double t0 = time_now_s();
    while (!(c->ops->peer_failed && c->ops->peer_failed(c)) && time_now_s() - t0 < 10 * c->timeout_s + 60) {
        struct timespec t = {0, 10000000};
        nanosleep(&t, NULL);
    }
    return attn_fail(err, ATTN_ERUNTIME, "rank %d: injected fault: stalled at step %d", c->rank, step);
}

int dist_supports_common(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, char *reason, size_t len) {
    int P = exec_ranks(x);
    if (P > ATTN_MAX_RANKS) {
        snprintf(reason, len, "%s runs at most %d ranks (got %d)", self->name, ATTN_MAX_RANKS, P);
        return 0;
    }
    int gpu = !strcmp(self->device, "cuda");
    if (!gpu && (x->transport == ATTN_TRANSPORT_CUDA_LOCAL || x->transport == ATTN_TRANSPORT_NCCL)) {
        snprintf(reason, len, "%s runs on --transport local or mpi (%s is for the *_cuda backends)", self->name,
                 transport_name(x->transport));
        return 0;
    }
    if (gpu && (x->transport == ATTN_TRANSPORT_LOCAL || x->transport == ATTN_TRANSPORT_MPI)) {
        snprintf(reason, len, "%s runs on --transport cuda_local (P virtual ranks on one GPU) or nccl", self->name);
        return 0;
    }
    if (transport_over_mpi(x->transport)) {
        attn_comm_t *w = comm_mpi_world();
        if (!w) {
            snprintf(reason, len, "--transport %s needs the run started under mpirun", transport_name(x->transport));
            return 0;
        }
        if (w->size != P) {
            snprintf(reason, len, "--ranks %d but mpirun started %d processes", P, w->size);
            return 0;
        }
    }
    if (gpu)
        return 1; /* dtype and device memory: the GPU backend's own supports() */
    return tile_backend_supports_dtype(self, p, reason, len) && backend_check_memory(self, p, x, reason, len);
}

/* ---- running forward_rank on the transport ------------------------------------------------- */

typedef struct {
    const attn_backend_t *self;
    const attn_problem_t *p;
    const attn_exec_t *x;
    const attn_io_t *io;
} rank_call_t;

static int local_rank(attn_comm_t *c, void *arg, attn_err_t *err) {
    const rank_call_t *call = arg;
    return call->self->forward_rank(call->self, call->p, call->x, c, call->io, err);
}

typedef struct {
    const attn_backend_t *self;
    const attn_problem_t *p;
    const attn_exec_t *x;
    const attn_grad_io_t *g;
} grad_call_t;

static int local_rank_backward(attn_comm_t *c, void *arg, attn_err_t *err) {
    const grad_call_t *call = arg;
    return call->self->backward_rank(call->self, call->p, call->x, c, call->g, err);
}

/* A command from rank 0: run backend `backend` on problem p (one attention call, or a model
 * forward described by `model`), or stop. */
typedef struct {
    int stop, is_model, is_backward;
    char backend[48];
    attn_problem_t p;
    attn_exec_t x;
    dist_model_cmd_t model;
} dist_cmd_t;

static int announce(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x,
                    const dist_model_cmd_t *model, int backward, attn_err_t *err) {
    attn_comm_t *c = comm_mpi_world();
    int P = exec_ranks(x);
    if (!c || c->size != P || c->rank != 0)
        return attn_fail(err, ATTN_EUSAGE, "--transport mpi --ranks %d needs `mpirun -np %d` (this job has %d)", P, P,
                         c ? c->size : 0);
    c->timeout_s = x->comm_timeout > 0 ? x->comm_timeout : 300.0;
    dist_cmd_t cmd = {.p = *p, .x = *x, .is_model = model != NULL, .is_backward = backward};
    if (model)
        cmd.model = *model;
    snprintf(cmd.backend, sizeof cmd.backend, "%s", be->name);
    for (int q = 1; q < P; q++) {
        ATTN_TRY(comm_mpi_ctrl_send(q, &cmd, sizeof cmd, err));
        if (p->doc && p->n_docs > 1) /* the offsets themselves: the pointer means nothing on another rank */
            ATTN_TRY(comm_mpi_ctrl_send(q, p->doc, (size_t)(p->n_docs + 1) * sizeof(int64_t), err));
    }
    return ATTN_OK;
}

/* The document offsets that follow a command whose problem has documents (announce), kept. */
static int follow_docs(attn_problem_t *p, attn_err_t *err) {
    if (!p->doc || p->n_docs <= 1) {
        p->doc = NULL, p->n_docs = 0;
        return ATTN_OK;
    }
    size_t bytes = attn_size_mul((size_t)p->n_docs + 1, sizeof(int64_t));
    int64_t *off = attn_alloc(bytes, err, "document offsets");
    if (!off)
        return ATTN_ERUNTIME;
    int rc = comm_mpi_ctrl_recv(off, bytes, err);
    if (rc == ATTN_OK)
        rc = (p->doc = docs_keep(off, p->n_docs + 1, err)) ? ATTN_OK : ATTN_ERUNTIME;
    attn_free(off);
    return rc;
}

int dist_announce_model(const attn_backend_t *be, const attn_problem_t *p, const attn_exec_t *x,
                        const dist_model_cmd_t *mc, attn_err_t *err) {
    return announce(be, p, x, mc, 0, err);
}

int dist_forward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_io_t *io, attn_err_t *err) {
    int P = exec_ranks(x);
    double timeout = x->comm_timeout > 0 ? x->comm_timeout : 300.0;
    if (x->transport == ATTN_TRANSPORT_LOCAL) {
        rank_call_t call = {self, p, x, io};
        return comm_local_run(P, timeout, exec_threads(x), local_rank, &call, err);
    }
    ATTN_TRY(announce(self, p, x, NULL, 0, err));
    attn_comm_t *c = comm_mpi_world();
    int rc = self->forward_rank(self, p, x, c, io, err);
    if (rc != ATTN_OK) /* peers may be blocked on this rank: the job cannot go on */
        comm_mpi_abort(0, err->msg, 1);
    return rc;
}

int dist_backward(const attn_backend_t *self, const attn_problem_t *p, const attn_exec_t *x, const attn_grad_io_t *g,
                  attn_err_t *err) {
    int P = exec_ranks(x);
    double timeout = x->comm_timeout > 0 ? x->comm_timeout : 300.0;
    if (x->transport == ATTN_TRANSPORT_LOCAL) {
        grad_call_t call = {self, p, x, g};
        return comm_local_run(P, timeout, exec_threads(x), local_rank_backward, &call, err);
    }
    ATTN_TRY(announce(self, p, x, NULL, 1, err));
    attn_comm_t *c = comm_mpi_world();
    int rc = self->backward_rank(self, p, x, c, g, err);
    if (rc != ATTN_OK)
        comm_mpi_abort(0, err->msg, 1);
    return rc;
}

int dist_follow(dist_model_follow_fn on_model, attn_err_t *err) {
    attn_comm_t *c = comm_mpi_world();
    for (;;) {
        dist_cmd_t cmd;
        ATTN_TRY(comm_mpi_ctrl_recv(&cmd, sizeof cmd, err));
        if (cmd.stop)
            return ATTN_OK;
        ATTN_TRY(follow_docs(&cmd.p, err));
        cmd.backend[sizeof cmd.backend - 1] = '\0';
        const attn_backend_t *be = registry_find(cmd.backend);
        if (!be || !be->forward_rank || (cmd.is_backward && !be->backward_rank))
            comm_mpi_abort(c->rank, "a rank was asked for a backend it does not know (mixed builds?)", 1);
        c->timeout_s = cmd.x.comm_timeout > 0 ? cmd.x.comm_timeout : 300.0;
        attn_io_t none = {0};
        attn_grad_io_t no_grads = {0};
        int rc = cmd.is_model      ? on_model(be, &cmd.p, &cmd.x, &cmd.model, err)
                 : cmd.is_backward ? be->backward_rank(be, &cmd.p, &cmd.x, c, &no_grads, err)
                                   : be->forward_rank(be, &cmd.p, &cmd.x, c, &none, err);
        if (rc != ATTN_OK)
            comm_mpi_abort(c->rank, err->msg, 1);
    }
}

void dist_stop_followers(void) {
    attn_comm_t *c = comm_mpi_world();
    if (!c || c->rank != 0)
        return;
    dist_cmd_t cmd = {.stop = 1};
    attn_err_t err = {0};
    for (int q = 1; q < c->size; q++)
        if (comm_mpi_ctrl_send(q, &cmd, sizeof cmd, &err) != ATTN_OK)
            fprintf(stderr, "attnbench: warning: %s\n", err.msg);
}

int dist_load_qkv(attn_comm_t *c, const attn_io_t *io, const attn_layout_t *lq, const attn_layout_t *lk, int64_t BH,
                  int64_t BHkv, int64_t d, float *q, float *k, float *v, attn_err_t *err) {
    int me = c->rank;
    int64_t nq = layout_local_count(lq, me), nk = layout_local_count(lk, me);
    if (io->sharded) {
        memcpy(q, io->q, (size_t)(BH * nq * d) * sizeof(float));
        memcpy(k, io->k, (size_t)(BHkv * nk * d) * sizeof(float));
        memcpy(v, io->v, (size_t)(BHkv * nk * d) * sizeof(float));
        return ATTN_OK;
    }
    ATTN_TRY(dist_scatter(c, lq, BH, d, io->q, q, err));
    ATTN_TRY(dist_scatter(c, lk, BHkv, d, io->k, k, err));
    return dist_scatter(c, lk, BHkv, d, io->v, v, err);
}

int dist_store_ol(attn_comm_t *c, const attn_io_t *io, const attn_layout_t *lq, int64_t BH, int64_t d, const float *o,
                  const float *lse, attn_err_t *err) {
    if (io->sharded) {
        int64_t nq = layout_local_count(lq, c->rank);
        memcpy(io->o, o, (size_t)(BH * nq * d) * sizeof(float));
        memcpy(io->lse, lse, (size_t)(BH * nq) * sizeof(float));
        return ATTN_OK;
    }
    ATTN_TRY(dist_gather(c, lq, BH, d, o, io->o, err));
    return dist_gather(c, lq, BH, 1, lse, io->lse, err);
}
