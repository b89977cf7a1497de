/* test_npy.c — .npy round trips and every malformed-file case: each must be ATTN_EUSAGE with a
 * message naming the problem, and never a crash, an over-read or an allocation the file cannot
 * back. usage: test_npy SCRATCH_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/npy.h"
#include "tests/check.h"

static char dir[900];


/* Writes a .npy from a header string and `data_bytes` bytes of data (version 1 or 2 preamble;
 * hlen_lie is added to the stored header length). */
static void make_file(const char *path, int version, const char *hdr, size_t data_bytes, int hlen_lie) {
    FILE *f = fopen(path, "wb");
    size_t hlen = strlen(hdr) + (size_t)hlen_lie;
    fwrite("\x93NUMPY", 1, 6, f);
    fputc(version, f);
    fputc(0, f);
    for (int i = 0; i < (version == 1 ? 2 : 4); i++)
        fputc((int)(hlen >> (8 * i)) & 0xff, f);
    fwrite(hdr, 1, strlen(hdr), f);
    for (size_t i = 0; i < data_bytes; i++)
        fputc(0, f);
    fclose(f);
}

static void round_trip(attn_dtype_t t, int ndim, const int64_t *shape) {
    char path[1000], name[96];
    snprintf(path, sizeof path, "%s/rt.npy", dir);
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    size_t bytes = n * dtype_size(t);
    unsigned char *data = malloc(bytes + 1);
    for (size_t i = 0; i < bytes; i++)
        data[i] = (unsigned char)(i * 131 + 7);
    attn_err_t err = {0};
    npy_array_t a = {0};
    int ok = npy_write(path, t, ndim, shape, data, &err) == ATTN_OK && npy_read(path, &a, &err) == ATTN_OK &&
             a.dtype == t && a.ndim == ndim && a.numel == n && memcmp(a.data, data, bytes) == 0;
    for (int i = 0; ok && i < ndim; i++)
        ok = a.shape[i] == shape[i];
    snprintf(name, sizeof name, "round trip %s %d-D", dtype_name(t), ndim);
    report(ok, name, "identical dtype, shape and bytes", err.msg[0] ? err.msg : "a difference");
    npy_free(&a);
    free(data);
}

typedef struct {
    const char *name;
    int version;
    const char *header;
    size_t data_bytes;
    int hlen_lie;
    const char *expect; /* substring of the error; NULL: must read fine */
} bad_case_t;

#define HDR(descr, fortran, shape) "{'descr': '" descr "', 'fortran_order': " fortran ", 'shape': " shape ", }\n"

static const bad_case_t cases[] = {
    {"valid version 1.0", 1, HDR("<f4", "False", "(2, 3)"), 24, 0, NULL},
    {"valid version 2.0", 2, HDR("<f8", "False", "(3,)"), 24, 0, NULL},
    {"valid 0-size dimension", 1, HDR("<f4", "False", "(0, 4)"), 0, 0, NULL},
    {"truncated data", 1, HDR("<f4", "False", "(2, 3)"), 20, 0, "truncated data"},
    {"trailing bytes", 1, HDR("<f4", "False", "(2, 3)"), 28, 0, "after the data"},
    {"int32 dtype", 1, HDR("<i4", "False", "(2, 3)"), 24, 0, "unsupported dtype '<i4'"},
    {"big-endian float32", 1, HDR(">f4", "False", "(2, 3)"), 24, 0, "unsupported dtype '>f4'"},
    {"float16", 1, HDR("<f2", "False", "(2, 3)"), 12, 0, "unsupported dtype '<f2'"},
    {"Fortran order", 1, HDR("<f4", "True", "(2, 3)"), 24, 0, "Fortran-order"},
    {"header length past end of file", 1, HDR("<f4", "False", "(2, 3)"), 24, 5000, "past the end"},
    {"shape far larger than the file", 1, HDR("<f4", "False", "(1000000000, 1000000000)"), 24, 0, "truncated data"},
    {"shape overflowing size_t", 1, HDR("<f4", "False", "(4294967296, 4294967296, 4294967296)"), 24, 0, "more data"},
    {"negative dimension", 1, HDR("<f4", "False", "(-2, 3)"), 24, 0, "negative"},
    {"too many dimensions", 1, HDR("<f4", "False", "(1, 1, 1, 1, 1, 1, 1, 1, 1)"), 4, 0, "dimensions"},
    {"shape not integers", 1, HDR("<f4", "False", "(2, x)"), 24, 0, "tuple of integers"},
    {"header not a dict", 1, "['descr', '<f4']\n", 24, 0, "not a Python dict"},
    {"header missing shape", 1, "{'descr': '<f4', 'fortran_order': False, }\n", 24, 0, "lacks"},
    {"version 9", 9, HDR("<f4", "False", "(2, 3)"), 24, 0, "version 9"},
};

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_npy SCRATCH_DIR\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    int64_t s4[4] = {2, 3, 5, 7}, s1[1] = {11}, s3[3] = {1, 4, 9};
    round_trip(ATTN_F32, 4, s4);
    round_trip(ATTN_F64, 4, s4);
    round_trip(ATTN_F32, 1, s1);
    round_trip(ATTN_F64, 3, s3);

    char path[1000];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case_t *c = &cases[i];
        snprintf(path, sizeof path, "%s/case%zu.npy", dir, i);
        make_file(path, c->version, c->header, c->data_bytes, c->hlen_lie);
        attn_err_t err = {0};
        npy_array_t a = {0};
        int rc = npy_read(path, &a, &err);
        int ok = c->expect ? rc == ATTN_EUSAGE && strstr(err.msg, c->expect) && strstr(err.msg, path) && !a.data
                           : rc == ATTN_OK;
        report(ok, c->name, c->expect ? c->expect : "success", rc ? err.msg : "success");
        npy_free(&a);
    }
    const struct { const char *name, *bytes; size_t len; const char *expect; } raw[] = {
        {"three-byte file", "\x93NU", 3, "bad magic"},
        {"bad magic", "\x93NUMPX\x01\x00\x04\x00{}  \n", 14, "bad magic"},
        {"empty file", "", 0, "bad magic"},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        snprintf(path, sizeof path, "%s/raw%zu.npy", dir, i);
        FILE *f = fopen(path, "wb");
        fwrite(raw[i].bytes, 1, raw[i].len, f);
        fclose(f);
        attn_err_t err = {0};
        npy_array_t a = {0};
        int rc = npy_read(path, &a, &err);
        report(rc == ATTN_EUSAGE && strstr(err.msg, raw[i].expect), raw[i].name, raw[i].expect, err.msg);
        npy_free(&a);
    }
    attn_err_t err = {0};
    npy_array_t a = {0};
    snprintf(path, sizeof path, "%s/does-not-exist.npy", dir);
    report(npy_read(path, &a, &err) == ATTN_EUSAGE && strstr(err.msg, "No such file"), "missing file",
           "No such file", err.msg);
    int64_t s[1] = {1};
    float x = 1;
    snprintf(path, sizeof path, "%s/no-such-dir/out.npy", dir);
    memset(&err, 0, sizeof err);
    report(npy_write(path, ATTN_F32, 1, s, &x, &err) == ATTN_ERUNTIME && strstr(err.msg, "cannot write"),
           "write into a missing directory", "cannot write", err.msg);
    return check_summary();
}
