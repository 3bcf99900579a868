/* mlp-tap: select one hook from a gpt2-fwd stream and turn it into SAE
 * training rows `acts` (N,D), shuffled across a large buffer, or keep its
 * (B,T',D) context for sae-encode and topk-ctx; optionally normalised so the
 * mean squared norm is D, with the scale recorded in the stream. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "kinds.h"
#include "rows.h"
#include "stream.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: mlp-tap [OPTIONS] [ACTS.tsz | -] > ROWS.tsz\n"
"Select one hook's activations (B,T,D) from a gpt2-fwd stream and write SAE\n"
"training rows `acts` (N,D), or with --keep-context `acts` (B,T',D) + `tokens`.\n"
"\n"
"Options:\n"
"      --hook NAME         the hook to take [Default: the stream's last layer\n"
"                          mlp.hook_post, from its header or tensor names]\n"
"      --drop-bos          drop position 0 of every window (the BOS) [Default]\n"
"      --no-drop-bos       keep position 0\n"
"      --shuffle-buffer N  shuffle rows through a buffer of N rows; output is a\n"
"                          permutation of the input rows [Default: 0, in order]\n"
"      --seed S            seed of the shuffle [Default: 0]\n"
"      --keep-context      write (B,T',D) per window with tokens, doc, offset and\n"
"                          meta pos0, instead of rows\n"
"      --normalize         scale rows so their mean squared norm is D; the scale\n"
"                          is computed from the first --norm-rows rows\n"
"      --norm-rows M       rows used to compute the scale [Default: 16384]\n"
"      --norm-scale S      multiply by S (a scale recorded by an earlier run)\n"
"                          instead of computing one\n"
"      --dtype TYPE        acts as f32, bf16 or f16 [Default: f32]\n"
"      --rows N            rows per output record [Default: about 4 MB of data]\n"
);
    sp_stage_help(f, 24, "the stream");
    fprintf(f,
"\n"
"Every record's meta has \"hook\", \"d\" and \"norm_scale\" (x_stored = x_raw * norm_scale;\n"
"1 when not normalised); the header has them too. Memory: about\n"
"(shuffle-buffer + norm-rows) * D * 4 bytes plus one input record.\n"
"Exit status: 0 on success, 1 on a bad input, 2 on bad usage.\n");
    exit(status);
}

typedef struct {
    const char *input, *output, *hook;
    int drop_bos, keep_context, normalize, force, progress;
    uint64_t shuffle, seed, norm_rows, rows;
    double norm_scale;   /* > 0 when given */
    TszDtype dtype;
} Opts;

static void parse_args(Opts *o, int argc, char **argv)
{
    enum { O_HOOK = 256, O_DROP, O_NODROP, O_SHUF, O_SEED, O_KEEP, O_NORM, O_NROWS, O_NSCALE, O_DTYPE, O_ROWS };
    static const struct option longs[] = {
        {"hook", required_argument, 0, O_HOOK}, {"drop-bos", no_argument, 0, O_DROP},
        {"no-drop-bos", no_argument, 0, O_NODROP}, {"shuffle-buffer", required_argument, 0, O_SHUF},
        {"seed", required_argument, 0, O_SEED}, {"keep-context", no_argument, 0, O_KEEP},
        {"normalize", no_argument, 0, O_NORM}, {"norm-rows", required_argument, 0, O_NROWS},
        {"norm-scale", required_argument, 0, O_NSCALE}, {"dtype", required_argument, 0, O_DTYPE},
        {"rows", required_argument, 0, O_ROWS}, SP_STAGE_LONGOPTS,
    };
    *o = (Opts){.input = "-", .drop_bos = 1, .norm_rows = 16384, .dtype = TSZ_F32};
    int c;
    while ((c = getopt_long(argc, argv, "o:fhV", longs, NULL)) != -1) {
        switch (c) {
        case O_HOOK: o->hook = optarg; break;
        case O_DROP: o->drop_bos = 1; break;
        case O_NODROP: o->drop_bos = 0; break;
        case O_SHUF: o->shuffle = sp_opt_u64("--shuffle-buffer", optarg, 0, 1ull << 32); break;
        case O_SEED: o->seed = sp_opt_u64("--seed", optarg, 0, UINT64_MAX); break;
        case O_KEEP: o->keep_context = 1; break;
        case O_NORM: o->normalize = 1; break;
        case O_NROWS: o->norm_rows = sp_opt_u64("--norm-rows", optarg, 1, 1ull << 32); break;
        case O_NSCALE: o->norm_scale = sp_opt_double("--norm-scale", optarg, 1e-30, 1e30); break;
        case O_DTYPE: o->dtype = (TszDtype)SP_OPT_CHOICE("--dtype", optarg, tsz_float_dtypes); break;
        case O_ROWS: o->rows = sp_opt_u64("--rows", optarg, 1, 1ull << 32); break;
        default: sp_stage_opt(c, &o->output, &o->force, &o->progress, usage);
        }
    }
    if (optind < argc) o->input = argv[optind++];
    if (optind < argc) sp_usage_die("unexpected argument '%s'", argv[optind]);
    if (o->keep_context && o->shuffle) sp_usage_die("--shuffle-buffer and --keep-context do not go together");
    if (o->normalize && o->norm_scale > 0) sp_usage_die("--normalize computes a scale; --norm-scale gives one: pick one");
}

typedef struct {
    Opts *o;
    const char *in;      /* input name for messages */
    char hook[96];
    size_t D;
    TszReader *r;
    TszWriter *w;
    double scale;        /* x_stored = x_raw * scale */
    int scale_known;
    /* rows mode */
    float *pend;         /* (norm_rows, D) rows held until the scale is known */
    uint64_t npend;
    RowShuffle shuf;     /* --shuffle-buffer rows (0: in order) */
    SpRng rng;
    float *outbuf;       /* (rows_per_rec, D) */
    uint64_t nout, rows_per_rec;
    /* keep-context mode: records held until the scale is known */
    TszRecord *held;
    size_t nheld;
    uint64_t held_rows;
    TszRecord rec_out;
    SpProgress prog;
    uint64_t rows_in, rows_out;
    int header_done;
} Tap;

/* ---- hook selection ---- */

/* The deepest mlp.hook_post among names; 0 or -1 if there is none. */
static int deepest_mlp_post(const char *const *names, size_t n, char *out, size_t len)
{
    long best = -1;
    char err[256];
    for (size_t i = 0; i < n; i++) {
        GPT2Hook h;
        if (!names[i] || gpt2_hook_parse(NULL, names[i], &h, err, sizeof err) < 0) continue;
        if (h.kind == GPT2_HOOK_MLP_POST && (long)h.layer > best) best = (long)h.layer;
    }
    if (best < 0) return -1;
    snprintf(out, len, "blocks.%ld.mlp.hook_post", best);
    return 0;
}

static void choose_hook(Tap *t, const TszRecord *first)
{
    if (t->o->hook) {
        snprintf(t->hook, sizeof t->hook, "%s", t->o->hook);
        return;
    }
    const json_t *hooks = json_object_get(tsz_reader_header(t->r), "hooks");
    size_t n = json_array_size(hooks), m = first->n;
    const char **names = xcalloc(n + m + 1, sizeof *names);
    for (size_t i = 0; i < n; i++) names[i] = json_string_value(json_array_get(hooks, i));
    if (!n)
        for (size_t i = 0; i < m; i++) names[i] = first->t[i].name;
    int rc = deepest_mlp_post(names, n ? n : m, t->hook, sizeof t->hook);
    free(names);
    if (rc < 0) sp_die("%s: no --hook given and the stream has no blocks.L.mlp.hook_post", t->in);
}

/* ---- output ---- */
static void set_meta(Tap *t, json_t *m)
{
    json_object_set_new(m, "hook", json_string(t->hook));
    json_object_set_new(m, "d", json_integer((json_int_t)t->D));
    json_object_set_new(m, "norm_scale", json_real(t->scale));
}

static void scale_ready(Tap *t, double scale)
{
    t->scale = scale;
    t->scale_known = 1;
}

/* Hook, D and scale are known: fill the header (written with the first record). */
static void finish_header(Tap *t)
{
    if (t->header_done) return;
    t->header_done = 1;
    json_t *h = tsz_writer_header(t->w);
    set_meta(t, h);
    json_object_set_new(h, "drop_bos", json_boolean(t->o->drop_bos));
    json_object_set_new(h, "keep_context", json_boolean(t->o->keep_context));
    json_object_set_new(h, "shuffle_buffer", json_integer((json_int_t)t->o->shuffle));
    json_object_set_new(h, "seed", json_integer((json_int_t)t->o->seed));
}

static void write_rows(Tap *t)
{
    if (!t->nout) return;
    TszRecord *rec = &t->rec_out;
    tsz_record_clear(rec);
    json_object_set_new(rec->meta, "kind", json_string(SP_KIND_ACTS));
    set_meta(t, rec->meta);
    uint64_t shape[2] = {t->nout, t->D};
    TszTensor *x = tsz_record_add(rec, "acts", t->o->dtype, 2, shape);
    if (!x) sp_die("%s: record too large", t->in);
    tsz_convert(x->data, t->o->dtype, t->outbuf, TSZ_F32, t->nout * t->D);
    finish_header(t);
    tsz_write_or_die(t->w, rec);
    t->rows_out += t->nout;
    t->nout = 0;
}

static void emit_row(void *ud, const float *row)
{
    Tap *t = ud;
    memcpy(t->outbuf + t->nout * t->D, row, t->D * sizeof *row);
    if (++t->nout == t->rows_per_rec) write_rows(t);
}

/* Rows mode: rows wait in pend until the scale is known. */
static void take_rows(Tap *t, float *rows, size_t n)
{
    size_t D = t->D;
    for (size_t i = 0; i < n; i++) {
        if (t->scale_known) {
            rows_scale(rows + i * D, D, t->scale);
            row_shuffle_put(&t->shuf, rows + i * D);
            continue;
        }
        memcpy(t->pend + t->npend++ * D, rows + i * D, D * sizeof(float));
        if (t->npend < t->o->norm_rows) continue;
        scale_ready(t, rows_norm_scale(t->pend, t->npend, D));
        rows_scale(t->pend, t->npend * D, t->scale);
        for (uint64_t j = 0; j < t->npend; j++) row_shuffle_put(&t->shuf, t->pend + j * D);
        t->npend = 0;
    }
}

/* ---- keep-context mode ---- */
static void write_ctx(Tap *t, TszRecord *rec)
{
    TszTensor *a = tsz_record_get(rec, "acts");
    size_t n = tsz_tensor_numel(a);
    json_object_set_new(rec->meta, "norm_scale", json_real(t->scale));
    rows_scale(a->data, n, t->scale);
    if (t->o->dtype != TSZ_F32) {
        void *tmp = xmalloc(n * tsz_dtype_size(t->o->dtype));
        uint64_t shape[3] = {a->shape[0], a->shape[1], a->shape[2]};
        tsz_convert(tmp, t->o->dtype, a->data, TSZ_F32, n);
        tsz_record_add_copy(rec, "acts", t->o->dtype, 3, shape, tmp);
        free(tmp);
    }
    finish_header(t);
    tsz_write_or_die(t->w, rec);
    t->rows_out += n / t->D;
}

static void release_held(Tap *t)
{
    if (!t->scale_known && !t->nheld) scale_ready(t, 1.0);
    if (!t->scale_known) {
        /* the scale from the first norm_rows rows of the held records */
        float *x = xmalloc((t->held_rows ? t->held_rows : 1) * t->D * sizeof *x);
        size_t k = 0;
        for (size_t i = 0; i < t->nheld; i++) {
            const TszTensor *a = tsz_record_get(&t->held[i], "acts");
            size_t n = tsz_tensor_numel(a);
            memcpy(x + k, a->data, n * sizeof *x);
            k += n;
        }
        size_t rows = k / t->D < t->o->norm_rows ? k / t->D : t->o->norm_rows;
        scale_ready(t, rows_norm_scale(x, rows, t->D));
        free(x);
    }
    for (size_t i = 0; i < t->nheld; i++) {
        write_ctx(t, &t->held[i]);
        tsz_record_free(&t->held[i]);
    }
    t->nheld = 0;
}

/* Build the (B,T',D) f32 record of one input record. */
static void ctx_record(Tap *t, const TszRecord *in, const TszTensor *x, TszRecord *out)
{
    size_t B = x->shape[0], T = x->shape[1], D = t->D, p0 = t->o->drop_bos ? 1 : 0;
    tsz_record_clear(out);
    json_object_set_new(out->meta, "kind", json_string(SP_KIND_CTX_ACTS));
    set_meta(t, out->meta);
    json_object_set_new(out->meta, "pos0", json_integer((json_int_t)p0));
    uint64_t shape[3] = {B, T - p0, D};
    TszTensor *a = tsz_record_add(out, "acts", TSZ_F32, 3, shape);
    if (!a) sp_die("%s: record too large", t->in);
    size_t es = tsz_dtype_size(x->dtype);
    for (size_t b = 0; b < B; b++)
        tsz_to_f32((float *)a->data + b * (T - p0) * D, (const uint8_t *)x->data + (b * T + p0) * D * es, x->dtype,
                   (T - p0) * D);
    static const char *const pass[] = {"tokens", "doc", "offset"};
    for (size_t i = 0; i < sizeof pass / sizeof pass[0]; i++) {
        const TszTensor *p = tsz_record_get(in, pass[i]);
        if (p) tsz_record_add_copy(out, pass[i], p->dtype, p->ndim, p->shape, p->data);
    }
}

/* ---- input ---- */
static const TszTensor *check_record(Tap *t, const TszRecord *rec, uint64_t recno)
{
    char desc[96], err[400];
    const TszTensor *x = sp_kind_tensor(rec, SP_K_HOOK_ACTS, t->hook, err, sizeof err);
    if (!x) sp_die("%s: record %" PRIu64 ": %s", t->in, recno, err);
    if (!t->D) t->D = x->shape[2];
    if (x->shape[2] != t->D || !t->D)
        sp_die("%s: record %" PRIu64 ": %s is %s but earlier records have D = %zu", t->in, recno, t->hook,
               tsz_tensor_desc(x, desc, sizeof desc), t->D);
    const TszTensor *tok = tsz_record_get(rec, "tokens");
    if (t->o->keep_context && tok && (tok->ndim != 2 || tok->shape[0] != x->shape[0] || tok->shape[1] != x->shape[1]))
        sp_die("%s: record %" PRIu64 ": tokens is %s but %s is (%" PRIu64 ",%" PRIu64 ",%zu)", t->in, recno,
               tsz_tensor_desc(tok, desc, sizeof desc), t->hook, x->shape[0], x->shape[1], t->D);
    return x;
}

static void setup_buffers(Tap *t)
{
    const Opts *o = t->o;
    size_t D = t->D;
    t->rows_per_rec = o->rows ? o->rows : tsz_rows_per_record(D * tsz_dtype_size(o->dtype));
    if (o->keep_context) return;
    t->outbuf = xmalloc(t->rows_per_rec * D * sizeof(float));
    row_shuffle_init(&t->shuf, o->shuffle, D, &t->rng, emit_row, t);
    if (!t->scale_known) t->pend = xmalloc(o->norm_rows * D * sizeof(float));
}

static void take_record(Tap *t, const TszRecord *rec, uint64_t recno, float **rowbuf, size_t *rowcap)
{
    const TszTensor *x = check_record(t, rec, recno);
    if (recno == 1) setup_buffers(t);
    size_t B = x->shape[0], T = x->shape[1], D = t->D, p0 = t->o->drop_bos ? 1 : 0;
    if (T <= p0) return;  /* windows of one token have nothing after the BOS */
    t->rows_in += B * (T - p0);
    if (t->o->keep_context) {
        if (t->scale_known) {
            ctx_record(t, rec, x, &t->rec_out);
            write_ctx(t, &t->rec_out);
            return;
        }
        t->held = xrealloc(t->held, (t->nheld + 1) * sizeof *t->held);
        tsz_record_init(&t->held[t->nheld]);
        ctx_record(t, rec, x, &t->held[t->nheld++]);
        if ((t->held_rows += B * (T - p0)) >= t->o->norm_rows) release_held(t);
        return;
    }
    size_t n = B * (T - p0), es = tsz_dtype_size(x->dtype);
    if (n > *rowcap) *rowbuf = xrealloc(*rowbuf, (*rowcap = n) * D * sizeof(float));
    for (size_t b = 0; b < B; b++)
        tsz_to_f32(*rowbuf + b * (T - p0) * D, (const uint8_t *)x->data + (b * T + p0) * D * es, x->dtype,
                   (T - p0) * D);
    take_rows(t, *rowbuf, n);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Opts o;
    parse_args(&o, argc, argv);
    Tap t = {.o = &o, .in = sp_in_name(o.input), .scale = 1.0};
    sp_rng_seed(&t.rng, o.seed);
    t.r = tsz_reader_open(o.input);
    tsz_reader_check(t.r);
    if (!o.output || !strcmp(o.output, "-")) sp_check_binary_stdout(o.force);
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    t.w = tsz_writer_open(o.output ? o.output : "-", "mlp-tap", argc, argv, &wo);
    tsz_writer_check(t.w);
    tsz_writer_add_input(t.w, t.r);
    if (!o.normalize) scale_ready(&t, o.norm_scale > 0 ? o.norm_scale : 1.0);
    sp_progress_init(&t.prog, o.progress, "tap", "rows", 0);
    tsz_record_init(&t.rec_out);
    TszRecord rec;
    tsz_record_init(&rec);
    float *rowbuf = NULL;
    size_t rowcap = 0;
    uint64_t recno = 0;
    while (tsz_read_or_die(t.r, &rec)) {
        char err[400];
        if (sp_kind_check(&rec, SP_K_HOOK_ACTS, err, sizeof err) < 0)   // before choose_hook looks for hooks
            sp_die("%s: record %" PRIu64 ": %s", t.in, recno + 1, err);
        if (++recno == 1) choose_hook(&t, &rec);
        take_record(&t, &rec, recno, &rowbuf, &rowcap);
        sp_progress_update(&t.prog, t.rows_in);
    }
    // the end: a scale from fewer than --norm-rows rows, then drain the buffers
    if (o.keep_context) {
        release_held(&t);
    } else {
        if (!t.scale_known) {
            scale_ready(&t, rows_norm_scale(t.pend, t.npend, t.D));
            rows_scale(t.pend, t.npend * t.D, t.scale);
            for (uint64_t j = 0; j < t.npend; j++) row_shuffle_put(&t.shuf, t.pend + j * t.D);
        }
        row_shuffle_drain(&t.shuf);
        write_rows(&t);
    }
    if (!recno && o.hook) snprintf(t.hook, sizeof t.hook, "%s", o.hook);
    finish_header(&t);
    sp_progress_end(&t.prog);
    if (!o.keep_context) tsz_writer_set_rows(t.w, t.rows_out); /* sae-fit's schedule without a counting pass */
    tsz_writer_close_or_die(t.w);   /* flushes and closes stdout too */
    tsz_reader_close(t.r);
    tsz_record_free(&rec);
    tsz_record_free(&t.rec_out);
    free(t.held), free(rowbuf), free(t.pend), free(t.outbuf);
    row_shuffle_free(&t.shuf);
    return 0;
}
