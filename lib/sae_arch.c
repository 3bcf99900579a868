/* sae_arch.c: the jumprelu and gated training steps and matryoshka's
 * nested-prefix losses (formulas in sae_arch.h). Element passes run on
 * sp_parfor over rows, latents or columns; each reduction stays inside one
 * index (a row's sums, a latent's sum over rows ascending, a column's sum
 * over rows ascending), so the bytes do not depend on the thread count. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "parfor.h"
#include "sae_arch.h"
#include "sae_train_int.h"

size_t sae_arch_extra(SAEArch a) { return a == SAE_JUMPRELU ? 1 : a == SAE_GATED ? 2 : 0; }

int sae_arch_own_step(SAEArch a) { return a == SAE_JUMPRELU || a == SAE_GATED; }

static size_t levels(const SAETrainConfig *c) { return c->arch == SAE_MATRYOSHKA && c->ngroups > 1 ? c->ngroups - 1 : 0; }

uint64_t sae_arch_bytes(const SAETrainConfig *c)
{
    uint64_t B = c->B, D = c->D, F = c->F, b = 0;
    if (sae_arch_own_step(c->arch)) b += B * F * 4 + B * D * 4 + F * 4 + B * 8;
    if (levels(c)) b += B * levels(c) * D * 4 + F + B * 8;
    if (c->arch == SAE_RELU && c->dec_free) b += F * 8; /* t->dn */
    if (c->dec_rescale) b += F * 4; /* t->ds */
    return b;
}

int sae_arch_alloc(SAETrainer *t, char *err, size_t errlen)
{
    const SAETrainConfig *c = &t->c;
    size_t B = c->B, D = c->D, F = c->F, G = levels(c);
    if (sae_arch_own_step(c->arch)) {
        t->h = xmalloc_aligned(B * F * sizeof *t->h);
        t->e2 = xmalloc_aligned(B * D * sizeof *t->e2);
        t->th = xmalloc(F * sizeof *t->th);
        t->raux = xcalloc(B, sizeof *t->raux);
    }
    if (c->arch == SAE_MATRYOSHKA) {
        if (c->ngroups < 1 || c->ngroups > SAE_MAX_GROUPS || c->groups[c->ngroups - 1] != F)
            return sp_fail(err, errlen, "matryoshka groups must be ascending sizes ending in f=%zu", F);
        for (size_t g = 0; g < c->ngroups; g++)
            if (c->groups[g] < c->K || (g && c->groups[g] <= c->groups[g - 1]))
                return sp_fail(err, errlen, "matryoshka groups must ascend, the first at least k=%zu", c->K);
    }
    if (c->arch == SAE_RELU && c->dec_free) t->dn = xmalloc(2 * F * sizeof *t->dn);
    if (c->dec_rescale && !sae_arch_has_k(c->arch)) return sp_fail(err, errlen, "the rescaled free decoder is for topk, batchtopk and matryoshka");
    if (c->dec_rescale) t->ds = xmalloc(F * sizeof *t->ds);
    if (G) {
        t->lev = xmalloc_aligned(B * G * D * sizeof *t->lev);
        t->grp = xmalloc(F);
        t->raux = xcalloc(B, sizeof *t->raux);
        for (size_t j = 0, g = 0; j < F; j++) {
            while (j >= c->groups[g]) g++;
            t->grp[j] = (uint8_t)g;
        }
    }
    return 0;
}

void sae_arch_free(SAETrainer *t)
{
    free(t->h), free(t->e2), free(t->lev), free(t->th), free(t->raux), free(t->grp), free(t->dn), free(t->ds);
    t->h = t->e2 = t->lev = t->th = t->dn = t->ds = NULL, t->raux = NULL, t->grp = NULL;
}

void sae_arch_init_params(SAETrainer *t, const float *x, size_t n)
{
    size_t D = t->c.D, F = t->c.F;
    double ss = 0;
    for (size_t i = 0; i < n * D; i++) ss += (double)x[i] * x[i];
    t->scale = n && ss > 0 ? sqrt(ss / n) : 1.0;
    if (t->c.arch == SAE_JUMPRELU)
        for (size_t j = 0; j < F; j++) t->xp[j] = (float)log(t->c.theta0 * t->scale);
    if (t->c.arch == SAE_GATED) memset(t->xp, 0, 2 * F * sizeof *t->xp);
    /* relu's start at a small norm (SAELens' 0.1, Anthropic's April 2024
     * update): the decoder's only when it is free, the unit constraint would
     * undo it at the first step */
    float a = (float)t->c.init_norm;
    for (size_t j = 0; t->c.arch == SAE_RELU && a > 0 && j < F * D; j++) {
        t->Wt[j] *= a;
        if (t->c.dec_free) t->Wd[j] *= a;
    }
    /* the rescaled free decoder (SAELens' topk family): raw rows W_dec_j =
     * W_enc_j = a u_j (tied), so s_j = a and the effective encoder row s_j
     * W_enc_j = a^2 u_j; the block keeps u_j */
    float r = a > 0 ? a : 1;
    for (size_t j = 0; t->ds && j < F; j++) t->ds[j] = r;
    for (size_t j = 0; t->ds && j < F * D; j++) t->Wt[j] *= r * r;
}

void sae_arch_dec_norms(SAETrainer *t)
{
    size_t D = t->c.D;
    for (size_t j = 0; t->dn && j < t->c.F; j++) t->dn[j] = sqrtf(sae_dotf(t->Wd + j * D, t->Wd + j * D, D));
}

void sae_arch_fold_norms(const SAETrainer *t, float *param)
{
    size_t D = t->c.D, F = t->c.F;
    float *Wt = param, *b_enc = Wt + F * D, *Wd = b_enc + F;
    for (size_t j = 0; t->c.dec_free && j < F; j++) {
        float n = sqrtf(sae_dotf(Wd + j * D, Wd + j * D, D));
        if (!(n > 0)) continue;
        for (size_t d = 0; d < D; d++) Wt[j * D + d] *= n, Wd[j * D + d] /= n;
        b_enc[j] *= n;
    }
}

void sae_arch_to_sae(const SAETrainer *t, const float *param, float *buf, SAEParams *p)
{
    size_t D = t->c.D, F = t->c.F;
    const float *xp = param + 2 * F * D + F + D;
    if (t->c.arch == SAE_JUMPRELU) {
        for (size_t j = 0; j < F; j++) buf[j] = expf(xp[j]);
        p->threshold = buf;
    } else if (t->c.arch == SAE_GATED) {
        memcpy(buf, xp, 2 * F * sizeof *buf);
        p->r_mag = buf, p->b_mag = buf + F;
    }
}

void sae_arch_from_sae(SAETrainer *t, const SAEParams *p)
{
    size_t F = t->c.F;
    if (t->c.arch == SAE_JUMPRELU && p->threshold)
        for (size_t j = 0; j < F; j++) t->xp[j] = logf(p->threshold[j] > 0 ? p->threshold[j] : 1e-30f);
    if (t->c.arch == SAE_GATED && p->r_mag) {
        memcpy(t->xp, p->r_mag, F * sizeof *t->xp);
        memcpy(t->xp + F, p->b_mag, F * sizeof *t->xp);
    }
}

/* ---- the dense step ---- */
typedef struct {
    SAETrainer *t;
    const float *x;
    size_t n;
    float pen;      /* the penalty's coefficient per row: l1 s^2/n (jumprelu), l1 s/n (gated) */
    float sc;       /* 2/n */
} Pass;

/* xc = x - b_dec */
static void pass_center(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t D = t->c.D;
    for (size_t i = lo; i < hi; i++)
        for (size_t d = 0; d < D; d++) t->xc[i * D + d] = p->x[i * D + d] - t->b_dec[d];
}

/* tanh penalty of one activation (c: the scale over s), and its derivative */
static inline float tanh_pen(float f, float c) { return tanhf(c * f); }

/* per row: jumprelu pre += b_enc, f (in g) and the penalty (count or tanh sum);
 * gated f (in g) and relu(pi_gate) (in h) from z; ract the active count,
 * rl1 the penalty's sum */
static void pass_act(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t F = t->c.F;
    int gated = t->c.arch == SAE_GATED;
    float c = (float)(t->c.tanh_scale / t->scale), *bm = t->xp + F;
    for (size_t i = lo; i < hi; i++) {
        float *pre = t->pre + i * F, *f = t->g + i * F, *h = t->h + i * F;
        double pen = 0, cnt = 0;
        for (size_t j = 0; j < F; j++) {
            float v;
            if (gated) {
                float gate = pre[j] + t->b_enc[j], mag = t->th[j] * pre[j] + bm[j];
                v = gate > 0 && mag > 0 ? mag : 0;
                h[j] = gate > 0 ? gate : 0;
                pen += h[j];
            } else {
                pre[j] += t->b_enc[j];
                v = pre[j] > t->th[j] ? pre[j] : 0;
                pen += c > 0 ? tanh_pen(v, c) : v > 0;
            }
            f[j] = v;
            cnt += v > 0;
        }
        t->rl1[i] = pen, t->ract[i] = cnt;
    }
}

/* e = e + b_dec - x and its squared norm per row into sq (e2 too when gated) */
static void pass_err(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t D = t->c.D;
    for (size_t i = lo; i < hi; i++) {
        double s = 0, s2 = 0;
        for (size_t d = 0; d < D; d++) {
            float v = t->e[i * D + d] + t->b_dec[d] - p->x[i * D + d];
            t->e[i * D + d] = v;
            s += (double)v * v;
            if (t->c.arch != SAE_GATED) continue;
            v = t->e2[i * D + d] + t->b_dec[d] - p->x[i * D + d];
            t->e2[i * D + d] = v;
            s2 += (double)v * v;
        }
        t->rowloss[i] = (float)s;
        t->rsq[i] = s, t->raux[i] = s2;
    }
}

void sae_arch_forward(SAETrainer *t, const float *x, size_t n, double l1, int eval, SAEStats *st, uint64_t *fired)
{
    size_t D = t->c.D, F = t->c.F;
    int gated = t->c.arch == SAE_GATED;
    Pass ps = {.t = t, .x = x, .n = n};
    size_t rows = 16384 / D + 1; /* chunks worth a thread */
    for (size_t j = 0; j < F; j++) t->th[j] = expf(t->xp[j]); /* theta, or gated exp(r_mag) */
    sp_parfor(n, rows, pass_center, &ps);
    sp_gemm(CblasNoTrans, CblasTrans, n, F, D, 1.0f, t->xc, D, t->Wt, D, 0.0f, t->pre, F);
    sp_parfor(n, rows, pass_act, &ps);
    sp_gemm(CblasNoTrans, CblasNoTrans, n, D, F, 1.0f, t->g, F, t->Wd, D, 0.0f, t->e, D);
    if (gated) sp_gemm(CblasNoTrans, CblasNoTrans, n, D, F, 1.0f, t->h, F, t->Wd, D, 0.0f, t->e2, D);
    sp_parfor(n, rows, pass_err, &ps);
    double sq = 0, pen = 0, active = 0, aux = 0;
    for (size_t i = 0; i < n; i++) sq += t->rsq[i], pen += t->rl1[i], active += t->ract[i], aux += t->raux[i];
    if (fired)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < F; j++) fired[j] += t->g[i * F + j] > 0;
    double s = t->scale, coef = gated ? l1 * s : l1 * s * s;
    memset(st, 0, sizeof *st);
    st->n = n;
    st->sq_err = sq;
    st->recon = sq / n;
    st->l0 = active / n;
    st->aux = coef * pen / n + aux / n;
    st->loss = st->recon + st->aux;
    t->last_n = eval ? 0 : n;
    t->last_l1 = l1, t->last_sparse = 0;
}

/* jumprelu, over latents: g = dpre, b_enc's gradient, the log threshold's
 * (straight-through, sae_arch.h); df arrives in h */
static void pass_jump(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t F = t->c.F;
    float eps = (float)(t->c.bandwidth * t->scale), c = (float)(t->c.tanh_scale / t->scale);
    for (size_t j = lo; j < hi; j++) {
        float th = t->th[j];
        double gb = 0, gth = 0;
        for (size_t i = 0; i < p->n; i++) {
            float pre = t->pre[i * F + j], df = t->h[i * F + j], f = pre > th ? pre : 0;
            int on = f > 0, win = fabsf(pre - th) < 0.5f * eps;
            /* d penalty / d f: tanh: pen c (1 - tanh^2); step: none through f */
            float dpen = c > 0 ? p->pen * c * (1 - tanh_pen(f, c) * tanh_pen(f, c)) : 0;
            float dpre = on ? df + dpen : 0;
            t->g[i * F + j] = dpre;
            gb += dpre;
            if (win) gth -= c > 0 ? (th / eps) * (df + dpen) : (th / eps) * df + p->pen / eps;
            if (on) t->since_fired[j] = -1;
        }
        t->gb_enc[j] = (float)gb;
        t->gxp[j] = (float)(gth * th); /* d/d log theta */
    }
}

/* gated, over latents: g = dz from df (g) and d relu(pi_gate) (h); the
 * gradients of b_gate, r_mag, b_mag; abuf = sum of dz over rows (b_dec) */
static void pass_gate(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t F = t->c.F;
    const float *bm = t->xp + F;
    for (size_t j = lo; j < hi; j++) {
        float er = t->th[j];
        double gbg = 0, gbm = 0, grm = 0, sz = 0;
        for (size_t i = 0; i < p->n; i++) {
            float z = t->pre[i * F + j], gate = z + t->b_enc[j], mag = er * z + bm[j];
            float dmag = gate > 0 && mag > 0 ? t->g[i * F + j] : 0;
            float dgate = gate > 0 ? t->h[i * F + j] + p->pen : 0;
            float dz = dmag * er + dgate;
            t->g[i * F + j] = dz;
            gbg += dgate, gbm += dmag, grm += (double)dmag * er * z, sz += dz;
            if (gate > 0 && mag > 0) t->since_fired[j] = -1;
        }
        t->gb_enc[j] = (float)gbg;
        t->gxp[j] = (float)grm, t->gxp[F + j] = (float)gbm;
        t->abuf[j] = (float)sz;
    }
}

void sae_arch_backward(SAETrainer *t)
{
    size_t D = t->c.D, F = t->c.F, n = t->last_n;
    if (!n) return;
    int gated = t->c.arch == SAE_GATED;
    double s = t->scale;
    Pass ps = {.t = t, .n = n, .sc = (float)(2.0 / n), .pen = (float)((gated ? t->last_l1 * s : t->last_l1 * s * s) / n)};
    size_t cols = 256; /* chunks worth a thread */
    sae_trainer_dxhat(t, n);
    /* gW_dec = f^T dx_hat (the gated aux term reaches no decoder); df = dx_hat W_dec^T,
     * gated d relu(pi_gate) = 2/n e2 W_dec^T */
    sp_gemm(CblasTrans, CblasNoTrans, F, D, n, 1.0f, t->g, F, t->e, D, 0.0f, t->gWd, D);
    if (gated) {
        sp_gemm(CblasNoTrans, CblasTrans, n, F, D, 1.0f, t->e, D, t->Wd, D, 0.0f, t->g, F);
        sp_gemm(CblasNoTrans, CblasTrans, n, F, D, ps.sc, t->e2, D, t->Wd, D, 0.0f, t->h, F);
        sp_parfor(F, cols, pass_gate, &ps);
    } else {
        sp_gemm(CblasNoTrans, CblasTrans, n, F, D, 1.0f, t->e, D, t->Wd, D, 0.0f, t->h, F);
        sp_parfor(F, cols, pass_jump, &ps);
    }
    /* gW_encT = dpre^T xc; b_dec: the decoder's bias minus its share through xc */
    sp_gemm(CblasTrans, CblasNoTrans, F, D, n, 1.0f, t->g, F, t->xc, D, 0.0f, t->gWt, D);
    for (size_t d = 0; d < D; d++) t->gb_dec[d] = (float)t->acc[d];
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)F, (int)D, -1.0f, t->Wt, (int)D, gated ? t->abuf : t->gb_enc, 1,
                1.0f, t->gb_dec, 1);
    sae_backward_end(t, n);
}

/* ---- batchtopk and matryoshka ---- */
/* The inference threshold: a running mean of the smallest positive selected
 * activation, thr or (thr <= 0: every positive entry is selected) the
 * smallest positive one in the relu'd batch t->g (m entries). The weight of
 * the old value is step/(step+10), at most threshold_ema: the mean spans the
 * last tenth of the steps so far, at most 1/(1-threshold_ema) steps, so it
 * forgets the first steps' larger thresholds even in a short run. */
void sae_arch_update_theta(SAETrainer *t, float thr, size_t m)
{
    float tmin = thr;
    if (!(thr > 0) && t->c.comm) return; /* the smallest positive would differ by rank: keep theta */
    if (!(thr > 0)) {
        tmin = INFINITY;
        for (size_t i = 0; i < m; i++)
            if (t->g[i] > 0 && t->g[i] < tmin) tmin = t->g[i];
        if (tmin == INFINITY) return; /* nothing fired */
    }
    double w = (double)t->step / (double)(t->step + 10);
    if (w > t->c.threshold_ema) w = t->c.threshold_ema;
    t->theta = w * t->theta + (1 - w) * tmin;
}


/* per row: walk the active entries (latents ascending) and keep the error
 * of each inner level (the latents below groups[g]) in lev */
static void pass_levels(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t D = t->c.D, G = levels(&t->c);
    for (size_t i = lo; i < hi; i++) {
        float *lv = t->lev + i * G * D;
        for (size_t d = 0; d < D; d++) lv[d] = t->b_dec[d] - p->x[i * D + d];
        size_t g = 0;
        for (size_t q = t->ptr[i]; q < t->ptr[i + 1]; q++) {
            size_t j = t->idx[q];
            for (; g < G && j >= t->c.groups[g]; g++) /* level g is complete: the next starts from it */
                if (g + 1 < G) memcpy(lv + (g + 1) * D, lv + g * D, D * sizeof *lv);
            if (g == G) break;
            if (t->val[q] > 0) {
                float *w = lv + g * D, v = t->val[q];
                const float *dr = t->Wd + j * D;
                for (size_t d = 0; d < D; d++) w[d] += v * dr[d];
            }
        }
        for (; g + 1 < G; g++) memcpy(lv + (g + 1) * D, lv + g * D, D * sizeof *lv);
        double s = 0;
        for (size_t k = 0; k < G * D; k++) s += (double)lv[k] * lv[k];
        t->raux[i] = s;
    }
}

double sae_arch_levels_forward(SAETrainer *t, const float *x, size_t n)
{
    if (!levels(&t->c)) return 0;
    Pass ps = {.t = t, .x = x, .n = n};
    sp_parfor(n, 16384 / t->c.D + 1, pass_levels, &ps);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += t->raux[i];
    return s;
}

/* over columns: lev[g] = dx_hat of the full SAE + sc sum_{h >= g} lev[h] */
static void pass_suffix(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t D = t->c.D, G = levels(&t->c);
    for (size_t i = 0; i < p->n; i++)
        for (size_t d = lo; d < hi; d++) {
            float s = t->e[i * D + d];
            for (size_t g = G; g-- > 0;) {
                s += p->sc * t->lev[(i * G + g) * D + d];
                t->lev[(i * G + g) * D + d] = s;
            }
            t->acc[d] += s - t->e[i * D + d];
        }
}

void sae_arch_levels_dxhat(SAETrainer *t, size_t n)
{
    if (!levels(&t->c)) return;
    Pass ps = {.t = t, .n = n, .sc = (float)(2.0 / n)};
    sp_parfor(t->c.D, 256, pass_suffix, &ps);
}
