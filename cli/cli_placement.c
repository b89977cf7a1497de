/* cli_placement.c — where each rank of an mpi or nccl run ran, gathered to rank 0 before any
 * work and written into the run metadata ("placement": host, node-local rank, the GPUs the
 * launcher left visible, the Slurm job): what a multi-node result needs to be read back. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "comm/comm.h"

enum { TAG_PLACEMENT = 1 << 22 }; /* above comm_ready's and dist.c's tags: sent before either */

/* The rank among the job's processes on this node, as the launchers name it (the rule nccl
 * uses to pick a GPU, impls/cuda/dist_cuda.cu); −1 when none says. */
static int local_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *s = getenv(vars[i]);
        if (s && *s)
            return atoi(s);
    }
    return -1;
}

static void env_copy(char *dst, size_t cap, const char *name) {
    const char *s = getenv(name);
    snprintf(dst, cap, "%s", s ? s : "");
}

int cli_gather_placement(attn_comm_t *c, attn_placement_t **out, int *n, attn_err_t *err) {
    attn_placement_t mine = {.rank = c->rank, .local_rank = local_rank()};
    if (gethostname(mine.host, sizeof mine.host) != 0)
        snprintf(mine.host, sizeof mine.host, "?");
    mine.host[sizeof mine.host - 1] = '\0';
    env_copy(mine.gpus, sizeof mine.gpus, "CUDA_VISIBLE_DEVICES");
    env_copy(mine.job, sizeof mine.job, "SLURM_JOB_ID");
    *out = NULL;
    *n = 0;
    comm_req_t req;
    if (c->rank != 0) {
        ATTN_TRY(comm_isend(c, &mine, sizeof mine, 0, TAG_PLACEMENT, &req, err));
        return comm_wait(c, &req, err);
    }
    attn_placement_t *all = calloc((size_t)c->size, sizeof *all);
    if (!all)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory");
    all[0] = mine;
    int rc = ATTN_OK;
    for (int r = 1; r < c->size && rc == ATTN_OK; r++) {
        rc = comm_irecv(c, &all[r], sizeof all[r], r, TAG_PLACEMENT, &req, err);
        if (rc == ATTN_OK)
            rc = comm_wait(c, &req, err);
        all[r].host[sizeof all[r].host - 1] = all[r].gpus[sizeof all[r].gpus - 1] = '\0';
        all[r].job[sizeof all[r].job - 1] = '\0';
    }
    if (rc != ATTN_OK) {
        free(all);
        return rc;
    }
    *out = all;
    *n = c->size;
    return ATTN_OK;
}
