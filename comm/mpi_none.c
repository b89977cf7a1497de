/* mpi_none.c — the `mpi` transport's entry points in a build without Open MPI: every
 * one says so, and `--transport mpi` is refused up front (comm_mpi_available() = 0). */
#include <stdio.h>
#include <stdlib.h>

#include "comm/comm.h"

int comm_mpi_available(void) { return 0; }

const comm_ops_t *comm_mpi_ops(void) { return NULL; }

int comm_mpi_init(int *argc, char ***argv, attn_err_t *err) {
    (void)argc, (void)argv;
    return attn_fail(err, ATTN_EUSAGE, "this build has no MPI transport (Open MPI was not found at configure time)");
}

attn_comm_t *comm_mpi_world(void) { return NULL; }

int comm_mpi_ctrl_send(int dst, const void *buf, size_t bytes, attn_err_t *err) {
    (void)dst, (void)buf, (void)bytes;
    return attn_fail(err, ATTN_ERUNTIME, "no MPI transport in this build");
}

int comm_mpi_ctrl_recv(void *buf, size_t bytes, attn_err_t *err) {
    (void)buf, (void)bytes;
    return attn_fail(err, ATTN_ERUNTIME, "no MPI transport in this build");
}

void comm_mpi_finalize(void) {}

_Noreturn void comm_mpi_abort(int rank, const char *why, int code) {
    (void)rank;
    fprintf(stderr, "attnbench: error: %s\n", why);
    exit(code);
}

void comm_mpi_version(char *buf, size_t len) {
    if (len)
        buf[0] = '\0';
}
