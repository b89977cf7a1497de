/* fuzz_suite.c — fuzz target: any bytes as a suite file (--config) through opts_load_config
 * (cli/options.c), for `run` and for `needle`, which take different keys. */
#include <stdlib.h>

#include "cli/options.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    const unsigned cmds[] = {CMD_RUN, CMD_NEEDLE};
    for (int i = 0; i < 2; i++) {
        attn_opts_t *runs = NULL;
        int n = 0;
        attn_err_t err = {0};
        if (opts_load_config(path, cmds[i], 0, NULL, &runs, &n, &err) == ATTN_OK)
            free(runs);
    }
    close(fd);
    return 0;
}
