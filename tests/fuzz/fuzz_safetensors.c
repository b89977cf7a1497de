/* fuzz_safetensors.c — fuzz target: any bytes as a .safetensors file through st_open
 * (model/safetensors.c), then every tensor it accepts converted with st_read_f32. */
#include <stdlib.h>

#include "model/safetensors.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    st_file_t f;
    attn_err_t err = {0};
    if (st_open(path, &f, &err) == ATTN_OK) {
        for (int i = 0; i < f.n_tensors; i++) {
            const st_tensor_t *t = &f.tensors[i];
            float *out = malloc(t->bytes / st_dtype_size(t->dtype) * sizeof *out + 1);
            attn_err_t e2 = {0};
            if (out)
                st_read_f32(&f, t->name, t->ndim, t->shape, out, &e2);
            free(out);
        }
        st_close(&f);
    }
    close(fd);
    return 0;
}
