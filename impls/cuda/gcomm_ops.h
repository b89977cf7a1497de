/* gcomm_ops.h — the GPU transports' comm_ops_t tables (cuda_local in gcomm.cu, nccl in
 * gcomm_nccl.cu), visible to C: tests check them beside the host transports' tables. */
#pragma once
#include "comm/comm.h"

const comm_ops_t *gcomm_cuda_local_ops(void);
const comm_ops_t *gcomm_nccl_ops(void);
