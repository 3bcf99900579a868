/* gpt2-fwd: run a GPT-2 family model over token windows and write the
 * activations at the requested hooks (TransformerLens names), optionally
 * the per-token loss, optionally with hooks patched (ablations, SAE
 * reconstructions). The model and forward live in lib/gpt2.c. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "gpt2.h"
#include "kinds.h"
#include "npy.h"
#include "sae.h"
#include "stream.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: gpt2-fwd --model DIR [OPTIONS] [TOKENS.tsz | -] > ACTS.tsz\n"
"Run a GPT-2 family model (config.json + model.safetensors, or the shards a\n"
"model.safetensors.index.json lists) over the token windows of a stream\n"
"(records with `tokens` i32 (rows,T)) and write, per batch, `tokens`, one\n"
"(B,T,D) tensor per hook, and with --loss `loss` (B,T-1).\n"
"\n"
"Options:\n"
"  -m, --model DIR        model directory (Hugging Face layout), or a repo id\n"
"                         that model-fetch put in the cache [required]\n"
"      --hook NAME        write this hook, e.g. blocks.3.mlp.hook_post; repeat for\n"
"                         more; `all` for every hook of every layer\n"
"                         [Default: the last layer's mlp.hook_post, unless --loss]\n"
"      --loss             write the per-token next-token loss `loss` (B,T-1) f32\n"
"      --patch HOOK=WHAT  replace HOOK's value during the forward; WHAT is `zero`,\n"
"                         `mean:FILE` (FILE.npy: a (D) vector) or `sae:FILE` (an SAE\n"
"                         from sae-fit: its reconstruction, norm_scale applied);\n"
"                         repeatable\n"
"  -b, --batch N          windows per forward [Default: 8]\n"
"      --dtype TYPE       hook tensors as f32, bf16 or f16 [Default: f32]\n"
);
    sp_stage_help(f, 23, "the stream");
    fprintf(f,
"\n"
"Threads: OpenBLAS's (OPENBLAS_NUM_THREADS). Windows longer than the model's\n"
"n_positions are refused. A hook both patched and written is written patched.\n"
"Exit status: 0 on success, 1 on a bad input or model, 2 on bad usage.\n");
    exit(status);
}

/* An SAE splice: the hook's value becomes its reconstruction. The scratch
 * grows with the largest batch seen (once per window length, not per call). */
typedef struct {
    SAE sae;
    float *code;       /* (N, F) */
    float *x_hat;      /* (N, D) */
    size_t cap;        /* rows the scratch holds */
} SAEPatch;

typedef struct {
    GPT2Hook hook;
    char *spec;        /* "zero", "mean:FILE", "sae:FILE" */
    float *mean;       /* (D) for mean */
    SAEPatch *sp;      /* for sae */
} Patch;

static int sae_patch(void *ctx, const char *hook, float *act, size_t B, size_t T, size_t D)
{
    SAEPatch *p = ctx;
    size_t N = B * T;
    if (N > p->cap) {
        free(p->code), free(p->x_hat);
        p->code = xmalloc_aligned(N * p->sae.F * sizeof(float));
        p->x_hat = xmalloc_aligned(N * D * sizeof(float));
        p->cap = N;
    }
    sae_reconstruct(&p->sae, act, N, SP_ROWS_WINDOWS(T), p->code, p->x_hat);
    memcpy(act, p->x_hat, N * D * sizeof *act);
    return 0;
}

/* Load an SAE for a hook; its width and recorded hook must match. */
static SAEPatch *load_sae_patch(const char *path, const char *hook, size_t D)
{
    SAEPatch *p = xcalloc(1, sizeof *p);
    char err[512];
    if (sae_load(&p->sae, path, err, sizeof err) < 0) sp_die("%s", err);
    if (p->sae.D != D)
        sp_die("%s: SAE width d=%zu but %s has width %zu", sp_in_name(path), p->sae.D, hook, D);
    if (p->sae.hook[0] && strcmp(p->sae.hook, hook))
        sp_die("%s: SAE was trained on %s, not %s", sp_in_name(path), p->sae.hook, hook);
    return p;
}

typedef struct {
    const char *model, *input, *output;
    char **hooks;      /* (nhooks) names as given */
    size_t nhooks;
    Patch *patches;
    size_t npatches;
    int loss, force, progress;
    size_t batch;
    TszDtype dtype;
} Opts;

static void parse_args(Opts *o, int argc, char **argv)
{
    enum { O_HOOK = 256, O_LOSS, O_PATCH, O_DTYPE };
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'}, {"hook", required_argument, 0, O_HOOK},
        {"loss", no_argument, 0, O_LOSS}, {"patch", required_argument, 0, O_PATCH},
        {"batch", required_argument, 0, 'b'}, {"dtype", required_argument, 0, O_DTYPE},
        SP_STAGE_LONGOPTS,
    };
    *o = (Opts){.batch = 8, .dtype = TSZ_F32, .input = "-"};
    int c;
    while ((c = getopt_long(argc, argv, "m:b:o:fhV", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case O_HOOK:
            o->hooks = xrealloc(o->hooks, (o->nhooks + 1) * sizeof *o->hooks);
            o->hooks[o->nhooks++] = optarg;
            break;
        case O_LOSS: o->loss = 1; break;
        case O_PATCH:
            o->patches = xrealloc(o->patches, (o->npatches + 1) * sizeof *o->patches);
            o->patches[o->npatches++] = (Patch){.spec = optarg};
            break;
        case 'b': o->batch = sp_opt_u64("--batch", optarg, 1, 1 << 16); break;
        case O_DTYPE: o->dtype = (TszDtype)SP_OPT_CHOICE("--dtype", optarg, tsz_float_dtypes); break;
        default: sp_stage_opt(c, &o->output, &o->force, &o->progress, usage);
        }
    }
    if (optind < argc) o->input = argv[optind++];
    if (optind < argc) sp_usage_die("unexpected argument '%s'", argv[optind]);
    if (!o->model) sp_usage_die("--model DIR is required");
}

/* Expand --hook names (and `all`) into a sorted, duplicate-free list. */
static size_t resolve_hooks(const Opts *o, const GPT2Config *c, GPT2Hook **out)
{
    size_t cap = c->num_layers * GPT2_HOOK_NKIND;
    char *want = xcalloc(cap, 1), err[256];
    for (size_t i = 0; i < o->nhooks; i++) {
        if (!strcmp(o->hooks[i], "all")) {
            memset(want, 1, cap);
            continue;
        }
        GPT2Hook h;
        if (gpt2_hook_parse(c, o->hooks[i], &h, err, sizeof err) < 0) sp_usage_die("--hook: %s", err);
        want[gpt2_hook_index(h)] = 1;
    }
    if (!o->nhooks && !o->loss) want[gpt2_hook_index((GPT2Hook){c->num_layers - 1, GPT2_HOOK_MLP_POST})] = 1;
    GPT2Hook *h = xmalloc((cap + 1) * sizeof *h);
    size_t n = 0;
    for (size_t k = 0; k < cap; k++)
        if (want[k]) h[n++] = (GPT2Hook){k / GPT2_HOOK_NKIND, (GPT2HookKind)(k % GPT2_HOOK_NKIND)};
    free(want);
    *out = h;
    return n;
}

/* A (D) mean vector from FILE.npy (any float dtype, shape (D)). */
static float *load_mean(const char *path, size_t D)
{
    NpyReader n;
    if (npy_open(&n, path) < 0) sp_die("%s", n.err);
    uint64_t len = n.ndim == 1 ? n.shape[0] : 0;
    if (n.ndim != 1 || len != D || !tsz_dtype_is_float(n.dtype)) {
        npy_close(&n);
        sp_die("%s: mean must be a (%zu) float vector", path, D);
    }
    void *raw = xmalloc(D * 8);
    float *m = xmalloc(D * sizeof *m);
    if (npy_read_rows(&n, raw, D) != (int64_t)D) sp_die("%s", n.err[0] ? n.err : "short read");
    tsz_to_f32(m, raw, n.dtype, D);
    free(raw);
    npy_close(&n);
    return m;
}

/* Parse each --patch HOOK=WHAT into a tap. */
static void resolve_patches(Opts *o, const GPT2Config *c, GPT2Tap *taps)
{
    char err[256];
    for (size_t i = 0; i < o->npatches; i++) {
        Patch *p = &o->patches[i];
        char *eq = strchr(p->spec, '=');
        if (!eq) sp_usage_die("--patch: expected HOOK=zero|mean:FILE|sae:FILE, got '%s'", p->spec);
        *eq = 0;
        if (gpt2_hook_parse(c, p->spec, &p->hook, err, sizeof err) < 0) sp_usage_die("--patch: %s", err);
        const char *what = eq + 1;
        taps[i] = (GPT2Tap){.hook = p->hook};
        if (!strcmp(what, "zero")) {
            taps[i].fn = gpt2_patch_zero;
        } else if (!strncmp(what, "mean:", 5)) {
            p->mean = load_mean(what + 5, gpt2_hook_dim(c, p->hook));
            taps[i].fn = gpt2_patch_mean;
            taps[i].ctx = p->mean;
        } else if (!strncmp(what, "sae:", 4)) {
            p->sp = load_sae_patch(what + 4, p->spec, gpt2_hook_dim(c, p->hook));
            taps[i].fn = sae_patch;
            taps[i].ctx = p->sp;
        } else {
            sp_usage_die("--patch: expected zero, mean:FILE or sae:FILE after '=', got '%s'", what);
        }
        *eq = '=';
    }
}

/* Windows waiting for a forward: all of one length T. */
typedef struct {
    int32_t *tok;      /* (maxB, T) */
    int64_t *doc, *off; /* (maxB) */
    size_t n, T;
    int has_doc, has_off;
} Batch;

typedef struct {
    Opts *o;
    GPT2 *g;
    GPT2Hook *hooks;   /* (nh) written hooks */
    size_t nh;
    GPT2Tap *taps;     /* (npatches + nh) */
    float **save;      /* (nh) staging (maxB, maxT, D) */
    float *loss;       /* (maxB, maxT) */
    TszWriter *w;
    TszRecord out;
    SpProgress prog;
    uint64_t tokens;
} Fwd;

/* Make room for windows of length T (scratch grows with the longest seen). */
static void ensure_len(Fwd *f, size_t T)
{
    GPT2 *g = f->g;
    if (g->acts_mem && T <= g->maxT) return;
    if (gpt2_alloc(g, f->o->batch, T, f->o->loss) < 0) sp_die("%s", g->err);
    for (size_t i = 0; i < f->nh; i++) {
        free(f->save[i]);
        f->save[i] = xmalloc_aligned(f->o->batch * T * gpt2_hook_dim(&g->cfg, f->hooks[i]) * sizeof(float));
        f->taps[f->o->npatches + i].save = f->save[i];
    }
    free(f->loss);
    f->loss = xmalloc(f->o->batch * T * sizeof(float));
}

static void flush(Fwd *f, Batch *b)
{
    if (!b->n) return;
    size_t B = b->n, T = b->T;
    ensure_len(f, T);
    GPT2Run r = {.tokens = b->tok, .B = B, .T = T, .taps = f->taps, .ntaps = f->o->npatches + f->nh,
                 .loss = f->o->loss ? f->loss : NULL};
    if (gpt2_forward(f->g, &r) < 0) sp_die("%s: %s", sp_in_name(f->o->input), f->g->err);
    TszRecord *rec = &f->out;
    tsz_record_clear(rec);
    json_object_set_new(rec->meta, "kind", json_string(SP_KIND_HOOK_ACTS));
    uint64_t s2[2] = {B, T}, s1[1] = {B}, sl[2] = {B, T - 1};
    tsz_record_add_copy(rec, "tokens", TSZ_I32, 2, s2, b->tok);
    char name[64];
    for (size_t i = 0; i < f->nh; i++) {
        size_t D = gpt2_hook_dim(&f->g->cfg, f->hooks[i]);
        uint64_t s3[3] = {B, T, D};
        TszTensor *t = tsz_record_add(rec, gpt2_hook_name(f->hooks[i], name, sizeof name), f->o->dtype, 3, s3);
        tsz_convert(t->data, f->o->dtype, f->save[i], TSZ_F32, B * T * D);
    }
    if (f->o->loss) tsz_record_add_copy(rec, "loss", TSZ_F32, 2, sl, f->loss);
    if (b->has_doc) tsz_record_add_copy(rec, "doc", TSZ_I64, 1, s1, b->doc);
    if (b->has_off) tsz_record_add_copy(rec, "offset", TSZ_I64, 1, s1, b->off);
    tsz_write_or_die(f->w, rec);
    f->tokens += B * T;
    sp_progress_update(&f->prog, f->tokens);
    b->n = 0;
}

/* An optional (rows) integer tensor of the input record, as i64. */
static const TszTensor *side_tensor(const TszRecord *rec, const char *name, uint64_t rows, const char *in,
                                    uint64_t recno)
{
    const TszTensor *t = tsz_record_get(rec, name);
    if (!t) return NULL;
    if (t->ndim != 1 || t->shape[0] != rows || (t->dtype != TSZ_I64 && t->dtype != TSZ_I32))
        sp_die("%s: record %" PRIu64 ": %s must be i64 (%" PRIu64 ") beside tokens", in, recno, name, rows);
    return t;
}

static int64_t side_value(const TszTensor *t, uint64_t i)
{
    return t->dtype == TSZ_I64 ? ((const int64_t *)t->data)[i] : ((const int32_t *)t->data)[i];
}

/* Check one input record and move its windows into batches. */
static void take_record(Fwd *f, Batch *b, const TszRecord *rec, uint64_t recno)
{
    const char *in = sp_in_name(f->o->input);
    const GPT2Config *c = &f->g->cfg;
    char err[256];
    const TszTensor *t = gpt2_record_tokens(c, rec, err, sizeof err);
    if (!t) sp_die("%s: record %" PRIu64 ": %s", in, recno, err);
    uint64_t rows = t->shape[0], T = t->shape[1];
    const TszTensor *doc = side_tensor(rec, "doc", rows, in, recno), *off = side_tensor(rec, "offset", rows, in, recno);
    for (uint64_t i = 0; i < rows; i++) {
        if (b->n && (b->T != T || b->has_doc != !!doc || b->has_off != !!off)) flush(f, b);
        if (!b->n) {
            b->T = T, b->has_doc = !!doc, b->has_off = !!off;
            b->tok = xrealloc(b->tok, f->o->batch * T * sizeof *b->tok);
        }
        for (uint64_t j = 0; j < T; j++) {
            int64_t v = side_value(t, i * T + j);
            if (v < 0 || (uint64_t)v >= c->vocab_size)
                sp_die("%s: record %" PRIu64 ": token id %" PRId64 " at row %" PRIu64 ", position %" PRIu64
                       " is outside the model's vocabulary [0, %zu)", in, recno, v, i, j, c->vocab_size);
            b->tok[b->n * T + j] = (int32_t)v;
        }
        if (doc) b->doc[b->n] = side_value(doc, i);
        if (off) b->off[b->n] = side_value(off, i);
        if (++b->n == f->o->batch) flush(f, b);
    }
}

static json_t *names_json(const GPT2Hook *h, size_t n)
{
    json_t *a = json_array();
    char name[64];
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(gpt2_hook_name(h[i], name, sizeof name)));
    return a;
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Opts o;
    parse_args(&o, argc, argv);
    // --model: a directory, or a repo id already in the model cache
    char dir[4096], err[1024];
    if (fetch_resolve_model(o.model, dir, sizeof dir, err, sizeof err) < 0) sp_die("%s", err);
    GPT2 g;
    if (gpt2_open(&g, dir) < 0) sp_die("%s", g.err);
    Fwd f = {.o = &o, .g = &g};
    f.nh = resolve_hooks(&o, &g.cfg, &f.hooks);
    // patches first, so a hook both patched and written is written patched
    f.taps = xcalloc(o.npatches + f.nh + 1, sizeof *f.taps);
    resolve_patches(&o, &g.cfg, f.taps);
    f.save = xcalloc(f.nh + 1, sizeof *f.save);
    for (size_t i = 0; i < f.nh; i++) f.taps[o.npatches + i].hook = f.hooks[i];

    TszReader *r = tsz_reader_open(o.input);
    tsz_reader_check(r);
    if (!o.output || !strcmp(o.output, "-")) sp_check_binary_stdout(o.force);
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    f.w = tsz_writer_open(o.output ? o.output : "-", "gpt2-fwd", argc, argv, &wo);
    tsz_writer_check(f.w);
    tsz_writer_add_input(f.w, r);
    json_t *h = tsz_writer_header(f.w);
    json_object_set_new(h, "model", json_string(o.model));
    json_object_set_new(h, "hooks", names_json(f.hooks, f.nh));
    json_object_set_new(h, "n_layer", json_integer((json_int_t)g.cfg.num_layers));
    json_object_set_new(h, "n_embd", json_integer((json_int_t)g.cfg.channels));
    json_object_set_new(h, "dtype", json_string(tsz_dtype_name(o.dtype)));
    json_t *pa = json_array();
    for (size_t i = 0; i < o.npatches; i++) json_array_append_new(pa, json_string(o.patches[i].spec));
    json_object_set_new(h, "patches", pa);
    json_object_set_new(h, "loss", json_boolean(o.loss));

    sp_progress_init(&f.prog, o.progress, "forward", "tokens", 0);
    tsz_record_init(&f.out);
    TszRecord rec;
    tsz_record_init(&rec);
    Batch b = {.doc = xmalloc(o.batch * sizeof(int64_t)), .off = xmalloc(o.batch * sizeof(int64_t))};
    uint64_t recno = 0;
    while (tsz_read_or_die(r, &rec)) take_record(&f, &b, &rec, ++recno);
    flush(&f, &b);
    sp_progress_end(&f.prog);
    tsz_writer_close_or_die(f.w);   /* flushes and closes stdout too */
    tsz_reader_close(r);
    tsz_record_free(&rec);
    tsz_record_free(&f.out);
    for (size_t i = 0; i < f.nh; i++) free(f.save[i]);
    for (size_t i = 0; i < o.npatches; i++) {
        SAEPatch *sp = o.patches[i].sp;
        if (sp) sae_free(&sp->sae), free(sp->code), free(sp->x_hat), free(sp);
        free(o.patches[i].mean);
    }
    free(f.save), free(f.taps), free(f.hooks), free(f.loss), free(b.tok), free(b.doc), free(b.off);
    free(o.hooks), free(o.patches);
    gpt2_close(&g);
    return 0;
}
