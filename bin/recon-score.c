/* recon-score: the standard SAE evaluation: the model's loss with the
 * hooked activation replaced by the SAE's reconstruction, by zeros and by
 * its mean, the score, KL, MSE, FVU, L0, dead and dense features. The sums
 * and metrics live in lib/recon.c; this parses flags, holds the windows,
 * runs the mean pass and the evaluation, and writes or merges records. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "npy.h"
#include "recon.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: recon-score --model DIR --sae FILE [OPTIONS] [TOKENS.tsz | -] > RECON.tsz\n"
"       recon-score --merge [OPTIONS] RECON.tsz... > RECON.tsz\n"
"Evaluate an SAE spliced into a GPT-2 model over token windows (records with\n"
"`tokens` i32 (rows,T)): the loss clean, with the hook's value replaced by the\n"
"SAE's reconstruction, by zeros and by its mean; score = (zero - recons) /\n"
"(zero - clean); KL, MSE, FVU, L0, dead and dense features. Writes one record\n"
"(kind \"recon\") with the metrics and the sums that --merge adds exactly, and a\n"
"table on stderr.\n"
"\n"
"Options:\n"
"  -m, --model DIR        model directory or cached repo id [required]\n"
"  -s, --sae FILE         the SAE (from sae-fit) [required, but for --mean-only]\n"
"      --hook NAME        the hook to splice at [Default: the SAE's hook]\n"
"      --mean FILE        the mean for mean ablation: a (D) .npy, or a stream whose\n"
"                         first record is \"recon\" or \"recon_mean\" (its sum_x / n_rows)\n"
"                         [Default: a first pass over the input computes it]\n"
"      --mean-only        only the first pass: write a \"recon_mean\" record\n"
"      --include-bos      also splice and count position 0 of each window\n"
"                         [Default: position 0 (BOS) is left clean and uncounted]\n"
"      --merge            add up recon (or recon_mean) records of the FILEs\n"
"  -b, --batch N          windows per forward [Default: 8]\n"
"      --json             print one JSON object on stdout instead of the stream\n"
"  -q, --quiet            no table on stderr\n"
);
    sp_stage_help(f, 23, "the stream");
    fprintf(f,
"\n"
"The windows are held in memory (4 bytes a token) for the two passes.\n"
"Exit status: 0 on success, 1 on a bad input, model or SAE, 2 on bad usage.\n");
    exit(status);
}

typedef struct {
    const char *model, *sae, *hook, *mean, *output;
    char **inputs;
    int ninputs;
    int mean_only, include_bos, merge, json, quiet, force, progress;
    size_t batch;
} Opts;

static void parse_args(Opts *o, int argc, char **argv)
{
    enum { O_HOOK = 256, O_MEAN, O_MEAN_ONLY, O_BOS, O_MERGE, O_JSON };
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'}, {"sae", required_argument, 0, 's'},
        {"hook", required_argument, 0, O_HOOK}, {"mean", required_argument, 0, O_MEAN},
        {"mean-only", no_argument, 0, O_MEAN_ONLY}, {"include-bos", no_argument, 0, O_BOS},
        {"merge", no_argument, 0, O_MERGE}, {"batch", required_argument, 0, 'b'},
        {"json", no_argument, 0, O_JSON}, {"quiet", no_argument, 0, 'q'},
        SP_STAGE_LONGOPTS,
    };
    *o = (Opts){.batch = 8};
    int c;
    while ((c = getopt_long(argc, argv, "m:s:b:qo:fhV", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 's': o->sae = optarg; break;
        case O_HOOK: o->hook = optarg; break;
        case O_MEAN: o->mean = optarg; break;
        case O_MEAN_ONLY: o->mean_only = 1; break;
        case O_BOS: o->include_bos = 1; break;
        case O_MERGE: o->merge = 1; break;
        case 'b': o->batch = sp_opt_u64("--batch", optarg, 1, 1 << 16); break;
        case O_JSON: o->json = 1; break;
        case 'q': o->quiet = 1; break;
        default: sp_stage_opt(c, &o->output, &o->force, &o->progress, usage);
        }
    }
    o->inputs = argv + optind, o->ninputs = argc - optind;
    if (o->merge) {
        if (o->ninputs < 1) sp_usage_die("--merge needs at least one RECON.tsz");
        if (o->model || o->sae || o->hook || o->mean || o->mean_only)
            sp_usage_die("--merge takes only record files (no --model, --sae, --hook, --mean, --mean-only)");
        return;
    }
    if (o->ninputs > 1) sp_usage_die("unexpected argument '%s'", o->inputs[1]);
    if (!o->model) sp_usage_die("--model DIR is required");
    if (!o->sae && !o->mean_only) sp_usage_die("--sae FILE is required");
    if (o->mean_only && o->mean) sp_usage_die("--mean-only computes the mean; it takes no --mean");
    if (o->mean_only && o->json) sp_usage_die("--json prints metrics; --mean-only has none");
}

/* ---- the windows, held for two passes ---- */
typedef struct {
    int32_t *tok;      /* all windows' tokens, concatenated */
    size_t *start, *len; /* (n) offset into tok and T of each window */
    size_t n, cap, ntok, tokcap;
} Windows;

static void windows_add(Windows *w, const TszTensor *t, uint64_t row, uint64_t T, const GPT2Config *c,
                        const char *in, uint64_t recno)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 256;
        w->start = xrealloc(w->start, w->cap * sizeof *w->start);
        w->len = xrealloc(w->len, w->cap * sizeof *w->len);
    }
    while (w->ntok + T > w->tokcap) {
        w->tokcap = w->tokcap ? 2 * w->tokcap : 1 << 16;
        w->tok = xrealloc(w->tok, w->tokcap * sizeof *w->tok);
    }
    for (uint64_t j = 0; j < T; j++) {
        uint64_t i = row * T + j;
        int64_t v = t->dtype == TSZ_I64 ? ((const int64_t *)t->data)[i] : ((const int32_t *)t->data)[i];
        if (v < 0 || (uint64_t)v >= c->vocab_size)
            sp_die("%s: record %" PRIu64 ": token id %" PRId64 " at row %" PRIu64 ", position %" PRIu64
                   " is outside the model's vocabulary [0, %zu)", in, recno, v, row, j, c->vocab_size);
        w->tok[w->ntok + j] = (int32_t)v;
    }
    w->start[w->n] = w->ntok, w->len[w->n] = T;
    w->n++, w->ntok += T;
}

static void read_windows(Windows *w, TszReader *r, const GPT2Config *c, const char *in)
{
    TszRecord rec;
    tsz_record_init(&rec);
    uint64_t recno = 0;
    char err[256];
    while (tsz_read_or_die(r, &rec)) {
        recno++;
        const TszTensor *t = gpt2_record_tokens(c, &rec, err, sizeof err);
        if (!t) sp_die("%s: record %" PRIu64 ": %s", in, recno, err);
        uint64_t rows = t->shape[0], T = t->shape[1];
        for (uint64_t i = 0; i < rows; i++) windows_add(w, t, i, T, c, in, recno);
    }
    tsz_record_free(&rec);
    if (!w->n) sp_die("%s: no token windows in the input", in);
}

/* Windows [i, j) of one length, at most B of them, contiguous in tok. */
static size_t next_batch(const Windows *w, size_t i, size_t B)
{
    size_t j = i + 1;
    while (j < w->n && j - i < B && w->len[j] == w->len[i]) j++;
    return j;
}

/* ---- the mean for mean ablation ---- */
static float *load_mean_file(const char *path, size_t D)
{
    float *m = xmalloc(D * sizeof *m);
    size_t n = strlen(path);
    if (n >= 4 && !strcmp(path + n - 4, ".npy")) {
        NpyReader np;
        if (npy_open(&np, path) < 0) sp_die("%s", np.err);
        if (np.ndim != 1 || np.shape[0] != D || !tsz_dtype_is_float(np.dtype)) {
            npy_close(&np);
            sp_die("%s: mean must be a (%zu) float vector", path, D);
        }
        void *raw = xmalloc(D * 8);
        if (npy_read_rows(&np, raw, D) != (int64_t)D) sp_die("%s: %s", path, np.err[0] ? np.err : "short read");
        tsz_to_f32(m, raw, np.dtype, D);
        free(raw);
        npy_close(&np);
        return m;
    }
    TszReader *r = tsz_reader_open(path);
    tsz_reader_check(r);
    TszRecord rec;
    tsz_record_init(&rec);
    if (!tsz_read_or_die(r, &rec)) sp_die("%s: no record to take the mean from", path);
    ReconSums s;
    char err[256];
    if (recon_sums_from_record(&s, &rec, err, sizeof err) < 0) sp_die("%s: %s", path, err);
    if (s.D != D) sp_die("%s: mean of width %zu, the hook's width is %zu", path, s.D, D);
    if (recon_sums_mean(&s, m) < 0) sp_die("%s: the record counts no rows", path);
    recon_sums_free(&s);
    tsz_record_free(&rec);
    tsz_reader_close(r);
    return m;
}

/* FNV-1a over the mean's bits: shards merge exactly only with one mean. */
static char *mean_hash(const float *m, size_t D, char *buf, size_t len)
{
    snprintf(buf, len, "%016" PRIx64, recon_fnv(RECON_FNV_INIT, m, D * sizeof *m));
    return buf;
}

/* ---- output ---- */
static void print_table(const ReconSums *s, const ReconMetrics *m, const char *hook)
{
    fprintf(stderr, "%s: %s, %" PRIu64 " tokens in %" PRIu64 " windows, %" PRIu64 " predictions, %" PRIu64
            " spliced positions\n", sp_prog, hook, s->tokens, s->windows, s->n_pred, s->n_rows);
    if (!s->F) return;
    const struct { const char *k; double v; } rows[] = {
        {"clean loss", m->clean_loss}, {"recons loss", m->recons_loss}, {"zero-ablation loss", m->zero_abl_loss},
        {"mean-ablation loss", m->mean_abl_loss}, {"score (vs zero)", m->score},
        {"score (vs mean)", m->score_mean_abl}, {"KL(clean || spliced)", m->kl}, {"MSE", m->mse},
        {"FVU", m->fvu}, {"L0", m->l0}, {"dead features", m->dead_frac}, {"dense features (>10%)", m->dense_frac},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        fprintf(stderr, "  %-24s %12.6g\n", rows[i].k, rows[i].v);
}

static void print_json(const ReconMetrics *m)
{
    json_t *o = recon_metrics_json(m);
    char *txt = json_dumps(o, JSON_REAL_PRECISION(17));
    if (!txt || printf("%s\n", txt) < 0 || fclose(stdout) != 0) sp_die("stdout: write failed");
    free(txt);
    json_decref(o);
}

/* Write the record (or the JSON object), and the table. */
static void emit(const Opts *o, int argc, char **argv, const TszReader *in, const ReconSums *s, json_t *extra)
{
    ReconMetrics m;
    recon_metrics(s, &m);
    if (!o->quiet) print_table(s, &m, json_string_value(json_object_get(extra, "hook")));
    if (o->json) {
        print_json(&m);
        return;
    }
    if (!o->output || !strcmp(o->output, "-")) sp_check_binary_stdout(o->force);
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    TszWriter *w = tsz_writer_open(o->output ? o->output : "-", "recon-score", argc, argv, &wo);
    tsz_writer_check(w);
    if (in) tsz_writer_add_input(w, in);
    TszRecord rec;
    tsz_record_init(&rec);
    recon_sums_to_record(s, &m, &rec);
    json_object_update(rec.meta, extra);
    tsz_write_or_die(w, &rec);
    tsz_writer_close_or_die(w);
    tsz_record_free(&rec);
}

/* ---- --merge ---- */
static void merge(const Opts *o, int argc, char **argv)
{
    ReconMerge m;
    recon_merge_init(&m);
    TszRecord rec;
    tsz_record_init(&rec);
    for (int i = 0; i < o->ninputs; i++) {
        const char *in = sp_in_name(o->inputs[i]);
        TszReader *r = tsz_reader_open(o->inputs[i]);
        tsz_reader_check(r);
        for (uint64_t recno = 1; tsz_read_or_die(r, &rec); recno++)
            if (recon_merge_add(&m, &rec, in, recno) < 0) sp_die("%s", m.err);
        tsz_reader_close(r);
    }
    if (!m.extra) sp_die("%s: no records to merge", sp_in_name(o->inputs[0]));
    if (!m.total.F && o->json) sp_usage_die("--json: recon_mean records have no metrics to print");
    if (!m.mean_exact) {
        sp_warn("the shards used different ablation means: mean_abl_loss is not that of one run (give every "
                "shard one --mean)");
        json_object_del(m.extra, "mean_hash");
    }
    json_object_set_new(m.extra, "mean_exact", json_boolean(m.mean_exact));
    json_object_set_new(m.extra, "merged", json_integer(o->ninputs));
    emit(o, argc, argv, NULL, &m.total, m.extra);
    recon_merge_free(&m);
    tsz_record_free(&rec);
}

/* ---- evaluation ---- */
static GPT2Hook resolve_hook(const Opts *o, const GPT2Config *c, const SAE *sae)
{
    char err[256];
    const char *name = o->hook ? o->hook : (sae && sae->hook[0] ? sae->hook : NULL);
    if (!name && !sae) sp_usage_die("--hook NAME is required with --mean-only and no --sae");
    if (!name) sp_usage_die("--hook NAME is required (%s records no hook)", o->sae);
    if (o->hook && sae && sae->hook[0] && strcmp(o->hook, sae->hook))
        sp_die("%s: --hook %s, but the SAE was trained on %s", o->sae, o->hook, sae->hook);
    GPT2Hook h;
    if (gpt2_hook_parse(c, name, &h, err, sizeof err) < 0) {
        if (o->hook) sp_usage_die("--hook: %s", err);
        sp_die("%s: %s", o->sae, err);
    }
    return h;
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Opts o;
    parse_args(&o, argc, argv);
    if (o.merge) {
        merge(&o, argc, argv);
        return 0;
    }
    char dir[4096], err[512];
    if (fetch_resolve_model(o.model, dir, sizeof dir, err, sizeof err) < 0) sp_die("%s", err);
    GPT2 g;
    if (gpt2_open(&g, dir) < 0) sp_die("%s", g.err);
    SAE sae, *sp = NULL;
    if (o.sae) {
        if (sae_load(&sae, o.sae, err, sizeof err) < 0) sp_die("%s", err);
        sp = &sae;
    }
    GPT2Hook hook = resolve_hook(&o, &g.cfg, sp);
    char hname[64];
    gpt2_hook_name(hook, hname, sizeof hname);
    ReconEval e;
    if (recon_eval_init(&e, &g, sp, hook, o.include_bos ? 0 : 1) < 0) sp_die("%s: %s", o.sae, e.err);

    const char *input = o.ninputs ? o.inputs[0] : "-", *in = sp_in_name(input);
    TszReader *r = tsz_reader_open(input);
    tsz_reader_check(r);
    Windows w = {0};
    read_windows(&w, r, &g.cfg, in);

    SpProgress prog;
    float *mean = o.mean ? load_mean_file(o.mean, e.D) : NULL;
    int passes = (mean ? 0 : 1) + (o.mean_only ? 0 : 1);
    sp_progress_init(&prog, o.progress, passes > 1 ? "two passes" : "evaluate", "tokens", w.ntok * (uint64_t)passes);
    uint64_t done = 0;
    ReconSums ms;
    recon_sums_init(&ms, e.D, 0);
    for (size_t i = 0, j; !mean && i < w.n; i = j) {
        j = next_batch(&w, i, o.batch);
        if (recon_eval_mean(&e, w.tok + w.start[i], j - i, w.len[i], &ms) < 0) sp_die("%s: %s", in, e.err);
        sp_progress_update(&prog, done += (j - i) * w.len[i]);
    }
    json_t *extra = json_pack("{s:s, s:s, s:i}", "hook", hname, "model", o.model, "pos0", (int)e.pos0);
    if (o.sae) json_object_set_new(extra, "sae", json_string(o.sae));
    if (o.mean_only) {
        sp_progress_end(&prog);
        if (!ms.n_rows) sp_die("%s: no positions to average (windows of one token, BOS excluded)", in);
        emit(&o, argc, argv, r, &ms, extra);
    } else {
        if (!mean) {
            mean = xmalloc(e.D * sizeof *mean);
            if (recon_sums_mean(&ms, mean) < 0)
                sp_die("%s: no positions to average (windows of one token, BOS excluded)", in);
        }
        char hash[32];
        json_object_set_new(extra, "mean_hash", json_string(mean_hash(mean, e.D, hash, sizeof hash)));
        json_object_set_new(extra, "mean_source", json_string(o.mean ? o.mean : "input"));
        ReconSums acc;
        recon_sums_init(&acc, e.D, sp->F);
        for (size_t i = 0, j; i < w.n; i = j) {
            j = next_batch(&w, i, o.batch);
            if (recon_eval_batch(&e, w.tok + w.start[i], j - i, w.len[i], mean, &acc) < 0)
                sp_die("%s: %s", in, e.err);
            sp_progress_update(&prog, done += (j - i) * w.len[i]);
        }
        sp_progress_end(&prog);
        if (!acc.n_pred) sp_die("%s: no next-token predictions (every window has one token)", in);
        emit(&o, argc, argv, r, &acc, extra);
        recon_sums_free(&acc);
    }
    json_decref(extra);
    recon_sums_free(&ms);
    free(mean), free(w.tok), free(w.start), free(w.len);
    tsz_reader_close(r);
    recon_eval_free(&e);
    if (sp) sae_free(sp);
    gpt2_close(&g);
    return 0;
}
