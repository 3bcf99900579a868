/* bench_mats.h: the operands of the GEMM benchmark helpers (sgemm-peak,
 * gemm-bench): A (M,K) and B (K,N) of standard normal floats (seed 1) and
 * C (M,N), all 64-byte aligned. */
#ifndef SP_BENCH_MATS_H
#define SP_BENCH_MATS_H
#include "util.h"

static void bench_mats(size_t M, size_t N, size_t K, float **A, float **B, float **C)
{
    *A = xmalloc_aligned(M * K * sizeof **A), *B = xmalloc_aligned(K * N * sizeof **B);
    *C = xmalloc_aligned(M * N * sizeof **C);
    SpRng rng;
    sp_rng_seed(&rng, 1);
    for (size_t i = 0; i < M * K; i++) (*A)[i] = (float)sp_rng_normal(&rng);
    for (size_t i = 0; i < K * N; i++) (*B)[i] = (float)sp_rng_normal(&rng);
}
#endif
