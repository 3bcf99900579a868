/* sae_train_shard.c: the trainer's latent-sharded steps (sae_train.h,
 * SAETrainConfig.comm): each rank offers its best latents, all merge the
 * same, so the selection is the one an unsharded trainer makes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sae_train.h"
#include "sae_train_int.h"

/* This rank's K best of v (m values of the latents ids; NULL: 0..m-1) as
 * candidates with global ids, padded; tmp (K) scratch. */
static void offer(const SAETrainer *t, const float *v, size_t m, const uint32_t *ids, size_t K, SpCand *cand,
                  uint32_t *tmp)
{
    size_t Kl = K < m ? K : m;
    sae_topk_row(v, m, Kl, tmp);
    for (size_t k = 0; k < K; k++)
        cand[k] = k < Kl ? (SpCand){v[tmp[k]], (uint32_t)(t->c.f0 + (ids ? ids[tmp[k]] : tmp[k]))}
                         : (SpCand){-INFINITY, UINT32_MAX};
}

/* topk sharded: this rank's latents among each row's global K best */
void sae_shard_topk(SAETrainer *t, size_t n)
{
    size_t F = t->c.F, K = t->c.K, f0 = t->c.f0, nnz = 0;
    uint32_t *tmp = xmalloc(K * sizeof *tmp);
    for (size_t i = 0; i < n; i++) offer(t, t->pre + i * F, F, NULL, K, t->cand + i * K, tmp);
    free(tmp);
    sp_comm_topk(t->c.comm, t->cand, n, K);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < K; k++) {
            SpCand c = t->cand[i * K + k];
            if (c.j < f0 || c.j >= f0 + F) continue;
            t->idx[nnz] = c.j - (uint32_t)f0;
            t->val[nnz++] = c.v > 0 ? c.v : 0;
        }
        t->ptr[i + 1] = nnz;
    }
}

static int desc(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a < b) - (a > b);
}

/* batchtopk sharded: the batch's quota-th largest of every rank's a (m
 * values, reordered): each rank's quota best, largest first, merged over
 * the ranks as one row of candidates (ids 0: only the values count) */
float sae_shard_threshold(SAETrainer *t, float *a, size_t m, size_t quota)
{
    size_t mine = quota < m ? quota : m;
    if (mine < m) sae_kth_largest(a, m, mine - 1); /* leaves a's mine largest in front */
    qsort(a, mine, sizeof *a, desc);
    for (size_t i = 0; i < quota; i++) t->cand[i] = (SpCand){i < mine ? a[i] : -INFINITY, 0};
    sp_comm_topk(t->c.comm, t->cand, 1, quota);
    return t->cand[quota - 1].v;
}

/* batchtopk sharded: how many entries equal to thr each row of this rank
 * takes, of the eq_left the batch takes in row-major order of global ids */
void sae_shard_ties(SAETrainer *t, size_t n, float thr, size_t eq_left)
{
    SpComm *c = t->c.comm;
    size_t F = t->c.F, R = (size_t)c->size;
    uint32_t *eq = xmalloc(n * sizeof *eq), *all = xmalloc(R * n * sizeof *all);
    for (size_t i = 0; i < n; i++) {
        eq[i] = 0;
        for (size_t j = 0; j < F; j++) eq[i] += t->pre[i * F + j] == thr;
    }
    if (eq_left) c->ops->allgather(c, eq, n * sizeof *eq, all);
    for (size_t i = 0; i < n; i++) {
        size_t take = 0;
        for (size_t q = 0; eq_left && q < R; q++) {
            size_t k = all[q * n + i] < eq_left ? all[q * n + i] : eq_left;
            if (q == (size_t)c->rank) take = k;
            eq_left -= k;
        }
        t->rowq[i] = take;
    }
    free(eq), free(all);
}

/* AuxK sharded: each row's aux_a best dead latents over every rank (those
 * of other ranks kept with activation 0), the residuals summed over ranks */
double sae_shard_auxk(SAETrainer *t, size_t n, size_t nd)
{
    size_t D = t->c.D, F = t->c.F, A = t->aux_a, f0 = t->c.f0;
    uint32_t *tmp = xmalloc(A * sizeof *tmp);
    for (size_t i = 0; i < n; i++) {
        const float *pre = t->pre + i * F;
        for (size_t a = 0; a < nd; a++) t->abuf[a] = pre[t->dead[a]];
        offer(t, t->abuf, nd, t->dead, A, t->cand + i * A, tmp);
    }
    free(tmp);
    sp_comm_topk(t->c.comm, t->cand, n, A);
    for (size_t i = 0; i < n; i++) {
        for (size_t a = 0; a < A; a++) {
            SpCand c = t->cand[i * A + a];
            int mine = c.j >= f0 && c.j < f0 + F;
            t->aidx[i * A + a] = mine ? c.j - (uint32_t)f0 : 0;
            t->aval[i * A + a] = mine && c.v > 0 ? c.v : 0;
        }
    }
    for (size_t i = 0; i < n; i++) sae_auxk_residual(t, i, t->ar + i * D);
    t->c.comm->ops->sum_f32(t->c.comm, t->ar, n * D);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double s2 = 0;
        for (size_t d = 0; d < D; d++) s2 += (double)t->ar[i * D + d] * t->ar[i * D + d];
        sum += s2;
    }
    return t->aux_sc * sum / n;
}

void sae_trainer_shard(const SAETrainer *t, TszBig *b, SpShard *sh, int id)
{
    size_t D = t->c.D, F = t->c.F, Fa = t->c.F_all, es = tsz_dtype_size(b->dtype);
    char *p = b->data;
    if (b->shape[0] == t->P) { /* the parameter block: W_encT, b_enc, W_dec, b_dec */
        *sh = (SpShard){t->c.comm, Fa, es, 1, 4, 0, id,
                        {{D, 0, p}, {1, 0, p + F * D * es}, {D, 0, p + (F * D + F) * es}, {0, D, p + (2 * F * D + F) * es}}};
        b->shape[0] = 2 * D * Fa + Fa + D;
    } else { /* one value per latent */
        *sh = (SpShard){t->c.comm, Fa, es, 1, 1, 0, id, {{1, 0, p}}};
        b->shape[0] = Fa;
    }
    b->data = NULL, b->fill = sp_shard_fill, b->store = sp_shard_store, b->ctx = sh;
}

