/* gemm-bench: sp_gemm against one threaded cblas_sgemm of the same shape.
 *   gemm-bench M N K [nn|nt|tn[/wT]] [SECONDS]   (/wT: rows in windows of T)
 * Prints "gemm M N K op: sgemm G, sp_gemm G GFLOP per CPU-second (ratio R,
 * threads T)" on stdout: the best of repeated calls after a warm-up,
 * interleaved, timed in the process's CPU time so that waiting for a core
 * on a loaded machine counts against neither. bench/gemm.sh runs it. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm.h"
#include "parfor.h"
#include "bench_mats.h"
#include "util.h"

/* CPU seconds of the whole process: on a loaded machine, time spent waiting
 * for a core is not counted, so the two products compare fairly. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "Usage: gemm-bench M N K [nn|nt|tn[/wT]] [SECONDS]\n");
        return 2;
    }
    size_t M = (size_t)sp_opt_u64("M", argv[1], 1, 1 << 20);
    size_t N = (size_t)sp_opt_u64("N", argv[2], 1, 1 << 20);
    size_t K = (size_t)sp_opt_u64("K", argv[3], 1, 1 << 20);
    const char *op = argc > 4 ? argv[4] : "nn";
    SpRows L = SP_ROWS_RUN;
    if (strlen(op) > 3 && !strncmp(op + 2, "/w", 2)) L = SP_ROWS_WINDOWS((size_t)sp_opt_u64("window", op + 4, 1, M));
    if (strncmp(op, "nn", 2) && strncmp(op, "nt", 2) && strncmp(op, "tn", 2))
        sp_die("op %s: want nn, nt or tn, then /wT for windows of T rows", op);
    if (L.window && M % L.window) sp_die("M %zu is not a multiple of the window %zu", M, L.window);
    double secs = argc > 5 ? sp_opt_double("SECONDS", argv[5], 0.01, 600) : 2.0;
    CBLAS_TRANSPOSE ta = op[0] == 't' ? CblasTrans : CblasNoTrans, tb = op[1] == 't' ? CblasTrans : CblasNoTrans;
    size_t lda = ta == CblasNoTrans ? K : M, ldb = tb == CblasNoTrans ? N : K;
    float *A, *B, *C;
    bench_mats(M, N, K, &A, &B, &C);
    int threads = sp_par_threads(); /* OPENBLAS_NUM_THREADS, else the cores */
    double best[2] = {1e30, 1e30}, t0 = sp_now();
    for (int it = 0; it < 4 || sp_now() - t0 < secs; it++) {
        for (int w = 0; w < 2; w++) {
            double t = cpu_now();
            if (w == 0) {
                openblas_set_num_threads(threads);
                cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, 0.0f, C,
                            (int)N);
            } else {
                sp_par_set_threads(threads);
                openblas_set_num_threads(1);
                sp_gemm_rows(L, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
            }
            t = cpu_now() - t;
            if (it > 1 && t < best[w]) best[w] = t;
        }
    }
    double g0 = 2.0 * M * N * K / best[0] * 1e-9, g1 = 2.0 * M * N * K / best[1] * 1e-9;
    printf("gemm %zu %zu %zu %s: sgemm %.1f, sp_gemm %.1f GFLOP per CPU-second (ratio %.2f, threads %d)\n", M,
           N, K, op, g0, g1, g1 / g0, threads);
    free(A), free(B), free(C);
    return 0;
}
