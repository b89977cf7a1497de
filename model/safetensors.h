/* safetensors.h — reading and writing Hugging Face .safetensors weight files (F32, F16, BF16)
 * for model.c. st_open maps the file and validates the whole header up front, so every later
 * read is in bounds and every malformed file is one ATTN_EUSAGE error naming the problem. */
#pragma once
#include "core/common.h"

#define ST_MAX_DIMS 8
#define ST_MAX_NAME 192
#define ST_MAX_HEADER 100000000u /* same limit as the Python reader: a bigger header is corrupt */

typedef enum { ST_F32 = 0, ST_F16, ST_BF16 } st_dtype_t;

typedef struct {
    char name[ST_MAX_NAME];
    st_dtype_t dtype;
    int ndim; /* 0 for a scalar (numel 1) */
    int64_t shape[ST_MAX_DIMS];
    size_t offset, bytes; /* within the data buffer; bytes == numel * st_dtype_size(dtype) */
} st_tensor_t;

/* An open file. Layout: u64 little-endian header length N, N bytes of JSON header, then the data
 * buffer that the header's data_offsets index. */
typedef struct {
    void *map; /* the whole file, read-only; NULL when nothing is open */
    size_t map_bytes;
    const unsigned char *data; /* start of the data buffer inside map */
    size_t data_bytes;
    st_tensor_t *tensors; /* in header order */
    int n_tensors;
    char path[512]; /* for error messages */
} st_file_t;

/* On failure *f is left zeroed (nothing to close); on success close it with st_close. */
int st_open(const char *path, st_file_t *f, attn_err_t *err);
void st_close(st_file_t *f);
const st_tensor_t *st_find(const st_file_t *f, const char *name);

/* Converts tensor `name` to float32 into out (numel floats). The file's shape must equal
 * (ndim, shape) exactly; a missing tensor or a different shape is an error naming both. */
int st_read_f32(const st_file_t *f, const char *name, int ndim, const int64_t *shape, float *out, attn_err_t *err);

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data; /* numel floats, C order */
} st_item_t;

/* Writes the items as `dtype` (F16/BF16 rounded to nearest even; overflow goes to inf, NaN stays
 * NaN), header keys in item order after "__metadata__": {"format": "pt", "writer": "attnbench"},
 * header padded with spaces to a multiple of 8. Atomic: a temporary in the same directory is
 * renamed onto path; on any error the temporary is removed and path is untouched. */
int st_write(const char *path, const st_item_t *items, int n, st_dtype_t dtype, attn_err_t *err);

const char *st_dtype_name(st_dtype_t t);
size_t st_dtype_size(st_dtype_t t);
