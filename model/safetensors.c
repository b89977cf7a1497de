/* safetensors.c — .safetensors reading and writing (see safetensors.h): the header is checked as
 * the Python reference does (dtype, sizes, exact tiling of the data) before a byte is handed out;
 * bytes decode as little-endian with no alignment assumption (the header length need not be ×4). */
#include "model/safetensors.h"

#include "core/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUPPORTED "supported: F32, F16, BF16"

const char *st_dtype_name(st_dtype_t t) { return t == ST_F16 ? "F16" : t == ST_BF16 ? "BF16" : "F32"; }

size_t st_dtype_size(st_dtype_t t) { return t == ST_F32 ? 4 : 2; }

/* ---- float conversions: bit-exact, round to nearest even, no dependence on FPU modes ---- */

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static uint16_t f32_to_f16(float v) {
    uint32_t x = f32_bits(v), sign = (x >> 16) & 0x8000;
    x &= 0x7fffffff;
    if (x > 0x7f800000) /* NaN: keep it quiet and NaN even if the payload sat in the low bits */
        return (uint16_t)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
    if (x >= 0x477ff000) /* 65520 is the tie above 65504 (odd mantissa): it and all above go to inf */
        return (uint16_t)(sign | 0x7c00);
    if (x < 0x38800000) { /* below 2^-14: a half subnormal, in units of 2^-24 */
        int shift = 126 - (int)(x >> 23);
        if (shift > 24) /* under 2^-25 (including f32 subnormals and zero): rounds to zero */
            return (uint16_t)sign;
        uint32_t m = (x & 0x7fffff) | 0x800000, r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        r += rem > half || (rem == half && (r & 1)); /* may carry into 0x400, the smallest normal */
        return (uint16_t)(sign | r);
    }
    uint32_t h = (x >> 13) - (112u << 10), rem = x & 0x1fff; /* rebias exponent 127 -> 15 */
    h += rem > 0x1000 || (rem == 0x1000 && (h & 1));         /* carry may bump the exponent */
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f)
        return bits_f32(sign | 0x7f800000 | m << 13);
    if (e == 0) {
        if (m == 0)
            return bits_f32(sign);
        uint32_t ex = 113; /* normalise the subnormal m * 2^-24: every one is a float32 normal */
        while (!(m & 0x400))
            m <<= 1, ex--;
        return bits_f32(sign | ex << 23 | (m & 0x3ff) << 13);
    }
    return bits_f32(sign | (e + 112) << 23 | m << 13);
}

static uint16_t f32_to_bf16(float v) {
    uint32_t x = f32_bits(v);
    if ((x & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((x >> 16) | 0x40); /* truncating could turn a low-payload NaN into inf */
    /* Adding 0x7fff plus the kept lsb rounds to nearest even; a carry out of the largest
     * finite values lands exactly on inf, as it should. */
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

static float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* ---- reading ---- */

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, ")");
}

static int parse_dtype(const char *path, const char *name, json_t *v, st_dtype_t *out, attn_err_t *err) {
    const char *s = json_string_value(v);
    if (!s)
        return attn_fail(err, ATTN_EUSAGE, "%s: tensor '%s' has a 'dtype' that is not a string", path, name);
    if (!strcmp(s, "F32"))
        *out = ST_F32;
    else if (!strcmp(s, "F16"))
        *out = ST_F16;
    else if (!strcmp(s, "BF16"))
        *out = ST_BF16;
    else
        return attn_fail(err, ATTN_EUSAGE, "%s: tensor '%s' has unsupported dtype '%.32s' (" SUPPORTED ")", path, name, s);
    return ATTN_OK;
}

/* Fills t->ndim/shape and returns numel * elem in *bytes, refusing sizes size_t cannot hold. */
static int parse_shape(const char *path, st_tensor_t *t, json_t *v, size_t *bytes, attn_err_t *err) {
    if (!json_is_array(v))
        return attn_fail(err, ATTN_EUSAGE, "%s: tensor '%s' has a 'shape' that is not a list of integers", path, t->name);
    if (json_array_size(v) > ST_MAX_DIMS)
        return attn_fail(err, ATTN_EUSAGE, "%s: tensor '%s' has %zu dimensions, more than %d", path, t->name,
                         json_array_size(v), ST_MAX_DIMS);
    size_t total = st_dtype_size(t->dtype), i;
    json_t *d;
    json_array_foreach(v, i, d) {
        if (!json_is_integer(d))
            return attn_fail(err, ATTN_EUSAGE, "%s: tensor '%s' has a 'shape' that is not a list of integers", path, t->name);
        json_int_t dim = json_integer_value(d);
        if (dim < 0)
            return attn_fail(err, ATTN_EUSAGE, "%s: tensor '%s' has a negative dimension %lld in its shape", path, t->name,
                             (long long)dim);
        total = attn_size_mul(total, (size_t)dim);
        if (total == ATTN_SIZE_OVERFLOW)
            return attn_fail(err, ATTN_EUSAGE, "%s: tensor '%s' has a shape describing more data than memory can address (overflows 64 bits)", path,
                             t->name);
        t->shape[i] = dim;
    }
    t->ndim = (int)json_array_size(v);
    *bytes = total;
    return ATTN_OK;
}

static int parse_tensor(const st_file_t *f, const char *name, json_t *v, st_tensor_t *t, attn_err_t *err) {
    const char *path = f->path;
    if (strlen(name) >= ST_MAX_NAME)
        return attn_fail(err, ATTN_EUSAGE, "%s: tensor name '%.40s...' is longer than %d bytes", path, name, ST_MAX_NAME - 1);
    snprintf(t->name, sizeof t->name, "%s", name);
    if (!json_is_object(v))
        return attn_fail(err, ATTN_EUSAGE, "%s: header entry '%s' is not an object", path, name);
    static const char *keys[] = {"dtype", "shape", "data_offsets"};
    for (int k = 0; k < 3; k++)
        if (!json_object_get(v, keys[k]))
            return attn_fail(err, ATTN_EUSAGE, "%s: tensor '%s' lacks '%s'", path, name, keys[k]);
    size_t want = 0;
    ATTN_TRY(parse_dtype(path, name, json_object_get(v, "dtype"), &t->dtype, err));
    ATTN_TRY(parse_shape(path, t, json_object_get(v, "shape"), &want, err));
    json_t *off = json_object_get(v, "data_offsets");
    json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(b) || !json_is_integer(e) ||
        json_integer_value(b) < 0 || json_integer_value(e) < 0)
        return attn_fail(err, ATTN_EUSAGE, "%s: tensor '%s' has 'data_offsets' that are not two non-negative integers", path,
                         name);
    uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(e);
    if (begin > end)
        return attn_fail(err, ATTN_EUSAGE, "%s: tensor '%s' has data_offsets [%llu, %llu] that begin after they end", path,
                         name, (unsigned long long)begin, (unsigned long long)end);
    if (end > f->data_bytes) /* the usual sign of a truncated download */
        return attn_fail(err, ATTN_EUSAGE, "%s: header says tensor '%s' ends at byte %llu but the data has only %zu bytes",
                         path, name, (unsigned long long)end, f->data_bytes);
    if (end - begin != want) {
        char shp[160];
        shape_text(t->ndim, t->shape, shp, sizeof shp);
        return attn_fail(err, ATTN_EUSAGE,
                         "%s: header lies about size: tensor '%s' is %s of shape %s = %zu bytes but its data_offsets span %llu",
                         path, name, st_dtype_name(t->dtype), shp, want, (unsigned long long)(end - begin));
    }
    t->offset = (size_t)begin;
    t->bytes = (size_t)(end - begin);
    return ATTN_OK;
}

static int by_offset(const void *a, const void *b) {
    const st_tensor_t *x = *(const st_tensor_t *const *)a, *y = *(const st_tensor_t *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->bytes < y->bytes ? -1 : x->bytes > y->bytes;
}

/* Like the Python reader: sorted by offset the tensors must tile [0, data_bytes) with no
 * overlap, no hole and nothing after the last one, so every byte belongs to exactly one tensor. */
static int check_tiling(const st_file_t *f, attn_err_t *err) {
    const st_tensor_t **order = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *order);
    if (!order)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory checking %s", f->path);
    for (int i = 0; i < f->n_tensors; i++)
        order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, by_offset);
    size_t at = 0;
    int rc = ATTN_OK;
    for (int i = 0; i < f->n_tensors && rc == ATTN_OK; i++) {
        const st_tensor_t *t = order[i];
        if (t->offset < at)
            rc = attn_fail(err, ATTN_EUSAGE, "%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", f->path,
                           order[i - 1]->name, order[i - 1]->offset, at, t->name, t->offset, t->offset + t->bytes);
        else if (t->offset > at)
            rc = attn_fail(err, ATTN_EUSAGE, "%s: bytes [%zu, %zu) of the data belong to no tensor (a gap before '%s')",
                           f->path, at, t->offset, t->name);
        at = t->offset + t->bytes;
    }
    if (rc == ATTN_OK && at != f->data_bytes)
        rc = attn_fail(err, ATTN_EUSAGE, "%s: the data has %zu bytes after the last tensor", f->path, f->data_bytes - at);
    free(order);
    return rc;
}

static int check_metadata(const char *path, json_t *meta, attn_err_t *err) {
    const char *key;
    json_t *v;
    if (!json_is_object(meta))
        return attn_fail(err, ATTN_EUSAGE, "%s: header '__metadata__' is not an object of strings", path);
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v))
            return attn_fail(err, ATTN_EUSAGE, "%s: header '__metadata__' value '%s' is not a string", path, key);
    }
    return ATTN_OK;
}

static int parse_header(st_file_t *f, const char *hdr, size_t hlen, attn_err_t *err) {
    json_error_t jerr;
    /* Trailing space padding is ordinary JSON whitespace; duplicate names must not shadow each other. */
    json_t *root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return attn_fail(err, ATTN_EUSAGE, "%s: header is not valid JSON: %s (line %d, column %d)", f->path, jerr.text,
                         jerr.line, jerr.column);
    int rc = ATTN_OK;
    if (!json_is_object(root)) {
        rc = attn_fail(err, ATTN_EUSAGE, "%s: header is not a JSON object", f->path);
        goto done;
    }
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta && (rc = check_metadata(f->path, meta, err)) != ATTN_OK)
        goto done;
    size_t n = json_object_size(root) - (meta != NULL);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) {
        rc = attn_fail(err, ATTN_ERUNTIME, "out of memory reading the header of %s (%zu tensors)", f->path, n);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) { /* jansson keeps insertion order, so tensors stay in header order */
        if (v == meta)
            continue;
        if ((rc = parse_tensor(f, key, v, &f->tensors[f->n_tensors], err)) != ATTN_OK)
            goto done;
        f->n_tensors++;
    }
    rc = check_tiling(f, err);
done:
    json_decref(root);
    return rc;
}

int st_open(const char *path, st_file_t *f, attn_err_t *err) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return attn_fail(err, ATTN_EUSAGE, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = ATTN_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = attn_fail(err, ATTN_EUSAGE, "%s: not a regular file", path);
    else if (st.st_size < 8)
        rc = attn_fail(err, ATTN_EUSAGE, "%s: not a safetensors file: %lld bytes, shorter than the 8-byte header length",
                       path, (long long)st.st_size);
    if (rc == ATTN_OK) {
        f->map_bytes = (size_t)st.st_size;
        f->map = mmap(NULL, f->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            rc = attn_fail(err, ATTN_ERUNTIME, "%s: cannot map %zu bytes: %s", path, f->map_bytes, strerror(errno));
        }
    }
    close(fd); /* the mapping keeps the file alive */
    if (rc != ATTN_OK) {
        memset(f, 0, sizeof *f);
        return rc;
    }
    const unsigned char *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen > ST_MAX_HEADER)
        rc = attn_fail(err, ATTN_EUSAGE, "%s: header length %llu is absurd (limit %u bytes); not a safetensors file?", path,
                       (unsigned long long)hlen, ST_MAX_HEADER);
    else if (hlen > f->map_bytes - 8)
        rc = attn_fail(err, ATTN_EUSAGE, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                       (unsigned long long)hlen, f->map_bytes);
    if (rc == ATTN_OK) {
        f->data = p + 8 + hlen;
        f->data_bytes = f->map_bytes - 8 - (size_t)hlen;
        rc = parse_header(f, (const char *)p + 8, (size_t)hlen, err);
    }
    if (rc != ATTN_OK)
        st_close(f);
    return rc;
}

void st_close(st_file_t *f) {
    if (f->map)
        munmap(f->map, f->map_bytes);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

const st_tensor_t *st_find(const st_file_t *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name))
            return &f->tensors[i];
    return NULL;
}

int st_read_f32(const st_file_t *f, const char *name, int ndim, const int64_t *shape, float *out, attn_err_t *err) {
    const st_tensor_t *t = st_find(f, name);
    if (!t)
        return attn_fail(err, ATTN_EUSAGE, "%s: no tensor named '%s'", f->path, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char have[160], want[160];
        shape_text(t->ndim, t->shape, have, sizeof have);
        shape_text(ATTN_MIN(ATTN_MAX(ndim, 0), ST_MAX_DIMS), shape, want, sizeof want);
        return attn_fail(err, ATTN_EUSAGE, "%s: tensor '%s' has shape %s in the file but %s was expected", f->path, name,
                         have, want);
    }
    const unsigned char *p = f->data + t->offset;
    size_t n = t->bytes / st_dtype_size(t->dtype);
    for (size_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case ST_F32:
            out[i] = bits_f32((uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                              (uint32_t)p[4 * i + 3] << 24);
            break;
        case ST_F16:
            out[i] = f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
            break;
        case ST_BF16:
            out[i] = bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
            break;
        }
    }
    return ATTN_OK;
}

/* ---- writing ---- */

/* Checks the items and builds the header; *data_bytes is the total the offsets cover. */
static json_t *build_header(const char *path, const st_item_t *items, int n, st_dtype_t dtype, size_t *data_bytes,
                            attn_err_t *err) {
    json_t *root = json_object(), *meta = json_object();
    if (!root || !meta) {
        json_decref(root), json_decref(meta);
        attn_fail(err, ATTN_ERUNTIME, "out of memory writing %s", path);
        return NULL;
    }
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(meta, "writer", json_string("attnbench"));
    json_object_set_new(root, "__metadata__", meta);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const st_item_t *it = &items[i];
        const char *why = NULL;
        size_t bytes = st_dtype_size(dtype);
        if (!it->name || strlen(it->name) >= ST_MAX_NAME || !strcmp(it->name, "__metadata__"))
            why = "a missing, reserved or too long name";
        else if (json_object_get(root, it->name))
            why = "a duplicate name";
        else if (it->ndim < 0 || it->ndim > ST_MAX_DIMS)
            why = "a dimension count outside 0..8";
        for (int d = 0; !why && d < it->ndim; d++) {
            if (it->shape[d] < 0)
                why = "a negative dimension";
            else if ((bytes = attn_size_mul(bytes, (size_t)it->shape[d])) > (size_t)INT64_MAX)
                why = "a shape too large: its size overflows 64 bits";
        }
        if (!why && bytes > (size_t)INT64_MAX - at)
            why = "a total size too large to address";
        if (!why && bytes && !it->data)
            why = "no data";
        if (why) {
            json_decref(root);
            attn_fail(err, ATTN_EUSAGE, "%s: cannot write tensor %d '%.60s': %s", path, i, it->name ? it->name : "(null)",
                      why);
            return NULL;
        }
        json_t *shape = json_array(), *t = json_object();
        for (int d = 0; d < it->ndim; d++)
            json_array_append_new(shape, json_integer(it->shape[d]));
        json_object_set_new(t, "dtype", json_string(st_dtype_name(dtype)));
        json_object_set_new(t, "shape", shape);
        json_object_set_new(t, "data_offsets", json_pack("[I, I]", (json_int_t)at, (json_int_t)(at + bytes)));
        json_object_set_new(root, it->name, t);
        at += bytes;
    }
    *data_bytes = at;
    return root;
}

/* Converts and writes one item in chunks, so F16/BF16 output needs no full-size copy. */
static int write_item(FILE *out, const st_item_t *it, st_dtype_t dtype) {
    enum { CHUNK = 4096 };
    unsigned char buf[CHUNK * 4];
    size_t numel = 1, esize = st_dtype_size(dtype);
    for (int d = 0; d < it->ndim; d++)
        numel = attn_size_mul(numel, attn_size_i64(it->shape[d])); /* checked when the table was built */
    for (size_t base = 0; base < numel; base += CHUNK) {
        size_t m = ATTN_MIN((size_t)CHUNK, numel - base);
        for (size_t i = 0; i < m; i++) {
            float v = it->data[base + i];
            uint32_t u = dtype == ST_F32 ? f32_bits(v) : dtype == ST_F16 ? f32_to_f16(v) : f32_to_bf16(v);
            for (size_t b = 0; b < esize; b++)
                buf[i * esize + b] = (unsigned char)(u >> (8 * b));
        }
        if (fwrite(buf, esize, m, out) != m)
            return 0;
    }
    return 1;
}

typedef struct {
    const st_item_t *items;
    int n;
    st_dtype_t dtype;
    const char *header;
    size_t len, hlen; /* the header's length, and padded to 8 */
} st_out_t;

/* The file: header length (u64 LE), the JSON header padded with spaces, then each tensor. */
static int fill_st(FILE *out, void *ctx) {
    const st_out_t *s = ctx;
    unsigned char pre[8];
    for (int i = 0; i < 8; i++)
        pre[i] = (unsigned char)((uint64_t)s->hlen >> (8 * i));
    static const char spaces[8] = "        ";
    int ok = fwrite(pre, 1, 8, out) == 8 && fwrite(s->header, 1, s->len, out) == s->len &&
             fwrite(spaces, 1, s->hlen - s->len, out) == s->hlen - s->len;
    for (int i = 0; ok && i < s->n; i++)
        ok = write_item(out, &s->items[i], s->dtype);
    return ok ? 0 : -1;
}

int st_write(const char *path, const st_item_t *items, int n, st_dtype_t dtype, attn_err_t *err) {
    if (dtype != ST_F32 && dtype != ST_F16 && dtype != ST_BF16)
        return attn_fail(err, ATTN_EUSAGE, "%s: cannot write dtype %d (" SUPPORTED ")", path, (int)dtype);
    if (n < 0 || (n > 0 && !items))
        return attn_fail(err, ATTN_EUSAGE, "%s: cannot write %d tensors", path, n);
    size_t data_bytes;
    json_t *root = build_header(path, items, n, dtype, &data_bytes, err);
    if (!root)
        return err ? err->code : ATTN_EUSAGE;
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text)
        return attn_fail(err, ATTN_ERUNTIME, "out of memory writing %s", path);
    size_t len = strlen(text), hlen = (len + 7) / 8 * 8; /* data then starts 8-byte aligned */

    st_out_t src = {items, n, dtype, text, len, hlen};
    int rc = outfile_write(path, fill_st, &src, err);
    free(text);
    return rc;
}
