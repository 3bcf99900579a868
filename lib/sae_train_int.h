/* sae_train_int.h: what sae_train*.c and sae_adam.c share; not an
 * interface. The sae_shard_* functions run when the trainer is sharded
 * (t->c.comm): collectives, every rank calls them alike. */
#ifndef SP_SAE_TRAIN_INT_H
#define SP_SAE_TRAIN_INT_H

#include "sae_arch.h"
#include "sae_train.h"

/* Top-k of the arch (0 for those without), and the latents of the whole
 * SAE (sharded: of every rank). */
static inline size_t kmax(const SAETrainConfig *c) { return sae_arch_has_k(c->arch) ? c->K : 0; }
static inline size_t f_all(const SAETrainConfig *c) { return c->comm ? c->F_all : c->F; }

/* The kth largest (k from 0) of a (n), a reordered: its k+1 largest first. */
float sae_kth_largest(float *a, size_t n, size_t k);
/* Row i's AuxK residual into r (D): e + its AuxK latents' decoder rows
 * (sharded: rank 0 adds e, each rank its own latents). */
void sae_auxk_residual(SAETrainer *t, size_t i, float *r);
/* the end of every backward (n rows): the firing counters, last_n cleared */
void sae_backward_end(SAETrainer *t, size_t n);

/* The hot element loops compiled at -O3 with the vectoriser (GCC -O2 leaves
 * loops of unknown length scalar). No fast-math: results stay the same on
 * every run, and sqrt/division vectorised are correctly rounded as scalar. */
#define SAE_VEC __attribute__((optimize("O3", "tree-vectorize", "no-math-errno")))

/* w (D) scaled to unit norm; a zero row stays zero. */
void sae_normalize_row(float *w, size_t D);
/* a . b in eight partial sums, a fixed order; y += a x */
float sae_dotf(const float *restrict a, const float *restrict b, size_t D);
void sae_axpyf(float *restrict y, float a, const float *restrict x, size_t D);

/* Adam (sae_adam.c): the step's constants; a the step size, ax that of
 * the arch's vectors (jumprelu's log threshold: --threshold-lr) */
typedef struct {
    SAETrainer *t;
    float a, ax, ib2, eps, b1, b2, c1, c2;
} SAEAdam;
/* counts the step (t->step) and sets s */
void sae_adam_begin(SAETrainer *t, double lr, SAEAdam *s);
/* latent j from its gradient rows gt (W_encT), gd (W_dec; made orthogonal
 * to the row here; both overwritten with a rescaled decoder's raw gradients), b_enc's gb and the arch's vectors' in t->gxp */
void sae_adam_latent(const SAEAdam *s, size_t j, float *gt, float gb, float *gd);
/* b_dec from t->gb_dec */
void sae_adam_bdec(const SAEAdam *s);

/* topk: this rank's latents among each row's global K best, as CSR. */
void sae_shard_topk(SAETrainer *t, size_t n);
/* batchtopk: the batch's quota-th largest of every rank's a (m values,
 * reordered). */
float sae_shard_threshold(SAETrainer *t, float *a, size_t m, size_t quota);
/* batchtopk: t->rowq, entries equal to thr each row of this rank takes, of
 * the eq_left the batch takes in row-major order of global ids. */
void sae_shard_ties(SAETrainer *t, size_t n, float thr, size_t eq_left);
/* AuxK over every rank's nd dead latents: the term, residuals in t->ar. */
double sae_shard_auxk(SAETrainer *t, size_t n, size_t nd);

#endif
