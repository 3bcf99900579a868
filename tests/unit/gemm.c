/* unit/gemm: sp_gemm computes the product (against a float64 reference,
 * within a tolerance) and keeps its promise by construction: a row of C
 * has the same bytes whatever the row count, the rows beside it, the
 * thread count, and alpha/beta's path (short padded block or full tile). */
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "parfor.h"
#include "tap.h"
#include "util.h"

static float *randn(size_t n, uint64_t seed)
{
    SpRng r;
    sp_rng_seed(&r, seed);
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)sp_rng_normal(&r);
    return p;
}

/* op(X)[i][k] of a row-major X with leading dimension ld */
static float at(const float *X, size_t ld, int trans, size_t i, size_t k)
{
    return trans ? X[k * ld + i] : X[i * ld + k];
}

/* C = alpha op(A) op(B) + beta C0 in float64 */
static void reference(int ta, int tb, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                      const float *B, size_t ldb, float beta, const float *C0, float *C)
{
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = 0;
            for (size_t k = 0; k < K; k++) s += (double)at(A, lda, ta, i, k) * at(B, ldb, tb, k, j);
            C[i * N + j] = (float)(alpha * s + beta * (double)C0[i * N + j]);
        }
}

static void check_values(void)
{
    const char *ops[] = {"nn", "nt", "tn", "tt"};
    size_t Ms[] = {1, 37, 256, 300, 700};
    for (int o = 0; o < 4; o++)
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            size_t M = Ms[mi], N = 45, K = 67;
            int ta = ops[o][0] == 't', tb = ops[o][1] == 't';
            float *A = randn(M * K, 1 + mi), *B = randn(K * N, 2), *C0 = randn(M * N, 3);
            float *C = xmalloc(M * N * sizeof *C), *R = xmalloc(M * N * sizeof *R);
            memcpy(C, C0, M * N * sizeof *C);
            size_t lda = ta ? M : K, ldb = tb ? K : N;
            sp_gemm(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 0.5f, A, lda, B, ldb,
                    0.25f, C, N);
            reference(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, C0, R);
            char name[64];
            snprintf(name, sizeof name, "%s M=%zu: alpha op(A) op(B) + beta C", ops[o], M);
            close_enough(C, R, M * N, 1e-5, name);
            free(A), free(B), free(C0), free(C), free(R);
        }
}

/* rows [r0, r0+m) of X (rows,K) in a product of their own, laid out as L */
static float *rows_alone(SpRows L, const float *X, size_t r0, size_t m, const float *W, size_t K, size_t N, int tw)
{
    float *C = xmalloc(m * N * sizeof *C);
    sp_gemm_rows(L, CblasNoTrans, tw ? CblasTrans : CblasNoTrans, m, N, K, 1.0f, X + r0 * K, K, W, tw ? K : N,
                 0.0f, C, N);
    return C;
}

/* The promise for a run: the rows of one big call equal those of calls of
 * 1, 2, 37 and 300 rows at any offset (told as SP_ROWS_AT), and the big
 * call on 1, 2 and 3 threads. Shapes: an encoder-like one (K < 4096,
 * 256-row tiles, two column slabs) and a decoder-like one (K > 4096,
 * 512-row tiles). Under OpenBLAS's Haswell kernel these fail for a plain
 * sgemm of the pieces (rows 6-11 of every 12 round otherwise). */
static void check_rows(size_t M, size_t N, size_t K, int tw)
{
    float *X = randn(M * K, 7), *W = randn(K * N, 8);
    sp_par_set_threads(2);
    float *all = rows_alone(SP_ROWS_RUN, X, 0, M, W, K, N, tw);
    size_t pieces[][2] = {{0, 1}, {M - 1, 1}, {5, 37}, {M - 300, 300}, {255, 2}};
    for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
        size_t r0 = pieces[p][0], m = pieces[p][1];
        float *part = rows_alone(SP_ROWS_AT(r0), X, r0, m, W, K, N, tw);
        ok(!memcmp(part, all + r0 * N, m * N * sizeof *part),
           "K=%zu N=%zu%s: rows %zu..%zu alone give the bytes of the %zu-row call", K, N, tw ? " (B^T)" : "", r0,
           r0 + m - 1, M);
        free(part);
    }
    for (int th = 1; th <= 3; th++) {
        sp_par_set_threads(th);
        float *again = rows_alone(SP_ROWS_RUN, X, 0, M, W, K, N, tw);
        ok(!memcmp(again, all, M * N * sizeof *again), "K=%zu N=%zu: %d thread(s) give the bytes of 2", K, N, th);
        free(again);
    }
    sp_par_set_threads(2);
    free(X), free(W), free(all);
}

/* The promise for windows: each window of a batch of B has the bytes it
 * has alone or in any other batch, on any thread count; windows of 100
 * rows (one tile each) and of 600 (two tiles of 300). */
static void check_windows(size_t T, size_t N, size_t K)
{
    size_t B = 7;
    float *X = randn(B * T * K, 12), *W = randn(K * N, 13);
    float *all = rows_alone(SP_ROWS_WINDOWS(T), X, 0, B * T, W, K, N, 0);
    float *one = rows_alone(SP_ROWS_WINDOWS(T), X, 3 * T, T, W, K, N, 0);
    float *two = rows_alone(SP_ROWS_WINDOWS(T), X, 5 * T, 2 * T, W, K, N, 0);
    ok(!memcmp(one, all + 3 * T * N, T * N * sizeof *one) && !memcmp(two, all + 5 * T * N, 2 * T * N * sizeof *two),
       "windows of %zu: window 3 alone and windows 5-6 as a batch of 2 give the bytes of the batch of %zu", T, B);
    sp_par_set_threads(1);
    float *th1 = rows_alone(SP_ROWS_WINDOWS(T), X, 0, B * T, W, K, N, 0);
    sp_par_set_threads(2);
    ok(!memcmp(th1, all, B * T * N * sizeof *th1), "windows of %zu: 1 thread gives the bytes of 2", T);
    free(X), free(W), free(all), free(one), free(two), free(th1);
}

/* A product reduced over the rows (a weight gradient op(A)^T B: M = F,
 * K = the batch): the same bytes on 1, 2 and 3 threads. */
static void check_gradient(void)
{
    size_t F = 700, D = 40, n = 333;
    float *P = randn(n * F, 9), *E = randn(n * D, 10), *G[3];
    for (int th = 1; th <= 3; th++) {
        sp_par_set_threads(th);
        G[th - 1] = xmalloc(F * D * sizeof *G[0]);
        sp_gemm(CblasTrans, CblasNoTrans, F, D, n, 1.0f, P, F, E, D, 0.0f, G[th - 1], D);
    }
    ok(!memcmp(G[0], G[1], F * D * sizeof *G[0]) && !memcmp(G[2], G[1], F * D * sizeof *G[0]),
       "tn gradient (F=%zu, D=%zu, n=%zu): 1, 2 and 3 threads give the same bytes", F, D, n);
    sp_par_set_threads(2);
    for (int i = 0; i < 3; i++) free(G[i]);
    free(P), free(E);
}

int main(void)
{
    check_values();
    check_rows(700, 3500, 96, 0);
    check_rows(600, 300, 4200, 1);
    check_windows(100, 300, 200);
    check_windows(600, 100, 64);
    check_gradient();
    float c = 3;
    sp_gemm(CblasNoTrans, CblasNoTrans, 1, 1, 0, 1.0f, NULL, 1, NULL, 1, 0.5f, &c, 1);
    ok(c == 1.5f, "K = 0: C = beta C");
    return done_testing();
}
