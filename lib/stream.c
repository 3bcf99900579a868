/* stream.c: reader and writer of the tensor stream (.tsz); spec in
 * man/man5/tsz.5.
 *
 * Every record is one zstd frame (content checksum on) holding one msgpack
 * map. The map's "type" is "header", "data" or "end". A segment is
 * header, data*, end; the end record carries the number of data records
 * and the number of decompressed bytes of the segment's frames before it,
 * so a reader that sees the end record knows nothing was lost in between.
 * zstd frames concatenate, so `cat a.tsz b.tsz` is a stream of two
 * segments. */
#include "stream.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

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
static uint64_t shape_bytes(const uint64_t *shape, int ndim, size_t elsize)
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
static TszTensor *slot_for(TszRecord *r, const char *name, TszDtype dt, int ndim,
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
    uint64_t nb = shape_bytes(shape, ndim, tsz_dtype_size(dt));
    if (nb == UINT64_MAX || nb > SIZE_MAX / 2) return NULL;
    return slot_for(r, name, dt, ndim, shape, (size_t)nb);
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
/* JSON <-> msgpack for metadata                                       */

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_cstr(msgpack_packer *pk, const char *s) { pack_str(pk, s, strlen(s)); }

static void pack_json(msgpack_packer *pk, const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        msgpack_pack_map(pk, json_object_size(j));
        json_object_foreach((json_t *)j, k, v) {
            pack_cstr(pk, k);
            pack_json(pk, v);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        msgpack_pack_array(pk, json_array_size(j));
        json_array_foreach(j, i, v) pack_json(pk, v);
        break;
    }
    case JSON_STRING: pack_str(pk, json_string_value(j), json_string_length(j)); break;
    case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(j)); break;
    case JSON_REAL: msgpack_pack_double(pk, json_real_value(j)); break;
    case JSON_TRUE: msgpack_pack_true(pk); break;
    case JSON_FALSE: msgpack_pack_false(pk); break;
    default: msgpack_pack_nil(pk); break;
    }
}

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
/* writer                                                              */

struct TszWriter {
    struct TszWriter *next_open;  /* list of writers with a temp file */
    FILE *f;
    char *path, *tmp;           /* tmp is NULL when writing stdout */
    ZSTD_CCtx *cctx, *probe;
    TszWriteOpts o;
    json_t *header;
    int header_done;
    msgpack_sbuffer sb;
    uint8_t *shuf;              /* shuffle scratch */
    size_t shuf_cap;
    void *zbuf;
    size_t zcap;
    uint64_t seg_records, seg_bytes;
    uint64_t bytes_in, bytes_out;
    uint64_t seg_z0;            /* bytes_out when the segment's header was written */
    uint64_t rows;              /* end record's "rows" (has_rows) */
    int has_rows;
    char err[512];
};

/* Writers with a temp file not yet renamed into place. A stage that dies
 * (sp_die exits) must not leave a half-written temp file behind, so an
 * atexit handler removes these; the list is the one piece of process-wide
 * state here, and only ever touched by the thread that opens writers. */
static TszWriter *open_writers;

static void unlink_open_temps(void)
{
    for (TszWriter *w = open_writers; w; w = w->next_open)
        if (w->tmp) unlink(w->tmp);
}

static void track(TszWriter *w)
{
    static int registered;
    if (!registered) registered = atexit(unlink_open_temps) == 0;
    w->next_open = open_writers;
    open_writers = w;
}

static void untrack(TszWriter *w)
{
    for (TszWriter **p = &open_writers; *p; p = &(*p)->next_open)
        if (*p == w) {
            *p = w->next_open;
            return;
        }
}

void tsz_write_opts_default(TszWriteOpts *o)
{
    o->level = 3;
    o->shuffle = -1;
    o->threads = 0;
    const char *e = getenv("TSZ_LEVEL");
    long v;
    if (e && sp_parse_long(e, -7, 22, &v) == 0) o->level = (int)v;
}

static int wfail(TszWriter *w, const char *fmt, ...) SP_PRINTF(2, 3);
static int wfail(TszWriter *w, const char *fmt, ...)
{
    if (w->err[0]) return -1;   /* sticky: keep the first error */
    int n = snprintf(w->err, sizeof w->err, "%s: ", sp_out_name(w->path));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err + n, sizeof w->err - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

TszWriter *tsz_writer_open(const char *path, const char *stage, int argc, char **argv,
                           const TszWriteOpts *opts)
{
    TszWriter *w = xcalloc(1, sizeof *w);
    w->path = xstrdup(path ? path : "-");
    if (opts) w->o = *opts;
    else tsz_write_opts_default(&w->o);
    w->header = json_object();
    json_object_set_new(w->header, "stage", json_string(stage ? stage : sp_prog));
    json_object_set_new(w->header, "version", json_string(SAEPIPE_VERSION));
    json_t *av = json_array();
    for (int i = 0; i < argc; i++) {
        json_t *s = json_string(argv[i]);
        json_array_append_new(av, s ? s : json_string("?"));
    }
    json_object_set_new(w->header, "argv", av);
    msgpack_sbuffer_init(&w->sb);
    w->cctx = ZSTD_createCCtx();
    w->probe = ZSTD_createCCtx();
    if (!w->cctx || !w->probe) {
        wfail(w, "cannot create a zstd context");
        return w;
    }
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, w->o.level);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    if (w->o.threads > 0) ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, w->o.threads);
    ZSTD_CCtx_setParameter(w->probe, ZSTD_c_compressionLevel, 1);
    if (!strcmp(w->path, "-")) {
        w->f = stdout;
    } else if (sp_path_is_special(w->path)) {
        /* a device or a FIFO (-o /dev/null, -o /dev/stdout): written in
         * place; a temp file renamed onto it would replace the device */
        w->f = fopen(w->path, "wb");
        if (!w->f) wfail(w, "cannot open: %s", strerror(errno));
    } else {
        size_t n = strlen(w->path) + 32;
        w->tmp = xmalloc(n);
        snprintf(w->tmp, n, "%s.tmp.%ld", w->path, (long)getpid());
        w->f = fopen(w->tmp, "wb");
        if (!w->f) wfail(w, "cannot create: %s", strerror(errno));
        else track(w);
    }
    return w;
}

json_t *tsz_writer_header(TszWriter *w) { return w->header; }

void tsz_writer_add_input(TszWriter *w, const TszReader *r)
{
    json_t *inputs = json_object_get(w->header, "inputs");
    if (!inputs) {
        inputs = json_array();
        json_object_set_new(w->header, "inputs", inputs);
    }
    // one copy of each distinct header: a stream of many identical
    // segments (the same file catted again) does not grow its provenance
    size_t i, j;
    json_t *h, *seen;
    json_array_foreach(tsz_reader_headers(r), i, h) {
        int dup = 0;
        json_array_foreach(inputs, j, seen) if (json_equal(seen, h)) { dup = 1; break; }
        if (!dup) json_array_append(inputs, h);
    }
}

/* Compress the packed map in w->sb as one frame and write it. */
static int write_frame(TszWriter *w)
{
    size_t need = ZSTD_compressBound(w->sb.size);
    if (w->zcap < need) {
        free(w->zbuf);
        w->zcap = need;
        w->zbuf = xmalloc(need);
    }
    size_t z = ZSTD_compress2(w->cctx, w->zbuf, w->zcap, w->sb.data, w->sb.size);
    if (ZSTD_isError(z)) return wfail(w, "zstd: %s", ZSTD_getErrorName(z));
    if (fwrite(w->zbuf, 1, z, w->f) != z) return wfail(w, "write failed: %s", strerror(errno));
    w->bytes_in += w->sb.size;
    w->bytes_out += z;
    w->seg_bytes += w->sb.size;
    return 0;
}

static int write_header(TszWriter *w)
{
    if (w->header_done) return 0;
    msgpack_packer pk;
    msgpack_sbuffer_clear(&w->sb);
    msgpack_packer_init(&pk, &w->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_cstr(&pk, "type");
    pack_cstr(&pk, "header");
    pack_cstr(&pk, "format");
    pack_cstr(&pk, "tsz");
    pack_cstr(&pk, "version");
    msgpack_pack_int(&pk, TSZ_FORMAT_VERSION);
    pack_cstr(&pk, "meta");
    pack_json(&pk, w->header);
    w->header_done = 1;
    w->seg_records = w->seg_bytes = 0;
    w->seg_z0 = w->bytes_out;
    return write_frame(w);
}

/* Shuffle a float tensor when it makes a level-1 compression of a sample
 * smaller: typical for activations, whose exponent bytes repeat. */
static int want_shuffle(TszWriter *w, const TszTensor *t)
{
    size_t es = tsz_dtype_size(t->dtype);
    if (w->o.shuffle >= 0) return w->o.shuffle && es > 1 && tsz_dtype_is_float(t->dtype);
    if (!tsz_dtype_is_float(t->dtype) || t->nbytes < 4096) return 0;
    size_t n = t->nbytes < 65536 ? t->nbytes : 65536;
    n -= n % es;
    uint8_t *s = w->shuf;  /* caller ensured shuf_cap >= nbytes */
    tsz_shuffle(s, t->data, n / es, es);
    size_t bound = ZSTD_compressBound(n);
    if (w->zcap < bound) {
        free(w->zbuf);
        w->zcap = bound;
        w->zbuf = xmalloc(bound);
    }
    size_t a = ZSTD_compressCCtx(w->probe, w->zbuf, w->zcap, t->data, n, 1);
    size_t b = ZSTD_compressCCtx(w->probe, w->zbuf, w->zcap, s, n, 1);
    if (ZSTD_isError(a) || ZSTD_isError(b)) return 0;
    return b < a;
}

int tsz_write(TszWriter *w, const TszRecord *rec)
{
    if (w->err[0]) return -1;
    if (write_header(w) < 0) return -1;
    msgpack_packer pk;
    msgpack_sbuffer_clear(&w->sb);
    msgpack_packer_init(&pk, &w->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_cstr(&pk, "type");
    pack_cstr(&pk, "data");
    pack_cstr(&pk, "meta");
    pack_json(&pk, rec->meta);
    pack_cstr(&pk, "tensors");
    msgpack_pack_array(&pk, rec->n);
    for (size_t i = 0; i < rec->n; i++) {
        const TszTensor *t = &rec->t[i];
        if (t->nbytes > w->shuf_cap) {
            free(w->shuf);
            w->shuf_cap = t->nbytes;
            w->shuf = xmalloc(w->shuf_cap);
        }
        int shuf = want_shuffle(w, t);
        msgpack_pack_map(&pk, 5);
        pack_cstr(&pk, "name");
        pack_cstr(&pk, t->name);
        pack_cstr(&pk, "dtype");
        pack_cstr(&pk, tsz_dtype_name(t->dtype));
        pack_cstr(&pk, "shape");
        msgpack_pack_array(&pk, (size_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) msgpack_pack_uint64(&pk, t->shape[d]);
        pack_cstr(&pk, "shuffle");
        if (shuf) msgpack_pack_true(&pk);
        else msgpack_pack_false(&pk);
        pack_cstr(&pk, "data");
        msgpack_pack_bin(&pk, t->nbytes);
        if (shuf) {
            size_t es = tsz_dtype_size(t->dtype);
            tsz_shuffle(w->shuf, t->data, t->nbytes / es, es);
            msgpack_pack_bin_body(&pk, w->shuf, t->nbytes);
        } else {
            msgpack_pack_bin_body(&pk, t->data, t->nbytes);
        }
    }
    if (w->sb.size > TSZ_MAX_RECORD_BYTES)
        return wfail(w, "record %" PRIu64 " is %zu bytes, over the %llu-byte limit",
                     w->seg_records + 1, w->sb.size, (unsigned long long)TSZ_MAX_RECORD_BYTES);
    if (write_frame(w) < 0) return -1;
    w->seg_records++;
    return 0;
}

static void writer_free(TszWriter *w)
{
    untrack(w);
    ZSTD_freeCCtx(w->cctx);
    ZSTD_freeCCtx(w->probe);
    msgpack_sbuffer_destroy(&w->sb);
    json_decref(w->header);
    free(w->shuf);
    free(w->zbuf);
    free(w->path);
    free(w->tmp);
    free(w);
}

int tsz_writer_close(TszWriter *w, char *err, size_t errlen)
{
    int rc = w->err[0] ? -1 : 0;
    if (rc == 0) rc = write_header(w);
    if (rc == 0) {
        msgpack_packer pk;
        uint64_t bytes = w->seg_bytes;
        msgpack_sbuffer_clear(&w->sb);
        msgpack_packer_init(&pk, &w->sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, w->has_rows ? 5 : 4);
        pack_cstr(&pk, "type");
        pack_cstr(&pk, "end");
        pack_cstr(&pk, "records");
        msgpack_pack_uint64(&pk, w->seg_records);
        pack_cstr(&pk, "bytes");
        msgpack_pack_uint64(&pk, bytes);
        pack_cstr(&pk, "zbytes");
        msgpack_pack_uint64(&pk, w->bytes_out - w->seg_z0);
        if (w->has_rows) {
            pack_cstr(&pk, "rows");
            msgpack_pack_uint64(&pk, w->rows);
        }
        rc = write_frame(w);
    }
    if (w->f && fflush(w->f) != 0 && rc == 0) rc = wfail(w, "write failed: %s", strerror(errno));
    if (w->f && ferror(w->f) && rc == 0) rc = wfail(w, "write failed");
    if (w->tmp) {
        if (w->f && fsync(fileno(w->f)) != 0 && rc == 0) rc = wfail(w, "fsync: %s", strerror(errno));
        if (w->f && fclose(w->f) != 0 && rc == 0) rc = wfail(w, "close: %s", strerror(errno));
        if (rc == 0 && rename(w->tmp, w->path) != 0) rc = wfail(w, "rename: %s", strerror(errno));
        if (rc != 0) unlink(w->tmp);
    } else if (w->f && fclose(w->f) != 0 && rc == 0) {
        rc = wfail(w, "write failed: %s", strerror(errno));
    }
    if (rc != 0 && err) snprintf(err, errlen, "%s", w->err);
    writer_free(w);
    return rc;
}

void tsz_writer_abort(TszWriter *w)
{
    if (!w) return;
    if (w->tmp) {
        if (w->f) fclose(w->f);
        unlink(w->tmp);
    } else if (w->f) {
        fflush(w->f);   /* what was written stays without its end marker */
    }
    writer_free(w);
}

void tsz_writer_set_rows(TszWriter *w, uint64_t rows) { w->rows = rows, w->has_rows = 1; }

const char *tsz_writer_error(const TszWriter *w) { return w->err[0] ? w->err : NULL; }
uint64_t tsz_writer_records(const TszWriter *w) { return w->seg_records; }
uint64_t tsz_writer_bytes_in(const TszWriter *w) { return w->bytes_in; }
uint64_t tsz_writer_bytes_out(const TszWriter *w) { return w->bytes_out; }

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
    uint64_t need = shape_bytes(dims, nd, es);
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
    TszTensor *t = slot_for(rec, nm, dtype, nd, dims, (size_t)need);
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
