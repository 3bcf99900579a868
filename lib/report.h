/* report.h: the static HTML report of a run (sae-report).
 *
 * A Report gathers what the stages wrote: recon-score records, SAE file
 * metadata, sae-fit training logs (TSV or JSON lines), explain-gpt4
 * explanations and topk-ctx feature records, and renders either ONE
 * self-contained HTML page (inline CSS, inline SVG plots drawn here, and the
 * features as a JSON blob that vanilla JS renders lazily), or, for
 * dictionaries of any size, a directory: the same page as index.html
 * without the features, a compact index of them (features/index.js) and
 * the features in side files of ~1000 (features/NNNN.js), loaded by page
 * through <script> elements (so it works from file:// and any static
 * server). Everything that comes from the inputs is HTML-escaped (in C) or
 * inserted as text nodes (in JS); JSON escapes '<', '>' and '&' so no input
 * can close a <script> element.
 *
 * Order of loading: explanations before features (features are joined with
 * their explanation while they stream past, so memory stays bounded by the
 * output, not the inputs). Every report_add_* returns 0, or -1 with the
 * message in report_error() ("expl.tsz: record 3: no \"feature\""). */
#ifndef SP_REPORT_H
#define SP_REPORT_H

#include <stddef.h>
#include <stdio.h>
#include <jansson.h>

#include "util.h"

typedef struct ReportPages ReportPages;   /* report_pages.c */

typedef struct {
    const char *title;        /* page title */
    size_t max_top;           /* top examples kept per feature */
    size_t max_random;        /* random examples kept per feature */
    size_t max_band;          /* quantile-band examples kept per band */
    size_t ctx_before;        /* tokens kept before an example's max */
    size_t ctx_after;         /* tokens kept after it */
    size_t max_features;      /* features kept in the browser (0 = all) */
    size_t chunk;             /* features per side file (report_pages_begin) */
} ReportOpts;

void report_opts_default(ReportOpts *o);

typedef struct {
    char *label;
    size_t ncol, nrow, cap;
    char **col;               /* (ncol) column names */
    double *v;                /* (nrow, ncol), NaN where absent */
} ReportLog;

typedef struct {
    ReportOpts o;
    json_t *prov;             /* array of {"role","file","headers"} */
    json_t *saes;             /* array of SAE metadata objects (+"file") */
    json_t *recons;           /* array of recon rows (meta + "file", "label") */
    json_t *expl;             /* object: feature id (decimal) -> explanation meta */
    json_t *dict_stats;       /* meta of the dict_stats record, or NULL */
    json_t *vocab;            /* object: token id (decimal) -> display string */
    ReportLog *logs;          /* (nlog) training logs */
    size_t nlog;
    double *density;          /* (ndens) per-feature density for the histogram */
    size_t ndens, dens_cap;
    int dens_from_stats;      /* density[] came from dict_stats (all features) */
    double *hist_counts, *hist_edges; /* a ready histogram when only that is given */
    size_t nhist;
    char *feat_buf;           /* JSON objects of the features, comma-separated (not yet
                               * escaped for <script>: report_html.c does that) */
    size_t feat_len;
    FILE *feat_f;             /* open_memstream on feat_buf */
    size_t nfeat;             /* features written into feat_buf */
    json_t *seen;             /* object: feature ids already written */
    ReportPages *pages;       /* the directory being written, or NULL (one page) */
    char err[512];
} Report;

int report_init(Report *r, const ReportOpts *o) SP_RESULT_USED;
void report_free(Report *r);
const char *report_error(const Report *r);

int report_add_sae(Report *r, const char *path) SP_RESULT_USED;
int report_add_recon(Report *r, const char *path) SP_RESULT_USED;
/* label NULL: the file's base name. */
int report_add_log(Report *r, const char *path, const char *label) SP_RESULT_USED;
int report_add_explanations(Report *r, const char *path) SP_RESULT_USED;
int report_add_features(Report *r, const char *path) SP_RESULT_USED;

/* Write the page to out. 0, or -1 with the error (a failed write). */
int report_write_html(Report *r, FILE *out) SP_RESULT_USED;

/* The directory form. Call report_pages_begin before adding features: they
 * go to side files as they stream past (memory stays that of the index),
 * in a temporary directory beside dir. report_write_pages writes the rest
 * and puts the directory in place of dir (which may be an earlier report,
 * replaced whole, or empty, or absent; anything else is refused). Without
 * report_write_pages, report_free removes the temporary directory. 0, or
 * -1 with the error. */
int report_pages_begin(Report *r, const char *dir) SP_RESULT_USED;
int report_write_pages(Report *r) SP_RESULT_USED;

/* ---- helpers, exposed for unit tests ---- */
/* s HTML-escaped (& < > " ') onto f. */
void report_html_escape(FILE *f, const char *s);
/* JSON text safe inside <script>: '<', '>', '&' as \u003c \u003e \u0026.
 * Valid JSON in, valid JSON out (these characters only occur in strings). */
void report_json_script_escape(FILE *f, const char *json);
/* Copy of s (n bytes) as valid UTF-8: invalid bytes become U+FFFD. */
char *report_utf8_clean(const char *s, size_t n);
/* The seed's score for this setting, or -1 when the seed has none:
 * DistilGPT-2, last MLP (blocks.5.mlp.hook_post), D=3072: F=32D 0.77, F=128D 0.48. */
double report_seed_score(const char *model, const char *hook, double d, double f);
/* Parse a training log (TSV with a header line, or JSON lines) held in
 * text; 0 or -1 with err. */
int report_parse_log(ReportLog *lg, const char *text, char *err, size_t errlen);
void report_log_free(ReportLog *lg);

#endif
