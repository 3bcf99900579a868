/* sae_adam.c: the trainer's Adam (sae_train.h), one latent at a time: its
 * encoder row and bias, its decoder row with the gradient's component along
 * the row removed first and unit norm restored after (not for relu's free
 * decoder; the topk family's rescaled free decoder steps its raw rows), the
 * arch's vectors;
 * then b_dec. sae_trainer_update takes the gradient from t->grad;
 * sae_trainer_step (sae_train.c) hands each latent's rows over from cache.
 * The moments are f32 or bf16 (--state-dtype). */
#include <math.h>

#include "parfor.h"
#include "sae_arch.h"
#include "sae_train.h"
#include "sae_train_int.h"

/* m, v of element i as float, and back */
static inline float ld16(const uint16_t *p, size_t i) { return bf16_to_f32(p[i]); }

void sae_adam_begin(SAETrainer *t, double lr, SAEAdam *s)
{
    t->step++;
    double b1 = t->c.beta1, b2 = t->c.beta2;
    double bc1 = 1 - pow(b1, (double)t->step), bc2 = 1 - pow(b2, (double)t->step);
    *s = (SAEAdam){t, (float)(lr / bc1), (float)(lr / bc1), (float)(1.0 / sqrt(bc2)), (float)t->c.eps,
                   (float)b1, (float)b2, (float)(1 - b1), (float)(1 - b2)};
    /* jumprelu's log threshold may learn faster (--threshold-lr): it moves
     * about lr per step, too slow for a short run to reach its L0 */
    if (t->c.arch == SAE_JUMPRELU && t->c.theta_lr > 0) s->ax = (float)(s->a * t->c.theta_lr);
}

/* Adam on the n parameters from off in the block, step size a, gradient g (n) */
SAE_VEC static void adam_vec(const SAEAdam *s, float a, size_t off, const float *restrict g, size_t n)
{
    SAETrainer *t = s->t;
    float *restrict p = t->param + off;
    float ib2 = s->ib2, eps = s->eps, fb1 = s->b1, fb2 = s->b2, c1 = s->c1, c2 = s->c2;
    if (t->m) {
        float *restrict m = t->m + off, *restrict v = t->v + off;
        for (size_t i = 0; i < n; i++) {
            float mi = fb1 * m[i] + c1 * g[i], vi = fb2 * v[i] + c2 * g[i] * g[i];
            m[i] = mi, v[i] = vi;
            p[i] -= a * mi / (sqrtf(vi) * ib2 + eps);
        }
    } else {
        uint16_t *restrict m = t->m16 + off, *restrict v = t->v16 + off;
        for (size_t i = 0; i < n; i++) {
            float mi = fb1 * ld16(m, i) + c1 * g[i], vi = fb2 * ld16(v, i) + c2 * g[i] * g[i];
            m[i] = f32_to_bf16(mi), v[i] = f32_to_bf16(vi);
            p[i] -= a * mi / (sqrtf(vi) * ib2 + eps);
        }
    }
}

/* The rescaled free decoder (c.dec_rescale): the block holds latent j's
 * effective rows, unit u_j, E_j = s_j W_j, b'_j = s_j b_j, of the raw rows
 * W_j (encoder), b_j, V_j = s_j u_j (decoder, s_j = ||V_j||), whose map
 * SAELens' rescale_acts_by_decoder_norm computes: pre = s_j (x W_j + b_j),
 * x_hat = sum f_j V_j / s_j. rescale_in turns the effective rows and their
 * gradients (gt, gb, gd) into the raw ones, by the chain rule through
 * s_j = ||V_j||: dL/dW_j = s_j gt, dL/db_j = s_j gb, dL/dV_j = (gd - (gd.u_j)
 * u_j)/s_j + u_j dL/ds_j with dL/ds_j = (gt.E_j + gb b'_j)/s_j; rescale_out
 * takes the raw rows back after Adam's step (s_j the new norm). */
static void rescale_in(SAETrainer *t, size_t j, float *gt, float *gb, float *gd)
{
    size_t D = t->c.D;
    float s = t->ds[j], *u = t->Wd + j * D, *e = t->Wt + j * D;
    float ds = (sae_dotf(gt, e, D) + *gb * t->b_enc[j]) / s;
    sae_axpyf(gd, -sae_dotf(u, gd, D), u, D);
    for (size_t d = 0; d < D; d++) gd[d] = gd[d] / s + ds * u[d], gt[d] *= s, e[d] /= s, u[d] *= s;
    *gb *= s;
    t->b_enc[j] /= s;
}

static void rescale_out(SAETrainer *t, size_t j)
{
    size_t D = t->c.D;
    float *v = t->Wd + j * D, *w = t->Wt + j * D, s = sqrtf(sae_dotf(v, v, D));
    if (!(s > 0)) s = 1e-8f; /* as SAELens' clamp: never met in practice */
    for (size_t d = 0; d < D; d++) v[d] /= s, w[d] *= s;
    t->b_enc[j] *= s;
    t->ds[j] = s;
}

void sae_adam_latent(const SAEAdam *s, size_t j, float *gt, float gb, float *gd)
{
    SAETrainer *t = s->t;
    size_t D = t->c.D, F = t->c.F, FD = F * D, X = 2 * FD + F + D, E = sae_arch_extra(t->c.arch);
    float *w = t->Wd + j * D;
    int unit = !t->c.dec_free && !t->ds; /* relu --decoder free: SAELens' standard SAE leaves the rows be */
    if (t->ds) rescale_in(t, j, gt, &gb, gd);
    if (unit) sae_axpyf(gd, -sae_dotf(w, gd, D), w, D);
    adam_vec(s, s->a, j * D, gt, D);
    adam_vec(s, s->a, FD + j, &gb, 1);
    adam_vec(s, s->a, FD + F + j * D, gd, D);
    for (size_t x = 0; x < E; x++) adam_vec(s, s->ax, X + x * F + j, t->gxp + x * F + j, 1);
    if (unit) sae_normalize_row(w, D);
    if (t->ds) rescale_out(t, j);
}

void sae_adam_bdec(const SAEAdam *s)
{
    SAETrainer *t = s->t;
    adam_vec(s, s->a, 2 * t->c.F * t->c.D + t->c.F, t->gb_dec, t->c.D);
}

static void pass_adam(void *arg, size_t lo, size_t hi)
{
    const SAEAdam *s = arg;
    SAETrainer *t = s->t;
    size_t D = t->c.D;
    for (size_t j = lo; j < hi; j++) sae_adam_latent(s, j, t->gWt + j * D, t->gb_enc[j], t->gWd + j * D);
}

void sae_trainer_update(SAETrainer *t, double lr)
{
    SAEAdam s;
    sae_adam_begin(t, lr, &s);
    sp_parfor(t->c.F, 64, pass_adam, &s);
    sae_adam_bdec(&s);
}
