/* sae_train_init.c: a trainer's starting parameters (sae_train.h's
 * sae_trainer_init_params): random unit decoder rows with the encoder as
 * their transpose, b_dec the rows' mean or geometric median, the arch's
 * own. On every thread, with the bytes of one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parfor.h"
#include "sae_arch.h"
#include "sae_train.h"
#include "sae_train_int.h"
#include "util.h"

/* ---- initialisation on every thread, the bytes of one: each row or
 * column is computed whole by one thread, in the serial order ---- */
typedef struct {
    const float *x;
    size_t n, D;
    double *y, *num, *w; /* (D), (D), (n) */
} Median;

/* rows: w_i = 1 / max(|x_i - y|, 1e-8) */
static void pass_median_w(void *a, size_t lo, size_t hi)
{
    Median *m = a;
    size_t D = m->D;
    for (size_t i = lo; i < hi; i++) {
        double r = 0;
        for (size_t d = 0; d < D; d++) r += (m->x[i * D + d] - m->y[d]) * (m->x[i * D + d] - m->y[d]);
        m->w[i] = 1.0 / fmax(sqrt(r), 1e-8);
    }
}

/* columns: num_d = sum over rows ascending of w_i x_id, or (w NULL) of
 * x_id / n, the mean */
static void pass_median_num(void *a, size_t lo, size_t hi)
{
    Median *m = a;
    size_t D = m->D;
    for (size_t d = lo; d < hi; d++) m->num[d] = 0;
    for (size_t i = 0; i < m->n; i++)
        for (size_t d = lo; d < hi; d++)
            m->num[d] += m->w ? m->w[i] * m->x[i * D + d] : m->x[i * D + d] / (double)m->n;
}

/* b_dec from the n rows x: their mean, or from it Weiszfeld iterations for
 * the geometric median */
static void bdec_init(float *b_dec, const float *x, size_t n, size_t D, int median)
{
    double *y = xmalloc(2 * D * sizeof *y), *w = xmalloc(n * sizeof *w);
    Median m = {x, n, D, y + D, y, NULL};
    size_t cols = 16384 / n + 1; /* chunks worth a thread */
    sp_parfor(D, cols, pass_median_num, &m);
    m.y = y, m.num = y + D, m.w = w;
    for (int it = 0; median && it < 100; it++) {
        double den = 0, shift = 0;
        sp_parfor(n, 16384 / D + 1, pass_median_w, &m);
        for (size_t i = 0; i < n; i++) den += w[i];
        sp_parfor(D, cols, pass_median_num, &m);
        for (size_t d = 0; d < D; d++) {
            double nv = m.num[d] / den;
            shift += (nv - y[d]) * (nv - y[d]);
            y[d] = nv;
        }
        if (shift < 1e-12) break;
    }
    for (size_t d = 0; d < D; d++) b_dec[d] = (float)y[d];
    free(y), free(w);
}

/* Random decoder rows: sp_rng_normal's values, two draws each, drawn in
 * blocks of rows serially and turned into rows (Box-Muller's log and cos,
 * unit norm, the encoder's copy) in parallel. */
typedef struct {
    SAETrainer *t;
    const uint64_t *u; /* the draws of rows j0.. */
    size_t j0;         /* global latent */
} InitRows;

static void pass_init_rows(void *a, size_t lo, size_t hi)
{
    InitRows *b = a;
    SAETrainer *t = b->t;
    size_t D = t->c.D;
    for (size_t r = lo; r < hi; r++) {
        size_t j = b->j0 + r - t->c.f0;
        float *w = t->Wd + j * D;
        const uint64_t *u = b->u + r * 2 * D;
        for (size_t d = 0; d < D; d++) w[d] = (float)sp_normal_of(u[2 * d], u[2 * d + 1]);
        sae_normalize_row(w, D);
        memcpy(t->Wt + j * D, w, D * sizeof *w);
    }
}

void sae_trainer_init_params(SAETrainer *t, SpRng *rng, const float *x, size_t n, SAEBdecInit bdec)
{
    size_t D = t->c.D, F = t->c.F, f0 = t->c.f0, Fa = f_all(&t->c), R = 64;
    uint64_t *u = xmalloc(R * 2 * D * sizeof *u);
    /* sharded: every rank draws every latent's row, so each keeps the rows
     * an unsharded run has, and the RNG stays the same on all */
    for (size_t j0 = 0; j0 < Fa; j0 += R) {
        size_t m = Fa - j0 < R ? Fa - j0 : R;
        for (size_t q = 0; q < 2 * D * m; q++) u[q] = sp_rng_u64(rng);
        size_t lo = j0 > f0 ? j0 : f0, hi = j0 + m < f0 + F ? j0 + m : f0 + F; /* this rank's */
        if (lo >= hi) continue;
        InitRows b = {t, u + (lo - j0) * 2 * D, lo};
        sp_parfor(hi - lo, 1, pass_init_rows, &b);
    }
    free(u);
    memset(t->b_enc, 0, F * sizeof(float));
    memset(t->b_dec, 0, D * sizeof(float));
    if (bdec != SAE_BDEC_ZERO && n > 0) bdec_init(t->b_dec, x, n, D, bdec == SAE_BDEC_MEDIAN);
    sae_arch_init_params(t, x, n);
}
