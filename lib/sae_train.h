/* sae_train.h: one training step of a sparse autoencoder (relu, topk,
 * batchtopk, matryoshka, and through sae_arch.h jumprelu and gated):
 * forward, loss, gradients, Adam, decoder normalisation, resampling of
 * dead latents, and the trainer state a checkpoint holds.
 *
 * Internal layout: the parameter block is W_encT (F,D), b_enc (F),
 * W_dec (F,D), b_dec (D), then the arch's per-latent vectors (sae_arch.h:
 * jumprelu log threshold; gated r_mag, b_mag); the encoder is kept
 * transposed so that the sparse backward of topk adds contiguous rows.
 * Objective of a batch of n rows (x already in the SAE's normalised scale):
 *   recon = 1/n sum_i ||x_hat_i - x_i||^2
 *   relu:             loss = recon + l1/n sum_ij f_ij (dec_free: f_ij ||W_dec_j||)
 *   topk, batchtopk:  loss = recon + aux_coef/n sum_i ||e^_i - (x_i - x_hat_i)||^2
 *   matryoshka:       the batchtopk loss + 1/n sum_g<G sum_i ||x_hat_i^(g) - x_i||^2,
 *                     x_hat^(g) the decoder of the selected latents below groups[g]
 *   jumprelu, gated:  sae_arch.h
 * where e^_i is the decoder (no bias) of the aux_k largest pre-activations
 * among dead latents, and x_i - x_hat_i is held constant (AuxK, Gao et al.).
 * A latent is dead when it has not fired for dead_rows rows.
 * Work outside BLAS runs on sp_parfor (parfor.h) with OpenBLAS's thread
 * count; the bytes do not depend on it. */
#ifndef SP_SAE_TRAIN_H
#define SP_SAE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h"
#include "parts.h"
#include "sae.h"
#include "stream.h"
#include "util.h"

typedef struct {
    SAEArch arch;
    size_t D, F, K, B;     /* B: most rows per step */
    size_t aux_k;          /* 0: no AuxK */
    double aux_coef;
    double beta1, beta2, eps;
    int state_bf16;        /* Adam moments in bf16 */
    uint64_t dead_rows;    /* rows without firing before a latent counts as dead */
    double threshold_ema;  /* batchtopk, matryoshka: most weight of the old threshold */
    double bandwidth;      /* jumprelu: STE kernel width, times the row scale (sae_arch.h) */
    double theta0;         /* jumprelu: start threshold, times the row scale */
    double theta_lr;       /* jumprelu: the log threshold's learning rate, times lr (0 taken as 1) */
    double tanh_scale;     /* jumprelu: 0: L0 (step) penalty; c > 0: Anthropic's tanh(c f) */
    size_t ngroups;        /* matryoshka: prefix sizes, ascending, the last F */
    size_t groups[SAE_MAX_GROUPS];
    double relu_sparse;    /* relu: decoder and backward over the active entries when at most
                            * this fraction of (row, latent) pairs fire; 0: SAE_RELU_SPARSE,
                            * < 0: always dense. Sizes relu's CSR buffers. */
    int dec_free;          /* relu: decoder rows unconstrained, penalty l1/n sum_ij f_ij ||W_dec_j|| */
    double init_norm;      /* relu: > 0: encoder rows start at this norm (and, free, decoder rows);
                            * dec_rescale: the raw encoder and decoder rows' start norm */
    int dec_rescale;       /* topk, batchtopk, matryoshka: SAELens' free decoder with the activations
                            * rescaled by its row norms (rescale_acts_by_decoder_norm): the block holds
                            * the effective map (unit W_dec rows u_j, W_encT_j and b_enc_j times s_j),
                            * ds the norms s_j; Adam steps the raw rows (sae_adam.c) */
    int aux_dyn;           /* AuxK's coefficient times min(dead/aux_k, 1) (SAELens), else fixed */
    /* Latent-sharded (comm.h, sae-fit under mpirun): this trainer holds
     * latents [f0, f0 + F) of F_all and the other ranks the rest; the
     * selections of topk, batchtopk and AuxK, the reconstruction and the
     * statistics are summed over comm. NULL: all latents here, no comm. */
    SpComm *comm;
    size_t f0, F_all;
} SAETrainConfig;

/* Below this density the sparse relu step beats the dense products (measured
 * at D=2048, F=16384, B=4096 on AVX-512). */
#define SAE_RELU_SPARSE 0.05

typedef struct {
    size_t n;              /* rows */
    double loss;           /* the objective */
    double recon;          /* 1/n sum ||e||^2 */
    double aux;            /* the l1 or AuxK term (already weighted) */
    double l0;             /* mean active latents per row */
    double sq_err;         /* sum ||e||^2 */
    int sparse;            /* the decoder (and backward) ran over the active entries only */
} SAEStats;

typedef struct {
    SAETrainConfig c;
    size_t P;              /* parameters in the block */
    float *param, *grad;   /* (P) each; grad's pages are first touched where written */
    float *m, *v;          /* (P) f32 Adam moments, or NULL */
    uint16_t *m16, *v16;   /* (P) bf16 Adam moments, or NULL */
    float *Wt, *b_enc, *Wd, *b_dec, *xp;    /* views into param; xp: the arch's vectors (sae_arch.h) */
    float *gWt, *gb_enc, *gWd, *gb_dec, *gxp; /* views into grad */
    int64_t *since_fired;  /* (F) rows since each latent last fired */
    double theta;          /* batchtopk inference threshold (running mean) */
    double scale;          /* jumprelu, gated: root mean square row norm at the start (sae_arch.h) */
    uint64_t step;         /* Adam steps taken */
    /* scratch */
    float *xc, *e;         /* (B,D) */
    float *pre, *g;        /* (B,F); g only for relu and batchtopk; topk's
                            * pre is one tile of rows (pre_rows, from row
                            * pre_r0), see pre_tiled in sae_train.c */
    size_t pre_rows, pre_r0;
    size_t cap;            /* active entries the CSR holds: B*K, or relu's share of B*F */
    uint32_t *idx;         /* (cap) active latents, CSR by ptr */
    float *val;            /* (cap) */
    size_t *ptr;           /* (B+1) */
    uint32_t *cq, *crow;   /* (cap) the entries by latent (CSC by cptr): entry, row */
    size_t *cptr;          /* (F+1) */
    double *rsq, *rl1, *ract; /* (B) per row: squared error, sum and count of activations */
    uint32_t *aidx;        /* (B*aux_k) each row's AuxK latents, aux_a of them */
    float *aval, *abuf;    /* (B*aux_k) their activations, (F) */
    float *ar;             /* (B,D) every row's AuxK residual (sharded: summed over the ranks) */
    uint32_t *aq, *arow;   /* (B*aux_k) the AuxK entries by latent (CSC by aptr): entry, row */
    size_t *aptr;          /* (F+1) */
    float *bpart;          /* (ceil(F/64),D) b_dec's gradient: each 64 latents' share */
    SpCand *cand;          /* sharded: (B*max(K, aux_k)) a row's candidates for the global top-k */
    size_t *rowq;          /* sharded batchtopk: (B) entries equal to the threshold each row takes */
    size_t aux_a;          /* AuxK latents per row in the last forward (0: none dead) */
    uint32_t *dead;        /* (F) */
    float *rowloss;        /* (B) */
    double *acc;           /* (D) */
    float *h, *e2, *lev;   /* sae_arch.c: (B,F), (B,D); matryoshka (B,G-1,D) */
    float *th;             /* (F) jumprelu thresholds; gated exp(r_mag) */
    float *dn;             /* relu, free decoder: (2F) each row's norm, then scratch sums */
    float *ds;             /* dec_rescale: (F) the raw decoder rows' norms s_j */
    double aux_sc;         /* AuxK's coefficient this step (aux_dyn: scaled by the dead share) */
    double *raux;          /* (B) per row: the arch's extra loss */
    uint8_t *grp;          /* (F) matryoshka: each latent's first level */
    /* the last forward, for the backward */
    size_t last_n;         /* rows; 0: nothing to differentiate */
    double last_l1;
    int last_sparse;
} SAETrainer;

/* Bytes the trainer allocates for this configuration. */
uint64_t sae_trainer_bytes(const SAETrainConfig *c);
int sae_trainer_init(SAETrainer *t, const SAETrainConfig *c, char *err, size_t errlen);
/* Free what only training uses (the gradient, Adam's moments, the batch's
 * scratch), keeping the parameters: after it, only sae_trainer_write,
 * _state's param and sae_trainer_free. Freed before the final write, the
 * 0.5-0.8 GB go back to the kernel while the SAE's file takes as much page
 * cache. */
void sae_trainer_drop_state(SAETrainer *t);
void sae_trainer_free(SAETrainer *t);

typedef enum { SAE_BDEC_ZERO = 0, SAE_BDEC_MEAN, SAE_BDEC_MEDIAN } SAEBdecInit;
/* Random unit decoder rows, encoder = decoder transpose, b_enc 0, b_dec
 * from the n sample rows x (geometric median by Weiszfeld, or mean). */
void sae_trainer_init_params(SAETrainer *t, SpRng *rng, const float *x, size_t n, SAEBdecInit bdec);

/* A training step, as llm.c's gpt2_forward, gpt2_backward, gpt2_update:
 *   sae_trainer_forward(t, x, n, l1, &st);   loss of n rows (n <= B) into st
 *   sae_trainer_backward(t);                  its gradient into t->grad,
 *                                             the firing counters updated
 *   sae_trainer_update(t, lr);                Adam
 * or the last two as sae_trainer_step(t, lr), which training uses.
 * The forward keeps what the backward needs in t; batchtopk's forward
 * selects the batch top-k and moves its inference threshold. */
void sae_trainer_forward(SAETrainer *t, const float *x, size_t n, double l1, SAEStats *st);
void sae_trainer_backward(SAETrainer *t);
/* Adam step with learning rate lr on t->grad; decoder rows are kept at unit
 * norm, the gradient component parallel to each row removed first (relu
 * with c.dec_free: left free). */
void sae_trainer_update(SAETrainer *t, double lr);
/* sae_trainer_backward and sae_trainer_update in one, the same bytes: on
 * the sparse step (topk, batchtopk, matryoshka, relu when few latents
 * fire) each latent's Adam runs as its gradient rows are made, in cache, and
 * t->grad's rows are never written; the other steps call the two. Without
 * a forward since the last step it does nothing (t->grad holds no gradient:
 * sae_trainer_update reads it only after sae_trainer_backward). */
void sae_trainer_step(SAETrainer *t, double lr);
/* The inference map's loss on n rows (evaluation: batchtopk uses its
 * threshold); fired (F, may be NULL) counts the rows each latent fired on.
 * Nothing to differentiate after it. */
void sae_trainer_eval(SAETrainer *t, const float *x, size_t n, double l1, SAEStats *st, uint64_t *fired);
/* Anthropic resampling: dead latents get an input drawn with probability
 * proportional to its squared error in the last forward (x, n rows),
 * fresh Adam state. Returns the number resampled. */
size_t sae_trainer_resample(SAETrainer *t, const float *x, size_t n, SpRng *rng);
/* Dead latents (sharded: of every rank, a collective). */
size_t sae_trainer_dead(const SAETrainer *t);

/* Write the SAE of a parameter block (t->param, or a saved copy of it) to
 * w without a copy, the trainer's transposed encoder as W_enc (D,F): s
 * holds the SAE's metadata (hook, model, l1, norm_scale; arch, D, F, K are
 * set from t) and owns nothing; its parameters are NULL again after. The
 * threshold of batchtopk is theta. 0 or -1 with err; the caller closes w.
 * Sharded: every rank calls it, rank 0 with w (writing all latents),
 * the others with w NULL (sending theirs). */
int sae_trainer_write(const SAETrainer *t, const float *param, SAE *s, TszWriter *w, const json_t *extra_meta,
                      char *err, size_t errlen);
/* Sharded: b (a tensor of sae_trainer_state, or a parameter-shaped block
 * of the run's, shape P or F here) made the whole tensor over every rank,
 * written and read through sh (comm.h), entry id of the ranks' table. */
void sae_trainer_shard(const SAETrainer *t, TszBig *b, SpShard *sh, int id);
/* Set the parameter block from an SAE of the same D, F (imports). */
void sae_trainer_import(SAETrainer *t, const SAE *s);

/* Checkpoint: tab (4 or 5) gets the state's tensors, param, adam_m, adam_v
 * (f32 or bf16), since_fired and, with the rescaled free decoder, its norms
 * dec_scale, pointing into t, for tsz_write_parts and
 * tsz_read_tensors (parts.h); meta gets step and theta, and back. */
size_t sae_trainer_state(SAETrainer *t, TszBig *tab);
void sae_trainer_meta(const SAETrainer *t, json_t *meta);
int sae_trainer_from_meta(SAETrainer *t, const json_t *meta, char *err, size_t errlen);

#endif
