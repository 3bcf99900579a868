/* stream.c: records of the tensor stream (.tsz), the in-memory side that
 * reader and writer share, and the bin/ conveniences; spec in
 * man/man5/tsz.5. The reader is stream_read.c, the writer stream_write.c
 * (one concern a file, as htslib splits reading from writing).
 *
 * Every record is one zstd frame (content checksum on) holding one msgpack
 * map. The map's "type" is "header", "data" or "end". A segment is
 * header, data*, end; the end record carries the number of data records
 * and the number of decompressed bytes of the segment's frames before it,
 * so a reader that sees the end record knows nothing was lost in between.
 * zstd frames concatenate, so `cat a.tsz b.tsz` is a stream of two
 * segments. */
#include "stream.h"
#include "stream_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* records                                                             */

void tsz_record_init(TszRecord *r)
{
    memset(r, 0, sizeof *r);
    r->meta = json_object();
}

void tsz_record_clear(TszRecord *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->t[i].name);
        r->t[i].name = NULL;
        r->t[i].nbytes = 0;
    }
    r->n = 0;
    json_object_clear(r->meta);
}

void tsz_record_free(TszRecord *r)
{
    tsz_record_clear(r);
    for (size_t i = 0; i < r->cap; i++) free(r->t[i].data);
    free(r->t);
    json_decref(r->meta);
    memset(r, 0, sizeof *r);
}

uint64_t tsz_tensor_numel(const TszTensor *t)
{
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* numel * elsize, or UINT64_MAX on overflow */
uint64_t tsz_shape_bytes(const uint64_t *shape, int ndim, size_t elsize)
{
    uint64_t n = elsize;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] && n > UINT64_MAX / shape[i]) return UINT64_MAX;
        n *= shape[i];
    }
    return n;
}

const char *tsz_tensor_desc(const TszTensor *t, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "(");
    for (int i = 0; i < t->ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%" PRIu64, i ? "," : "", t->shape[i]);
    if (o < len) snprintf(buf + o, len - o, ") %s", tsz_dtype_name(t->dtype));
    return buf;
}

TszTensor *tsz_record_get(const TszRecord *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->t[i].name, name)) return &r->t[i];
    return NULL;
}

int tsz_record_remove(TszRecord *r, const char *name)
{
    TszTensor *t = tsz_record_get(r, name);
    if (!t) return -1;
    size_t i = (size_t)(t - r->t);
    TszTensor gone = *t;
    free(gone.name);
    /* keep the buffer: move the removed slot past the live ones */
    memmove(&r->t[i], &r->t[i + 1], (r->n - i - 1) * sizeof *t);
    r->n--;
    gone.name = NULL;
    gone.nbytes = 0;
    r->t[r->n] = gone;
    return 0;
}

/* A slot with at least nbytes of buffer, named and shaped. */
TszTensor *tsz_record_slot(TszRecord *r, const char *name, TszDtype dt, int ndim,
                           const uint64_t *shape, size_t nbytes)
{
    TszTensor *t = tsz_record_get(r, name);
    if (!t) {
        if (r->n == r->cap) {
            size_t nc = r->cap ? r->cap * 2 : 8;
            r->t = xrealloc(r->t, nc * sizeof *r->t);
            memset(r->t + r->cap, 0, (nc - r->cap) * sizeof *r->t);
            r->cap = nc;
        }
        t = &r->t[r->n++];
        t->name = xstrdup(name);
    }
    // an empty tensor gets memory too: data is never NULL, so memcpy of
    // zero bytes from it is defined
    if (t->cap < nbytes || !t->data) {
        free(t->data);
        t->cap = nbytes + nbytes / 8 + 64;
        t->data = xmalloc_aligned(t->cap);
    }
    t->dtype = dt;
    t->ndim = ndim;
    memset(t->shape, 0, sizeof t->shape);
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    return t;
}

TszTensor *tsz_record_add(TszRecord *r, const char *name, TszDtype dt, int ndim,
                          const uint64_t *shape)
{
    if (ndim < 0 || ndim > TSZ_MAX_DIMS) return NULL;
    uint64_t nb = tsz_shape_bytes(shape, ndim, tsz_dtype_size(dt));
    if (nb == UINT64_MAX || nb > SIZE_MAX / 2) return NULL;
    return tsz_record_slot(r, name, dt, ndim, shape, (size_t)nb);
}

TszTensor *tsz_record_add_copy(TszRecord *r, const char *name, TszDtype dt, int ndim,
                               const uint64_t *shape, const void *src)
{
    TszTensor *t = tsz_record_add(r, name, dt, ndim, shape);
    if (t && t->nbytes) memcpy(t->data, src, t->nbytes);
    return t;
}

uint64_t tsz_rows_per_record(uint64_t bytes_per_row)
{
    if (!bytes_per_row) return 1 << 16;
    uint64_t n = TSZ_RECORD_BYTES / bytes_per_row;
    return n ? n : 1;
}

/* ------------------------------------------------------------------ */
/* bin/ conveniences                                                   */

void tsz_reader_check(const TszReader *r)
{
    if (tsz_reader_error(r)) sp_die("%s", tsz_reader_error(r));
}

void tsz_writer_check(const TszWriter *w)
{
    if (tsz_writer_error(w)) sp_die("%s", tsz_writer_error(w));
}

int tsz_read_or_die(TszReader *r, TszRecord *rec)
{
    int got = tsz_read(r, rec);
    if (got < 0) sp_die("%s", tsz_reader_error(r));
    return got;
}

void tsz_write_or_die(TszWriter *w, const TszRecord *rec)
{
    if (tsz_write(w, rec) < 0) sp_die("%s", tsz_writer_error(w));
}

void tsz_writer_close_or_die(TszWriter *w)
{
    char err[512];
    if (tsz_writer_close(w, err, sizeof err) < 0) sp_die("%s", err);
}
