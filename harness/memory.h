/* memory.h — process memory readings for the memory task and up-front refusals:
 * available system memory, current RSS, and a resettable peak RSS (Linux VmHWM). */
#pragma once
#include <stdint.h>

uint64_t mem_available_bytes(void); /* MemAvailable, 0 if unknown */
uint64_t mem_total_bytes(void);     /* MemTotal, 0 if unknown */
uint64_t mem_rss_bytes(void);       /* VmRSS of this process, 0 if unknown */
uint64_t mem_peak_rss_bytes(void);  /* VmHWM of this process, 0 if unknown */
/* Resets VmHWM to the current RSS (writes 5 to /proc/self/clear_refs); 0 on success. */
int mem_reset_peak(void);
