/* gemm.h: the matrix product of saepipe, C = alpha op(A) op(B) + beta C
 * (row-major, the arguments of cblas_sgemm), with promises that one
 * threaded sgemm call does not make.
 *
 * Why: an sgemm kernel may round a row of C differently by where the row
 * sits in the call. OpenBLAS's Haswell/Zen kernel does: of every 12 rows,
 * rows 6-11 sum in another order than rows 0-5, and the last rows of a call
 * go through an edge kernel; its threads split the rows where the thread
 * count says. So a token's activations would depend on the batch it came
 * in, and a run on the thread count.
 *
 * How: C is cut into tiles of R rows by a column slab whose width depends
 * on N and K only. Each tile is one single-threaded sgemm call of the same
 * shape; a short tile is computed through a zero-padded R-row copy with
 * its rows where the layout puts them. Threads take whole tiles. So:
 *  - every element is computed the same way for any thread count
 *    (OpenBLAS's own threads are off: sp_par_threads owns the count);
 *  - with SpRows, a row's bytes depend only on its place in its window
 *    (tiles restart at each window) or in its run (tiles restart at
 *    multiples of R from row 0 of the run), never on the other rows in the
 *    call: a window's activations are the same in any batch or shard.
 * On one machine and one OpenBLAS kernel; other kernels round otherwise
 * (README "Reproducibility"). The price, measured by bench/gemm.sh against
 * one threaded sgemm, is each tile's repacking of its slab of B and the
 * padding of short tiles. */
#ifndef SP_GEMM_H
#define SP_GEMM_H

#include <cblas.h>
#include <stddef.h>

/* Where the rows of op(A) and C stand: in windows of `window` rows (M a
 * multiple of it; the windows of tokens of a forward pass), or, with
 * window 0, as rows row0.. of one longer run (the rows of one record).
 * Tiles: a window's rows split evenly into tiles of at most 512 rows; a
 * run's tiles are 256 rows, 512 past K = 4096 where repacking B weighs
 * more. Either is a multiple of no kernel's unroll in particular: what
 * matters is that a row always takes the same place in a same-shaped call. */
typedef struct {
    size_t window, row0;
} SpRows;
#define SP_ROWS_RUN ((SpRows){0, 0})
/* The rows of one tile of layout L for products over K. */
size_t sp_gemm_tile_rows(SpRows L, size_t K);
#define SP_ROWS_WINDOWS(T) ((SpRows){(T), 0})
#define SP_ROWS_AT(r0) ((SpRows){0, (r0)})

/* C (M,N) = alpha op(A) (M,K) op(B) (K,N) + beta C, rows laid out as L. */
void sp_gemm_rows(SpRows L, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, size_t M, size_t N, size_t K, float alpha,
                  const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);
/* The same with the rows as one run from row 0: the layout of a product
 * whose M is fixed (a batch of the trainer, the latents of a gradient). */
void sp_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, size_t M, size_t N, size_t K, float alpha, const float *A,
             size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);

#endif
