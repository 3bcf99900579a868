/* sae_fit.c: a training run of sae-fit (sae_fit.h). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kinds.h"
#include "sae_arch.h"
#include "sae_fit.h"

void sae_fit_opts_default(SAEFitOpts *o)
{
    static const char *const stdin_only[] = {"-"};
    *o = (SAEFitOpts){.inputs = stdin_only, .ninputs = 1, .output = "-", .dict_mult = 32, .arch = SAE_TOPK, .K = 32,
                      .aux_k = 512, .dead_rows = 1000000, .resample_every = 25000, .warmup = 1000, .batch = 4096, .epochs = 1,
                      .val_rows = 65536, .eval_every = 1000, .ck_every = 1000, .log_every = 100, .l1 = 5,
                      .aux_coef = 1.0 / 32, .lr = 4e-4, .decay_frac = 0.2, .beta1 = 0.9, .beta2 = 0.999,
                      .eps = 1e-8, .bdec = SAE_BDEC_MEDIAN, .bandwidth = 0.05, .theta0 = 0.1, .theta_lr = 1};
}

/* The sparsity coefficient's default by arch (the flag wins): relu's L1,
 * gated's L1 and jumprelu's L0 are on different scales (sae_arch.h). */
double sae_fit_l1_default(SAEArch a) { return a == SAE_GATED ? SAE_GATED_L1 : a == SAE_JUMPRELU ? SAE_JUMPRELU_L0 : 5; }

/* matryoshka prefixes: --groups (F appended when missing) or F/64, F/16, F/4, F,
 * those below k left out */
static int fit_groups(SAEFit *f, size_t F, SAETrainConfig *c)
{
    const SAEFitOpts *o = &f->o;
    size_t n = 0;
    if (o->ngroups) {
        for (size_t i = 0; i < o->ngroups; i++) {
            if (o->groups[i] > F) return SP_FAIL(f, "--groups: %" PRIu64 " is more than the %zu features", o->groups[i], F);
            if (o->groups[i] < o->K || (n && o->groups[i] <= c->groups[n - 1]))
                return SP_FAIL(f, "--groups must ascend from at least --k %" PRIu64, o->K);
            c->groups[n++] = (size_t)o->groups[i];
        }
    } else {
        for (size_t div = 64; div > 1; div /= 4)
            if (F / div >= o->K && F / div > (n ? c->groups[n - 1] : 0)) c->groups[n++] = F / div;
    }
    if (!n || c->groups[n - 1] != F) {
        if (n == SAE_MAX_GROUPS) return SP_FAIL(f, "--groups: at most %d sizes", SAE_MAX_GROUPS);
        c->groups[n++] = F;
    }
    c->ngroups = n;
    return 0;
}

/* The rank that reads and writes files (every rank of an unsharded run). */
static int root(const SAEFit *f) { return !f->comm || f->comm->rank == 0; }

double sae_fit_metric(const json_t *v, const char *key) { return json_number_value(json_object_get(v, key)); }

static uint64_t meta_u64(const json_t *m, const char *k)
{
    const json_t *v = json_object_get(m, k);
    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

/* ---- length, input, setup ---- */
int sae_fit_length(SAEFit *f)
{
    const SAEFitOpts *o = &f->o;
    // a file's rows are counted before training, so the schedule knows its
    // length; stdin is read once and its length is what --tokens says
    if (strcmp(o->inputs[0], "-") && rows_count(o->inputs, o->ninputs, &f->data_rows, f->err, sizeof f->err) < 0)
        return -1;
    f->total_rows = f->data_rows * o->epochs;
    if (o->tokens && (!f->total_rows || o->tokens < f->total_rows)) f->total_rows = o->tokens;
    if (f->o.sched == SAE_LR_AUTO) f->o.sched = f->total_rows ? SAE_LR_LINEAR : SAE_LR_CONSTANT;
    f->total_steps = f->total_rows ? (f->total_rows + o->batch - 1) / o->batch : 0;
    return 0;
}

int sae_fit_open(SAEFit *f)
{
    if (rows_open_list(&f->src, f->o.inputs, f->o.ninputs) < 0) return SP_FAIL(f, "%s", f->src.err);
    int got = rows_next(&f->src);
    if (got < 0) return SP_FAIL(f, "%s", f->src.err);
    if (!got) return SP_FAIL(f, "%s: no rows to train on (empty input)", f->src.name);
    return 0;
}

size_t sae_fit_features(const SAEFit *f)
{
    return f->o.dict_n ? (size_t)f->o.dict_n : f->src.D * (size_t)f->o.dict_mult;
}

/* Writing a record holds it about four times: its tensors, a shuffled
 * copy, the packed map and the compressed frame (lib/stream_write.c). The SAE is
 * written from the trainer's block without a copy, and large tensors go in
 * parts, so writing costs four of the largest record, SAE or checkpoint. */
static int check_memory(SAEFit *f, const SAETrainConfig *c)
{
    const SAEFitOpts *o = &f->o;
    uint64_t X = sae_arch_extra(c->arch) * (uint64_t)c->F;
    uint64_t P = 2 * (uint64_t)c->D * c->F + c->F + c->D + X, part, V = o->val ? o->val_rows : 0;
    if (tsz_part_bytes(&part, f->err, sizeof f->err) < 0) return -1;
    uint64_t th = sae_arch_has_threshold(c->arch) || X ? 8ull * c->F : 0; /* the written vectors */
    uint64_t sae[] = {4ull * c->D * c->F, 4ull * c->F, 4ull * c->D * c->F, 4ull * c->D, th};
    uint64_t ck[] = {4 * P, (c->state_bf16 ? 2 : 4) * P, (c->state_bf16 ? 2 : 4) * P, 8ull * c->F, 32,
                     o->val ? 4 * P : 0};
    uint64_t rec = tsz_parts_largest(sae, 5, part);
    if (o->ckdir && tsz_parts_largest(ck, 6, part) > rec) rec = tsz_parts_largest(ck, 6, part);
    /* relu --decoder free writes a folded copy of the weights (4P) */
    uint64_t need = sae_trainer_bytes(c) + (o->val ? 4 * P : 0) + (c->dec_free ? 4 * P : 0) +
                    4ull * c->D * (c->B + V) + th + 4 * rec;
    uint64_t have = o->max_memory ? o->max_memory : sp_mem_available();
    if (have && need > have)
        return SP_FAIL(f, "d=%zu f=%zu batch=%zu needs %.3g GB but %.3g GB is available%s; try a smaller --dict or "
                       "--batch%s", c->D, c->F, c->B, need / 1e9, have / 1e9,
                       o->max_memory ? " (--max-memory)" : " (MemAvailable)",
                       c->state_bf16 ? "" : ", or --state-dtype bf16");
    return 0;
}

int sae_fit_init(SAEFit *f)
{
    const SAEFitOpts *o = &f->o;
    size_t D = f->src.D, F = sae_fit_features(f), f0 = 0, f1 = F;
    if (f->comm && F < (size_t)f->comm->size)
        return SP_FAIL(f, "--dict %zu: fewer latents than the %d ranks", F, f->comm->size);
    if (f->comm && (sae_arch_own_step(o->arch) || o->arch == SAE_MATRYOSHKA))
        return SP_FAIL(f, "--arch %s does not run sharded across ranks yet: run it without mpirun",
                       sae_arch_name(o->arch));
    if (f->comm && o->dec_free) return SP_FAIL(f, "--decoder free does not run sharded across ranks yet: run it without mpirun");
    if (f->comm) sp_shard_range(F, f->comm->size, f->comm->rank, &f0, &f1);
    int k = sae_arch_has_k(o->arch);
    SAETrainConfig c = {.arch = o->arch, .D = D, .F = f1 - f0, .K = k ? o->K : 0, .B = o->batch,
                        .aux_k = k ? o->aux_k : 0, .aux_coef = o->aux_coef, .beta1 = o->beta1,
                        .beta2 = o->beta2, .eps = o->eps, .state_bf16 = o->state_bf16, .dead_rows = o->dead_rows,
                        .threshold_ema = 0.99, .comm = f->comm, .f0 = f0, .F_all = F, .bandwidth = o->bandwidth,
                        .theta0 = o->theta0, .theta_lr = o->theta_lr, .tanh_scale = o->tanh_scale,
                        .dec_free = o->arch == SAE_RELU && o->dec_free, .init_norm = o->init_norm,
                        .dec_rescale = k && o->dec_free, .aux_dyn = o->aux_dyn};
    if (o->arch == SAE_MATRYOSHKA && fit_groups(f, F, &c) < 0) return -1;
    if (check_memory(f, &c) < 0) return -1;
    if (o->ckdir && root(f) && mkdir(o->ckdir, 0777) < 0 && errno != EEXIST)
        return SP_FAIL(f, "%s: %s", o->ckdir, strerror(errno));
    if (sae_trainer_init(&f->t, &c, f->err, sizeof f->err) < 0) return -1;
    f->x = xmalloc_aligned(o->batch * D * sizeof *f->x);
    f->mean = xmalloc(D * sizeof *f->mean);
    f->fired = xcalloc(f->t.c.F, sizeof *f->fired);
    if (o->keep != SAE_KEEP_LAST) f->best = xmalloc_aligned(f->t.P * sizeof *f->best);
    sp_rng_seed(&f->rng, o->seed);
    return 0;
}

/* ---- batches ---- */
int sae_fit_batch(SAEFit *f, size_t *nout)
{
    RowReader *s = &f->src;
    size_t D = s->D, B = f->o.batch, n = 0;
    uint64_t limit = f->o.tokens;
    while (n < B && (!limit || f->rows_trained + n < limit)) {
        if (s->pos == s->nrows) {
            int got = rows_next(s);
            if (got < 0) return SP_FAIL(f, "%s", s->err);
            if (got) continue;
            if (f->epoch + 1 >= f->o.epochs) break;
            if (rows_rewind(s) < 0) return SP_FAIL(f, "%s", s->err);
            f->epoch++, f->pos_in_epoch = 0;
            continue;
        }
        const float *row = s->buf + s->pos * D;
        s->pos++, f->pos_in_epoch++;
        if (!rows_finite(row, D)) {
            f->nan_rows++;
            if (f->o.on_nan == SAE_NAN_STOP)
                return SP_FAIL(f, "%s: record %" PRIu64 " row %zu has a NaN or Inf (--on-nan stop)", s->name,
                               s->rec_no, s->pos - 1);
            continue;
        }
        memcpy(f->x + n * D, row, D * sizeof *row);
        n++;
    }
    *nout = n;
    return 0;
}

/* ---- schedules ---- */
double sae_fit_lr(const SAEFit *f, uint64_t step)
{
    const SAEFitOpts *o = &f->o;
    uint64_t total_steps = f->total_steps;
    double lr = o->lr;
    // the default warmup is 1000 steps, or 5% of a shorter run when its
    // length is known: a 100-step run should not spend itself warming up
    uint64_t warmup = o->warmup;
    if (!o->warmup_set && total_steps && warmup > total_steps / 20) warmup = total_steps / 20 ? total_steps / 20 : 1;
    if (warmup && step < warmup) lr *= (double)(step + 1) / (double)warmup;
    if (!total_steps) return lr;
    double p = (double)step / (double)total_steps;
    if (o->sched == SAE_LR_COSINE) lr *= 0.5 * (1 + cos(M_PI * fmin(p, 1)));
    if (o->sched == SAE_LR_LINEAR && p > 1 - o->decay_frac) lr *= fmax(0, (1 - p) / o->decay_frac);
    return lr;
}

double sae_fit_l1(const SAEFit *f, uint64_t step)
{
    if (!f->o.l1_warmup || step >= f->o.l1_warmup) return f->o.l1;
    return f->o.l1 * (double)(step + 1) / (double)f->o.l1_warmup;
}

/* ---- validation ---- */
/* sum ||x_i - mean||^2 over n rows of x (D), mean in f->mean */
static double sum_sq_dev(SAEFit *f, const float *x, size_t n)
{
    size_t D = f->src.D;
    double *mean = f->mean, var = 0;
    for (size_t d = 0; d < D; d++) mean[d] = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t d = 0; d < D; d++) mean[d] += x[i * D + d] / (double)n;
    for (size_t i = 0; i < n; i++)
        for (size_t d = 0; d < D; d++) var += (x[i * D + d] - mean[d]) * (x[i * D + d] - mean[d]);
    return var;
}

int sae_fit_load_val(SAEFit *f)
{
    RowReader s;
    size_t D = f->src.D, cap = 0;
    int got = rows_open(&s, f->o.val), rc = 0;
    while (!got && f->V < f->o.val_rows && (got = rows_next(&s)) > 0) {
        got = 0;
        if (s.D != D) {
            rc = SP_FAIL(f, "%s: rows are %zu wide but the training rows are %zu", s.name, s.D, D);
            break;
        }
        for (size_t i = 0; i < s.nrows && f->V < f->o.val_rows; i++) {
            const float *row = s.buf + i * D;
            if (!rows_finite(row, D)) continue;
            if (f->V == cap) f->val = xrealloc(f->val, (cap = cap ? 2 * cap : 1024) * D * sizeof *f->val);
            memcpy(f->val + f->V * D, row, D * sizeof *row);
            f->V++;
        }
    }
    if (got < 0) rc = SP_FAIL(f, "%s", s.err);
    else if (!rc && !f->V) rc = SP_FAIL(f, "%s: no validation rows", s.name);
    rows_close(&s);
    if (rc < 0) return -1;
    f->val_var = sum_sq_dev(f, f->val, f->V);
    return 0;
}

/* Metrics of the current weights on the validation rows (new object). */
static json_t *evaluate(SAEFit *f, double l1)
{
    size_t D = f->src.D, F = f->t.c.F, B = f->t.c.B;
    memset(f->fired, 0, F * sizeof *f->fired);
    double sq = 0, loss = 0, l0 = 0;
    for (size_t i = 0; i < f->V; i += B) {
        size_t n = f->V - i < B ? f->V - i : B;
        SAEStats st;
        sae_trainer_eval(&f->t, f->val + i * D, n, l1, &st, f->fired);
        sq += st.sq_err, loss += st.loss * n, l0 += st.l0 * n;
    }
    size_t dead = 0, dense = 0;
    for (size_t j = 0; j < F; j++) dead += f->fired[j] == 0, dense += f->fired[j] * 10 > f->V;
    if (f->comm) { /* every rank's latents */
        double v[2] = {(double)dead, (double)dense};
        f->comm->ops->sum_f64(f->comm, v, 2);
        dead = (size_t)v[0], dense = (size_t)v[1], F = sae_fit_features(f);
    }
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f}", "step", (json_int_t)f->t.step, "mse",
                     sq / ((double)f->V * D), "fvu", f->val_var > 0 ? sq / f->val_var : 0.0, "loss",
                     loss / (double)f->V, "l0", l0 / (double)f->V, "dead", (double)dead / F, "dense",
                     (double)dense / F);
}

/* ---- log ---- */
int sae_fit_log_open(SAEFit *f)
{
    const char *log = f->o.log;
    f->t_log = sp_now();
    f->rows_at_log = f->rows_trained;
    if (!log || !root(f)) return 0;
    size_t n = strlen(log);
    f->jsonl = n > 6 && !strcmp(log + n - 6, ".jsonl");
    /* a resumed run appends to the log of the run it continues */
    f->logf = fopen(log, f->o.resume ? "a" : "w");
    if (!f->logf) return SP_FAIL(f, "%s: %s", log, strerror(errno));
    if (!f->jsonl && (!f->o.resume || ftell(f->logf) == 0))
        fprintf(f->logf, "kind\tstep\ttokens\tloss\tmse\taux\tl0\tdead\tlr\ttokens_per_s\tfvu\n");
    return 0;
}

static int log_line(SAEFit *f, const char *kind, const SAEStats *st, double fvu, double dead, double lr)
{
    if (!f->logf) return 0;
    double now = sp_now(), dt = now - f->t_log;
    double tps = dt > 0 ? (double)(f->rows_trained - f->rows_at_log) / dt : 0;
    if (!strcmp(kind, "train")) f->t_log = now, f->rows_at_log = f->rows_trained;
    else tps = 0;
    double mse = st->recon / (double)f->src.D;
    int rc;
    if (f->jsonl)
        rc = fprintf(f->logf,
                     "{\"kind\":\"%s\",\"step\":%" PRIu64 ",\"tokens\":%" PRIu64 ",\"loss\":%.6g,\"mse\":%.6g,"
                     "\"aux\":%.6g,\"l0\":%.4g,\"dead\":%.4g,\"lr\":%.4g,\"tokens_per_s\":%.0f,\"fvu\":%.6g}\n",
                     kind, f->t.step, f->rows_trained, st->loss, mse, st->aux, st->l0, dead, lr, tps, fvu);
    else
        rc = fprintf(f->logf, "%s\t%" PRIu64 "\t%" PRIu64 "\t%.6g\t%.6g\t%.6g\t%.4g\t%.4g\t%.4g\t%.0f\t%.6g\n", kind,
                     f->t.step, f->rows_trained, st->loss, mse, st->aux, st->l0, dead, lr, tps, fvu);
    if (rc < 0 || fflush(f->logf)) return SP_FAIL(f, "%s: %s", f->o.log, strerror(errno));
    return 0;
}

int sae_fit_log_train(SAEFit *f, const SAEStats *st, size_t n, double lr)
{
    if (!f->o.log) return 0;
    double dead = (double)sae_trainer_dead(&f->t) / sae_fit_features(f); /* sharded: a collective */
    if (!f->logf) return 0;
    double var = sum_sq_dev(f, f->x, n);
    double fvu = var > 0 ? st->sq_err / var : 0;
    return log_line(f, "train", st, fvu, dead, lr);
}

int sae_fit_eval(SAEFit *f, double l1, double lr)
{
    json_t *v = evaluate(f, l1);
    double metric = sae_fit_metric(v, f->o.keep == SAE_KEEP_LOSS ? "loss" : "fvu");
    if (f->best && (!f->best_val || metric < f->best_metric)) {
        memcpy(f->best, f->t.param, f->t.P * sizeof *f->best);
        f->best_metric = metric, f->best_step = f->t.step, f->best_theta = f->t.theta;
        json_decref(f->best_val);
        f->best_val = json_deep_copy(v);
    }
    json_decref(f->last_val);
    f->last_val = v;
    SAEStats st = {.loss = sae_fit_metric(v, "loss"), .recon = sae_fit_metric(v, "mse") * f->src.D,
                   .l0 = sae_fit_metric(v, "l0")};
    st.aux = st.loss - st.recon; /* the L1 or AuxK term, as train lines show it */
    return log_line(f, "val", &st, sae_fit_metric(v, "fvu"), sae_fit_metric(v, "dead"), lr);
}

/* ---- checkpoints ----
 * One record of kind "sae_checkpoint" (tsz(5)): the trainer's state, the
 * RNG and the best weights as tensors; the run's position in meta. */
static void config_sig(const SAEFit *f, char *buf, size_t len)
{
    const SAEFitOpts *o = &f->o;
    snprintf(buf, len, "arch=%s f=%zu k=%zu batch=%" PRIu64 " state=%s seed=%" PRIu64 " lr=%g l1=%g",
             sae_arch_name(o->arch), sae_fit_features(f), f->t.c.K, o->batch, o->state_bf16 ? "bf16" : "f32", o->seed, o->lr,
             o->l1);
    /* the arch's own settings, so a resume with others is refused (the other archs' text is as before) */
    const SAETrainConfig *c = &f->t.c;
    size_t n = strlen(buf);
    if (o->arch == SAE_JUMPRELU && n < len)
        snprintf(buf + n, len - n, " bandwidth=%g theta0=%g tanh=%g", c->bandwidth, c->theta0, c->tanh_scale);
    /* (only when set: a checkpoint of a run at the default still resumes) */
    if (o->arch == SAE_JUMPRELU && c->theta_lr != 1 && (n = strlen(buf)) < len)
        snprintf(buf + n, len - n, " theta_lr=%g", c->theta_lr);
    if (c->dec_free && (n = strlen(buf)) < len) snprintf(buf + n, len - n, " decoder=free");
    if (c->aux_dyn && (n = strlen(buf)) < len) snprintf(buf + n, len - n, " aux_scale=dead");
    for (size_t g = 0; o->arch == SAE_MATRYOSHKA && g < c->ngroups && (n = strlen(buf)) < len; g++)
        snprintf(buf + n, len - n, "%s%zu", g ? "," : " groups=", c->groups[g]);
}

/* A checkpoint's tensors at most: the trainer's state (5), the RNG, the best weights */
#define SAE_CK_TENSORS 7

/* A checkpoint's tensors: the trainer's state, the RNG and the best weights;
 * sharded, all but the RNG (the same on every rank) spread through sh. */
static size_t ck_tensors(SAEFit *f, TszBig *tab, int best, SpShard *sh)
{
    size_t n = sae_trainer_state(&f->t, tab), rng = n;
    tab[n++] = (TszBig){.name = "rng", .dtype = TSZ_I64, .ndim = 1, .shape = {4}, .data = f->rng.s};
    if (best)
        tab[n++] = (TszBig){.name = "best_param", .dtype = TSZ_F32, .ndim = 1, .shape = {f->t.P}, .data = f->best};
    for (size_t i = 0; f->comm && i < n; i++)
        if (i != rng) sae_trainer_shard(&f->t, &tab[i], &sh[i], (int)i);
    return n;
}

/* The run's position and keep-best state: name, offset of a uint64_t in SAEFit. */
static const struct { const char *name; size_t off; } ck_counts[] = {
    {"epoch", offsetof(SAEFit, epoch)}, {"pos_in_epoch", offsetof(SAEFit, pos_in_epoch)},
    {"rows_trained", offsetof(SAEFit, rows_trained)}, {"nan_rows", offsetof(SAEFit, nan_rows)},
    {"best_step", offsetof(SAEFit, best_step)},
};
#define CK_COUNT(f, i) ((uint64_t *)((char *)(f) + ck_counts[i].off))

int sae_fit_save_checkpoint(SAEFit *f)
{
    TszBig tab[SAE_CK_TENSORS];
    SpShard sh[SAE_CK_TENSORS];
    size_t n = ck_tensors(f, tab, f->best != NULL, sh);
    if (!root(f)) { /* rank 0 writes, asking for the rows */
        sp_shard_serve(f->comm, sh, n);
        return 0;
    }
    char *path = sp_path_join(f->o.ckdir, "checkpoint.tsz"), sig[256];
    TszRecord rec;
    tsz_record_init(&rec);
    json_object_set_new(rec.meta, "kind", json_string(SP_KIND_SAE_CHECKPOINT));
    config_sig(f, sig, sizeof sig);
    json_object_set_new(rec.meta, "config", json_string(sig));
    json_object_set_new(rec.meta, "d", json_integer((json_int_t)f->src.D));
    for (size_t i = 0; i < sizeof ck_counts / sizeof *ck_counts; i++)
        json_object_set_new(rec.meta, ck_counts[i].name, json_integer((json_int_t)*CK_COUNT(f, i)));
    json_object_set_new(rec.meta, "best_metric", json_real(f->best_metric));
    json_object_set_new(rec.meta, "best_theta", json_real(f->best_theta));
    if (f->best_val) json_object_set(rec.meta, "best_val", f->best_val);
    if (f->last_val) json_object_set(rec.meta, "last_val", f->last_val);
    sae_trainer_meta(&f->t, rec.meta);
    TszWriteOpts wo;
    sae_write_opts(&wo);
    wo.shuffle = 0;
    TszWriter *w = tsz_writer_open(path, "sae-fit", f->argc, f->argv, &wo);
    int rc = tsz_writer_error(w) ? -1 : tsz_write_parts(w, &rec, tab, n, f->err, sizeof f->err);
    if (rc < 0 && tsz_writer_error(w)) SP_FAIL(f, "%s", tsz_writer_error(w));
    if (rc < 0) tsz_writer_abort(w);
    else rc = tsz_writer_close(w, f->err, sizeof f->err);
    if (f->comm) sp_shard_done(f->comm);
    tsz_record_free(&rec);
    free(path);
    return rc;
}

/* Check the checkpoint's record against this run and take its state. */
static int ck_meta(SAEFit *f, const json_t *m, uint64_t *pos);

/* Sharded, after rank 0 read the checkpoint (the others storing their
 * rows, sp_shard_serve): the RNG and the meta from rank 0 to every rank;
 * the others' meta in *m (new reference), rank 0's m passed in. */
static json_t *ck_share(SAEFit *f, const json_t *m)
{
    SpComm *c = f->comm;
    if (c->rank == 0) sp_shard_done(c);
    c->ops->bcast(c, f->rng.s, sizeof f->rng.s);
    char *s = c->rank == 0 ? json_dumps(m, JSON_COMPACT) : NULL;
    uint64_t len = s ? strlen(s) + 1 : 0;
    c->ops->bcast(c, &len, sizeof len);
    if (c->rank) s = xmalloc(len);
    c->ops->bcast(c, s, len);
    json_t *j = c->rank ? json_loads(s, 0, NULL) : NULL;
    free(s);
    return j;
}

static int ck_take(SAEFit *f, TszReader *r, const TszRecord *rec, const char *path, uint64_t *pos)
{
    const json_t *m = rec->meta;
    char sig[256];
    const char *kind = json_string_value(json_object_get(m, "kind"));
    if (!kind || strcmp(kind, SP_KIND_SAE_CHECKPOINT)) return SP_FAIL(f, "%s: not an sae-fit checkpoint", path);
    if (meta_u64(m, "d") != f->src.D)
        return SP_FAIL(f, "%s: rows are %zu wide but the checkpoint in %s was trained on width %" PRIu64,
                       f->src.name, f->src.D, f->o.ckdir, meta_u64(m, "d"));
    config_sig(f, sig, sizeof sig);
    const char *csig = json_string_value(json_object_get(m, "config"));
    if (!csig || strcmp(csig, sig))
        return SP_FAIL(f, "%s: checkpoint was written with '%s', this run has '%s'", path, csig ? csig : "?", sig);
    char err[512];
    if (sae_trainer_from_meta(&f->t, m, err, sizeof err) < 0) return SP_FAIL(f, "%s: %s", path, err);
    TszBig tab[SAE_CK_TENSORS];
    SpShard sh[SAE_CK_TENSORS];
    TszTensor ann;
    size_t n = ck_tensors(f, tab, f->best && tsz_parts_get(rec, "best_param", &ann), sh);
    if (tsz_read_tensors(r, rec, tab, n, f->err, sizeof f->err) < 0) return -1;
    if (f->comm) ck_share(f, m);
    return ck_meta(f, m, pos);
}

/* The run's position and keep-best state from a checkpoint's meta. */
static int ck_meta(SAEFit *f, const json_t *m, uint64_t *pos)
{
    for (size_t i = 0; i < sizeof ck_counts / sizeof *ck_counts; i++)
        *CK_COUNT(f, i) = meta_u64(m, ck_counts[i].name);
    f->best_metric = sae_fit_metric(m, "best_metric");
    f->best_theta = sae_fit_metric(m, "best_theta");
    if (json_object_get(m, "best_val")) f->best_val = json_deep_copy(json_object_get(m, "best_val"));
    if (json_object_get(m, "last_val")) f->last_val = json_deep_copy(json_object_get(m, "last_val"));
    *pos = f->pos_in_epoch;
    return 0;
}

/* Sharded, ranks but 0: their rows of rank 0's checkpoint, then its meta. */
static int ck_receive(SAEFit *f, uint64_t *pos)
{
    TszBig tab[SAE_CK_TENSORS];
    SpShard sh[SAE_CK_TENSORS];
    size_t n = ck_tensors(f, tab, f->best != NULL, sh);
    sp_shard_serve(f->comm, sh, n);
    json_t *m = ck_share(f, NULL);
    char err[512];
    int rc = m && sae_trainer_from_meta(&f->t, m, err, sizeof err) == 0 ? ck_meta(f, m, pos) : SP_FAIL(f, "checkpoint meta from rank 0 unreadable");
    json_decref(m);
    return rc;
}

static int resume_input(SAEFit *f, uint64_t pos);

int sae_fit_resume(SAEFit *f)
{
    char *path = sp_path_join(f->o.ckdir, "checkpoint.tsz");
    struct stat sb;
    int have = root(f) && stat(path, &sb) == 0;
    if (f->comm) f->comm->ops->bcast(f->comm, &have, sizeof have);
    if (!have) {
        free(path);
        return 0;
    }
    uint64_t pos = 0;
    if (!root(f)) {
        free(path);
        if (ck_receive(f, &pos) < 0) return -1;
        return resume_input(f, pos);
    }
    TszReader *r = tsz_reader_open(path);
    TszRecord rec;
    tsz_record_init(&rec);
    int rc = tsz_reader_error(r) ? -1 : tsz_read(r, &rec);
    if (rc < 0) SP_FAIL(f, "%s", tsz_reader_error(r));
    else if (rc == 0) rc = SP_FAIL(f, "%s: no checkpoint record", path);
    else rc = ck_take(f, r, &rec, path, &pos);
    tsz_record_free(&rec);
    tsz_reader_close(r);
    free(path);
    if (rc < 0) return -1;
    return resume_input(f, pos);
}

/* The input again from the start of the checkpoint's epoch, then skip what
 * was consumed. 1 or -1. */
static int resume_input(SAEFit *f, uint64_t pos)
{
    if (f->epoch && rows_rewind(&f->src) < 0) return SP_FAIL(f, "%s", f->src.err);
    f->src.pos = 0;
    f->pos_in_epoch = pos;
    if (rows_skip(&f->src, pos) < 0)
        return SP_FAIL(f, "%s (not the same input as the checkpoint's?)", f->src.err);
    return 1;
}

/* ---- the SAE ---- */
/* "model" from the stream: record meta, header, or an input's header */
static const char *find_model(const json_t *j, int depth)
{
    if (!j || depth > 8) return NULL;
    if (json_is_object(j)) {
        const char *m = json_string_value(json_object_get(j, "model"));
        if (m) return m;
        return find_model(json_object_get(j, "inputs"), depth + 1);
    }
    if (json_is_array(j))
        for (size_t i = 0; i < json_array_size(j); i++) {
            const char *m = find_model(json_array_get(j, i), depth + 1);
            if (m) return m;
        }
    return NULL;
}

int sae_fit_write(SAEFit *f, TszWriter *w)
{
    SAE s = {.l1 = sae_arch_has_k(f->o.arch) ? 0 : f->o.l1};
    if (!root(f)) /* rank 0 writes, gathering this rank's latents */
        return sae_trainer_write(&f->t, f->best ? f->best : f->t.param, &s, NULL, NULL, f->err, sizeof f->err);
    const json_t *m = f->src.meta;
    const json_t *ns = json_object_get(m, "norm_scale");
    s.norm_scale = json_is_number(ns) && json_number_value(ns) > 0 ? json_number_value(ns) : 1.0;
    const char *hook = json_string_value(json_object_get(m, "hook"));
    snprintf(s.hook, sizeof s.hook, "%s", hook ? hook : "");
    const char *model = find_model(m, 0);
    if (!model) model = find_model(f->src.header, 0);
    snprintf(s.model, sizeof s.model, "%s", model ? model : "");
    json_t *extra = json_pack("{s:I,s:I,s:I,s:I,s:s}", "tokens_seen", (json_int_t)f->rows_trained, "steps",
                              (json_int_t)f->t.step, "best_step", (json_int_t)(f->best ? f->best_step : f->t.step),
                              "nan_rows", (json_int_t)f->nan_rows, "keep", f->best ? "best" : "last");
    if (f->best_val) json_object_set(extra, "val", f->best_val);
    if (f->last_val) json_object_set(extra, "final_val", f->last_val);
    json_object_set_new(tsz_writer_header(w), "kind", json_string(SP_KIND_SAE));
    rows_add_inputs(&f->src, w); /* provenance: the rows' headers */
    /* the kept weights, with the batchtopk threshold they were kept with */
    double theta = f->t.theta;
    if (f->best) f->t.theta = f->best_theta;
    const float *param = f->best ? f->best : f->t.param;
    float *folded = NULL; /* relu, free decoder: written with unit decoder rows, the same map */
    if (f->t.c.dec_free) {
        folded = xmalloc_aligned(f->t.P * sizeof *folded);
        memcpy(folded, param, f->t.P * sizeof *folded);
        sae_arch_fold_norms(&f->t, folded);
        param = folded;
    }
    int rc = sae_trainer_write(&f->t, param, &s, w, extra, f->err, sizeof f->err);
    free(folded);
    f->t.theta = theta;
    json_decref(extra);
    return rc;
}

void sae_fit_end_training(SAEFit *f)
{
    sae_trainer_drop_state(&f->t);
    free(f->x), f->x = NULL;
}

int sae_fit_free(SAEFit *f)
{
    int rc = 0;
    if (f->logf && fclose(f->logf)) rc = SP_FAIL(f, "%s: %s", f->o.log, strerror(errno));
    f->logf = NULL;
    rows_close(&f->src);
    json_decref(f->best_val);
    json_decref(f->last_val);
    if (f->t.param) sae_trainer_free(&f->t);
    free(f->x), free(f->mean), free(f->val), free(f->fired), free(f->best);
    f->x = NULL, f->mean = NULL, f->val = NULL, f->fired = NULL, f->best = NULL;
    f->best_val = f->last_val = NULL;
    return rc;
}
