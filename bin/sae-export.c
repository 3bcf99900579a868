/* sae-export: a run's features in another tool's layout. One layout for
 * now, Neuronpedia's feature JSON (lib/neuronpedia.c), from topk-ctx
 * output (examples, density, histogram, logit effects) and explain-gpt4
 * output (explanations and scores).
 *
 * A stage of its own rather than a mode of sae-report: the export is data
 * for another program, not a page, and it reads the streams record by
 * record, so a 393,216-feature run never sits in memory at once. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "fetch.h"
#include "kinds.h"
#include "neuronpedia.h"
#include "stream.h"
#include "topkctx.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: sae-export --neuronpedia DIR [OPTIONS] TOPK.tsz\n"
"Write a run's features in Neuronpedia's feature JSON layout: DIR/features/\n"
"batch-N.json (activations with tokens and values, positive and negative\n"
"logits, frac_nonzero, activation histogram), DIR/explanations/batch-N.json\n"
"and, last, DIR/manifest.json. TOPK.tsz is topk-ctx output made with --model\n"
"(and --sae for the logits).\n"
"\n"
"Options:\n"
"      --neuronpedia DIR   the directory to write (made if absent)\n"
"  -e, --explanations FILE explain-gpt4 output: explanations and scores\n"
"  -m, --model DIR|ID      tokenizer for the tokens' text (raw text; bytes that\n"
"                          are not whole UTF-8 characters as U+FFFD) [Default:\n"
"                          the records' token_strs, display strings]\n"
"  -s, --sae FILE          the SAE (its metadata only): layer from its \"hook\",\n"
"                          model id from its \"model\"\n"
"      --layer N           the layer [Default: the SAE's hook, else topk-ctx's\n"
"                          logits header]\n"
"      --model-id ID       Neuronpedia's model id, e.g. gpt2-small [Default: the\n"
"                          SAE's \"model\"]\n"
"      --sae-set NAME      the SAE set; the source is LAYER-NAME [Default: saepipe]\n"
"      --dataset NAME      each feature's \"dataset\" [Default: empty]\n"
"      --batch N           features per file [Default: 128]\n"
"  -f, --force             write into a directory that holds an export already\n"
"  -h, --help              this help\n"
"  -V, --version           version\n"
"\n"
"Exit status: 0 on success, 1 on a bad input, 2 on bad usage.\n");
    exit(status);
}

typedef struct {
    const char *dir, *expl, *sae, *model_id, *sae_set, *dataset, *topk, *tokenizer;
    long layer;         /* -1: not given */
    size_t batch;
    int force;
} Opts;

static void parse_args(Opts *o, int argc, char **argv)
{
    enum { O_NP = 256, O_LAYER, O_MODEL_ID, O_SET, O_DATASET, O_BATCH };
    static const struct option longs[] = {
        {"neuronpedia", required_argument, 0, O_NP}, {"explanations", required_argument, 0, 'e'},
        {"sae", required_argument, 0, 's'}, {"model", required_argument, 0, 'm'}, {"layer", required_argument, 0, O_LAYER},
        {"model-id", required_argument, 0, O_MODEL_ID}, {"sae-set", required_argument, 0, O_SET},
        {"dataset", required_argument, 0, O_DATASET}, {"batch", required_argument, 0, O_BATCH},
        {"force", no_argument, 0, 'f'}, {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    *o = (Opts){.sae_set = "saepipe", .dataset = "", .layer = -1, .batch = 128};
    int c;
    while ((c = getopt_long(argc, argv, "e:s:m:fhV", longs, NULL)) != -1) {
        switch (c) {
        case O_NP: o->dir = optarg; break;
        case 'e': o->expl = optarg; break;
        case 's': o->sae = optarg; break;
        case 'm': o->tokenizer = optarg; break;
        case O_LAYER: o->layer = (long)sp_opt_u64("--layer", optarg, 0, 100000); break;
        case O_MODEL_ID: o->model_id = optarg; break;
        case O_SET: o->sae_set = optarg; break;
        case O_DATASET: o->dataset = optarg; break;
        case O_BATCH: o->batch = sp_opt_u64("--batch", optarg, 1, 1000000); break;
        case 'f': o->force = 1; break;
        case 'h': usage(stdout, 0);
        case 'V': sp_print_version();
        default: sp_usage_try();
        }
    }
    if (!o->dir) sp_usage_die("--neuronpedia DIR is needed (the one layout sae-export writes)");
    if (argc - optind != 1) sp_usage_die("one topk-ctx output to export, got %d", argc - optind);
    if (!o->sae_set[0] || strchr(o->sae_set, '/')) sp_usage_die("--sae-set must be a non-empty name without '/'");
    o->topk = argv[optind];
}

/* "blocks.L...." -> L, or -1. */
static long hook_layer(const char *hook)
{
    char *end;
    if (!hook || strncmp(hook, "blocks.", 7)) return -1;
    long l = strtol(hook + 7, &end, 10);
    return end > hook + 7 && *end == '.' ? l : -1;
}

/* The SAE's "hook" and "model": from its header, else its first record. */
static void read_sae_meta(Opts *o, char **hook, char **model)
{
    TszReader *r = tsz_reader_open(o->sae);
    tsz_reader_check(r);
    const json_t *h = tsz_reader_header(r);
    TszRecord rec;
    tsz_record_init(&rec);
    if (!json_object_get(h, "hook") && tsz_read_or_die(r, &rec)) {
        char err[400];
        if (sp_kind_check(&rec, SP_K_SAE, err, sizeof err) < 0) sp_die("%s: record 1: %s", o->sae, err);
        h = rec.meta;
    }
    const char *hk = json_string_value(json_object_get(h, "hook")), *md = json_string_value(json_object_get(h, "model"));
    *hook = hk ? strdup(hk) : NULL, *model = md && md[0] ? strdup(md) : NULL;
    tsz_record_free(&rec);
    tsz_reader_close(r);
}

/* A token's text as Neuronpedia shows it (TransformerLens's to_str_tokens):
 * its bytes, with U+FFFD for each byte that is not part of a whole UTF-8
 * character (a token holding part of an emoji). */
typedef struct { Bpe bpe; char buf[1024]; } TokText;

static const char *tok_text(void *ud, int32_t id)
{
    TokText *t = ud;
    size_t n, o = 0;
    const unsigned char *s = (const unsigned char *)bpe_token_bytes(&t->bpe, id, &n);
    if (!s) return NULL;
    for (size_t i = 0; i < n && o + 4 < sizeof t->buf;) {
        size_t k = bpe_utf8_len(s + i, n - i);
        if (k) memcpy(t->buf + o, s + i, k), o += k, i += k;
        else memcpy(t->buf + o, "\xef\xbf\xbd", 3), o += 3, i++;
    }
    t->buf[o] = 0;
    return t->buf;
}

static void read_explanations(NpWriter *w, const char *path)
{
    TszReader *r = tsz_reader_open(path);
    tsz_reader_check(r);
    TszRecord rec;
    tsz_record_init(&rec);
    while (tsz_read_or_die(r, &rec))
        if (np_add_explanation(w, &rec) < 0)
            sp_die("%s: record %" PRIu64 ": %s", sp_in_name(path), tsz_reader_records(r), w->err);
    tsz_record_free(&rec);
    tsz_reader_close(r);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Opts o;
    parse_args(&o, argc, argv);
    char *hook = NULL, *model = NULL;
    if (o.sae) read_sae_meta(&o, &hook, &model);
    TszReader *r = tsz_reader_open(o.topk);
    tsz_reader_check(r);
    const json_t *h = tsz_reader_header(r);
    TopkOpts t;
    if (topk_opts_from_json(json_object_get(h, "topk"), &t) < 0)
        sp_die("%s: header has no 'topk' options (is this topk-ctx output?)", o.topk);
    const char *lhook = json_string_value(json_object_get(json_object_get(h, "logits"), "hook"));
    if (hook && lhook && strcmp(hook, lhook))
        sp_die("%s: logit effects of hook %s, but %s reads %s", o.topk, lhook, o.sae, hook);
    if (o.layer < 0) o.layer = hook_layer(hook ? hook : lhook);
    if (o.layer < 0)
        sp_die("no layer: give --layer, or --sae with a \"hook\" like blocks.L.mlp.hook_post (%s has none)",
               o.sae ? o.sae : o.topk);
    if (!o.model_id) o.model_id = model;
    if (!o.model_id) sp_die("no model id: give --model-id (the SAE %s names no model)", o.sae ? o.sae : "(none given)");
    NpOpts no = {o.model_id, o.sae_set, o.dataset, o.layer, o.batch, t.W, t.NB, NULL, NULL, 0};
    TokText *tt = NULL;
    if (o.tokenizer) {
        char dir[4096], err[512];
        if (fetch_resolve_model(o.tokenizer, dir, sizeof dir, err, sizeof err) < 0) sp_die("%s", err);
        tt = xcalloc(1, sizeof *tt);
        if (bpe_load(&tt->bpe, dir) < 0) sp_die("%s", tt->bpe.err);
        no.tok = tok_text, no.tok_ud = tt, no.vocab = tt->bpe.V;
    }
    NpWriter w;
    if (np_open(&w, o.dir, &no, o.force) < 0) sp_die("%s", w.err);
    if (o.expl) read_explanations(&w, o.expl);
    TszRecord rec;
    tsz_record_init(&rec);
    size_t n = 0;
    while (tsz_read_or_die(r, &rec)) {
        char err[400];
        if (sp_kind_check(&rec, SP_K_FEATURE | SP_K_DICT_STATS, err, sizeof err) < 0)
            sp_die("%s: record %" PRIu64 ": %s", sp_in_name(o.topk), tsz_reader_records(r), err);
        if (sp_kind_of(&rec) == SP_K_DICT_STATS) continue;
        if (np_add_feature(&w, &rec) < 0)
            sp_die("%s: record %" PRIu64 ": %s", sp_in_name(o.topk), tsz_reader_records(r), w.err);
        n++;
    }
    if (!n) sp_die("%s: no feature records", sp_in_name(o.topk));
    if (np_close(&w) < 0) sp_die("%s", w.err);
    np_free(&w);
    tsz_record_free(&rec);
    tsz_reader_close(r);
    if (tt) bpe_free(&tt->bpe), free(tt);
    free(hook), free(model);
    return 0;
}
