/* sae_arch.h: the training step of the SAE architectures whose encoder is
 * not one ReLU-and-select of pre (sae_train.h): jumprelu and gated, and
 * matryoshka's nested-prefix losses, which ride on batchtopk's step.
 *
 * Notation: xc = x - b_dec, pre = xc W_enc + b_enc, n rows, unit decoder
 * rows (the trainer keeps them so, so ||W_dec_j|| = 1 below), s = the root
 * mean square row norm of the first batch (t->scale): the papers' inputs
 * have unit mean squared norm, and s carries their constants to ours.
 *
 * jumprelu (Rajamanoharan et al. 2024, "Jumping Ahead"):
 *   f = pre H(pre - theta), theta = exp(xp) per latent (log-parametrised),
 *   loss = recon + l1 s^2 / n sum_ij H(pre_ij - theta_j)       (step, L0)
 *      or  recon + l1 s^2 / n sum_ij tanh(c f_ij / s)           (tanh_scale c:
 *          Anthropic's 2025 variant as SAELens has it, without its pre-act loss)
 *   The straight-through estimator with the rectangle kernel K(u) =
 *   1{-1/2 < u < 1/2} of bandwidth eps = bandwidth * s:
 *     d f / d theta ~ -(theta/eps) K((pre - theta)/eps),
 *     d H / d theta ~ -(1/eps) K((pre - theta)/eps),
 *   no pseudo-gradient to pre (the paper's and SAELens' choice).
 * gated (Rajamanoharan et al. 2024, "Improving dictionary learning with
 * gated SAEs"), b_enc is b_gate, xp = r_mag (F), b_mag (F):
 *   z = xc W_enc, pi_gate = z + b_gate, pi_mag = exp(r_mag) z + b_mag,
 *   f = 1{pi_gate > 0} relu(pi_mag),
 *   loss = recon + l1 s / n sum_ij relu(pi_gate)_ij ||W_dec_j||
 *          + 1/n sum_i ||relu(pi_gate_i) W_dec* + b_dec* - x_i||^2,
 *   * a frozen copy (no gradient to the decoder through that term); no
 *   gradient through the Heaviside gate.
 * Both run dense (BLAS products over all F latents) like relu's dense step;
 * the bytes depend on the BLAS thread count only. */
#ifndef SP_SAE_ARCH_H
#define SP_SAE_ARCH_H

#include "sae_train.h"

/* per-latent vectors after b_dec in the parameter block: jumprelu 1, gated 2 */
size_t sae_arch_extra(SAEArch a);
/* the step runs in sae_arch.c (jumprelu, gated) */
int sae_arch_own_step(SAEArch a);
/* bytes sae_arch_alloc takes */
uint64_t sae_arch_bytes(const SAETrainConfig *c);
/* the arch's scratch in t (after sae_trainer_init's own); 0 or -1 */
int sae_arch_alloc(SAETrainer *t, char *err, size_t errlen);
void sae_arch_free(SAETrainer *t);
/* the arch's vectors at their start (jumprelu theta0 s, gated r_mag = b_mag
 * = 0) and t->scale from the n sample rows x */
void sae_arch_init_params(SAETrainer *t, const float *x, size_t n);
/* relu with a free decoder (c.dec_free): t->dn[j] = ||W_dec_j|| for the
 * step's penalty; and the weights in param turned into the same map with
 * unit decoder rows (W_enc_j, b_enc_j times the norm, W_dec_j divided by it:
 * f_j ||W_dec_j|| is the latent the penalty saw), as the SAE is written */
void sae_arch_dec_norms(SAETrainer *t);
void sae_arch_fold_norms(const SAETrainer *t, float *param);

void sae_arch_forward(SAETrainer *t, const float *x, size_t n, double l1, int eval, SAEStats *st, uint64_t *fired);
void sae_arch_backward(SAETrainer *t);

/* batchtopk, matryoshka: move the inference threshold t->theta towards the
 * batch's smallest selected activation thr (or, thr <= 0, the smallest
 * positive of the m relu'd entries in t->g) */
void sae_arch_update_theta(SAETrainer *t, float thr, size_t m);
/* (sae_train.c) e becomes dx_hat = 2/n e, t->acc its sum over rows */
void sae_trainer_dxhat(SAETrainer *t, size_t n);
/* matryoshka: the inner levels' squared error (summed over rows, not
 * divided by n) of the forward's active set; their errors stay in t->lev */
double sae_arch_levels_forward(SAETrainer *t, const float *x, size_t n);
/* after e became dx_hat = 2/n e: t->lev becomes the suffix sums, the dx_hat
 * a latent of level g sees, and t->acc gains their share of b_dec's gradient */
void sae_arch_levels_dxhat(SAETrainer *t, size_t n);
/* the dx_hat row of row i that latent j sees */
static inline const float *sae_arch_dx(const SAETrainer *t, size_t i, size_t j)
{
    size_t G = t->c.ngroups, D = t->c.D;
    if (!t->lev || (size_t)t->grp[j] + 1 >= G) return t->e + i * D;
    return t->lev + (i * (G - 1) + t->grp[j]) * D;
}

/* SAE tensors from the block's vectors (threshold, r_mag, b_mag of s->p
 * pointing into buf, F floats each), and back */
void sae_arch_to_sae(const SAETrainer *t, const float *param, float *buf, SAEParams *p);
void sae_arch_from_sae(SAETrainer *t, const SAEParams *p);

#endif
