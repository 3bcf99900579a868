/* topk-ctx: every feature's top, random and activation-quantile-band
 * examples (token windows with the feature's activations), its statistics,
 * its logit effects (--sae with --model), and the dictionary's density
 * statistics, from sae-encode output; --merge combines outputs of shards
 * exactly. The collector is lib/topkctx.c, the logit effects lib/logits.c. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "fetch.h"
#include "gpt2.h"
#include "kinds.h"
#include "logits.h"
#include "sae.h"
#include "topkctx.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: topk-ctx [OPTIONS] [FEATURES.tsz | -] > TOPK.tsz\n"
"       topk-ctx --merge [OPTIONS] TOPK.tsz... > TOPK.tsz\n"
"Collect each feature's top activating windows, random and quantile-band\n"
"examples and statistics from sae-encode output (with tokens); one record per\n"
"feature (kind \"feature\"), then one \"dict_stats\" record.\n"
"\n"
"Options:\n"
"  -k, --top K          top examples per feature, one per context row at most\n"
"                       [Default: 20]\n"
"  -w, --window W       tokens per example window; the example token sits at\n"
"                       3/4 of it when the row allows [Default: 64]\n"
"      --random R       examples drawn uniformly from the tokens where the\n"
"                       feature fires [Default: 20]\n"
"      --bands NB       activation quantile bands [Default: 4]\n"
"      --per-band N     examples per band [Default: 2]\n"
"      --seed S         seed of the random and band samples [Default: 0]\n"
"      --features LIST  only these features, e.g. 0-99,512 [Default: sae-encode's\n"
"                       --features, else all]\n"
"  -m, --model DIR|ID   tokenizer (vocab.json, merges.txt; a directory or a hub\n"
"                       id fetched by model-fetch) for the records' token_strs\n"
"                       [Default: none, no token_strs]\n"
"      --sae FILE       the SAE the features come from: add each feature's logit\n"
"                       effects (the tokens its decoder direction promotes and\n"
"                       suppresses most), computed with --model's weights\n"
"                       (config.json, model.safetensors)\n"
"      --logits K       tokens each way for --sae [Default: 10]\n"
"      --merge          inputs are topk-ctx outputs of disjoint shards (same\n"
"                       options, taken from their headers); write what one run\n"
"                       over all the shards writes\n"
"      --max-memory N   refuse to start when the examples need more than N\n"
"                       bytes (--max-mem is the same) [Default: MemAvailable\n"
"                       of /proc/meminfo]\n"
);
    sp_stage_help(f, 21, "the stream");
    fprintf(f,
"\n"
"Memory: F x (k + random + bands*per-band) x (8*W + 64) bytes, checked at start.\n"
"Exit status: 0 on success, 1 on a bad input, 2 on bad usage.\n");
    exit(status);
}

typedef struct {
    const char *output, *features, *model, *sae;
    char **inputs;
    int ninputs, merge, force, progress;
    const char *collect_flag;   /* the last option that only collecting uses (refused with --merge) */
    uint64_t max_mem;
    size_t logit_k;     /* 0: not given */
    TopkOpts t;
} Opts;

static void parse_args(Opts *o, int argc, char **argv)
{
    enum { O_RANDOM = 256, O_BANDS, O_PERBAND, O_SEED, O_FEATURES, O_MERGE, O_MAXMEM, O_SAE, O_LOGITS };
    static const struct option longs[] = {
        {"top", required_argument, 0, 'k'}, {"window", required_argument, 0, 'w'},
        {"random", required_argument, 0, O_RANDOM}, {"bands", required_argument, 0, O_BANDS},
        {"per-band", required_argument, 0, O_PERBAND}, {"seed", required_argument, 0, O_SEED},
        {"features", required_argument, 0, O_FEATURES}, {"model", required_argument, 0, 'm'},
        {"merge", no_argument, 0, O_MERGE}, {"max-memory", required_argument, 0, O_MAXMEM},
        {"max-mem", required_argument, 0, O_MAXMEM}, /* the old spelling, an alias */
        {"sae", required_argument, 0, O_SAE}, {"logits", required_argument, 0, O_LOGITS},
        SP_STAGE_LONGOPTS,
    };
    *o = (Opts){.t = {.K = 20, .W = 64, .R = 20, .NB = 4, .NPB = 2}};
    int c, li = -1;
    while ((c = getopt_long(argc, argv, "k:w:m:o:fhV", longs, &li)) != -1) {
        if (strchr("kwm", c) || (c >= O_RANDOM && c <= O_SEED) || c == O_MAXMEM || c == O_SAE || c == O_LOGITS)
            o->collect_flag = li >= 0 ? longs[li].name : c == 'k' ? "top" : c == 'w' ? "window" : "model";
        li = -1;
        switch (c) {
        case 'k': o->t.K = sp_opt_u64("--top", optarg, 0, 100000); break;
        case 'w': o->t.W = sp_opt_u64("--window", optarg, 1, 100000); break;
        case O_RANDOM: o->t.R = sp_opt_u64("--random", optarg, 0, 100000); break;
        case O_BANDS: o->t.NB = sp_opt_u64("--bands", optarg, 0, 1000); break;
        case O_PERBAND: o->t.NPB = sp_opt_u64("--per-band", optarg, 0, 1000); break;
        case O_SEED: o->t.seed = sp_opt_u64("--seed", optarg, 0, INT64_MAX); break;
        case O_FEATURES: o->features = optarg; break;
        case 'm': o->model = optarg; break;
        case O_MERGE: o->merge = 1; break;
        case O_MAXMEM: o->max_mem = sp_opt_u64("--max-memory", optarg, 1, UINT64_MAX); break;
        case O_SAE: o->sae = optarg; break;
        case O_LOGITS: o->logit_k = sp_opt_u64("--logits", optarg, 1, 1000); break;
        default: sp_stage_opt(c, &o->output, &o->force, &o->progress, usage);
        }
    }
    o->inputs = argv + optind;
    o->ninputs = argc - optind;
    if (o->merge && o->ninputs < 1) sp_usage_die("--merge needs the topk-ctx outputs to merge");
    if (!o->merge && o->ninputs > 1) sp_usage_die("one input (or --merge for several), got %d", o->ninputs);
    if (o->merge && o->features) sp_usage_die("--features does not go with --merge");
    if (o->merge && o->collect_flag)
        sp_usage_die("--%s does not go with --merge: the inputs' options (headers) and token_strs are used",
                     o->collect_flag);
    if (o->t.NB * o->t.NPB > 100000) sp_usage_die("--bands x --per-band is too large");
    if (o->sae && !o->model) sp_usage_die("--sae needs --model: the logit effects go through the model's weights");
    if (o->logit_k && !o->sae) sp_usage_die("--logits needs --sae");
    if (!o->logit_k) o->logit_k = 10;
}

typedef struct { Bpe *bpe; json_t *map; char buf[256]; } Strs;

static const char *bpe_str(void *ud, int32_t id)
{
    Strs *s = ud;
    bpe_token_display(s->bpe, id, s->buf, sizeof s->buf);
    return s->buf;
}

static const char *map_str(void *ud, int32_t id)
{
    Strs *s = ud;
    char key[16];
    snprintf(key, sizeof key, "%d", id);
    return json_string_value(json_object_get(s->map, key));
}

static TszWriter *open_out(const Opts *o, int argc, char **argv, const TopkOpts *t, size_t F)
{
    if (!o->output || !strcmp(o->output, "-")) sp_check_binary_stdout(o->force);
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    wo.shuffle = 0;     /* example windows: small tensors, mostly zero acts; probing costs more than it saves */
    TszWriter *w = tsz_writer_open(o->output ? o->output : "-", "topk-ctx", argc, argv, &wo);
    tsz_writer_check(w);
    json_object_set_new(tsz_writer_header(w), "topk", topk_opts_json(t));
    json_object_set_new(tsz_writer_header(w), "f", json_integer((json_int_t)F));
    return w;
}

static void check_memory(const Opts *o, size_t nsel)
{
    uint64_t need = topkctx_bytes(&o->t, nsel), have = o->max_mem ? o->max_mem : sp_mem_available();
    if (!have || need <= have) return; /* 0: unknown */
    sp_die("needs %" PRIu64 " bytes (%.1f MB) for %zu features x %zu examples x %zu-token windows but %" PRIu64
           " bytes are available (lower -k, --random, --bands, --window, or pick --features)",
           need, need / 1e6, nsel, o->t.K + o->t.R + o->t.NB * o->t.NPB, o->t.W, have);
}

/* The logit effects of the selected features (--sae, lib/logits.h); the
 * SAE and the model are released before the examples are collected. The
 * header's "logits" says how they were made. */
static json_t *collect_logits(const Opts *o, const char *dir, const Bpe *bpe, size_t F, const int32_t *sel,
                              size_t nsel, LogitEffects *lg)
{
    char err[600];
    SAE s;
    if (sae_load_decoder(&s, o->sae, err, sizeof err) < 0) sp_die("%s", err);
    if (s.F != F) sp_die("%s: the SAE has f=%zu features but the input's dictionary has f=%zu", o->sae, s.F, F);
    GPT2 g;
    if (gpt2_open(&g, dir) < 0) sp_die("%s: %s", o->model, g.err);
    if (g.cfg.vocab_size != bpe->V)
        sp_die("%s: the model's vocabulary has %zu tokens but its tokenizer (vocab.json) has %zu", o->model,
               g.cfg.vocab_size, bpe->V);
    if (logit_effects(&g, &s, sel, nsel, o->logit_k, lg, err, sizeof err) < 0) sp_die("%s: %s", o->sae, err);
    json_t *j = json_pack("{s:I, s:s, s:s, s:s}", "k", (json_int_t)o->logit_k, "sae", o->sae, "hook", s.hook,
                          "method", "saedashboard");
    gpt2_close(&g);
    sae_free(&s);
    return j;
}

static int run_collect(Opts *o, int argc, char **argv)
{
    const char *path = o->ninputs ? o->inputs[0] : "-", *in = sp_in_name(path);
    TszReader *r = tsz_reader_open(path);
    tsz_reader_check(r);
    TszRecord rec;
    tsz_record_init(&rec);
    int have = tsz_read_or_die(r, &rec);
    char kerr[400];
    if (have && sp_kind_check(&rec, SP_K_FEATURES, kerr, sizeof kerr) < 0) sp_die("%s: record 1: %s", in, kerr);
    json_t *hf = json_object_get(tsz_reader_header(r), "f");
    json_t *jf = json_is_integer(hf) ? hf : json_object_get(rec.meta, "f");
    if (!json_is_integer(jf) || json_integer_value(jf) < 1 || json_integer_value(jf) > (1 << 30))
        sp_die("%s: no dictionary size: neither the header nor the first record has an integer 'f'"
               " (is this sae-encode output?)", in);
    size_t F = (size_t)json_integer_value(jf), nsel = F;
    const char *list = o->features ? o->features : json_string_value(json_object_get(tsz_reader_header(r), "features"));
    int32_t *sel = NULL;
    char err[256];
    if (list && sparse_parse_features(list, F, &sel, &nsel, err, sizeof err) < 0) {
        if (o->features) sp_usage_die("--features: %s", err);
        sp_die("%s: header 'features': %s", in, err);
    }
    check_memory(o, nsel);
    Strs strs = {0};
    Bpe bpe = {0};
    char dir[4096];
    if (o->model) {
        if (fetch_resolve_model(o->model, dir, sizeof dir, err, sizeof err) < 0) sp_die("%s", err);
        if (bpe_load(&bpe, dir) < 0) sp_die("%s", bpe.err);
        strs.bpe = &bpe;
    }
    TopkCtx c;
    topkctx_init(&c, &o->t, F, sel, nsel);
    LogitEffects lg = {0};
    json_t *lgj = o->sae ? collect_logits(o, dir, &bpe, F, c.sel, c.nsel, &lg) : NULL;
    if (lgj) c.logits = &lg;
    TszWriter *w = open_out(o, argc, argv, &o->t, F);
    tsz_writer_add_input(w, r);
    if (list) json_object_set_new(tsz_writer_header(w), "features", json_string(list));
    if (lgj) json_object_set_new(tsz_writer_header(w), "logits", lgj);
    SpProgress prog;
    sp_progress_init(&prog, o->progress, "topk", "tokens", 0);
    while (have) {
        if (topkctx_add(&c, &rec) < 0)
            sp_die("%s: record %" PRIu64 ": %s", in, tsz_reader_records(r), c.err);
        sp_progress_update(&prog, c.n_tokens);
        have = tsz_read_or_die(r, &rec);
    }
    sp_progress_end(&prog);
    uint64_t *fired = xmalloc(nsel * sizeof *fired + 1);
    for (size_t j = 0; j < c.nsel; j++) {
        topkctx_record(&c, j, &rec, o->model ? bpe_str : NULL, &strs);
        tsz_write_or_die(w, &rec);
        fired[j] = c.st[j].fired;
    }
    topkctx_dict_stats(&o->t, F, c.sel, c.nsel, fired, c.n_tokens, &rec);
    tsz_write_or_die(w, &rec);
    tsz_writer_close_or_die(w);
    tsz_reader_close(r);
    topkctx_free(&c);
    logit_effects_free(&lg);
    tsz_record_free(&rec);
    bpe_free(&bpe);
    free(fired), free(sel);
    return 0;
}

/* ---- merge: every input's records in lockstep, one feature at a time ---- */
typedef struct {
    TszReader **r;
    TszRecord *rec;
    int n;
} Inputs;

/* Read the next record of every input; 1 = feature records, 0 = dict_stats. */
static int read_step(Inputs *x)
{
    int stats = 0;
    for (int i = 0; i < x->n; i++) {
        const char *in = tsz_reader_name(x->r[i]);
        if (!tsz_read_or_die(x->r[i], &x->rec[i])) sp_die("%s: ends without a dict_stats record", in);
        char err[400];
        if (sp_kind_check(&x->rec[i], SP_K_FEATURE | SP_K_DICT_STATS, err, sizeof err) < 0)
            sp_die("%s: record %" PRIu64 ": %s", in, tsz_reader_records(x->r[i]), err);
        int s = sp_kind_of(&x->rec[i]) == SP_K_DICT_STATS;
        if (i && s != stats)
            sp_die("%s: record %" PRIu64 ": the inputs hold different features (%s has another record here)", in,
                   tsz_reader_records(x->r[i]), tsz_reader_name(x->r[0]));
        stats = s;
    }
    return !stats;
}

/* The logit effects of a feature are the SAE's and the model's, not the
 * data's: the same in every shard. Input 0's into one (n = 1), checked
 * against the others'. */
static void merge_logits(const Inputs *x, LogitEffects *one)
{
    static const char *const sides[2] = {"promoted", "suppressed"};
    TopkLogits lg[2];   /* input 0's, input i's */
    for (int i = 0; i < x->n; i++) {
        const char *in = tsz_reader_name(x->r[i]);
        uint64_t at = tsz_reader_records(x->r[i]);
        char err[512];
        int rc = topkctx_logits(&x->rec[i], 0, &lg[i > 0], err, sizeof err);
        if (rc < 0) sp_die("%s: record %" PRIu64 ": %s", in, at, err);
        if (rc == 0)
            sp_die("%s: record %" PRIu64 ": no logit effects, though the header has 'logits'", in, at);
        if (lg[i > 0].K != one->K)
            sp_die("%s: record %" PRIu64 ": logit effects of %zu tokens each way, but the header has 'logits' of k %zu",
                   in, at, lg[i > 0].K, one->K);
        for (int s = 0; s < 2 && i; s++)
            if (memcmp(lg[1].ids[s], lg[0].ids[s], one->K * 4) || memcmp(lg[1].vals[s], lg[0].vals[s], one->K * 4))
                sp_die("%s: record %" PRIu64 ": the %s tokens differ from %s's: the inputs were made with another "
                       "--sae or --model", in, at, sides[s], tsz_reader_name(x->r[0]));
    }
    memcpy(one->top_ids, lg[0].ids[0], one->K * 4), memcpy(one->bot_ids, lg[0].ids[1], one->K * 4);
    memcpy(one->top_vals, lg[0].vals[0], one->K * 4), memcpy(one->bot_vals, lg[0].vals[1], one->K * 4);
}

static int run_merge(Opts *o, int argc, char **argv)
{
    Inputs x = {xcalloc((size_t)o->ninputs, sizeof *x.r), xcalloc((size_t)o->ninputs, sizeof *x.rec), o->ninputs};
    TopkOpts t = {0};
    size_t F = 0;
    for (int i = 0; i < x.n; i++) {
        x.r[i] = tsz_reader_open(o->inputs[i]);
        tsz_reader_check(x.r[i]);
        tsz_record_init(&x.rec[i]);
        const json_t *h = tsz_reader_header(x.r[i]);
        TopkOpts ti;
        json_t *jf = json_object_get(h, "f");
        if (topk_opts_from_json(json_object_get(h, "topk"), &ti) < 0 || !json_is_integer(jf))
            sp_die("%s: header has no 'topk' options and 'f' (is this topk-ctx output?)", tsz_reader_name(x.r[i]));
        if (i && (memcmp(&ti, &t, sizeof t) || (size_t)json_integer_value(jf) != F))
            sp_die("%s: made with other topk-ctx options or dictionary size than %s", tsz_reader_name(x.r[i]),
                   tsz_reader_name(x.r[0]));
        t = ti, F = (size_t)json_integer_value(jf);
    }
    TszWriter *w = open_out(o, argc, argv, &t, F);
    for (int i = 0; i < x.n; i++) tsz_writer_add_input(w, x.r[i]);
    const char *list = json_string_value(json_object_get(tsz_reader_header(x.r[0]), "features"));
    if (list) json_object_set_new(tsz_writer_header(w), "features", json_string(list));
    json_t *hl = json_object_get(tsz_reader_header(x.r[0]), "logits");
    for (int i = 1; i < x.n; i++)
        if (!json_equal(hl, json_object_get(tsz_reader_header(x.r[i]), "logits")) &&
            (hl || json_object_get(tsz_reader_header(x.r[i]), "logits")))
            sp_die("%s: header 'logits' differs from %s's (logit effects of another --sae, or none)",
                   tsz_reader_name(x.r[i]), tsz_reader_name(x.r[0]));
    json_int_t lk = json_integer_value(json_object_get(hl, "k"));
    if (hl && (lk < 1 || lk > 1000)) sp_die("%s: header 'logits' has no 'k' in [1, 1000]", tsz_reader_name(x.r[0]));
    if (hl) json_object_set(tsz_writer_header(w), "logits", hl);
    LogitEffects one = {1, (size_t)lk, xmalloc(4 * (size_t)lk + 1), xmalloc(4 * (size_t)lk + 1),
                        xmalloc(4 * (size_t)lk + 1), xmalloc(4 * (size_t)lk + 1)};
    int32_t zero = 0;
    TopkCtx c;
    topkctx_init(&c, &t, F, &zero, 1);
    if (hl) c.logits = &one;
    size_t n = 0, cap = 1024;
    int32_t *sel = xmalloc(cap * sizeof *sel);
    uint64_t *fired = xmalloc(cap * sizeof *fired), n_tokens = 0;
    TszRecord out;
    tsz_record_init(&out);
    Strs strs = {0};
    while (read_step(&x)) {
        json_t *jf = json_object_get(x.rec[0].meta, "feature");
        if (!json_is_integer(jf) || json_integer_value(jf) < 0 || (size_t)json_integer_value(jf) >= F)
            sp_die("%s: record %" PRIu64 ": meta 'feature' is not an integer in [0, %zu)", tsz_reader_name(x.r[0]),
                   tsz_reader_records(x.r[0]), F);
        c.sel[0] = (int32_t)json_integer_value(jf);
        topk_heaps_clear(&c.top), topk_heaps_clear(&c.rnd), topk_heaps_clear(&c.band);
        memset(c.st, 0, sizeof *c.st);
        c.n_tokens = 0;
        strs.map = json_object();
        int have_strs = 0;
        for (int i = 0; i < x.n; i++) {
            if (topkctx_merge(&c, 0, &x.rec[i]) < 0)
                sp_die("%s: record %" PRIu64 ": %s", tsz_reader_name(x.r[i]), tsz_reader_records(x.r[i]), c.err);
            c.n_tokens += (uint64_t)json_integer_value(json_object_get(x.rec[i].meta, "n_tokens"));
            json_t *ts = json_object_get(x.rec[i].meta, "token_strs");
            if (json_is_object(ts)) have_strs = 1, json_object_update(strs.map, ts);
        }
        if (hl) merge_logits(&x, &one);
        topkctx_record(&c, 0, &out, have_strs ? map_str : NULL, &strs);
        json_decref(strs.map);
        tsz_write_or_die(w, &out);
        if (n == cap) cap *= 2, sel = xrealloc(sel, cap * sizeof *sel), fired = xrealloc(fired, cap * sizeof *fired);
        sel[n] = c.sel[0], fired[n++] = c.st[0].fired;
        n_tokens = c.n_tokens;
    }
    if (!n)
        for (int i = 0; i < x.n; i++)
            n_tokens += (uint64_t)json_integer_value(json_object_get(x.rec[i].meta, "n_tokens"));
    topkctx_dict_stats(&t, F, sel, n, fired, n_tokens, &out);
    tsz_write_or_die(w, &out);
    for (int i = 0; i < x.n; i++) {
        if (tsz_read_or_die(x.r[i], &x.rec[i]))
            sp_die("%s: record %" PRIu64 ": records after dict_stats", tsz_reader_name(x.r[i]),
                   tsz_reader_records(x.r[i]));
        tsz_reader_close(x.r[i]);
        tsz_record_free(&x.rec[i]);
    }
    tsz_writer_close_or_die(w);
    topkctx_free(&c);
    logit_effects_free(&one);
    tsz_record_free(&out);
    free(x.r), free(x.rec), free(sel), free(fired);
    return 0;
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Opts o;
    parse_args(&o, argc, argv);
    return o.merge ? run_merge(&o, argc, argv) : run_collect(&o, argc, argv);
}
