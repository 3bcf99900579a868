/* sae-fit: train a sparse autoencoder (relu, topk, batchtopk) on `acts` rows
 * from mlp-tap, with validation and best-checkpoint keeping, atomic
 * checkpoints and bit-identical resume; writes the SAE as a tensor stream. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sae_train.h"
#include "stream.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: sae-fit [OPTIONS] [ROWS.tsz | -] > SAE.tsz\n"
"Train a sparse autoencoder on `acts` rows (N,D) from mlp-tap.\n"
"\n"
"Model:\n"
"      --arch A            relu, topk or batchtopk [Default: topk]\n"
"      --dict N            features: 8x, 32x, 128x (times D) or a number [Default: 32x]\n"
"      --k K               active latents per row (topk, batchtopk) [Default: 32]\n"
"      --l1 L              L1 coefficient (relu) [Default: 5]\n"
"      --l1-warmup S       steps over which L1 ramps up from 0 [Default: 0]\n"
"      --aux-k A           AuxK latents (topk, batchtopk; 0 = off) [Default: 512]\n"
"      --aux-coef C        AuxK coefficient [Default: 0.03125]\n"
"      --dead-tokens N     rows without firing before a latent counts as dead\n"
"                          [Default: 1M]\n"
"      --resample-every S  relu: resample dead latents every S steps (0 = never)\n"
"                          [Default: 25000]\n"
"      --init-bdec M       b_dec start: median (geometric), mean or zero [Default: median]\n"
"      --seed S            seed of the initialisation and resampling [Default: 0]\n"
"Optimisation:\n"
"      --lr LR             Adam learning rate [Default: 0.0004]\n"
"      --lr-schedule S     constant, cosine or linear (decay over the last\n"
"                          --decay-frac of the steps) [Default: linear when the\n"
"                          length is known, else constant]\n"
"      --decay-frac P      linear: fraction of steps that decay [Default: 0.2]\n"
"      --warmup S          linear learning-rate warmup steps [Default: 1000,\n"
"                          or 5%% of the steps when the run is known to be\n"
"                          shorter than 20000 steps]\n"
"      --beta1 B           [Default: 0.9]\n"
"      --beta2 B           [Default: 0.999]\n"
"      --eps E             [Default: 1e-8]\n"
"      --batch N           rows per step [Default: 4096]\n"
"      --state-dtype T     Adam moments f32 or bf16 [Default: f32]\n"
"Data:\n"
"      --input FILE        read rows from FILE (same as the operand) [Default: stdin]\n"
"      --epochs E          passes over --input [Default: 1]\n"
"      --tokens N          stop after N rows [Default: all]\n"
"      --on-nan M          rows with NaN/Inf: count (skip, warn at the end),\n"
"                          skip (skip quietly) or stop [Default: count]\n"
"      --val FILE          held-out rows for evaluation\n"
"      --val-rows N        at most N rows of --val [Default: 65536]\n"
"      --eval-every S      evaluate every S steps [Default: 1000]\n"
"      --keep-best M       fvu, loss or last: which weights to write [Default:\n"
"                          fvu with --val, else last]\n"
"Runs:\n"
"      --checkpoint DIR    write DIR/checkpoint.tsz atomically every\n"
"                          --checkpoint-every steps\n"
"      --checkpoint-every S [Default: 1000]\n"
"      --resume            continue from DIR/checkpoint.tsz (same input)\n"
"      --log FILE          one line per --log-every steps and per evaluation;\n"
"                          JSON lines when FILE ends in .jsonl, else TSV\n"
"      --log-every S       [Default: 100]\n"
"      --max-memory N      bytes the run may use [Default: MemAvailable]\n"
);
    sp_stage_help(f, 24, "the SAE");
    fprintf(f,
"\n"
"Memory: 4P (weights) + 4P (gradients) + 8P (Adam; 4P with bf16) + 4P (best\n"
"weights, with --val) + 4B(2D + F) (+4BF for relu and batchtopk, +0.8BF more for\n"
"relu's sparse step) + 4D(B + V) + W bytes, P = 2DF + F + D, B = --batch,\n"
"V = --val-rows, W = 4x the largest record written: matrices go in part\n"
"records of 32 MB (W <= 0.8 GB; see the man page). Files have no size limit.\n"
"Exit status: 0 on success, 1 on a bad input or failure, 2 on bad usage.\n");
    exit(status);
}

typedef enum { KEEP_LAST = 0, KEEP_FVU, KEEP_LOSS } KeepBest;
typedef enum { NAN_COUNT = 0, NAN_SKIP, NAN_STOP } OnNan;
typedef enum { LR_AUTO = 0, LR_CONSTANT, LR_COSINE, LR_LINEAR } LrSched;

typedef struct {
    const char *input, *output, *val, *ckdir, *log;
    uint64_t dict_mult, dict_n;     /* --dict: a multiple of D, or a count */
    SAEArch arch;
    uint64_t K, aux_k, dead_rows, resample_every, seed, warmup, l1_warmup, batch, epochs, tokens, val_rows,
        eval_every, ck_every, log_every, max_memory;
    double l1, aux_coef, lr, decay_frac, beta1, beta2, eps;
    LrSched sched;
    SaeBdecInit bdec;
    KeepBest keep;
    int keep_set, warmup_set, state_bf16, resume, force, progress;
    OnNan on_nan;
} Opts;

/* name -> value tables for the enum flags */
typedef struct { const char *name; int v; } Choice;
static int choose(const char *flag, const char *s, const Choice *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, c[i].name)) return c[i].v;
    char opts[160] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(opts + strlen(opts), sizeof opts - strlen(opts), "%s%s", i ? ", " : "", c[i].name);
    sp_usage_die("%s: expected one of %s, got '%s'", flag, opts, s);
}
#define CHOOSE(flag, s, tab) choose(flag, s, tab, sizeof tab / sizeof *tab)

static void parse_dict(Opts *o, const char *s)
{
    size_t n = strlen(s);
    o->dict_mult = o->dict_n = 0;
    if (n > 1 && n < 16 && s[n - 1] == 'x') {
        char buf[16];
        memcpy(buf, s, n - 1);
        buf[n - 1] = 0;
        o->dict_mult = sp_opt_u64("--dict", buf, 1, 1u << 16);
    } else {
        o->dict_n = sp_opt_u64("--dict", s, 1, 1u << 26);
    }
}

static void parse_args(Opts *o, int argc, char **argv)
{
    enum { O_ARCH = 256, O_DICT, O_K, O_L1, O_L1W, O_AUXK, O_AUXC, O_DEAD, O_RES, O_BDEC, O_SEED, O_LR, O_SCHED,
           O_DECAY, O_WARM, O_B1, O_B2, O_EPS, O_BATCH, O_SDT, O_INPUT, O_EPOCHS, O_TOKENS, O_NAN, O_VAL, O_VROWS,
           O_EVAL, O_KEEP, O_CK, O_CKE, O_RESUME, O_LOG, O_LOGE, O_MEM };
    static const struct option longs[] = {
        {"arch", 1, 0, O_ARCH}, {"dict", 1, 0, O_DICT}, {"k", 1, 0, O_K}, {"l1", 1, 0, O_L1},
        {"l1-warmup", 1, 0, O_L1W}, {"aux-k", 1, 0, O_AUXK}, {"aux-coef", 1, 0, O_AUXC},
        {"dead-tokens", 1, 0, O_DEAD}, {"resample-every", 1, 0, O_RES}, {"init-bdec", 1, 0, O_BDEC},
        {"seed", 1, 0, O_SEED}, {"lr", 1, 0, O_LR}, {"lr-schedule", 1, 0, O_SCHED}, {"decay-frac", 1, 0, O_DECAY},
        {"warmup", 1, 0, O_WARM}, {"beta1", 1, 0, O_B1}, {"beta2", 1, 0, O_B2}, {"eps", 1, 0, O_EPS},
        {"batch", 1, 0, O_BATCH}, {"state-dtype", 1, 0, O_SDT}, {"input", 1, 0, O_INPUT},
        {"epochs", 1, 0, O_EPOCHS}, {"tokens", 1, 0, O_TOKENS}, {"on-nan", 1, 0, O_NAN}, {"val", 1, 0, O_VAL},
        {"val-rows", 1, 0, O_VROWS}, {"eval-every", 1, 0, O_EVAL}, {"keep-best", 1, 0, O_KEEP},
        {"checkpoint", 1, 0, O_CK}, {"checkpoint-every", 1, 0, O_CKE}, {"resume", 0, 0, O_RESUME},
        {"log", 1, 0, O_LOG}, {"log-every", 1, 0, O_LOGE}, {"max-memory", 1, 0, O_MEM},
        SP_STAGE_LONGOPTS,
    };
    static const Choice archs[] = {{"relu", SAE_RELU}, {"topk", SAE_TOPK}, {"batchtopk", SAE_BATCHTOPK}};
    static const Choice scheds[] = {{"constant", LR_CONSTANT}, {"cosine", LR_COSINE}, {"linear", LR_LINEAR}};
    static const Choice bdecs[] = {{"median", SAE_BDEC_MEDIAN}, {"mean", SAE_BDEC_MEAN}, {"zero", SAE_BDEC_ZERO}};
    static const Choice keeps[] = {{"fvu", KEEP_FVU}, {"loss", KEEP_LOSS}, {"last", KEEP_LAST}};
    static const Choice nans[] = {{"count", NAN_COUNT}, {"skip", NAN_SKIP}, {"stop", NAN_STOP}};
    static const Choice sdts[] = {{"f32", 0}, {"bf16", 1}};
    *o = (Opts){.input = "-", .output = "-", .dict_mult = 32, .arch = SAE_TOPK, .K = 32, .aux_k = 512,
                .dead_rows = 1000000, .resample_every = 25000, .warmup = 1000, .batch = 4096, .epochs = 1,
                .val_rows = 65536, .eval_every = 1000, .ck_every = 1000, .log_every = 100, .l1 = 5,
                .aux_coef = 1.0 / 32, .lr = 4e-4, .decay_frac = 0.2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                .bdec = SAE_BDEC_MEDIAN};
    int c, have_input = 0;
    while ((c = getopt_long(argc, argv, "o:fhV", longs, NULL)) != -1) {
        switch (c) {
        case O_ARCH: o->arch = (SAEArch)CHOOSE("--arch", optarg, archs); break;
        case O_DICT: parse_dict(o, optarg); break;
        case O_K: o->K = sp_opt_u64("--k", optarg, 1, 1u << 20); break;
        case O_L1: o->l1 = sp_opt_double("--l1", optarg, 0, 1e9); break;
        case O_L1W: o->l1_warmup = sp_opt_u64("--l1-warmup", optarg, 0, UINT32_MAX); break;
        case O_AUXK: o->aux_k = sp_opt_u64("--aux-k", optarg, 0, 1u << 26); break;
        case O_AUXC: o->aux_coef = sp_opt_double("--aux-coef", optarg, 0, 1e6); break;
        case O_DEAD: o->dead_rows = sp_opt_u64("--dead-tokens", optarg, 1, UINT64_MAX / 2); break;
        case O_RES: o->resample_every = sp_opt_u64("--resample-every", optarg, 0, UINT32_MAX); break;
        case O_BDEC: o->bdec = (SaeBdecInit)CHOOSE("--init-bdec", optarg, bdecs); break;
        case O_SEED: o->seed = sp_opt_u64("--seed", optarg, 0, UINT64_MAX); break;
        case O_LR: o->lr = sp_opt_double("--lr", optarg, 0, 10); break;
        case O_SCHED: o->sched = (LrSched)CHOOSE("--lr-schedule", optarg, scheds); break;
        case O_DECAY: o->decay_frac = sp_opt_double("--decay-frac", optarg, 0, 1); break;
        case O_WARM: o->warmup = sp_opt_u64("--warmup", optarg, 0, UINT32_MAX), o->warmup_set = 1; break;
        case O_B1: o->beta1 = sp_opt_double("--beta1", optarg, 0, 0.999999); break;
        case O_B2: o->beta2 = sp_opt_double("--beta2", optarg, 0, 0.999999999); break;
        case O_EPS: o->eps = sp_opt_double("--eps", optarg, 1e-30, 1); break;
        case O_BATCH: o->batch = sp_opt_u64("--batch", optarg, 1, 1u << 24); break;
        case O_SDT: o->state_bf16 = CHOOSE("--state-dtype", optarg, sdts); break;
        case O_INPUT: o->input = optarg, have_input = 1; break;
        case O_EPOCHS: o->epochs = sp_opt_u64("--epochs", optarg, 1, 1u << 20); break;
        case O_TOKENS: o->tokens = sp_opt_u64("--tokens", optarg, 1, UINT64_MAX / 2); break;
        case O_NAN: o->on_nan = (OnNan)CHOOSE("--on-nan", optarg, nans); break;
        case O_VAL: o->val = optarg; break;
        case O_VROWS: o->val_rows = sp_opt_u64("--val-rows", optarg, 1, 1u << 30); break;
        case O_EVAL: o->eval_every = sp_opt_u64("--eval-every", optarg, 1, UINT32_MAX); break;
        case O_KEEP: o->keep = (KeepBest)CHOOSE("--keep-best", optarg, keeps), o->keep_set = 1; break;
        case O_CK: o->ckdir = optarg; break;
        case O_CKE: o->ck_every = sp_opt_u64("--checkpoint-every", optarg, 1, UINT32_MAX); break;
        case O_RESUME: o->resume = 1; break;
        case O_LOG: o->log = optarg; break;
        case O_LOGE: o->log_every = sp_opt_u64("--log-every", optarg, 1, UINT32_MAX); break;
        case O_MEM: o->max_memory = sp_opt_u64("--max-memory", optarg, 1, UINT64_MAX); break;
        default: sp_stage_opt(c, &o->output, &o->force, &o->progress, usage);
        }
    }
    if (optind < argc) {
        if (have_input) sp_usage_die("give the input once: --input or an operand");
        o->input = argv[optind++];
    }
    if (optind < argc) sp_usage_die("unexpected argument '%s'", argv[optind]);
    if (!o->keep_set) o->keep = o->val ? KEEP_FVU : KEEP_LAST;
    if (o->keep != KEEP_LAST && !o->val) sp_usage_die("--keep-best %s needs --val", o->keep == KEEP_FVU ? "fvu" : "loss");
    if (o->resume && !o->ckdir) sp_usage_die("--resume needs --checkpoint DIR");
    if (o->epochs > 1 && !strcmp(o->input, "-")) sp_usage_die("--epochs needs --input FILE (stdin is read once)");
    if (o->val && !strcmp(o->val, "-")) sp_usage_die("--val must be a file");
}

/* ---- rows from a stream of `acts` records ---- */
typedef struct {
    const char *path, *name;
    TszReader *r;
    TszRecord rec;
    float *buf;             /* current record's rows as f32 */
    size_t cap, nrows, pos, D;
    uint64_t rec_no;
    json_t *meta;           /* the first record's meta (owned copy) */
    json_t *header;         /* the first header (owned copy) */
} RowSrc;

static void src_open(RowSrc *s, const char *path)
{
    s->path = path, s->name = sp_in_name(path);
    if (!s->rec.meta) tsz_record_init(&s->rec);
    s->r = tsz_reader_open(path);
    tsz_reader_check(s->r);
    if (!s->header) s->header = json_deep_copy(tsz_reader_header(s->r));
    s->nrows = s->pos = 0;
    s->rec_no = 0;
}

static void src_close(RowSrc *s)
{
    if (s->r) tsz_reader_close(s->r);
    s->r = NULL;
}

/* Next record into buf; 0 at the clean end. */
static int src_next(RowSrc *s)
{
    if (!tsz_read_or_die(s->r, &s->rec)) return 0;
    s->rec_no++;
    const char *kind = json_string_value(json_object_get(s->rec.meta, "kind"));
    if (!kind || strcmp(kind, "acts"))
        sp_die("%s: record %" PRIu64 " is kind '%s', want 'acts' rows from mlp-tap", s->name, s->rec_no,
               kind ? kind : "");
    const TszTensor *t = tsz_record_get(&s->rec, "acts");
    char desc[96];
    if (!t) sp_die("%s: record %" PRIu64 " has no tensor 'acts'", s->name, s->rec_no);
    if (t->ndim != 2 || !tsz_dtype_is_float(t->dtype) || t->shape[1] == 0)
        sp_die("%s: acts is %s; sae-fit wants float rows (N,D) from mlp-tap without --keep-context", s->name,
               tsz_tensor_desc(t, desc, sizeof desc));
    size_t D = (size_t)t->shape[1];
    if (!s->D) s->D = D;
    if (D != s->D)
        sp_die("%s: record %" PRIu64 " has rows of width %zu, earlier ones %zu", s->name, s->rec_no, D, s->D);
    if (!s->meta) s->meta = json_deep_copy(s->rec.meta);
    size_t n = (size_t)t->shape[0];
    if (n * D > s->cap) {
        free(s->buf);
        s->cap = n * D;
        s->buf = xmalloc_aligned(s->cap * sizeof *s->buf);
    }
    tsz_to_f32(s->buf, t->data, t->dtype, n * D);
    s->nrows = n, s->pos = 0;
    return 1;
}

static int row_finite(const float *x, size_t D)
{
    for (size_t d = 0; d < D; d++)
        if (!isfinite(x[d])) return 0;
    return 1;
}

typedef struct {
    Opts o;
    RowSrc src;
    uint64_t epoch, pos_in_epoch;   /* raw rows consumed in this epoch */
    uint64_t rows_trained, nan_rows, total_rows; /* total_rows 0: unknown */
    SaeTrainer t;
    SpRng rng;
    float *x;                       /* (B,D) batch */
    float *val;                     /* (V,D) */
    size_t V;
    double val_var;                 /* sum ||x - mean||^2 over val */
    uint64_t *fired;                /* (F) */
    float *best;                    /* (P) best weights, or NULL */
    double best_theta, best_metric;
    uint64_t best_step;
    json_t *best_val, *last_val;
    FILE *logf;
    int jsonl;
    double t_start, t_log;
    uint64_t rows_at_log;
} Fit;

/* Up to B usable rows into f->x; raw rows consumed are counted in the
 * epoch position; NaN/Inf rows handled per --on-nan. */
static size_t fill_batch(Fit *f, size_t B, uint64_t limit)
{
    size_t D = f->src.D, n = 0;
    while (n < B && (!limit || f->rows_trained + n < limit)) {
        if (f->src.pos == f->src.nrows) {
            if (src_next(&f->src)) continue;
            if (f->epoch + 1 >= f->o.epochs) break;
            src_close(&f->src);
            src_open(&f->src, f->o.input);
            f->epoch++, f->pos_in_epoch = 0;
            continue;
        }
        const float *row = f->src.buf + f->src.pos * D;
        f->src.pos++, f->pos_in_epoch++;
        if (!row_finite(row, D)) {
            f->nan_rows++;
            if (f->o.on_nan == NAN_STOP)
                sp_die("%s: record %" PRIu64 " row %zu has a NaN or Inf (--on-nan stop)", f->src.name,
                       f->src.rec_no, f->src.pos - 1);
            continue;
        }
        memcpy(f->x + n * D, row, D * sizeof *row);
        n++;
    }
    return n;
}

static void skip_rows(Fit *f, uint64_t n)
{
    while (n) {
        if (f->src.pos == f->src.nrows && !src_next(&f->src))
            sp_die("%s: ends before the %" PRIu64 " rows the checkpoint has consumed (not the same input?)",
                   f->src.name, f->pos_in_epoch);
        size_t take = f->src.nrows - f->src.pos;
        if (take > n) take = (size_t)n;
        f->src.pos += take, f->pos_in_epoch += take, n -= take;
    }
}

static uint64_t count_rows(const char *path)
{
    RowSrc s = {0};
    src_open(&s, path);
    uint64_t n = 0;
    while (src_next(&s)) n += s.nrows;
    src_close(&s);
    tsz_record_free(&s.rec);
    free(s.buf);
    json_decref(s.meta);
    json_decref(s.header);
    return n;
}


/* ---- schedules ---- */
static double lr_at(const Fit *f, uint64_t step, uint64_t total_steps)
{
    const Opts *o = &f->o;
    double lr = o->lr;
    // the default warmup is 1000 steps, or 5% of a shorter run when its
    // length is known: a 100-step run should not spend itself warming up
    uint64_t warmup = o->warmup;
    if (!o->warmup_set && total_steps && warmup > total_steps / 20) warmup = total_steps / 20 ? total_steps / 20 : 1;
    if (warmup && step < warmup) lr *= (double)(step + 1) / (double)warmup;
    if (!total_steps) return lr;
    double p = (double)step / (double)total_steps;
    if (o->sched == LR_COSINE) lr *= 0.5 * (1 + cos(M_PI * fmin(p, 1)));
    if (o->sched == LR_LINEAR && p > 1 - o->decay_frac)
        lr *= fmax(0, (1 - p) / o->decay_frac);
    return lr;
}

static double l1_at(const Fit *f, uint64_t step)
{
    if (!f->o.l1_warmup || step >= f->o.l1_warmup) return f->o.l1;
    return f->o.l1 * (double)(step + 1) / (double)f->o.l1_warmup;
}

/* ---- validation ---- */
static void load_val(Fit *f)
{
    RowSrc s = {0};
    src_open(&s, f->o.val);
    size_t D = f->src.D, cap = 0;
    while (f->V < f->o.val_rows && src_next(&s)) {
        if (s.D != D)
            sp_die("%s: rows are %zu wide but the training rows are %zu", s.name, s.D, D);
        for (size_t i = 0; i < s.nrows && f->V < f->o.val_rows; i++) {
            const float *row = s.buf + i * D;
            if (!row_finite(row, D)) continue;
            if (f->V == cap) f->val = xrealloc(f->val, (cap = cap ? 2 * cap : 1024) * D * sizeof *f->val);
            memcpy(f->val + f->V * D, row, D * sizeof *row);
            f->V++;
        }
    }
    src_close(&s);
    if (!f->V) sp_die("%s: no validation rows", s.name);
    tsz_record_free(&s.rec);
    free(s.buf);
    json_decref(s.meta);
    json_decref(s.header);
    double *mean = xcalloc(D, sizeof *mean);
    for (size_t i = 0; i < f->V; i++)
        for (size_t d = 0; d < D; d++) mean[d] += f->val[i * D + d] / (double)f->V;
    f->val_var = 0;
    for (size_t i = 0; i < f->V; i++)
        for (size_t d = 0; d < D; d++) f->val_var += (f->val[i * D + d] - mean[d]) * (f->val[i * D + d] - mean[d]);
    free(mean);
}

/* Metrics of the current weights on the validation rows (new object). */
static json_t *evaluate(Fit *f, double l1)
{
    size_t D = f->src.D, F = f->t.c.F, B = f->t.c.B;
    memset(f->fired, 0, F * sizeof *f->fired);
    double sq = 0, loss = 0, l0 = 0;
    for (size_t i = 0; i < f->V; i += B) {
        size_t n = f->V - i < B ? f->V - i : B;
        SaeStats st;
        sae_trainer_forward(&f->t, f->val + i * D, n, l1, 0, 1, &st, f->fired);
        sq += st.sq_err, loss += st.loss * n, l0 += st.l0 * n;
    }
    size_t dead = 0, dense = 0;
    for (size_t j = 0; j < F; j++) dead += f->fired[j] == 0, dense += f->fired[j] * 10 > f->V;
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f}", "step", (json_int_t)f->t.step, "mse",
                     sq / ((double)f->V * D), "fvu", f->val_var > 0 ? sq / f->val_var : 0.0, "loss",
                     loss / (double)f->V, "l0", l0 / (double)f->V, "dead", (double)dead / F, "dense",
                     (double)dense / F);
}

static double jnum(const json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

/* ---- log ---- */
static void log_line(Fit *f, const char *kind, const SaeStats *st, double fvu, double dead, double lr)
{
    if (!f->logf) return;
    double now = sp_now(), dt = now - f->t_log;
    double tps = dt > 0 ? (double)(f->rows_trained - f->rows_at_log) / dt : 0;
    if (!strcmp(kind, "train")) f->t_log = now, f->rows_at_log = f->rows_trained;
    else tps = 0;
    double mse = st->recon / (double)f->src.D;
    int rc;
    if (f->jsonl)
        rc = fprintf(f->logf,
                     "{\"kind\":\"%s\",\"step\":%" PRIu64 ",\"tokens\":%" PRIu64 ",\"loss\":%.6g,\"mse\":%.6g,"
                     "\"aux\":%.6g,\"l0\":%.4g,\"dead\":%.4g,\"lr\":%.4g,\"tokens_per_s\":%.0f,\"fvu\":%.6g}\n",
                     kind, f->t.step, f->rows_trained, st->loss, mse, st->aux, st->l0, dead, lr, tps, fvu);
    else
        rc = fprintf(f->logf, "%s\t%" PRIu64 "\t%" PRIu64 "\t%.6g\t%.6g\t%.6g\t%.4g\t%.4g\t%.4g\t%.0f\t%.6g\n", kind,
                     f->t.step, f->rows_trained, st->loss, mse, st->aux, st->l0, dead, lr, tps, fvu);
    if (rc < 0 || fflush(f->logf)) sp_die("%s: %s", f->o.log, strerror(errno));
}

static void open_log(Fit *f)
{
    if (!f->o.log) return;
    size_t n = strlen(f->o.log);
    f->jsonl = n > 6 && !strcmp(f->o.log + n - 6, ".jsonl");
    /* a resumed run appends to the log of the run it continues */
    f->logf = fopen(f->o.log, f->o.resume ? "a" : "w");
    if (!f->logf) sp_die("%s: %s", f->o.log, strerror(errno));
    if (!f->jsonl && (!f->o.resume || ftell(f->logf) == 0))
        fprintf(f->logf, "kind\tstep\ttokens\tloss\tmse\taux\tl0\tdead\tlr\ttokens_per_s\tfvu\n");
}

/* ---- checkpoints ---- */
static void config_sig(const Fit *f, char *buf, size_t len)
{
    const Opts *o = &f->o;
    snprintf(buf, len, "arch=%s f=%zu k=%zu batch=%" PRIu64 " state=%s seed=%" PRIu64 " lr=%g l1=%g", sae_arch_name(o->arch),
             f->t.c.F, f->t.c.K, o->batch, o->state_bf16 ? "bf16" : "f32", o->seed, o->lr, o->l1);
}

static char *ck_path(const Fit *f)
{
    size_t n = strlen(f->o.ckdir) + 32;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/checkpoint.tsz", f->o.ckdir);
    return p;
}

/* A checkpoint's tensors: the trainer's state, the RNG and the best weights. */
static size_t ck_tensors(Fit *f, TszBig *tab, int best)
{
    size_t n = sae_trainer_state(&f->t, tab);
    tab[n++] = (TszBig){.name = "rng", .dtype = TSZ_I64, .ndim = 1, .shape = {4}, .data = f->rng.s};
    if (best) tab[n++] = (TszBig){.name = "best_param", .dtype = TSZ_F32, .ndim = 1, .shape = {f->t.P}, .data = f->best};
    return n;
}

static void save_checkpoint(Fit *f, int argc, char **argv)
{
    char *path = ck_path(f), sig[256], err[512];
    TszRecord rec;
    tsz_record_init(&rec);
    json_object_set_new(rec.meta, "kind", json_string("sae_checkpoint"));
    config_sig(f, sig, sizeof sig);
    json_object_set_new(rec.meta, "config", json_string(sig));
    json_object_set_new(rec.meta, "d", json_integer((json_int_t)f->src.D));
    json_object_set_new(rec.meta, "epoch", json_integer((json_int_t)f->epoch));
    json_object_set_new(rec.meta, "pos_in_epoch", json_integer((json_int_t)f->pos_in_epoch));
    json_object_set_new(rec.meta, "rows_trained", json_integer((json_int_t)f->rows_trained));
    json_object_set_new(rec.meta, "nan_rows", json_integer((json_int_t)f->nan_rows));
    json_object_set_new(rec.meta, "best_step", json_integer((json_int_t)f->best_step));
    json_object_set_new(rec.meta, "best_metric", json_real(f->best_metric));
    json_object_set_new(rec.meta, "best_theta", json_real(f->best_theta));
    if (f->best_val) json_object_set(rec.meta, "best_val", f->best_val);
    if (f->last_val) json_object_set(rec.meta, "last_val", f->last_val);
    sae_trainer_meta(&f->t, rec.meta);
    TszBig tab[6];
    size_t n = ck_tensors(f, tab, f->best != NULL);
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    wo.shuffle = 0, wo.level = 1;
    TszWriter *w = tsz_writer_open(path, "sae-fit", argc, argv, &wo);
    int rc = tsz_writer_error(w) ? -1 : tsz_write_parts(w, &rec, tab, n, err, sizeof err);
    if (rc < 0 && tsz_writer_error(w)) snprintf(err, sizeof err, "%s", tsz_writer_error(w));
    if (rc < 0) {
        tsz_writer_abort(w);
        sp_die("%s", err);
    }
    if (tsz_writer_close(w, err, sizeof err) < 0) sp_die("%s", err);
    tsz_record_free(&rec);
    free(path);
}

static uint64_t jint(const json_t *m, const char *k)
{
    const json_t *v = json_object_get(m, k);
    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

static void load_checkpoint(Fit *f)
{
    char *path = ck_path(f), sig[256], err[512];
    TszReader *r = tsz_reader_open(path);
    tsz_reader_check(r);
    TszRecord rec;
    tsz_record_init(&rec);
    if (!tsz_read_or_die(r, &rec)) sp_die("%s: no checkpoint record", path);
    const json_t *m = rec.meta;
    const char *kind = json_string_value(json_object_get(m, "kind"));
    if (!kind || strcmp(kind, "sae_checkpoint")) sp_die("%s: not an sae-fit checkpoint", path);
    if (jint(m, "d") != f->src.D)
        sp_die("%s: rows are %zu wide but the checkpoint in %s was trained on width %" PRIu64, f->src.name,
               f->src.D, f->o.ckdir, jint(m, "d"));
    config_sig(f, sig, sizeof sig);
    const char *csig = json_string_value(json_object_get(m, "config"));
    if (!csig || strcmp(csig, sig))
        sp_die("%s: checkpoint was written with '%s', this run has '%s'", path, csig ? csig : "?", sig);
    if (sae_trainer_from_meta(&f->t, m, err, sizeof err) < 0) sp_die("%s: %s", path, err);
    TszBig tab[6];
    TszTensor ann;
    size_t n = ck_tensors(f, tab, f->best && tsz_parts_get(&rec, "best_param", &ann));
    if (tsz_read_tensors(r, &rec, tab, n, err, sizeof err) < 0) sp_die("%s", err);
    f->epoch = jint(m, "epoch");
    f->rows_trained = jint(m, "rows_trained");
    f->nan_rows = jint(m, "nan_rows");
    f->best_step = jint(m, "best_step");
    f->best_metric = jnum(m, "best_metric");
    f->best_theta = jnum(m, "best_theta");
    if (json_object_get(m, "best_val")) f->best_val = json_deep_copy(json_object_get(m, "best_val"));
    if (json_object_get(m, "last_val")) f->last_val = json_deep_copy(json_object_get(m, "last_val"));
    uint64_t pos = jint(m, "pos_in_epoch");
    tsz_record_free(&rec);
    tsz_reader_close(r);
    free(path);
    /* the input again from the start of the epoch, then skip what was consumed */
    for (uint64_t e = 0; e < f->epoch; e++) {
        src_close(&f->src);
        src_open(&f->src, f->o.input);
    }
    f->src.pos = 0;
    f->pos_in_epoch = 0;
    skip_rows(f, pos);
}

/* ---- memory ---- */
static uint64_t mem_available(void)
{
    FILE *fp = fopen("/proc/meminfo", "r");
    char line[256];
    uint64_t kb = 0;
    if (!fp) return 0;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "MemAvailable: %" SCNu64 " kB", &kb) == 1) break;
    fclose(fp);
    return kb * 1024;
}

/* Writing a record holds it about four times: its tensors, a shuffled
 * copy, the packed map and the compressed frame (lib/stream.c). The SAE is
 * written from the trainer's block without a copy, and large tensors go in
 * parts, so writing costs four of the largest record, SAE or checkpoint. */
static void check_memory(const Fit *f, size_t V)
{
    const SaeTrainConfig *c = &f->t.c;
    const Opts *o = &f->o;
    uint64_t P = 2 * (uint64_t)c->D * c->F + c->F + c->D, part;
    char err[256];
    if (tsz_part_bytes(&part, err, sizeof err) < 0) sp_die("%s", err);
    uint64_t th = c->arch == SAE_BATCHTOPK ? 4ull * c->F : 0;
    uint64_t sae[] = {4ull * c->D * c->F, 4ull * c->F, 4ull * c->D * c->F, 4ull * c->D, th};
    uint64_t ck[] = {4 * P, (c->state_bf16 ? 2 : 4) * P, (c->state_bf16 ? 2 : 4) * P, 8ull * c->F, 32,
                     o->val ? 4 * P : 0};
    uint64_t rec = tsz_parts_largest(sae, 5, part);
    if (o->ckdir && tsz_parts_largest(ck, 6, part) > rec) rec = tsz_parts_largest(ck, 6, part);
    uint64_t need = sae_trainer_bytes(c) + (o->val ? 4 * P : 0) + 4ull * c->D * (c->B + V) + th + 4 * rec;
    uint64_t have = o->max_memory ? o->max_memory : mem_available();
    if (have && need > have)
        sp_die("d=%zu f=%zu batch=%zu needs %.3g GB but %.3g GB is available%s; try a smaller --dict or --batch%s",
               c->D, c->F, c->B, need / 1e9, have / 1e9, o->max_memory ? " (--max-memory)" : " (MemAvailable)",
               c->state_bf16 ? "" : ", or --state-dtype bf16");
}

/* "model" from the stream: record meta, header, or an input's header */
static const char *find_model(const json_t *j, int depth)
{
    if (!j || depth > 8) return NULL;
    if (json_is_object(j)) {
        const char *m = json_string_value(json_object_get(j, "model"));
        if (m) return m;
        return find_model(json_object_get(j, "inputs"), depth + 1);
    }
    if (json_is_array(j))
        for (size_t i = 0; i < json_array_size(j); i++) {
            const char *m = find_model(json_array_get(j, i), depth + 1);
            if (m) return m;
        }
    return NULL;
}

static void write_output(Fit *f, int argc, char **argv)
{
    SAE s;
    char err[512];
    const float *param = f->best ? f->best : f->t.param;
    double theta_keep = f->t.theta;
    if (f->best) f->t.theta = f->best_theta;
    float *threshold = f->o.arch == SAE_BATCHTOPK ? xmalloc(f->t.c.F * sizeof *threshold) : NULL;
    sae_trainer_view(&f->t, param, threshold, &s); /* no copy: W_enc is written from param's transpose */
    f->t.theta = theta_keep;
    s.K = f->o.arch == SAE_RELU ? 0 : f->o.K;
    s.l1 = f->o.arch == SAE_RELU ? f->o.l1 : 0;
    const json_t *m = f->src.meta;
    const json_t *ns = json_object_get(m, "norm_scale");
    s.norm_scale = json_is_number(ns) && json_number_value(ns) > 0 ? json_number_value(ns) : 1.0;
    const char *hook = json_string_value(json_object_get(m, "hook"));
    snprintf(s.hook, sizeof s.hook, "%s", hook ? hook : "");
    const char *model = find_model(m, 0);
    if (!model) model = find_model(f->src.header, 0);
    snprintf(s.model, sizeof s.model, "%s", model ? model : "");
    json_t *extra = json_pack("{s:I,s:I,s:I,s:I,s:s}", "tokens_seen", (json_int_t)f->rows_trained, "steps",
                              (json_int_t)f->t.step, "best_step", (json_int_t)(f->best ? f->best_step : f->t.step),
                              "nan_rows", (json_int_t)f->nan_rows, "keep", f->best ? "best" : "last");
    if (f->best_val) json_object_set(extra, "val", f->best_val);
    if (f->last_val) json_object_set(extra, "final_val", f->last_val);
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    TszWriter *w = tsz_writer_open(f->o.output, "sae-fit", argc, argv, &wo);
    tsz_writer_check(w);
    json_object_set_new(tsz_writer_header(w), "kind", json_string("sae"));
    if (f->src.r) tsz_writer_add_input(w, f->src.r); /* provenance: the rows' headers */
    if (sae_write(w, &s, param, extra, err, sizeof err) < 0) {
        tsz_writer_abort(w);
        sp_die("%s", err);
    }
    tsz_writer_close_or_die(w); /* closes stdout too */
    json_decref(extra);
    free(threshold);
}

/* Evaluate, keep the best, log, say so on stderr. */
static void eval_step(Fit *f, double l1, double lr)
{
    json_t *v = evaluate(f, l1);
    double metric = f->o.keep == KEEP_LOSS ? jnum(v, "loss") : jnum(v, "fvu");
    if (f->best && (!f->best_val || metric < f->best_metric)) {
        memcpy(f->best, f->t.param, f->t.P * sizeof *f->best);
        f->best_metric = metric, f->best_step = f->t.step, f->best_theta = f->t.theta;
        json_decref(f->best_val);
        f->best_val = json_deep_copy(v);
    }
    json_decref(f->last_val);
    f->last_val = v;
    SaeStats st = {.loss = jnum(v, "loss"), .recon = jnum(v, "mse") * f->src.D, .l0 = jnum(v, "l0")};
    st.aux = st.loss - st.recon; /* the L1 or AuxK term, as train lines show it */
    log_line(f, "val", &st, jnum(v, "fvu"), jnum(v, "dead"), lr);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Fit f = {0};
    parse_args(&f.o, argc, argv);
    Opts *o = &f.o;
    if (!strcmp(o->output, "-")) sp_check_binary_stdout(o->force);
    /* the total length, when it can be known, for the schedule and the ETA */
    uint64_t input_rows = strcmp(o->input, "-") ? count_rows(o->input) : 0;
    f.total_rows = input_rows * o->epochs;
    if (o->tokens && (!f.total_rows || o->tokens < f.total_rows)) f.total_rows = o->tokens;
    if (o->sched == LR_AUTO) o->sched = f.total_rows ? LR_LINEAR : LR_CONSTANT;
    if (o->sched != LR_CONSTANT && !f.total_rows)
        sp_usage_die("--lr-schedule cosine/linear needs a known length: --tokens N or --input FILE");
    src_open(&f.src, o->input);
    if (!src_next(&f.src)) sp_die("%s: no rows to train on (empty input)", f.src.name);
    size_t D = f.src.D;
    size_t F = o->dict_n ? (size_t)o->dict_n : D * (size_t)o->dict_mult;
    if (o->arch != SAE_RELU && o->K > F) sp_usage_die("--k %" PRIu64 " is more than the %zu features", o->K, F);
    SaeTrainConfig c = {.arch = o->arch, .D = D, .F = F, .K = o->arch == SAE_RELU ? 0 : o->K, .B = o->batch,
                        .aux_k = o->arch == SAE_RELU ? 0 : o->aux_k, .aux_coef = o->aux_coef, .beta1 = o->beta1,
                        .beta2 = o->beta2, .eps = o->eps, .state_bf16 = o->state_bf16, .dead_rows = o->dead_rows,
                        .threshold_ema = 0.99};
    f.t.c = c;
    check_memory(&f, o->val ? o->val_rows : 0);
    if (o->ckdir && mkdir(o->ckdir, 0777) < 0 && errno != EEXIST) sp_die("%s: %s", o->ckdir, strerror(errno));
    char err[512];
    if (sae_trainer_init(&f.t, &c, err, sizeof err) < 0) sp_die("%s", err);
    f.x = xmalloc_aligned(o->batch * D * sizeof *f.x);
    f.fired = xcalloc(F, sizeof *f.fired);
    if (o->keep != KEEP_LAST) f.best = xmalloc_aligned(f.t.P * sizeof *f.best);
    sp_rng_seed(&f.rng, o->seed);
    int resumed = 0;
    if (o->resume) {
        char *p = ck_path(&f);
        struct stat sb;
        if (stat(p, &sb) == 0) load_checkpoint(&f), resumed = 1;
        else sp_warn("%s: no checkpoint yet; starting from the beginning", p);
        free(p);
    }
    if (o->val) load_val(&f);
    open_log(&f);
    uint64_t total_steps = f.total_rows ? (f.total_rows + o->batch - 1) / o->batch : 0;
    SpProgress prog;
    sp_progress_init(&prog, o->progress, "sae-fit", "tok", f.total_rows);
    f.t_start = f.t_log = sp_now();
    f.rows_at_log = f.rows_trained;
    SaeStats st = {0};
    double lr = 0, l1 = 0;
    for (;;) {
        size_t n = fill_batch(&f, o->batch, o->tokens);
        if (!n) break;
        if (!resumed && f.t.step == 0) {
            size_t ns = n < 4096 ? n : 4096;
            sae_trainer_init_params(&f.t, &f.rng, f.x, ns, o->bdec);
        }
        uint64_t step = f.t.step;
        lr = lr_at(&f, step, total_steps);
        l1 = l1_at(&f, step);
        sae_trainer_forward(&f.t, f.x, n, l1, 1, 0, &st, NULL);
        if (!isfinite(st.loss))
            sp_die("%s: loss is %g at step %" PRIu64 " (diverged; try a lower --lr)", f.src.name, st.loss, step);
        sae_trainer_adam(&f.t, lr);
        f.rows_trained += n;
        if (o->arch == SAE_RELU && o->resample_every && f.t.step % o->resample_every == 0) {
            size_t k = sae_trainer_resample(&f.t, f.x, n, &f.rng);
            if (k && (o->progress)) sp_warn("step %" PRIu64 ": resampled %zu dead latents", f.t.step, k);
        }
        if (f.t.step % o->log_every == 0) {
            double fvu = 0, var = 0;
            double *mean = f.t.acc; /* free scratch between steps */
            for (size_t d = 0; d < D; d++) mean[d] = 0;
            for (size_t i = 0; i < n; i++)
                for (size_t d = 0; d < D; d++) mean[d] += f.x[i * D + d] / (double)n;
            for (size_t i = 0; i < n; i++)
                for (size_t d = 0; d < D; d++) var += (f.x[i * D + d] - mean[d]) * (f.x[i * D + d] - mean[d]);
            fvu = var > 0 ? st.sq_err / var : 0;
            log_line(&f, "train", &st, fvu, (double)sae_trainer_dead(&f.t) / F, lr);
        }
        if (o->val && f.t.step % o->eval_every == 0) eval_step(&f, l1, lr);
        if (o->ckdir && f.t.step % o->ck_every == 0) save_checkpoint(&f, argc, argv);
        sp_progress_update(&prog, f.rows_trained);
    }
    sp_progress_end(&prog);
    if (f.t.step == 0) sp_die("%s: no usable rows to train on (%" PRIu64 " had NaN or Inf)", f.src.name, f.nan_rows);
    /* the last step's schedule, also when a resumed run had no step left */
    lr = lr_at(&f, f.t.step - 1, total_steps);
    l1 = l1_at(&f, f.t.step - 1);
    if (o->val && (!f.last_val || jint(f.last_val, "step") != f.t.step)) eval_step(&f, l1, lr);
    if (f.nan_rows && o->on_nan == NAN_COUNT)
        sp_warn("%s: skipped %" PRIu64 " rows with NaN or Inf", f.src.name, f.nan_rows);
    if (f.best)
        sp_warn("kept the weights of step %" PRIu64 " of %" PRIu64 " (val fvu %.4f, loss %.4g; final fvu %.4f)",
                f.best_step, f.t.step, jnum(f.best_val, "fvu"), jnum(f.best_val, "loss"), jnum(f.last_val, "fvu"));
    write_output(&f, argc, argv);
    if (f.logf && fclose(f.logf)) sp_die("%s: %s", o->log, strerror(errno));
    src_close(&f.src);
    tsz_record_free(&f.src.rec);
    free(f.src.buf);
    json_decref(f.src.meta);
    json_decref(f.src.header);
    json_decref(f.best_val);
    json_decref(f.last_val);
    sae_trainer_free(&f.t);
    free(f.x), free(f.val), free(f.fired), free(f.best);
    return 0;
}
