/* report_compare.c: sae-report --compare (report_compare.h). Everything
 * from the input is HTML-escaped; the page has no script, so it opens from
 * file:// and in any browser as it is. */
#include <math.h>
#include <string.h>

#include "kinds.h"
#include "report.h"
#include "report_compare.h"
#include "stream.h"

/* The summary object of the last compare_summary record (new reference). */
static json_t *read_summary(const char *path, char *err, size_t errlen)
{
    TszReader *r = tsz_reader_open(path);
    TszRecord rec;
    tsz_record_init(&rec);
    json_t *sum = NULL;
    int ret = tsz_reader_error(r) ? -1 : 0;
    char e[512];
    while (!ret && (ret = tsz_read(r, &rec)) == 1) {
        ret = sp_kind_check(&rec, SP_K_COMPARE | SP_K_COMPARE_SUMMARY, e, sizeof e);
        if (ret < 0) {
            sp_fail(err, errlen, "%s: record %llu: %s", sp_in_name(path), (unsigned long long)tsz_reader_records(r), e);
            break;
        }
        json_t *s = json_object_get(rec.meta, "summary");
        if (sp_kind_of(&rec) == SP_K_COMPARE_SUMMARY && json_is_object(s)) json_decref(sum), sum = json_incref(s);
    }
    if (ret < 0 && tsz_reader_error(r)) sp_fail(err, errlen, "%s", tsz_reader_error(r));
    if (!ret && !sum) ret = -1, sp_fail(err, errlen, "%s: no compare_summary record", sp_in_name(path));
    tsz_record_free(&rec);
    tsz_reader_close(r);
    if (ret < 0) json_decref(sum), sum = NULL;
    return sum;
}

/* one cell: a share as a percentage, a count, text or "-" */
static void cell(FILE *f, const json_t *v, int pct)
{
    if (json_is_string(v)) {
        fputs("<td>", f), report_html_escape(f, json_string_value(v)), fputs("</td>", f);
    } else if (json_is_integer(v)) {
        fprintf(f, "<td class=n>%lld</td>", (long long)json_integer_value(v));
    } else if (json_is_number(v)) {
        fprintf(f, pct ? "<td class=n>%.1f%%</td>" : "<td class=n>%.3f</td>", json_number_value(v) * (pct ? 100 : 1));
    } else {
        fputs("<td class=n>-</td>", f);
    }
}

typedef struct { const char *key, *head; int pct; } Col;

static void table(FILE *f, const json_t *rows, const Col *cols, size_t n)
{
    fputs("<table><tr>", f);
    for (size_t k = 0; k < n; k++) fprintf(f, "<th>%s</th>", cols[k].head);
    fputs("</tr>\n", f);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        fputs("<tr>", f);
        for (size_t k = 0; k < n; k++) cell(f, json_object_get(row, cols[k].key), cols[k].pct);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

/* Bars of three shares per dictionary, side by side. */
static void chart(FILE *f, const json_t *dicts, const json_t *pairs)
{
    static const char *const name[] = {"near-duplicate explanations", "broad features", "split into 2+ children"};
    static const char *const color[] = {"#c0392b", "#2980b9", "#27ae60"};
    size_t n = json_array_size(dicts), W = 140, H = 160;
    fprintf(f, "<svg width=%zu height=%zu role=img aria-label=\"shares by size\">\n", 60 + n * W, H + 40);
    for (size_t i = 0; i < n; i++) {
        const json_t *d = json_array_get(dicts, i), *p = json_array_get(pairs, i);
        double v[3] = {json_number_value(json_object_get(d, "dup_near")), json_number_value(json_object_get(d, "broad")),
                       p ? json_number_value(json_object_get(p, "split")) : 0};
        for (int k = 0; k < 3; k++) {
            double h = (double)H * (v[k] > 0 ? (v[k] < 1 ? v[k] : 1) : 0);
            fprintf(f, "<rect x=%zu y=%.1f width=30 height=%.1f fill=\"%s\"><title>%s %.1f%%</title></rect>\n",
                    60 + i * W + (size_t)k * 34, 10 + H - h, h, color[k], name[k], v[k] * 100);
        }
        fprintf(f, "<text x=%zu y=%zu>", 60 + i * W + 20, H + 30);
        report_html_escape(f, json_string_value(json_object_get(d, "label")));
        fputs("</text>\n", f);
    }
    fprintf(f, "<text x=0 y=20>100%%</text><text x=0 y=%zu>0%%</text></svg>\n<p>", H + 10);
    for (int k = 0; k < 3; k++) fprintf(f, "<span style=\"color:%s\">&#9632;</span> %s ", color[k], name[k]);
    fputs("(splitting: of each dictionary's latents, towards the next larger one)</p>\n", f);
}

static void node(FILE *f, const json_t *n)
{
    const json_t *kids = json_object_get(n, "children"), *e = json_object_get(n, "explanation");
    fprintf(f, "<li>%s<b>", json_array_size(kids) ? "<details open><summary>" : "");
    report_html_escape(f, json_string_value(json_object_get(n, "dict")));
    fprintf(f, " #%lld</b> ", (long long)json_integer_value(json_object_get(n, "feature")));
    if (json_is_string(e)) report_html_escape(f, json_string_value(e));
    if (json_is_number(json_object_get(n, "cos")))
        fprintf(f, " <small>cos %.2f, cover %.2f</small>", json_number_value(json_object_get(n, "cos")),
                json_number_value(json_object_get(n, "cover")));
    if (!json_array_size(kids)) return (void)fputs("</li>\n", f);
    fprintf(f, " <small>(%lld children, %lld descendants)</small></summary><ul>\n",
            (long long)json_integer_value(json_object_get(n, "n_children")),
            (long long)json_integer_value(json_object_get(n, "descendants")));
    size_t i;
    json_t *k;
    json_array_foreach(kids, i, k) node(f, k);
    fputs("</ul></details></li>\n", f);
}

static const Col dict_cols[] = {
    {"label", "size", 0}, {"f", "latents", 0}, {"recon_score", "loss recovered", 1}, {"recon_fvu", "FVU", 0},
    {"recon_l0", "L0", 0}, {"live", "live", 0}, {"explained", "explained", 0}, {"dup_exact", "exact dup.", 1},
    {"dup_near", "near dup.", 1}, {"dup_near_equal_n", "near dup. (equal n)", 1}, {"broad", "broad", 1},
    {"broad_density", "dense", 1}, {"broad_spread", "spread", 1}, {"fired_in_sample", "fired in sample", 1},
};
static const Col pair_cols[] = {
    {"small", "smaller", 0}, {"large", "larger", 0}, {"mmcs_small", "MMCS smaller&rarr;larger", 0},
    {"mmcs_large", "MMCS larger&rarr;smaller", 0}, {"act_corr_small", "act. corr smaller&rarr;larger", 0},
    {"act_corr_large", "act. corr larger&rarr;smaller", 0}, {"with_children", "with children", 1},
    {"split", "split (2+)", 1}, {"children_per_parent", "children / parent", 0}, {"max_children", "most", 0},
    {"children", "larger latents that are children", 1},
};

int report_compare_html(const char *path, const char *title, FILE *out, char *err, size_t errlen)
{
    json_t *s = read_summary(path, err, errlen);
    if (!s) return -1;
    const json_t *dicts = json_object_get(s, "dictionaries"), *pairs = json_object_get(s, "pairs");
    const json_t *rules = json_object_get(s, "rules");
    fputs("<!DOCTYPE html><html><head><meta charset=utf-8><title>", out);
    report_html_escape(out, title);
    fputs("</title><style>body{font:14px sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:2px 6px}td.n{text-align:right}small{color:#666}"
          "ul{list-style:none;padding-left:1.5em}</style></head><body><h1>", out);
    report_html_escape(out, title);
    fprintf(out, "</h1><p>Hook ");
    report_html_escape(out, json_string_value(json_object_get(s, "hook")));
    fprintf(out, ", D = %lld; activation sample of %lld rows.</p>\n<h2>Per dictionary</h2>\n",
            (long long)json_integer_value(json_object_get(s, "d")),
            (long long)json_integer_value(json_object_get(s, "sample_rows")));
    table(out, dicts, dict_cols, sizeof dict_cols / sizeof *dict_cols);
    chart(out, dicts, pairs);
    fputs("<h2>Neighbouring sizes</h2>\n", out);
    table(out, pairs, pair_cols, sizeof pair_cols / sizeof *pair_cols);
    fputs("<h2>Rules</h2><ul>", out);
    static const char *const rule[] = {"child", "near", "broad"};
    for (size_t k = 0; k < 3; k++) {
        fputs("<li>", out);
        report_html_escape(out, json_string_value(json_object_get(rules, rule[k])));
        fputs("</li>", out);
    }
    fprintf(out, "<li>near dup. (equal n): among the first %lld explained features of each dictionary</li></ul>\n"
            "<h2>Splitting trees</h2><p>The roots of the smallest dictionary with most descendants.</p><ul>\n",
            (long long)json_integer_value(json_object_get(s, "equal_n")));
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(s, "trees"), i, t) node(out, t);
    fputs("</ul></body></html>\n", out);
    json_decref(s);
    return ferror(out) ? sp_fail(err, errlen, "write failed") : 0;
}
