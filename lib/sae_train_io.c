/* sae_train_io.c: a trainer's parameters and state to and from files: the
 * SAE it writes (its transposed encoder turned back as written; sharded,
 * every rank's latents gathered), an imported SAE, and the tensors and
 * metadata of a checkpoint. */
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "parfor.h"
#include "sae_arch.h"
#include "sae_train.h"
#include "sae_train_int.h"

/* W_enc rows r0..r0+n-1 (n,F) from its transpose W_encT (F,D), on every
 * thread: each takes a range of columns and writes them 16 at a time, so a
 * row of the output gets 64 contiguous bytes at a time (not aligned to a
 * cache line, and the threads' ranges may share one at their edges) while
 * 16 rows of W_encT stream in; one column at a time was strided writes. */
typedef struct { const float *Wt; size_t D, F; } Transposed;
typedef struct { const Transposed *t; uint64_t r0, n; float *out; } TransposeJob;

static void pass_transpose(void *a, size_t lo, size_t hi)
{
    const TransposeJob *job = a;
    size_t D = job->t->D, F = job->t->F;
    for (size_t j0 = lo; j0 < hi; j0 += 16) {
        size_t j1 = j0 + 16 < hi ? j0 + 16 : hi;
        for (uint64_t r = 0; r < job->n; r++)
            for (size_t j = j0; j < j1; j++) job->out[r * F + j] = job->t->Wt[j * D + job->r0 + r];
    }
}

static void fill_from_transposed(const void *ctx, uint64_t r0, uint64_t n, void *dst)
{
    const Transposed *t = ctx;
    TransposeJob job = {t, r0, n, dst};
    sp_parfor(t->F, 16, pass_transpose, &job);
}

int sae_trainer_write(const SAETrainer *t, const float *param, SAE *s, TszWriter *w, const json_t *extra_meta,
                      char *err, size_t errlen)
{
    size_t D = t->c.D, F = f_all(&t->c);
    int running = sae_arch_has_threshold(t->c.arch) && t->c.arch != SAE_JUMPRELU; /* theta */
    float *threshold = running || sae_arch_extra(t->c.arch) ? xmalloc(2 * F * sizeof *threshold) : NULL;
    s->arch = t->c.arch, s->D = D, s->F = F;
    s->K = kmax(&t->c);
    s->ngroups = t->c.ngroups;
    memcpy(s->groups, t->c.groups, sizeof s->groups);
    s->mem = NULL;
    s->p = (SAEParams){.W_enc = NULL, .b_enc = (float *)param + t->c.F * D};
    s->p.W_dec = s->p.b_enc + t->c.F;
    s->p.b_dec = s->p.W_dec + t->c.F * D;
    if (running) {
        for (size_t j = 0; j < F; j++) threshold[j] = (float)t->theta;
        s->p.threshold = threshold;
    }
    sae_arch_to_sae(t, param, threshold, &s->p);
    /* no copy: W_enc's rows are made from param's transpose as they are written */
    TszBig big[SAE_SLOTS];
    Transposed tr = {param, D, F};
    size_t n = sae_big(s, big);
    big[0].data = NULL, big[0].fill = fill_from_transposed, big[0].ctx = &tr;
    /* sharded: W_enc, b_enc and W_dec gathered from every rank as written */
    SpShard sh[3];
    int rc = 0;
    if (t->c.comm) {
        SpComm *c = t->c.comm;
        sh[0] = (SpShard){c, F, 4, F, 1, 1, 0, {{D, 0, (float *)param}}};
        for (int i = 1; i < 3; i++) {
            sh[i] = (SpShard){c, F, 4, big[i].ndim == 2 ? D : 1, 1, 0, i, {{i == 1 ? 1 : D, 0, big[i].data}}};
            big[i].data = NULL, big[i].fill = sp_shard_fill, big[i].ctx = &sh[i];
        }
        big[0].fill = sp_shard_fill, big[0].ctx = &sh[0];
        if (c->rank) sp_shard_serve(c, sh, 3);
    }
    if (!t->c.comm || !t->c.comm->rank) rc = sae_write_big(w, s, big, n, extra_meta, err, errlen);
    if (t->c.comm && !t->c.comm->rank) sp_shard_done(t->c.comm);
    free(threshold);
    s->p = (SAEParams){0};
    return rc;
}

void sae_trainer_import(SAETrainer *t, const SAE *s)
{
    size_t D = t->c.D, F = t->c.F;
    for (size_t j = 0; j < F; j++)
        for (size_t d = 0; d < D; d++) t->Wt[j * D + d] = s->p.W_enc[d * F + j];
    memcpy(t->b_enc, s->p.b_enc, F * sizeof(float));
    memcpy(t->Wd, s->p.W_dec, F * D * sizeof(float));
    memcpy(t->b_dec, s->p.b_dec, D * sizeof(float));
    if (s->p.threshold) t->theta = s->p.threshold[0];
    sae_arch_from_sae(t, &s->p);
}

size_t sae_trainer_state(SAETrainer *t, TszBig *tab)
{
    uint64_t P = t->P, F = t->c.F;
    TszDtype mdt = t->m ? TSZ_F32 : TSZ_BF16;
    tab[0] = (TszBig){.name = "param", .dtype = TSZ_F32, .ndim = 1, .shape = {P}, .data = t->param};
    tab[1] = (TszBig){.name = "adam_m", .dtype = mdt, .ndim = 1, .shape = {P}, .data = t->m ? (void *)t->m : t->m16};
    tab[2] = (TszBig){.name = "adam_v", .dtype = mdt, .ndim = 1, .shape = {P}, .data = t->m ? (void *)t->v : t->v16};
    tab[3] = (TszBig){.name = "since_fired", .dtype = TSZ_I64, .ndim = 1, .shape = {F}, .data = t->since_fired};
    if (!t->ds) return 4;
    /* the rescaled free decoder's norms s_j: the block holds the effective rows */
    tab[4] = (TszBig){.name = "dec_scale", .dtype = TSZ_F32, .ndim = 1, .shape = {F}, .data = t->ds};
    return 5;
}

void sae_trainer_meta(const SAETrainer *t, json_t *meta)
{
    json_object_set_new(meta, "step", json_integer((json_int_t)t->step));
    json_object_set_new(meta, "theta", json_real(t->theta));
    if (sae_arch_own_step(t->c.arch)) json_object_set_new(meta, "scale", json_real(t->scale));
}

int sae_trainer_from_meta(SAETrainer *t, const json_t *meta, char *err, size_t errlen)
{
    json_t *s = json_object_get(meta, "step"), *th = json_object_get(meta, "theta");
    if (!json_is_integer(s) || !json_is_number(th)) return sp_fail(err, errlen, "checkpoint has no step/theta");
    t->step = (uint64_t)json_integer_value(s);
    t->theta = json_number_value(th);
    th = json_object_get(meta, "scale"); /* absent before jumprelu and gated */
    t->scale = json_is_number(th) && json_number_value(th) > 0 ? json_number_value(th) : 1.0;
    return 0;
}
