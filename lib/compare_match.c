/* compare_match.c: matching latents of two dictionaries by decoder cosine
 * (blocked products, so no (Fa,Fb) matrix is ever held) and by activation
 * correlation over a sample (sparse: only latents that fire together). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "gemm.h"

/* rows of A per product: 256 rows of cosines against 131072 latents are 128 MB */
#define CMP_BLOCK 256

void cmp_unit_rows(float *v, size_t n, size_t D)
{
    for (size_t i = 0; i < n; i++) {
        float *r = v + i * D;
        double s = 0;
        for (size_t k = 0; k < D; k++) s += (double)r[k] * r[k];
        double inv = s > 0 ? 1 / sqrt(s) : 0;
        for (size_t k = 0; k < D; k++) r[k] = (float)(r[k] * inv);
    }
}

void cmp_match_dec(const float *A, size_t Fa, const float *B, size_t Fb, size_t D, int32_t *a_best, float *a_cos,
                   int32_t *b_best, float *b_cos)
{
    float *C = xmalloc_aligned(CMP_BLOCK * Fb * sizeof *C);
    for (size_t j = 0; j < Fb; j++) b_best[j] = -1, b_cos[j] = -INFINITY;
    for (size_t i0 = 0; i0 < Fa; i0 += CMP_BLOCK) {
        size_t m = Fa - i0 < CMP_BLOCK ? Fa - i0 : CMP_BLOCK;
        sp_gemm(CblasNoTrans, CblasTrans, m, Fb, D, 1.0f, A + i0 * D, D, B, D, 0.0f, C, Fb);
        for (size_t i = 0; i < m; i++) {
            const float *c = C + i * Fb;
            size_t bi = 0;
            for (size_t j = 0; j < Fb; j++) {
                if (c[j] > c[bi]) bi = j;
                // rows of A come in ascending order: a strict > keeps the lower index on ties
                if (c[j] > b_cos[j]) b_cos[j] = c[j], b_best[j] = (int32_t)(i0 + i);
            }
            a_best[i0 + i] = Fb ? (int32_t)bi : -1;
            a_cos[i0 + i] = Fb ? c[bi] : NAN;
        }
    }
    free(C);
}

/* CSC (latent -> rows, values) of a sample's CSR, rows ascending. */
typedef struct { int64_t *ptr; uint32_t *row; float *val; } CmpCols;

static void cols_of(CmpCols *c, const SpCsrBuf *a, size_t F)
{
    c->ptr = xcalloc(F + 1, sizeof *c->ptr);
    c->row = xmalloc(a->nnz * sizeof *c->row + 1), c->val = xmalloc(a->nnz * sizeof *c->val + 1);
    for (size_t k = 0; k < a->nnz; k++) c->ptr[a->indices[k] + 1]++;
    for (size_t j = 0; j < F; j++) c->ptr[j + 1] += c->ptr[j];
    int64_t *fill = xmalloc((F + 1) * sizeof *fill);
    memcpy(fill, c->ptr, (F + 1) * sizeof *fill);
    for (size_t r = 0; r < a->rows; r++)
        for (int64_t k = a->indptr[r]; k < a->indptr[r + 1]; k++) {
            int64_t at = fill[a->indices[k]]++;
            c->row[at] = (uint32_t)r, c->val[at] = a->values[k];
        }
    free(fill);
}

void cmp_match_act(const SpCsrBuf *a, size_t Fa, const double *ma, const double *sa, const SpCsrBuf *b, size_t Fb,
                   const double *mb, const double *sb, size_t N, int32_t *best, float *corr)
{
    CmpCols ca;
    cols_of(&ca, a, Fa);
    double *acc = xcalloc(Fb, sizeof *acc);     /* sum over rows of a_i b_j, touched j only */
    int32_t *touched = xmalloc(Fb * sizeof *touched + 1);
    uint8_t *on = xcalloc(Fb, 1);
    for (size_t i = 0; i < Fa; i++) {
        size_t nt = 0;
        for (int64_t k = ca.ptr[i]; k < ca.ptr[i + 1]; k++) {
            size_t r = ca.row[k];
            for (int64_t q = b->indptr[r]; q < b->indptr[r + 1]; q++) {
                int32_t j = b->indices[q];
                if (!on[j]) on[j] = 1, touched[nt++] = j;
                acc[j] += (double)ca.val[k] * b->values[q];
            }
        }
        best[i] = -1, corr[i] = NAN;
        double bc = -INFINITY;
        for (size_t t = 0; t < nt; t++) {
            int32_t j = touched[t];
            double den = sa[i] * sb[j];
            double rho = den > 0 ? (acc[j] / N - ma[i] * mb[j]) / den : 0;
            if (rho > bc || (rho == bc && j < best[i])) bc = rho, best[i] = j;
            acc[j] = 0, on[j] = 0;
        }
        if (best[i] >= 0) corr[i] = (float)bc;
    }
    free(acc), free(touched), free(on), free(ca.ptr), free(ca.row), free(ca.val);
}
