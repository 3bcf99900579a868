/* recon.c: the standard SAE evaluation as mergeable sums (see recon.h). */
#include "kinds.h"
#include "parfor.h"
#include "recon.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- sums ---- */
void recon_sums_init(ReconSums *s, size_t D, size_t F)
{
    *s = (ReconSums){.D = D, .F = F};
    s->sum_x = xcalloc(D + 1, sizeof *s->sum_x);
    s->fires = xcalloc(F + 1, sizeof *s->fires);
}

void recon_sums_free(ReconSums *s)
{
    free(s->sum_x);
    free(s->fires);
    s->sum_x = NULL, s->fires = NULL;
}

int recon_sums_add(ReconSums *dst, const ReconSums *src, char *err, size_t errlen)
{
    if (dst->D != src->D || dst->F != src->F) {
        snprintf(err, errlen, "width d=%zu f=%zu does not match d=%zu f=%zu", src->D, src->F, dst->D, dst->F);
        return -1;
    }
    dst->tokens += src->tokens, dst->windows += src->windows;
    dst->n_pred += src->n_pred, dst->n_kl += src->n_kl, dst->n_rows += src->n_rows;
    for (int i = 0; i < RECON_NRUN; i++) dst->loss[i] += src->loss[i];
    dst->kl += src->kl, dst->sse += src->sse, dst->sum_sq += src->sum_sq, dst->l0 += src->l0;
    for (size_t i = 0; i < dst->D; i++) dst->sum_x[i] += src->sum_x[i];
    for (size_t i = 0; i < dst->F; i++) dst->fires[i] += src->fires[i];
    return 0;
}

static double ratio(double num, double den) { return den != 0 ? num / den : NAN; }

void recon_metrics(const ReconSums *s, ReconMetrics *m)
{
    double np = (double)s->n_pred, nr = (double)s->n_rows;
    double l[RECON_NRUN];
    for (int i = 0; i < RECON_NRUN; i++) l[i] = ratio(s->loss[i], np);
    m->clean_loss = l[RECON_CLEAN], m->recons_loss = l[RECON_RECONS];
    m->zero_abl_loss = l[RECON_ZERO], m->mean_abl_loss = l[RECON_MEAN];
    m->score = ratio(l[RECON_ZERO] - l[RECON_RECONS], l[RECON_ZERO] - l[RECON_CLEAN]);
    m->score_mean_abl = ratio(l[RECON_MEAN] - l[RECON_RECONS], l[RECON_MEAN] - l[RECON_CLEAN]);
    m->kl = ratio(s->kl, (double)s->n_kl);
    m->mse = ratio(s->sse, nr * (double)s->D);
    // total variance about the mean, from sums: sum ||x||^2 - ||sum x||^2 / n
    double sx2 = 0;
    for (size_t i = 0; i < s->D; i++) sx2 += s->sum_x[i] * s->sum_x[i];
    m->fvu = ratio(s->sse, s->sum_sq - ratio(sx2, nr));
    m->l0 = ratio(s->l0, nr);
    size_t dead = 0, dense = 0;
    for (size_t i = 0; i < s->F; i++) {
        dead += s->fires[i] == 0;
        dense += (double)s->fires[i] > RECON_DENSE_FRAC * nr;
    }
    m->dead_frac = ratio((double)dead, (double)s->F);
    m->dense_frac = ratio((double)dense, (double)s->F);
    m->tokens = s->tokens;
}

int recon_sums_mean(const ReconSums *s, float *mean)
{
    if (!s->n_rows) return -1;
    for (size_t i = 0; i < s->D; i++) mean[i] = (float)(s->sum_x[i] / (double)s->n_rows);
    return 0;
}

/* ---- records ---- */
/* JSON reals cannot be NaN or infinite: those are written as null. */

typedef struct { const char *key; size_t off; } ReconField;
#define SUM_FIELD(k, f) {k, offsetof(ReconSums, f)}
static const ReconField u64_fields[] = {
    SUM_FIELD("tokens", tokens), SUM_FIELD("windows", windows), SUM_FIELD("n_pred", n_pred),
    SUM_FIELD("n_kl", n_kl), SUM_FIELD("n_rows", n_rows),
};
static const ReconField dbl_fields[] = {
    SUM_FIELD("sum_clean_loss", loss[RECON_CLEAN]), SUM_FIELD("sum_recons_loss", loss[RECON_RECONS]),
    SUM_FIELD("sum_zero_abl_loss", loss[RECON_ZERO]), SUM_FIELD("sum_mean_abl_loss", loss[RECON_MEAN]),
    SUM_FIELD("sum_kl", kl), SUM_FIELD("sum_sq_err", sse), SUM_FIELD("sum_sq", sum_sq), SUM_FIELD("sum_l0", l0),
};
#define NELEM(a) (sizeof(a) / sizeof(a)[0])

json_t *recon_metrics_json(const ReconMetrics *m)
{
    const struct { const char *k; double v; } mt[] = {
        {"clean_loss", m->clean_loss}, {"recons_loss", m->recons_loss}, {"zero_abl_loss", m->zero_abl_loss},
        {"mean_abl_loss", m->mean_abl_loss}, {"score", m->score}, {"score_mean_abl", m->score_mean_abl},
        {"kl", m->kl}, {"mse", m->mse}, {"fvu", m->fvu}, {"l0", m->l0}, {"dead_frac", m->dead_frac},
        {"dense_frac", m->dense_frac},
    };
    json_t *o = json_object();
    for (size_t i = 0; i < NELEM(mt); i++) json_object_set_new(o, mt[i].k, sp_json_real_or_null(mt[i].v));
    json_object_set_new(o, "tokens", json_integer((json_int_t)m->tokens));
    return o;
}

void recon_sums_to_record(const ReconSums *s, const ReconMetrics *m, TszRecord *rec)
{
    json_t *meta = rec->meta;
    json_object_set_new(meta, "kind", json_string(s->F ? SP_KIND_RECON : SP_KIND_RECON_MEAN));
    if (s->F && m) {
        json_t *o = recon_metrics_json(m);
        json_object_update(meta, o);
        json_decref(o);
    }
    json_object_set_new(meta, "d", json_integer((json_int_t)s->D));
    json_object_set_new(meta, "f", json_integer((json_int_t)s->F));
    for (size_t i = 0; i < NELEM(u64_fields); i++)
        json_object_set_new(meta, u64_fields[i].key,
                            json_integer((json_int_t) * (const uint64_t *)((const char *)s + u64_fields[i].off)));
    for (size_t i = 0; i < NELEM(dbl_fields); i++)
        json_object_set_new(meta, dbl_fields[i].key, json_real(*(const double *)((const char *)s + dbl_fields[i].off)));
    json_t *sx = json_array();
    for (size_t i = 0; i < s->D; i++) json_array_append_new(sx, json_real(s->sum_x[i]));
    json_object_set_new(meta, "sum_x", sx);
    if (s->F) {
        uint64_t shape[1] = {s->F};
        tsz_record_add_copy(rec, "fires", TSZ_I64, 1, shape, s->fires);
    }
}

/* A non-negative integer meta value. */
static int meta_u64(const json_t *meta, const char *key, uint64_t *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(meta, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return sp_fail(err, errlen, "metadata \"%s\" is missing or not a non-negative integer", key);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int recon_sums_from_record(ReconSums *s, const TszRecord *rec, char *err, size_t errlen)
{
    const json_t *meta = rec->meta;
    if (sp_kind_check(rec, SP_K_RECON | SP_K_RECON_MEAN, err, errlen) < 0) return -1;
    SpKind kind = sp_kind_of(rec);
    uint64_t D, F;
    if (meta_u64(meta, "d", &D, err, errlen) || meta_u64(meta, "f", &F, err, errlen)) return -1;
    if (!D || D > (1u << 24) || F > (1u << 28)) return sp_fail(err, errlen, "implausible widths d=%llu f=%llu",
                                                           (unsigned long long)D, (unsigned long long)F);
    if ((kind == SP_K_RECON) != !!F) /* the mean-ablation sums have no latents */
        return sp_fail(err, errlen, "kind \"%s\" with f=%llu", sp_kind_name(kind), (unsigned long long)F);
    const json_t *sx = json_object_get(meta, "sum_x");
    if (!json_is_array(sx) || json_array_size(sx) != D)
        return sp_fail(err, errlen, "metadata \"sum_x\" is not an array of d=%llu numbers", (unsigned long long)D);
    const TszTensor *t = NULL;
    if (F) {
        t = tsz_record_get(rec, "fires");
        if (!t || t->dtype != TSZ_I64 || t->ndim != 1 || t->shape[0] != F)
            return sp_fail(err, errlen, "tensor `fires` is missing or not i64 (f=%llu)", (unsigned long long)F);
    }
    recon_sums_init(s, D, F);
    for (size_t i = 0; i < NELEM(u64_fields); i++)
        if (meta_u64(meta, u64_fields[i].key, (uint64_t *)((char *)s + u64_fields[i].off), err, errlen)) goto bad;
    for (size_t i = 0; i < NELEM(dbl_fields); i++) {
        const json_t *v = json_object_get(meta, dbl_fields[i].key);
        if (!json_is_number(v)) {
            sp_fail(err, errlen, "metadata \"%s\" is missing or not a number", dbl_fields[i].key);
            goto bad;
        }
        *(double *)((char *)s + dbl_fields[i].off) = json_number_value(v);
    }
    for (size_t i = 0; i < D; i++) {
        const json_t *v = json_array_get(sx, i);
        if (!json_is_number(v)) {
            sp_fail(err, errlen, "metadata \"sum_x\"[%zu] is not a number", i);
            goto bad;
        }
        s->sum_x[i] = json_number_value(v);
    }
    if (F) memcpy(s->fires, t->data, F * sizeof *s->fires);
    return 0;
bad:
    recon_sums_free(s);
    return -1;
}

/* ---- merging shards ---- */
uint64_t recon_fnv(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
    return h;
}

/* FNV-1a over every sum of a record */
static uint64_t sums_fingerprint(const ReconSums *s)
{
    const uint64_t n[] = {s->D, s->F, s->tokens, s->windows, s->n_pred, s->n_kl, s->n_rows};
    const double d[] = {s->loss[0], s->loss[1], s->loss[2], s->loss[3], s->kl, s->sse, s->sum_sq, s->l0};
    uint64_t h = recon_fnv(recon_fnv(RECON_FNV_INIT, n, sizeof n), d, sizeof d);
    h = recon_fnv(h, s->sum_x, s->D * sizeof *s->sum_x);
    return s->F ? recon_fnv(h, s->fires, s->F * sizeof *s->fires) : h;
}

void recon_merge_init(ReconMerge *m) { *m = (ReconMerge){.mean_exact = 1}; }

int recon_merge_add(ReconMerge *m, const TszRecord *rec, const char *in, uint64_t recno)
{
    ReconSums s;
    char err[256];
    if (recon_sums_from_record(&s, rec, err, sizeof err) < 0)
        return SP_FAIL(m, "%s: record %" PRIu64 ": %s", in, recno, err);
    const char *hook = json_string_value(json_object_get(rec->meta, "hook"));
    json_t *pos0 = json_object_get(rec->meta, "pos0"), *mh = json_object_get(rec->meta, "mean_hash");
    if (!m->extra) {
        recon_sums_init(&m->total, s.D, s.F);
        m->extra = json_pack("{s:s?, s:O?, s:O?, s:O?, s:O?}", "hook", hook, "pos0", pos0, "mean_hash", mh, "model",
                             json_object_get(rec->meta, "model"), "sae", json_object_get(rec->meta, "sae"));
    }
    const char *h0 = json_string_value(json_object_get(m->extra, "hook"));
    int rc = 0;
    uint64_t fp = sums_fingerprint(&s);
    if ((hook || h0) && (!hook || !h0 || strcmp(hook, h0)))
        rc = SP_FAIL(m, "%s: record %" PRIu64 ": hook %s, but the first record's is %s", in, recno,
                     hook ? hook : "(none)", h0 ? h0 : "(none)");
    else if (!json_equal(pos0, json_object_get(m->extra, "pos0")))
        rc = SP_FAIL(m, "%s: record %" PRIu64 ": pos0 differs from the first record's (--include-bos mixed)", in,
                     recno);
    for (size_t k = 0; !rc && k < m->nseen; k++)
        if (m->seen[k].fp == fp)
            rc = SP_FAIL(m, "%s: record %" PRIu64 ": the same sums as %s record %" PRIu64
                         ": the inputs overlap (a shard given twice?)", in, recno, m->seen[k].in, m->seen[k].recno);
    if (!rc && recon_sums_add(&m->total, &s, err, sizeof err) < 0)
        rc = SP_FAIL(m, "%s: record %" PRIu64 ": %s", in, recno, err);
    if (!rc) {
        if (mh && !json_equal(mh, json_object_get(m->extra, "mean_hash"))) m->mean_exact = 0;
        m->seen = xrealloc(m->seen, (m->nseen + 1) * sizeof *m->seen);
        m->seen[m->nseen++] = (ReconSeen){fp, recno, in};
    }
    recon_sums_free(&s);
    return rc;
}

void recon_merge_free(ReconMerge *m)
{
    recon_sums_free(&m->total);
    json_decref(m->extra);
    free(m->seen);
    recon_merge_init(m);
}

/* ---- the evaluation ---- */
int recon_patch(void *ctx, const char *hook, float *act, size_t B, size_t T, size_t D)
{
    const ReconPatch *p = ctx;
    for (size_t b = 0; b < B; b++) {
        for (size_t t = p->pos0; t < T; t++) {
            float *dst = act + (b * T + t) * D;
            if (p->rows) memcpy(dst, p->rows + (b * T + t) * D, D * sizeof *dst);
            else if (p->vec) memcpy(dst, p->vec, D * sizeof *dst);
            else memset(dst, 0, D * sizeof *dst);
        }
    }
    return 0;
}

/* log-sum-exp of row (b,t) from its loss: loss = lse - z[target]. */
static double row_lse(const float *z, const float *loss, const int32_t *tok, size_t b, size_t t, size_t T, size_t V)
{
    return (double)loss[b * (T - 1) + t] + z[(b * T + t) * V + (size_t)tok[b * T + t + 1]];
}

void recon_clean_logp(float *lp, const float *z, const float *loss, const int32_t *tok, size_t B, size_t T,
                      size_t V)
{
    for (size_t b = 0; b < B; b++) {
        for (size_t t = 0; t + 1 < T; t++) {
            float lse = (float)row_lse(z, loss, tok, b, t, T, V);
            const float *src = z + (b * T + t) * V;
            float *dst = lp + (b * T + t) * V;
            for (size_t v = 0; v < V; v++) dst[v] = src[v] - lse;
        }
    }
}

/* expf of a log-probability. Below -0x1.9fe368p6 (-103.97) glibc's expf
 * underflows to 0 through a slow path that sets errno (most of a row of
 * 50257 log-probabilities is down there: 2% of recon-score's time);
 * answering 0 first gives the same bytes. */
static inline float exp_lp(float x) { return x < -104.0f ? 0.0f : expf(x); }

double recon_kl_sum(const float *lp, const float *z, const float *loss, const int32_t *tok, size_t B, size_t T,
                    size_t V, size_t t0)
{
    double total = 0;
    for (size_t b = 0; b < B; b++) {
        for (size_t t = t0; t + 1 < T; t++) {
            const float *p = lp + (b * T + t) * V, *q = z + (b * T + t) * V;
            float lse = (float)row_lse(z, loss, tok, b, t, T, V);
            // KL(p||q) = sum p (log p - log q), log q = z - lse; sums of 16 in f32, of those in f64
            double kl = 0;
            size_t v = 0;
            for (; v + 16 <= V; v += 16) {
                float s = 0;
                for (size_t u = v; u < v + 16; u++) s += exp_lp(p[u]) * (p[u] - q[u] + lse);
                kl += s;
            }
            for (; v < V; v++) kl += exp_lp(p[v]) * (p[v] - q[v] + lse);
            total += kl;
        }
    }
    return total;
}

int recon_eval_init(ReconEval *e, GPT2 *g, const SAE *sae, GPT2Hook hook, size_t pos0)
{
    *e = (ReconEval){.g = g, .sae = sae, .hook = hook, .pos0 = pos0};
    e->D = gpt2_hook_dim(&g->cfg, hook);
    if (sae && sae->D != e->D) {
        char name[64];
        snprintf(e->err, sizeof e->err, "the SAE's width d=%zu does not match %s's width %zu", sae->D,
                 gpt2_hook_name(hook, name, sizeof name), e->D);
        return -1;
    }
    return 0;
}

void recon_eval_free(ReconEval *e)
{
    free(e->resid0), free(e->x), free(e->f), free(e->xhat), free(e->logp), free(e->loss);
    e->resid0 = e->x = e->f = e->xhat = e->logp = e->loss = NULL;
}

int recon_eval_alloc(ReconEval *e, size_t B, size_t T)
{
    if (e->resid0 && B <= e->maxB && T <= e->maxT) return 0;
    B = B > e->maxB ? B : e->maxB, T = T > e->maxT ? T : e->maxT;
    if (gpt2_alloc(e->g, B, T, 1) < 0) {
        snprintf(e->err, sizeof e->err, "%s", e->g->err);
        return -1;
    }
    recon_eval_free(e);
    const GPT2Config *c = &e->g->cfg;
    size_t BT = B * T;
    e->resid0 = xmalloc_aligned(BT * c->channels * sizeof(float));
    e->x = xmalloc_aligned(BT * e->D * sizeof(float));
    e->loss = xmalloc(BT * sizeof(float));
    if (e->sae) {
        e->f = xmalloc_aligned(BT * e->sae->F * sizeof(float));
        e->xhat = xmalloc_aligned(BT * e->D * sizeof(float));
        e->logp = xmalloc_aligned(BT * c->vocab_size * sizeof(float));
    }
    e->maxB = B, e->maxT = T;
    return 0;
}

static int eval_fail(ReconEval *e)
{
    snprintf(e->err, sizeof e->err, "%s", e->g->err);
    return -1;
}

/* Forward from tokens, saving the residual stream at the hook (save_resid)
 * and the hook value into e->x; with logits when loss != NULL. */
static int clean_forward(ReconEval *e, const int32_t *tok, size_t B, size_t T, float *loss, int save_resid)
{
    GPT2Hook rp = gpt2_hook_resid(e->hook);
    GPT2Tap taps[2] = {{.hook = e->hook, .save = e->x}, {.hook = rp, .save = e->resid0}};
    GPT2Run r = {.tokens = tok, .B = B, .T = T, .taps = taps, .ntaps = save_resid ? 2 : 1, .loss = loss};
    return gpt2_forward(e->g, &r) < 0 ? eval_fail(e) : 0;
}

static double sum_f(const float *a, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i];
    return s;
}

/* Add rows t >= pos0 of e->x to sum_x (and, with sq, to sum_sq). */
static void add_rows(ReconEval *e, size_t B, size_t T, ReconSums *acc)
{
    size_t D = e->D;
    for (size_t b = 0; b < B; b++) {
        for (size_t t = e->pos0; t < T; t++) {
            const float *x = e->x + (b * T + t) * D;
            double sq = 0;
            for (size_t i = 0; i < D; i++) acc->sum_x[i] += x[i], sq += (double)x[i] * x[i];
            acc->sum_sq += sq;
        }
    }
    size_t rows = T > e->pos0 ? T - e->pos0 : 0;
    acc->n_rows += B * rows, acc->tokens += B * T, acc->windows += B;
}

int recon_eval_mean(ReconEval *e, const int32_t *tok, size_t B, size_t T, ReconSums *acc)
{
    if (recon_eval_alloc(e, B, T) < 0 || clean_forward(e, tok, B, T, NULL, 0) < 0) return -1;
    add_rows(e, B, T, acc);
    return 0;
}

/* SAE metrics over rows t >= pos0: squared error, L0, firing counts. */
static void sae_rows(ReconEval *e, size_t B, size_t T, ReconSums *acc)
{
    size_t D = e->D, F = e->sae->F;
    for (size_t b = 0; b < B; b++) {
        for (size_t t = e->pos0; t < T; t++) {
            size_t row = b * T + t;
            const float *x = e->x + row * D, *xh = e->xhat + row * D, *f = e->f + row * F;
            double se = 0;
            for (size_t i = 0; i < D; i++) se += ((double)x[i] - xh[i]) * ((double)x[i] - xh[i]);
            acc->sse += se;
            size_t l0 = 0;
            for (size_t j = 0; j < F; j++) {
                int on = f[j] > 0;
                l0 += (size_t)on;
                acc->fires[j] += on;
            }
            acc->l0 += (double)l0;
        }
    }
}

typedef struct {
    const SAE *sae;
    const float *f;
    float *xhat;
} ReconDecode;

/* Rows lo..hi-1 of xhat = (f @ W_dec + b_dec) / norm_scale, from the
 * nonzero features only (in ascending order, so a row's bytes depend on
 * that row alone): top-k features make the dense product mostly zeros. */
static void decode_rows(void *arg, size_t lo, size_t hi)
{
    const ReconDecode *j = arg;
    size_t D = j->sae->D, F = j->sae->F;
    float inv = (float)(1.0 / j->sae->norm_scale);
    for (size_t i = lo; i < hi; i++) {
        const float *f = j->f + i * F;
        float *xh = j->xhat + i * D;
        memset(xh, 0, D * sizeof *xh);
        for (size_t k = 0; k < F; k++) {
            if (f[k] == 0) continue;
            const float *w = j->sae->p.W_dec + k * D;
            float v = f[k];
            for (size_t d = 0; d < D; d++) xh[d] += v * w[d];
        }
        for (size_t d = 0; d < D; d++) xh[d] = xh[d] * inv + j->sae->p.b_dec[d] * inv;
    }
}

int recon_eval_batch(ReconEval *e, const int32_t *tok, size_t B, size_t T, const float *mean, ReconSums *acc)
{
    if (!e->sae) {
        snprintf(e->err, sizeof e->err, "recon_eval_batch: no SAE");
        return -1;
    }
    if (recon_eval_alloc(e, B, T) < 0) return -1;
    const GPT2Config *c = &e->g->cfg;
    size_t V = c->vocab_size, npred = T > 1 ? B * (T - 1) : 0;
    // clean: the residual stream at the hook, the hook value, logits
    if (clean_forward(e, tok, B, T, e->loss, 1) < 0) return -1;
    acc->loss[RECON_CLEAN] += sum_f(e->loss, npred);
    recon_clean_logp(e->logp, e->g->acts.logits, e->loss, tok, B, T, V);
    // the SAE on every row (rows before pos0 are computed but not counted)
    sae_encode(e->sae, e->x, B * T, SP_ROWS_WINDOWS(T), e->f);
    ReconDecode dec = {e->sae, e->f, e->xhat};
    sp_parfor(B * T, 16, decode_rows, &dec);
    add_rows(e, B, T, acc);
    sae_rows(e, B, T, acc);
    // three forwards resumed at the hook point, with the hook patched
    const ReconPatch patch[3] = {{.rows = e->xhat, .pos0 = e->pos0}, {.pos0 = e->pos0},
                                 {.vec = mean, .pos0 = e->pos0}};
    const int which[3] = {RECON_RECONS, RECON_ZERO, RECON_MEAN};
    for (int i = 0; i < 3; i++) {
        GPT2Tap tap = {.hook = e->hook, .fn = recon_patch, .ctx = (void *)&patch[i]};
        GPT2Run r = {.tokens = tok, .B = B, .T = T, .taps = &tap, .ntaps = 1, .loss = e->loss,
                     .resid_in = e->resid0, .resume = &e->hook, .act_in = e->x};
        if (gpt2_forward(e->g, &r) < 0) return eval_fail(e);
        acc->loss[which[i]] += sum_f(e->loss, npred);
        if (which[i] == RECON_RECONS)
            acc->kl += recon_kl_sum(e->logp, e->g->acts.logits, e->loss, tok, B, T, V, e->pos0);
    }
    acc->n_pred += npred;
    acc->n_kl += T > e->pos0 + 1 ? B * (T - 1 - e->pos0) : 0;
    return 0;
}
