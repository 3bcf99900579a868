/* npy.c: the NumPy .npy format (numpy.lib.format): magic "\x93NUMPY",
 * major/minor version, a header length (u16 for 1.0, u32 for 2.0/3.0), and
 * a Python dict literal {'descr': '<f4', 'fortran_order': False,
 * 'shape': (3, 4), } padded with spaces to a multiple of 64 bytes. */
#include "npy.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int nfail(char *err, const char *path, const char *fmt, ...) SP_PRINTF(3, 4);
static int nfail(char *err, const char *path, const char *fmt, ...)
{
    if (err[0]) return -1;
    int n = snprintf(err, 512, "%s: ", path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, 512 - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* numpy descr <-> dtype; '|' is "not applicable" byte order for 1-byte types */
static const struct { const char *descr; TszDtype dt; } descrs[] = {
    {"<f4", TSZ_F32}, {"<f2", TSZ_F16}, {"<i4", TSZ_I32}, {"<i8", TSZ_I64},
    {"|u1", TSZ_U8},  {"<u2", TSZ_U16}, {"<u4", TSZ_U32}, {"<u1", TSZ_U8},
};

/* Find the value text after 'key': in the header dict. */
static const char *dict_value(const char *h, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p) {
        snprintf(pat, sizeof pat, "\"%s\"", key);
        p = strstr(h, pat);
    }
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static int parse_header(NpyReader *n, const char *h)
{
    const char *d = dict_value(h, "descr"), *fo = dict_value(h, "fortran_order");
    const char *sh = dict_value(h, "shape");
    if (!d || !fo || !sh) return nfail(n->err, n->path, "malformed .npy header");
    char descr[32] = "";
    char q = *d;
    if (q != '\'' && q != '"')
        return nfail(n->err, n->path, "structured or unusual dtype is not supported");
    const char *e = strchr(d + 1, q);
    if (!e || e - d - 1 >= (long)sizeof descr) return nfail(n->err, n->path, "malformed .npy descr");
    memcpy(descr, d + 1, (size_t)(e - d - 1));
    size_t i;
    for (i = 0; i < sizeof descrs / sizeof *descrs; i++)
        if (!strcmp(descr, descrs[i].descr)) break;
    if (i == sizeof descrs / sizeof *descrs) {
        if (descr[0] == '>')
            return nfail(n->err, n->path, "big-endian arrays are not supported (dtype '%s')", descr);
        return nfail(n->err, n->path, "dtype '%s' is not supported (f4 f2 i4 i8 u1 u2 u4 are)", descr);
    }
    n->dtype = descrs[i].dt;
    if (!strncmp(fo, "True", 4))
        return nfail(n->err, n->path, "Fortran-order arrays are not supported (save with C order)");
    if (strncmp(fo, "False", 5)) return nfail(n->err, n->path, "malformed fortran_order");
    if (*sh != '(') return nfail(n->err, n->path, "malformed shape");
    const char *p = sh + 1;
    n->ndim = 0;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        if (n->ndim == TSZ_MAX_DIMS) return nfail(n->err, n->path, "more than %d dimensions", TSZ_MAX_DIMS);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || *p == '-') return nfail(n->err, n->path, "malformed shape");
        n->shape[n->ndim++] = v;
        p = end;
        if (*p == 'L') p++;   /* Python 2 longs */
    }
    uint64_t rb = tsz_dtype_size(n->dtype);
    for (int k = 1; k < n->ndim; k++) {
        if (n->shape[k] && rb > UINT64_MAX / n->shape[k]) return nfail(n->err, n->path, "shape overflows");
        rb *= n->shape[k];
    }
    n->row_bytes = rb;
    return 0;
}

int npy_open(NpyReader *n, const char *path)
{
    memset(n, 0, sizeof *n);
    n->path = xstrdup(path);
    n->f = fopen(path, "rb");
    if (!n->f) return nfail(n->err, path, "cannot open: %s", strerror(errno));
    unsigned char pre[10];
    size_t got = fread(pre, 1, 10, n->f);
    if (got < 10 || memcmp(pre, "\x93NUMPY", 6))
        return nfail(n->err, path, "not a .npy file (no \\x93NUMPY magic)");
    uint32_t hlen;
    if (pre[6] == 1) {
        hlen = pre[8] | (uint32_t)pre[9] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        unsigned char b[2];
        if (fread(b, 1, 2, n->f) != 2) return nfail(n->err, path, "truncated .npy header");
        hlen = pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)b[0] << 16 | (uint32_t)b[1] << 24;
    } else {
        return nfail(n->err, path, ".npy format version %d.%d is not supported", pre[6], pre[7]);
    }
    if (hlen > (1u << 20)) return nfail(n->err, path, ".npy header too large");
    char *h = xmalloc(hlen + 1);
    if (fread(h, 1, hlen, n->f) != hlen) {
        free(h);
        return nfail(n->err, path, "truncated .npy header");
    }
    h[hlen] = 0;
    int rc = parse_header(n, h);
    free(h);
    if (rc < 0) return -1;
    /* the data must be all there: a short file is an error now, not later */
    long here = ftell(n->f);
    if (here >= 0 && fseek(n->f, 0, SEEK_END) == 0) {
        long end = ftell(n->f);
        uint64_t rows = n->ndim ? n->shape[0] : 1;
        if (n->row_bytes && rows > UINT64_MAX / n->row_bytes)
            return nfail(n->err, path, "shape overflows");
        uint64_t need = rows * n->row_bytes;
        if ((uint64_t)(end - here) < need)
            return nfail(n->err, path, "truncated: data is %ld bytes but the shape needs %" PRIu64,
                         end - here, need);
        if (fseek(n->f, here, SEEK_SET) != 0) return nfail(n->err, path, "seek failed");
    }
    return 0;
}

int64_t npy_read_rows(NpyReader *n, void *dst, uint64_t rows)
{
    uint64_t total = n->ndim ? n->shape[0] : 1;
    uint64_t left = total - n->rows_read;
    if (rows > left) rows = left;
    if (!rows) return 0;
    size_t want = (size_t)(rows * n->row_bytes);
    if (want && fread(dst, 1, want, n->f) != want)
        return nfail(n->err, n->path, "truncated: ends inside row %" PRIu64, n->rows_read);
    n->rows_read += rows;
    return (int64_t)rows;
}

void npy_close(NpyReader *n)
{
    if (n->f) fclose(n->f);
    free(n->path);
    n->f = NULL;
    n->path = NULL;
}

/* The header is 128 bytes for up to 3 dimensions and 256 beyond (room for
 * 20-digit sizes), fixed per writer so that the rewrite at close, with the
 * final row count, lands on the same bytes. */
static size_t header_size(int ndim) { return ndim > 3 ? 256 : 128; }

static int write_header(NpyWriter *w)
{
    const char *descr = NULL;
    for (size_t i = 0; i < sizeof descrs / sizeof *descrs; i++)
        if (descrs[i].dt == w->dtype) {
            descr = descrs[i].descr;
            break;
        }
    char shape[256] = "(";
    size_t o = 1;
    for (int i = 0; i < w->ndim; i++)
        o += (size_t)snprintf(shape + o, sizeof shape - o, "%" PRIu64 "%s", w->shape[i],
                              w->ndim == 1 ? "," : (i + 1 < w->ndim ? ", " : ""));
    snprintf(shape + o, sizeof shape - o, ")");
    size_t hs = header_size(w->ndim);
    char h[256];
    int len = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    if (len < 0 || (size_t)len + 11 > hs) return nfail(w->err, w->path, "shape too long for header");
    memset(h + len, ' ', hs - 10 - (size_t)len - 1);
    h[hs - 10 - 1] = '\n';
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)((hs - 10) & 0xff),
                             (unsigned char)((hs - 10) >> 8)};
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(pre, 1, 10, w->f) != 10 ||
        fwrite(h, 1, hs - 10, w->f) != hs - 10)
        return nfail(w->err, w->path, "write failed: %s", strerror(errno));
    return 0;
}

int npy_create(NpyWriter *w, const char *path, TszDtype dt, int ndim, const uint64_t *shape)
{
    memset(w, 0, sizeof *w);
    w->path = xstrdup(path);
    if (dt == TSZ_BF16) return nfail(w->err, path, "numpy has no bf16: convert to f32 first");
    if (ndim > TSZ_MAX_DIMS) return nfail(w->err, path, "too many dimensions");
    w->dtype = dt;
    w->ndim = ndim;
    for (int i = 0; i < ndim; i++) w->shape[i] = shape[i];
    if (ndim) w->shape[0] = 0;
    if (sp_path_is_special(path)) { /* /dev/null: in place, no temp file renamed onto it */
        w->f = fopen(path, "wb");
        if (!w->f) return nfail(w->err, path, "cannot open: %s", strerror(errno));
        return write_header(w);
    }
    size_t n = strlen(path) + 32;
    w->tmp = xmalloc(n);
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    w->f = fopen(w->tmp, "wb");
    if (!w->f) return nfail(w->err, path, "cannot create: %s", strerror(errno));
    return write_header(w);
}

int npy_append(NpyWriter *w, const void *src, uint64_t rows)
{
    if (w->err[0]) return -1;
    uint64_t rb = tsz_dtype_size(w->dtype);
    for (int i = 1; i < w->ndim; i++) rb *= w->shape[i];
    if (!w->ndim && rows != 1) return nfail(w->err, w->path, "a 0-d array takes one value");
    /* an empty tensor may come with a NULL pointer, which fwrite must not see */
    if (rows * rb != 0 && (fseek(w->f, 0, SEEK_END) != 0 || fwrite(src, 1, rows * rb, w->f) != rows * rb))
        return nfail(w->err, w->path, "write failed: %s", strerror(errno));
    if (w->ndim) w->shape[0] += rows;
    return 0;
}

static void writer_free(NpyWriter *w)
{
    free(w->path);
    free(w->tmp);
    w->path = w->tmp = NULL;
    w->f = NULL;
}

int npy_finish(NpyWriter *w)
{
    int rc = w->err[0] ? -1 : write_header(w);
    if (fclose(w->f) != 0 && rc == 0) rc = nfail(w->err, w->path, "close: %s", strerror(errno));
    if (w->tmp && rc == 0 && rename(w->tmp, w->path) != 0)
        rc = nfail(w->err, w->path, "rename: %s", strerror(errno));
    if (w->tmp && rc != 0) unlink(w->tmp);
    writer_free(w);
    return rc;
}

void npy_abort(NpyWriter *w)
{
    if (w->f) fclose(w->f);
    if (w->tmp) unlink(w->tmp);
    writer_free(w);
}
