/* timing.h — clocks and sample statistics. Wall time is CLOCK_MONOTONIC; per-thread CPU time
 * (CLOCK_THREAD_CPUTIME_ID) is what a rank's compute is measured in when ranks share cores. */
#pragma once

double time_now_s(void);
double time_thread_cpu_s(void);
/* Median, min and max of n samples (sorts a copy). NaN for all three when n = 0 or the copy
 * cannot be allocated. */
void stats_summary(const double *x, int n, double *median, double *min, double *max);
