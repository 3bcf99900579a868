/* sae-fit: train a sparse autoencoder (relu, topk, batchtopk, jumprelu,
 * gated, matryoshka) on `acts` rows
 * from mlp-tap, with validation and best-checkpoint keeping, atomic
 * checkpoints and bit-identical resume; writes the SAE as a tensor stream. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "sae_fit.h"
#include "sae_mpi.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: sae-fit [OPTIONS] [ROWS.tsz... | -] > SAE.tsz\n"
"Train a sparse autoencoder on `acts` rows (N,D) from mlp-tap (several files\n"
"are read in order as one input).\n"
"\n"
"Model:\n"
"      --arch A            relu, topk, batchtopk, jumprelu, gated or matryoshka\n"
"                          (Matryoshka BatchTopK) [Default: topk]\n"
"      --dict N            features: 8x, 32x, 128x (times D) or a number [Default: 32x]\n"
"      --k K               active latents per row (topk, batchtopk, matryoshka)\n"
"                          [Default: 32]\n"
"      --l1 L              sparsity coefficient: relu L1, gated L1, jumprelu L0\n"
"                          [Default: relu 5, gated 1, jumprelu 0.05]\n"
"      --l1-warmup S       steps over which it ramps up from 0 [Default: 0]\n"
"      --groups N,N,...    matryoshka: nested prefix sizes, ascending, from at\n"
"                          least k; F is added last [Default: F/64,F/16,F/4,F]\n"
"      --bandwidth E       jumprelu: STE kernel width, times the rows' RMS norm\n"
"                          [Default: 0.05]\n"
"      --threshold-init T  jumprelu: start threshold, times the RMS norm\n"
"                          [Default: 0.1]\n"
"      --threshold-lr R    jumprelu: the log threshold's learning rate, times\n"
"                          --lr [Default: 1]\n"
"      --jumprelu-penalty P step (L0) or tanh (Anthropic's tanh(4 f/RMS))\n"
"                          [Default: step]\n"
"      --aux-k A           AuxK latents (topk, batchtopk, matryoshka; 0 = off)\n"
"                          [Default: 512]\n"
"      --aux-coef C        AuxK coefficient [Default: 0.03125]\n"
"      --aux-scale M       fixed, or dead: the coefficient times min(dead\n"
"                          latents/A, 1) each step (SAELens) [Default: fixed]\n"
"      --dead-tokens N     rows without firing before a latent counts as dead\n"
"                          [Default: 1M]\n"
"      --decoder M         relu: decoder rows unit (norm 1, penalty l1 f) or free\n"
"                          (any norm, penalty l1 f ||W_dec_j||, as SAELens'\n"
"                          standard SAE); topk, batchtopk, matryoshka: unit\n"
"                          or free (any norm, activations rescaled by it, as\n"
"                          SAELens' rescale_acts_by_decoder_norm)\n"
"                          [Default: unit]\n"
"      --init-norm N       start norm of the encoder rows, and of the decoder\n"
"                          rows when free (SAELens: 0.1) [Default: 1]\n"
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
"      --input FILE        read rows from FILE (same as one operand) [Default: stdin]\n"
"      --epochs E          passes over the input files [Default: 1]\n"
"      --tokens N          stop after N rows; the schedule's length, unless the\n"
"                          input files hold fewer [Default: all]\n"
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
"Across machines: mpirun -np R sae-fit ... -o SAE.tsz splits the latents\n"
"over R ranks (see the man page, MPI); every rank reads the same input.\n"
);
    sp_stage_help(f, 24, "the SAE");
    fprintf(f,
"\n"
"Memory: 4P (weights) + 4P (gradients) + 8P (Adam; 4P with bf16) + 4P (best\n"
"weights, with --val) + 4B(2D + F) (+4BF for all but topk, +0.8BF more for\n"
"relu's sparse step, +4B(F + D) for jumprelu and gated, +4B(G-1)D for\n"
"matryoshka) + 4D(B + V) + W bytes, P = 2DF + F + D (+F jumprelu, +2F gated),\n"
"B = --batch, V = --val-rows, W = 4x the largest record written: matrices go\n"
"in part records of 32 MB (W <= 0.8 GB; see the man page). Files have no size\n"
"limit.\n"
"Exit status: 0 on success, 1 on a bad input or failure, 2 on bad usage.\n");
    exit(status);
}

static void parse_dict(SAEFitOpts *o, const char *s)
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

static void parse_groups(SAEFitOpts *o, const char *s)
{
    char buf[32];
    o->ngroups = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (o->ngroups == SAE_MAX_GROUPS) sp_usage_die("--groups: at most %d sizes", SAE_MAX_GROUPS);
        if (n == 0 || n >= sizeof buf) sp_usage_die("--groups: expected sizes like 1024,4096,16384");
        memcpy(buf, s, n);
        buf[n] = 0;
        o->groups[o->ngroups++] = sp_opt_u64("--groups", buf, 1, 1u << 26);
        s += n + (s[n] == ',');
    }
    if (!o->ngroups) sp_usage_die("--groups: expected sizes like 1024,4096,16384");
}

static void parse_args(SAEFitOpts *o, int argc, char **argv)
{
    enum { O_ARCH = 256, O_DICT, O_K, O_L1, O_L1W, O_AUXK, O_AUXC, O_DEAD, O_RES, O_BDEC, O_SEED, O_LR, O_SCHED,
           O_DECAY, O_WARM, O_B1, O_B2, O_EPS, O_BATCH, O_SDT, O_INPUT, O_EPOCHS, O_TOKENS, O_NAN, O_VAL, O_VROWS,
           O_EVAL, O_KEEP, O_CK, O_CKE, O_RESUME, O_LOG, O_LOGE, O_MEM, O_GROUPS, O_BW, O_TH0, O_THLR, O_PEN, O_DECO, O_INORM, O_AUXS };
    const char *jump_only = NULL; /* the last jumprelu-only flag given */
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
        {"max-mem", 1, 0, O_MEM}, /* topk-ctx's spelling, an alias */
        {"groups", 1, 0, O_GROUPS}, {"bandwidth", 1, 0, O_BW}, {"threshold-init", 1, 0, O_TH0},
        {"threshold-lr", 1, 0, O_THLR},
        {"jumprelu-penalty", 1, 0, O_PEN}, {"decoder", 1, 0, O_DECO}, {"init-norm", 1, 0, O_INORM},
        {"aux-scale", 1, 0, O_AUXS},
        SP_STAGE_LONGOPTS,
    };
    static const SpChoice archs[] = {{"relu", SAE_RELU},         {"topk", SAE_TOPK},   {"batchtopk", SAE_BATCHTOPK},
                                     {"jumprelu", SAE_JUMPRELU}, {"gated", SAE_GATED}, {"matryoshka", SAE_MATRYOSHKA}};
    static const SpChoice pens[] = {{"step", 0}, {"tanh", 1}};
    static const SpChoice scheds[] = {{"constant", SAE_LR_CONSTANT}, {"cosine", SAE_LR_COSINE},
                                      {"linear", SAE_LR_LINEAR}};
    static const SpChoice bdecs[] = {{"median", SAE_BDEC_MEDIAN}, {"mean", SAE_BDEC_MEAN}, {"zero", SAE_BDEC_ZERO}};
    static const SpChoice keeps[] = {{"fvu", SAE_KEEP_FVU}, {"loss", SAE_KEEP_LOSS}, {"last", SAE_KEEP_LAST}};
    static const SpChoice nans[] = {{"count", SAE_NAN_COUNT}, {"skip", SAE_NAN_SKIP}, {"stop", SAE_NAN_STOP}};
    static const SpChoice sdts[] = {{"f32", 0}, {"bf16", 1}};
    static const SpChoice decos[] = {{"unit", 0}, {"free", 1}};
    static const SpChoice auxscs[] = {{"fixed", 0}, {"dead", 1}};
    const char *dec_opt = NULL; /* the last decoder flag given (relu, topk, batchtopk, matryoshka) */
    sae_fit_opts_default(o);
    int c;
    static const char *input; /* --input FILE: o->inputs points here */
    while ((c = getopt_long(argc, argv, "o:fhV", longs, NULL)) != -1) {
        switch (c) {
        case O_ARCH: o->arch = (SAEArch)SP_OPT_CHOICE("--arch", optarg, archs); break;
        case O_DICT: parse_dict(o, optarg); break;
        case O_K: o->K = sp_opt_u64("--k", optarg, 1, 1u << 20); break;
        case O_L1: o->l1 = sp_opt_double("--l1", optarg, 0, 1e9), o->l1_set = 1; break;
        case O_GROUPS: parse_groups(o, optarg); break;
        case O_BW: o->bandwidth = sp_opt_double(jump_only = "--bandwidth", optarg, 1e-9, 10); break;
        case O_TH0: o->theta0 = sp_opt_double(jump_only = "--threshold-init", optarg, 1e-9, 100); break;
        case O_THLR: o->theta_lr = sp_opt_double(jump_only = "--threshold-lr", optarg, 1e-6, 1e6); break;
        case O_PEN: o->tanh_scale = SP_OPT_CHOICE(jump_only = "--jumprelu-penalty", optarg, pens) ? 4.0 : 0; break;
        case O_DECO: o->dec_free = SP_OPT_CHOICE(dec_opt = "--decoder", optarg, decos); break;
        case O_INORM: o->init_norm = sp_opt_double(dec_opt = "--init-norm", optarg, 1e-6, 1e3); break;
        case O_AUXS: o->aux_dyn = SP_OPT_CHOICE("--aux-scale", optarg, auxscs); break;
        case O_L1W: o->l1_warmup = sp_opt_u64("--l1-warmup", optarg, 0, UINT32_MAX); break;
        case O_AUXK: o->aux_k = sp_opt_u64("--aux-k", optarg, 0, 1u << 26); break;
        case O_AUXC: o->aux_coef = sp_opt_double("--aux-coef", optarg, 0, 1e6); break;
        case O_DEAD: o->dead_rows = sp_opt_u64("--dead-tokens", optarg, 1, UINT64_MAX / 2); break;
        case O_RES: o->resample_every = sp_opt_u64("--resample-every", optarg, 0, UINT32_MAX); break;
        case O_BDEC: o->bdec = (SAEBdecInit)SP_OPT_CHOICE("--init-bdec", optarg, bdecs); break;
        case O_SEED: o->seed = sp_opt_u64("--seed", optarg, 0, UINT64_MAX); break;
        case O_LR: o->lr = sp_opt_double("--lr", optarg, 0, 10); break;
        case O_SCHED: o->sched = (SAELrSched)SP_OPT_CHOICE("--lr-schedule", optarg, scheds); break;
        case O_DECAY: o->decay_frac = sp_opt_double("--decay-frac", optarg, 0, 1); break;
        case O_WARM: o->warmup = sp_opt_u64("--warmup", optarg, 0, UINT32_MAX), o->warmup_set = 1; break;
        case O_B1: o->beta1 = sp_opt_double("--beta1", optarg, 0, 0.999999); break;
        case O_B2: o->beta2 = sp_opt_double("--beta2", optarg, 0, 0.999999999); break;
        case O_EPS: o->eps = sp_opt_double("--eps", optarg, 1e-30, 1); break;
        case O_BATCH: o->batch = sp_opt_u64("--batch", optarg, 1, 1u << 24); break;
        case O_SDT: o->state_bf16 = SP_OPT_CHOICE("--state-dtype", optarg, sdts); break;
        case O_INPUT: input = optarg; break;
        case O_EPOCHS: o->epochs = sp_opt_u64("--epochs", optarg, 1, 1u << 20); break;
        case O_TOKENS: o->tokens = sp_opt_u64("--tokens", optarg, 1, UINT64_MAX / 2); break;
        case O_NAN: o->on_nan = (SAEOnNan)SP_OPT_CHOICE("--on-nan", optarg, nans); break;
        case O_VAL: o->val = optarg; break;
        case O_VROWS: o->val_rows = sp_opt_u64("--val-rows", optarg, 1, 1u << 30); break;
        case O_EVAL: o->eval_every = sp_opt_u64("--eval-every", optarg, 1, UINT32_MAX); break;
        case O_KEEP: o->keep = (SAEKeepBest)SP_OPT_CHOICE("--keep-best", optarg, keeps), o->keep_set = 1; break;
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
        if (input) sp_usage_die("give the input once: --input or operands");
        o->inputs = (const char *const *)argv + optind, o->ninputs = (size_t)(argc - optind);
    } else if (input) {
        o->inputs = &input, o->ninputs = 1;
    }
    for (size_t i = 0; o->ninputs > 1 && i < o->ninputs; i++)
        if (!strcmp(o->inputs[i], "-")) sp_usage_die("stdin ('-') is an input alone, not one of several");
    if (!o->l1_set) o->l1 = sae_fit_l1_default(o->arch);
    if (o->ngroups && o->arch != SAE_MATRYOSHKA) sp_usage_die("--groups is for --arch matryoshka");
    if (jump_only && o->arch != SAE_JUMPRELU) sp_usage_die("%s is for --arch jumprelu", jump_only);
    if (dec_opt && o->arch != SAE_RELU && !sae_arch_has_k(o->arch))
        sp_usage_die("%s is for --arch relu, topk, batchtopk or matryoshka", dec_opt);
    if (!o->keep_set) o->keep = o->val ? SAE_KEEP_FVU : SAE_KEEP_LAST;
    if (o->keep != SAE_KEEP_LAST && !o->val)
        sp_usage_die("--keep-best %s needs --val", o->keep == SAE_KEEP_FVU ? "fvu" : "loss");
    if (o->resume && !o->ckdir) sp_usage_die("--resume needs --checkpoint DIR");
    if (o->epochs > 1 && !strcmp(o->inputs[0], "-"))
        sp_usage_die("--epochs needs --input FILE (stdin is read once)");
    if (o->val && !strcmp(o->val, "-")) sp_usage_die("--val must be a file");
}

/* A usage error every rank finds alike: rank 0 says it, the others wait
 * in a collective for the abort its exit brings (one message, not R). */
static SP_NORETURN void usage_die_once(SpComm *c, const char *msg)
{
    if (c && c->rank) {
        int never;
        c->ops->bcast(c, &never, sizeof never);
    }
    sp_usage_die("%s", msg);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    SAEFit f = {.argc = argc, .argv = argv};
    SAEFitOpts *o = &f.o;
    parse_args(o, argc, argv); /* before MPI: --help and usage errors exit as without it */
    SpComm *comm = f.comm = sae_mpi_init(&argc, &argv); /* NULL unless mpirun started R > 1 ranks */
    int root = !comm || comm->rank == 0;
    if (comm && !strcmp(o->output, "-")) usage_die_once(comm, "under mpirun, give the SAE's file: -o FILE");
    if (comm && !strcmp(o->inputs[0], "-")) /* mpirun gives stdin to rank 0 alone */
        usage_die_once(comm, "under mpirun, give the rows as files: every rank reads them");
    if (!root) o->progress = 0; /* rank 0 speaks for the run */
    if (!strcmp(o->output, "-")) sp_check_binary_stdout(o->force);
    // the length, when it can be known, for the schedule and the ETA
    if (sae_fit_length(&f) < 0) sp_die("%s", f.err);
    if (o->sched != SAE_LR_CONSTANT && !f.total_rows)
        sp_usage_die("--lr-schedule cosine/linear needs a known length: --tokens N or --input FILE");
    if (root && o->tokens && f.data_rows && o->tokens > f.data_rows * o->epochs)
        sp_warn("%s: --tokens %" PRIu64 " is more than the %" PRIu64 " rows of %" PRIu64 " epoch%s; the schedule "
                "runs over those", o->ninputs > 1 ? "the inputs" : sp_in_name(o->inputs[0]), o->tokens,
                f.data_rows * o->epochs, o->epochs, o->epochs > 1 ? "s" : "");
    if (sae_fit_open(&f) < 0) sp_die("%s", f.err);
    size_t F = sae_fit_features(&f);
    if (sae_arch_has_k(o->arch) && o->K > F) sp_usage_die("--k %" PRIu64 " is more than the %zu features", o->K, F);
    if (comm && F < (size_t)comm->size) {
        char msg[128];
        snprintf(msg, sizeof msg, "--dict %zu: fewer latents than the %d ranks", F, comm->size);
        usage_die_once(comm, msg);
    }
    if (sae_fit_init(&f) < 0) sp_die("%s", f.err);
    int resumed = o->resume ? sae_fit_resume(&f) : 0;
    if (resumed < 0) sp_die("%s", f.err);
    if (root && o->resume && !resumed) sp_warn("%s/checkpoint.tsz: no checkpoint yet; starting from the beginning", o->ckdir);
    if (o->val && sae_fit_load_val(&f) < 0) sp_die("%s", f.err);
    if (sae_fit_log_open(&f) < 0) sp_die("%s", f.err);
    SpProgress prog;
    sp_progress_init(&prog, o->progress, "sae-fit", "tok", f.total_rows);
    SAEStats st = {0};
    double lr = 0, l1 = 0;
    size_t n;
    for (;;) {
        if (sae_fit_batch(&f, &n) < 0) sp_die("%s", f.err);
        if (!n) break;
        if (!resumed && f.t.step == 0) sae_trainer_init_params(&f.t, &f.rng, f.x, n < 4096 ? n : 4096, o->bdec);
        uint64_t step = f.t.step;
        lr = sae_fit_lr(&f, step);
        l1 = sae_fit_l1(&f, step);
        sae_trainer_forward(&f.t, f.x, n, l1, &st);
        if (!isfinite(st.loss))
            sp_die("%s: loss is %g at step %" PRIu64 " (diverged; try a lower --lr)", f.src.name, st.loss, step);
        sae_trainer_step(&f.t, lr);
        f.rows_trained += n;
        if (o->arch == SAE_RELU && o->resample_every && f.t.step % o->resample_every == 0) {
            size_t k = sae_trainer_resample(&f.t, f.x, n, &f.rng);
            if (k && o->progress) sp_warn("step %" PRIu64 ": resampled %zu dead latents", f.t.step, k);
        }
        if (f.t.step % o->log_every == 0 && sae_fit_log_train(&f, &st, n, lr) < 0) sp_die("%s", f.err);
        if (o->val && f.t.step % o->eval_every == 0 && sae_fit_eval(&f, l1, lr) < 0) sp_die("%s", f.err);
        if (o->ckdir && f.t.step % o->ck_every == 0 && sae_fit_save_checkpoint(&f) < 0) sp_die("%s", f.err);
        sp_progress_update(&prog, f.rows_trained);
    }
    sp_progress_end(&prog);
    uint64_t sent = comm ? comm->sent : 0; /* the steps' exchange, before validation and writing */
    double secs = comm ? comm->secs : 0;
    if (f.t.step == 0) sp_die("%s: no usable rows to train on (%" PRIu64 " had NaN or Inf)", f.src.name, f.nan_rows);
    // the last step's schedule, also when a resumed run had no step left
    lr = sae_fit_lr(&f, f.t.step - 1);
    l1 = sae_fit_l1(&f, f.t.step - 1);
    if (o->val && (uint64_t)sae_fit_metric(f.last_val, "step") != f.t.step && sae_fit_eval(&f, l1, lr) < 0)
        sp_die("%s", f.err);
    if (root && f.nan_rows && o->on_nan == SAE_NAN_COUNT)
        sp_warn("%s: skipped %" PRIu64 " rows with NaN or Inf", f.src.name, f.nan_rows);
    if (root && f.best)
        sp_warn("kept the weights of step %" PRIu64 " of %" PRIu64 " (val fvu %.4f, loss %.4g; final fvu %.4f)",
                f.best_step, f.t.step, sae_fit_metric(f.best_val, "fvu"), sae_fit_metric(f.best_val, "loss"),
                sae_fit_metric(f.last_val, "fvu"));
    sae_fit_end_training(&f);
    if (!root) {
        if (sae_fit_write(&f, NULL) < 0) sp_die("%s", f.err);
    } else {
        TszWriteOpts wo;
        sae_write_opts(&wo);
        TszWriter *w = tsz_writer_open(o->output, "sae-fit", argc, argv, &wo);
        tsz_writer_check(w);
        if (sae_fit_write(&f, w) < 0) {
            tsz_writer_abort(w);
            sp_die("%s", f.err);
        }
        tsz_writer_close_or_die(w); /* closes stdout too */
    }
    if (comm && root && o->progress) /* what bench/sae-mpi.sh reads */
        sp_warn("%" PRIu64 " steps; per step rank 0 gave %.4g MB to the collectives and spent %.4g ms in them",
                f.t.step, sent / 1e6 / (double)f.t.step, secs * 1e3 / (double)f.t.step);
    if (sae_fit_free(&f) < 0) sp_die("%s", f.err);
    sae_mpi_finish(comm);
    return 0;
}
