/* sgemm-peak: GFLOP/s that OpenBLAS cblas_sgemm reaches on this machine.
 *   sgemm-peak [M N K [SECONDS]]   [Default: 1024 3072 768, 2 seconds]
 * Prints "sgemm M N K: G GFLOP/s (threads T)" on stdout: the best of
 * repeated row-major C = A @ B calls after one warm-up call. Threads are
 * OPENBLAS_NUM_THREADS (else the cores), OpenBLAS's own. Benchmarks use it as the reference. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "parfor.h"
#include "bench_mats.h"
#include "util.h"

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    if (argc != 1 && argc != 4 && argc != 5) {
        fprintf(stderr, "Usage: sgemm-peak [M N K [SECONDS]]\n");
        return 2;
    }
    size_t M = argc > 1 ? (size_t)sp_opt_u64("M", argv[1], 1, 1 << 16) : 1024;
    size_t N = argc > 1 ? (size_t)sp_opt_u64("N", argv[2], 1, 1 << 16) : 3072;
    size_t K = argc > 1 ? (size_t)sp_opt_u64("K", argv[3], 1, 1 << 16) : 768;
    double secs = argc > 4 ? sp_opt_double("SECONDS", argv[4], 0.01, 600) : 2.0;
    float *A, *B, *C;
    bench_mats(M, N, K, &A, &B, &C);
    /* one threaded sgemm call on OpenBLAS's own threads: the reference */
    openblas_set_num_threads(sp_par_threads());
    double best = 1e30, t0 = sp_now();
    for (int it = 0; it < 2 || sp_now() - t0 < secs; it++) {
        double t = sp_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A, (int)K, B, (int)N,
                    0.0f, C, (int)N);
        t = sp_now() - t;
        if (it > 0 && t < best) best = t;   /* call 0 is the warm-up */
    }
    printf("sgemm %zu %zu %zu: %.1f GFLOP/s (threads %d)\n", M, N, K, 2.0 * M * N * K / best * 1e-9,
           openblas_get_num_threads());
    free(A), free(B), free(C);
    return 0;
}
