/* stream_write.c: the writer of the tensor stream (.tsz); spec in
 * man/man5/tsz.5, records in stream.c, the reader in stream_read.c.
 *
 * A segment is written as header, data*, end, each record one zstd frame
 * (content checksum on) holding one msgpack map. A named file goes to a
 * temporary name and is renamed into place only after its end record, so
 * a file at the path is always whole. */
#include "stream.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

/* ------------------------------------------------------------------ */
/* JSON -> msgpack for metadata                                        */

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
    msgpack_sbuffer sb;         /* the record being packed */
    uint8_t shuf[65536];        /* want_shuffle's sample, and its compression */
    uint8_t probe_out[ZSTD_COMPRESSBOUND(65536)];
    void *zbuf;
    size_t zcap;
    uint64_t seg_records, seg_bytes;
    uint64_t bytes_in, bytes_out;
    uint64_t seg_z0;            /* bytes_out when the segment's header was written */
    uint64_t rows;              /* end record's "rows" (has_rows) */
    int has_rows;
    char err[512];
    /* o.async: a thread of its own compresses each packed record (tsb,
     * swapped with sb when handed over) and writes the frame (f, cctx,
     * zbuf and zerr are its own then) while the caller packs the next;
     * full says tsb holds one. bytes_out is its too: read after drain. */
    pthread_t th;
    int th_on, full, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    msgpack_sbuffer tsb;
    char zerr[512];
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

void tsz_unlink_temps_now(void) { unlink_open_temps(); }

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
    o->async = 0;
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

static void *writer_thread(void *arg);

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
    msgpack_sbuffer_init(&w->tsb);
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
    if (w->o.async && w->f) {
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        w->th_on = pthread_create(&w->th, NULL, writer_thread, w) == 0;
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

static int write_all(int fd, const void *p, size_t n)
{
    for (const char *c = p; n;) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) errno = EIO;
        if (k <= 0) return -1;
        c += k, n -= (size_t)k;
    }
    return 0;
}

/* Compress src (n bytes) into w->zbuf (grown as needed) with w->cctx: the
 * frame's size, or a zstd error code. */
static size_t compress_frame(TszWriter *w, const void *src, size_t n)
{
    size_t need = ZSTD_compressBound(n);
    if (w->zcap < need) {
        free(w->zbuf);
        w->zcap = need;
        w->zbuf = xmalloc(need);
    }
    return ZSTD_compress2(w->cctx, w->zbuf, w->zcap, src, n);
}

static void *writer_thread(void *arg)
{
    TszWriter *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->full && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
        if (!w->full) break;
        pthread_mutex_unlock(&w->mu);
        /* after a failure the rest is dropped: the caller sees the error.
         * write(2), not stdio: a process that exits meanwhile flushes the
         * FILE (empty: every frame goes through here) without a race */
        size_t z = 0;
        int e = 0;
        char zerr[128] = "";
        if (!w->zerr[0]) {
            z = compress_frame(w, w->tsb.data, w->tsb.size);
            if (ZSTD_isError(z)) snprintf(zerr, sizeof zerr, "zstd: %s", ZSTD_getErrorName(z));
            else if (write_all(fileno(w->f), w->zbuf, z) < 0) e = errno;
        }
        pthread_mutex_lock(&w->mu);
        if (zerr[0]) snprintf(w->zerr, sizeof w->zerr, "%s", zerr);
        else if (e) snprintf(w->zerr, sizeof w->zerr, "write failed: %s", strerror(e));
        else if (!w->zerr[0]) w->bytes_out += z;
        w->full = 0;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Async: wait until the thread has written every frame handed to it, and
 * take its error. */
static int drain(TszWriter *w)
{
    if (!w->th_on) return w->err[0] ? -1 : 0;
    pthread_mutex_lock(&w->mu);
    while (w->full) pthread_cond_wait(&w->cv, &w->mu);
    if (w->zerr[0]) wfail(w, "%s", w->zerr);
    pthread_mutex_unlock(&w->mu);
    return w->err[0] ? -1 : 0;
}

static void stop_thread(TszWriter *w)
{
    if (!w->th_on) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    w->th_on = 0;
}

/* Compress the packed map in w->sb as one frame and write it, or with
 * o.async hand it to the writer's thread to do both (sb and tsb swap). */
static int write_frame(TszWriter *w)
{
    if (w->th_on && drain(w) < 0) return -1;
    w->bytes_in += w->sb.size;
    w->seg_bytes += w->sb.size;
    if (w->th_on) {
        pthread_mutex_lock(&w->mu);
        msgpack_sbuffer t = w->tsb;
        w->tsb = w->sb, w->sb = t;
        w->full = 1;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        return 0;
    }
    size_t z = compress_frame(w, w->sb.data, w->sb.size);
    if (ZSTD_isError(z)) return wfail(w, "zstd: %s", ZSTD_getErrorName(z));
    w->bytes_out += z;
    return fwrite(w->zbuf, 1, z, w->f) == z ? 0 : wfail(w, "write failed: %s", strerror(errno));
}

/* Start a record in w->sb: a map of nkeys whose first key is "type". */
static void begin_record(TszWriter *w, msgpack_packer *pk, size_t nkeys, const char *type)
{
    msgpack_sbuffer_clear(&w->sb);
    msgpack_packer_init(pk, &w->sb, msgpack_sbuffer_write);
    msgpack_pack_map(pk, nkeys);
    pack_cstr(pk, "type");
    pack_cstr(pk, type);
}

static int write_header(TszWriter *w)
{
    if (w->header_done) return 0;
    msgpack_packer pk;
    begin_record(w, &pk, 4, "header");
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
    uint8_t *s = w->shuf;
    tsz_shuffle(s, t->data, n / es, es);
    size_t a = ZSTD_compressCCtx(w->probe, w->probe_out, sizeof w->probe_out, t->data, n, 1);
    size_t b = ZSTD_compressCCtx(w->probe, w->probe_out, sizeof w->probe_out, s, n, 1);
    if (ZSTD_isError(a) || ZSTD_isError(b)) return 0;
    return b < a;
}

int tsz_write(TszWriter *w, const TszRecord *rec)
{
    if (w->err[0]) return -1;
    if (write_header(w) < 0) return -1;
    msgpack_packer pk;
    begin_record(w, &pk, 3, "data");
    pack_cstr(&pk, "meta");
    pack_json(&pk, rec->meta);
    pack_cstr(&pk, "tensors");
    msgpack_pack_array(&pk, rec->n);
    for (size_t i = 0; i < rec->n; i++) {
        const TszTensor *t = &rec->t[i];
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
        if (shuf) { /* straight into the record: one copy of the data, not two */
            size_t es = tsz_dtype_size(t->dtype);
            if (w->sb.alloc - w->sb.size < t->nbytes) {
                w->sb.alloc = w->sb.size + t->nbytes;
                w->sb.data = xrealloc(w->sb.data, w->sb.alloc);
            }
            tsz_shuffle((uint8_t *)w->sb.data + w->sb.size, t->data, t->nbytes / es, es);
            w->sb.size += t->nbytes;
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
    if (w->o.async && w->f) {
        stop_thread(w);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
    }
    msgpack_sbuffer_destroy(&w->tsb);
    untrack(w);
    ZSTD_freeCCtx(w->cctx);
    ZSTD_freeCCtx(w->probe);
    msgpack_sbuffer_destroy(&w->sb);
    json_decref(w->header);
    free(w->zbuf);
    free(w->path);
    free(w->tmp);
    free(w);
}

int tsz_writer_close(TszWriter *w, char *err, size_t errlen)
{
    int rc = w->err[0] ? -1 : 0;
    if (rc == 0) rc = write_header(w);
    if (rc == 0) rc = drain(w); /* bytes_out whole */
    if (rc == 0) {
        msgpack_packer pk;
        uint64_t bytes = w->seg_bytes;
        begin_record(w, &pk, w->has_rows ? 5 : 4, "end");
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
    if (drain(w) < 0 && rc == 0) rc = -1;
    stop_thread(w);
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
    stop_thread(w); /* what it was handed is written: a stream stops at a record's end */
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
int tsz_writer_async(const TszWriter *w) { return w->th_on; }
