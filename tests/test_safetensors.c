/* test_safetensors.c — .safetensors round trips, F16/BF16 rounding checked bit by bit against a
 * table (values cross-checked with NumPy's float16 cast), a hand-assembled file so the reader is
 * not only tested against its own writer, and every malformed-file case: each must fail with a
 * message naming the file and the problem. usage: test_safetensors SCRATCH_DIR */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/safetensors.h"
#include "tests/check.h"

static char dir[900];


static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* Writes u64 header length (strlen(hdr) + hlen_lie), the header, then `data_bytes` bytes of
 * `data` (zeros past its end, or everywhere when data is NULL). */
static void make_file(const char *path, const char *hdr, int64_t hlen_lie, const void *data, size_t data_bytes,
                      size_t data_len) {
    FILE *f = fopen(path, "wb");
    uint64_t hlen = (uint64_t)strlen(hdr) + (uint64_t)hlen_lie;
    for (int i = 0; i < 8; i++)
        fputc((int)(hlen >> (8 * i)) & 0xff, f);
    fwrite(hdr, 1, strlen(hdr), f);
    for (size_t i = 0; i < data_bytes; i++)
        fputc(data && i < data_len ? ((const unsigned char *)data)[i] : 0, f);
    fclose(f);
}

/* The whole file, for checking the writer's bytes directly. */
static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*len + 1);
    if (fread(b, 1, *len, f) != *len)
        *len = 0;
    fclose(f);
    return b;
}

/* F32 is bit-exact (NaN payloads, -0, subnormals, inf included); keys keep their order; the
 * header carries the metadata and pads to a multiple of 8; scalar and empty tensors work. */
static void round_trip_f32(void) {
    char path[1000];
    snprintf(path, sizeof path, "%s/rt_f32.safetensors", dir);
    float a[2 * 3 * 5], b[7], s = 42.5f;
    for (int i = 0; i < 30; i++)
        a[i] = (float)(i * 0.37 - 4.1) * (i % 3 ? 1e-3f : 1e3f);
    uint32_t nan_payload = 0x7fa12345, snan = 0xff800001;
    memcpy(&b[0], &nan_payload, 4);
    memcpy(&b[1], &snan, 4);
    b[2] = -0.0f, b[3] = 0x1p-149f, b[4] = INFINITY, b[5] = -FLT_MAX, b[6] = 0x1.fffffep-127f;
    st_item_t items[] = {
        {.name = "z.last_in_alphabet", .ndim = 3, .shape = {2, 3, 5}, .data = a},
        {.name = "special", .ndim = 1, .shape = {7}, .data = b},
        {.name = "scalar", .ndim = 0, .data = &s},
        {.name = "empty", .ndim = 2, .shape = {0, 4}, .data = NULL},
        {.name = "a.first_in_alphabet", .ndim = 1, .shape = {3}, .data = a + 27},
    };
    int n = (int)(sizeof items / sizeof items[0]);
    attn_err_t err = {0};
    st_file_t f;
    float got[30];
    int ok = st_write(path, items, n, ST_F32, &err) == ATTN_OK && st_open(path, &f, &err) == ATTN_OK;
    if (!ok) {
        report(0, "round trip F32", "success", err.msg);
        return;
    }
    int order = f.n_tensors == n;
    for (int i = 0; order && i < n; i++)
        order = !strcmp(f.tensors[i].name, items[i].name);
    report(order, "round trip F32: tensors in item order", "item order", f.n_tensors ? f.tensors[0].name : "none");
    int exact = 1;
    for (int i = 0; i < n && exact; i++) {
        size_t numel = 1;
        for (int d = 0; d < items[i].ndim; d++)
            numel *= (size_t)items[i].shape[d];
        exact = st_read_f32(&f, items[i].name, items[i].ndim, items[i].shape, got, &err) == ATTN_OK &&
                (numel == 0 || memcmp(got, items[i].data, numel * 4) == 0) && f.tensors[i].dtype == ST_F32 &&
                f.tensors[i].bytes == numel * 4;
    }
    report(exact, "round trip F32: bit-exact values (NaN payloads, -0, subnormals, inf)", "identical bits",
           err.msg[0] ? err.msg : "a difference");
    size_t len;
    unsigned char *raw = slurp(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | raw[i];
    char *hdr = strndup((const char *)raw + 8, (size_t)hlen);
    report(hlen % 8 == 0 && 8 + hlen + (30 + 7 + 1 + 3) * 4 == len, "header padded to a multiple of 8",
           "8-byte multiple, file = 8 + header + data", hdr);
    report(strstr(hdr, "\"__metadata__\":{\"format\":\"pt\",\"writer\":\"attnbench\"}") != NULL,
           "header carries __metadata__ format pt, writer attnbench", "__metadata__", hdr);
    free(hdr), free(raw);
    st_close(&f);
    report(f.map == NULL && f.tensors == NULL, "st_close leaves the struct empty", "zeroed", "leftovers");
}

/* One row: an input float, the F16 and BF16 bits round-to-nearest-even must give, and the floats
 * those bits decode to (expected by value, not by calling the code under test). */
typedef struct {
    const char *what;
    float in;
    uint16_t f16;
    float f16_back;
    uint16_t bf16;
    float bf16_back;
} conv_case_t;

static const conv_case_t conv[] = {
    {"1.0", 1.0f, 0x3c00, 1.0f, 0x3f80, 1.0f},
    {"-2.5", -2.5f, 0xc100, -2.5f, 0xc020, -2.5f},
    {"65504 (F16 max)", 65504.0f, 0x7bff, 65504.0f, 0x4780, 65536.0f},
    {"65519 (below the tie)", 65519.0f, 0x7bff, 65504.0f, 0x4780, 65536.0f},
    {"65520 (tie above F16 max, to inf)", 65520.0f, 0x7c00, INFINITY, 0x4780, 65536.0f},
    {"-1e9 (F16 overflow)", -1e9f, 0xfc00, -INFINITY, 0xce6e, -0x1.dcp29f},
    {"inf", INFINITY, 0x7c00, INFINITY, 0x7f80, INFINITY},
    {"-inf", -INFINITY, 0xfc00, -INFINITY, 0xff80, -INFINITY},
    {"-0", -0.0f, 0x8000, -0.0f, 0x8000, -0.0f},
    {"2^-24 (F16 min subnormal)", 0x1p-24f, 0x0001, 0x1p-24f, 0x3380, 0x1p-24f},
    {"2^-25 (tie, to zero)", 0x1p-25f, 0x0000, 0.0f, 0x3300, 0x1p-25f},
    {"1.5*2^-25 (above the tie)", 0x1.8p-25f, 0x0001, 0x1p-24f, 0x3340, 0x1.8p-25f},
    {"1.5*2^-24 (tie, to even 2)", 0x1.8p-24f, 0x0002, 0x1p-23f, 0x33c0, 0x1.8p-24f},
    {"2^-14 (F16 min normal)", 0x1p-14f, 0x0400, 0x1p-14f, 0x3880, 0x1p-14f},
    {"1023*2^-24 (F16 max subnormal)", 0x1.ff8p-15f, 0x03ff, 0x1.ff8p-15f, 0x3880, 0x1p-14f},
    {"1023.5*2^-24 (tie, carries to normal)", 0x1.ffcp-15f, 0x0400, 0x1p-14f, 0x3880, 0x1p-14f},
    {"1+2^-11 (F16 tie, to even)", 0x1.002p0f, 0x3c00, 1.0f, 0x3f80, 1.0f},
    {"1+3*2^-11 (F16 tie, to even)", 0x1.006p0f, 0x3c02, 0x1.008p0f, 0x3f80, 1.0f},
    {"1+2^-11+2^-20 (F16 above tie)", 0x1.00201p0f, 0x3c01, 0x1.004p0f, 0x3f80, 1.0f},
    {"1+2^-8 (BF16 tie, to even)", 0x1.01p0f, 0x3c04, 0x1.01p0f, 0x3f80, 1.0f},
    {"1+3*2^-8 (BF16 tie, to even)", 0x1.03p0f, 0x3c0c, 0x1.03p0f, 0x3f82, 0x1.04p0f},
    {"1+2^-8+2^-20 (BF16 above tie)", 0x1.01001p0f, 0x3c04, 0x1.01p0f, 0x3f81, 0x1.02p0f},
    {"FLT_MAX (BF16 overflow)", FLT_MAX, 0x7c00, INFINITY, 0x7f80, INFINITY},
    {"BF16 max", 0x1.fep127f, 0x7c00, INFINITY, 0x7f7f, 0x1.fep127f},
    {"2^-130 (F32 subnormal)", 0x1p-130f, 0x0000, 0.0f, 0x0008, 0x1p-130f},
    {"2^-140 (F32 subnormal)", 0x1p-140f, 0x0000, 0.0f, 0x0000, 0.0f},
    {"0.1", 0.1f, 0x2e66, 0x1.998p-4f, 0x3dcd, 0x1.9ap-4f},
    {"quiet NaN", NAN, 0x7e00, NAN, 0x7fc0, NAN},
    {"NaN with payload only in low bits", 0, 0x7e00, NAN, 0x7fc0, NAN}, /* input patched below: 0x7f800001 */
    {"-NaN", -NAN, 0xfe00, NAN, 0xffc0, NAN},
};
enum { N_CONV = sizeof conv / sizeof conv[0] };

static int is_nan_bits(uint16_t h, st_dtype_t t) {
    return t == ST_F16 ? (h & 0x7c00) == 0x7c00 && (h & 0x3ff) : (h & 0x7f80) == 0x7f80 && (h & 0x7f);
}

/* Writes the table as F16 or BF16, checks the file's bits, then reads it back as float32. */
static void conversions(st_dtype_t t) {
    char path[1000], name[160], want[64], got[64];
    snprintf(path, sizeof path, "%s/conv_%s.safetensors", dir, st_dtype_name(t));
    float in[N_CONV];
    for (int i = 0; i < N_CONV; i++)
        in[i] = conv[i].in;
    uint32_t low_nan = 0x7f800001; /* truncation alone would turn it into inf */
    memcpy(&in[N_CONV - 2], &low_nan, 4);
    st_item_t item = {.name = "x", .ndim = 1, .shape = {N_CONV}, .data = in};
    attn_err_t err = {0};
    if (st_write(path, &item, 1, t, &err) != ATTN_OK) {
        report(0, "write conversion table", "success", err.msg);
        return;
    }
    size_t len;
    unsigned char *raw = slurp(path, &len);
    size_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | raw[i];
    const unsigned char *data = raw + 8 + hlen;
    report(len == 8 + hlen + 2 * N_CONV, "conversion file size", "2 bytes per value", "other");
    float back[N_CONV];
    st_file_t f;
    int rc = st_open(path, &f, &err);
    if (rc == ATTN_OK)
        rc = st_read_f32(&f, "x", 1, item.shape, back, &err);
    for (int i = 0; i < N_CONV && rc == ATTN_OK && len == 8 + hlen + 2 * N_CONV; i++) {
        const conv_case_t *c = &conv[i];
        uint16_t h = (uint16_t)(data[2 * i] | data[2 * i + 1] << 8), e = t == ST_F16 ? c->f16 : c->bf16;
        float eb = t == ST_F16 ? c->f16_back : c->bf16_back;
        int nan = isnan(eb);
        int bits_ok = h == e && (!nan || is_nan_bits(h, t)); /* NaN: quiet, top payload bits kept */
        int back_ok = nan ? isnan(back[i]) : bits(back[i]) == bits(eb);
        snprintf(name, sizeof name, "%s %s", st_dtype_name(t), c->what);
        snprintf(want, sizeof want, "0x%04x -> %a", e, eb);
        snprintf(got, sizeof got, "0x%04x -> %a", h, back[i]);
        report(bits_ok && back_ok, name, want, got);
    }
    if (rc != ATTN_OK)
        report(0, "read conversion table", "success", err.msg);
    st_close(&f);
    free(raw);
}

/* Many values through the chunked writer: every one within the format's unit roundoff
 * (2^-11 for F16, 2^-8 for BF16, half an ulp) of the input. */
static void round_trip_bulk(st_dtype_t t) {
    enum { N = 10007 }; /* more than one 4096-element chunk, not a multiple of it */
    char path[1000], name[96], got[96] = "";
    snprintf(path, sizeof path, "%s/bulk_%s.safetensors", dir, st_dtype_name(t));
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    uint64_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = ldexpf((float)(s >> 40) / (float)(1 << 24) + 0.5f, (int)(s >> 20 & 15) - 8) * (s & 1 ? -1.0f : 1.0f);
    }
    st_item_t item = {.name = "bulk", .ndim = 2, .shape = {1, N}, .data = x};
    attn_err_t err = {0};
    st_file_t f;
    int ok = st_write(path, &item, 1, t, &err) == ATTN_OK && st_open(path, &f, &err) == ATTN_OK;
    ok = ok && st_read_f32(&f, "bulk", 2, item.shape, y, &err) == ATTN_OK;
    double u = t == ST_F16 ? 0x1p-11 : 0x1p-8, worst = 0;
    for (int i = 0; ok && i < N; i++)
        worst = fmax(worst, fabs((double)y[i] - x[i]) / fabs((double)x[i]));
    if (ok)
        st_close(&f);
    snprintf(name, sizeof name, "round trip %s, %d values: relative error <= %g", st_dtype_name(t), N, u);
    snprintf(got, sizeof got, "%g", worst);
    report(ok && worst <= u && worst > 0, name, "within unit roundoff (and not exact)", ok ? got : err.msg);
    free(x), free(y);
}

/* Bytes assembled by hand: an odd header length (so F32 data is unaligned), header order unlike
 * data order, all three dtypes, a scalar, and 6 bytes of trailing header padding. */
static void hand_written(void) {
    static const char hdr[] = "{\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[34,38]},"
                              "\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                              "\"h\":{\"shape\":[2,2],\"dtype\":\"F16\",\"data_offsets\":[12,20]},"
                              "\"__metadata__\":{\"who\":\"hand\"},"
                              "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,1,7],\"data_offsets\":[20,34]}}      ";
    static const unsigned char data[38] = {
        0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x3f, /* w: 1, -2, 0.5 */
        0x01, 0x00, 0xff, 0x7b, 0x00, 0xfc, 0x55, 0x35,                         /* h: 2^-24, 65504, -inf, 0.333… */
        0x80, 0x3f, 0x49, 0xc0, 0xc0, 0x7f, 0x80, 0xff, 0x00, 0x80, 0x08, 0x00, 0x7f, 0x7f, /* b */
        0x00, 0x00, 0x28, 0x42,                                                 /* scalar: 42 */
    };
    char path[1000];
    snprintf(path, sizeof path, "%s/hand.safetensors", dir);
    make_file(path, hdr, 0, data, sizeof data, sizeof data);
    static const float want_w[3] = {1, -2, 0.5f}, want_h[4] = {0x1p-24f, 65504, -INFINITY, 0.333251953125f},
                       want_b[7] = {1, -3.140625f, NAN, -INFINITY, -0.0f, 0x1p-130f, 0x1.fep127f};
    int64_t sw[1] = {3}, sh[2] = {2, 2}, sb[3] = {1, 1, 7};
    float w[3], h[4], b[7], sc = 0;
    attn_err_t err = {0};
    st_file_t f;
    int ok = st_open(path, &f, &err) == ATTN_OK;
    if (!ok) {
        report(0, "hand-written file opens", "success", err.msg);
        return;
    }
    size_t data_at = (size_t)(f.data - (const unsigned char *)f.map);
    report(f.n_tensors == 4 && f.data_bytes == 38 && data_at % 4 != 0 && !strcmp(f.tensors[0].name, "scalar") &&
               !strcmp(f.tensors[3].name, "b") && f.tensors[2].dtype == ST_F16 && f.tensors[3].ndim == 3,
           "hand-written file: 4 tensors in header order, metadata skipped, data unaligned", "scalar,w,h,b",
           f.tensors[0].name);
    ok = st_read_f32(&f, "w", 1, sw, w, &err) == ATTN_OK && st_read_f32(&f, "h", 2, sh, h, &err) == ATTN_OK &&
         st_read_f32(&f, "b", 3, sb, b, &err) == ATTN_OK && st_read_f32(&f, "scalar", 0, NULL, &sc, &err) == ATTN_OK;
    int same = ok && memcmp(w, want_w, sizeof w) == 0 && memcmp(h, want_h, sizeof h) == 0 && sc == 42.0f;
    for (int i = 0; same && i < 7; i++)
        same = isnan(want_b[i]) ? isnan(b[i]) : bits(b[i]) == bits(want_b[i]);
    report(same, "hand-written file: F32 (unaligned), F16, BF16, scalar decode to known values", "known values",
           ok ? "a difference" : err.msg);

    /* Shape mismatch names the tensor and both shapes; a missing tensor is named. */
    int64_t wrong[2] = {3, 1};
    attn_err_t e1 = {0}, e2 = {0}, e3 = {0};
    int rc = st_read_f32(&f, "w", 2, wrong, w, &e1);
    report(rc == ATTN_EUSAGE && strstr(e1.msg, "'w'") && strstr(e1.msg, "shape (3) in the file but (3, 1) was expected") &&
               strstr(e1.msg, path),
           "shape mismatch names tensor and both shapes", "'w' ... (3) ... (3, 1)", e1.msg);
    int64_t wrong_h[2] = {2, 3};
    rc = st_read_f32(&f, "h", 2, wrong_h, h, &e3);
    report(rc == ATTN_EUSAGE && strstr(e3.msg, "(2, 2) in the file but (2, 3)"), "same rank, different extent",
           "(2, 2) vs (2, 3)", e3.msg);
    rc = st_read_f32(&f, "model.layers.0.q_proj", 1, sw, w, &e2);
    report(rc == ATTN_EUSAGE && strstr(e2.msg, "no tensor named 'model.layers.0.q_proj'") && strstr(e2.msg, path),
           "missing tensor is named", "no tensor named 'model.layers.0.q_proj'", e2.msg);
    report(st_find(&f, "__metadata__") == NULL && st_find(&f, "h") == &f.tensors[2], "st_find", "h found, metadata not",
           "other");
    st_close(&f);
}

typedef struct {
    const char *name;
    const char *header;
    size_t data_bytes;
    int64_t hlen_lie;
    const char *expect; /* substring of the error; NULL: must open fine */
} bad_case_t;

#define T(name, dtype, shape, offs) "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"
#define A T("a", "F32", "[2,3]", "[0,24]")

static const bad_case_t cases[] = {
    {"valid F32 2x3", "{" A "}", 24, 0, NULL},
    {"valid with metadata and space padding", "{\"__metadata__\":{\"k\":\"v\"}," A "}     ", 24, 0, NULL},
    {"valid empty header", "{}", 0, 0, NULL},
    {"valid zero-size tensor beside another", "{" T("e", "BF16", "[0,3]", "[0,0]") "," A "}", 24, 0, NULL},
    {"header length past end of file", "{" A "}", 24, 5000, "runs past the end of the file"},
    {"header length absurd (> 100 MB)", "{" A "}", 24, 200000000, "absurd"},
    {"header not JSON", "{\"a\": {\"dtype\": ", 24, 0, "not valid JSON"},
    {"header JSON array", "[1, 2]", 0, 0, "not a JSON object"},
    {"header invalid UTF-8", "{\"\xff\xfe\":1}", 0, 0, "not valid JSON"},
    {"entry not an object", "{\"a\": 5}", 0, 0, "entry 'a' is not an object"},
    {"missing dtype", "{\"a\":{\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, 0, "'a' lacks 'dtype'"},
    {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,24]}}", 24, 0, "'a' lacks 'shape'"},
    {"missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3]}}", 24, 0, "'a' lacks 'data_offsets'"},
    {"dtype F64", "{" T("a", "F64", "[2,3]", "[0,48]") "}", 48, 0, "unsupported dtype 'F64' (supported: F32, F16, BF16)"},
    {"dtype I8", "{" T("a", "I8", "[2,3]", "[0,6]") "}", 6, 0, "unsupported dtype 'I8' (supported: F32, F16, BF16)"},
    {"dtype Q4", "{" T("a", "Q4", "[2,3]", "[0,3]") "}", 3, 0, "unsupported dtype 'Q4' (supported: F32, F16, BF16)"},
    {"dtype lower-case f32", "{" T("a", "f32", "[2,3]", "[0,24]") "}", 24, 0, "unsupported dtype 'f32'"},
    {"dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, 0,
     "'dtype' that is not a string"},
    {"negative dimension", "{" T("a", "F32", "[-2,3]", "[0,24]") "}", 24, 0, "negative dimension -2"},
    {"fractional dimension", "{" T("a", "F32", "[2.5,3]", "[0,24]") "}", 24, 0, "'shape' that is not a list of integers"},
    {"string dimension", "{" T("a", "F32", "[\"2\",3]", "[0,24]") "}", 24, 0, "'shape' that is not a list of integers"},
    {"shape not a list", "{" T("a", "F32", "6", "[0,24]") "}", 24, 0, "'shape' that is not a list of integers"},
    {"nine dimensions", "{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, 0, "9 dimensions, more than 8"},
    {"numel overflowing size_t", "{" T("a", "F32", "[4294967296,4294967296,4294967296]", "[0,24]") "}", 24, 0,
     "more data than memory can address"},
    {"huge shape, small span", "{" T("a", "F32", "[1000000000,1000000000]", "[0,24]") "}", 24, 0, "header lies about size"},
    {"offsets one integer", "{" T("a", "F32", "[2,3]", "[24]") "}", 24, 0, "not two non-negative integers"},
    {"offsets three integers", "{" T("a", "F32", "[2,3]", "[0,24,48]") "}", 24, 0, "not two non-negative integers"},
    {"offsets negative", "{" T("a", "F32", "[2,3]", "[-4,20]") "}", 24, 0, "not two non-negative integers"},
    {"offsets fractional", "{" T("a", "F32", "[2,3]", "[0,24.0]") "}", 24, 0, "not two non-negative integers"},
    {"offsets not a list", "{" T("a", "F32", "[2,3]", "24") "}", 24, 0, "not two non-negative integers"},
    {"offsets begin after end", "{" T("a", "F32", "[2,3]", "[24,0]") "}", 24, 0, "[24, 0] that begin after they end"},
    {"truncated file", "{" A "}", 20, 0, "header says tensor 'a' ends at byte 24 but the data has only 20 bytes"},
    {"offsets far past the data", "{" T("a", "F32", "[2,3]", "[9223372036854775783,9223372036854775807]") "}", 24, 0,
     "ends at byte 9223372036854775807"},
    {"size lie (span too small)", "{" T("a", "F32", "[2,3]", "[0,20]") "}", 20, 0,
     "header lies about size: tensor 'a' is F32 of shape (2, 3) = 24 bytes but its data_offsets span 20"},
    {"size lie (F16 counted as F32)", "{" T("a", "F16", "[2,3]", "[0,24]") "}", 24, 0, "header lies about size"},
    {"overlapping tensors", "{" A "," T("b", "F32", "[4]", "[16,32]") "}", 32, 0, "'a' [0, 24) and 'b' [16, 32) overlap"},
    {"same offsets twice", "{" A "," T("b", "F32", "[2,3]", "[0,24]") "}", 24, 0, "overlap"},
    {"gap between tensors", "{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[16,24]") "}", 24, 0,
     "bytes [8, 16) of the data belong to no tensor"},
    {"bytes after the last tensor", "{" A "}", 28, 0, "4 bytes after the last tensor"},
    {"duplicate tensor name", "{" A "," T("a", "F32", "[2]", "[24,32]") "}", 32, 0, "duplicate"},
    {"metadata not an object", "{\"__metadata__\":[1]," A "}", 24, 0, "'__metadata__' is not an object"},
    {"metadata value not a string", "{\"__metadata__\":{\"n\":3}," A "}", 24, 0, "'__metadata__' value 'n' is not a string"},
    {"name longer than 191 bytes",
     "{" T("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
           "F32", "[2,3]", "[0,24]") "}",
     24, 0, "longer than 191 bytes"},
};

static void malformed(void) {
    char path[1000];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case_t *c = &cases[i];
        snprintf(path, sizeof path, "%s/case%zu.safetensors", dir, i);
        make_file(path, c->header, c->hlen_lie, NULL, c->data_bytes, 0);
        attn_err_t err = {0};
        st_file_t f;
        int rc = st_open(path, &f, &err);
        int ok = c->expect ? rc == ATTN_EUSAGE && strstr(err.msg, c->expect) && strstr(err.msg, path) && !f.map && !f.tensors
                           : rc == ATTN_OK;
        report(ok, c->name, c->expect ? c->expect : "success", rc ? err.msg : "success");
        if (rc == ATTN_OK)
            st_close(&f);
    }
    /* Raw bytes for the cases the header-string helper cannot make. */
    const struct { const char *name, *bytes; size_t len; const char *expect; } raw[] = {
        {"empty file", "", 0, "shorter than the 8-byte header length"},
        {"three-byte file", "\x02\x00\x00", 3, "shorter than the 8-byte header length"},
        {"header length 2^64-1", "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10, "absurd"},
        {"header length zero", "\x00\x00\x00\x00\x00\x00\x00\x00", 8, "not valid JSON"},
        {"NUL inside header", "\x04\x00\x00\x00\x00\x00\x00\x00{\x00}\x20", 12, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        snprintf(path, sizeof path, "%s/raw%zu.safetensors", dir, i);
        FILE *fp = fopen(path, "wb");
        fwrite(raw[i].bytes, 1, raw[i].len, fp);
        fclose(fp);
        attn_err_t err = {0};
        st_file_t f;
        int rc = st_open(path, &f, &err);
        report(rc == ATTN_EUSAGE && strstr(err.msg, raw[i].expect) && strstr(err.msg, path), raw[i].name, raw[i].expect,
               rc ? err.msg : "success");
        if (rc == ATTN_OK)
            st_close(&f);
    }
    attn_err_t err = {0};
    st_file_t f;
    snprintf(path, sizeof path, "%s/does-not-exist.safetensors", dir);
    report(st_open(path, &f, &err) == ATTN_EUSAGE && strstr(err.msg, "No such file") && strstr(err.msg, path) && !f.map,
           "missing file", "No such file", err.msg);
    memset(&err, 0, sizeof err);
    report(st_open(dir, &f, &err) == ATTN_EUSAGE && strstr(err.msg, "not a regular file"), "a directory",
           "not a regular file", err.msg);
}

/* Counts entries in dir whose name contains ".tmp." — leftovers of an interrupted write. */
static int temp_files(void) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void write_failures(void) {
    char path[1000];
    float x[4] = {1, 2, 3, 4};
    struct stat st;
    attn_err_t err = {0};
    snprintf(path, sizeof path, "%s/no-such-dir/out.safetensors", dir);
    st_item_t ok_item = {.name = "x", .ndim = 1, .shape = {4}, .data = x};
    int rc = st_write(path, &ok_item, 1, ST_F16, &err);
    report(rc == ATTN_ERUNTIME && strstr(err.msg, "cannot write") && strstr(err.msg, path), "write into a missing directory",
           "cannot write", err.msg);

    /* The temporary is created and filled, then rename fails: it must be removed. */
    snprintf(path, sizeof path, "%s/is-a-dir.safetensors", dir);
    mkdir(path, 0755);
    memset(&err, 0, sizeof err);
    rc = st_write(path, &ok_item, 1, ST_BF16, &err);
    report(rc == ATTN_ERUNTIME && strstr(err.msg, "cannot write") && temp_files() == 0,
           "failed rename (path is a directory) leaves no temporary", "cannot write, 0 temporaries", err.msg);

    const struct { const char *name; st_item_t items[2]; int n; const char *expect; } bad[] = {
        {"negative dimension", {{.name = "x", .ndim = 1, .shape = {-4}, .data = x}}, 1, "negative dimension"},
        {"nine dimensions", {{.name = "x", .ndim = 9, .data = x}}, 1, "dimension count"},
        {"duplicate names", {ok_item, ok_item}, 2, "duplicate name"},
        {"reserved name", {{.name = "__metadata__", .ndim = 1, .shape = {4}, .data = x}}, 1, "reserved"},
        {"no data", {{.name = "x", .ndim = 1, .shape = {4}, .data = NULL}}, 1, "no data"},
        {"shape too large", {{.name = "x", .ndim = 2, .shape = {1ll << 40, 1ll << 40}, .data = x}}, 1, "too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[96];
        snprintf(path, sizeof path, "%s/bad_write%zu.safetensors", dir, i);
        remove(path);
        memset(&err, 0, sizeof err);
        rc = st_write(path, bad[i].items, bad[i].n, ST_F32, &err);
        snprintf(name, sizeof name, "write refuses %s, creates nothing", bad[i].name);
        report(rc == ATTN_EUSAGE && strstr(err.msg, bad[i].expect) && stat(path, &st) != 0 && temp_files() == 0, name,
               bad[i].expect, err.msg);
    }
    /* An existing file is replaced whole, never half-written in place. */
    snprintf(path, sizeof path, "%s/replace.safetensors", dir);
    st_item_t big = {.name = "big", .ndim = 1, .shape = {4}, .data = x}, small = {.name = "s", .ndim = 0, .data = x};
    memset(&err, 0, sizeof err);
    st_file_t f;
    rc = st_write(path, &big, 1, ST_F32, &err) || st_write(path, &small, 1, ST_F32, &err) || st_open(path, &f, &err);
    report(rc == ATTN_OK && f.n_tensors == 1 && !strcmp(f.tensors[0].name, "s") && f.data_bytes == 4,
           "rewrite replaces the old file", "one tensor 's'", rc ? err.msg : "other contents");
    if (rc == ATTN_OK)
        st_close(&f);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_safetensors SCRATCH_DIR\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    mkdir(dir, 0755); /* may exist already */
    round_trip_f32();
    conversions(ST_F16);
    conversions(ST_BF16);
    round_trip_bulk(ST_F16);
    round_trip_bulk(ST_BF16);
    hand_written();
    malformed();
    write_failures();
    return check_summary();
}
