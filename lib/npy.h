/* npy.h: NumPy .npy files (format versions 1.0, 2.0 and 3.0; little-endian,
 * C order), read row by row so large arrays stream in bounded memory. */
#ifndef SP_NPY_H
#define SP_NPY_H

#include <stdint.h>
#include <stdio.h>

#include "dtype.h"
#include "stream.h"

typedef struct {
    FILE *f;
    char *path;
    TszDtype dtype;
    int ndim;
    uint64_t shape[TSZ_MAX_DIMS];
    uint64_t row_bytes;   /* bytes of one index along axis 0 */
    uint64_t rows_read;
    char err[512];
} NpyReader;

/* 0, or -1 with n->err set ("x.npy: big-endian arrays are not supported"). */
int npy_open(NpyReader *n, const char *path) SP_RESULT_USED;
/* Read up to `rows` rows along axis 0 into dst; returns rows read, or -1. */
int64_t npy_read_rows(NpyReader *n, void *dst, uint64_t rows);
void npy_close(NpyReader *n);

/* Writer: the shape along axis 0 grows as rows are appended and the header
 * is rewritten at close, so the output must be a seekable file. Written to
 * a temporary name and renamed into place at close. */
typedef struct {
    FILE *f;
    char *path, *tmp;
    TszDtype dtype;
    int ndim;
    uint64_t shape[TSZ_MAX_DIMS]; /* shape[0] counts rows written */
    char err[512];
} NpyWriter;

/* ndim >= 0; shape[1..] fixed; shape[0] ignored (counts rows). */
int npy_create(NpyWriter *w, const char *path, TszDtype dt, int ndim, const uint64_t *shape) SP_RESULT_USED;
int npy_append(NpyWriter *w, const void *src, uint64_t rows) SP_RESULT_USED;
int npy_finish(NpyWriter *w) SP_RESULT_USED; /* rewrite header, rename; frees */
void npy_abort(NpyWriter *w);

#endif
