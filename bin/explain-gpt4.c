/* explain-gpt4: explain every feature of a topk-ctx stream with an LLM,
 * simulate it from the explanation, and score the simulation (Bills et al.
 * 2023), over any OpenAI-compatible chat-completions (or completions) API or the offline
 * baseline. The client is lib/explain_run.c; this is flags, I/O and the
 * summary. */
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "explain_run.h"
#include "kinds.h"
#include "stream.h"

#define DEFAULT_API_BASE "https://api.openai.com/v1"
#define DEFAULT_MODEL "gpt-4-turbo-2024-04-09"

static void usage(FILE *f, int status) SP_NORETURN;
static void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: explain-gpt4 [OPTIONS] [TOPK.tsz | -] > EXPLANATIONS.tsz\n"
"Explain each feature of a topk-ctx stream with an LLM, simulate its activations\n"
"from the explanation alone and score the simulation by correlation (Bills et\n"
"al. 2023). Any OpenAI-compatible chat-completions or completions server; key\n"
"from OPENAI_API_KEY.\n"
"\n"
"Options:\n"
"      --api-base URL      API base; requests go to URL/chat/completions\n"
"                          (URL/completions with --endpoint completions)\n"
"                          [Default: " DEFAULT_API_BASE "]\n"
"      --endpoint NAME     chat (messages) or completions (one prompt text;\n"
"                          vLLM, llama.cpp, base models) [Default: chat]\n"
"      --model NAME        model [Default: " DEFAULT_MODEL "]\n"
"      --backend NAME      openai (any chat-completions server) or baseline\n"
"                          (offline, over-represented tokens) [Default: openai]\n"
"      --scorer NAME       simulation, detection, fuzzing or none\n"
"                          [Default: simulation]\n"
"      --features LIST     only these features, e.g. 0-9,17 [Default: all]\n"
"      --n-explain N       top examples shown to the explainer [Default: 10]\n"
"      --n-score N         held-out top and random examples scored, each [Default: 10]\n"
"  -j, --jobs N            requests in flight at once [Default: 8]\n"
"      --cache DIR         response cache; '' turns it off\n"
"                          [Default: $XDG_CACHE_HOME/saepipe/explain or ~/.cache/...]\n"
"      --timeout S         seconds per request attempt [Default: 120]\n"
"      --max-attempts N    attempts per request, and replies per stage [Default: 5]\n"
"      --backoff S         first retry waits up to S seconds, doubling [Default: 1]\n"
"      --max-backoff S     cap on any wait, Retry-After included [Default: 60]\n"
"      --no-logprobs       do not ask for logprobs; use the integers replied\n"
"                          (by default a simulation asks for them and uses the\n"
"                          expected value over 0..10 wherever they come back)\n"
"      --temperature T     sampling temperature [Default: 0]\n"
"      --min-aligned F     fraction of held-out tokens a simulation reply must\n"
"                          match [Default: 0.9]\n"
"      --baseline-tokens N tokens in a baseline explanation [Default: 3]\n"
"      --prompt-dir DIR    explain.txt, simulate.txt, detect.txt, fuzz.txt\n"
"                          [Default: $SAEPIPE_PROMPT_DIR, else the installed\n"
"                          prompts]\n"
"      --price IN,OUT      USD per million prompt,completion tokens\n"
"                          [Default: the table in explain-gpt4(1)]\n"
"      --dry-run[=WHERE]   print the prompts and a token and cost estimate to\n"
"                          stderr (WHERE=stdout: to stdout), call nothing\n"
"      --progress          show progress on stderr\n"
"  -f, --force             write a binary stream even to a terminal\n"
"  -h, --help              this help\n"
"  -V, --version           version\n"
"\n"
"Exit status: 0 when every feature is explained and scored; 3 when some failed\n"
"(their records say why; the stream is complete; rerun to retry them); 1 on bad\n"
"input or another error; 2 on bad usage.\n");
    exit(status);
}

typedef struct {
    ExplainConfig c;
    const char *input, *prompt_dir, *features;
    char *cache_dir;
    int force, progress, dry_run;     /* dry_run: 0 off, 1 stderr, 2 stdout */
    double price_in, price_out;
    int have_price;
    int argc;
    char **argv;
} Opts;

enum { O_API = 256, O_MODEL, O_BACKEND, O_SCORER, O_FEATURES, O_NEXPLAIN, O_NSCORE, O_CACHE, O_TIMEOUT,
       O_ATTEMPTS, O_BACKOFF, O_MAXBACKOFF, O_NOLOGPROBS, O_TEMP, O_MINALIGN, O_BASETOK, O_PROMPTDIR,
       O_PRICE, O_DRYRUN, O_PROGRESS, O_ENDPOINT };

static char *default_cache(void)
{
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char buf[4096];
    if (x && *x) snprintf(buf, sizeof buf, "%s/saepipe/explain", x);
    else if (home && *home) snprintf(buf, sizeof buf, "%s/.cache/saepipe/explain", home);
    else return NULL;
    return xstrdup(buf);
}

static void parse_args(Opts *o, int argc, char **argv)
{
    static const struct option lo[] = {
        {"api-base", 1, 0, O_API}, {"endpoint", 1, 0, O_ENDPOINT}, {"model", 1, 0, O_MODEL}, {"backend", 1, 0, O_BACKEND},
        {"scorer", 1, 0, O_SCORER}, {"features", 1, 0, O_FEATURES}, {"n-explain", 1, 0, O_NEXPLAIN},
        {"n-score", 1, 0, O_NSCORE}, {"jobs", 1, 0, 'j'}, {"cache", 1, 0, O_CACHE},
        {"timeout", 1, 0, O_TIMEOUT}, {"max-attempts", 1, 0, O_ATTEMPTS}, {"backoff", 1, 0, O_BACKOFF},
        {"max-backoff", 1, 0, O_MAXBACKOFF}, {"no-logprobs", 0, 0, O_NOLOGPROBS},
        {"temperature", 1, 0, O_TEMP}, {"min-aligned", 1, 0, O_MINALIGN},
        {"baseline-tokens", 1, 0, O_BASETOK}, {"prompt-dir", 1, 0, O_PROMPTDIR}, {"price", 1, 0, O_PRICE},
        {"dry-run", 2, 0, O_DRYRUN}, {"progress", 0, 0, O_PROGRESS}, {"force", 0, 0, 'f'},
        {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0, 0, 0, 0}};
    static const SpChoice backends[] = {{"openai", EXPLAIN_BACKEND_OPENAI}, {"baseline", EXPLAIN_BACKEND_BASELINE}};
    static const SpChoice scorers[] = {{"simulation", EXPLAIN_SCORER_SIMULATION},
                                       {"detection", EXPLAIN_SCORER_DETECTION},
                                       {"fuzzing", EXPLAIN_SCORER_FUZZING}, {"none", EXPLAIN_SCORER_NONE}};
    static const SpChoice where[] = {{"stderr", 1}, {"stdout", 2}};       /* dry_run */
    static const SpChoice endpoints[] = {{"chat", 0}, {"completions", 1}}; /* c->completions */
    ExplainConfig *c = &o->c;
    *o = (Opts){.argc = argc, .argv = argv};
    c->api_base = DEFAULT_API_BASE;
    c->model = DEFAULT_MODEL;
    c->n_explain = c->n_score = 10;
    c->logprobs = 1;
    c->min_aligned = 0.9;
    c->baseline_tokens = 3;
    http_opts_default(&c->http);
    int have_cache = 0, ch;
    opterr = 0;     /* one message of our own, below */
    while ((ch = getopt_long(argc, argv, ":j:fhV", lo, NULL)) != -1) {
        switch (ch) {
        case O_API: c->api_base = optarg; break;
        case O_MODEL: c->model = optarg; break;
        case O_BACKEND: c->backend = (ExplainBackend)SP_OPT_CHOICE("--backend", optarg, backends); break;
        case O_SCORER: c->scorer = (ExplainScorer)SP_OPT_CHOICE("--scorer", optarg, scorers); break;
        case O_FEATURES: o->features = optarg; break;
        case O_NEXPLAIN: c->n_explain = sp_opt_u64("--n-explain", optarg, 1, 1000); break;
        case O_NSCORE: c->n_score = sp_opt_u64("--n-score", optarg, 1, 1000); break;
        case 'j': c->http.jobs = sp_opt_u64("--jobs", optarg, 1, 1024); break;
        case O_CACHE: free(o->cache_dir); o->cache_dir = xstrdup(optarg); have_cache = 1; break;
        case O_TIMEOUT: c->http.timeout = sp_opt_double("--timeout", optarg, 0.01, 86400); break;
        case O_ATTEMPTS: c->http.max_attempts = (int)sp_opt_long("--max-attempts", optarg, 1, 100); break;
        case O_BACKOFF: c->http.backoff_base = sp_opt_double("--backoff", optarg, 0, 3600); break;
        case O_MAXBACKOFF: c->http.backoff_max = sp_opt_double("--max-backoff", optarg, 0, 86400); break;
        case O_NOLOGPROBS: c->logprobs = 0; break;
        case O_ENDPOINT: c->completions = SP_OPT_CHOICE("--endpoint", optarg, endpoints); break;
        case O_TEMP: c->temperature = sp_opt_double("--temperature", optarg, 0, 2); break;
        case O_MINALIGN: c->min_aligned = sp_opt_double("--min-aligned", optarg, 0, 1); break;
        case O_BASETOK: c->baseline_tokens = sp_opt_u64("--baseline-tokens", optarg, 1, EXPLAIN_BASELINE_MAX); break;
        case O_PROMPTDIR: o->prompt_dir = optarg; break;
        case O_PRICE: {
            char *comma = strchr(optarg, ',');
            if (!comma) sp_usage_die("--price: expected IN,OUT (USD per million tokens), got '%s'", optarg);
            *comma = 0;
            o->price_in = sp_opt_double("--price", optarg, 0, 1e6);
            o->price_out = sp_opt_double("--price", comma + 1, 0, 1e6);
            o->have_price = 1;
            break;
        }
        case O_DRYRUN: o->dry_run = optarg ? SP_OPT_CHOICE("--dry-run", optarg, where) : 1; break;
        case O_PROGRESS: o->progress = 1; break;
        case 'f': o->force = 1; break;
        case 'h': usage(stdout, 0);
        case 'V': sp_print_version();
        case ':': sp_usage_die("%s: needs a value", argv[optind - 1]);
        default: sp_usage_die("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind + 1 < argc) sp_usage_die("one input at most, got '%s' and '%s'", argv[optind], argv[optind + 1]);
    o->input = optind < argc ? argv[optind] : "-";
    if (!have_cache) o->cache_dir = default_cache();
    c->cache_dir = o->cache_dir && *o->cache_dir ? o->cache_dir : NULL;
    if (!o->have_price) explain_price(c->model, &o->price_in, &o->price_out);
    c->http.seed ^= (uint64_t)getpid() ^ (uint64_t)(sp_now() * 1e6);
}

/* ---- --features LIST ---- */
typedef struct { int64_t lo, hi; } Range;

static Range *parse_features(const char *s, size_t *n)
{
    Range *v = NULL;
    *n = 0;
    if (!s) return NULL;
    char *copy = xstrdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(tok, '-');
        long lo, hi;
        if (dash) *dash = 0;
        if (sp_parse_long(tok, 0, INT32_MAX, &lo) < 0 || (dash && sp_parse_long(dash + 1, lo, INT32_MAX, &hi) < 0))
            sp_usage_die("--features: expected numbers and ranges like 0-9,17, got '%s'", s);
        v = xrealloc(v, (*n + 1) * sizeof *v);
        v[(*n)++] = (Range){lo, dash ? hi : lo};
    }
    free(copy);
    if (!*n) sp_usage_die("--features: expected numbers and ranges like 0-9,17, got '%s'", s);
    return v;
}

static int wanted(const Range *v, size_t n, int64_t f)
{
    if (!v) return 1;
    for (size_t i = 0; i < n; i++)
        if (f >= v[i].lo && f <= v[i].hi) return 1;
    return 0;
}

/* ---- prompts ---- */
static int dir_has_prompts(const char *d)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/explain.txt", d);
    return access(p, R_OK) == 0;
}

/* --prompt-dir, $SAEPIPE_PROMPT_DIR, then beside the executable:
 * ../share/saepipe/prompts (installed) or ../share/prompts (source tree),
 * then /usr/local/share and /usr/share. */
static char *find_prompt_dir(const char *flag)
{
    if (flag) return xstrdup(flag);
    const char *env = getenv("SAEPIPE_PROMPT_DIR");
    if (env && *env) return xstrdup(env);
    char exe[4096], cand[4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        const char *dir = dirname(exe);
        static const char *rel[] = {"../share/saepipe/prompts", "../share/prompts"};
        for (size_t i = 0; i < 2; i++) {
            snprintf(cand, sizeof cand, "%s/%s", dir, rel[i]);
            if (dir_has_prompts(cand)) return xstrdup(cand);
        }
    }
    static const char *sys[] = {"/usr/local/share/saepipe/prompts", "/usr/share/saepipe/prompts"};
    for (size_t i = 0; i < 2; i++)
        if (dir_has_prompts(sys[i])) return xstrdup(sys[i]);
    sp_die("cannot find the prompt files (explain.txt ...): use --prompt-dir or set SAEPIPE_PROMPT_DIR");
}

static void load_prompt(ExplainPrompt *p, const char *dir, const char *name)
{
    char path[4200], err[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (explain_prompt_load(p, path, err, sizeof err) < 0) sp_die("%s", err);
}

/* ---- input records ---- */
static const TszTensor *need(const TszRecord *rec, const char *in, uint64_t n, const char *name,
                             TszDtype dt, int64_t feature)
{
    const TszTensor *t = tsz_record_get(rec, name);
    char d[64];
    if (!t) sp_die("%s: record %" PRIu64 " (feature %" PRId64 "): no tensor '%s' (is this topk-ctx output?)", in, n, feature, name);
    if (t->dtype != dt || t->ndim != 2)
        sp_die("%s: record %" PRIu64 " (feature %" PRId64 "): tensor '%s' is %s, expected (rows,window) %s", in, n,
               feature, name, tsz_tensor_desc(t, d, sizeof d), tsz_dtype_name(dt));
    return t;
}

static int all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* Check a feature record and point x into it. */
static void examples_from(ExplainExamples *x, const TszRecord *rec, const char *in, uint64_t n)
{
    json_t *f = json_object_get(rec->meta, "feature");
    if (!json_is_integer(f)) sp_die("%s: record %" PRIu64 ": meta has no integer 'feature'", in, n);
    x->feature = json_integer_value(f);
    const TszTensor *tt = need(rec, in, n, "top_tokens", TSZ_I32, x->feature);
    const TszTensor *ta = need(rec, in, n, "top_acts", TSZ_F32, x->feature);
    const TszTensor *rt = need(rec, in, n, "rand_tokens", TSZ_I32, x->feature);
    const TszTensor *ra = need(rec, in, n, "rand_acts", TSZ_F32, x->feature);
    if (memcmp(tt->shape, ta->shape, 2 * sizeof *tt->shape) || memcmp(rt->shape, ra->shape, 2 * sizeof *rt->shape) ||
        (rt->shape[0] && tt->shape[0] && rt->shape[1] != tt->shape[1]))
        sp_die("%s: record %" PRIu64 " (feature %" PRId64 "): tokens and activations differ in shape", in, n, x->feature);
    json_t *dens = json_object_get(rec->meta, "density");
    x->density = json_is_number(dens) ? json_number_value(dens) : NAN;
    x->token_strs = json_object_get(rec->meta, "token_strs");
    if (!json_is_object(x->token_strs))
        sp_die("%s: record %" PRIu64 " (feature %" PRId64 "): meta has no 'token_strs' object (run topk-ctx with --model)", in, n, x->feature);
    x->K = tt->shape[0];
    x->R = rt->shape[0];
    x->W = x->K ? tt->shape[1] : rt->shape[1];
    x->top_tokens = tt->data;
    x->top_acts = ta->data;
    x->rand_tokens = rt->data;
    x->rand_acts = ra->data;
    if (!all_finite(x->top_acts, x->K * x->W) || !all_finite(x->rand_acts, x->R * x->W))
        sp_die("%s: record %" PRIu64 " (feature %" PRId64 "): activations are not finite", in, n, x->feature);
}

/* 1 = a feature record in rec, 0 = end; dict_stats records are skipped. */
static int read_feature(TszReader *r, TszRecord *rec, const char *in)
{
    for (;;) {
        if (!tsz_read_or_die(r, rec)) return 0;
        char err[400];
        if (sp_kind_check(rec, SP_K_FEATURE | SP_K_DICT_STATS, err, sizeof err) < 0)
            sp_die("%s: record %" PRIu64 ": %s", in, tsz_reader_records(r), err);
        if (sp_kind_of(rec) == SP_K_FEATURE) return 1;
    }
}

/* ---- output ---- */
static void add_f32_rows(TszRecord *out, const char *name, const ExplainHeldout *h, const float *const *rows)
{
    uint64_t shape[2] = {h->E, h->W};
    float *d = tsz_record_add(out, name, TSZ_F32, 2, shape)->data;
    for (size_t e = 0; e < h->E; e++) memcpy(d + e * h->W, rows[e], h->W * sizeof *d);
}

/* The scores of a yes/no scorer (detection, fuzzing), as delphi reports them. */
static json_t *class_json(const ExplainClassScore *c)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:I}", "balanced_accuracy",
                     sp_json_real_or_null(c->balanced_accuracy), "tpr", sp_json_real_or_null(c->tpr), "tnr", sp_json_real_or_null(c->tnr),
                     "precision", sp_json_real_or_null(c->precision), "recall", sp_json_real_or_null(c->recall), "f1",
                     sp_json_real_or_null(c->f1), "auroc", sp_json_real_or_null(c->auroc), "tp", (json_int_t)c->tp, "fp",
                     (json_int_t)c->fp, "tn", (json_int_t)c->tn, "fn", (json_int_t)c->fn);
}

static void job_record(TszRecord *out, const ExplainJob *j, const Opts *o)
{
    tsz_record_clear(out);
    json_t *m = out->meta;
    json_object_set_new(m, "kind", json_string(SP_KIND_EXPLANATION));
    json_object_set_new(m, "feature", json_integer(j->x.feature));
    json_object_set_new(m, "explanation", j->explanation ? json_string(j->explanation) : json_null());
    json_object_set_new(m, "score", sp_json_real_or_null(j->score));
    json_object_set_new(m, "score_top", sp_json_real_or_null(j->score_top));
    json_object_set_new(m, "score_random", sp_json_real_or_null(j->score_random));
    if (o->c.scorer == EXPLAIN_SCORER_DETECTION || o->c.scorer == EXPLAIN_SCORER_FUZZING)
        json_object_set_new(m, EXPLAIN_SCORER_NAME[o->c.scorer], class_json(&j->cls));
    json_object_set_new(m, "status", json_string(j->ok ? "ok" : j->dead ? "dead" : "failed"));
    json_object_set_new(m, "error", j->ok ? json_null() : json_string(j->err));
    json_object_set_new(m, "attempts", json_integer(j->attempts));
    json_object_set_new(m, "cached", json_integer(j->cached));
    json_object_set_new(m, "usage", json_pack("{s:I, s:I}", "prompt_tokens", (json_int_t)j->prompt_tokens,
                                              "completion_tokens", (json_int_t)j->completion_tokens));
    json_object_set_new(m, "backend", json_string(o->c.backend == EXPLAIN_BACKEND_BASELINE ? "baseline" : o->c.model));
    json_object_set_new(m, "scorer", json_string(EXPLAIN_SCORER_NAME[o->c.scorer]));
    json_object_set_new(m, "density", sp_json_real_or_null(j->x.density));
    json_object_set_new(m, "n_explain", json_integer((json_int_t)(j->x.K < o->c.n_explain ? j->x.K : o->c.n_explain)));
    json_object_set_new(m, "n_heldout_top", json_integer((json_int_t)j->h.n_top));
    json_object_set_new(m, "n_heldout_random", json_integer((json_int_t)(j->h.E - j->h.n_top)));
    if (!j->ok || !j->pred || o->c.scorer != EXPLAIN_SCORER_SIMULATION) return;
    /* the held-out examples, true and simulated, so the score can be checked */
    json_object_set_new(m, "aligned", json_real(j->aligned));
    json_object_set_new(m, "logprob_frac", json_real(j->logprob_frac));
    uint64_t shape[2] = {j->h.E, j->h.W};
    int32_t *tok = tsz_record_add(out, "sim_tokens", TSZ_I32, 2, shape)->data;
    for (size_t e = 0; e < j->h.E; e++) memcpy(tok + e * j->h.W, j->h.tok[e], j->h.W * sizeof *tok);
    add_f32_rows(out, "sim_acts", &j->h, j->h.act);
    tsz_record_add_copy(out, "sim_pred", TSZ_F32, 2, shape, j->pred);
    uint8_t *top = tsz_record_add(out, "sim_is_top", TSZ_U8, 1, shape)->data;
    for (size_t e = 0; e < j->h.E; e++) top[e] = e < j->h.n_top;
}

/* ---- --dry-run ---- */
static void dry_run(Opts *o, TszReader *r, const Range *fr, size_t nfr)
{
    FILE *f = o->dry_run == 2 ? stdout : stderr;
    TszRecord rec;
    tsz_record_init(&rec);
    const char *in = sp_in_name(o->input);
    double pin = 0, pout = 0;
    size_t nf = 0;
    ExplainStage second =
        o->c.scorer == EXPLAIN_SCORER_NONE ? EXPLAIN_STAGE_EXPLAIN : explain_scoring_stage(o->c.scorer);
    while (read_feature(r, &rec, in)) {
        ExplainJob j = {0};
        examples_from(&j.x, &rec, in, tsz_reader_records(r));
        if (!wanted(fr, nfr, j.x.feature) || !j.x.K) continue;   /* dead features ask nothing */
        explain_job_prepare(&o->c, &j);
        nf++;
        for (int s = 0; s < (o->c.scorer == EXPLAIN_SCORER_NONE ? 1 : 2); s++) {
            ExplainStage st = s ? second : EXPLAIN_STAGE_EXPLAIN;
            char *body = explain_request_body(&o->c, &j, st, "<the explanation>");
            json_t *req = json_loads(body, 0, NULL);
            fprintf(f, "=== feature %" PRId64 ": %s request\n", j.x.feature, EXPLAIN_STAGE_NAME[st]);
            size_t i, chars = 0;
            json_t *msg;
            json_array_foreach(json_object_get(req, "messages"), i, msg) {
                const char *text = json_string_value(json_object_get(msg, "content"));
                fprintf(f, "--- %s\n%s\n", json_string_value(json_object_get(msg, "role")), text);
                chars += strlen(text) + 8;
            }
            const char *prompt = json_string_value(json_object_get(req, "prompt"));
            if (prompt) {
                fprintf(f, "--- prompt\n%s\n", prompt);
                chars += strlen(prompt);
            }
            /* about 4 characters a token; the replies' length as the prompts ask */
            pin += chars / 4.0;
            pout += !s ? 20 : st == EXPLAIN_STAGE_SIMULATE ? (double)(j.h.E * (j.h.W * 3 + 4)) : 10;
            json_decref(req);
            free(body);
        }
        explain_job_free(&j);
    }
    tsz_reader_check(r);
    double cost = (pin * o->price_in + pout * o->price_out) / 1e6;
    fprintf(stderr, "%s: dry run: %zu features, %zu requests, about %.0f prompt + %.0f completion tokens, "
            "estimated cost $%.2f (%s at $%g/$%g per million)\n", sp_prog, nf,
            nf * (o->c.scorer == EXPLAIN_SCORER_NONE ? 1 : 2), pin, pout, cost, o->c.model, o->price_in, o->price_out);
    tsz_record_free(&rec);
    if (fflush(stdout) != 0 || fclose(stdout) != 0) sp_die("stdout: write error");
}

/* The scores over the features, for the summary: each metric's mean over
 * the ok features where it is defined, plain and weighted by density. */
enum { AGG_METRICS = 5 };
typedef struct {
    size_t n[AGG_METRICS];
    double sum[AGG_METRICS], wsum[AGG_METRICS], w[AGG_METRICS];
} ScoreAgg;

static void agg_add(ScoreAgg *a, const ExplainJob *j)
{
    const ExplainClassScore *c = &j->cls;
    const double v[AGG_METRICS] = {j->score, c->precision, c->recall, c->f1, c->auroc};
    for (size_t m = 0; m < AGG_METRICS; m++) {
        if (!isfinite(v[m])) continue;
        a->n[m]++;
        a->sum[m] += v[m];
        if (isfinite(j->x.density) && j->x.density > 0) {
            a->wsum[m] += j->x.density * v[m];
            a->w[m] += j->x.density;
        }
    }
}

/* "explain-gpt4: fuzzing over 6 features: balanced accuracy 0.912 (0.950 weighted by frequency), ..." */
static void agg_print(const ScoreAgg *a, ExplainScorer scorer)
{
    static const char *const sim[] = {"correlation"};
    static const char *const yes_no[] = {"balanced accuracy", "precision", "recall", "F1", "AUROC"};
    const char *const *names = scorer == EXPLAIN_SCORER_SIMULATION ? sim : yes_no;
    size_t nm = scorer == EXPLAIN_SCORER_SIMULATION ? 1 : AGG_METRICS;
    if (scorer == EXPLAIN_SCORER_NONE || !a->n[0]) return;
    fprintf(stderr, "%s: %s over %zu features:", sp_prog, EXPLAIN_SCORER_NAME[scorer], a->n[0]);
    for (size_t m = 0; m < nm; m++) {
        if (!a->n[m]) continue;
        fprintf(stderr, "%s %s %.3f", m ? "," : "", names[m], a->sum[m] / (double)a->n[m]);
        if (a->w[m] > 0) fprintf(stderr, " (%.3f%s)", a->wsum[m] / a->w[m], m ? "" : " weighted by frequency");
    }
    fputc('\n', stderr);
}

/* ", 3 dead" for the summary, or "". */
static const char *dead_note(uint64_t n, char *buf, size_t len)
{
    if (!n) return "";
    snprintf(buf, len, ", %" PRIu64 " dead", n);
    return buf;
}

/* Free what main holds besides the run. */
static void free_all(Opts *o, char *pdir, Range *fr, ExplainPrompt *pr, size_t npr)
{
    for (size_t i = 0; i < npr; i++) explain_prompt_free(&pr[i]);
    free(pdir);
    free(fr);
    free(o->cache_dir);
}

/* ---- the run ---- */
typedef struct {
    ExplainJob job;
    TszRecord rec;
} Slot;

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Opts o;
    parse_args(&o, argc, argv);
    size_t nfr;
    Range *fr = parse_features(o.features, &nfr);
    char *pdir = NULL;
    ExplainPrompt pr[4];
    size_t npr = 0;
    if (o.c.backend == EXPLAIN_BACKEND_OPENAI) {
        pdir = find_prompt_dir(o.prompt_dir);
        static const char *files[4] = {"explain.txt", "simulate.txt", "detect.txt", "fuzz.txt"};
        for (npr = 0; npr < 4; npr++) load_prompt(&pr[npr], pdir, files[npr]);
        o.c.p_explain = &pr[0];
        o.c.p_simulate = &pr[1];
        o.c.p_detect = &pr[2];
        o.c.p_fuzz = &pr[3];
    }
    const char *key = getenv("OPENAI_API_KEY");
    o.c.api_key = key && *key ? key : NULL;
    if (o.c.backend == EXPLAIN_BACKEND_OPENAI && !o.dry_run && !o.c.api_key && !strcmp(o.c.api_base, DEFAULT_API_BASE))
        sp_die("OPENAI_API_KEY is not set (use --api-base for a local server, or --backend baseline to run offline)");

    TszReader *r = tsz_reader_open(o.input);
    tsz_reader_check(r);
    if (o.dry_run && o.c.backend == EXPLAIN_BACKEND_BASELINE) {
        fprintf(stderr, "%s: dry run: the baseline backend makes no API calls (0 tokens, $0)\n", sp_prog);
        tsz_reader_close(r);
        free_all(&o, pdir, fr, pr, npr);
        return 0;
    }
    if (o.dry_run) {
        dry_run(&o, r, fr, nfr);
        tsz_reader_close(r);
        free_all(&o, pdir, fr, pr, npr);
        return 0;
    }
    char err[600];
    ExplainRun *run = explain_run_new(&o.c, err, sizeof err);
    if (!run) sp_die("%s", err);
    sp_check_binary_stdout(o.force);
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    TszWriter *w = tsz_writer_open("-", "explain-gpt4", argc, argv, &wo);
    tsz_writer_check(w);
    tsz_writer_add_input(w, r);
    json_object_set_new(tsz_writer_header(w), "model", json_string(o.c.backend == EXPLAIN_BACKEND_BASELINE ? "baseline" : o.c.model));

    /* A window of features in input order: read ahead while requests run,
     * write each record as soon as it and all before it are done. */
    size_t cap = o.c.http.jobs * 4 < 16 ? 16 : o.c.http.jobs * 4, head = 0, tail = 0;
    Slot *win = xcalloc(cap, sizeof *win);
    for (size_t i = 0; i < cap; i++) tsz_record_init(&win[i].rec);
    TszRecord out;
    tsz_record_init(&out);
    SpProgress prog;
    sp_progress_init(&prog, o.progress, "explain-gpt4", "features", 0);
    const char *in = sp_in_name(o.input);
    uint64_t n_ok = 0, n_failed = 0, n_dead = 0;
    ScoreAgg agg = {0};
    int eof = 0;
    while (!eof || head < tail) {
        while (!eof && tail - head < cap) {
            Slot *s = &win[tail % cap];
            if (!read_feature(r, &s->rec, in)) {
                eof = 1;
                break;
            }
            memset(&s->job, 0, sizeof s->job);
            examples_from(&s->job.x, &s->rec, in, tsz_reader_records(r));
            if (!wanted(fr, nfr, s->job.x.feature)) continue;
            explain_run_add(run, &s->job);
            tail++;
        }
        while (head < tail && win[head % cap].job.done) {
            ExplainJob *j = &win[head % cap].job;
            job_record(&out, j, &o);
            tsz_write_or_die(w, &out);
            if (j->ok) {
                n_ok++;
                agg_add(&agg, j);
            } else if (j->dead) {
                n_dead++;
            } else {
                n_failed++;
            }
            explain_job_free(j);
            head++;
            sp_progress_update(&prog, n_ok + n_failed + n_dead);
        }
        if (head == tail) continue;
        int rc = explain_run_wait(run);
        if (rc < 0) sp_die("%s", explain_run_error(run));
        if (rc == 0 && !win[head % cap].job.done) sp_die("internal error: feature %" PRId64 " is stuck", win[head % cap].job.x.feature);
    }
    sp_progress_end(&prog);
    if (tsz_writer_close(w, err, sizeof err) < 0) sp_die("%s", err);   /* closes stdout too */

    ExplainStats st;
    char dn[48];
    explain_run_stats(run, &st);
    double cost = (st.prompt_tokens * o.price_in + st.completion_tokens * o.price_out) / 1e6;
    if (o.c.backend == EXPLAIN_BACKEND_BASELINE)
        fprintf(stderr, "%s: %" PRIu64 " features: %" PRIu64 " ok, %" PRIu64 " failed%s; baseline backend, no API calls\n",
                sp_prog, n_ok + n_failed + n_dead, n_ok, n_failed, dead_note(n_dead, dn, sizeof dn));
    else
        fprintf(stderr, "%s: %" PRIu64 " features: %" PRIu64 " ok, %" PRIu64 " failed%s; %" PRIu64 " API calls (%" PRIu64
                " retries), %" PRIu64 " cached replies; %" PRId64 " prompt + %" PRId64 " completion tokens; "
                "estimated cost $%.4f (%s at $%g/$%g per million)\n", sp_prog, n_ok + n_failed + n_dead, n_ok, n_failed,
                dead_note(n_dead, dn, sizeof dn),
                st.calls, st.retries, st.cache_hits, st.prompt_tokens, st.completion_tokens, cost, o.c.model,
                o.price_in, o.price_out);
    agg_print(&agg, o.c.scorer);
    explain_run_free(run);
    tsz_reader_close(r);
    for (size_t i = 0; i < cap; i++) tsz_record_free(&win[i].rec);
    free(win);
    tsz_record_free(&out);
    free_all(&o, pdir, fr, pr, npr);
    if (n_failed) {
        fprintf(stderr, "%s: %" PRIu64 " of %" PRIu64 " features failed (their records say why; rerun to retry them)\n",
                sp_prog, n_failed, n_ok + n_failed + n_dead);
        return 3;
    }
    return 0;
}
