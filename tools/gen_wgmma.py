#!/usr/bin/env python3
"""gen_wgmma.py — writes impls/cuda/wgmma_sm90.cuh: the wgmma.mma_async wrappers flash_sm90.cu
uses (m64nNk16, f32 accumulate, bf16 or f16 in; A from shared memory (SS) or registers (RS)).
Each instruction names its N/2 accumulator registers one by one, hence generated text.
Run: python3 tools/gen_wgmma.py > impls/cuda/wgmma_sm90.cuh"""

print('''/* wgmma_sm90.cuh — written by tools/gen_wgmma.py (do not edit by hand): wgmma.mma_async
 * m64nNk16 with float32 accumulators d[N/2], bf16 or f16 operands. ss: A and B by shared-memory
 * descriptor (both K-major); rs: A from 4 registers (the accumulator-shaped fragment of
 * impls/cuda/sm90_layout.h), B by descriptor, trans_b = 1 (B MN-major, as V is stored).
 * scale_d = 0 overwrites d (the first k-step), 1 accumulates. sm_90a only. */
#pragma once
#include <stdint.h>

namespace sm90 {
''')
for ty, ptx in (("bf16", "bf16"), ("f16", "f16")):
    for n in (64, 128, 256):
        regs = ",".join(f"%{i}" for i in range(n // 2))
        outs = ", ".join(f'"+f"(d[{i}])' for i in range(n // 2))
        k = n // 2
        print(f'''__device__ __forceinline__ void wgmma_ss_{ty}_n{n}(float (&d)[{n // 2}], uint64_t da, uint64_t db, int scale_d) {{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{k + 2}, 0;\\n"
                 "wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ptx}.{ptx} {{{regs}}}, %{k}, %{k + 1}, p, 1, 1, 0, 0;\\n}}\\n"
                 : {outs}
                 : "l"(da), "l"(db), "r"(scale_d));
#else
    (void)d, (void)da, (void)db, (void)scale_d;
    __trap();
#endif
}}
__device__ __forceinline__ void wgmma_rs_{ty}_n{n}(float (&d)[{n // 2}], const uint32_t (&a)[4], uint64_t db, int scale_d) {{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{k + 5}, 0;\\n"
                 "wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ptx}.{ptx} {{{regs}}}, {{%{k},%{k + 1},%{k + 2},%{k + 3}}}, %{k + 4}, p, 1, 1, 1;\\n}}\\n"
                 : {outs}
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
#else
    (void)d, (void)a, (void)db, (void)scale_d;
    __trap();
#endif
}}
''')
print('} // namespace sm90')
