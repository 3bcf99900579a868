/* sae_resample.c: relu's dead-latent resampling (sae_train.h's
 * sae_trainer_resample): each dead latent's decoder row is a row of the
 * batch drawn by its loss, the encoder row that direction scaled to a fifth
 * of the live encoder rows' mean norm, and its Adam state starts again. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sae_train.h"
#include "sae_train_int.h"
#include "util.h"

static void zero_state(SAETrainer *t, size_t off, size_t cnt)
{
    if (t->m) {
        memset(t->m + off, 0, cnt * sizeof *t->m);
        memset(t->v + off, 0, cnt * sizeof *t->v);
    } else {
        memset(t->m16 + off, 0, cnt * sizeof *t->m16);
        memset(t->v16 + off, 0, cnt * sizeof *t->v16);
    }
}

size_t sae_trainer_resample(SAETrainer *t, const float *x, size_t n, SpRng *rng)
{
    size_t D = t->c.D, F = t->c.F, nd = 0;
    for (size_t j = 0; j < F; j++)
        if ((uint64_t)t->since_fired[j] >= t->c.dead_rows) t->dead[nd++] = (uint32_t)j;
    /* sharded: the dead latents of every rank in global order, this rank's
     * from `before` on; every rank draws for all of them (the same RNG) */
    size_t before = 0, nd_all = nd;
    if (t->c.comm) {
        SpComm *c = t->c.comm;
        uint64_t mine = nd, *all = xmalloc((size_t)c->size * sizeof *all);
        c->ops->allgather(c, &mine, sizeof mine, all);
        nd_all = 0;
        for (int q = 0; q < c->size; q++) before += q < c->rank ? all[q] : 0, nd_all += all[q];
        free(all);
    }
    if (!nd_all || !n) return 0;
    double tot = 0, alive_norm = 0;
    for (size_t i = 0; i < n; i++) tot += t->rowloss[i];
    size_t nalive = 0;
    for (size_t j = 0; j < F; j++) {
        if ((uint64_t)t->since_fired[j] >= t->c.dead_rows) continue;
        alive_norm += sqrt((double)sae_dotf(t->Wt + j * D, t->Wt + j * D, D));
        nalive++;
    }
    if (t->c.comm) {
        double sums[2] = {alive_norm, (double)nalive};
        t->c.comm->ops->sum_f64(t->c.comm, sums, 2);
        alive_norm = sums[0], nalive = (size_t)sums[1];
    }
    double enc_scale = 0.2 * (nalive ? alive_norm / nalive : 1.0);
    size_t FD = F * D;
    for (size_t g = 0; g < nd_all; g++) {
        size_t a = g - before, i = 0;
        /* row i with probability rowloss_i / tot */
        double u = sp_rng_uniform(rng) * tot, c = 0;
        if (tot > 0)
            for (i = 0; i + 1 < n; i++) {
                c += t->rowloss[i];
                if (u < c) break;
            }
        else
            i = sp_rng_below(rng, n);
        if (g < before || a >= nd) continue; /* another rank's */
        size_t j = t->dead[a];
        float *wd = t->Wd + j * D, *wt = t->Wt + j * D;
        for (size_t d = 0; d < D; d++) wd[d] = x[i * D + d] - t->b_dec[d];
        sae_normalize_row(wd, D);
        for (size_t d = 0; d < D; d++) wt[d] = (float)(wd[d] * enc_scale);
        t->b_enc[j] = 0;
        t->since_fired[j] = 0;
        zero_state(t, j * D, D);                 /* W_encT row */
        zero_state(t, FD + j, 1);                /* b_enc */
        zero_state(t, FD + F + j * D, D);        /* W_dec row */
    }
    return nd_all;
}
