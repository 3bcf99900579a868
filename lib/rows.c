/* rows.c: training rows from `acts` records (rows.h). */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kinds.h"
#include "rows.h"

const TszTensor *rows_check(const TszRecord *rec, const char *what, uint64_t rec_no, char *err, size_t errlen)
{
    char msg[400];
    const TszTensor *t = NULL;
    if (sp_kind_check(rec, SP_K_ACTS, msg, sizeof msg) == 0) t = sp_kind_tensor(rec, SP_K_ACTS, NULL, msg, sizeof msg);
    if (!t) sp_fail(err, errlen, "%s: record %" PRIu64 ": %s", what, rec_no, msg);
    return t;
}

static int rows_fail_reader(RowReader *r)
{
    return SP_FAIL(r, "%s", tsz_reader_error(r->r));
}

/* Open file i as the current one; the first pass keeps its reader. */
static int open_file(RowReader *r, size_t i)
{
    if (r->r && !r->first_pass) tsz_reader_close(r->r);
    r->cur = i, r->path = r->paths[i], r->name = sp_in_name(r->path);
    r->r = tsz_reader_open(r->path);
    r->nrows = r->pos = 0;
    r->rec_no = 0;
    if (r->first_pass) r->seen[r->nseen++] = r->r;
    if (tsz_reader_error(r->r)) return rows_fail_reader(r);
    return 0;
}

static int open_list(RowReader *r, const char *const *paths, size_t n, const char *one)
{
    *r = (RowReader){.paths = paths, .npaths = n, .first_pass = 1, .one = one};
    if (one) r->paths = &r->one;
    tsz_record_init(&r->rec);
    r->seen = xcalloc(n, sizeof *r->seen);
    if (open_file(r, 0) < 0) return -1;
    r->header = json_deep_copy(tsz_reader_header(r->r));
    return 0;
}

int rows_open_list(RowReader *r, const char *const *paths, size_t n) { return open_list(r, paths, n, NULL); }

int rows_open(RowReader *r, const char *path) { return open_list(r, NULL, 1, path); }

int rows_rewind(RowReader *r)
{
    int keep = r->first_pass;
    r->first_pass = 0;
    if (keep) r->r = NULL; /* it stays in seen */
    return open_file(r, 0);
}

int rows_next(RowReader *r)
{
    int got;
    while ((got = tsz_read(r->r, &r->rec)) == 0 && r->cur + 1 < r->npaths)
        if (open_file(r, r->cur + 1) < 0) return -1;
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

void rows_add_inputs(const RowReader *r, TszWriter *w)
{
    for (size_t i = 0; i < r->nseen; i++) tsz_writer_add_input(w, r->seen[i]);
    if (r->r && !r->first_pass) tsz_writer_add_input(w, r->r); /* duplicates are dropped */
}

void rows_close(RowReader *r)
{
    if (r->r && !r->first_pass) tsz_reader_close(r->r);
    for (size_t i = 0; i < r->nseen; i++) tsz_reader_close(r->seen[i]);
    free(r->seen);
    if (r->rec.meta) tsz_record_free(&r->rec);
    free(r->buf);
    json_decref(r->meta);
    json_decref(r->header);
    *r = (RowReader){0};
}

int rows_count(const char *const *paths, size_t n, uint64_t *rows, char *err, size_t errlen)
{
    TszRecord rec;
    tsz_record_init(&rec);
    *rows = 0;
    int rc = 0;
    uint64_t D = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *name = sp_in_name(paths[i]);
        uint64_t declared;
        if (tsz_file_rows(paths[i], &declared)) { /* mlp-tap's end records: no pass over the rows */
            *rows += declared;
            continue;
        }
        TszReader *r = tsz_reader_open(paths[i]);
        int got = tsz_reader_error(r) ? -1 : 0;
        for (uint64_t k = 1; !got && (got = tsz_read(r, &rec)) > 0; k++, got = 0) {
            const TszTensor *t = rows_check(&rec, name, k, err, errlen);
            if (!t) {
                rc = -1;
                break;
            }
            if (!D) D = t->shape[1];
            if (t->shape[1] != D) {
                rc = sp_fail(err, errlen, "%s: record %" PRIu64 " has rows of width %" PRIu64 ", earlier ones %" PRIu64,
                             name, k, t->shape[1], D);
                break;
            }
            *rows += t->shape[0];
        }
        if (got < 0 && !rc) rc = sp_fail(err, errlen, "%s", tsz_reader_error(r));
        tsz_reader_close(r);
    }
    tsz_record_free(&rec);
    return rc;
}

int rows_finite(const float *x, size_t D)
{
    for (size_t d = 0; d < D; d++)
        if (!isfinite(x[d])) return 0;
    return 1;
}

double rows_norm_scale(const float *x, size_t n, size_t D)
{
    double ss = 0;
    for (size_t i = 0; i < n * D; i++) ss += (double)x[i] * x[i];
    return ss > 0 ? sqrt((double)D * n / ss) : 1.0;
}

void rows_scale(float *x, size_t n, double s)
{
    if (s == 1.0) return;
    for (size_t i = 0; i < n; i++) x[i] = (float)(x[i] * s);
}

/* ---- shuffle buffer ---- */
void row_shuffle_init(RowShuffle *s, uint64_t cap, size_t D, SpRng *rng, RowEmit emit, void *ud)
{
    *s = (RowShuffle){.D = D, .cap = cap, .rng = rng, .emit = emit, .ud = ud};
    if (cap) s->buf = xmalloc(cap * D * sizeof *s->buf);
}

void row_shuffle_put(RowShuffle *s, const float *row)
{
    size_t D = s->D;
    if (!s->cap) {
        s->emit(s->ud, row);
        return;
    }
    if (s->n < s->cap) {
        memcpy(s->buf + s->n++ * D, row, D * sizeof *row);
        return;
    }
    float *slot = s->buf + sp_rng_below(s->rng, s->cap) * D;
    s->emit(s->ud, slot);
    memcpy(slot, row, D * sizeof *row);
}

void row_shuffle_drain(RowShuffle *s)
{
    size_t D = s->D;
    for (uint64_t i = s->n; i > 1; i--) {  /* Fisher-Yates on what is left */
        uint64_t j = sp_rng_below(s->rng, i);
        float *a = s->buf + (i - 1) * D, *b = s->buf + j * D;
        for (size_t k = 0; k < D; k++) {
            float tmp = a[k];
            a[k] = b[k], b[k] = tmp;
        }
    }
    for (uint64_t i = 0; i < s->n; i++) s->emit(s->ud, s->buf + i * D);
    s->n = 0;
}

void row_shuffle_free(RowShuffle *s)
{
    free(s->buf);
    s->buf = NULL, s->n = 0;
}
