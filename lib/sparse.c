/* sparse.c: CSR checks and building, CSC transpose, feature lists. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sparse.h"
#include "util.h"

int sparse_csr_check(const SpCsr *c, char *err, size_t errlen)
{
    if (c->indptr[0] != 0) return sp_fail(err, errlen, "indptr[0] is %lld, not 0", (long long)c->indptr[0]);
    if ((uint64_t)c->indptr[c->rows] != c->nnz)
        return sp_fail(err, errlen, "indptr ends at %lld but there are %zu values", (long long)c->indptr[c->rows],
                    c->nnz);
    for (size_t r = 0; r < c->rows; r++)
        if (c->indptr[r + 1] < c->indptr[r] || c->indptr[r + 1] > (int64_t)c->nnz)
            return sp_fail(err, errlen, "indptr[%zu] = %lld is out of order", r + 1, (long long)c->indptr[r + 1]);
    for (size_t r = 0; r < c->rows; r++) {
        int64_t a = c->indptr[r], b = c->indptr[r + 1];
        for (int64_t i = a; i < b; i++) {
            int32_t j = c->indices[i];
            if (j < 0 || (size_t)j >= c->F)
                return sp_fail(err, errlen, "indices[%lld] = %d is outside [0, %zu)", (long long)i, j, c->F);
            if (i > a && j <= c->indices[i - 1])
                return sp_fail(err, errlen, "indices of row %zu are not ascending at %lld", r, (long long)i);
            if (!isfinite(c->values[i]))
                return sp_fail(err, errlen, "values[%lld] is not finite", (long long)i);
        }
    }
    return 0;
}

void sparse_buf_reset(SpCsrBuf *b)
{
    b->rows = b->nnz = 0;
    if (!b->indptr) {
        b->cap_rows = 1024;
        b->indptr = xmalloc((b->cap_rows + 1) * sizeof *b->indptr);
    }
    b->indptr[0] = 0;
}

void sparse_buf_free(SpCsrBuf *b)
{
    free(b->indptr);
    free(b->indices);
    free(b->values);
    memset(b, 0, sizeof *b);
}

void sparse_buf_append_dense(SpCsrBuf *b, const float *x, size_t n, size_t Fc, const int32_t *ids)
{
    if (!b->indptr) sparse_buf_reset(b);
    if (b->rows + n > b->cap_rows) {
        while (b->rows + n > b->cap_rows) b->cap_rows *= 2;
        b->indptr = xrealloc(b->indptr, (b->cap_rows + 1) * sizeof *b->indptr);
    }
    for (size_t i = 0; i < n; i++) {
        const float *row = x + i * Fc;
        size_t cnt = 0;
        for (size_t j = 0; j < Fc; j++) cnt += row[j] != 0;
        if (b->nnz + cnt > b->cap_nnz) {
            b->cap_nnz = b->cap_nnz ? b->cap_nnz : 4096;
            while (b->nnz + cnt > b->cap_nnz) b->cap_nnz *= 2;
            b->indices = xrealloc(b->indices, b->cap_nnz * sizeof *b->indices);
            b->values = xrealloc(b->values, b->cap_nnz * sizeof *b->values);
        }
        for (size_t j = 0; j < Fc; j++) {
            if (row[j] == 0) continue;
            b->indices[b->nnz] = ids ? ids[j] : (int32_t)j;
            b->values[b->nnz++] = row[j];
        }
        b->indptr[++b->rows] = (int64_t)b->nnz;
    }
}

static void csc_reserve(SpCsc *c, size_t ncol, size_t nnz)
{
    if (ncol + 1 > c->cap_col) {
        c->cap_col = ncol + 1;
        c->colptr = xrealloc(c->colptr, c->cap_col * sizeof *c->colptr);
    }
    if (nnz > c->cap_nnz || !c->row) {
        c->cap_nnz = nnz > 16 ? nnz : 16;
        c->row = xrealloc(c->row, c->cap_nnz * sizeof *c->row);
        c->val = xrealloc(c->val, c->cap_nnz * sizeof *c->val);
    }
    c->ncol = ncol;
    memset(c->colptr, 0, (ncol + 1) * sizeof *c->colptr);
}

/* colptr[j+1] holds column j's count; turn counts into starts (colptr[j])
 * and leave colptr[j+1] as the fill cursor of column j. */
static void csc_starts(SpCsc *c)
{
    int64_t sum = 0;
    for (size_t j = 0; j < c->ncol; j++) {
        int64_t n = c->colptr[j + 1];
        c->colptr[j + 1] = sum;
        sum += n;
    }
    c->nnz = (size_t)sum;
}

static void csc_put(SpCsc *c, int32_t col, uint32_t r, float v)
{
    int64_t at = c->colptr[col + 1]++;
    c->row[at] = r;
    c->val[at] = v;
}

/* Counting sort by column: pass 1 counts, pass 2 places rows in order, so
 * each column's rows come out ascending. */
void sparse_csc_from_csr(SpCsc *c, const SpCsr *a, const int32_t *col_of, size_t ncol)
{
    csc_reserve(c, ncol, a->nnz);
    for (size_t i = 0; i < a->nnz; i++) {
        int32_t col = col_of ? col_of[a->indices[i]] : a->indices[i];
        if (col >= 0 && a->values[i] > 0) c->colptr[col + 1]++;
    }
    csc_starts(c);
    for (size_t r = 0; r < a->rows; r++)
        for (int64_t i = a->indptr[r]; i < a->indptr[r + 1]; i++) {
            int32_t col = col_of ? col_of[a->indices[i]] : a->indices[i];
            if (col >= 0 && a->values[i] > 0) csc_put(c, col, (uint32_t)r, a->values[i]);
        }
}

void sparse_csc_from_dense(SpCsc *c, const float *x, size_t rows, size_t Fc, const int32_t *ids,
                           const int32_t *col_of, size_t ncol)
{
    size_t nnz = 0;
    for (size_t i = 0; i < rows * Fc; i++) nnz += x[i] > 0;
    csc_reserve(c, ncol, nnz);
    for (int pass = 0; pass < 2; pass++) {
        if (pass) csc_starts(c);
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < Fc; j++) {
                int32_t f = ids ? ids[j] : (int32_t)j, col = col_of ? col_of[f] : f;
                if (col < 0 || !(x[r * Fc + j] > 0)) continue;
                if (pass) csc_put(c, col, (uint32_t)r, x[r * Fc + j]);
                else c->colptr[col + 1]++;
            }
    }
}

void sparse_csc_free(SpCsc *c)
{
    free(c->colptr);
    free(c->row);
    free(c->val);
    memset(c, 0, sizeof *c);
}

int sparse_parse_features(const char *s, size_t F, int32_t **ids, size_t *n, char *err, size_t errlen)
{
    uint8_t *on = xcalloc(F ? F : 1, 1);
    const char *p = s;
    int rc = -1;
    if (!*p) {
        sp_fail(err, errlen, "empty feature list");
        goto out;
    }
    while (*p) {
        char *end;
        if (*p < '0' || *p > '9') goto bad;
        unsigned long long a = strtoull(p, &end, 10), b = a;
        p = end;
        if (*p == '-') {
            if (p[1] < '0' || p[1] > '9') goto bad;
            b = strtoull(p + 1, &end, 10);
            p = end;
        }
        if (*p && *p != ',') goto bad;
        if (*p == ',' && !p[1]) goto bad;
        if (*p) p++;
        if (b < a || b >= F) {
            sp_fail(err, errlen, "feature range %llu-%llu is outside [0, %zu)", a, b, F);
            goto out;
        }
        memset(on + a, 1, b - a + 1);
    }
    size_t cnt = 0;
    for (size_t f = 0; f < F; f++) cnt += on[f];
    *ids = xmalloc(cnt * sizeof **ids + 1);
    *n = 0;
    for (size_t f = 0; f < F; f++)
        if (on[f]) (*ids)[(*n)++] = (int32_t)f;
    rc = 0;
    goto out;
bad:
    sp_fail(err, errlen, "bad feature list '%s' (expected e.g. 0-99,512)", s);
out:
    free(on);
    return rc;
}
