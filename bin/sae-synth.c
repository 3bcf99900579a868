/* sae-synth: synthetic activations with known features (lib/synth.c), and
 * the scores of an SAE trained on them (lib/synth_score.c).
 *   sae-synth [OPTIONS] > ACTS.tsz          rows, and the model with --truth
 *   sae-synth score --truth T --sae S ACTS  MCC, MMCS, F1, uniqueness
 *   sae-synth stats --truth T ACTS          the rows against the model */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sae.h"
#include "sparse.h"
#include "stream.h"
#include "kinds.h"
#include "synth.h"

/* The model's knobs: one table drives the flags, --help and parsing. */
typedef struct { const char *name; char t; size_t off; double lo, hi; const char *help; } Knob;
#define K(n, f, t, lo, hi, h) {n, t, offsetof(SynthConfig, f), lo, hi, h}
static const Knob knobs[] = {
    K("features", F, 'z', 1, 1 << 24, "true features F"),
    K("dim", D, 'z', 1, 1 << 16, "row width D"),
    K("zipf", zipf_exp, 'd', 1e-3, 10, "Zipf exponent of firing probability in rank"),
    K("p-max", p_max, 'd', 1e-9, 1, "firing probability of the most frequent feature"),
    K("p-min", p_min, 'd', 1e-9, 1, "firing probability of the rarest feature"),
    K("corr-rank", corr_rank, 'z', 0, 4096, "rank of the correlation (0: independent)"),
    K("corr-scale", corr_scale, 'd', 0, 10, "std of the correlation loadings"),
    K("roots", h_roots, 'z', 0, 1 << 24, "hierarchy trees (0: none)"),
    K("branch", h_branch, 'z', 0, 1024, "children of each parent"),
    K("depth", h_depth, 'z', 0, 16, "levels of a tree, the root's included"),
    K("exclusive", h_exclusive, 'i', 0, 1, "1: at most one child of a parent fires"),
    K("scale-children", h_scale, 'i', 0, 1, "1: a child's magnitude times parent/mean"),
    K("mag-start", mag_start, 'd', 1e-9, 1e6, "mean magnitude of the most frequent feature"),
    K("mag-end", mag_end, 'd', 1e-9, 1e6, "mean magnitude of the rarest feature"),
    K("std-mean", std_mean, 'd', 0, 1e6, "per-feature magnitude std ~ |N(std-mean, std-std)|"),
    K("std-std", std_std, 'd', 0, 1e6, ""),
    K("bias", bias, 'd', 0, 1e6, "norm of the bias added to every row"),
    K("noise", noise, 'd', 0, 1e6, "std of Gaussian noise on every dimension"),
    K("seed", seed, 'u', 0, 0, "the model's seed (directions, hierarchy, magnitudes)"),
};
#define NKNOBS (sizeof knobs / sizeof *knobs)

static void knob_default(const Knob *k, char *buf, size_t n)
{
    SynthConfig c;
    synth_config_default(&c);
    const char *p = (const char *)&c + k->off;
    if (k->t == 'd') snprintf(buf, n, "%g", *(const double *)p);
    else if (k->t == 'z') snprintf(buf, n, "%zu", *(const size_t *)p);
    else if (k->t == 'i') snprintf(buf, n, "%d", *(const int *)p);
    else snprintf(buf, n, "%" PRIu64, *(const uint64_t *)p);
}

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: sae-synth [OPTIONS] [--truth TRUTH.tsz] > ACTS.tsz\n"
"       sae-synth score --truth TRUTH.tsz --sae SAE.tsz [--json] [ACTS.tsz | -]\n"
"       sae-synth stats --truth TRUTH.tsz [ACTS.tsz | -]\n"
"Synthetic activations with known features, after SAELens' SynthSAEBench:\n"
"superposition (F > D), Zipf firing frequencies, correlated firing,\n"
"parent/child hierarchies, magnitude noise. Writes records of kind \"acts\"\n"
"(acts f32 (N,D), which sae-fit trains on, with the true activations as CSR\n"
"indptr/indices/values), and with --truth the model (directions (F,D)).\n"
"\n"
"Options:\n"
"  -n, --rows N         rows to write [Default: 65536]\n"
"      --preset NAME    small (the defaults below) or synthsaebench\n"
"                       (SynthSAEBench-16k: F 16384, D 768); flags override\n"
"      --truth FILE     write the model (kind synth_truth) to FILE\n"
"      --data-seed N    seed of the rows [Default: seed+1]\n"
"      --no-truth-rows  leave out the true activations (acts only)\n"
"      --record-rows N  rows a record [Default: about 4 MB of acts]\n");
    for (size_t i = 0; i < NKNOBS; i++) {
        char flag[40], def[32];
        snprintf(flag, sizeof flag, "--%s %s", knobs[i].name, knobs[i].t == 'd' ? "X" : "N");
        knob_default(&knobs[i], def, sizeof def);
        fprintf(f, "      %-15s%s [Default: %s]\n", flag, knobs[i].help, def);
    }
    sp_stage_help(f, 19, "the stream");
    fprintf(f,
"\n"
"score: the SAE's latents on up to --rows rows of ACTS (sae-synth's output,\n"
"true activations included) against the truth: mcc (Hungarian matching of\n"
"activation correlations), mcc_dec (SynthSAEBench's MCC, of decoder\n"
"directions), mmcs, f1, uniqueness, r2. A record of kind synth_score, or\n"
"with --json one line of JSON on stdout. stats: one line of JSON.\n"
"Exit status: 0 on success, 1 on a bad input, 2 on bad usage.\n");
    exit(status);
}

typedef struct {
    const char *output, *truth, *preset;
    int force, progress, truth_rows;
    uint64_t rows, record_rows, data_seed;
    int have_data_seed;
    SynthConfig cfg;
} GenOpts;

static void set_knob(SynthConfig *c, const Knob *k, const char *arg)
{
    char flag[48];
    snprintf(flag, sizeof flag, "--%s", k->name);
    char *p = (char *)c + k->off;
    if (k->t == 'd') *(double *)p = sp_opt_double(flag, arg, k->lo, k->hi);
    else if (k->t == 'z') *(size_t *)p = (size_t)sp_opt_u64(flag, arg, (uint64_t)k->lo, (uint64_t)k->hi);
    else if (k->t == 'i') *(int *)p = (int)sp_opt_long(flag, arg, (long)k->lo, (long)k->hi);
    else *(uint64_t *)p = sp_opt_u64(flag, arg, 0, UINT64_MAX);
}

enum { O_PRESET = 256, O_TRUTH, O_DSEED, O_NOTR, O_RECROWS, O_KNOB };

static void parse_gen(GenOpts *o, int argc, char **argv)
{
    struct option longs[NKNOBS + 16];
    size_t n = 0;
    const struct option fixed[] = {
        {"rows", required_argument, 0, 'n'}, {"preset", required_argument, 0, O_PRESET},
        {"truth", required_argument, 0, O_TRUTH}, {"data-seed", required_argument, 0, O_DSEED},
        {"no-truth-rows", no_argument, 0, O_NOTR}, {"record-rows", required_argument, 0, O_RECROWS},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) longs[n++] = fixed[i];
    for (size_t i = 0; i < NKNOBS; i++) longs[n++] = (struct option){knobs[i].name, required_argument, 0, O_KNOB + (int)i};
    const struct option tail[] = {SP_STAGE_LONGOPTS};
    for (size_t i = 0; i < sizeof tail / sizeof *tail; i++) longs[n++] = tail[i];
    *o = (GenOpts){.rows = 65536, .truth_rows = 1};
    synth_config_default(&o->cfg);
    /* Two passes: the preset first, so that flags override it wherever they stand. */
    for (int pass = 0; pass < 2; pass++) {
        optind = 0;
        int c;
        while ((c = getopt_long(argc, argv, "n:o:fhV", longs, NULL)) != -1) {
            if (c == O_PRESET && !pass) {
                o->preset = optarg;
                if (synth_config_preset(&o->cfg, optarg) < 0)
                    sp_usage_die("--preset: unknown preset '%s' (small, synthsaebench)", optarg);
            }
            if (!pass && c != 'h' && c != 'V' && c != '?') continue;
            if (c >= O_KNOB && c < O_KNOB + (int)NKNOBS) { set_knob(&o->cfg, &knobs[c - O_KNOB], optarg); continue; }
            switch (c) {
            case 'n': o->rows = sp_opt_u64("--rows", optarg, 1, UINT64_MAX / 2); break;
            case O_PRESET: break;
            case O_TRUTH: o->truth = optarg; break;
            case O_DSEED: o->data_seed = sp_opt_u64("--data-seed", optarg, 0, UINT64_MAX), o->have_data_seed = 1; break;
            case O_NOTR: o->truth_rows = 0; break;
            case O_RECROWS: o->record_rows = sp_opt_u64("--record-rows", optarg, 1, 1u << 30); break;
            default: sp_stage_opt(c, &o->output, &o->force, &o->progress, usage);
            }
        }
    }
    if (optind < argc) sp_usage_die("unexpected argument '%s'", argv[optind]);
    char err[256];
    if (synth_config_check(&o->cfg, err, sizeof err) < 0) sp_usage_die("%s", err);
}

static void write_truth(const Synth *s, const char *path, int argc, char **argv)
{
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    TszWriter *w = tsz_writer_open(path, "sae-synth", argc, argv, &wo);
    tsz_writer_check(w);
    json_object_set_new(tsz_writer_header(w), "kind", json_string(SP_KIND_SYNTH_TRUTH));
    TszRecord rec;
    tsz_record_init(&rec);
    synth_truth_record(s, &rec);
    tsz_write_or_die(w, &rec);
    tsz_writer_close_or_die(w);
    tsz_record_free(&rec);
}

static int cmd_generate(int argc, char **argv)
{
    GenOpts o;
    parse_gen(&o, argc, argv);
    Synth s;
    if (synth_build(&s, &o.cfg) < 0) sp_die("%s", s.err);
    synth_rows_seed(&s, o.have_data_seed ? o.data_seed : o.cfg.seed + 1);
    size_t D = o.cfg.D;
    uint64_t per = o.record_rows ? o.record_rows : tsz_rows_per_record(D * sizeof(float));
    if (!o.output || !strcmp(o.output, "-")) sp_check_binary_stdout(o.force);
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    TszWriter *w = tsz_writer_open(o.output ? o.output : "-", "sae-synth", argc, argv, &wo);
    tsz_writer_check(w);
    json_t *h = tsz_writer_header(w);
    json_object_set_new(h, "kind", json_string(SP_KIND_ACTS));
    json_object_set_new(h, "synth", synth_config_json(&o.cfg));
    json_object_set_new(h, "data_seed", json_integer((json_int_t)(o.have_data_seed ? o.data_seed : o.cfg.seed + 1)));
    if (o.truth) json_object_set_new(h, "truth", json_string(o.truth));
    /* The truth first: a stream whose truth file failed is not written whole. */
    if (o.truth) write_truth(&s, o.truth, argc, argv);

    SpProgress prog;
    sp_progress_init(&prog, o.progress, "synth", "rows", o.rows);
    TszRecord rec;
    tsz_record_init(&rec);
    SpCsrBuf b = {0};
    float *x = xmalloc_aligned((size_t)(per < o.rows ? per : o.rows) * D * sizeof *x);
    for (uint64_t r0 = 0; r0 < o.rows; r0 += per) {
        size_t n = (size_t)(o.rows - r0 < per ? o.rows - r0 : per);
        sparse_buf_reset(&b);
        synth_rows(&s, n, x, &b);
        tsz_record_clear(&rec);
        json_object_set_new(rec.meta, "kind", json_string(SP_KIND_ACTS));
        json_object_set_new(rec.meta, "rows", json_integer((json_int_t)n));
        json_object_set_new(rec.meta, "f", json_integer((json_int_t)o.cfg.F));
        uint64_t sh[2] = {n, D}, sp[1] = {n + 1}, sn[1] = {b.nnz};
        tsz_record_add_copy(&rec, "acts", TSZ_F32, 2, sh, x);
        if (o.truth_rows) {
            tsz_record_add_copy(&rec, "indptr", TSZ_I64, 1, sp, b.indptr);
            tsz_record_add_copy(&rec, "indices", TSZ_I32, 1, sn, b.indices);
            tsz_record_add_copy(&rec, "values", TSZ_F32, 1, sn, b.values);
        }
        tsz_write_or_die(w, &rec);
        sp_progress_update(&prog, r0 + n);
    }
    sp_progress_end(&prog);
    tsz_writer_close_or_die(w);
    tsz_record_free(&rec);
    sparse_buf_free(&b);
    free(x);
    synth_free(&s);
    return 0;
}

/* ---- reading rows with their truth (score, stats) ---- */
typedef struct {
    TszReader *r;
    const char *name;
    TszRecord rec;
    uint64_t recno;
    SpCsr csr;              /* of the record just read */
    const TszTensor *x;     /* acts */
} TruthRows;

/* Next record: acts (n,D) floats with a valid CSR of F columns; 0 at the end. */
static int truth_next(TruthRows *t, size_t D, size_t F)
{
    if (!tsz_read_or_die(t->r, &t->rec)) return 0;
    t->recno++;
    const TszRecord *rec = &t->rec;
    char kerr[256];
    if (sp_kind_check(rec, SP_K_ACTS, kerr, sizeof kerr) < 0) sp_die("%s: record %" PRIu64 ": %s", t->name, t->recno, kerr);
    const TszTensor *x = tsz_record_get(rec, "acts"), *ip = tsz_record_get(rec, "indptr"),
                    *ix = tsz_record_get(rec, "indices"), *v = tsz_record_get(rec, "values");
    char d1[96], err[256];
    if (!x || x->ndim != 2 || !tsz_dtype_is_float(x->dtype) || x->shape[1] != D)
        sp_die("%s: record %" PRIu64 ": acts is %s but the truth needs (N,%zu) floats", t->name, t->recno,
               x ? tsz_tensor_desc(x, d1, sizeof d1) : "missing", D);
    if (!ip || !ix || !v)
        sp_die("%s: record %" PRIu64 ": no true activations (indptr, indices, values; written without --no-truth-rows)",
               t->name, t->recno);
    if (ip->dtype != TSZ_I64 || ip->ndim != 1 || ip->shape[0] != x->shape[0] + 1 || ix->dtype != TSZ_I32 ||
        ix->ndim != 1 || v->dtype != TSZ_F32 || v->ndim != 1 || v->shape[0] != ix->shape[0])
        sp_die("%s: record %" PRIu64 ": indptr/indices/values are not CSR of %" PRIu64 " rows", t->name, t->recno,
               x->shape[0]);
    t->csr = (SpCsr){.rows = x->shape[0], .F = F, .nnz = ix->shape[0], .indptr = ip->data, .indices = ix->data,
                     .values = v->data};
    if (sparse_csr_check(&t->csr, err, sizeof err) < 0) sp_die("%s: record %" PRIu64 ": %s", t->name, t->recno, err);
    t->x = x;
    return 1;
}

static void truth_rows_open(TruthRows *t, const char *path)
{
    *t = (TruthRows){.name = sp_in_name(path)};
    t->r = tsz_reader_open(path);
    tsz_reader_check(t->r);
    tsz_record_init(&t->rec);
}

static void truth_rows_close(TruthRows *t)
{
    tsz_reader_close(t->r);
    tsz_record_free(&t->rec);
}

typedef struct {
    const char *input, *output, *truth, *sae;
    int force, progress, json;
    uint64_t rows;
} SubOpts;

static SP_NORETURN void usage_sub(FILE *f, int status) { usage(f, status); }

static void parse_sub(SubOpts *o, int argc, char **argv, int score)
{
    enum { S_TRUTH = 256, S_SAE, S_JSON };
    static const struct option longs[] = {
        {"truth", required_argument, 0, S_TRUTH}, {"sae", required_argument, 0, 's'},
        {"rows", required_argument, 0, 'n'}, {"json", no_argument, 0, S_JSON}, SP_STAGE_LONGOPTS,
    };
    *o = (SubOpts){.input = "-", .rows = 8192};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "s:n:o:fhV", longs, NULL)) != -1) {
        switch (c) {
        case S_TRUTH: o->truth = optarg; break;
        case 's': o->sae = optarg; break;
        case 'n': o->rows = sp_opt_u64("--rows", optarg, 2, 1u << 26); break;
        case S_JSON: o->json = 1; break;
        default: sp_stage_opt(c, &o->output, &o->force, &o->progress, usage_sub);
        }
    }
    if (optind < argc) o->input = argv[optind++];
    if (optind < argc) sp_usage_die("unexpected argument '%s'", argv[optind]);
    if (!o->truth) sp_usage_die("%s: --truth FILE is required", argv[0]);
    if (score && !o->sae) sp_usage_die("score: --sae FILE is required");
    if (!score && o->sae) sp_usage_die("stats: --sae is for score");
}

static int cmd_stats(int argc, char **argv)
{
    SubOpts o;
    parse_sub(&o, argc, argv, 0);
    Synth s;
    char err[512];
    if (synth_load(&s, o.truth, err, sizeof err) < 0) sp_die("%s", err);
    TruthRows t;
    truth_rows_open(&t, o.input);
    SynthStats *st = synth_stats_new(&s);
    while (truth_next(&t, s.cfg.D, s.cfg.F)) synth_stats_add(st, &t.csr);
    if (!tsz_reader_records(t.r)) sp_die("%s: no rows", t.name);
    json_t *j = synth_stats_json(st);
    char *line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (printf("%s\n", line) < 0 || fflush(stdout) || ferror(stdout)) sp_die("stdout: write failed");
    free(line), json_decref(j);
    synth_stats_free(st);
    truth_rows_close(&t);
    synth_free(&s);
    return 0;
}

/* Up to o->rows rows and their CSR, gathered from the input's records. */
typedef struct {
    float *x;                   /* (N,D) */
    int64_t *indptr;            /* (N+1) */
    int32_t *indices;
    float *values;
    size_t N, nnz, cap_nnz;
} Gathered;

static void gather(Gathered *g, TruthRows *t, size_t D, size_t F, uint64_t want)
{
    *g = (Gathered){.x = xmalloc_aligned(want * D * sizeof *g->x), .indptr = xmalloc((want + 1) * sizeof *g->indptr)};
    g->indptr[0] = 0;
    while (g->N < want && truth_next(t, D, F)) {
        size_t n = t->csr.rows < want - g->N ? t->csr.rows : want - g->N, nz = (size_t)t->csr.indptr[n];
        tsz_to_f32(g->x + g->N * D, t->x->data, t->x->dtype, n * D);
        if (g->nnz + nz > g->cap_nnz) {
            g->cap_nnz = 2 * (g->nnz + nz);
            g->indices = xrealloc(g->indices, g->cap_nnz * sizeof *g->indices);
            g->values = xrealloc(g->values, g->cap_nnz * sizeof *g->values);
        }
        memcpy(g->indices + g->nnz, t->csr.indices, nz * sizeof *g->indices);
        memcpy(g->values + g->nnz, t->csr.values, nz * sizeof *g->values);
        for (size_t r = 1; r <= n; r++) g->indptr[g->N + r] = (int64_t)g->nnz + t->csr.indptr[r];
        g->N += n, g->nnz += nz;
    }
}

static void add_vec(TszRecord *rec, const char *name, TszDtype dt, size_t n, const void *v)
{
    uint64_t sh[1] = {n};
    tsz_record_add_copy(rec, name, dt, 1, sh, v);
}

static int cmd_score(int argc, char **argv)
{
    SubOpts o;
    parse_sub(&o, argc, argv, 1);
    Synth s;
    SAE sae;
    char err[512];
    if (synth_load(&s, o.truth, err, sizeof err) < 0) sp_die("%s", err);
    if (sae_load(&sae, o.sae, err, sizeof err) < 0) sp_die("%s", err);
    size_t D = s.cfg.D, Ft = s.cfg.F, Fs = sae.F;
    if (sae.D != D) sp_die("%s: the SAE is %zu wide but the truth's rows are %zu", o.sae, sae.D, D);
    TruthRows t;
    truth_rows_open(&t, o.input);
    Gathered g;
    gather(&g, &t, D, Ft, o.rows);
    if (g.N < 2) sp_die("%s: %zu rows; scoring needs at least 2", t.name, g.N);
    if (!o.json && (!o.output || !strcmp(o.output, "-"))) sp_check_binary_stdout(o.force);

    float *A = xmalloc_aligned(g.N * Fs * sizeof *A), *xhat = xmalloc_aligned(g.N * D * sizeof *xhat);
    sae_encode(&sae, g.x, g.N, SP_ROWS_RUN, A);
    sae_decode(&sae, A, g.N, SP_ROWS_RUN, xhat);
    SpCsr tc = {.rows = g.N, .F = Ft, .nnz = g.nnz, .indptr = g.indptr, .indices = g.indices, .values = g.values};
    SynthScore sc;
    synth_score(&sc, A, g.x, xhat, &tc, sae.p.W_dec, s.dirs, g.N, Fs, Ft, D);

    json_t *j = synth_score_json(&sc);
    json_object_set_new(j, "arch", json_string(sae_arch_name(sae.arch)));
    if (o.json) {
        char *line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
        if (printf("%s\n", line) < 0 || fflush(stdout) || ferror(stdout)) sp_die("stdout: write failed");
        free(line);
    }
    if (!o.json || o.output) {
        TszWriteOpts wo;
        tsz_write_opts_default(&wo);
        TszWriter *w = tsz_writer_open(o.output ? o.output : "-", "sae-synth", argc, argv, &wo);
        tsz_writer_check(w);
        tsz_writer_add_input(w, t.r);
        TszRecord rec;
        tsz_record_init(&rec);
        json_object_update(rec.meta, j);
        json_object_set_new(rec.meta, "kind", json_string(SP_KIND_SYNTH_SCORE));
        json_object_set_new(rec.meta, "sae", json_string(o.sae));
        json_object_set_new(rec.meta, "truth", json_string(o.truth));
        add_vec(&rec, "act_match", TSZ_I32, Fs, sc.act_match);
        add_vec(&rec, "act_corr", TSZ_F32, Fs, sc.act_corr);
        add_vec(&rec, "dec_best", TSZ_I32, Fs, sc.dec_best);
        add_vec(&rec, "dec_cos", TSZ_F32, Fs, sc.dec_cos);
        add_vec(&rec, "f1", TSZ_F32, Fs, sc.f1_latent);
        tsz_write_or_die(w, &rec);
        tsz_writer_close_or_die(w);
        tsz_record_free(&rec);
    }
    json_decref(j);
    synth_score_free(&sc);
    free(A), free(xhat), free(g.x), free(g.indptr), free(g.indices), free(g.values);
    truth_rows_close(&t);
    sae_free(&sae);
    synth_free(&s);
    return 0;
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    if (argc > 1 && !strcmp(argv[1], "score")) return cmd_score(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "stats")) return cmd_stats(argc - 1, argv + 1);
    return cmd_generate(argc, argv);
}
