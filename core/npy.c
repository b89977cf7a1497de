/* npy.c — NumPy .npy reading and writing (see npy.h). The whole header is validated against
 * the file's real size before any allocation, so a lying or truncated file is an error message,
 * never a huge malloc or a read past the end. */
#include "core/npy.h"

#include "core/outfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* Finds 'key': in a header dict and returns a pointer just past the colon, or NULL. */
static const char *dict_value(const char *hdr, const char *key) {
    char quoted[32];
    snprintf(quoted, sizeof quoted, "'%s'", key);
    const char *at = strstr(hdr, quoted);
    if (!at) {
        snprintf(quoted, sizeof quoted, "\"%s\"", key);
        at = strstr(hdr, quoted);
    }
    if (!at)
        return NULL;
    at += strlen(quoted);
    while (*at == ' ')
        at++;
    return *at == ':' ? at + 1 : NULL;
}

static const char *skip_space(const char *s) {
    while (*s == ' ')
        s++;
    return s;
}

/* int_bytes NULL: floats only; else integers only ('<i4', '<i8'), their width into *int_bytes. */
static int parse_header(const char *path, const char *hdr, npy_array_t *a, int *int_bytes, attn_err_t *err) {
    const char *p = skip_space(hdr);
    if (*p != '{')
        return attn_fail(err, ATTN_EUSAGE, "%s: header is not a Python dict: %.60s", path, hdr);
    const char *descr = dict_value(hdr, "descr"), *fortran = dict_value(hdr, "fortran_order"),
               *shape = dict_value(hdr, "shape");
    if (!descr || !fortran || !shape)
        return attn_fail(err, ATTN_EUSAGE, "%s: header lacks 'descr', 'fortran_order' or 'shape': %.80s", path, hdr);
    descr = skip_space(descr);
    char type[16] = "";
    if ((*descr != '\'' && *descr != '"') || sscanf(descr + 1, "%15[^'\"]", type) != 1)
        return attn_fail(err, ATTN_EUSAGE, "%s: header has an unreadable 'descr'", path);
    if (int_bytes) {
        if (!strcmp(type, "<i4") || !strcmp(type, "=i4"))
            *int_bytes = 4;
        else if (!strcmp(type, "<i8") || !strcmp(type, "=i8"))
            *int_bytes = 8;
        else
            return attn_fail(err, ATTN_EUSAGE, "%s: unsupported dtype '%s' (need little-endian int32 '<i4' or int64 '<i8')",
                             path, type);
    } else if (!strcmp(type, "<f4") || !strcmp(type, "=f4"))
        a->dtype = ATTN_F32;
    else if (!strcmp(type, "<f8") || !strcmp(type, "=f8"))
        a->dtype = ATTN_F64;
    else
        return attn_fail(err, ATTN_EUSAGE, "%s: unsupported dtype '%s' (need little-endian float32 '<f4' or float64 '<f8')",
                         path, type);
    fortran = skip_space(fortran);
    if (!strncmp(fortran, "True", 4))
        return attn_fail(err, ATTN_EUSAGE, "%s: Fortran-order arrays are not supported; save np.ascontiguousarray(x)", path);
    if (strncmp(fortran, "False", 5))
        return attn_fail(err, ATTN_EUSAGE, "%s: header has an unreadable 'fortran_order'", path);
    shape = skip_space(shape);
    if (*shape != '(')
        return attn_fail(err, ATTN_EUSAGE, "%s: header 'shape' is not a tuple", path);
    shape++;
    a->ndim = 0;
    a->numel = 1;
    for (;;) {
        shape = skip_space(shape);
        if (*shape == ')')
            break;
        char *end;
        errno = 0;
        long long dim = strtoll(shape, &end, 10);
        if (end == shape || errno)
            return attn_fail(err, ATTN_EUSAGE, "%s: header 'shape' is not a tuple of integers", path);
        if (dim < 0)
            return attn_fail(err, ATTN_EUSAGE, "%s: header 'shape' has a negative dimension %lld", path, dim);
        if (a->ndim == NPY_MAX_DIMS)
            return attn_fail(err, ATTN_EUSAGE, "%s: more than %d dimensions", path, NPY_MAX_DIMS);
        a->numel = attn_size_mul(a->numel, (size_t)dim);
        if (attn_size_mul(a->numel, 8) == ATTN_SIZE_OVERFLOW)
            return attn_fail(err, ATTN_EUSAGE, "%s: header 'shape' describes more data than memory can address (its size overflows 64 bits)", path);
        a->shape[a->ndim++] = dim;
        shape = skip_space(end);
        if (*shape == ',')
            shape++;
        else if (*shape != ')')
            return attn_fail(err, ATTN_EUSAGE, "%s: header 'shape' is not a tuple of integers", path);
    }
    return ATTN_OK;
}

static void shape_text(const npy_array_t *a, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < a->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)a->shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, ")");
}

static int npy_read_any(const char *path, npy_array_t *out, int *int_bytes, attn_err_t *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return attn_fail(err, ATTN_EUSAGE, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    unsigned char pre[12];
    char *hdr = NULL;
    int rc = ATTN_OK;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = attn_fail(err, ATTN_EUSAGE, "%s: not a regular file", path);
        goto done;
    }
    size_t size = (size_t)st.st_size;
    if (size < 10 || fread(pre, 1, 10, f) != 10 || memcmp(pre, magic, 6) != 0) {
        rc = attn_fail(err, ATTN_EUSAGE, "%s: not a .npy file (bad magic or shorter than its preamble)", path);
        goto done;
    }
    size_t hlen, pre_len;
    if (pre[6] == 1) {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        pre_len = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (size < 12 || fread(pre + 10, 1, 2, f) != 2) {
            rc = attn_fail(err, ATTN_EUSAGE, "%s: truncated header", path);
            goto done;
        }
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        pre_len = 12;
    } else {
        rc = attn_fail(err, ATTN_EUSAGE, "%s: unsupported .npy format version %d.%d", path, pre[6], pre[7]);
        goto done;
    }
    if (hlen > size - pre_len) {
        rc = attn_fail(err, ATTN_EUSAGE, "%s: header length %zu runs past the end of the file (%zu bytes)", path, hlen,
                       size);
        goto done;
    }
    hdr = malloc(hlen + 1);
    if (!hdr || fread(hdr, 1, hlen, f) != hlen) {
        rc = attn_fail(err, ATTN_EUSAGE, "%s: cannot read the header", path);
        goto done;
    }
    hdr[hlen] = '\0';
    if ((rc = parse_header(path, hdr, out, int_bytes, err)) != ATTN_OK)
        goto done;
    size_t need = out->numel * (int_bytes ? (size_t)*int_bytes : dtype_size(out->dtype)), have = size - pre_len - hlen;
    char shp[160];
    shape_text(out, shp, sizeof shp);
    if (have < need) {
        rc = attn_fail(err, ATTN_EUSAGE, "%s: truncated data: header promises %zu bytes of %s (shape %s) but the file has %zu",
                       path, need, int_bytes ? (*int_bytes == 4 ? "int32" : "int64") : dtype_name(out->dtype), shp, have);
        goto done;
    }
    if (have > need) {
        rc = attn_fail(err, ATTN_EUSAGE, "%s: file has %zu bytes after the data its header describes (shape %s)", path,
                       have - need, shp);
        goto done;
    }
    out->data = attn_alloc(need, err, path);
    if (!out->data) {
        rc = ATTN_ERUNTIME;
        goto done;
    }
    if (fread(out->data, 1, need, f) != need)
        rc = attn_fail(err, ATTN_EUSAGE, "%s: short read of the data", path);
done:
    free(hdr);
    fclose(f);
    if (rc != ATTN_OK)
        npy_free(out);
    return rc;
}

int npy_read(const char *path, npy_array_t *out, attn_err_t *err) { return npy_read_any(path, out, NULL, err); }

int npy_read_i64(const char *path, int64_t **out, size_t *n, attn_err_t *err) {
    npy_array_t a;
    int bytes = 0;
    *out = NULL, *n = 0;
    ATTN_TRY(npy_read_any(path, &a, &bytes, err));
    if (a.ndim != 1) {
        npy_free(&a);
        return attn_fail(err, ATTN_EUSAGE, "%s: need a 1-D array of offsets (got %d dimensions)", path, a.ndim);
    }
    int64_t *v = attn_alloc(a.numel * sizeof(int64_t) + 1, err, path);
    if (!v) {
        npy_free(&a);
        return ATTN_ERUNTIME;
    }
    for (size_t i = 0; i < a.numel; i++) {
        int32_t x32;
        if (bytes == 4)
            memcpy(&x32, (const char *)a.data + 4 * i, 4), v[i] = x32;
        else
            memcpy(&v[i], (const char *)a.data + 8 * i, 8);
    }
    npy_free(&a);
    *out = v, *n = a.numel;
    return ATTN_OK;
}

int npy_fill(FILE *f, void *src) {
    const npy_src_t *a = src;
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     a->dtype == ATTN_F64 ? "<f8" : "<f4");
    size_t numel = 1;
    for (int i = 0; i < a->ndim; i++) {
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%lld,%s", (long long)a->shape[i], i + 1 < a->ndim ? " " : "");
        numel = attn_size_mul(numel, attn_size_i64(a->shape[i]));
    }
    if (a->ndim > 1)
        n--; /* NumPy writes (5,) for one dimension and (2, 3) for more */
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "), }");
    /* Pad with spaces so the data starts on a 64-byte boundary; the header ends in '\n'. */
    int total = (10 + n + 1 + 63) / 64 * 64;
    memset(hdr + n, ' ', (size_t)(total - 10 - n - 1));
    hdr[total - 10 - 1] = '\n';
    size_t hlen = (size_t)(total - 10);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    size_t bytes = numel * dtype_size(a->dtype);
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, hlen, f) == hlen && fwrite(a->data, 1, bytes, f) == bytes;
    return ok ? 0 : -1;
}

int npy_write(const char *path, attn_dtype_t dtype, int ndim, const int64_t *shape, const void *data, attn_err_t *err) {
    npy_src_t src = {dtype, ndim, shape, data};
    size_t numel = 1;
    for (int i = 0; i < ndim; i++)
        numel = attn_size_mul(numel, attn_size_i64(shape[i]));
    ATTN_TRY(attn_size_check(attn_size_mul(numel, dtype_size(dtype)), err, path));
    return outfile_write(path, npy_fill, &src, err);
}

void npy_free(npy_array_t *a) {
    attn_free(a->data);
    a->data = NULL;
}
