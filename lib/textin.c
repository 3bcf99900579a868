/* textin.c: gzip (zlib) and zstd decompression behind a plain FILE*, with
 * fopencookie, so a reader's fread/getline loop does not change. */
#include "textin.h"
#include "util.h"
#include "stream.h"
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

enum { PLAIN, GZIP, ZSTD };

typedef struct {
    FILE *f;           /* the compressed input */
    int kind;
    unsigned char *in; /* compressed bytes read from f */
    size_t in_cap;
    z_stream z;
    ZSTD_DCtx *zd;
    ZSTD_inBuffer zin;
    int frame_open;    /* bytes of a frame seen that did not end yet */
    size_t peek_pos, peek_len; /* PLAIN: the sniffed bytes not yet given back */
    FILE *self;        /* the FILE that reads this */
} TextIn;

/* why the last read failed on this thread (inputs are read one at a time,
 * and fopencookie's FILE gives no way back to its cookie) */
static __thread char last_err[256];
/* the inputs open now: glibc keeps a cookie pointer where leak checkers
 * cannot see it, and a stage that dies mid-read exits with its input open */
static __thread TextIn *open_ins[8];

static void remember(TextIn *t, TextIn *was)
{
    for (size_t i = 0; i < sizeof open_ins / sizeof *open_ins; i++)
        if (open_ins[i] == was) { open_ins[i] = t; return; }
}

/* Refill the compressed buffer: the bytes read, 0 at an EOF between frames
 * (members), -1 on a read error or an EOF inside one. */
static ssize_t refill(TextIn *t, const char *format)
{
    size_t n = fread(t->in, 1, t->in_cap, t->f);
    if (n == 0 && ferror(t->f)) {
        snprintf(last_err, sizeof last_err, "read error: %s", strerror(errno));
        return -1;
    }
    if (n == 0 && t->frame_open) {
        snprintf(last_err, sizeof last_err, "%s data cut short", format);
        return -1;
    }
    return (ssize_t)n;
}

static ssize_t gz_read(TextIn *t, char *buf, size_t size)
{
    t->z.next_out = (unsigned char *)buf;
    t->z.avail_out = (uInt)size;
    while (t->z.avail_out == size) {
        if (t->z.avail_in == 0) {
            ssize_t n = refill(t, "gzip");
            if (n <= 0) return n;
            t->z.next_in = t->in;
            t->z.avail_in = (uInt)n;
        }
        t->frame_open = 1;
        int r = inflate(&t->z, Z_NO_FLUSH);
        if (r == Z_STREAM_END) {
            // concatenated members (gzip's own rule): start the next one
            t->frame_open = 0;
            inflateReset(&t->z);
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            snprintf(last_err, sizeof last_err, "corrupt gzip data: %s", t->z.msg ? t->z.msg : "inflate failed");
            return -1;
        }
    }
    return (ssize_t)(size - t->z.avail_out);
}

static ssize_t zst_read(TextIn *t, char *buf, size_t size)
{
    ZSTD_outBuffer out = {buf, size, 0};
    while (out.pos == 0) {
        if (t->zin.pos == t->zin.size) {
            ssize_t n = refill(t, "zstd");
            if (n <= 0) return n;
            t->zin = (ZSTD_inBuffer){t->in, (size_t)n, 0};
        }
        size_t r = ZSTD_decompressStream(t->zd, &out, &t->zin);
        if (ZSTD_isError(r)) {
            snprintf(last_err, sizeof last_err, "corrupt zstd data: %s", ZSTD_getErrorName(r));
            return -1;
        }
        t->frame_open = r != 0;
    }
    return (ssize_t)out.pos;
}

static ssize_t plain_read(TextIn *t, char *buf, size_t size)
{
    if (t->peek_pos < t->peek_len) {
        size_t n = t->peek_len - t->peek_pos < size ? t->peek_len - t->peek_pos : size;
        memcpy(buf, t->in + t->peek_pos, n);
        t->peek_pos += n;
        return (ssize_t)n;
    }
    size_t n = fread(buf, 1, size, t->f);
    if (n == 0 && ferror(t->f)) {
        snprintf(last_err, sizeof last_err, "read error: %s", strerror(errno));
        return -1;
    }
    return (ssize_t)n;
}

static ssize_t ti_read(void *cookie, char *buf, size_t size)
{
    TextIn *t = cookie;
    if (size == 0) return 0;
    ssize_t n = t->kind == GZIP ? gz_read(t, buf, size)
              : t->kind == ZSTD ? zst_read(t, buf, size) : plain_read(t, buf, size);
    if (n < 0) errno = EIO;
    return n;
}

static int ti_close(void *cookie)
{
    TextIn *t = cookie;
    if (t->kind == GZIP) inflateEnd(&t->z);
    else if (t->kind == ZSTD) ZSTD_freeDCtx(t->zd);
    int r = t->f == stdin ? 0 : fclose(t->f);
    remember(NULL, t);
    free(t->in);
    free(t);
    return r;
}

FILE *textin_open(FILE *f, const char *what, char *err, size_t errlen)
{
    // peek at the magic bytes, then put them back
    unsigned char m[4];
    size_t got = fread(m, 1, sizeof m, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error: %s", what, strerror(errno));
        return NULL;
    }
    int kind = got >= 2 && m[0] == 0x1f && m[1] == 0x8b ? GZIP
             : got == 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd ? ZSTD : PLAIN;
    TextIn *t = xcalloc(1, sizeof *t);
    t->f = f;
    t->kind = kind;
    t->in_cap = 1 << 17;
    t->in = xmalloc(t->in_cap);
    memcpy(t->in, m, got);
    if (kind == PLAIN) t->peek_len = got;
    else if (kind == GZIP) {
        if (inflateInit2(&t->z, 15 + 16) != Z_OK) {
            snprintf(err, errlen, "%s: cannot start gzip decompression", what);
            free(t->in), free(t);
            return NULL;
        }
        t->z.next_in = t->in;
        t->z.avail_in = (uInt)got;
    } else if (kind == ZSTD) {
        t->zd = ZSTD_createDCtx();
        t->zin = (ZSTD_inBuffer){t->in, got, 0};
    }
    cookie_io_functions_t io = {.read = ti_read, .close = ti_close};
    FILE *r = fopencookie(t, "r", io);
    if (!r) {
        snprintf(err, errlen, "%s: %s", what, strerror(errno));
        ti_close(t);
        return NULL;
    }
    t->self = r;
    remember(t, NULL);
    return r;
}

const char *textin_error(void)
{
    return last_err[0] ? last_err : "read error";
}

/* A mapped file cut short while it is read: the pages past its new end
 * raise SIGBUS. The handler says so in one line, removes the temporary
 * output files and exits 1 (only async-signal-safe calls). */
static char bus_msg[512];
static size_t bus_len;
static struct sigaction bus_old; /* put back when the file is unmapped */

static void on_sigbus(int sig)
{
    (void)sig;
    tsz_unlink_temps_now();
    if (write(2, bus_msg, bus_len) < 0) { /* nothing left to tell */ }
    _exit(1);
}

int textin_lines_map(TextLines *r, FILE *f, const char *name)
{
    TextIn *t = NULL;
    for (size_t i = 0; i < sizeof open_ins / sizeof *open_ins; i++)
        if (open_ins[i] && open_ins[i]->self == f) t = open_ins[i];
    struct stat st;
    if (!t || t->kind != PLAIN || t->f == stdin || fstat(fileno(t->f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0)
        return 0;
    /* no MAP_POPULATE: a corpus of many GB would be read in before its
     * first line; read ahead as it goes instead */
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fileno(t->f), 0);
    if (m == MAP_FAILED) return 0;
    madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);   /* a hint: failure is harmless */
    int n = snprintf(bus_msg, sizeof bus_msg, "%s: %s: cut short while being read (the file shrank)\n", sp_prog,
                     name);
    bus_len = n < 0 ? 0 : (size_t)n < sizeof bus_msg ? (size_t)n : sizeof bus_msg - 1;
    struct sigaction sa = {.sa_handler = on_sigbus};
    sigaction(SIGBUS, &sa, &bus_old);
    r->map = m;
    r->map_len = (size_t)st.st_size;
    return 1;
}

/* textin_line on a mapped file: the lines are where they are. */
static ssize_t mapped_line(TextLines *r, const char **line)
{
    if (r->at == r->map_len) return 0;
    const char *nl = memchr(r->map + r->at, '\n', r->map_len - r->at);
    size_t len = nl ? (size_t)(nl + 1 - (r->map + r->at)) : r->map_len - r->at;
    *line = r->map + r->at;
    r->at += len;
    return (ssize_t)len;
}

ssize_t textin_line(TextLines *r, FILE *f, const char **line)
{
    if (r->map) return mapped_line(r, line);
    JsonlBuf *b = &r->buf;
    for (;;) {
        char *nl = b->n > r->scanned ? memchr(b->v + r->scanned, '\n', b->n - r->scanned) : NULL;
        if (nl || (r->eof && r->at < b->n)) {
            size_t len = nl ? (size_t)(nl + 1 - (b->v + r->at)) : b->n - r->at;
            *line = b->v + r->at;
            r->at = r->scanned = r->at + len;
            return (ssize_t)len;
        }
        if (r->eof) return 0;
        /* the partial line to the front, then the next block after it */
        if (r->at) memmove(b->v, b->v + r->at, b->n - r->at);
        b->n -= r->at;
        r->scanned = b->n;
        r->at = 0;
        jsonl_buf_reserve(b, 1 << 20);
        size_t got = fread(b->v + b->n, 1, b->cap - b->n, f);
        b->n += got;
        if (got == 0) {
            if (ferror(f)) return -1;
            r->eof = 1;
        }
    }
}

void textin_lines_free(TextLines *r)
{
    if (r->map) {
        munmap((void *)r->map, r->map_len);
        sigaction(SIGBUS, &bus_old, NULL);
    }
    free(r->buf.v);
    memset(r, 0, sizeof *r);
}
