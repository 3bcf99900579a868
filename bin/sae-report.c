/* sae-report: one self-contained HTML page about a run: parameters and
 * provenance, reconstruction scores beside the seed's, training curves,
 * the feature density histogram and a searchable feature browser; or, with
 * --pages, the same as a directory whose features load by page.
 * The work is in lib/report*.c (see report.h). */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "report_compare.h"

static void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: sae-report [OPTIONS] [-o REPORT.html | --pages DIR]\n"
"Write one self-contained HTML page (inline CSS, JS and SVG; opens from file://)\n"
"about a run from the streams its stages wrote, or with --pages a directory\n"
"whose features load by page (any dictionary size). Give at least one input.\n"
"FILE '-' is standard input (for one of the inputs).\n"
"\n"
"Inputs (each repeatable):\n"
"  -r, --recon FILE          recon-score output: one table row per record\n"
"  -s, --sae FILE            SAE file from sae-fit or sae-convert (metadata only)\n"
"  -l, --log [LABEL=]FILE    sae-fit training log, TSV with a header line or JSON\n"
"                            lines; several logs are overlaid [Default LABEL: file name]\n"
"  -e, --explanations FILE   explain-gpt4 output\n"
"  -F, --features FILE       topk-ctx output (feature records and dict_stats)\n"
"      --compare FILE        sae-compare output: a page of its own comparing the\n"
"                            dictionaries (give no other input)\n"
"\n"
"Options:\n"
"  -o, --output FILE         write the page to FILE, atomically [Default: stdout]\n"
"  -D, --pages DIR           write DIR/index.html and the features in side files\n"
"                            DIR/features/*.js, loaded by page; DIR appears whole\n"
"                            (an earlier report there is replaced)\n"
"      --chunk N             features per side file with --pages [Default: 1000]\n"
"  -t, --title TEXT          page title [Default: saepipe report]\n"
"      --max-top N           top examples per feature in the page [Default: 10]\n"
"      --max-random N        random examples per feature [Default: 5]\n"
"      --max-band N          examples per activation quantile band [Default: 2]\n"
"      --context-before N    tokens kept before an example's maximum [Default: 24]\n"
"      --context-after N     tokens kept after it [Default: 8]\n"
"      --max-features N      features in the browser, 0 for all [Default: 0]\n"
"      --progress            show progress on stderr\n"
"  -h, --help                this help\n"
"  -V, --version             version\n"
"\n"
"Exit status: 0 on success, 1 on a bad or unreadable input, 2 on bad usage.\n");
    exit(status);
}

typedef struct { char role; const char *arg; } Input;

/* Die with the report's error, after report_free has removed the half-made
 * directory of --pages. */
static void fail(Report *r)
{
    char msg[sizeof r->err];
    snprintf(msg, sizeof msg, "%s", report_error(r));
    report_free(r);
    sp_die("%s", msg);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    ReportOpts o;
    report_opts_default(&o);
    const char *output = NULL, *pages = NULL;
    int progress = 0;
    Input *in = xcalloc((size_t)argc + 1, sizeof *in);
    size_t nin = 0;
    enum { O_TOP = 256, O_RND, O_BAND, O_BEFORE, O_AFTER, O_MAXF, O_PROGRESS, O_COMPARE, O_CHUNK };
    const char *compare = NULL;
    static const struct option lo[] = {
        {"recon", required_argument, 0, 'r'}, {"sae", required_argument, 0, 's'},
        {"log", required_argument, 0, 'l'}, {"explanations", required_argument, 0, 'e'},
        {"features", required_argument, 0, 'F'}, {"output", required_argument, 0, 'o'},
        {"pages", required_argument, 0, 'D'}, {"chunk", required_argument, 0, O_CHUNK},
        {"title", required_argument, 0, 't'}, {"max-top", required_argument, 0, O_TOP},
        {"max-random", required_argument, 0, O_RND}, {"max-band", required_argument, 0, O_BAND},
        {"context-before", required_argument, 0, O_BEFORE},
        {"context-after", required_argument, 0, O_AFTER},
        {"max-features", required_argument, 0, O_MAXF}, {"progress", no_argument, 0, O_PROGRESS},
        {"compare", required_argument, 0, O_COMPARE},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "r:s:l:e:F:o:D:t:hV", lo, NULL)) != -1) {
        switch (c) {
        case 'r': case 's': case 'l': case 'e': case 'F':
            in[nin].role = (char)c, in[nin++].arg = optarg;
            break;
        case 'o': output = optarg; break;
        case 'D': pages = optarg; break;
        case O_CHUNK: o.chunk = sp_opt_u64("--chunk", optarg, 1, 1000000); break;
        case 't': o.title = optarg; break;
        case O_TOP: o.max_top = sp_opt_u64("--max-top", optarg, 0, 1000); break;
        case O_RND: o.max_random = sp_opt_u64("--max-random", optarg, 0, 1000); break;
        case O_BAND: o.max_band = sp_opt_u64("--max-band", optarg, 0, 1000); break;
        case O_BEFORE: o.ctx_before = sp_opt_u64("--context-before", optarg, 0, 100000); break;
        case O_AFTER: o.ctx_after = sp_opt_u64("--context-after", optarg, 0, 100000); break;
        case O_MAXF: o.max_features = sp_opt_u64("--max-features", optarg, 0, UINT32_MAX); break;
        case O_PROGRESS: progress = 1; break;
        case O_COMPARE: compare = optarg; break;
        case 'h': usage(stdout, 0); break;
        case 'V': sp_print_version(); break;
        default: sp_usage_try();   // getopt said what was wrong
        }
    }
    if (optind < argc) sp_usage_die("unexpected argument '%s'", argv[optind]);
    if (compare && (nin || pages)) sp_usage_die("--compare makes one page of its own: give no other input, and -o, not --pages");
    if (!nin && !compare)
        sp_usage_die("nothing to report: give --recon, --sae, --log, --explanations or --features");
    size_t nstdin = 0;
    for (size_t i = 0; i < nin; i++) nstdin += in[i].role != 'l' && !strcmp(in[i].arg, "-");
    if (nstdin > 1) sp_usage_die("only one input can be stdin");
    if (output && pages) sp_usage_die("--output and --pages exclude each other");
    if (pages && !pages[0]) sp_usage_die("--pages: empty directory name");

    Report r;
    if (report_init(&r, &o) < 0) sp_die("%s", report_error(&r));
    if (pages && report_pages_begin(&r, pages) < 0) sp_die("%s", report_error(&r));
    SpProgress pr;
    sp_progress_init(&pr, progress, "inputs", "files", nin);
    /* explanations before features: features are joined with them as they stream */
    static const char order[] = "srleF";
    size_t done = 0;
    for (const char *role = order; *role; role++) {
        for (size_t i = 0; i < nin; i++) {
            if (in[i].role != *role) continue;
            int rc = 0;
            const char *a = in[i].arg, *eq = strchr(a, '=');
            char label[256];
            switch (*role) {
            case 's': rc = report_add_sae(&r, a); break;
            case 'r': rc = report_add_recon(&r, a); break;
            case 'e': rc = report_add_explanations(&r, a); break;
            case 'F': rc = report_add_features(&r, a); break;
            case 'l':
                if (eq && eq > a && (size_t)(eq - a) < sizeof label) {
                    snprintf(label, sizeof label, "%.*s", (int)(eq - a), a);
                    rc = report_add_log(&r, eq + 1, label);
                } else {
                    rc = report_add_log(&r, a, NULL);
                }
                break;
            }
            if (rc < 0) fail(&r);
            sp_progress_update(&pr, ++done);
        }
    }
    sp_progress_end(&pr);

    if (pages) {
        if (report_write_pages(&r) < 0) fail(&r);
        report_free(&r);
        free(in);
        return 0;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = output ? open_memstream(&buf, &len) : stdout;
    if (!mf) sp_die("cannot open a memory stream");
    char cerr[1024];
    if (compare && report_compare_html(compare, o.title, mf, cerr, sizeof cerr) < 0) sp_die("%s", cerr);
    if (!compare && report_write_html(&r, mf) < 0) sp_die("%s: %s", sp_out_name(output), report_error(&r));
    if (output) {
        if (fclose(mf) != 0) sp_die("%s: write failed", output);
        if (sp_write_file_atomic(output, buf, len) < 0) sp_die("%s: %s", output, strerror(errno));
        free(buf);
    } else if (fclose(stdout) != 0) {
        sp_die("stdout: write failed: %s", strerror(errno));
    }
    report_free(&r);
    free(in);
    return 0;
}
