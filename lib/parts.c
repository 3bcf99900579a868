/* parts.c: large tensors as row ranges in part records (parts.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kinds.h"
#include "parts.h"

int tsz_part_bytes(uint64_t *bytes, char *err, size_t errlen)
{
    const char *s = getenv("SAEPIPE_PART_BYTES");
    *bytes = TSZ_PART_BYTES;
    if (!s || !*s) return 0;
    if (sp_parse_u64(s, bytes) < 0 || *bytes == 0)
        return sp_fail(err, errlen, "SAEPIPE_PART_BYTES=%s: want a positive number of bytes", s);
    return 0;
}

static uint64_t row_bytes(const TszBig *b, TszDtype dt)
{
    return tsz_dtype_size(dt) * (b->ndim == 2 ? b->shape[1] : 1);
}

/* Whether b goes in part records rather than in the first record. */
static int parted(const TszBig *b, uint64_t part) { return b->shape[0] * row_bytes(b, b->dtype) > part; }

/* Rows r0..r0+n-1 of b into dst. */
static void put_rows(const TszBig *b, uint64_t r0, uint64_t n, void *dst)
{
    uint64_t rb = row_bytes(b, b->dtype);
    if (b->data) memcpy(dst, (const char *)b->data + r0 * rb, n * rb);
    else b->fill(b->ctx, r0, n, dst);
}

/* "<kind>_part" for the first record's kind. */
static void part_kind(const TszRecord *first, char *buf, size_t len)
{
    const char *k = json_string_value(json_object_get(first->meta, "kind"));
    snprintf(buf, len, "%s" SP_KIND_PART_SUFFIX, k ? k : "");
}

uint64_t tsz_parts_largest(const uint64_t *bytes, size_t n, uint64_t part)
{
    uint64_t first = 0, parted = 0;
    for (size_t i = 0; i < n; i++) {
        if (bytes[i] > part) parted = part;
        else first += bytes[i];
    }
    return first > parted ? first : parted;
}

static json_t *announce(const TszBig *b)
{
    json_t *shape = json_array();
    for (int d = 0; d < b->ndim; d++) json_array_append_new(shape, json_integer((json_int_t)b->shape[d]));
    return json_pack("{s:s,s:s,s:o}", "name", b->name, "dtype", tsz_dtype_name(b->dtype), "shape", shape);
}

/* The part records of b, each of at most part bytes (one row if a row is more). */
static int write_tensor_parts(TszWriter *w, const TszBig *b, const char *kind, uint64_t part, TszRecord *rec)
{
    uint64_t per = part / row_bytes(b, b->dtype);
    if (per == 0) per = 1;
    for (uint64_t r0 = 0; r0 < b->shape[0]; r0 += per) {
        uint64_t n = b->shape[0] - r0 < per ? b->shape[0] - r0 : per;
        uint64_t shape[2] = {n, b->shape[1]};
        tsz_record_clear(rec);
        json_object_set_new(rec->meta, "kind", json_string(kind));
        json_object_set_new(rec->meta, "tensor", json_string(b->name));
        json_object_set_new(rec->meta, "row", json_integer((json_int_t)r0));
        put_rows(b, r0, n, tsz_record_add(rec, b->name, b->dtype, b->ndim, shape)->data);
        if (tsz_write(w, rec) < 0) return -1;
    }
    return 0;
}

int tsz_write_parts(TszWriter *w, TszRecord *first, const TszBig *big, size_t n, char *err, size_t errlen)
{
    uint64_t part;
    char kind[80];
    if (tsz_part_bytes(&part, err, errlen) < 0) return -1;
    part_kind(first, kind, sizeof kind);
    json_t *ann = json_array();
    for (size_t i = 0; i < n; i++) {
        if (parted(&big[i], part)) {
            json_array_append_new(ann, announce(&big[i]));
            continue;
        }
        TszTensor *t = tsz_record_add(first, big[i].name, big[i].dtype, big[i].ndim, big[i].shape);
        put_rows(&big[i], 0, big[i].shape[0], t->data);
    }
    if (json_array_size(ann)) json_object_set(first->meta, "parts", ann);
    int rc = tsz_write(w, first);
    TszRecord rec;
    tsz_record_init(&rec);
    for (size_t i = 0; i < n && rc == 0; i++)
        if (parted(&big[i], part))
            rc = write_tensor_parts(w, &big[i], kind, part, &rec);
    tsz_record_free(&rec);
    json_decref(ann);
    if (rc < 0) return sp_fail(err, errlen, "%s", tsz_writer_error(w));
    return 0;
}

/* The announcement of name in first, or NULL. */
static const json_t *announced(const TszRecord *first, const char *name)
{
    const json_t *ann = json_object_get(first->meta, "parts");
    for (size_t i = 0; i < json_array_size(ann); i++) {
        const json_t *a = json_array_get(ann, i);
        const char *s = json_string_value(json_object_get(a, "name"));
        if (s && !strcmp(s, name)) return a;
    }
    return NULL;
}

const TszTensor *tsz_parts_get(const TszRecord *first, const char *name, TszTensor *ann)
{
    const TszTensor *t = tsz_record_get(first, name);
    if (t) return t;
    const json_t *a = announced(first, name), *shape = json_object_get(a, "shape");
    memset(ann, 0, sizeof *ann);
    ann->name = (char *)name;
    if (!a || tsz_dtype_parse(json_string_value(json_object_get(a, "dtype")), &ann->dtype) < 0) return NULL;
    size_t nd = json_array_size(shape);
    if (nd < 1 || nd > TSZ_MAX_DIMS) return NULL;
    ann->ndim = (int)nd;
    for (size_t d = 0; d < nd; d++) {
        const json_t *v = json_array_get(shape, d);
        if (!json_is_integer(v) || json_integer_value(v) < 0) return NULL;
        ann->shape[d] = (uint64_t)json_integer_value(v);
    }
    return ann;
}

static const TszBig *find_big(const TszBig *big, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (!strcmp(big[i].name, name)) return &big[i];
    return NULL;
}

/* One part record of b, at row next; returns its rows, or 0 with err. */
static uint64_t take_part(TszReader *r, const TszRecord *rec, const TszBig *b, TszDtype dt, const char *kind,
                          uint64_t next, char *err, size_t errlen)
{
    const char *in = tsz_reader_name(r), *k = json_string_value(json_object_get(rec->meta, "kind"));
    const char *name = json_string_value(json_object_get(rec->meta, "tensor"));
    const json_t *row = json_object_get(rec->meta, "row");
    unsigned long long recno = (unsigned long long)tsz_reader_records(r), want = b->shape[0];
    if (!k || strcmp(k, kind) || !name || !json_is_integer(row))
        return sp_fail(err, errlen, "%s: record %llu is not a part (kind '%s', want '%s'); %s stops at row %" PRIu64
                    " of %llu", in, recno, k ? k : "", kind, b->name, next, want), 0;
    if (strcmp(name, b->name))
        return sp_fail(err, errlen, "%s: record %llu is a part of %s, but %s stops at row %" PRIu64
                    " of %llu (a part is missing or out of order)", in, recno, name, b->name, next, want), 0;
    if (json_integer_value(row) != (json_int_t)next)
        return sp_fail(err, errlen, "%s: record %llu holds %s from row %lld, want row %" PRIu64
                    " (a part is missing, repeated or out of order)", in, recno, name,
                    (long long)json_integer_value(row), next), 0;
    const TszTensor *t = tsz_record_get(rec, b->name);
    char desc[96];
    if (!t || t->dtype != dt || t->ndim != b->ndim || (b->ndim == 2 && t->shape[1] != b->shape[1]) ||
        t->shape[0] == 0 || t->shape[0] > want - next)
        return sp_fail(err, errlen, "%s: record %llu: the part of %s is %s, want 1 to %llu rows of %llu %s",
                    in, recno, b->name, t ? tsz_tensor_desc(t, desc, sizeof desc) : "absent",
                    want - next, (unsigned long long)(b->ndim == 2 ? b->shape[1] : 1), tsz_dtype_name(dt)), 0;
    uint64_t cols = b->ndim == 2 ? b->shape[1] : 1, cnt = t->shape[0] * cols;
    if (!b->data && dt == b->dtype) {
        b->store(b->ctx, next, t->shape[0], t->data);
    } else if (!b->data) {
        void *tmp = xmalloc(cnt * tsz_dtype_size(b->dtype));
        tsz_convert(tmp, b->dtype, t->data, dt, cnt);
        b->store(b->ctx, next, t->shape[0], tmp);
        free(tmp);
    } else {
        tsz_convert((char *)b->data + next * cols * tsz_dtype_size(b->dtype), b->dtype, t->data, dt, cnt);
    }
    return t->shape[0];
}

int tsz_read_parts(TszReader *r, const TszRecord *first, const TszBig *big, size_t n, char *err, size_t errlen)
{
    const char *in = tsz_reader_name(r);
    const json_t *ann = json_object_get(first->meta, "parts");
    char kind[80];
    part_kind(first, kind, sizeof kind);
    TszRecord rec;
    tsz_record_init(&rec);
    int rc = -1, got;
    for (size_t a = 0; a < json_array_size(ann); a++) {
        const char *name = json_string_value(json_object_get(json_array_get(ann, a), "name"));
        const TszBig *b = find_big(big, n, name);
        TszTensor desc;
        if (!b || !tsz_parts_get(first, b->name, &desc) || tsz_record_get(first, b->name)) {
            sp_fail(err, errlen, "%s: announces parts of a tensor '%s' that it cannot have", in, name ? name : "");
            goto out;
        }
        if (b->dtype != desc.dtype && !(b->dtype == TSZ_F32 && tsz_dtype_is_float(desc.dtype))) {
            sp_fail(err, errlen, "%s: %s is %s, want %s", in, b->name, tsz_dtype_name(desc.dtype), tsz_dtype_name(b->dtype));
            goto out;
        }
        for (uint64_t next = 0, got_rows; next < b->shape[0]; next += got_rows) {
            if ((got = tsz_read(r, &rec)) <= 0) {
                if (got < 0) sp_fail(err, errlen, "%s", tsz_reader_error(r));
                else sp_fail(err, errlen, "%s: ends at row %" PRIu64 " of %" PRIu64 " of %s (a part is missing)", in,
                          next, b->shape[0], b->name);
                goto out;
            }
            if (!(got_rows = take_part(r, &rec, b, desc.dtype, kind, next, err, errlen))) goto out;
        }
    }
    if ((got = tsz_read(r, &rec)) < 0) {
        sp_fail(err, errlen, "%s", tsz_reader_error(r));
        goto out;
    }
    if (got == 1) {
        const char *k = json_string_value(json_object_get(rec.meta, "kind"));
        sp_fail(err, errlen, "%s: record %llu (kind '%s') follows the %.*s record%s; want the end marker", in,
             (unsigned long long)tsz_reader_records(r), k ? k : "", (int)(strlen(kind) - 5), kind,
             json_array_size(ann) ? " and its parts" : "");
        goto out;
    }
    rc = 0;
out:
    tsz_record_free(&rec);
    return rc;
}

int tsz_read_tensors(TszReader *r, const TszRecord *first, const TszBig *big, size_t n, char *err, size_t errlen)
{
    const char *in = tsz_reader_name(r);
    for (size_t i = 0; i < n; i++) {
        const TszBig *b = &big[i];
        TszTensor ann, want = {.dtype = b->dtype, .ndim = b->ndim, .shape = {b->shape[0], b->shape[1]}};
        const TszTensor *t = tsz_parts_get(first, b->name, &ann);
        char desc[96], wdesc[96];
        if (!t) return sp_fail(err, errlen, "%s: has no tensor %s", in, b->name);
        if (t->dtype != b->dtype || t->ndim != b->ndim || t->shape[0] != b->shape[0] ||
            (b->ndim == 2 && t->shape[1] != b->shape[1]))
            return sp_fail(err, errlen, "%s: %s is %s, want %s", in, b->name, tsz_tensor_desc(t, desc, sizeof desc),
                        tsz_tensor_desc(&want, wdesc, sizeof wdesc));
        if (t->data && b->data) memcpy(b->data, t->data, t->nbytes);
        else if (t->data) b->store(b->ctx, 0, b->shape[0], t->data);
    }
    return tsz_read_parts(r, first, big, n, err, errlen);
}
