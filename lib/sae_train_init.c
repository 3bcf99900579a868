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

/* Random decoder rows: row j's values are normals from a generator of its
 * own, seeded by the run's key and j, so a row is the same on any thread,
 * rank or order of making; unit norm, the encoder's copy. */
typedef struct {
    SAETrainer *t;
    uint64_t key;
} InitRows;

static void pass_init_rows(void *a, size_t lo, size_t hi)
{
    InitRows *b = a;
    SAETrainer *t = b->t;
    size_t D = t->c.D;
    for (size_t j = lo; j < hi; j++) {
        uint64_t g = t->c.f0 + j; /* the global latent */
        float *w = t->Wd + j * D;
        SpRng rng;
        sp_rng_seed(&rng, b->key ^ (g * 0xd1342543de82ef95ull));
        sp_rng_normals(&rng, w, D);
        sae_normalize_row(w, D);
        memcpy(t->Wt + j * D, w, D * sizeof *w);
    }
}

void sae_trainer_init_params(SAETrainer *t, SpRng *rng, const float *x, size_t n, SAEBdecInit bdec)
{
    size_t D = t->c.D, F = t->c.F;
    /* one draw of the run's generator on every rank: a sharded run's ranks
     * make only their own rows, the rows an unsharded run has */
    InitRows b = {t, sp_rng_u64(rng)};
    sp_parfor(F, 1, pass_init_rows, &b);
    memset(t->b_enc, 0, F * sizeof(float));
    memset(t->b_dec, 0, D * sizeof(float));
    if (bdec != SAE_BDEC_ZERO && n > 0) bdec_init(t->b_dec, x, n, D, bdec == SAE_BDEC_MEDIAN);
    sae_arch_init_params(t, x, n);
}
