/* fuzz_config.c — fuzz target: any bytes as a Hugging Face config.json through
 * model_config_load (model/config.c). */
#include "model/config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    model_config_t c;
    attn_err_t err = {0};
    model_config_load(path, &c, &err);
    close(fd);
    return 0;
}
