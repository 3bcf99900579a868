/* sae_fit.h: a training run of sae-fit around the trainer (sae_train.h):
 * its options, the row source and batches, the lr and L1 schedules,
 * validation and keep-best, the log, checkpoints and resume, the memory
 * model and the SAE it writes. bin/sae-fit.c parses the flags into
 * SAEFitOpts and runs the loop:
 *
 *   sae_fit_length(&f); sae_fit_open(&f); sae_fit_init(&f); sae_fit_resume(&f);
 *   while (sae_fit_batch(&f, &n) == 0 && n) {
 *       sae_trainer_forward(&f.t, f.x, n, l1, &st);
 *       sae_trainer_step(&f.t, sae_fit_lr(&f, step)); ...   (backward and Adam)
 *       sae_fit_log_train, sae_fit_eval, sae_fit_save_checkpoint on their steps
 *   }
 *   sae_fit_end_training(&f); sae_fit_write(&f, w); sae_fit_free(&f);
 *
 * Nothing here prints or exits: every int function returns 0 (or a count)
 * and -1 with the message in f->err. */
#ifndef SP_SAE_FIT_H
#define SP_SAE_FIT_H

#include <stdio.h>

#include "rows.h"
#include "sae_train.h"

typedef enum { SAE_KEEP_LAST = 0, SAE_KEEP_FVU, SAE_KEEP_LOSS } SAEKeepBest;
typedef enum { SAE_NAN_COUNT = 0, SAE_NAN_SKIP, SAE_NAN_STOP } SAEOnNan;
typedef enum { SAE_LR_AUTO = 0, SAE_LR_CONSTANT, SAE_LR_COSINE, SAE_LR_LINEAR } SAELrSched;

/* What sae-fit's flags set (sae-fit(1) gives each its meaning and default). */
typedef struct {
    const char *const *inputs;      /* (ninputs) row files read in order, or "-" alone */
    size_t ninputs;
    const char *output, *val, *ckdir, *log;
    uint64_t dict_mult, dict_n;     /* --dict: a multiple of D, or a count */
    SAEArch arch;
    uint64_t K, aux_k, dead_rows, resample_every, seed, warmup, l1_warmup, batch, epochs, tokens, val_rows,
        eval_every, ck_every, log_every, max_memory;
    double l1, aux_coef, lr, decay_frac, beta1, beta2, eps;
    double bandwidth, theta0, theta_lr, tanh_scale; /* jumprelu (sae_arch.h) */
    int dec_free;                   /* --decoder free (relu; topk, batchtopk, matryoshka: rescaled) */
    int aux_dyn;                    /* --aux-scale dead */
    double init_norm;               /* --init-norm (0: unit rows) */
    size_t ngroups;                 /* matryoshka --groups (0: the default F/64, F/16, F/4, F) */
    uint64_t groups[SAE_MAX_GROUPS];
    SAELrSched sched;
    SAEBdecInit bdec;
    SAEKeepBest keep;
    int l1_set, keep_set, warmup_set, state_bf16, resume, force, progress;
    SAEOnNan on_nan;
} SAEFitOpts;

/* The defaults of every option. */
void sae_fit_opts_default(SAEFitOpts *o);
/* --l1's default for arch: relu 5, gated SAE_GATED_L1, jumprelu SAE_JUMPRELU_L0 */
#define SAE_GATED_L1 1.0
#define SAE_JUMPRELU_L0 0.05
double sae_fit_l1_default(SAEArch a);

typedef struct {
    SAEFitOpts o;
    RowReader src;
    uint64_t data_rows;             /* rows in one pass over the input files; 0: unknown (stdin) */
    uint64_t total_rows;            /* rows the run trains on; 0: unknown */
    uint64_t total_steps;           /* steps of the schedule; 0: unknown */
    uint64_t epoch, pos_in_epoch;   /* raw rows consumed in this epoch */
    uint64_t rows_trained, nan_rows;
    SAETrainer t;
    SpRng rng;
    float *x;                       /* (B,D) batch */
    double *mean;                   /* (D) scratch of the variances */
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
    double t_log;
    uint64_t rows_at_log;
    SpComm *comm;                   /* latent-sharded over mpirun's ranks (comm.h), or NULL. Every
                                     * rank reads the input and runs the same calls; rank 0 alone
                                     * writes the log, checkpoints and the SAE, and reads checkpoints */
    int argc;                       /* the command line, for checkpoint headers */
    char **argv;
    char err[1024];
} SAEFit;

/* The run's length: data_rows from the input files (read through once),
 * total_rows capped by --tokens, and the schedule chosen for SAE_LR_AUTO.
 * f->o set, the rest zero. 0 or -1. */
int sae_fit_length(SAEFit *f) SP_RESULT_USED;
/* Open the input and read its first record: src.D is known after. 0 or -1
 * ("acts.tsz: no rows to train on (empty input)"). */
int sae_fit_open(SAEFit *f) SP_RESULT_USED;
/* Features for the rows' width: --dict as a count or a multiple of D. */
size_t sae_fit_features(const SAEFit *f);
/* Memory check against --max-memory or MemAvailable, the checkpoint
 * directory, the trainer and the run's buffers. 0 or -1. */
int sae_fit_init(SAEFit *f) SP_RESULT_USED;
/* With --resume: 1 when the checkpoint was loaded and the input skipped to
 * where it stopped, 0 when there is none yet, -1 on error. */
int sae_fit_resume(SAEFit *f) SP_RESULT_USED;
/* --val's rows (at most --val-rows, finite ones) and their variance. 0 or -1. */
int sae_fit_load_val(SAEFit *f) SP_RESULT_USED;
/* Open --log (appending on --resume), TSV header unless JSON lines. 0 or -1. */
int sae_fit_log_open(SAEFit *f) SP_RESULT_USED;

/* Up to B usable rows into f->x, *n of them (0: the input is done);
 * epochs, --tokens and --on-nan applied. 0 or -1. */
int sae_fit_batch(SAEFit *f, size_t *n) SP_RESULT_USED;
/* Learning rate and L1 coefficient of a step: warmup, then the schedule. */
double sae_fit_lr(const SAEFit *f, uint64_t step);
double sae_fit_l1(const SAEFit *f, uint64_t step);

/* A "train" log line of the last step (n rows in f->x, stats st). 0 or -1. */
int sae_fit_log_train(SAEFit *f, const SAEStats *st, size_t n, double lr) SP_RESULT_USED;
/* Evaluate on --val, keep the best weights, a "val" log line. 0 or -1. */
int sae_fit_eval(SAEFit *f, double l1, double lr) SP_RESULT_USED;
/* DIR/checkpoint.tsz, written atomically. 0 or -1. */
int sae_fit_save_checkpoint(SAEFit *f) SP_RESULT_USED;
/* The kept weights (best or last) to w, an SAE file with the rows'
 * metadata (hook, model, norm_scale) and the run's. The caller closes w.
 * Sharded: ranks but 0 call it with w NULL. 0 or -1. */
int sae_fit_write(SAEFit *f, TszWriter *w) SP_RESULT_USED;
/* Free the trainer's optimizer state and scratch and the batch (what
 * training alone uses; sae_trainer_drop_state), before sae_fit_write: on
 * a machine whose fresh pages are dear (a VM), the file's page cache then
 * takes pages just freed. No batch, step or checkpoint after it. */
void sae_fit_end_training(SAEFit *f);
/* Close the log (0 or -1) and free everything. */
int sae_fit_free(SAEFit *f);

/* A number of a metrics object (0 when absent). */
double sae_fit_metric(const json_t *v, const char *key);

#endif
