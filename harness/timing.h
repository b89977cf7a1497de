/* timing.h — clocks and sample statistics. Wall time is CLOCK_MONOTONIC; per-thread CPU time
 * (CLOCK_THREAD_CPUTIME_ID) is what a rank's compute is measured in when ranks share cores. */
#pragma once

double time_now_s(void);
double time_thread_cpu_s(void);
/* Median of n samples (sorts a copy); 0 for n = 0. */
double stats_median(const double *x, int n);
