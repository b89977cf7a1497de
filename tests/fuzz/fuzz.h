/* fuzz.h — what every fuzz target shares: the libFuzzer entry point (also driven by replay.c in
 * builds without libFuzzer) and fuzz_file, which puts the input in an anonymous memory file for
 * the readers that take a path, so they run their one real code path (fopen, fstat, mmap). */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a regular file at *path ("/proc/self/fd/N"); close the returned fd when done.
 * A failure here is the harness's, not the reader's: abort so it cannot pass as a finding-free run. */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap) {
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size)) {
        perror("fuzz_file");
        abort();
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}
