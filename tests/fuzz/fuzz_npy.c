/* fuzz_npy.c — fuzz target: any bytes as a .npy file through npy_read (core/npy.c). */
#include "core/npy.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    npy_array_t a;
    attn_err_t err = {0};
    if (npy_read(path, &a, &err) == ATTN_OK)
        npy_free(&a);
    close(fd);
    return 0;
}
