/* gcomm_selftest.cu — moves known bytes through a gcomm transport and checks every byte: a full
 * ring rotation with double buffers (as ring_cuda) and an uneven all-to-all (as ulysses_cuda),
 * apart from the attention math. Run by tests/test_cuda.c --transports. */
#include <string.h>

#include <vector>

#include "impls/cuda/cuda_util.cuh"
#include "impls/cuda/gcomm.cuh"
#include "impls/cuda/gcomm_selftest.h"

namespace {

/* Byte i of the block rank r starts with: a pattern no other rank or offset repeats soon. */
unsigned char pattern(int r, size_t i) { return (unsigned char)(r * 37 + i * 7 + (i >> 8)); }

int rotate(gcomm *g, size_t bytes, attn_err_t *err) {
    int P = g->size, L = g->count;
    std::vector<dev_buf> buf(2 * (size_t)L);
    std::vector<unsigned char> host(bytes);
    for (int i = 0; i < L; i++) {
        DEV_ALLOC(buf[2 * i], bytes, "selftest block");
        DEV_ALLOC(buf[2 * i + 1], bytes, "selftest block");
        for (size_t b = 0; b < bytes; b++)
            host[b] = pattern(g->first + i, b);
        CUDA_TRY(cudaMemcpy(buf[2 * i].ptr, host.data(), bytes, cudaMemcpyHostToDevice));
    }
    /* cudaMemcpy from pageable memory may return before its DMA lands, on the legacy stream,
     * which the transport's non-blocking streams do not wait for. */
    CUDA_TRY(cudaDeviceSynchronize());
    int cur = 0;
    for (int s = 0; s < P - 1; s++, cur = 1 - cur) {
        void *send[ATTN_MAX_RANKS], *recv[ATTN_MAX_RANKS];
        size_t sb[ATTN_MAX_RANKS], rb[ATTN_MAX_RANKS];
        for (int i = 0; i < L; i++)
            send[i] = buf[2 * i + cur].ptr, recv[i] = buf[2 * i + 1 - cur].ptr, sb[i] = rb[i] = bytes;
        ATTN_TRY(gcomm_shift(g, send, sb, recv, rb, nullptr, nullptr, err));
    }
    for (int i = 0; i < L; i++) {
        CUDA_TRY(cudaStreamSynchronize(g->comm[i]));
        CUDA_TRY(cudaMemcpy(host.data(), buf[2 * i + cur].ptr, bytes, cudaMemcpyDeviceToHost));
        int r = g->first + i, want = (r - (P - 1) + P) % P; /* after P − 1 shifts: rank r + 1's block */
        for (size_t b = 0; b < bytes; b++)
            if (host[b] != pattern(want, b))
                return attn_fail(err, ATTN_ERUNTIME, "%s rotation: rank %d byte %zu is %u, rank %d's block has %u",
                                 g->ops->name, r, b, host[b], want, pattern(want, b));
    }
    return ATTN_OK;
}

/* Rank r sends 1000·(r + 1) + 8·q + 3 bytes to rank q (uneven, not multiples of 16). */
size_t a2a_size(int r, int q) { return 1000 * (size_t)(r + 1) + 8 * (size_t)q + 3; }

int all_to_all(gcomm *g, attn_err_t *err) {
    int P = g->size, L = g->count;
    static gcomm_sizes_t sb, so, rb, ro;
    std::vector<dev_buf> sbuf((size_t)L), rbuf((size_t)L);
    const void *send[ATTN_MAX_RANKS];
    void *recv[ATTN_MAX_RANKS];
    for (int i = 0; i < L; i++) {
        int r = g->first + i;
        size_t os = 0, orr = 0;
        for (int q = 0; q < P; q++) {
            sb[i][q] = a2a_size(r, q), so[i][q] = os, os += sb[i][q];
            rb[i][q] = a2a_size(q, r), ro[i][q] = orr, orr += rb[i][q];
        }
        std::vector<unsigned char> host(os);
        for (int q = 0; q < P; q++)
            for (size_t b = 0; b < sb[i][q]; b++)
                host[so[i][q] + b] = pattern(r * ATTN_MAX_RANKS + q, b);
        DEV_ALLOC(sbuf[i], os, "selftest all-to-all send");
        DEV_ALLOC(rbuf[i], orr, "selftest all-to-all receive");
        CUDA_TRY(cudaMemcpy(sbuf[i].ptr, host.data(), os, cudaMemcpyHostToDevice));
        CUDA_TRY(cudaMemset(rbuf[i].ptr, 0, orr));
        send[i] = sbuf[i].ptr, recv[i] = rbuf[i].ptr;
    }
    CUDA_TRY(cudaDeviceSynchronize()); /* the uploads and the memset ran on the legacy stream */
    ATTN_TRY(gcomm_alltoallv(g, send, sb, so, recv, rb, ro, err));
    for (int i = 0; i < L; i++) {
        int r = g->first + i;
        CUDA_TRY(cudaStreamSynchronize(g->comm[i]));
        size_t total = ro[i][P - 1] + rb[i][P - 1];
        std::vector<unsigned char> host(total);
        CUDA_TRY(cudaMemcpy(host.data(), rbuf[i].ptr, total, cudaMemcpyDeviceToHost));
        for (int q = 0; q < P; q++)
            for (size_t b = 0; b < rb[i][q]; b++)
                if (host[ro[i][q] + b] != pattern(q * ATTN_MAX_RANKS + r, b))
                    return attn_fail(err, ATTN_ERUNTIME, "all-to-all: rank %d, byte %zu from rank %d is wrong", r, b, q);
    }
    return ATTN_OK;
}

int run(gcomm *g, attn_err_t *err) {
    int rc = rotate(g, (size_t)3 << 20, err); /* 3 MiB: larger than any copy engine's chunk */
    if (rc == ATTN_OK)
        rc = all_to_all(g, err);
    gcomm_close(g);
    return rc;
}

} // namespace

extern "C" int gcomm_selftest_local(int ranks, int device, attn_err_t *err) {
    CUDA_TRY(cudaSetDevice(device));
    gcomm g = {};
    int rc = gcomm_local_open(&g, ranks, device, 60, err);
    if (rc != ATTN_OK) {
        gcomm_close(&g);
        return rc;
    }
    return run(&g, err);
}

extern "C" int gcomm_selftest_nccl_file(const char *path, int device, attn_err_t *err) {
    CUDA_TRY(cudaSetDevice(device));
    gcomm g = {};
    ATTN_TRY(gcomm_nccl_open_file(&g, path, 0, 1, device, 60, err));
    return run(&g, err);
}
