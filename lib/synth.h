/* synth.h: synthetic activations with known features (sae-synth), after
 * SAELens' SynthSAEBench (Chanin and Garriga-Alonso, arXiv:2602.14687),
 * and the scores of an SAE against them.
 *
 * Model (man sae-synth): F true features, unit directions d_i in R^D
 * (F > D: superposition). A row fires feature i through a Gaussian copula:
 * z = L g + s_i e_i (g ~ N(0,I_r) shared by the row, e_i ~ N(0,1), s_i =
 * sqrt(1-|L_i|^2)), fire when z_i > Phi^-1(1-q_i); q_i is the Zipf
 * probability p_i of rank i, divided by the parent's for a child.
 * Hierarchy: trees of features; a child is dropped when its parent is off,
 * and with mutual exclusion only one child of a parent survives. A firing
 * feature has magnitude max(0, mean_i + std_i N(0,1)), a child's scaled by
 * parent/mean_parent. x = sum_i a_i d_i + bias + noise N(0,I_D). */
#ifndef SP_SYNTH_H
#define SP_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "sparse.h"
#include "stream.h"
#include "util.h"

typedef struct {
    size_t F, D;                    /* true features, row width */
    double zipf_exp, p_max, p_min;  /* p of rank r: p_min + (p_max-p_min) ((r+1)^-e - F^-e) / (1 - F^-e) */
    size_t corr_rank;               /* r of the low-rank copula; 0 = independent */
    double corr_scale;              /* loadings L (F,r) ~ N(0, scale^2) */
    size_t h_roots, h_branch, h_depth; /* trees: roots, children a node, levels (root = 1) */
    int h_exclusive;                /* children of a parent mutually exclusive */
    int h_scale;                    /* child magnitude scaled by parent/mean_parent */
    double mag_start, mag_end;      /* mean magnitude, linear from rank 0 to rank F-1 */
    double std_mean, std_std;       /* per-feature std of magnitude ~ |N(std_mean, std_std^2)| */
    double bias;                    /* norm of the bias vector (random direction) */
    double noise;                   /* std of N(0,1) noise added to every dimension */
    uint64_t seed;                  /* the model: directions, loadings, hierarchy, magnitudes */
} SynthConfig;

void synth_config_default(SynthConfig *c);      /* the small test setting */
/* A named setting over c: "small" or "synthsaebench" (SynthSAEBench-16k).
 * 0, or -1 for an unknown name. */
int synth_config_preset(SynthConfig *c, const char *name);
/* 0, or -1 with a message ("--p-min 0.5 must be below --p-max 0.4"). */
int synth_config_check(const SynthConfig *c, char *err, size_t errlen);
json_t *synth_config_json(const SynthConfig *c);               /* new reference */
/* Read back what synth_config_json wrote. 0 or -1 (err). */
int synth_config_from_json(SynthConfig *c, const json_t *j, char *err, size_t errlen);

typedef struct {
    SynthConfig cfg;
    float *dirs;        /* (F,D) unit rows */
    float *bias;        /* (D) */
    float *p;           /* (F) target marginal firing probability */
    float *q;           /* (F) firing probability given the parent (p for roots and free features) */
    float *mean, *std;  /* (F) magnitude when firing */
    float *L;           /* (F,r) copula loadings, NULL when r = 0 */
    int32_t *parent;    /* (F) parent feature, -1 for none */
    int32_t *order;     /* (nh) hierarchy features, parents before children */
    size_t nh;
    int32_t *kid_ptr;   /* (F+1) children of feature i: kids[kid_ptr[i]..kid_ptr[i+1]) */
    int32_t *kids;
    /* per-row scratch */
    float *thr, *sd;    /* (F) Phi^-1(1-q_i), sqrt(1-|L_i|^2) */
    float *a;           /* (F) activations of the row being built */
    uint8_t *on;        /* (F) */
    double *g;          /* (r) */
    SpRng rng;          /* the rows' stream (synth_rows_seed) */
    double spare;       /* Box-Muller's second value */
    int have_spare;
    char err[256];
} Synth;

/* Build the model of c (deterministic in c). 0 or -1 (s->err). */
int synth_build(Synth *s, const SynthConfig *c);
/* Load a model from the truth file sae-synth --truth writes. 0 or -1 (err). */
int synth_load(Synth *s, const char *path, char *err, size_t errlen);
void synth_free(Synth *s);
/* Start the rows' random stream: rows are a function of the model and the seed only. */
void synth_rows_seed(Synth *s, uint64_t data_seed);
/* n rows into x (n,D) and their true activations appended to b (CSR). */
void synth_rows(Synth *s, size_t n, float *x, SpCsrBuf *b);
/* The truth record: kind "synth_truth", meta the config, tensors dirs (F,D),
 * bias (D), p, q, mean, std (F) f32, parent (F) i32, loadings (F,r). */
void synth_truth_record(const Synth *s, TszRecord *rec);

/* ---- scores (sae-synth score) ---- */
typedef struct {
    size_t rows, Fs, Ft;            /* rows scored, SAE latents, true features */
    double true_l0, sae_l0, dead;   /* dead: latents that never fired on the rows */
    double r2;                      /* explained variance of the reconstruction */
    double mmcs_sae, mmcs_true;     /* mean over latents (true features) of the max cosine to the other side */
    double mcc_dec;                 /* SynthSAEBench's MCC: Hungarian on |cos| of decoder rows, mean over pairs */
    double mcc_act;                 /* Hungarian on the Pearson correlation of activations, mean over pairs */
    double f1, precision, recall;   /* each live latent against its best decoder match, averaged */
    double f1_matched;              /* each Hungarian activation pair, averaged */
    double uniqueness;              /* distinct best matches / live latents */
    double true_per_latent;         /* true features whose best latent is l, mean over such l */
    double latents_per_true;        /* live latents whose best match is j, mean over such j */
    int32_t *act_match;             /* (Fs) true feature matched by activation, -1 none */
    float *act_corr;                /* (Fs) its correlation */
    int32_t *dec_best;              /* (Fs) best true feature by |cos| */
    float *dec_cos;                 /* (Fs) that |cos| */
    float *f1_latent;               /* (Fs) F1 against dec_best, NaN for dead latents */
} SynthScore;

/* Score latents A (N,Fs) and reconstructions xhat (N,D) of rows x (N,D)
 * whose true activations are t, against W_dec (Fs,D) and the true
 * directions (Ft,D). */
void synth_score(SynthScore *sc, const float *A, const float *x, const float *xhat, const SpCsr *t,
                 const float *W_dec, const float *dirs, size_t N, size_t Fs, size_t Ft, size_t D);
void synth_score_free(SynthScore *sc);
json_t *synth_score_json(const SynthScore *sc);                 /* new reference */

/* ---- statistics of generated rows (sae-synth stats) ---- */
typedef struct SynthStats SynthStats;
SynthStats *synth_stats_new(const Synth *s);
void synth_stats_add(SynthStats *st, const SpCsr *t);
/* l0 and its expectation, the slope of log frequency on log rank (free
 * features: no parent, no children) against the target's, child-without-
 * parent and two-children violations, the largest z of a free feature's
 * frequency against p, and the copula's sign agreement. New reference. */
json_t *synth_stats_json(const SynthStats *st);
void synth_stats_free(SynthStats *st);

#endif
