/* sae-encode: feature activations of an SAE over activation records,
 * written sparsely (CSR per record) with tokens and provenance passed
 * through, for topk-ctx. The maps are sae_encode's (lib/sae.c). */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kinds.h"
#include "sae.h"
#include "sparse.h"
#include "stream.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: sae-encode --sae SAE.tsz [OPTIONS] [ACTS.tsz | -] > FEATURES.tsz\n"
"Encode activations (N,D) or (B,T',D) with a sparse autoencoder and write the\n"
"feature activations as CSR per record: indptr i64 (rows+1), indices i32,\n"
"values f32; tokens, doc, offset and pos0 pass through.\n"
"\n"
"Options:\n"
"  -s, --sae FILE       the SAE, as sae-fit or sae-convert writes it [required]\n"
"      --tensor NAME    the input tensor to encode [Default: acts, else the\n"
"                       SAE's hook, as gpt2-fwd names it]\n"
"      --features LIST  only these features, e.g. 0-99,512 (ids are kept)\n"
"                       [Default: all]\n"
"      --dense          write `features` f32 (rows,F) instead of CSR (with\n"
"                       --features: (rows,n) and `feature_ids` i32 (n))\n"
"      --any-hook       encode even when the input's hook is not the SAE's\n"
"      --batch N        rows per encoder GEMM [Default: 2^24/F, 16 to 4096]\n"
);
    sp_stage_help(f, 21, "the stream");
    fprintf(f,
"\n"
"Inputs normalised by mlp-tap (meta norm_scale s) are divided by s first; the\n"
"SAE then applies its own norm_scale. Only saepipe SAE files are read; convert\n"
"SAELens dictionaries with sae-convert. Memory: the SAE, one input record and\n"
"batch*F*4 bytes. Exit status: 0 on success, 1 on a bad input, 2 on bad usage.\n");
    exit(status);
}

typedef struct {
    const char *input, *output, *sae, *tensor, *features;
    int dense, any_hook, force, progress;
    uint64_t batch;
} Opts;

static void parse_args(Opts *o, int argc, char **argv)
{
    enum { O_TENSOR = 256, O_FEATURES, O_DENSE, O_ANYHOOK, O_BATCH };
    static const struct option longs[] = {
        {"sae", required_argument, 0, 's'}, {"tensor", required_argument, 0, O_TENSOR},
        {"features", required_argument, 0, O_FEATURES}, {"dense", no_argument, 0, O_DENSE},
        {"any-hook", no_argument, 0, O_ANYHOOK}, {"batch", required_argument, 0, O_BATCH},
        SP_STAGE_LONGOPTS,
    };
    *o = (Opts){.input = "-"};
    int c;
    while ((c = getopt_long(argc, argv, "s:o:fhV", longs, NULL)) != -1) {
        switch (c) {
        case 's': o->sae = optarg; break;
        case O_TENSOR: o->tensor = optarg; break;
        case O_FEATURES: o->features = optarg; break;
        case O_DENSE: o->dense = 1; break;
        case O_ANYHOOK: o->any_hook = 1; break;
        case O_BATCH: o->batch = sp_opt_u64("--batch", optarg, 1, 1u << 20); break;
        default: sp_stage_opt(c, &o->output, &o->force, &o->progress, usage);
        }
    }
    if (optind < argc) o->input = argv[optind++];
    if (optind < argc) sp_usage_die("unexpected argument '%s'", argv[optind]);
    if (!o->sae) sp_usage_die("--sae FILE is required");
}

typedef struct {
    const Opts *o;
    const char *in;
    SAE sae, sub;           /* sub: the selected features only (relu, batchtopk) */
    const SAE *enc;         /* the one encoding: &sae or &sub */
    int32_t *ids;           /* (nsel) selected features, NULL for all */
    size_t nsel;
    size_t batch, cap;      /* rows per batch; rows x, f and g hold */
    float *x;               /* (cap, D) */
    float *f;               /* (cap, enc->F) */
    float *g;               /* (cap, nsel) gathered, topk with --features */
    SpCsrBuf csr;
    TszRecord out;
} Enc;

/* Features other than topk's are independent, so a subset needs only its
 * columns of W_enc (and per-latent vectors); topk needs every pre-activation
 * to rank them. */
static void select_features(Enc *e)
{
    const SAE *s = &e->sae;
    char err[256];
    e->enc = s;
    if (!e->ids || s->arch == SAE_TOPK) return;
    if (sae_alloc(&e->sub, s->arch, s->D, e->nsel, err, sizeof err) < 0) sp_die("%s", err);
    SAE *u = &e->sub;
    u->norm_scale = s->norm_scale;
    memcpy(u->p.b_dec, s->p.b_dec, s->D * sizeof *u->p.b_dec);
    for (size_t j = 0; j < e->nsel; j++) {
        size_t f = (size_t)e->ids[j];
        for (size_t d = 0; d < s->D; d++) u->p.W_enc[d * e->nsel + j] = s->p.W_enc[d * s->F + f];
        u->p.b_enc[j] = s->p.b_enc[f];
        if (s->p.threshold) u->p.threshold[j] = s->p.threshold[f];
        if (s->p.r_mag) u->p.r_mag[j] = s->p.r_mag[f], u->p.b_mag[j] = s->p.b_mag[f];
    }
    e->enc = u;
}

/* Encode n rows of x, laid out as L (gemm.h), into the output (CSR buffer
 * or dense tensor). */
static void encode_rows(Enc *e, size_t n, SpRows L, float *dense_out)
{
    size_t Fe = e->enc->F, Fo = e->ids ? e->nsel : e->sae.F;
    sae_encode(e->enc, e->x, n, L, e->f);
    const float *y = e->f;
    if (e->ids && e->enc == &e->sae) {       /* topk: gather the selected columns */
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < e->nsel; j++) e->g[i * e->nsel + j] = e->f[i * Fe + (size_t)e->ids[j]];
        y = e->g;
    }
    if (dense_out) memcpy(dense_out, y, n * Fo * sizeof *y);
    else sparse_buf_append_dense(&e->csr, y, n, Fo, e->ids);
}

/* Room for n rows in x, f and g (a window may be longer than --batch). */
static void reserve_rows(Enc *e, size_t n)
{
    if (n <= e->cap) return;
    free(e->x), free(e->f), free(e->g);
    e->x = xmalloc_aligned(n * e->sae.D * sizeof *e->x);
    e->f = xmalloc_aligned(n * e->enc->F * sizeof *e->f);
    e->g = e->ids ? xmalloc(n * e->nsel * sizeof *e->g) : NULL;
    e->cap = n;
}

static double meta_scale(const Enc *e, const TszRecord *rec, uint64_t recno)
{
    json_t *s = json_object_get(rec->meta, "norm_scale");
    if (!s) return 1.0;
    double v = json_number_value(s);
    if (!json_is_number(s) || !(v > 0) || !isfinite(v))
        sp_die("%s: record %" PRIu64 ": meta 'norm_scale' must be a positive number", e->in, recno);
    return v;
}

static void check_hook(const Enc *e, const TszRecord *rec, uint64_t recno)
{
    const char *h = json_string_value(json_object_get(rec->meta, "hook"));
    if (e->o->any_hook || !h || !*h || !e->sae.hook[0] || !strcmp(h, e->sae.hook)) return;
    sp_die("%s: record %" PRIu64 ": activations of %s but the SAE was trained on %s (--any-hook to encode anyway)",
           e->in, recno, h, e->sae.hook);
}

/* Tokens (B,T) must match acts (B,T',D) with T = T' + pos0. */
static void pass_through(Enc *e, const TszRecord *rec, uint64_t recno, const TszTensor *x)
{
    json_t *p = json_object_get(rec->meta, "pos0");
    long long pos0 = p ? json_integer_value(p) : 0;
    if (p && (!json_is_integer(p) || pos0 < 0 || pos0 > 1))
        sp_die("%s: record %" PRIu64 ": meta 'pos0' must be 0 or 1", e->in, recno);
    if (p) json_object_set_new(e->out.meta, "pos0", json_integer(pos0));
    const TszTensor *t = tsz_record_get(rec, "tokens");
    char d1[96], d2[96];
    if (t) {
        if (x->ndim != 3 || t->dtype != TSZ_I32 || t->ndim != 2 || t->shape[0] != x->shape[0] ||
            t->shape[1] != x->shape[1] + (uint64_t)pos0)
            sp_die("%s: record %" PRIu64 ": tokens is %s but %s is %s with pos0 %lld", e->in, recno,
                   tsz_tensor_desc(t, d1, sizeof d1), x->name, tsz_tensor_desc(x, d2, sizeof d2), pos0);
        tsz_record_add_copy(&e->out, "tokens", t->dtype, t->ndim, t->shape, t->data);
    }
    static const char *const prov[] = {"doc", "offset"};
    for (size_t i = 0; i < 2; i++) {
        const TszTensor *v = tsz_record_get(rec, prov[i]);
        if (!v) continue;
        if (v->ndim != 1 || v->shape[0] != x->shape[0])
            sp_die("%s: record %" PRIu64 ": %s is %s but there are %" PRIu64 " windows", e->in, recno, prov[i],
                   tsz_tensor_desc(v, d1, sizeof d1), x->shape[0]);
        tsz_record_add_copy(&e->out, prov[i], v->dtype, v->ndim, v->shape, v->data);
    }
    if (x->ndim == 3) json_object_set_new(e->out.meta, "t", json_integer((json_int_t)x->shape[1]));
}

/* The tensor to encode: --tensor's, else the main tensor of a record of
 * kind acts, ctx_acts or hook_acts (the SAE's hook), checked as tsz(5) says. */
static const TszTensor *input_tensor(Enc *e, const TszRecord *rec, uint64_t recno)
{
    char err[400];
    const TszTensor *x = NULL;
    if (e->o->tensor) {
        x = tsz_record_get(rec, e->o->tensor);
        if (!x) sp_die("%s: record %" PRIu64 ": no tensor '%s' (--tensor names another)", e->in, recno, e->o->tensor);
        return x;
    }
    if (sp_kind_check(rec, SP_K_ACTS | SP_K_CTX_ACTS | SP_K_HOOK_ACTS, err, sizeof err) == 0) {
        SpKind k = sp_kind_of(rec);
        x = sp_kind_tensor(rec, k, k == SP_K_HOOK_ACTS ? e->sae.hook : NULL, err, sizeof err);
    }
    if (!x) sp_die("%s: record %" PRIu64 ": %s", e->in, recno, err);
    return x;
}

static void encode_record(Enc *e, const TszRecord *rec, uint64_t recno)
{
    const TszTensor *x = input_tensor(e, rec, recno);
    size_t D = e->sae.D, Fo = e->ids ? e->nsel : e->sae.F;
    char d1[96];
    if (!tsz_dtype_is_float(x->dtype) || x->ndim < 2 || x->ndim > 3 || x->shape[x->ndim - 1] != D)
        sp_die("%s: record %" PRIu64 ": %s is %s but the SAE needs (N,%zu) or (B,T,%zu) floats", e->in, recno,
               x->name, tsz_tensor_desc(x, d1, sizeof d1), D, D);
    check_hook(e, rec, recno);
    double inv = 1.0 / meta_scale(e, rec, recno);
    size_t rows = x->shape[0] * (x->ndim == 3 ? x->shape[1] : 1), es = tsz_dtype_size(x->dtype);
    tsz_record_clear(&e->out);
    json_t *m = e->out.meta;
    json_object_set_new(m, "kind", json_string(SP_KIND_FEATURES));
    json_object_set_new(m, "f", json_integer((json_int_t)e->sae.F));
    json_object_set_new(m, "rows", json_integer((json_int_t)rows));
    if (e->sae.hook[0]) json_object_set_new(m, "hook", json_string(e->sae.hook));
    float *dense = NULL;
    if (e->o->dense) {
        uint64_t sh[2] = {rows, Fo};
        dense = tsz_record_add(&e->out, "features", TSZ_F32, 2, sh)->data;
    }
    sparse_buf_reset(&e->csr);
    /* Context windows (B,T,D) go in batches of whole windows, laid out as
     * windows: a window's features have the same bytes in any batch and any
     * shard. Rows (N,D) are laid out by their place in the record: --batch
     * leaves them as they are (a shard cut inside a record rounds within
     * the tolerance of README "Reproducibility"). */
    size_t T = x->ndim == 3 ? x->shape[1] : 0, step = e->batch;
    if (T) step = step < T ? T : step / T * T;
    reserve_rows(e, step);
    for (size_t r0 = 0; r0 < rows; r0 += step) {
        size_t n = rows - r0 < step ? rows - r0 : step;
        tsz_to_f32(e->x, (const uint8_t *)x->data + r0 * D * es, x->dtype, n * D);
        if (inv != 1.0)
            for (size_t i = 0; i < n * D; i++) e->x[i] = (float)(e->x[i] * inv);
        for (size_t i = 0; i < n * D; i++)
            if (!isfinite(e->x[i])) sp_die("%s: record %" PRIu64 ": %s row %zu is not finite", e->in, recno,
                                           x->name, r0 + i / D);
        encode_rows(e, n, T ? SP_ROWS_WINDOWS(T) : SP_ROWS_AT(r0), dense ? dense + r0 * Fo : NULL);
    }
    if (dense && e->ids) {
        uint64_t sh[1] = {e->nsel};
        tsz_record_add_copy(&e->out, "feature_ids", TSZ_I32, 1, sh, e->ids);
    } else if (!dense) {
        uint64_t sp[1] = {rows + 1}, sn[1] = {e->csr.nnz};
        tsz_record_add_copy(&e->out, "indptr", TSZ_I64, 1, sp, e->csr.indptr);
        tsz_record_add_copy(&e->out, "indices", TSZ_I32, 1, sn, e->csr.indices);
        tsz_record_add_copy(&e->out, "values", TSZ_F32, 1, sn, e->csr.values);
    }
    pass_through(e, rec, recno, x);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Opts o;
    parse_args(&o, argc, argv);
    Enc e = {.o = &o, .in = sp_in_name(o.input)};
    char err[512];
    if (sae_load(&e.sae, o.sae, err, sizeof err) < 0) sp_die("%s", err);
    if (o.features && sparse_parse_features(o.features, e.sae.F, &e.ids, &e.nsel, err, sizeof err) < 0)
        sp_usage_die("--features: %s", err);
    select_features(&e);
    size_t auto_batch = (1u << 24) / e.sae.F;
    e.batch = o.batch ? o.batch : auto_batch < 16 ? 16 : auto_batch > 4096 ? 4096 : auto_batch;
    reserve_rows(&e, e.batch);

    TszReader *r = tsz_reader_open(o.input);
    tsz_reader_check(r);
    if (!o.output || !strcmp(o.output, "-")) sp_check_binary_stdout(o.force);
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    TszWriter *w = tsz_writer_open(o.output ? o.output : "-", "sae-encode", argc, argv, &wo);
    tsz_writer_check(w);
    tsz_writer_add_input(w, r);
    json_t *h = tsz_writer_header(w);
    json_object_set_new(h, "f", json_integer((json_int_t)e.sae.F));
    json_object_set_new(h, "d", json_integer((json_int_t)e.sae.D));
    json_object_set_new(h, "arch", json_string(sae_arch_name(e.sae.arch)));
    json_object_set_new(h, "sae", json_string(o.sae));
    if (e.sae.hook[0]) json_object_set_new(h, "hook", json_string(e.sae.hook));
    if (o.features) json_object_set_new(h, "features", json_string(o.features));

    SpProgress prog;
    sp_progress_init(&prog, o.progress, "encode", "rows", 0);
    TszRecord rec;
    tsz_record_init(&rec);
    tsz_record_init(&e.out);
    uint64_t recno = 0, rows = 0;
    while (tsz_read_or_die(r, &rec)) {
        encode_record(&e, &rec, ++recno);
        tsz_write_or_die(w, &e.out);
        rows += (uint64_t)json_integer_value(json_object_get(e.out.meta, "rows"));
        sp_progress_update(&prog, rows);
    }
    sp_progress_end(&prog);
    tsz_writer_close_or_die(w);
    tsz_reader_close(r);
    tsz_record_free(&rec);
    tsz_record_free(&e.out);
    sparse_buf_free(&e.csr);
    if (e.enc == &e.sub) sae_free(&e.sub);
    sae_free(&e.sae);
    free(e.x), free(e.f), free(e.g), free(e.ids);
    return 0;
}
