/* report_html.c: render a Report (report.h) as one self-contained HTML page:
 * tables escaped here, SVG plots drawn here, the feature browser as a JSON
 * blob (or the address of its side files, report_pages.c) plus vanilla JS
 * that inserts everything as text. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "report_int.h"

void report_html_escape(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

void report_json_script_escape(FILE *f, const char *json)
{
    for (const char *s = json; s && *s; s++) {
        switch (*s) {
        case '<': fputs("\\u003c", f); break;
        case '>': fputs("\\u003e", f); break;
        case '&': fputs("\\u0026", f); break;
        default: fputc(*s, f);
        }
    }
}

static void esc_json(FILE *f, const json_t *v)
{
    if (json_is_string(v)) { report_html_escape(f, json_string_value(v)); return; }
    if (json_is_real(v)) { fprintf(f, "%.6g", json_real_value(v)); return; }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
    if (s && strlen(s) > 400) strcpy(s + 397, "...");
    report_html_escape(f, s);
    free(s);
}

static const char *base_name(const char *p)
{
    const char *s = p ? strrchr(p, '/') : NULL;
    return s ? s + 1 : p ? p : "";
}

/* ---- SVG ---- */

#define SVG_W 380.0
#define SVG_H 230.0
#define ML 58.0
#define MR 12.0
#define MT 24.0
#define MB 38.0

static const char *palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                "#9467bd", "#8c564b", "#e377c2", "#17becf"};
#define NPAL (sizeof palette / sizeof *palette)

typedef struct {
    const double *x, *y;   /* (n) each, read with strides xs, ys */
    size_t n, xs, ys;
    const char *label;
} Series;

typedef struct { double lo, hi; int log; } Axis;

static double ax_map(const Axis *a, double v, double p0, double p1)
{
    double t = a->log ? (log10(v) - a->lo) / (a->hi - a->lo) : (v - a->lo) / (a->hi - a->lo);
    return p0 + t * (p1 - p0);
}

/* About 5 round ticks in [lo, hi]; on a log axis, at powers of ten. */
static size_t ax_ticks(const Axis *a, double *t, size_t max)
{
    double span = a->hi - a->lo;
    double step = pow(10, floor(log10(span / 5)));
    static const double mult[] = {1, 2, 5, 10};
    for (size_t i = 0; i < 4; i++)
        if (span / (step * mult[i]) <= 6) { step *= mult[i]; break; }
    if (a->log && step < 1) step = 1;
    size_t n = 0;
    for (double v = ceil(a->lo / step) * step; v <= a->hi + 1e-9 * span && n < max; v += step)
        t[n++] = fabs(v) < 1e-12 * span ? 0 : v;
    return n;
}

static void ax_fit(Axis *a, double lo, double hi, int logok)
{
    a->log = logok && lo > 0 && hi / lo > 20;
    if (a->log) lo = log10(lo), hi = log10(hi);
    if (!(hi > lo)) {
        double d = lo ? fabs(lo) * 0.1 : 1;
        lo -= d, hi += d;
    }
    a->lo = lo, a->hi = hi;
}

static void svg_open(FILE *f, const char *title)
{
    fprintf(f, "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
               "viewBox=\"0 0 %g %g\" role=\"img\"><title>", SVG_W, SVG_H, SVG_W, SVG_H);
    report_html_escape(f, title);
    fprintf(f, "</title><text x=\"%g\" y=\"15\" class=\"pt\">", ML);
    report_html_escape(f, title);
    fputs("</text>", f);
}

static void svg_axes(FILE *f, const Axis *ax, const Axis *ay, const char *xlabel)
{
    double t[16];
    size_t n = ax_ticks(ay, t, 16);
    fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" class=\"frame\"/>", ML, MT,
            SVG_W - ML - MR, SVG_H - MT - MB);
    for (size_t i = 0; i < n; i++) {
        double y = ay->log ? ax_map(ay, pow(10, t[i]), SVG_H - MB, MT) : ax_map(ay, t[i], SVG_H - MB, MT);
        fprintf(f, "<line x1=\"%g\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", ML,
                SVG_W - MR, y, y);
        if (ay->log) fprintf(f, "<text x=\"%g\" y=\"%.1f\" class=\"yt\">1e%g</text>", ML - 4, y + 4, t[i]);
        else fprintf(f, "<text x=\"%g\" y=\"%.1f\" class=\"yt\">%.4g</text>", ML - 4, y + 4, t[i]);
    }
    n = ax_ticks(ax, t, 16);
    for (size_t i = 0; i < n; i++) {
        double x = ax_map(ax, t[i], ML, SVG_W - MR);
        fprintf(f, "<text x=\"%.1f\" y=\"%g\" class=\"xt\">%.4g</text>", x, SVG_H - MB + 14, t[i]);
    }
    fprintf(f, "<text x=\"%g\" y=\"%g\" class=\"xl\">", (ML + SVG_W - MR) / 2, SVG_H - 6);
    report_html_escape(f, xlabel);
    fputs("</text>", f);
}

static int finite_pt(const Series *s, size_t i, int logy)
{
    double x = s->x[i * s->xs], y = s->y[i * s->ys];
    return isfinite(x) && isfinite(y) && (!logy || y > 0);
}

/* One metric of several runs over a shared x. Returns 0 when nothing to draw. */
static int svg_lines(FILE *f, const char *title, const char *xlabel, const Series *s, size_t ns)
{
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (size_t k = 0; k < ns; k++)
        for (size_t i = 0; i < s[k].n; i++) {
            if (!finite_pt(&s[k], i, 0)) continue;
            double x = s[k].x[i * s[k].xs], y = s[k].y[i * s[k].ys];
            xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
        }
    if (!isfinite(xlo)) return 0;
    Axis ax, ay;
    ax_fit(&ax, xlo, xhi, 0);
    ax_fit(&ay, ylo, yhi, 1);
    svg_open(f, title);
    svg_axes(f, &ax, &ay, xlabel);
    for (size_t k = 0; k < ns; k++) {
        size_t every = s[k].n > 1500 ? s[k].n / 1500 : 1;   /* keep the page small */
        fprintf(f, "<polyline class=\"ln\" stroke=\"%s\" points=\"", palette[k % NPAL]);
        for (size_t i = 0; i < s[k].n; i += every) {
            if (!finite_pt(&s[k], i, ay.log)) continue;
            fprintf(f, "%.1f,%.1f ", ax_map(&ax, s[k].x[i * s[k].xs], ML, SVG_W - MR),
                    ax_map(&ay, s[k].y[i * s[k].ys], SVG_H - MB, MT));
        }
        fputs("\"/>", f);
        if (ns > 1) {
            fprintf(f, "<text x=\"%g\" y=\"%g\" class=\"lg\" fill=\"%s\">", SVG_W - MR - 4,
                    MT + 12 + 12.0 * (double)k, palette[k % NPAL]);
            report_html_escape(f, s[k].label);
            fputs("</text>", f);
        }
    }
    fputs("</svg>\n", f);
    return 1;
}

static void svg_bars(FILE *f, const char *title, const char *xlabel, const double *counts,
                     const double *edges, size_t n)
{
    double cmax = 0;
    for (size_t i = 0; i < n; i++) cmax = fmax(cmax, counts[i]);
    Axis ax, ay;
    ax_fit(&ax, edges[0], edges[n], 0);
    ax_fit(&ay, 0, cmax > 0 ? cmax : 1, 0);
    svg_open(f, title);
    svg_axes(f, &ax, &ay, xlabel);
    for (size_t i = 0; i < n; i++) {
        if (!(counts[i] > 0)) continue;
        double x0 = ax_map(&ax, edges[i], ML, SVG_W - MR), x1 = ax_map(&ax, edges[i + 1], ML, SVG_W - MR);
        double y = ax_map(&ay, counts[i], SVG_H - MB, MT);
        fprintf(f, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\">"
                   "<title>%.3g to %.3g: %.0f</title></rect>",
                x0, y, fmax(x1 - x0 - 0.5, 0.5), SVG_H - MB - y, edges[i], edges[i + 1], counts[i]);
    }
    fputs("</svg>\n", f);
}

/* ---- sections ---- */

static const char *RECON_KEYS[][2] = {   /* "seed" is the seed's figure */
    {"score", "score"}, {"seed", "seed"}, {"score_mean_abl", "score (mean abl)"},
    {"tokens", "tokens"}, {"clean_loss", "clean loss"}, {"recons_loss", "recons loss"},
    {"zero_abl_loss", "zero-abl loss"}, {"mean_abl_loss", "mean-abl loss"}, {"kl", "KL"},
    {"mse", "MSE"}, {"fvu", "FVU"}, {"l0", "L0"}, {"dead_frac", "dead"}, {"dense_frac", "dense"},
};
#define NRECON_KEYS (sizeof RECON_KEYS / sizeof *RECON_KEYS)

static const char *SAE_KEYS[] = {"file", "model", "hook", "arch", "d", "f", "k", "l1",
                                 "norm_scale", "tokens_seen", "best_step", "val"};
#define NSAE_KEYS (sizeof SAE_KEYS / sizeof *SAE_KEYS)

/* The SAE a recon row was scored with: by the path in its "sae", else by
 * position when there are as many SAE files as recon rows, else the only one. */
static const json_t *sae_for(const Report *r, const json_t *row, size_t idx)
{
    const char *p = json_string_value(json_object_get(row, "sae"));
    size_t i, n = json_array_size(r->saes);
    json_t *s;
    json_array_foreach(r->saes, i, s) {
        const char *file = json_string_value(json_object_get(s, "file"));
        if (p && file && (!strcmp(p, file) || !strcmp(base_name(p), base_name(file)))) return s;
    }
    if (n == json_array_size(r->recons)) return json_array_get(r->saes, idx);
    return n == 1 ? json_array_get(r->saes, 0) : NULL;
}

static const json_t *get2(const json_t *a, const json_t *b, const char *k)
{
    const json_t *v = json_object_get(a, k);
    return v ? v : json_object_get(b, k);
}

static void td_num(FILE *f, const json_t *v, int pct)
{
    if (!json_is_number(v)) { fputs("<td class=\"na\">&ndash;</td>", f); return; }
    double x = json_number_value(v);
    if (pct) fprintf(f, "<td>%.2f%%</td>", 100 * x);
    else if (x == floor(x) && fabs(x) < 1e15) fprintf(f, "<td>%.0f</td>", x);
    else fprintf(f, "<td>%.5g</td>", x);
}

static void section_recon(FILE *f, const Report *r)
{
    fputs("<section id=\"recon\"><h2>Reconstruction</h2>\n", f);
    if (!json_array_size(r->recons)) {
        fputs("<p class=\"na\">No recon-score output given.</p></section>\n", f);
        return;
    }
    fputs("<p>score = (zero-abl loss &minus; recons loss) / (zero-abl loss &minus; clean loss): "
          "the fraction of the loss the hooked activation carries that the dictionary's "
          "reconstruction recovers. The seed experiment (DistilGPT-2, last MLP, 3072 neurons) "
          "reported 77% for a 32x dictionary and 48% for 128x; its figure is shown where the "
          "setting matches.</p>\n<div class=\"scroll\"><table class=\"num\"><tr><th>dictionary</th>"
          "<th>model</th><th>hook</th><th>arch</th><th>D</th><th>F</th><th>F/D</th><th>k</th>", f);
    for (size_t j = 0; j < NRECON_KEYS; j++) fprintf(f, "<th>%s</th>", RECON_KEYS[j][1]);
    fputs("</tr>\n", f);
    size_t i;
    json_t *row;
    json_array_foreach(r->recons, i, row) {
        const json_t *s = sae_for(r, row, i);
        const char *label = json_string_value(json_object_get(s, "file"));
        if (!label) label = json_string_value(json_object_get(row, "sae"));
        if (!label) label = json_string_value(json_object_get(row, "file"));
        const char *model = json_string_value(get2(row, s, "model"));
        const char *hook = json_string_value(get2(row, s, "hook"));
        const char *arch = json_string_value(get2(row, s, "arch"));
        double d = json_number_value(get2(row, s, "d")), fz = json_number_value(get2(row, s, "f"));
        fputs("<tr><td class=\"l\">", f);
        report_html_escape(f, base_name(label));
        fputs("</td><td class=\"l\">", f);
        report_html_escape(f, model ? base_name(model) : "");
        fputs("</td><td class=\"l\">", f);
        report_html_escape(f, hook ? hook : "");
        fputs("</td><td class=\"l\">", f);
        report_html_escape(f, arch ? arch : "");
        fputs("</td>", f);
        td_num(f, get2(row, s, "d"), 0);
        td_num(f, get2(row, s, "f"), 0);
        if (d > 0 && fz > 0) fprintf(f, "<td>%gx</td>", fz / d);
        else fputs("<td class=\"na\">&ndash;</td>", f);
        td_num(f, get2(row, s, "k"), 0);
        double seed = report_seed_score(model, hook, d, fz);
        for (size_t j = 0; j < NRECON_KEYS; j++) {
            const char *k = RECON_KEYS[j][0];
            if (strcmp(k, "seed"))
                td_num(f, json_object_get(row, k), !strncmp(k, "score", 5) || strstr(k, "_frac") != NULL);
            else if (seed >= 0) fprintf(f, "<td class=\"seed\">%.0f%%</td>", 100 * seed);
            else fputs("<td class=\"na\">&ndash;</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table></div></section>\n", f);
}

/* Every distinct command of the run, inputs before their consumers: a
 * depth-first walk of the stream headers' "inputs". */
static void collect_commands(const json_t *h, json_t *seen, json_t *out, int depth)
{
    size_t i;
    json_t *in;
    if (depth < 16)
        json_array_foreach(json_object_get(h, "inputs"), i, in) collect_commands(in, seen, out, depth + 1);
    json_t *id = json_pack("[OO]", json_object_get(h, "stage") ? json_object_get(h, "stage") : json_null(),
                           json_object_get(h, "argv") ? json_object_get(h, "argv") : json_null());
    char *key = json_dumps(id, JSON_COMPACT);
    json_decref(id);
    if (key && !json_object_get(seen, key)) {
        json_object_set_new(seen, key, json_true());
        json_array_append(out, (json_t *)h);
    }
    free(key);
}

static void section_commands(FILE *f, const Report *r)
{
    json_t *seen = json_object(), *cmds = json_array(), *p, *h, *a;
    size_t i, j;
    json_array_foreach(r->prov, i, p)
        json_array_foreach(json_object_get(p, "headers"), j, h) collect_commands(h, seen, cmds, 0);
    if (json_array_size(cmds)) {
        fprintf(f, "<details><summary><b>Commands</b> (%zu)</summary>\n<div class=\"scroll\">"
                   "<table class=\"kv cmds\">\n", json_array_size(cmds));
        json_array_foreach(cmds, i, h) {
            const char *stage = json_string_value(json_object_get(h, "stage"));
            fputs("<tr><th>", f);
            report_html_escape(f, stage ? stage : "?");
            fputs("</th><td><code>", f);
            const json_t *av = json_object_get(h, "argv");
            size_t n = json_array_size(av), len = 0;
            json_array_foreach(av, j, a) {
                const char *s = json_string_value(a);
                if (len > 400) {   /* e.g. a corpus of hundreds of files */
                    fprintf(f, " &hellip; (%zu more arguments)", n - j);
                    break;
                }
                if (j) fputc(' ', f);
                report_html_escape(f, s ? s : "");
                len += s ? strlen(s) + 1 : 1;
            }
            fputs("</code></td></tr>\n", f);
        }
        fputs("</table></div></details>\n", f);
    }
    json_decref(seen);
    json_decref(cmds);
}

static void section_saes(FILE *f, const Report *r)
{
    fputs("<section id=\"params\"><h2>Run parameters</h2>\n", f);
    size_t n = json_array_size(r->saes), i;
    json_t *s;
    if (!n) fputs("<p class=\"na\">No SAE file given.</p>\n", f);
    if (n) {
        fputs("<div class=\"scroll\"><table class=\"kv\">\n", f);
        for (size_t j = 0; j < NSAE_KEYS; j++) {
            int any = 0;
            json_array_foreach(r->saes, i, s) any |= json_object_get(s, SAE_KEYS[j]) != NULL;
            if (!any) continue;
            fprintf(f, "<tr><th>%s</th>", SAE_KEYS[j]);
            json_array_foreach(r->saes, i, s) {
                const json_t *v = json_object_get(s, SAE_KEYS[j]);
                fputs("<td>", f);
                if (!strcmp(SAE_KEYS[j], "file")) report_html_escape(f, base_name(json_string_value(v)));
                else if (v) esc_json(f, v);
                fputs("</td>", f);
            }
            fputs("</tr>\n", f);
        }
        fputs("</table></div>\n", f);
    }
    if (r->dict_stats) {
        fputs("<p>Dictionary statistics (topk-ctx): ", f);
        const char *keys[] = {"f", "n_tokens", "dead", "dense"};
        for (size_t j = 0; j < 4; j++) {
            const json_t *v = json_object_get(r->dict_stats, keys[j]);
            if (!v) continue;
            fprintf(f, "%s%s = ", j ? ", " : "", keys[j]);
            esc_json(f, v);
        }
        fputs("</p>\n", f);
    }
    section_commands(f, r);
    fputs("</section>\n", f);
}

static int log_has_earlier(const Report *r, size_t i0, const char *name)
{
    for (size_t i = 0; i < i0; i++)
        for (size_t j = 0; j < r->logs[i].ncol; j++)
            if (!strcmp(r->logs[i].col[j], name)) return 1;
    return 0;
}

/* 1 when every finite value of every series is the same (and there is one). */
static int series_constant(const Series *s, size_t ns, double *v)
{
    int seen = 0;
    for (size_t k = 0; k < ns; k++)
        for (size_t i = 0; i < s[k].n; i++) {
            double y = s[k].y[i * s[k].ys];
            if (!isfinite(y)) continue;
            if (seen && y != *v) return 0;
            *v = y, seen = 1;
        }
    return seen;
}

static void section_curves(FILE *f, const Report *r)
{
    fputs("<section id=\"training\"><h2>Training curves</h2>\n", f);
    if (!r->nlog) {
        fputs("<p class=\"na\">No training log given.</p></section>\n", f);
        return;
    }
    /* x: tokens if every log has it, else step, else the row number */
    const char *xname = "tokens";
    for (int pass = 0; pass < 2; pass++) {
        int all = 1;
        for (size_t i = 0; i < r->nlog && all; i++) {
            all = 0;
            for (size_t j = 0; j < r->logs[i].ncol; j++) all |= !strcmp(r->logs[i].col[j], xname);
        }
        if (all) break;
        xname = pass ? "row" : "step";
    }
    Series *s = xcalloc(r->nlog, sizeof *s);
    double **rowno = xcalloc(r->nlog, sizeof *rowno);
    int drawn = 0;
    size_t nconst = 0;
    char *consts = xstrdup("");
    /* one plot per column (of any log) that is not an x column */
    for (size_t i0 = 0; i0 < r->nlog; i0++)
    for (size_t c = 0; c < r->logs[i0].ncol; c++) {
        const char *name = r->logs[i0].col[c];
        if (log_has_earlier(r, i0, name)) continue;
        if (!strcmp(name, "step") || !strcmp(name, "tokens") || !strcmp(name, "time") ||
            !strcmp(name, "elapsed")) continue;
        size_t ns = 0;
        for (size_t i = 0; i < r->nlog; i++) {
            const ReportLog *lg = &r->logs[i];
            long xc = -1, yc = -1;
            for (size_t j = 0; j < lg->ncol; j++) {
                if (!strcmp(lg->col[j], xname)) xc = (long)j;
                if (!strcmp(lg->col[j], name)) yc = (long)j;
            }
            if (yc < 0) continue;
            if (xc < 0 && !rowno[i]) {
                rowno[i] = xmalloc((lg->nrow + 1) * sizeof **rowno);
                for (size_t k = 0; k < lg->nrow; k++) rowno[i][k] = (double)k;
            }
            s[ns].x = xc >= 0 ? lg->v + xc : rowno[i];
            s[ns].xs = xc >= 0 ? lg->ncol : 1;
            s[ns].y = lg->v + yc;
            s[ns].ys = lg->ncol;
            s[ns].n = lg->nrow;
            s[ns].label = lg->label;
            ns++;
        }
        double cv = 0;
        if (series_constant(s, ns, &cv)) {   /* a flat line says less than its value */
            char item[320];
            snprintf(item, sizeof item, "%s%s = %.6g", nconst++ ? ", " : "", name, cv);
            consts = xrealloc(consts, strlen(consts) + strlen(item) + 1);
            strcat(consts, item);
            continue;
        }
        drawn |= svg_lines(f, name, xname, s, ns);
    }
    if (nconst) {
        fputs("<p class=\"fstat\">Constant throughout: ", f);
        report_html_escape(f, consts);
        fputs(".</p>\n", f);
    }
    free(consts);
    for (size_t i = 0; i < r->nlog; i++) free(rowno[i]);
    free(rowno);
    free(s);
    if (!drawn) fputs("<p class=\"na\">The logs have no rows with numbers to plot yet.</p>\n", f);
    fputs("</section>\n", f);
}

static void section_density(FILE *f, const Report *r)
{
    fputs("<section id=\"density\"><h2>Feature density</h2>\n", f);
    size_t dead = 0, dense = 0, live = 0;
    double lo = 0;
    for (size_t i = 0; i < r->ndens; i++) {
        double d = r->density[i];
        if (!(d > 0)) { dead++; continue; }
        live++;
        dense += d > 0.1;
        lo = fmin(lo, fmax(floor(log10(d) * 4) / 4, -12));
    }
    if (live) {
        size_t n = (size_t)(-lo * 4 + 0.5);
        if (!n) n = 1;
        double *cnt = xcalloc(n, sizeof *cnt), *edg = xmalloc((n + 1) * sizeof *edg);
        for (size_t b = 0; b <= n; b++) edg[b] = lo + 0.25 * (double)b;
        for (size_t i = 0; i < r->ndens; i++) {
            if (!(r->density[i] > 0)) continue;
            long b = (long)floor((log10(r->density[i]) - lo) * 4);
            cnt[b < 0 ? 0 : (size_t)b >= n ? n - 1 : (size_t)b]++;
        }
        svg_bars(f, "features by log10 density", "log10(fraction of tokens a feature fires on)",
                 cnt, edg, n);
        free(cnt);
        free(edg);
    } else if (r->nhist) {
        svg_bars(f, "features by log10 density", "log10 density", r->hist_counts, r->hist_edges, r->nhist);
    }
    if (live || r->nhist)
        fprintf(f, "<p>%zu features%s: %zu dead (never fired), %zu dense (fire on more than 10%% "
                   "of tokens).</p>\n", r->ndens, r->dens_from_stats ? "" : " with examples", dead, dense);
    else fputs("<p class=\"na\">No feature densities given (topk-ctx output).</p>\n", f);
    fputs("</section>\n", f);
}

/* ---- explanation scores: each scorer's numbers over the features, plain
 * and weighted by how often a feature fires (its density) ---- */
typedef struct { const char *key, *label; } ScoreKey;
static const ScoreKey SIM_KEYS[] = {{"score", "correlation"}, {"score_top", "correlation, top examples"},
                                    {"score_random", "correlation, random examples"}};
static const ScoreKey YES_NO_KEYS[] = {{"balanced_accuracy", "balanced accuracy"}, {"precision", "precision"},
                                       {"recall", "recall"}, {"f1", "F1"}, {"auroc", "AUROC"}};

/* One row: the mean of key (in the scorer's object unless simulation) over
 * the explained features that have it. 1 when a row was written. */
static int score_row(FILE *f, const Report *r, const char *scorer, const ScoreKey *k)
{
    size_t n = 0;
    double sum = 0, wsum = 0, w = 0;
    const char *id;
    const json_t *e;
    json_object_foreach(r->expl, id, e) {
        const char *st = json_string_value(json_object_get(e, "status"));
        const char *sc = json_string_value(json_object_get(e, "scorer"));
        if (!st || strcmp(st, "ok") || !sc || strcmp(sc, scorer)) continue;
        const json_t *o = strcmp(scorer, "simulation") ? json_object_get(e, scorer) : e;
        const json_t *v = json_object_get(o, k->key), *d = json_object_get(e, "density");
        if (!json_is_number(v)) continue;
        n++;
        sum += json_number_value(v);
        if (json_is_number(d) && json_number_value(d) > 0) {
            wsum += json_number_value(d) * json_number_value(v);
            w += json_number_value(d);
        }
    }
    if (!n) return 0;
    fprintf(f, "<tr><td>%s</td><td>%s</td><td>%zu</td><td>%.3f</td>", scorer, k->label, n, sum / (double)n);
    if (w > 0) fprintf(f, "<td>%.3f</td></tr>\n", wsum / w);
    else fputs("<td>&ndash;</td></tr>\n", f);
    return 1;
}

static void section_scores(FILE *f, const Report *r)
{
    fputs("<section id=\"scores\"><h2>Explanation scores</h2>\n", f);
    char *buf = NULL;
    size_t len = 0;
    FILE *t = open_memstream(&buf, &len);
    int rows = 0;
    for (size_t i = 0; t && i < sizeof SIM_KEYS / sizeof *SIM_KEYS; i++) rows += score_row(t, r, "simulation", &SIM_KEYS[i]);
    static const char *const yes_no[] = {"detection", "fuzzing"};
    for (size_t s = 0; t && s < 2; s++)
        for (size_t i = 0; i < sizeof YES_NO_KEYS / sizeof *YES_NO_KEYS; i++)
            rows += score_row(t, r, yes_no[s], &YES_NO_KEYS[i]);
    if (t) fclose(t);
    if (rows)
        fprintf(f, "<table><tr><th>scorer</th><th>metric</th><th>features</th><th>mean</th>"
                   "<th>weighted by frequency</th></tr>\n%s</table>\n", buf);
    free(buf);
    if (rows)
        fputs("<p>Over the features explained and scored (status ok) that have the number; the weighted mean "
              "weighs each feature by its density, the fraction of tokens it fires on. Detection asks which "
              "held-out examples have what the explanation describes, fuzzing whether the highlighted tokens "
              "are it (as EleutherAI's delphi); with yes/no answers AUROC equals the balanced accuracy.</p>\n", f);
    else fputs("<p class=\"na\">No explanation scores given (explain-gpt4 output).</p>\n", f);
    fputs("</section>\n", f);
}

static void prov_header(FILE *f, const json_t *h, int depth)
{
    const char *stage = json_string_value(json_object_get(h, "stage"));
    const char *ver = json_string_value(json_object_get(h, "version"));
    fputs("<li><b>", f);
    report_html_escape(f, stage ? stage : "?");
    fputs("</b> ", f);
    report_html_escape(f, ver ? ver : "");
    fputs(": <code>", f);
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(h, "argv"), i, a) {
        if (i) fputc(' ', f);
        report_html_escape(f, json_string_value(a));
    }
    fputs("</code>", f);
    const char *k;
    json_t *v;
    int any = 0;
    json_object_foreach((json_t *)h, k, v) {
        if (!strcmp(k, "stage") || !strcmp(k, "version") || !strcmp(k, "argv") || !strcmp(k, "inputs"))
            continue;
        fputs(any++ ? ", " : "<br><small>", f);
        report_html_escape(f, k);
        fputs(" = ", f);
        esc_json(f, v);
    }
    if (any) fputs("</small>", f);
    const json_t *in = json_object_get(h, "inputs");
    if (json_array_size(in) && depth < 8) {
        fputs("<ul>", f);
        json_array_foreach(in, i, a) prov_header(f, a, depth + 1);
        fputs("</ul>", f);
    }
    fputs("</li>\n", f);
}

static void section_provenance(FILE *f, const Report *r)
{
    fputs("<section id=\"provenance\"><h2>Provenance</h2>\n<p>Each input, with the command lines "
          "that made it and, nested, the inputs of those commands (from the stream headers).</p>\n",
          f);
    size_t i, j;
    json_t *p, *h;
    json_array_foreach(r->prov, i, p) {
        fputs("<details><summary>", f);
        report_html_escape(f, json_string_value(json_object_get(p, "role")));
        fputs(": ", f);
        report_html_escape(f, json_string_value(json_object_get(p, "file")));
        fputs("</summary><ul>", f);
        json_array_foreach(json_object_get(p, "headers"), j, h) prov_header(f, h, 0);
        fputs("</ul></details>\n", f);
    }
    for (i = 0; i < r->nlog; i++) {
        fputs("<details><summary>training log: ", f);
        report_html_escape(f, r->logs[i].label);
        fprintf(f, "</summary><p>%zu rows, columns:", r->logs[i].nrow);
        for (j = 0; j < r->logs[i].ncol; j++) {
            fputc(' ', f);
            report_html_escape(f, r->logs[i].col[j]);
        }
        fputs("</p></details>\n", f);
    }
    fputs("</section>\n", f);
}

#include "report_assets.h"

/* The browser's data: all of it here, or, in a directory (report_pages.c),
 * where the side files are. */
static void section_features(FILE *f, Report *r)
{
    fputs(REPORT_BROWSER_HTML, f);
    fputs("<script type=\"application/json\" id=\"saepipe-data\">", f);
    if (r->pages) {
        fprintf(f, "{\"pages\":\"features/\",\"n\":%zu}", r->nfeat);
    } else {
        fputs("{\"vocab\":", f);
        char *v = json_dumps(r->vocab, JSON_COMPACT | JSON_SORT_KEYS);
        report_json_script_escape(f, v);
        free(v);
        fputs(",\"features\":[", f);
        fflush(r->feat_f);
        report_json_script_escape(f, r->feat_buf);    /* escaped here, as everything in the page */
        fputs("\n]}", f);
    }
    fputs("</script>\n<script>", f);
    fputs(REPORT_ONERROR_JS, f);
    fputs("</script>\n<script>", f);
    fputs(REPORT_BROWSER_JS, f);
    fputs("</script>\n", f);
}

int report_write_html(Report *r, FILE *f)
{
    if (report_emit_unseen_explanations(r) < 0) return -1;
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>", f);
    report_html_escape(f, r->o.title);
    fputs("</title>\n<style>", f);
    fputs(REPORT_CSS, f);
    fputs("</style></head><body>\n<header><h1>", f);
    report_html_escape(f, r->o.title);
    size_t nok = 0, nfail = 0;
    const char *k;
    json_t *e;
    json_object_foreach(r->expl, k, e) {
        const char *st = json_string_value(json_object_get(e, "status"));
        if (st && !strcmp(st, "failed")) nfail++;
        else nok++;
    }
    fprintf(f, "</h1><p class=\"sub\">saepipe " SAEPIPE_VERSION " report: %zu features in the "
               "browser, %zu explained, %zu explanations failed.</p>\n<nav><a href=\"#params\">"
               "parameters</a> <a href=\"#recon\">reconstruction</a> <a href=\"#training\">training"
               "</a> <a href=\"#density\">density</a> <a href=\"#scores\">scores</a> <a href=\"#features\">features</a> "
               "<a href=\"#provenance\">provenance</a></nav></header>\n",
            r->nfeat, nok, nfail);
    section_saes(f, r);
    section_recon(f, r);
    section_curves(f, r);
    section_density(f, r);
    section_scores(f, r);
    section_features(f, r);
    section_provenance(f, r);
    fputs("</body></html>\n", f);
    fflush(f);
    if (ferror(f)) {
        snprintf(r->err, sizeof r->err, "write failed");
        return -1;
    }
    return 0;
}
