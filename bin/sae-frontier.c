/* sae-frontier: the sparsity-fidelity frontier as an SVG: FVU and KL against
 * L0 (log scale), one curve per architecture, from the table that
 * pipelines/frontier.mk writes (frontier-table.sh). A plain SVG file, no
 * script: it opens in a browser, a README or an image viewer. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: sae-frontier [OPTIONS] [TABLE.tsv | -] > FRONTIER.svg\n"
"Draw FVU and KL against L0, one curve per architecture, from a frontier\n"
"table (TSV with a header line naming at least the columns arch, l0, fvu\n"
"and kl, as pipelines/frontier.mk writes it).\n"
"\n"
"Options:\n"
"  -t, --title TEXT    title above the panels [Default: none]\n"
"  -o, --output FILE   write the SVG to FILE, atomically [Default: stdout]\n"
"  -h, --help          this help\n"
"  -V, --version       version\n"
"\n"
"Exit status: 0 on success, 1 on a bad input, 2 on bad usage.\n");
    exit(status);
}

enum { C_ARCH, C_L0, C_FVU, C_KL, NCOL };
static const char *col_names[NCOL] = {"arch", "l0", "fvu", "kl"};

typedef struct {
    int arch; /* index into the arch names */
    double v[NCOL];
} Point;

typedef struct {
    Point *p;
    size_t n, cap;
    char *arch[16];
    size_t narch;
} Table;

/* the index of arch name s, added when new; -1 when there are too many */
static int arch_index(Table *t, const char *s)
{
    for (size_t i = 0; i < t->narch; i++)
        if (!strcmp(t->arch[i], s)) return (int)i;
    if (t->narch == sizeof t->arch / sizeof *t->arch) return -1;
    t->arch[t->narch] = xstrdup(s);
    return (int)t->narch++;
}

/* splits line at tabs in place: up to max fields, returns their count */
static size_t split_tabs(char *line, char **f, size_t max)
{
    size_t n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *s = line; n < max; s++) {
        f[n++] = s;
        s = strchr(s, '\t');
        if (!s) break;
        *s = 0;
    }
    return n;
}

static void read_table(FILE *in, const char *name, Table *t)
{
    char *line = NULL, *f[64];
    size_t cap = 0, lineno = 1;
    int col[NCOL];
    if (getline(&line, &cap, in) < 0) sp_die("%s: empty (want a header line)", name);
    size_t nf = split_tabs(line, f, 64);
    for (int c = 0; c < NCOL; c++) {
        col[c] = -1;
        for (size_t i = 0; i < nf; i++)
            if (!strcmp(f[i], col_names[c])) col[c] = (int)i;
        if (col[c] < 0) sp_die("%s: no column '%s' in the header line", name, col_names[c]);
    }
    while (getline(&line, &cap, in) >= 0) {
        lineno++;
        if (line[strspn(line, "\r\n")] == 0) continue;
        nf = split_tabs(line, f, 64);
        Point p = {0};
        for (int c = 0; c < NCOL; c++) {
            if ((size_t)col[c] >= nf) sp_die("%s: line %zu: %zu fields, no '%s'", name, lineno, nf, col_names[c]);
            const char *s = f[col[c]];
            if (c == C_ARCH) {
                if (!*s) sp_die("%s: line %zu: empty arch", name, lineno);
                if ((p.arch = arch_index(t, s)) < 0) sp_die("%s: line %zu: more than 16 archs", name, lineno);
                continue;
            }
            if (sp_parse_double(s, &p.v[c]) < 0 || !isfinite(p.v[c]) || p.v[c] < 0)
                sp_die("%s: line %zu: %s '%s' is not a number >= 0", name, lineno, col_names[c], s);
        }
        if (p.v[C_L0] <= 0) sp_die("%s: line %zu: l0 must be > 0 (a log axis)", name, lineno);
        if (t->n == t->cap) t->p = xrealloc(t->p, (t->cap = t->cap ? 2 * t->cap : 64) * sizeof *t->p);
        t->p[t->n++] = p;
    }
    if (ferror(in)) sp_die("%s: read error: %s", name, strerror(errno));
    if (!t->n) sp_die("%s: no rows after the header line", name);
    free(line);
}

static int by_arch_l0(const void *a, const void *b)
{
    const Point *x = a, *y = b;
    if (x->arch != y->arch) return x->arch - y->arch;
    return (x->v[C_L0] > y->v[C_L0]) - (x->v[C_L0] < y->v[C_L0]);
}

/* ---- drawing ---- */
static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                               "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
enum { PW = 400, PH = 280, ML = 64, MR = 20, MT = 56, MB = 48 }; /* panel size and margins */

static void xml_text(FILE *o, const char *s)
{
    for (; *s; s++) {
        if (*s == '&') fputs("&amp;", o);
        else if (*s == '<') fputs("&lt;", o);
        else if (*s == '>') fputs("&gt;", o);
        else fputc(*s, o);
    }
}

/* a step of 1, 2 or 5 times a power of ten giving about 5 ticks up to hi */
static double nice_step(double hi)
{
    double raw = hi / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
}

/* one panel at x offset ox: column c against L0 */
static void panel(FILE *o, const Table *t, int c, const char *label, int ox)
{
    double lo = INFINITY, hi = -INFINITY, ymax = 0;
    for (size_t i = 0; i < t->n; i++) {
        lo = fmin(lo, log2(t->p[i].v[C_L0])), hi = fmax(hi, log2(t->p[i].v[C_L0]));
        ymax = fmax(ymax, t->p[i].v[c]);
    }
    lo = floor(lo - 0.25), hi = ceil(hi + 0.25);
    double step = nice_step(ymax > 0 ? ymax * 1.05 : 1), ytop = step * ceil((ymax > 0 ? ymax * 1.05 : 1) / step);
#define X(l0) (ox + ML + (log2(l0) - lo) / (hi - lo) * PW)
#define Y(v) (MT + PH - (v) / ytop * PH)
    fprintf(o, "<g font-size=\"12\">\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n",
            ox + ML, MT, PW, PH);
    for (double e = lo; e <= hi; e++) {
        double x = X(pow(2, e));
        fprintf(o, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                x, MT, x, MT + PH, x, MT + PH + 16, pow(2, e));
    }
    for (double v = 0; v <= ytop * (1 + 1e-9); v += step) {
        double y = Y(v);
        fprintf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                ox + ML, y, ox + ML + PW, y, ox + ML - 6, y + 4, v);
    }
    fprintf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">L0 (active latents per token, log scale)</text>\n",
            ox + ML + PW / 2, MT + PH + 36);
    fprintf(o, "<text transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\">%s</text>\n", ox + 16,
            MT + PH / 2, label);
    for (size_t i = 0; i < t->n;) {
        size_t j = i;
        const char *col = colors[t->p[i].arch % (sizeof colors / sizeof *colors)];
        fprintf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (; j < t->n && t->p[j].arch == t->p[i].arch; j++)
            fprintf(o, "%s%.1f,%.1f", j > i ? " " : "", X(t->p[j].v[C_L0]), Y(t->p[j].v[c]));
        fputs("\"/>\n", o);
        for (size_t q = i; q < j; q++)
            fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>%s L0 %.4g %s %.4g</title></circle>\n",
                    X(t->p[q].v[C_L0]), Y(t->p[q].v[c]), col, t->arch[t->p[q].arch], t->p[q].v[C_L0], col_names[c],
                    t->p[q].v[c]);
        i = j;
    }
    fputs("</g>\n", o);
#undef X
#undef Y
}

static void draw(FILE *o, const Table *t, const char *title)
{
    int w = 2 * (ML + PW + MR), h = MT + PH + MB + 24;
    fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", w, h, w, h);
    if (title) {
        fprintf(o, "<text x=\"%d\" y=\"20\" font-size=\"15\" text-anchor=\"middle\">", w / 2);
        xml_text(o, title);
        fputs("</text>\n", o);
    }
    for (size_t a = 0; a < t->narch; a++) { /* the legend, one entry an arch */
        int x = ML + (int)a * 120;
        fprintf(o, "<line x1=\"%d\" y1=\"38\" x2=\"%d\" y2=\"38\" stroke=\"%s\" stroke-width=\"3\"/>"
                   "<text x=\"%d\" y=\"42\" font-size=\"12\">", x, x + 20, colors[a % (sizeof colors / sizeof *colors)], x + 26);
        xml_text(o, t->arch[a]);
        fputs("</text>\n", o);
    }
    panel(o, t, C_FVU, "FVU (fraction of variance unexplained)", 0);
    panel(o, t, C_KL, "KL(clean || spliced), nats per token", ML + PW + MR);
    fputs("</svg>\n", o);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    static const struct option longs[] = {
        {"title", required_argument, 0, 't'}, {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
    };
    const char *out = NULL, *title = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "t:o:hV", longs, NULL)) != -1) {
        switch (c) {
        case 't': title = optarg; break;
        case 'o': out = optarg; break;
        case 'h': usage(stdout, 0);
        case 'V': sp_print_version();
        default: sp_usage_try();   // getopt said what was wrong
        }
    }
    const char *in = optind < argc ? argv[optind++] : "-";
    if (optind < argc) sp_usage_die("unexpected argument '%s'", argv[optind]);
    FILE *f = strcmp(in, "-") ? fopen(in, "r") : stdin;
    if (!f) sp_die("%s: cannot open: %s", in, strerror(errno));
    Table t = {0};
    read_table(f, sp_in_name(in), &t);
    if (f != stdin) fclose(f);
    qsort(t.p, t.n, sizeof *t.p, by_arch_l0);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) sp_die("out of memory");
    draw(m, &t, title);
    fclose(m);
    if (out && strcmp(out, "-")) {
        if (sp_write_file_atomic(out, buf, len) < 0) sp_die("%s: cannot write: %s", out, strerror(errno));
    } else if (fwrite(buf, 1, len, stdout) != len || fflush(stdout)) {
        sp_die("stdout: write error: %s", strerror(errno));
    }
    free(buf);
    for (size_t a = 0; a < t.narch; a++) free(t.arch[a]);
    free(t.p);
    return 0;
}
