/* report.c: gather the streams of a run for the HTML report (report.h).
 * This file reads; report_html.c writes. */
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

static int feature_id(Report *r, TszReader *rd, const TszRecord *rec, long long *id)
{
    json_t *f = json_object_get(rec->meta, "feature");
    if (!json_is_integer(f) || json_integer_value(f) < 0)
        return SP_FAIL(r, "%s: record %llu: no \"feature\" id (a non-negative integer)",
                    tsz_reader_name(rd), (unsigned long long)tsz_reader_records(rd));
    *id = json_integer_value(f);
    return 0;
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
        if (check_kind(r, rd, &rec, SP_K_EXPLANATION) < 0 || feature_id(r, rd, &rec, &id) < 0) {
            ret = -1;
            break;
        }
        char key[32];
        snprintf(key, sizeof key, "%lld", id);
        json_object_set_new(r->expl, key, json_deep_copy(rec.meta));  /* rec.meta is reused */
    }
    tsz_record_free(&rec);
    return close_in(r, rd, "explanations", path, ret);
}

/* ---- topk-ctx features ---- */

/* A (K,W) i32 tokens tensor and its (K,W) float activations: 1 present,
 * 0 both absent, -1 malformed. */
static int example_tensors(Report *r, TszReader *rd, const TszRecord *rec, const char *tn,
                           const char *an, const TszTensor **tok, const TszTensor **act)
{
    *tok = tsz_record_get(rec, tn);
    *act = tsz_record_get(rec, an);
    if (!*tok && !*act) return 0;
    const char *name = tsz_reader_name(rd);
    unsigned long long nr = (unsigned long long)tsz_reader_records(rd);
    if (!*tok || !*act)
        return SP_FAIL(r, "%s: record %llu: \"%s\" without \"%s\"", name, nr, *tok ? tn : an,
                    *tok ? an : tn);
    char b1[96], b2[96];
    if ((*tok)->dtype != TSZ_I32 || (*tok)->ndim != 2)
        return SP_FAIL(r, "%s: record %llu: \"%s\" is %s, not (K,W) i32", name, nr, tn,
                    tsz_tensor_desc(*tok, b1, sizeof b1));
    if (!tsz_dtype_is_float((*act)->dtype) || (*act)->ndim != 2 ||
        (*act)->shape[0] != (*tok)->shape[0] || (*act)->shape[1] != (*tok)->shape[1])
        return SP_FAIL(r, "%s: record %llu: \"%s\" is %s but \"%s\" is %s", name, nr, an,
                    tsz_tensor_desc(*act, b1, sizeof b1), tn, tsz_tensor_desc(*tok, b2, sizeof b2));
    return 1;
}

static double round_sig(double v, int digits)
{
    if (v == 0 || !isfinite(v)) return isfinite(v) ? v : 0;
    double m = pow(10, digits - 1 - (int)floor(log10(fabs(v))));
    return round(v * m) / m;
}

/* One example, cut to ctx_before tokens before its max and ctx_after after,
 * packed small (pages hold thousands of features): {"t": token ids, three
 * base-64 digits each, "a": activation levels round(63 a / max_act) clamped
 * to 0-63, one digit each (shading needs no more), "m": the example's max
 * activation, "src": [doc, offset]}. Ids past 64^3 (no GPT-2 vocabulary has
 * them) make "t" a plain array. */
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static json_t *example_json(const ReportOpts *o, const int32_t *tok, const float *a, size_t W,
                            double scale, const int64_t *src)
{
    size_t c = 0;
    for (size_t i = 1; i < W; i++)
        if (a[i] > a[c]) c = i;
    size_t lo = c > o->ctx_before ? c - o->ctx_before : 0;
    size_t hi = c + o->ctx_after + 1 < W ? c + o->ctx_after + 1 : W;
    char *t = xmalloc(3 * (hi - lo) + 1), *q = xmalloc(hi - lo + 1);
    size_t n = 0;
    int wide = 0;
    json_t *ta = json_array();
    for (size_t i = lo; i < hi; i++) {
        if (tok[i] < 0) continue;     /* padding */
        double lv = scale > 0 && isfinite(a[i]) ? round(63 * a[i] / scale) : 0;
        int l = lv < 0 ? 0 : lv > 63 ? 63 : (int)lv;
        int32_t id = tok[i];
        wide |= id >= 64 * 64 * 64;
        t[3 * n] = B64[(id >> 12) & 63], t[3 * n + 1] = B64[(id >> 6) & 63], t[3 * n + 2] = B64[id & 63];
        json_array_append_new(ta, json_integer(id));
        q[n++] = B64[l];
    }
    t[3 * n] = 0, q[n] = 0;
    json_t *ex = json_object();
    json_object_set_new(ex, "t", wide ? ta : json_string(t));
    if (!wide) json_decref(ta);
    json_object_set_new(ex, "a", json_string(q));
    json_object_set_new(ex, "m", json_real(round_sig(a[c], 4)));
    if (src) json_object_set_new(ex, "src", json_pack("[II]", (json_int_t)src[0], (json_int_t)src[1]));
    free(t);
    free(q);
    return ex;
}

/* Examples in stored order, at most keep of them; with band ids (K), at
 * most keep per band, each tagged "b". */
static json_t *examples_json(Report *r, const TszTensor *tok, const TszTensor *act,
                             const TszTensor *src, const int64_t *band, size_t keep, double scale)
{
    size_t K = tok->shape[0], W = tok->shape[1], kept = 0;
    float *a = xmalloc((W ? W : 1) * sizeof *a);
    json_t *arr = json_array(), *per = json_object();
    for (size_t k = 0; k < K && (band || kept < keep); k++) {
        if (band) {
            char key[32];
            snprintf(key, sizeof key, "%lld", (long long)band[k]);
            json_int_t c = json_integer_value(json_object_get(per, key));
            if ((size_t)c >= keep) continue;
            json_object_set_new(per, key, json_integer(c + 1));
        }
        kept++;
        const uint8_t *arow = (const uint8_t *)act->data + k * W * tsz_dtype_size(act->dtype);
        tsz_to_f32(a, arow, act->dtype, W);
        const int64_t *s = src ? (const int64_t *)src->data + 3 * k : NULL;
        json_t *ex = example_json(&r->o, (const int32_t *)tok->data + k * W, a, W, scale, s);
        if (band) json_object_set_new(ex, "b", json_integer((json_int_t)band[k]));
        json_array_append_new(arr, ex);
    }
    json_decref(per);
    free(a);
    return arr;
}

static void set_num(json_t *o, const char *key, const json_t *v, int digits)
{
    if (json_is_integer(v)) json_object_set_new(o, key, json_integer(json_integer_value(v)));
    else if (json_is_number(v)) json_object_set_new(o, key, json_real(round_sig(json_number_value(v), digits)));
}

/* A detection or fuzzing scorer's numbers, as "y": {"k": scorer, "ba",
 * "p", "r", "f1", "auc"}. */
static void yes_no_scores(json_t *f, const json_t *e)
{
    static const char *const scorers[] = {"detection", "fuzzing"};
    static const char *const keys[][2] = {{"balanced_accuracy", "ba"}, {"precision", "p"}, {"recall", "r"},
                                          {"f1", "f1"}, {"auroc", "auc"}};
    for (size_t i = 0; i < 2; i++) {
        const json_t *c = json_object_get(e, scorers[i]);
        if (!json_is_object(c)) continue;
        json_t *y = json_pack("{s:s}", "k", scorers[i]);
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) set_num(y, keys[k][1], json_object_get(c, keys[k][0]), 3);
        json_object_set_new(f, "y", y);
    }
}

/* Write one feature (its explanation joined) into the browser's JSON. */
static void emit_feature(Report *r, long long id, json_t *f)
{
    char key[32];
    snprintf(key, sizeof key, "%lld", id);
    json_object_set_new(f, "i", json_integer(id));
    const json_t *e = json_object_get(r->expl, key);
    if (e) {
        const char *s = json_string_value(json_object_get(e, "explanation"));
        const char *st = json_string_value(json_object_get(e, "status"));
        const char *er = json_string_value(json_object_get(e, "error"));
        if (s) json_object_set_new(f, "e", json_string(s));
        if (st) json_object_set_new(f, "x", json_string(st));
        if (er && er[0]) json_object_set_new(f, "er", json_string(er));
        if (st && !strcmp(st, "failed")) e = NULL;   /* a failed feature has no score */
        set_num(f, "s", json_object_get(e, "score"), 3);
        set_num(f, "st", json_object_get(e, "score_top"), 3);
        set_num(f, "sr", json_object_get(e, "score_random"), 3);
        yes_no_scores(f, e);
    }
    json_object_set_new(r->seen, key, json_true());
    if (!r->o.max_features || r->nfeat < r->o.max_features) {
        char *js = json_dumps(f, JSON_COMPACT | JSON_REAL_PRECISION(5));
        if (r->nfeat) fputc(',', r->feat_f);
        fputc('\n', r->feat_f);
        fputs(js, r->feat_f);
        free(js);
        r->nfeat++;
    }
    json_decref(f);
}

void report_emit_unseen_explanations(Report *r)
{
    const char *key;
    json_t *v;
    json_object_foreach(r->expl, key, v) {
        if (json_object_get(r->seen, key)) continue;
        emit_feature(r, json_integer_value(json_object_get(v, "feature")), json_object());
    }
}

static void push_density(Report *r, double d)
{
    if (r->ndens == r->dens_cap) {
        r->dens_cap = r->dens_cap ? 2 * r->dens_cap : 1024;
        r->density = xrealloc(r->density, r->dens_cap * sizeof *r->density);
    }
    r->density[r->ndens++] = d;
}

/* topk-ctx --sae's logit effects, when the record has them: "lg":
 * {"p": [[id, value]...], "n": [...]}, promoted first, suppressed first. */
static void logits_json(json_t *f, const TszRecord *rec)
{
    static const char *const names[2][2] = {{"logit_top_ids", "logit_top_vals"}, {"logit_bot_ids", "logit_bot_vals"}};
    json_t *lg = json_object();
    for (int s = 0; s < 2; s++) {
        const TszTensor *ti = tsz_record_get(rec, names[s][0]), *tv = tsz_record_get(rec, names[s][1]);
        if (!ti || !tv || ti->dtype != TSZ_I32 || tv->dtype != TSZ_F32 || ti->ndim != 1 || tv->ndim != 1 ||
            ti->shape[0] != tv->shape[0]) {
            json_decref(lg);
            return;
        }
        json_t *a = json_array();
        for (uint64_t k = 0; k < ti->shape[0]; k++)
            json_array_append_new(a, json_pack("[i, f]", ((const int32_t *)ti->data)[k],
                                               round_sig(((const float *)tv->data)[k], 4)));
        json_object_set_new(lg, s ? "n" : "p", a);
    }
    json_object_set_new(f, "lg", lg);
}

static int add_feature(Report *r, TszReader *rd, const TszRecord *rec)
{
    long long id;
    if (feature_id(r, rd, rec, &id) < 0) return -1;
    const json_t *m = rec->meta;
    const TszTensor *tt, *ta, *rt, *ra;
    int top = example_tensors(r, rd, rec, "top_tokens", "top_acts", &tt, &ta);
    int rnd = top < 0 ? -1 : example_tensors(r, rd, rec, "rand_tokens", "rand_acts", &rt, &ra);
    const TszTensor *bt = NULL, *ba = NULL, *bid = tsz_record_get(rec, "band_id");
    int bnd = rnd < 0 ? -1 : example_tensors(r, rd, rec, "band_tokens", "band_acts", &bt, &ba);
    if (top < 0 || rnd < 0 || bnd < 0) return -1;
    if (bnd && (!bid || bid->ndim != 1 || bid->shape[0] != bt->shape[0] ||
                (bid->dtype != TSZ_I32 && bid->dtype != TSZ_I64)))
        return SP_FAIL(r, "%s: record %llu: \"band_tokens\" needs \"band_id\" i32 or i64 (%llu)",
                    tsz_reader_name(rd), (unsigned long long)tsz_reader_records(rd),
                    (unsigned long long)bt->shape[0]);
    const TszTensor *src = tsz_record_get(rec, "top_src");
    if (src && (src->dtype != TSZ_I64 || src->ndim != 2 || src->shape[1] != 3 || !top ||
                src->shape[0] != tt->shape[0])) src = NULL;  /* optional: ignore if odd */
    json_t *ts = json_object_get(m, "token_strs");
    const char *k;
    json_t *v;
    json_object_foreach(ts, k, v)
        if (json_is_string(v) && !json_object_get(r->vocab, k)) json_object_set(r->vocab, k, v);

    json_t *f = json_object();
    double dens = NAN;
    if (json_is_number(json_object_get(m, "density"))) dens = json_number_value(json_object_get(m, "density"));
    else if (json_number_value(json_object_get(m, "n_tokens")) > 0)
        dens = json_number_value(json_object_get(m, "n_fired")) /
               json_number_value(json_object_get(m, "n_tokens"));
    if (isfinite(dens)) json_object_set_new(f, "d", json_real(round_sig(dens, 4)));
    set_num(f, "mx", json_object_get(m, "max_act"), 4);
    set_num(f, "mn", json_object_get(m, "mean_act"), 4);
    set_num(f, "n", json_object_get(m, "n_fired"), 15);
    double scale = json_number_value(json_object_get(m, "max_act"));
    if (!(scale > 0) && top) {              /* no max given: the top example's */
        float *a = xmalloc(tsz_tensor_numel(ta) * sizeof *a + 4);
        tsz_to_f32(a, ta->data, ta->dtype, tsz_tensor_numel(ta));
        for (uint64_t i = 0; i < tsz_tensor_numel(ta); i++) if (a[i] > scale) scale = a[i];
        free(a);
    }
    if (top) json_object_set_new(f, "top", examples_json(r, tt, ta, src, NULL, r->o.max_top, scale));
    if (rnd) json_object_set_new(f, "rnd", examples_json(r, rt, ra, NULL, NULL, r->o.max_random, scale));
    if (bnd && r->o.max_band) {
        int64_t *ids = xmalloc(bid->shape[0] * sizeof *ids + 8);
        tsz_convert(ids, TSZ_I64, bid->data, bid->dtype, bid->shape[0]);
        json_object_set_new(f, "bands", examples_json(r, bt, ba, NULL, ids, r->o.max_band, scale));
        free(ids);
    }
    logits_json(f, rec);
    if (!r->dens_from_stats && isfinite(dens)) push_density(r, dens);
    emit_feature(r, id, f);
    return 0;
}

static double *tensor_f64(const TszTensor *t)
{
    size_t n = tsz_tensor_numel(t);
    float *f = xmalloc(n * sizeof *f + 4);
    double *d = xmalloc(n * sizeof *d + 8);
    tsz_to_f32(f, t->data, t->dtype, n);
    for (size_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

static int add_dict_stats(Report *r, TszReader *rd, const TszRecord *rec)
{
    json_decref(r->dict_stats);
    r->dict_stats = json_deep_copy(rec->meta);
    const TszTensor *d = tsz_record_get(rec, "density");
    if (d && tsz_dtype_is_float(d->dtype) && d->ndim == 1) {
        free(r->density);
        r->density = tensor_f64(d);
        r->ndens = r->dens_cap = tsz_tensor_numel(d);
        r->dens_from_stats = 1;
    }
    const TszTensor *h = tsz_record_get(rec, "log10_density_hist"), *e = NULL;
    for (size_t i = 0; i < rec->n && h; i++)
        if (strstr(rec->t[i].name, "edge")) e = &rec->t[i];
    if (h && e) {
        if (h->ndim != 1 || e->ndim != 1 || tsz_tensor_numel(e) != tsz_tensor_numel(h) + 1)
            return SP_FAIL(r, "%s: dict_stats: \"%s\" needs one more value than \"%s\"",
                        tsz_reader_name(rd), e->name, h->name);
        free(r->hist_counts);
        free(r->hist_edges);
        r->hist_counts = tensor_f64(h);
        r->hist_edges = tensor_f64(e);
        r->nhist = tsz_tensor_numel(h);
    }
    return 0;
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
        int rc = !strcmp(kind, SP_KIND_DICT_STATS) ? add_dict_stats(r, rd, &rec)
                 : check_kind(r, rd, &rec, SP_K_FEATURE | SP_K_DICT_STATS) < 0 ? -1 : add_feature(r, rd, &rec);
        if (rc < 0) { ret = -1; break; }
    }
    tsz_record_free(&rec);
    return close_in(r, rd, "features", path, ret);
}
