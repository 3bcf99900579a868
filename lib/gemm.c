/* gemm.c: sp_gemm (see gemm.h): a threaded sgemm whose every output row is
 * computed the same way whatever the row count and thread count. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "parfor.h"
#include "util.h"

/* Columns per tile: a function of N and K only (never of M or the thread
 * count), so a column's tiles are the same in every call. Wide enough that
 * a tile's packing of A is small beside its arithmetic, narrow enough that
 * a few row blocks still give every thread tiles. */
static size_t slab_cols(size_t N, size_t K)
{
    size_t nb = K >= 2048 ? 1024 : 2048;
    return N <= nb + nb / 2 ? N : nb;
}

static size_t run_rows(size_t K)
{
    return K > 4096 ? 512 : 256;
}

/* Rows per tile of a layout: a window's rows split evenly into tiles of at
 * most 512, or sp_gemm_rows(K) for a run. */
size_t sp_gemm_tile_rows(SpRows L, size_t K)
{
    if (!L.window) return run_rows(K);
    size_t per = (L.window + 511) / 512;
    return (L.window + per - 1) / per;
}

typedef struct {
    CBLAS_TRANSPOSE ta, tb;
    size_t M, N, K, lda, ldb, ldc, nb, row_tiles, col_tiles;
    SpRows L;
    size_t R, tiles_per_window; /* window layout */
    size_t t0;                  /* run layout: the tile holding row 0 (row0 / R) */
    float alpha, beta;
    const float *A, *B;
    float *C;
    atomic_size_t next;
} GemmJob;

/* Row tile t: rows lo..lo+n-1 of C, at rows p0..p0+n-1 of the R-row tile. */
static void row_tile(const GemmJob *j, size_t t, size_t *lo, size_t *n, size_t *p0)
{
    size_t R = j->R;
    if (j->L.window) {
        size_t w = t / j->tiles_per_window, q = t % j->tiles_per_window, W = j->L.window;
        *lo = w * W + q * R, *p0 = 0;
        *n = W - q * R < R ? W - q * R : R;
    } else {
        size_t g0 = (j->t0 + t) * R, g1 = g0 + R, a = j->L.row0, b = j->L.row0 + j->M;
        size_t s = g0 > a ? g0 : a, e = g1 < b ? g1 : b;
        *lo = s - a, *n = e - s, *p0 = s - g0;
    }
}

/* op(A)'s rows lo.. as a pointer of A (lda unchanged): row i of op(A) is
 * row i of A, or its column i when A is transposed. */
static const float *a_rows(const GemmJob *j, size_t lo)
{
    return j->ta == CblasNoTrans ? j->A + lo * j->lda : j->A + lo;
}

static const float *b_cols(const GemmJob *j, size_t c0)
{
    return j->tb == CblasNoTrans ? j->B + c0 : j->B + c0 * j->ldb;
}

/* A short tile: op(A)'s n rows at rows p0.. of a zeroed R-row copy in A's
 * own orientation, so the call is the same call as a full tile's. */
static void pad_rows(const GemmJob *j, size_t lo, size_t n, size_t p0, float *pad)
{
    size_t R = j->R, K = j->K;
    memset(pad, 0, R * K * sizeof *pad);
    for (size_t r = 0; r < n; r++) {
        if (j->ta == CblasNoTrans) {
            memcpy(pad + (p0 + r) * K, j->A + (lo + r) * j->lda, K * sizeof *pad);
        } else {
            for (size_t k = 0; k < K; k++) pad[k * R + p0 + r] = j->A[k * j->lda + lo + r];
        }
    }
}

typedef struct { float *a, *c; } GemmScratch;

static void tile(const GemmJob *j, size_t t, GemmScratch *s)
{
    size_t R = j->R, lo, n, p0;
    row_tile(j, t / j->col_tiles, &lo, &n, &p0);
    size_t c0 = (t % j->col_tiles) * j->nb, cols = j->N - c0 < j->nb ? j->N - c0 : j->nb;
    const float *B = b_cols(j, c0);
    float *C = j->C + lo * j->ldc + c0;
    if (n == R) {
        cblas_sgemm(CblasRowMajor, j->ta, j->tb, (int)R, (int)cols, (int)j->K, j->alpha, a_rows(j, lo), (int)j->lda,
                    B, (int)j->ldb, j->beta, C, (int)j->ldc);
        return;
    }
    if (!s->a) s->a = xmalloc(R * j->K * sizeof *s->a), s->c = xmalloc(R * j->nb * sizeof *s->c);
    pad_rows(j, lo, n, p0, s->a);
    memset(s->c, 0, R * cols * sizeof *s->c);
    if (j->beta != 0)
        for (size_t r = 0; r < n; r++) memcpy(s->c + (p0 + r) * cols, C + r * j->ldc, cols * sizeof *C);
    cblas_sgemm(CblasRowMajor, j->ta, j->tb, (int)R, (int)cols, (int)j->K, j->alpha, s->a,
                (int)(j->ta == CblasNoTrans ? j->K : R), B, (int)j->ldb, j->beta, s->c, (int)cols);
    for (size_t r = 0; r < n; r++) memcpy(C + r * j->ldc, s->c + (p0 + r) * cols, cols * sizeof *C);
}

static void worker(void *arg, size_t lo, size_t hi)
{
    GemmJob *j = arg;
    size_t ntiles = j->row_tiles * j->col_tiles;
    GemmScratch s = {NULL, NULL};
    for (size_t t; (t = atomic_fetch_add(&j->next, 1)) < ntiles;) tile(j, t, &s);
    free(s.a), free(s.c);
}

void sp_gemm_rows(SpRows L, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, size_t M, size_t N, size_t K, float alpha,
                  const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
    if (!M || !N) return;
    if (!K) { /* no products: C = beta C */
        for (size_t i = 0; i < M; i++)
            for (size_t c = 0; c < N; c++) C[i * ldc + c] = beta == 0 ? 0 : beta * C[i * ldc + c];
        return;
    }
    if (L.window && M % L.window) sp_die("sp_gemm: %zu rows are not whole windows of %zu", M, L.window);
    GemmJob j = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc,
                 .nb = slab_cols(N, K), .L = L, .R = sp_gemm_tile_rows(L, K), .alpha = alpha, .beta = beta,
                 .A = A, .B = B, .C = C};
    if (L.window) {
        j.tiles_per_window = (L.window + j.R - 1) / j.R;
        j.row_tiles = M / L.window * j.tiles_per_window;
    } else {
        j.t0 = L.row0 / j.R;
        j.row_tiles = (L.row0 + M + j.R - 1) / j.R - j.t0;
    }
    j.col_tiles = (N + j.nb - 1) / j.nb;
    atomic_init(&j.next, 0);
    /* sp_par_threads also keeps OpenBLAS single-threaded (parfor.c) */
    size_t ntiles = j.row_tiles * j.col_tiles, workers = (size_t)sp_par_threads();
    sp_parfor(workers < ntiles ? workers : ntiles, 1, worker, &j);
}

void sp_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, size_t M, size_t N, size_t K, float alpha, const float *A,
             size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
    sp_gemm_rows(SP_ROWS_RUN, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
