/* sparse.h: sparse feature activations as sae-encode writes them.
 *
 * CSR (compressed sparse rows) of a (rows, F) matrix: indptr i64 (rows+1),
 * indptr[0] = 0, non-decreasing, indptr[rows] = nnz; indices i32 (nnz),
 * strictly ascending inside a row, each in [0, F); values f32 (nnz), finite.
 * CSC is the transpose, built per record by topk-ctx so that each
 * feature's activations are contiguous (rows ascending inside a column). */
#ifndef SP_SPARSE_H
#define SP_SPARSE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t rows, F, nnz;
    const int64_t *indptr;   /* (rows+1) */
    const int32_t *indices;  /* (nnz) */
    const float *values;     /* (nnz) */
} SpCsr;

/* 0, or -1 with a message in err ("indices[12] = 70000 is outside [0, 65536)"). */
int sparse_csr_check(const SpCsr *c, char *err, size_t errlen);

/* A growable CSR, filled a dense block at a time (sae-encode). */
typedef struct {
    int64_t *indptr;         /* (rows+1) */
    int32_t *indices;        /* (nnz) */
    float *values;           /* (nnz) */
    size_t rows, nnz, cap_rows, cap_nnz;
} SpCsrBuf;

void sparse_buf_reset(SpCsrBuf *b);   /* rows = nnz = 0, buffers kept */
void sparse_buf_free(SpCsrBuf *b);
/* Append n dense rows x (n, Fc); the nonzero entries of column j get the
 * feature id ids[j] (ids NULL: j). ids must be ascending. */
void sparse_buf_append_dense(SpCsrBuf *b, const float *x, size_t n, size_t Fc, const int32_t *ids);

/* CSC of the positive entries of selected columns. Column c holds the
 * entries of feature sel[c]; col_of maps a feature id to its column or -1. */
typedef struct {
    size_t ncol, nnz;
    int64_t *colptr;         /* (ncol+1) */
    uint32_t *row;           /* (nnz) ascending inside a column */
    float *val;              /* (nnz) > 0 */
    size_t cap_col, cap_nnz;
} SpCsc;

void sparse_csc_from_csr(SpCsc *c, const SpCsr *a, const int32_t *col_of, size_t ncol);
/* x (rows, Fc) dense, column j is feature ids[j] (ids NULL: j). */
void sparse_csc_from_dense(SpCsc *c, const float *x, size_t rows, size_t Fc, const int32_t *ids,
                           const int32_t *col_of, size_t ncol);
void sparse_csc_free(SpCsc *c);

/* Parse a feature list "0-99,512,1000-1023" (ranges inclusive) for a
 * dictionary of F features: the ids, ascending and unique, into a new
 * array (*ids, *n). 0, or -1 with a message in err. */
int sparse_parse_features(const char *s, size_t F, int32_t **ids, size_t *n, char *err, size_t errlen);

#endif
