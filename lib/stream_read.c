/* stream_read.c: the reader of the tensor stream (.tsz), and the rows a
 * file's end records declare; spec in man/man5/tsz.5, records in
 * stream.c, the writer in stream_write.c.
 *
 * A reader decompresses one zstd frame at a time and checks each segment
 * against its end record (the count of data records and of decompressed
 * bytes before it), so a cut or spliced stream is an error, not a short
 * read. */
#include "stream.h"
#include "stream_int.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

/* ------------------------------------------------------------------ */
/* msgpack -> JSON for metadata, and map lookups                       */

/* NULL with *why set on a value metadata cannot hold. */
static json_t *unpack_json(const msgpack_object *o, const char **why, int depth)
{
    if (depth > 64) {
        *why = "metadata nested too deeply";
        return NULL;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX) return json_real((double)o->via.u64);
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR: {
        json_t *s = json_stringn(o->via.str.ptr, o->via.str.size);
        if (!s) *why = "metadata string is not valid UTF-8";
        return s;
    }
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            json_t *v = unpack_json(&o->via.array.ptr[i], why, depth + 1);
            if (!v) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, v);
        }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                *why = "metadata map key is not a string";
                json_decref(m);
                return NULL;
            }
            json_t *v = unpack_json(&kv->val, why, depth + 1);
            char *key = strndup(kv->key.via.str.ptr, kv->key.via.str.size);
            if (!v || !key || json_object_set_new(m, key, v) < 0) {
                if (!*why) *why = "metadata key is not valid UTF-8";
                free(key);
                json_decref(m);
                return NULL;
            }
            free(key);
        }
        return m;
    }
    default:
        *why = "metadata holds a value of a type JSON cannot hold (binary or extension)";
        return NULL;
    }
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && !memcmp(k->via.str.ptr, key, n))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static int obj_is_str(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           !memcmp(o->via.str.ptr, s, o->via.str.size);
}

static int obj_u64(const msgpack_object *o, uint64_t *v)
{
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return -1;
    *v = o->via.u64;
    return 0;
}

/* ------------------------------------------------------------------ */
/* reader                                                              */

struct TszReader {
    FILE *f;
    int own;
    char *name;
    ZSTD_DCtx *dctx;
    uint8_t *in;
    size_t in_cap, in_pos, in_len;
    uint8_t *out;               /* the current frame's content */
    size_t out_cap;
    int in_segment, done;
    uint64_t seg_records, seg_bytes;
    uint64_t records, segments, frames;
    uint64_t bytes_in, bytes_out;
    json_t *headers;            /* array of header metas */
    msgpack_unpacked up;
    char err[512];
};

static int rfail(TszReader *r, const char *fmt, ...) SP_PRINTF(2, 3);
static int rfail(TszReader *r, const char *fmt, ...)
{
    if (r->err[0]) return -1;
    int n = snprintf(r->err, sizeof r->err, "%s: ", r->name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + n, sizeof r->err - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Decompress the next frame into r->out. 1 = frame (*len bytes), 0 = EOF
 * at a frame boundary, -1 = error. */
static int next_frame(TszReader *r, size_t *len)
{
    size_t out_len = 0;
    int started = 0;
    for (;;) {
        if (r->in_pos == r->in_len) {
            r->in_len = fread(r->in, 1, r->in_cap, r->f);
            r->in_pos = 0;
            if (r->in_len == 0) {
                if (ferror(r->f)) return rfail(r, "read error: %s", strerror(errno));
                if (!started) return 0;
                return rfail(r, "truncated: ends inside record %" PRIu64 " (%zu bytes of it decoded)",
                             r->records + 1, out_len);
            }
            r->bytes_in += r->in_len;
        }
        started = 1;
        if (out_len == r->out_cap) {
            if (r->out_cap >= TSZ_MAX_RECORD_BYTES)
                return rfail(r, "record %" PRIu64 " is larger than %llu bytes", r->records + 1,
                             (unsigned long long)TSZ_MAX_RECORD_BYTES);
            r->out_cap = r->out_cap ? r->out_cap * 2 : (1 << 20);
            r->out = xrealloc(r->out, r->out_cap);
        }
        ZSTD_inBuffer zin = {r->in, r->in_len, r->in_pos};
        ZSTD_outBuffer zout = {r->out, r->out_cap, out_len};
        size_t ret = ZSTD_decompressStream(r->dctx, &zout, &zin);
        r->in_pos = zin.pos;
        out_len = zout.pos;
        if (ZSTD_isError(ret)) {
            if (r->frames == 0)
                return rfail(r, "not a tsz stream (zstd: %s)", ZSTD_getErrorName(ret));
            return rfail(r, "corrupt record %" PRIu64 " (zstd: %s)", r->records + 1,
                         ZSTD_getErrorName(ret));
        }
        if (ret == 0) {
            *len = out_len;
            r->frames++;
            r->bytes_out += out_len;
            return 1;
        }
    }
}

static int parse_tensor(TszReader *r, const msgpack_object *o, TszRecord *rec, uint64_t recno)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return rfail(r, "record %" PRIu64 ": tensor entry is not a map", recno);
    const msgpack_object *name = map_get(o, "name"), *dt = map_get(o, "dtype");
    const msgpack_object *shape = map_get(o, "shape"), *data = map_get(o, "data");
    const msgpack_object *shuf = map_get(o, "shuffle");
    if (!name || name->type != MSGPACK_OBJECT_STR || name->via.str.size == 0 || name->via.str.size > 255)
        return rfail(r, "record %" PRIu64 ": tensor without a valid name", recno);
    char nm[256];
    memcpy(nm, name->via.str.ptr, name->via.str.size);
    nm[name->via.str.size] = 0;
    char dts[16] = "";
    TszDtype dtype;
    if (dt && dt->type == MSGPACK_OBJECT_STR && dt->via.str.size < sizeof dts) {
        memcpy(dts, dt->via.str.ptr, dt->via.str.size);
        dts[dt->via.str.size] = 0;
    }
    if (tsz_dtype_parse(dts, &dtype) < 0)
        return rfail(r, "record %" PRIu64 ": tensor \"%s\" has unknown dtype '%s'", recno, nm, dts);
    if (!shape || shape->type != MSGPACK_OBJECT_ARRAY || shape->via.array.size > TSZ_MAX_DIMS)
        return rfail(r, "record %" PRIu64 ": tensor \"%s\" has no valid shape", recno, nm);
    uint64_t dims[TSZ_MAX_DIMS];
    int nd = (int)shape->via.array.size;
    for (int i = 0; i < nd; i++)
        if (obj_u64(&shape->via.array.ptr[i], &dims[i]) < 0)
            return rfail(r, "record %" PRIu64 ": tensor \"%s\" has a bad dimension", recno, nm);
    if (!data || data->type != MSGPACK_OBJECT_BIN)
        return rfail(r, "record %" PRIu64 ": tensor \"%s\" has no data", recno, nm);
    if (tsz_record_get(rec, nm))
        return rfail(r, "record %" PRIu64 ": tensor \"%s\" appears twice", recno, nm);
    size_t es = tsz_dtype_size(dtype);
    uint64_t need = tsz_shape_bytes(dims, nd, es);
    if (need != data->via.bin.size) {
        TszTensor tmp = {.dtype = dtype, .ndim = nd};
        memcpy(tmp.shape, dims, sizeof(uint64_t) * (size_t)nd);
        char desc[160];
        tsz_tensor_desc(&tmp, desc, sizeof desc);
        if (need == UINT64_MAX)
            return rfail(r, "record %" PRIu64 ": tensor \"%s\" shape %s overflows", recno, nm, desc);
        return rfail(r, "record %" PRIu64 ": tensor \"%s\" is %" PRIu32 " bytes but %s needs %" PRIu64,
                     recno, nm, data->via.bin.size, desc, need);
    }
    TszTensor *t = tsz_record_slot(rec, nm, dtype, nd, dims, (size_t)need);
    if (shuf && shuf->type == MSGPACK_OBJECT_BOOLEAN && shuf->via.boolean)
        tsz_unshuffle(t->data, (const uint8_t *)data->via.bin.ptr, need / es, es);
    else if (need)
        memcpy(t->data, data->via.bin.ptr, need);
    return 0;
}

static int parse_data(TszReader *r, const msgpack_object *map, TszRecord *rec)
{
    uint64_t recno = r->records + 1;
    tsz_record_clear(rec);
    const msgpack_object *meta = map_get(map, "meta"), *ts = map_get(map, "tensors");
    if (meta) {
        if (meta->type != MSGPACK_OBJECT_MAP)
            return rfail(r, "record %" PRIu64 ": metadata is not a map", recno);
        const char *why = NULL;
        json_t *j = unpack_json(meta, &why, 0);
        if (!j) return rfail(r, "record %" PRIu64 ": %s", recno, why ? why : "bad metadata");
        json_object_update(rec->meta, j);
        json_decref(j);
    }
    if (ts && ts->type != MSGPACK_OBJECT_ARRAY)
        return rfail(r, "record %" PRIu64 ": tensors is not an array", recno);
    for (uint32_t i = 0; ts && i < ts->via.array.size; i++)
        if (parse_tensor(r, &ts->via.array.ptr[i], rec, recno) < 0) return -1;
    return 0;
}

static int parse_header(TszReader *r, const msgpack_object *map)
{
    const msgpack_object *fmt = map_get(map, "format"), *ver = map_get(map, "version");
    const msgpack_object *meta = map_get(map, "meta");
    uint64_t v;
    if (!obj_is_str(fmt, "tsz")) return rfail(r, "not a tsz stream (header without format \"tsz\")");
    if (obj_u64(ver, &v) < 0 || v != TSZ_FORMAT_VERSION)
        return rfail(r, "unsupported tsz format version (this reader knows version %d)",
                     TSZ_FORMAT_VERSION);
    const char *why = NULL;
    json_t *j = meta && meta->type == MSGPACK_OBJECT_MAP ? unpack_json(meta, &why, 0) : json_object();
    if (!j) return rfail(r, "segment %" PRIu64 " header: %s", r->segments + 1, why);
    json_array_append_new(r->headers, j);
    r->segments++;
    r->in_segment = 1;
    r->seg_records = 0;
    r->seg_bytes = 0;
    return 0;
}

static int check_end(TszReader *r, const msgpack_object *map)
{
    uint64_t n, b;
    if (obj_u64(map_get(map, "records"), &n) < 0 || obj_u64(map_get(map, "bytes"), &b) < 0)
        return rfail(r, "segment %" PRIu64 ": malformed end marker", r->segments);
    if (n != r->seg_records)
        return rfail(r, "segment %" PRIu64 ": end marker counts %" PRIu64 " records but %" PRIu64
                        " were read", r->segments, n, r->seg_records);
    if (b != r->seg_bytes)
        return rfail(r, "segment %" PRIu64 ": end marker counts %" PRIu64 " bytes but %" PRIu64
                        " were read", r->segments, b, r->seg_bytes);
    r->in_segment = 0;
    return 0;
}

/* Read frames until a data record (1), the clean end (0) or an error. */
static int read_next(TszReader *r, TszRecord *rec)
{
    for (;;) {
        size_t len;
        int got = next_frame(r, &len);
        if (got < 0) return -1;
        if (got == 0) {
            if (r->segments == 0) return rfail(r, "empty input: not a tsz stream");
            if (r->in_segment)
                return rfail(r, "ends after record %" PRIu64 " without end marker (truncated?)",
                             r->records);
            r->done = 1;
            return 0;
        }
        size_t off = 0;
        msgpack_unpack_return ur = msgpack_unpack_next(&r->up, (const char *)r->out, len, &off);
        if (ur != MSGPACK_UNPACK_SUCCESS || off != len || r->up.data.type != MSGPACK_OBJECT_MAP)
            return rfail(r, "record %" PRIu64 ": malformed (not one msgpack map)", r->records + 1);
        const msgpack_object *map = &r->up.data, *type = map_get(map, "type");
        if (obj_is_str(type, "header")) {
            if (r->in_segment)
                return rfail(r, "header after record %" PRIu64 " inside a segment (a stream cut "
                                "short, then concatenated?)", r->records);
            if (parse_header(r, map) < 0) return -1;
            r->seg_bytes += len;
        } else if (obj_is_str(type, "data")) {
            if (!r->in_segment)
                return rfail(r, "record %" PRIu64 " outside a segment (no header before it)",
                             r->records + 1);
            if (parse_data(r, map, rec) < 0) return -1;
            r->seg_bytes += len;
            r->seg_records++;
            r->records++;
            return 1;
        } else if (obj_is_str(type, "end")) {
            if (!r->in_segment) return rfail(r, "end marker without a segment");
            if (check_end(r, map) < 0) return -1;
        } else if (r->frames == 1) {
            return rfail(r, "not a tsz stream (first record is not a header)");
        } else {
            return rfail(r, "record %" PRIu64 ": unknown record type", r->records + 1);
        }
    }
}

static TszReader *reader_new(FILE *f, const char *name, int own)
{
    TszReader *r = xcalloc(1, sizeof *r);
    r->f = f;
    r->own = own;
    r->name = xstrdup(name);
    r->in_cap = ZSTD_DStreamInSize();
    r->in = xmalloc(r->in_cap);
    r->dctx = ZSTD_createDCtx();
    r->headers = json_array();
    msgpack_unpacked_init(&r->up);
    return r;
}

/* Read up to the first segment's header, so the caller has provenance and
 * an empty or foreign input fails at open. */
static void read_first_header(TszReader *r)
{
    size_t len, off = 0;
    int got = next_frame(r, &len);
    if (got < 0) return;
    if (got == 0) {
        rfail(r, "empty input: not a tsz stream");
        return;
    }
    msgpack_unpack_return ur = msgpack_unpack_next(&r->up, (const char *)r->out, len, &off);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len || r->up.data.type != MSGPACK_OBJECT_MAP ||
        !obj_is_str(map_get(&r->up.data, "type"), "header")) {
        rfail(r, "not a tsz stream (first record is not a header)");
        return;
    }
    if (parse_header(r, &r->up.data) == 0) r->seg_bytes += len;
}

TszReader *tsz_reader_fdopen(FILE *f, const char *name)
{
    TszReader *r = reader_new(f, name, 0);
    if (!r->dctx) rfail(r, "cannot create a zstd context");
    else read_first_header(r);
    return r;
}

TszReader *tsz_reader_open(const char *path)
{
    if (!path || !strcmp(path, "-")) return tsz_reader_fdopen(stdin, "stdin");
    FILE *f = fopen(path, "rb");
    TszReader *r = reader_new(f, path, 1);
    if (!f) rfail(r, "cannot open: %s", strerror(errno));
    else if (!r->dctx) rfail(r, "cannot create a zstd context");
    else read_first_header(r);
    return r;
}

int tsz_read(TszReader *r, TszRecord *rec)
{
    if (r->err[0]) return -1;
    if (r->done) return 0;
    return read_next(r, rec);
}

const char *tsz_reader_error(const TszReader *r) { return r->err[0] ? r->err : NULL; }
const char *tsz_reader_name(const TszReader *r) { return r->name; }
const json_t *tsz_reader_header(const TszReader *r)
{
    const json_t *h = json_array_get(r->headers, 0);
    return h;
}
const json_t *tsz_reader_headers(const TszReader *r) { return r->headers; }
uint64_t tsz_reader_records(const TszReader *r) { return r->records; }
uint64_t tsz_reader_segments(const TszReader *r) { return r->segments; }
uint64_t tsz_reader_bytes_in(const TszReader *r) { return r->bytes_in - (r->in_len - r->in_pos); }
uint64_t tsz_reader_bytes_out(const TszReader *r) { return r->bytes_out; }

void tsz_reader_close(TszReader *r)
{
    if (!r) return;
    if (r->own && r->f) fclose(r->f);
    ZSTD_freeDCtx(r->dctx);
    msgpack_unpacked_destroy(&r->up);
    json_decref(r->headers);
    free(r->in);
    free(r->out);
    free(r->name);
    free(r);
}

/* ------------------------------------------------------------------ */
/* rows from the end records                                          */

/* The end frame ending at byte `end` of f: its rows and zbytes. 0, or -1
 * when the bytes there are not such a frame (or it has no "rows"). */
static int end_frame_at(FILE *f, uint64_t end, uint64_t *flen, uint64_t *rows, uint64_t *zbytes)
{
    unsigned char in[512], out[512];
    size_t n = end < sizeof in ? (size_t)end : sizeof in;
    if (fseeko(f, (off_t)(end - n), SEEK_SET) != 0 || fread(in, 1, n, f) != n) return -1;
    if (n < 4) return -1;
    for (size_t pos = n - 3; pos-- > 0;) {
        // the rightmost zstd magic whose frame ends exactly at `end`
        if (in[pos] == 0x28 && in[pos + 1] == 0xB5 && in[pos + 2] == 0x2F && in[pos + 3] == 0xFD &&
            ZSTD_findFrameCompressedSize(in + pos, n - pos) == n - pos) {
            size_t len = ZSTD_decompress(out, sizeof out, in + pos, n - pos);
            if (ZSTD_isError(len)) return -1;
            msgpack_unpacked up;
            msgpack_unpacked_init(&up);
            size_t off = 0;
            int rc = -1;
            if (msgpack_unpack_next(&up, (const char *)out, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len &&
                up.data.type == MSGPACK_OBJECT_MAP && obj_is_str(map_get(&up.data, "type"), "end") &&
                obj_u64(map_get(&up.data, "rows"), rows) == 0 && obj_u64(map_get(&up.data, "zbytes"), zbytes) == 0)
                rc = 0;
            msgpack_unpacked_destroy(&up);
            *flen = n - pos;
            return rc;
        }
    }
    return -1;
}

int tsz_file_rows(const char *path, uint64_t *rows)
{
    struct stat st;
    if (!path || !strcmp(path, "-") || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    // from the end: each segment's end record gives its rows and the
    // compressed size of the frames before it, so the previous segment
    // ends where this one's header starts
    uint64_t end = (uint64_t)st.st_size, total = 0;
    int ok = end > 0;
    while (ok && end > 0) {
        uint64_t flen, r, z;
        ok = end_frame_at(f, end, &flen, &r, &z) == 0 && z <= end - flen;
        if (ok) end -= flen + z, total += r;
    }
    fclose(f);
    if (ok) *rows = total;
    return ok;
}
