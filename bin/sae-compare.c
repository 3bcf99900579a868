/* sae-compare: two or more dictionaries of one hook side by side: decoder
 * and activation matching, feature splitting, explanation duplication and
 * breadth per size. The work is in lib/compare*.c (compare.h). */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: sae-compare [OPTIONS] SAE.tsz SAE.tsz [SAE.tsz...] > COMPARE.tsz\n"
"Set two or more SAEs of one hook (same D) side by side, smallest first: best\n"
"matches of each latent in the next smaller and larger dictionary by decoder\n"
"cosine (MMCS both ways) and by activation correlation on a sample, each\n"
"smaller latent's children in the next larger dictionary (a tree), and per\n"
"dictionary the share of duplicate explanations and of broad features.\n"
"\n"
"Inputs (-F, -e, -r: one per SAE, in the order of the SAE files):\n"
"  -a, --acts FILE         activation rows (mlp-tap acts) of the SAEs' hook\n"
"      --rows N            rows of --acts in the sample, the first N [Default: 4096]\n"
"  -F, --features FILE     topk-ctx output of the dictionary\n"
"  -e, --explanations FILE explain-gpt4 output of the dictionary\n"
"  -r, --recon FILE        recon-score output of the dictionary\n"
"Rules (sae-compare(1) states them):\n"
"      --cos-min C         child: decoder cosine with its parent [Default: 0.5]\n"
"      --cover-min S       child: share of its firing rows where the parent\n"
"                          fires [Default: 0.5]\n"
"      --near-min J        near-duplicate explanations: Jaccard of word sets\n"
"                          [Default: 0.8]\n"
"      --broad-density P   broad: density above P [Default: 0.01]\n"
"      --broad-spread S    broad: distinct tokens over top examples above S\n"
"                          [Default: 0.5]\n"
"      --broad-min-top N   ... with at least N top examples [Default: 5]\n"
"      --tree-roots N      splitting trees in the summary [Default: 20]\n"
"      --tree-children N   children listed per node [Default: 12]\n"
"Output:\n"
"  -s, --summary FILE      also write the summary as JSON to FILE (atomically)\n");
    sp_stage_help(f, 24, "the stream");
    fprintf(f,
"\n"
"Memory: every SAE, the sample's activations, and 256 x F floats. Exit status:\n"
"0 on success, 1 on a bad or unreadable input, 2 on bad usage.\n");
    exit(status);
}

typedef struct {
    const char *output, *summary, *acts;
    const char **feat, **expl, **recon;   /* (argc) in SAE order */
    size_t nfeat, nexpl, nrecon;
    uint64_t rows;
    int force, progress;
    CmpOpts c;
} Opts;

static void parse_args(Opts *o, int argc, char **argv)
{
    enum { O_ROWS = 256, O_COS, O_COVER, O_NEAR, O_BDENS, O_BSPREAD, O_BTOP, O_ROOTS, O_KIDS };
    static const struct option longs[] = {
        {"acts", required_argument, 0, 'a'}, {"rows", required_argument, 0, O_ROWS},
        {"features", required_argument, 0, 'F'}, {"explanations", required_argument, 0, 'e'},
        {"recon", required_argument, 0, 'r'}, {"summary", required_argument, 0, 's'},
        {"cos-min", required_argument, 0, O_COS}, {"cover-min", required_argument, 0, O_COVER},
        {"near-min", required_argument, 0, O_NEAR}, {"broad-density", required_argument, 0, O_BDENS},
        {"broad-spread", required_argument, 0, O_BSPREAD}, {"broad-min-top", required_argument, 0, O_BTOP},
        {"tree-roots", required_argument, 0, O_ROOTS}, {"tree-children", required_argument, 0, O_KIDS},
        SP_STAGE_LONGOPTS,
    };
    *o = (Opts){.rows = 4096};
    cmp_opts_default(&o->c);
    o->feat = xcalloc((size_t)argc, sizeof *o->feat), o->expl = xcalloc((size_t)argc, sizeof *o->expl);
    o->recon = xcalloc((size_t)argc, sizeof *o->recon);
    int c;
    while ((c = getopt_long(argc, argv, "a:F:e:r:s:o:fhV", longs, NULL)) != -1) {
        switch (c) {
        case 'a': o->acts = optarg; break;
        case O_ROWS: o->rows = sp_opt_u64("--rows", optarg, 2, 1u << 24); break;
        case 'F': o->feat[o->nfeat++] = optarg; break;
        case 'e': o->expl[o->nexpl++] = optarg; break;
        case 'r': o->recon[o->nrecon++] = optarg; break;
        case 's': o->summary = optarg; break;
        case O_COS: o->c.cos_min = sp_opt_double("--cos-min", optarg, -1, 1); break;
        case O_COVER: o->c.cover_min = sp_opt_double("--cover-min", optarg, 0, 1); break;
        case O_NEAR: o->c.near_min = sp_opt_double("--near-min", optarg, 0.01, 1); break;
        case O_BDENS: o->c.broad_density = sp_opt_double("--broad-density", optarg, 0, 1); break;
        case O_BSPREAD: o->c.broad_spread = sp_opt_double("--broad-spread", optarg, 0, 1); break;
        case O_BTOP: o->c.broad_min_top = sp_opt_u64("--broad-min-top", optarg, 1, 1u << 20); break;
        case O_ROOTS: o->c.tree_roots = sp_opt_u64("--tree-roots", optarg, 0, 1u << 20); break;
        case O_KIDS: o->c.tree_children = sp_opt_u64("--tree-children", optarg, 0, 1u << 20); break;
        default: sp_stage_opt(c, &o->output, &o->force, &o->progress, usage);
        }
    }
    size_t n = (size_t)(argc - optind);
    if (n < 2) sp_usage_die("give two or more SAE files (got %zu)", n);
    const struct { const char *flag; size_t k; } per[] = {
        {"--features", o->nfeat}, {"--explanations", o->nexpl}, {"--recon", o->nrecon}};
    for (size_t i = 0; i < sizeof per / sizeof *per; i++)
        if (per[i].k && per[i].k != n)
            sp_usage_die("%zu %s for %zu SAE files: give one per SAE, in their order", per[i].k, per[i].flag, n);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Opts o;
    parse_args(&o, argc, argv);
    if (!o.output || !strcmp(o.output, "-")) sp_check_binary_stdout(o.force);
    Cmp c;
    cmp_init(&c, &o.c);
    size_t n = (size_t)(argc - optind);
    SpProgress pr;
    sp_progress_init(&pr, o.progress, "inputs", "SAEs", n);
    for (size_t i = 0; i < n; i++) {
        if (cmp_add_sae(&c, argv[optind + i]) < 0) sp_die("%s", c.err);
        sp_progress_update(&pr, i + 1);
    }
    sp_progress_end(&pr);
    for (size_t i = 0; i < n; i++)
        if ((o.nfeat && cmp_add_topk(&c, i, o.feat[i]) < 0) || (o.nexpl && cmp_add_explanations(&c, i, o.expl[i]) < 0) ||
            (o.nrecon && cmp_add_recon(&c, i, o.recon[i]) < 0))
            sp_die("%s", c.err);
    if (o.acts && cmp_add_acts(&c, o.acts, o.rows) < 0) sp_die("%s", c.err);
    if (cmp_run(&c) < 0) sp_die("%s", c.err);

    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    TszWriter *w = tsz_writer_open(o.output ? o.output : "-", "sae-compare", argc, argv, &wo);
    tsz_writer_check(w);
    if (cmp_write(&c, w) < 0) {
        tsz_writer_abort(w);
        sp_die("%s", c.err);
    }
    if (o.summary) {
        json_t *s = cmp_summary(&c);
        char *txt = json_dumps(s, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
        size_t len = strlen(txt);
        txt = xrealloc(txt, len + 2);
        txt[len++] = '\n';
        if (sp_write_file_atomic(o.summary, txt, len) < 0) {
            tsz_writer_abort(w);
            sp_die("%s: %s", o.summary, strerror(errno));
        }
        free(txt);
        json_decref(s);
    }
    tsz_writer_close_or_die(w);
    cmp_free(&c);
    free(o.feat), free(o.expl), free(o.recon);
    return 0;
}
