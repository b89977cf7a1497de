/* memory.h — process memory readings for the memory task and up-front refusals:
 * available system memory, current RSS, and a resettable peak RSS (Linux VmHWM); and a
 * confirmation that a number of bytes can really be held (the capacity task). */
#pragma once
#include <stdint.h>

#include "core/common.h"

uint64_t mem_available_bytes(void); /* MemAvailable, 0 if unknown */
uint64_t mem_total_bytes(void);     /* MemTotal, 0 if unknown */
uint64_t mem_rss_bytes(void);       /* VmRSS of this process, 0 if unknown */
uint64_t mem_peak_rss_bytes(void);  /* VmHWM of this process, 0 if unknown */
/* Resets VmHWM to the current RSS (writes 5 to /proc/self/clear_refs); 0 on success. */
int mem_reset_peak(void);

/* Proves `bytes` can be held without computing anything: allocates them with attn_alloc,
 * writes one byte per page (on `threads` threads) so the kernel must back every page, and
 * frees them. Before each 64 MiB chunk it re-reads MemAvailable and gives up (freeing
 * everything; ATTN_ERUNTIME naming how far it got) when that would leave less than `reserve`,
 * so a figure that does not fit is reported rather than met by the OOM killer. With
 * MemAvailable unknown it touches without checking. */
int mem_confirm(uint64_t bytes, uint64_t reserve, int threads, attn_err_t *err);
