/* report_pages.c: the report as a directory, for dictionaries of any size
 * (a 128x dictionary of a 3072-wide MLP has 393,216 features; as one page
 * that would be ~1.4 GB).
 *
 *   DIR/index.html          the page of report_html.c, without the features
 *   DIR/features/index.js   SAEPIPE_INDEX({...}): per feature, in input order,
 *                           its id, density, max activation, score, status,
 *                           top token (typed columns, base 64) and explanation
 *                           (cut to INDEX_EXPL bytes), plus the vocabulary
 *   DIR/features/NNNN.js    SAEPIPE_CHUNK(k, [...]): features k*chunk to
 *                           (k+1)*chunk-1, the JSON objects of report_features.c
 *
 * The browser reads the index to list, sort and search, and loads a side
 * file when a feature of it is opened, through a <script> element: fetch()
 * of file:// URLs is blocked, <script src> is not, and a static server
 * needs nothing more. Side files are written as the features stream past,
 * so memory holds the index, not the features. Everything is written into
 * DIR.tmp.PID and renamed into place at the end: no half-written report. */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report.h"
#include "report_int.h"

enum { INDEX_EXPL = 160 };    /* explanation bytes kept in the index (the side file has all) */

struct ReportPages {
    char *dir, *tmp;            /* the directory asked for; the one being filled */
    size_t n, cap;              /* features in the index */
    int32_t *id, *tt;           /* (n) feature ids; top tokens, -1 for none */
    float *d, *mx, *s;          /* (n) density, max activation, score; NaN where absent */
    char *x;                    /* (n) status: o ok, f failed, d dead, - none */
    json_t *e;                  /* (n) explanations, cut, or null */
    char *buf;                  /* the side file being filled */
    size_t len, in_chunk, nchunks;
    FILE *f;
};

static char *path_fmt(const char *dir, const char *name, size_t k)
{
    size_t n = strlen(dir) + strlen(name) + 32;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/", dir);
    snprintf(p + strlen(p), n - strlen(p), name, k);
    return p;
}

static int unlink_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static int rm_tree(const char *p) { return nftw(p, unlink_cb, 16, FTW_DEPTH | FTW_PHYS); }

static int write_file(const char *path, const char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int bad = fwrite(buf, 1, len, f) != len;
    if (fclose(f) != 0 || bad) return -1;
    return 0;
}

int report_pages_begin(Report *r, const char *dir)
{
    if (!r->o.chunk) return SP_FAIL(r, "%s: features per side file must be at least 1", dir);
    ReportPages *pg = r->pages = xcalloc(1, sizeof *pg);
    pg->dir = xstrdup(dir);
    size_t n = strlen(dir) + 32;
    pg->tmp = xmalloc(n);
    snprintf(pg->tmp, n, "%s.tmp.%ld", dir, (long)getpid());
    char *fd = path_fmt(pg->tmp, "features", 0);
    int rc = mkdir(pg->tmp, 0755) < 0 ? -1 : mkdir(fd, 0755);
    free(fd);
    if (rc < 0) {
        SP_FAIL(r, "%s: %s", pg->tmp, strerror(errno));
        free(pg->tmp);
        pg->tmp = NULL;   /* not ours to remove */
        return -1;
    }
    pg->e = json_array();
    return 0;
}

void report_pages_free(Report *r)
{
    ReportPages *pg = r->pages;
    if (!pg) return;
    if (pg->f) fclose(pg->f);
    if (pg->tmp) rm_tree(pg->tmp);   /* unfinished: leave nothing behind */
    free(pg->buf);
    free(pg->dir), free(pg->tmp);
    free(pg->id), free(pg->tt), free(pg->d), free(pg->mx), free(pg->s), free(pg->x);
    json_decref(pg->e);
    free(pg);
    r->pages = NULL;
}

static float col(const json_t *f, const char *key)
{
    const json_t *v = json_object_get(f, key);
    return json_is_number(v) ? (float)json_number_value(v) : NAN;
}

/* s cut to at most max bytes at a character boundary, with an ellipsis. */
static json_t *cut_utf8(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) return json_string(s);
    while (max && ((unsigned char)s[max] & 0xC0) == 0x80) max--;
    char *c = xmalloc(max + 4);
    memcpy(c, s, max);
    memcpy(c + max, "\xE2\x80\xA6", 4);
    json_t *j = json_string(c);
    free(c);
    return j;
}

static int flush_chunk(Report *r)
{
    ReportPages *pg = r->pages;
    if (!pg->f) return 0;
    fputs("\n]);\n", pg->f);
    int bad = fclose(pg->f) != 0;
    pg->f = NULL;
    char *p = path_fmt(pg->tmp, "features/%04zu.js", pg->nchunks);
    if (bad || write_file(p, pg->buf, pg->len) < 0) bad = SP_FAIL(r, "%s: %s", p, strerror(errno));
    free(p);
    free(pg->buf);
    pg->buf = NULL;
    pg->nchunks++;
    pg->in_chunk = 0;
    return bad ? -1 : 0;
}

int report_pages_put(Report *r, const json_t *f, int32_t tt)
{
    ReportPages *pg = r->pages;
    if (pg->n == pg->cap) {
        pg->cap = pg->cap ? 2 * pg->cap : 1024;
        pg->id = xrealloc(pg->id, pg->cap * sizeof *pg->id);
        pg->tt = xrealloc(pg->tt, pg->cap * sizeof *pg->tt);
        pg->d = xrealloc(pg->d, pg->cap * sizeof *pg->d);
        pg->mx = xrealloc(pg->mx, pg->cap * sizeof *pg->mx);
        pg->s = xrealloc(pg->s, pg->cap * sizeof *pg->s);
        pg->x = xrealloc(pg->x, pg->cap + 1);
    }
    size_t i = pg->n++;
    pg->id[i] = (int32_t)json_integer_value(json_object_get(f, "i"));
    pg->tt[i] = tt;
    pg->d[i] = col(f, "d"), pg->mx[i] = col(f, "mx"), pg->s[i] = col(f, "s");
    const char *st = json_string_value(json_object_get(f, "x")), *e = json_string_value(json_object_get(f, "e"));
    pg->x[i] = !st ? '-' : !strcmp(st, "failed") ? 'f' : !strcmp(st, "dead") ? 'd' : 'o';
    json_array_append_new(pg->e, e ? cut_utf8(e, INDEX_EXPL) : json_null());

    if (!pg->f) {
        pg->f = open_memstream(&pg->buf, &pg->len);
        if (!pg->f) return SP_FAIL(r, "cannot open a memory stream");
        fprintf(pg->f, "SAEPIPE_CHUNK(%zu,[", pg->nchunks);
    }
    char *js = json_dumps(f, JSON_COMPACT | JSON_REAL_PRECISION(5));
    fputs(pg->in_chunk++ ? ",\n" : "\n", pg->f);
    report_json_script_escape(pg->f, js);
    free(js);
    return pg->in_chunk == r->o.chunk ? flush_chunk(r) : 0;
}

/* n little-endian 4-byte values (int32 or float) as standard base 64,
 * which the browser's atob() reads into a typed array. */
static void put_b64(FILE *f, const void *v, size_t n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = v;
    size_t len = 4 * n;
    unsigned char le[3];
    for (size_t i = 0; i < len; i += 3) {
        size_t m = len - i < 3 ? len - i : 3;
        for (size_t j = 0; j < 3; j++) {     /* byte i+j of the little-endian stream */
            size_t b = i + j, w = b / 4, k = b % 4;
            uint32_t u = 0;
            if (j < m) memcpy(&u, p + 4 * w, 4);
            le[j] = j < m ? (unsigned char)(u >> (8 * k)) : 0;
        }
        uint32_t t = (uint32_t)le[0] << 16 | (uint32_t)le[1] << 8 | le[2];
        fputc(A[t >> 18], f);
        fputc(A[(t >> 12) & 63], f);
        fputc(m > 1 ? A[(t >> 6) & 63] : '=', f);
        fputc(m > 2 ? A[t & 63] : '=', f);
    }
}

static int write_index(Report *r)
{
    ReportPages *pg = r->pages;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return SP_FAIL(r, "cannot open a memory stream");
    fprintf(f, "SAEPIPE_INDEX({\"n\":%zu,\"chunk\":%zu,\"nchunks\":%zu", pg->n, r->o.chunk, pg->nchunks);
    static const char *const names[] = {"id", "tt", "d", "mx", "s"};
    const void *cols[] = {pg->id, pg->tt, pg->d, pg->mx, pg->s};
    for (size_t c = 0; c < sizeof names / sizeof *names; c++) {
        fprintf(f, ",\n\"%s\":\"", names[c]);
        put_b64(f, cols[c], pg->n);
        fputc('"', f);
    }
    fprintf(f, ",\n\"x\":\"%.*s\",\n\"e\":", (int)pg->n, pg->n ? pg->x : "");
    char *js = json_dumps(pg->e, JSON_COMPACT);
    report_json_script_escape(f, js);
    free(js);
    fputs(",\n\"vocab\":", f);
    js = json_dumps(r->vocab, JSON_COMPACT | JSON_SORT_KEYS);
    report_json_script_escape(f, js);
    free(js);
    fputs("});\n", f);
    int bad = fclose(f) != 0;
    char *p = path_fmt(pg->tmp, "features/index.js", 0);
    if (bad || write_file(p, buf, len) < 0) bad = SP_FAIL(r, "%s: %s", p, strerror(errno));
    free(p);
    free(buf);
    return bad ? -1 : 0;
}

static int write_page(Report *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return SP_FAIL(r, "cannot open a memory stream");
    int rc = report_write_html(r, f);
    if (fclose(f) != 0 && rc == 0) rc = SP_FAIL(r, "write failed");
    char *p = path_fmt(r->pages->tmp, "index.html", 0);
    if (rc == 0 && write_file(p, buf, len) < 0) rc = SP_FAIL(r, "%s: %s", p, strerror(errno));
    free(p);
    free(buf);
    return rc;
}

/* 1 when dir holds what this file writes (an earlier report to replace). */
static int is_report_dir(const char *dir)
{
    char *a = path_fmt(dir, "index.html", 0), *b = path_fmt(dir, "features/index.js", 0);
    int yes = access(a, F_OK) == 0 && access(b, F_OK) == 0;
    free(a), free(b);
    return yes;
}

/* Put the finished temporary directory in place of dir. */
static int commit(Report *r)
{
    ReportPages *pg = r->pages;
    struct stat st;
    if (lstat(pg->dir, &st) < 0 || (S_ISDIR(st.st_mode) && rmdir(pg->dir) == 0)) {   /* absent, or empty */
        if (rename(pg->tmp, pg->dir) < 0) return SP_FAIL(r, "%s: %s", pg->dir, strerror(errno));
        free(pg->tmp), pg->tmp = NULL;
        return 0;
    }
    if (!S_ISDIR(st.st_mode) || !is_report_dir(pg->dir))
        return SP_FAIL(r, "%s: exists and is not a sae-report directory (index.html, features/index.js): "
                          "not replaced", pg->dir);
    size_t n = strlen(pg->dir) + 32;
    char *old = xmalloc(n);
    snprintf(old, n, "%s.old.%ld", pg->dir, (long)getpid());
    if (rename(pg->dir, old) < 0) {
        SP_FAIL(r, "%s: %s", pg->dir, strerror(errno));
        free(old);
        return -1;
    }
    if (rename(pg->tmp, pg->dir) < 0) {
        const char *why = strerror(errno);
        int back = rename(old, pg->dir) == 0;
        SP_FAIL(r, "%s: %s (the earlier report is %s%s)", pg->dir, why, back ? "back in place" : "in ",
                back ? "" : old);
        free(old);
        return -1;
    }
    free(pg->tmp), pg->tmp = NULL;
    rm_tree(old);
    free(old);
    return 0;
}

int report_write_pages(Report *r)
{
    if (report_emit_unseen_explanations(r) < 0 || flush_chunk(r) < 0 || write_index(r) < 0 || write_page(r) < 0)
        return -1;
    return commit(r);
}
