/* test_usp_grad_heads.c — usp_cuda's backward cut (usp_grad_heads.h with plan_ulysses_heads over U,
 * as usp_cuda_grad.cu runs it) replayed on the host: every query head is cut and put back exactly
 * once, and dK of a kv head comes back as its whole group's sum when each member reduces its own
 * query heads through the kernel's GQA map (local head j reads local kv head j / (hq / kvn)). */
#include <stdio.h>
#include <stdlib.h>

#include "impls/cuda/usp_grad_heads.h"
#include "impls/parallel/plan.h"
#include "tests/check.h"

static float val(int64_t b, int64_t h, int64_t i) { return (float)(((b * 31 + h) * 17 + i) % 1009) + 0.25f; }

static int run(int64_t B, int64_t H, int64_t Hkv, int U, int64_t rows) {
    char name[96];
    snprintf(name, sizeof name, "B=%lld H=%lld H_kv=%lld U=%d", (long long)B, (long long)H, (long long)Hkv, U);
    if (!check(plan_ulysses_kernel_heads(H, Hkv, U), name, "the mesh is refused (usp_cuda_takes would decline)"))
        return 0;
    size_t nq = (size_t)(B * H * rows), nk = (size_t)(B * Hkv * rows);
    float *x = malloc(nq * sizeof(float)), *back = calloc(nq, sizeof(float)), *y = malloc(nq * sizeof(float));
    float *dk = calloc(nk, sizeof(float)), *want = calloc(nk, sizeof(float)), *yk = malloc(nk * sizeof(float));
    int ok = 1;
    int64_t group = H / Hkv;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < rows; i++) {
                x[(b * H + h) * rows + i] = val(b, h, i);
                want[(b * Hkv + h / group) * rows + i] += val(b, h, i); /* dK: the group's sum */
            }
    for (int u = 0; u < U; u++) {
        plan_heads_t hd = plan_ulysses_heads(H, Hkv, U, u);
        usp_grad_heads(x, y, B, H, hd.q0, hd.hq, rows, 0);
        for (int64_t b = 0; b < B; b++) /* the cut holds heads q0 … q0 + hq − 1 */
            for (int64_t h = 0; h < hd.hq; h++)
                for (int64_t i = 0; i < rows; i++)
                    ok &= y[(b * hd.hq + h) * rows + i] == val(b, hd.q0 + h, i);
        usp_grad_heads(back, y, B, H, hd.q0, hd.hq, rows, 1);
        /* the member's dK: its query heads reduced through the kernel's map onto its kv heads */
        for (size_t j = 0; j < (size_t)(B * hd.kvn * rows); j++)
            yk[j] = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < hd.hq; h++)
                for (int64_t i = 0; i < rows; i++)
                    yk[(b * hd.kvn + h / (hd.hq / hd.kvn)) * rows + i] += y[(b * hd.hq + h) * rows + i];
        usp_grad_heads(dk, yk, B, Hkv, hd.kv0, hd.kvn, rows, 1);
    }
    for (size_t j = 0; j < nq; j++)
        ok &= back[j] == x[j];
    check(ok, name, "a query head cut wrong, or not put back exactly once");
    int kv_ok = 1;
    for (size_t j = 0; j < nk; j++)
        kv_ok &= dk[j] == want[j];
    check(kv_ok, name, "dK summed over the members differs from the groups' sums");
    free(x), free(back), free(y), free(dk), free(want), free(yk);
    return ok && kv_ok;
}

int main(void) {
    static const int64_t cases[][4] = {
        /* H, H_kv, U (rows = 3, B = 2) */
        {4, 4, 2}, {4, 2, 2}, {4, 1, 2}, {4, 2, 4}, {8, 2, 4}, {8, 8, 8}, {8, 2, 8}, {6, 3, 3}, {12, 4, 2}, {4, 4, 1},
    };
    int n = (int)(sizeof cases / sizeof cases[0]), passed = 0;
    for (int i = 0; i < n; i++)
        passed += run(2, cases[i][0], cases[i][1], (int)cases[i][2], 3);
    printf("%d of %d meshes\n", passed, n);
    return check_summary();
}
