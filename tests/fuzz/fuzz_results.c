/* fuzz_results.c — fuzz target: any bytes as a results file, read the two ways attnbench reads
 * one back: results_read + results_record_key (report, compare; core/results_read.c) and
 * needle_resume_load + needle_find (--resume; tasks/needle_resume.c). */
#include <string.h>

#include "cli/options.h"
#include "core/results_read.h"
#include "tasks/needle_resume.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    json_t *root;
    attn_err_t err = {0};
    if (results_read(path, &root, &err) == ATTN_OK) {
        size_t i;
        json_t *rec;
        char key[4096];
        json_array_foreach(json_object_get(root, "records"), i, rec)
            results_record_key(rec, key, sizeof key);
        json_decref(root);
    }
    attn_run_t run;
    memset(&run, 0, sizeof run);
    attn_err_t err2 = {0};
    attn_opts_t o;
    opts_defaults(&o);
    if (needle_resume_load(path, &o, needle_case_record, &run, &err2) == ATTN_OK && run.n_records) {
        const attn_record_t *r = &run.records[0];
        needle_find(&run, r->backend, &o, r->config.n_k, 0.5);
    }
    results_run_free(&run);
    close(fd);
    return 0;
}
