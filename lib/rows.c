/* rows.c: training rows from `acts` records (rows.h). */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rows.h"

const TszTensor *rows_check(const TszRecord *rec, const char *what, uint64_t rec_no, char *err, size_t errlen)
{
    const char *kind = json_string_value(json_object_get(rec->meta, "kind"));
    const TszTensor *t = tsz_record_get(rec, "acts");
    char desc[96];
    // no kind: rows from outside saepipe (tsz from-npy acts=X.npy) when they
    // carry the one tensor that says so
    if (kind ? strcmp(kind, "acts") : !t) {
        sp_fail(err, errlen, "%s: record %" PRIu64 " is kind '%s', want 'acts' rows from mlp-tap", what, rec_no,
                kind ? kind : "");
        return NULL;
    }
    if (!t) {
        sp_fail(err, errlen, "%s: record %" PRIu64 " has no tensor 'acts'", what, rec_no);
        return NULL;
    }
    if (t->ndim != 2 || !tsz_dtype_is_float(t->dtype) || t->shape[1] == 0) {
        sp_fail(err, errlen, "%s: acts is %s; %s wants float rows (N,D) from mlp-tap without --keep-context", what,
                tsz_tensor_desc(t, desc, sizeof desc), sp_prog);
        return NULL;
    }
    return t;
}

static int rows_fail_reader(RowReader *r)
{
    return SP_FAIL(r, "%s", tsz_reader_error(r->r));
}

int rows_open(RowReader *r, const char *path)
{
    *r = (RowReader){.path = path, .name = sp_in_name(path)};
    tsz_record_init(&r->rec);
    r->r = tsz_reader_open(path);
    if (tsz_reader_error(r->r)) return rows_fail_reader(r);
    r->header = json_deep_copy(tsz_reader_header(r->r));
    return 0;
}

int rows_rewind(RowReader *r)
{
    if (r->r) tsz_reader_close(r->r);
    r->r = tsz_reader_open(r->path);
    r->nrows = r->pos = 0;
    r->rec_no = 0;
    if (tsz_reader_error(r->r)) return rows_fail_reader(r);
    return 0;
}

int rows_next(RowReader *r)
{
    int got = tsz_read(r->r, &r->rec);
    if (got < 0) return rows_fail_reader(r);
    if (!got) return 0;
    r->rec_no++;
    const TszTensor *t = rows_check(&r->rec, r->name, r->rec_no, r->err, sizeof r->err);
    if (!t) return -1;
    size_t D = (size_t)t->shape[1], n = (size_t)t->shape[0];
    if (!r->D) r->D = D;
    if (D != r->D)
        return SP_FAIL(r, "%s: record %" PRIu64 " has rows of width %zu, earlier ones %zu", r->name, r->rec_no, D,
                       r->D);
    if (!r->meta) r->meta = json_deep_copy(r->rec.meta);
    if (n * D > r->cap) {
        free(r->buf);
        r->cap = n * D;
        r->buf = xmalloc_aligned(r->cap * sizeof *r->buf);
    }
    tsz_to_f32(r->buf, t->data, t->dtype, n * D);
    r->nrows = n, r->pos = 0;
    return 1;
}

int rows_skip(RowReader *r, uint64_t n)
{
    uint64_t want = n;
    while (n) {
        if (r->pos == r->nrows) {
            int got = rows_next(r);
            if (got < 0) return -1;
            if (!got) return SP_FAIL(r, "%s: ends after %" PRIu64 " of the %" PRIu64 " rows to skip", r->name,
                                     want - n, want);
            continue;
        }
        size_t take = r->nrows - r->pos;
        if (take > n) take = (size_t)n;
        r->pos += take, n -= take;
    }
    return 0;
}

void rows_close(RowReader *r)
{
    if (r->r) tsz_reader_close(r->r);
    if (r->rec.meta) tsz_record_free(&r->rec);
    free(r->buf);
    json_decref(r->meta);
    json_decref(r->header);
    *r = (RowReader){0};
}

int rows_count(const char *path, uint64_t *n, char *err, size_t errlen)
{
    RowReader r;
    int got = rows_open(&r, path);
    *n = 0;
    if (!got)
        while ((got = rows_next(&r)) > 0) *n += r.nrows;
    if (got < 0) sp_fail(err, errlen, "%s", r.err);
    rows_close(&r);
    return got < 0 ? -1 : 0;
}

int rows_finite(const float *x, size_t D)
{
    for (size_t d = 0; d < D; d++)
        if (!isfinite(x[d])) return 0;
    return 1;
}
