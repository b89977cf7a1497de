/* npy.h — reading and writing NumPy .npy files (format versions 1.0, 2.0, 3.0), little-endian
 * float32 / float64, C order only. Every malformed input (bad magic, unparsable header,
 * Fortran order, unsupported dtype, header or data size that disagrees with the file) is an
 * ATTN_EUSAGE error naming the file and the problem; nothing is read past the file's end. */
#pragma once
#include "core/problem.h"

#define NPY_MAX_DIMS 8

typedef struct {
    attn_dtype_t dtype;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    size_t numel;
    void *data; /* attn_alloc'ed, numel elements of dtype; free with attn_free */
} npy_array_t;

int npy_read(const char *path, npy_array_t *out, attn_err_t *err);
/* A 1-D little-endian int32 or int64 array (document offsets, cu_seqlens) as int64 into *out
 * (attn_alloc'ed, free with attn_free), its length into *n; the same checks as npy_read. */
int npy_read_i64(const char *path, int64_t **out, size_t *n, attn_err_t *err);
/* Writes through core/outfile.h: a file atomically (temporary beside it, then rename), a device
 * or FIFO directly. */
int npy_write(const char *path, attn_dtype_t dtype, int ndim, const int64_t *shape, const void *data,
              attn_err_t *err);

/* One array's .npy bytes, for outfile_write_all when several files must appear all or none. */
typedef struct {
    attn_dtype_t dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} npy_src_t;
#include <stdio.h>
int npy_fill(FILE *f, void *src); /* an outfile_fill_fn: src is an npy_src_t */
void npy_free(npy_array_t *a);
