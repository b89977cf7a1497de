/* check.h — the C tests' one reporting helper: each check prints "ok NAME" or
 * "FAIL NAME: why" and is counted; check_summary prints the totals and gives the exit code.
 * Header-only (static state): each test is one translation unit. */
#pragma once
#include <stdarg.h>
#include <stdio.h>

static int check_passed, check_failed;
static int check_quiet; /* 1: print failures only (tests with hundreds of thousands of checks) */

/* Returns cond, so a test can stop early on a failed precondition. */
static int check(int cond, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4), unused));
static int check(int cond, const char *name, const char *fmt, ...) {
    if (cond) {
        check_passed++;
        if (!check_quiet)
            printf("ok   %s\n", name);
        return 1;
    }
    check_failed++;
    printf("FAIL %s: ", name);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    return 0;
}

/* The expected-vs-got form of check. */
static __attribute__((unused)) void report(int ok, const char *name, const char *want, const char *got) {
    check(ok, name, "expected %s, got %s", want, got);
}

static __attribute__((unused)) int check_summary(void) {
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}
