/* tile_kernel.h — the fused micro-kernel the tile engine calls for a Q tile's compute when the
 * CPU has one (tile_avx512.c): S = Q·Kᵀ, the online softmax and O += P·V in one pass over a
 * K/V tile, the tile's state held transposed (query rows across vector lanes) in the worker's
 * workspace. The engine keeps every decision about which tiles to visit and which keys a row
 * sees (mask_key_range); the kernel only computes. Derivation and figures: docs/cpu-kernel.md. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* One Q tile's state, carved from one workspace block by tile_kernel_t.init. */
typedef struct {
    int d, bq, bk, rows, strips; /* head dim, tile shape, rows of the current tile, strips in use */
    float c;                     /* scale · log2(e) */
    float *qt, *ot;              /* Qᵀ and Oᵀ per strip: (strips, d, strip width) */
    float *s;                    /* one strip's scores, then weights: (bk rounded up, strip width) */
    float *m, *l;                /* running max (raw score) and sum per row */
    int32_t *lo, *hi;            /* per row, keys [lo, hi) of the current K tile it sees */
} tile_kernel_ws_t;

typedef struct {
    const char *name;
    /* Floats of workspace one worker needs for bq × bk tiles of head dim d. */
    size_t (*ws_floats)(int bq, int bk, int d);
    void (*init)(tile_kernel_ws_t *w, float *base, int bq, int bk, int d, float c);
    /* Starts a tile of `rows` ≤ bq rows of Q (rows × d, row-major): packs Qᵀ, O = 0, m = −∞,
     * l = 0, every row seeing every key. */
    void (*begin)(tile_kernel_ws_t *w, const float *Q, int rows);
    /* One K/V tile of `cols` ≤ bk keys (K, V: cols × d). partial: rows see only keys
     * [lo[r], hi[r]) (set by the caller), else all. visible_only: P·V adds only those keys, for a
     * V tile holding a non-finite value that a masked weight 0 would turn into NaN. */
    void (*block)(tile_kernel_ws_t *w, const float *K, const float *V, int cols, int partial, int visible_only);
    /* O (rows × d) = Oᵀ / l and LSE, with the non-finite rules of docs/nonfinite.md. */
    void (*end)(tile_kernel_ws_t *w, float *O, float *LSE);
    int default_bq, default_bk; /* tile shape tuned for the kernel (docs/cpu-kernel.md) */
    int min_rows;               /* calls with fewer query rows take the sgemm path (docs/cpu-kernel.md) */
} tile_kernel_t;

extern const tile_kernel_t tile_kernel_avx512;

/* The fused kernel this CPU runs (AVX-512F, checked at run time), or NULL: then the engine
 * multiplies with OpenBLAS. ATTN_SIMD=generic in the environment forces NULL (as it forces the
 * portable softmax), so the tests cover both paths on one machine. */
const tile_kernel_t *tile_kernel_select(void);
