/* report.c: gather the streams of a run for the HTML report (report.h).
 * This file reads; report_features.c turns feature records into the
 * browser's JSON, report_html.c writes the page and report_pages.c the
 * directory of side files for large dictionaries. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kinds.h"
#include "report.h"
#include "report_int.h"
#include "stream.h"

void report_opts_default(ReportOpts *o)
{
    o->title = "saepipe report";
    o->max_top = 10;
    o->max_random = 5;
    o->max_band = 2;
    o->ctx_before = 24;
    o->ctx_after = 8;
    o->max_features = 0;
    o->chunk = 1000;
}

const char *report_error(const Report *r) { return r->err[0] ? r->err : NULL; }

int report_init(Report *r, const ReportOpts *o)
{
    memset(r, 0, sizeof *r);
    if (o) r->o = *o;
    else report_opts_default(&r->o);
    r->prov = json_array();
    r->saes = json_array();
    r->recons = json_array();
    r->expl = json_object();
    r->vocab = json_object();
    r->seen = json_object();
    r->feat_f = open_memstream(&r->feat_buf, &r->feat_len);
    if (!r->feat_f) return SP_FAIL(r, "cannot open a memory stream");
    return 0;
}

void report_log_free(ReportLog *lg)
{
    for (size_t j = 0; j < lg->ncol; j++) free(lg->col[j]);
    free(lg->col);
    free(lg->v);
    free(lg->label);
    memset(lg, 0, sizeof *lg);
}

void report_free(Report *r)
{
    json_decref(r->prov);
    json_decref(r->saes);
    json_decref(r->recons);
    json_decref(r->expl);
    json_decref(r->dict_stats);
    json_decref(r->vocab);
    json_decref(r->seen);
    for (size_t i = 0; i < r->nlog; i++) report_log_free(&r->logs[i]);
    free(r->logs);
    free(r->density);
    free(r->hist_counts);
    free(r->hist_edges);
    if (r->feat_f) fclose(r->feat_f);
    free(r->feat_buf);
    report_pages_free(r);
    memset(r, 0, sizeof *r);
}

/* ---- small helpers ---- */

char *report_utf8_clean(const char *s, size_t n)
{
    char *out = xmalloc(3 * n + 1), *o = out;   /* each bad byte -> 3 bytes */
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        size_t len = 0;
        if (p[0] < 0x80) len = p[0] ? 1 : 0;
        else if (p[0] >= 0xC2 && p[0] <= 0xDF) len = 2;
        else if (p[0] >= 0xE0 && p[0] <= 0xEF) len = 3;
        else if (p[0] >= 0xF0 && p[0] <= 0xF4) len = 4;
        int good = len > 0 && (size_t)(end - p) >= len;
        for (size_t i = 1; good && i < len; i++) good = (p[i] & 0xC0) == 0x80;
        /* overlongs, surrogates and > U+10FFFF */
        if (good && len == 3 && p[0] == 0xE0 && p[1] < 0xA0) good = 0;
        if (good && len == 3 && p[0] == 0xED && p[1] >= 0xA0) good = 0;
        if (good && len == 4 && p[0] == 0xF0 && p[1] < 0x90) good = 0;
        if (good && len == 4 && p[0] == 0xF4 && p[1] >= 0x90) good = 0;
        if (!good) {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            p++;
            continue;
        }
        memcpy(o, p, len);
        o += len;
        p += len;
    }
    *o = 0;
    return out;
}

double report_seed_score(const char *model, const char *hook, double d, double f)
{
    if (!model || !strstr(model, "distilgpt2")) return -1;
    if (hook && hook[0] && strcmp(hook, "blocks.5.mlp.hook_post")) return -1;
    if (d != 3072) return -1;
    if (f == 32 * d) return 0.77;
    if (f == 128 * d) return 0.48;
    return -1;
}

/* A JSON string of s, made valid UTF-8 first (file names may be anything). */
static json_t *jstr(const char *s)
{
    char *c = report_utf8_clean(s, strlen(s));
    json_t *j = json_string(c);
    free(c);
    return j;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Open a stream input; NULL with r->err on failure. */
static TszReader *open_in(Report *r, const char *path)
{
    TszReader *rd = tsz_reader_open(path);
    if (tsz_reader_error(rd)) {
        SP_FAIL(r, "%s", tsz_reader_error(rd));
        tsz_reader_close(rd);
        return NULL;
    }
    return rd;
}

/* Finish an input: keep its headers for the provenance section. */
static int close_in(Report *r, TszReader *rd, const char *role, const char *path, int ret)
{
    if (ret < 0 && !r->err[0]) SP_FAIL(r, "%s", tsz_reader_error(rd));
    if (ret == 0) {
        json_t *p = json_object();
        json_object_set_new(p, "role", json_string(role));
        json_object_set_new(p, "file", jstr(sp_in_name(path)));
        json_object_set_new(p, "headers", json_deep_copy(tsz_reader_headers(rd)));
        json_array_append_new(r->prov, p);
    }
    tsz_reader_close(rd);
    return ret < 0 ? -1 : 0;
}

static const char *rec_kind(const TszRecord *rec)
{
    const char *k = json_string_value(json_object_get(rec->meta, "kind"));
    return k ? k : "";
}

static int check_kind(Report *r, TszReader *rd, const TszRecord *rec, unsigned want)
{
    char err[400];
    if (sp_kind_check(rec, want, err, sizeof err) == 0) return 0;
    return SP_FAIL(r, "%s: record %llu: %s", tsz_reader_name(rd), (unsigned long long)tsz_reader_records(rd), err);
}

/* ---- SAE files and recon-score output ---- */

int report_add_sae(Report *r, const char *path)
{
    TszReader *rd = open_in(r, path);
    if (!rd) return -1;
    /* A header that carries the SAE's metadata spares reading the weights
     * (gigabytes for a 128x dictionary of a 3072-wide MLP). */
    const json_t *h = tsz_reader_header(rd);
    if (json_is_integer(json_object_get(h, "f")) && json_is_integer(json_object_get(h, "d"))) {
        json_t *m = json_deep_copy(h);
        static const char *drop[] = {"stage", "version", "argv", "inputs"};
        for (size_t i = 0; i < sizeof drop / sizeof *drop; i++) json_object_del(m, drop[i]);
        json_object_set_new(m, "file", jstr(path));
        json_array_append_new(r->saes, m);
        return close_in(r, rd, "sae", path, 0);
    }
    TszRecord rec;
    tsz_record_init(&rec);
    int ret, n = 0;
    while ((ret = tsz_read(rd, &rec)) == 1) {
        if (n && !strcmp(rec_kind(&rec), SP_KIND_SAE SP_KIND_PART_SUFFIX)) continue; /* the weights of a large SAE */
        if (check_kind(r, rd, &rec, SP_K_SAE) < 0) { ret = -1; break; }
        if (n++) continue;              /* one SAE per file */
        json_t *m = json_deep_copy(rec.meta);
        json_object_del(m, "parts");
        json_object_set_new(m, "file", jstr(path));
        json_array_append_new(r->saes, m);
    }
    if (ret == 0 && n == 0) ret = -1, SP_FAIL(r, "%s: no SAE record", tsz_reader_name(rd));
    tsz_record_free(&rec);
    return close_in(r, rd, "sae", path, ret);
}

/* The value of option lng (or shrt) in the command line that wrote a
 * stream, from its header: "--sae X", "-s X" or "--sae=X". */
static const char *argv_value(const json_t *hdr, const char *lng, const char *shrt)
{
    const json_t *av = json_object_get(hdr, "argv");
    size_t n = strlen(lng);
    for (size_t i = 0; i < json_array_size(av); i++) {
        const char *a = json_string_value(json_array_get(av, i));
        if (!a) continue;
        if ((!strcmp(a, lng) || !strcmp(a, shrt)) && i + 1 < json_array_size(av))
            return json_string_value(json_array_get(av, i + 1));
        if (!strncmp(a, lng, n) && a[n] == '=') return a + n + 1;
    }
    return NULL;
}

int report_add_recon(Report *r, const char *path)
{
    TszReader *rd = open_in(r, path);
    if (!rd) return -1;
    TszRecord rec;
    tsz_record_init(&rec);
    int ret, n = 0;
    const char *sae = argv_value(tsz_reader_header(rd), "--sae", "-s");
    const char *model = argv_value(tsz_reader_header(rd), "--model", "-m");
    while ((ret = tsz_read(rd, &rec)) == 1) {
        if (check_kind(r, rd, &rec, SP_K_RECON) < 0) { ret = -1; break; }
        json_t *m = json_deep_copy(rec.meta);
        json_object_set_new(m, "file", jstr(path));
        if (sae && !json_object_get(m, "sae")) json_object_set_new(m, "sae", jstr(sae));
        if (model && !json_object_get(m, "model")) json_object_set_new(m, "model", jstr(model));
        json_array_append_new(r->recons, m);
        n++;
    }
    if (ret == 0 && n == 0) ret = -1, SP_FAIL(r, "%s: no recon record", tsz_reader_name(rd));
    tsz_record_free(&rec);
    return close_in(r, rd, "recon", path, ret);
}

/* ---- training logs ---- */

static size_t log_col(ReportLog *lg, const char *name)
{
    for (size_t j = 0; j < lg->ncol; j++)
        if (!strcmp(lg->col[j], name)) return j;
    lg->col = xrealloc(lg->col, (lg->ncol + 1) * sizeof *lg->col);
    lg->col[lg->ncol] = xstrdup(name);
    return lg->ncol++;
}

static double *log_row(ReportLog *lg)
{
    if (lg->nrow == lg->cap) {
        lg->cap = lg->cap ? 2 * lg->cap : 64;
        lg->v = xrealloc(lg->v, lg->cap * lg->ncol * sizeof *lg->v);
    }
    double *row = lg->v + lg->nrow++ * lg->ncol;
    for (size_t j = 0; j < lg->ncol; j++) row[j] = NAN;
    return row;
}

/* Rows of another kind than training (sae-fit's "eval" lines) go into
 * columns of their own, "eval.loss", so that curves do not mix them; the
 * x columns stay shared. */
static int x_column(const char *name)
{
    return !strcmp(name, "step") || !strcmp(name, "tokens") || !strcmp(name, "time") ||
           !strcmp(name, "elapsed");
}

static size_t kind_col(ReportLog *lg, const char *kind, const char *name)
{
    if (!kind || !kind[0] || !strcmp(kind, "train") || x_column(name)) return log_col(lg, name);
    char full[256];
    snprintf(full, sizeof full, "%s.%s", kind, name);
    return log_col(lg, full);
}

/* Numeric fields of a JSON object, one level of nesting as "key.sub". */
static void json_numbers(ReportLog *lg, const json_t *o, const char *kind, const char *prefix, double *row)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        char name[256];
        snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", k);
        if (json_is_object(v) && !prefix[0]) json_numbers(lg, v, kind, name, row);
        if (!json_is_number(v)) continue;
        size_t j = kind_col(lg, kind, name);
        if (row) row[j] = json_number_value(v);
    }
}

static char *next_line(char **p)
{
    if (!**p) return NULL;
    char *s = *p, *nl = strchr(s, '\n');
    if (nl) *nl = 0, *p = nl + 1;
    else *p = s + strlen(s);
    size_t n = strlen(s);
    if (n && s[n - 1] == '\r') s[n - 1] = 0;
    return s;
}

static int blank(const char *s) { return s[strspn(s, " \t")] == 0; }

/* Two passes over a copy of the text: columns first, so every row has them all. */
static int parse_jsonl(ReportLog *lg, const char *text, char *err, size_t errlen)
{
    for (int pass = 0; pass < 2; pass++) {
        char *copy = xstrdup(text), *p = copy, *line;
        size_t ln = 0;
        while ((line = next_line(&p))) {
            ln++;
            if (blank(line)) continue;
            json_error_t je;
            json_t *o = json_loads(line, 0, &je);
            if (!json_is_object(o)) {
                snprintf(err, errlen, "line %zu: not a JSON object: %s", ln,
                         o ? "another JSON value" : je.text);
                json_decref(o);
                free(copy);
                return -1;
            }
            json_numbers(lg, o, json_string_value(json_object_get(o, "kind")), "",
                         pass ? log_row(lg) : NULL);
            json_decref(o);
        }
        free(copy);
    }
    return 0;
}

/* Split a TSV (or CSV, or space separated) line in place. */
static size_t split_fields(char *s, char sep, char **f, size_t maxf)
{
    size_t n = 0;
    while (n < maxf) {
        if (sep == ' ') s += strspn(s, " ");
        if (!*s && sep == ' ') break;
        f[n++] = s;
        char *e = sep == ' ' ? strchr(s, ' ') : strchr(s, sep);
        if (!e) break;
        *e = 0;
        s = e + 1;
    }
    return n;
}

enum { LOG_MAXF = 256 };

static int parse_tsv(ReportLog *lg, const char *text, char *err, size_t errlen)
{
    static const char kind_name[] = "kind";
    for (int pass = 0; pass < 2; pass++) {
        char *copy = xstrdup(text), *p = copy, *line, *f[LOG_MAXF], *hdr[LOG_MAXF];
        size_t nh = 0;
        long kcol = -1;
        char sep = '\t';
        size_t lines = 0, numbers = 0;
        while ((line = next_line(&p))) {
            if (blank(line)) continue;
            if (!nh) {
                while (*line == '#' || *line == ' ') line++;
                if (!strchr(line, '\t')) sep = strchr(line, ',') ? ',' : ' ';
                nh = split_fields(line, sep, hdr, LOG_MAXF);
                for (size_t j = 0; j < nh; j++) {
                    hdr[j] += strspn(hdr[j], " ");
                    hdr[j][strcspn(hdr[j], " \t")] = 0;
                    if (!strcmp(hdr[j], kind_name)) kcol = (long)j;
                    else if (!pass) log_col(lg, hdr[j][0] ? hdr[j] : "?");
                }
                continue;
            }
            if (line[0] == '#') continue;
            lines++;
            size_t n = split_fields(line, sep, f, LOG_MAXF);
            const char *kind = kcol >= 0 && (size_t)kcol < n ? f[kcol] : "";
            double *row = pass ? log_row(lg) : NULL;
            for (size_t j = 0; j < n && j < nh; j++) {
                char *end;
                double v = strtod(f[j], &end);
                if ((long)j == kcol || end == f[j] || !blank(end)) continue;
                numbers++;
                size_t c = kind_col(lg, kind, hdr[j][0] ? hdr[j] : "?");
                if (row) row[c] = v;
            }
        }
        free(copy);
        if (!nh) return snprintf(err, errlen, "no header line"), -1;
        if (lines && !numbers)
            return snprintf(err, errlen, "no number in any line after the header (%zu lines; not a training log)",
                            lines), -1;
    }
    return 0;
}

int report_parse_log(ReportLog *lg, const char *text, char *err, size_t errlen)
{
    const char *s = text + strspn(text, " \t\r\n");
    /* a log with a header and no rows yet is fine: the page says so */
    return *s == '{' ? parse_jsonl(lg, text, err, errlen) : parse_tsv(lg, text, err, errlen);
}

int report_add_log(Report *r, const char *path, const char *label)
{
    size_t len;
    char *text = sp_read_file(path, &len);
    if (!text) return SP_FAIL(r, "%s: %s", path, strerror(errno));
    if (strlen(text) != len) { free(text); return SP_FAIL(r, "%s: contains a NUL byte", path); }
    char *clean = report_utf8_clean(text, len);
    free(text);
    ReportLog lg;
    memset(&lg, 0, sizeof lg);
    char err[256];
    int ret = report_parse_log(&lg, clean, err, sizeof err);
    free(clean);
    if (ret < 0) {
        report_log_free(&lg);
        return SP_FAIL(r, "%s: %s", path, err);
    }
    const char *lab = label ? label : base_name(path);
    lg.label = report_utf8_clean(lab, strlen(lab));
    r->logs = xrealloc(r->logs, (r->nlog + 1) * sizeof *r->logs);
    r->logs[r->nlog++] = lg;
    return 0;
}

/* ---- explanations ---- */

int report_feature_id(Report *r, TszReader *rd, const TszRecord *rec, long long *id)
{
    json_t *f = json_object_get(rec->meta, "feature");
    if (!json_is_integer(f) || json_integer_value(f) < 0)
        return SP_FAIL(r, "%s: record %llu: no \"feature\" id (a non-negative integer)",
                    tsz_reader_name(rd), (unsigned long long)tsz_reader_records(rd));
    *id = json_integer_value(f);
    return 0;
}

/* The fields of an explanation record the report shows, copied (rec.meta
 * is reused): a 128x dictionary has 393,216 of them, so not the rest. */
static json_t *expl_fields(const json_t *meta)
{
    static const char *const keep[] = {"feature", "explanation", "status", "error", "score", "score_top",
                                       "score_random", "scorer", "backend", "density", "detection", "fuzzing"};
    json_t *e = json_object();
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        json_t *v = json_object_get(meta, keep[i]);
        if (v) json_object_set_new(e, keep[i], json_deep_copy(v));
    }
    return e;
}

int report_add_explanations(Report *r, const char *path)
{
    TszReader *rd = open_in(r, path);
    if (!rd) return -1;
    TszRecord rec;
    tsz_record_init(&rec);
    int ret;
    long long id;
    while ((ret = tsz_read(rd, &rec)) == 1) {
        if (check_kind(r, rd, &rec, SP_K_EXPLANATION) < 0 || report_feature_id(r, rd, &rec, &id) < 0) {
            ret = -1;
            break;
        }
        char key[32];
        snprintf(key, sizeof key, "%lld", id);
        json_object_set_new(r->expl, key, expl_fields(rec.meta));
    }
    tsz_record_free(&rec);
    return close_in(r, rd, "explanations", path, ret);
}

int report_add_features(Report *r, const char *path)
{
    TszReader *rd = open_in(r, path);
    if (!rd) return -1;
    TszRecord rec;
    tsz_record_init(&rec);
    int ret;
    while ((ret = tsz_read(rd, &rec)) == 1) {
        const char *kind = rec_kind(&rec);
        int rc = !strcmp(kind, SP_KIND_DICT_STATS) ? report_add_dict_stats(r, rd, &rec)
                 : check_kind(r, rd, &rec, SP_K_FEATURE | SP_K_DICT_STATS) < 0 ? -1
                 : report_add_feature(r, rd, &rec);
        if (rc < 0) { ret = -1; break; }
    }
    tsz_record_free(&rec);
    return close_in(r, rd, "features", path, ret);
}
