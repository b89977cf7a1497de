/* p2p.h — the steps of comm_ops_t (shift, all-to-all, sync, ready, close) written once on top of a
 * transport's own isend/irecv/wait: the host transports (local.c, mpi.c) put these in their tables. */
#pragma once
#include "comm/comm.h"

int comm_p2p_shift(attn_comm_t *c, const comm_shift_part_t part[], int tag, comm_req_t pending[], attn_err_t *err);
int comm_p2p_alltoallv(attn_comm_t *c, const comm_a2a_part_t part[], int tag, attn_err_t *err);
int comm_p2p_sync(attn_comm_t *c, void *point, const char *what, attn_err_t *err);
int comm_p2p_ready(attn_comm_t *c, attn_err_t *err);
void comm_p2p_close(attn_comm_t *c);
