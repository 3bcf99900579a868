/* compare.c: sae-compare's inputs and its run (compare.h): the SAEs, the
 * activation sample, and each dictionary's topk-ctx, explain-gpt4 and
 * recon-score outputs; then matching, splitting and duplication. The
 * stream and summary it writes are in compare_out.c. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "kinds.h"
#include "rows.h"

void cmp_opts_default(CmpOpts *o)
{
    *o = (CmpOpts){.cos_min = 0.5, .cover_min = 0.5, .near_min = 0.8, .broad_density = 0.01, .broad_spread = 0.5,
                   .broad_min_top = 5, .tree_roots = 20, .tree_children = 12};
}

void cmp_init(Cmp *c, const CmpOpts *o)
{
    *c = (Cmp){.o = *o};
}

static void dict_free(CmpDict *d)
{
    sae_free(&d->sae);
    for (int s = 0; s < 2; s++)
        free(d->side[s].dec_best), free(d->side[s].dec_cos), free(d->side[s].act_best), free(d->side[s].act_corr);
    free(d->parent), free(d->parent_cover), free(d->n_children);
    sparse_buf_free(&d->act);
    free(d->fires), free(d->mean), free(d->sd), free(d->density), free(d->n_top), free(d->spread);
    if (d->expl)
        for (size_t i = 0; i < d->F; i++) free(d->expl[i]);
    free(d->expl), free(d->dup_exact), free(d->dup_near);
}

void cmp_free(Cmp *c)
{
    for (size_t i = 0; i < c->n; i++) dict_free(&c->d[i]);
    free(c->d);
    *c = (Cmp){0};
}

int cmp_add_sae(Cmp *c, const char *path)
{
    c->d = xrealloc(c->d, (c->n + 1) * sizeof *c->d);
    CmpDict *d = &c->d[c->n];
    *d = (CmpDict){.recon_score = NAN, .recon_fvu = NAN, .recon_l0 = NAN};
    if (sae_load(&d->sae, path, c->err, sizeof c->err) < 0) return -1;
    c->n++;
    const SAE *s = &d->sae;
    if (c->n == 1) c->D = s->D, snprintf(c->hook, sizeof c->hook, "%s", s->hook);
    if (s->D != c->D)
        return SP_FAIL(c, "%s: d=%zu, but %s has d=%zu: dictionaries of one hook have one width", path, s->D,
                       c->d[0].path, c->D);
    if (strcmp(s->hook, c->hook))
        return SP_FAIL(c, "%s: hook '%s', but %s has hook '%s'", path, s->hook, c->d[0].path, c->hook);
    snprintf(d->path, sizeof d->path, "%s", path);
    d->F = s->F;
    if (s->F % s->D == 0) snprintf(d->label, sizeof d->label, "%zux", s->F / s->D);
    else snprintf(d->label, sizeof d->label, "%zu", s->F);
    cmp_unit_rows(d->sae.p.W_dec, s->F, s->D);   // only the encoder is used after this
    return 0;
}

/* ---- reading the per-dictionary outputs ---- */
typedef int (*RecFn)(Cmp *c, CmpDict *d, const TszRecord *rec, char *err, size_t errlen);

/* Every record of path through fn; kinds outside want are refused, except
 * skip (records read past). At least one record fn took. */
static int each_record(Cmp *c, CmpDict *d, const char *path, unsigned want, unsigned skip, RecFn fn)
{
    TszReader *r = tsz_reader_open(path);
    if (tsz_reader_error(r)) {
        SP_FAIL(c, "%s", tsz_reader_error(r));
        tsz_reader_close(r);
        return -1;
    }
    TszRecord rec;
    tsz_record_init(&rec);
    int ret;
    size_t took = 0;
    char err[512];
    while ((ret = tsz_read(r, &rec)) == 1) {
        uint64_t no = tsz_reader_records(r);
        if (sp_kind_of(&rec) & skip) continue;
        if (sp_kind_check(&rec, want, err, sizeof err) < 0 || fn(c, d, &rec, err, sizeof err) < 0) {
            ret = SP_FAIL(c, "%s: record %" PRIu64 ": %s", sp_in_name(path), no, err);
            break;
        }
        took++;
    }
    if (ret < 0 && tsz_reader_error(r)) SP_FAIL(c, "%s", tsz_reader_error(r));
    if (ret == 0 && !took) ret = -1, SP_FAIL(c, "%s: no %s record", sp_in_name(path), sp_kind_name(want));
    tsz_record_free(&rec);
    tsz_reader_close(r);
    return ret < 0 ? -1 : 0;
}

/* meta "feature" as an id of d, or -1 with err */
static int32_t feature_of(const CmpDict *d, const TszRecord *rec, char *err, size_t errlen)
{
    json_t *f = json_object_get(rec->meta, "feature");
    if (!json_is_integer(f)) return sp_fail(err, errlen, "no integer \"feature\"");
    json_int_t v = json_integer_value(f);
    if (v < 0 || (size_t)v >= d->F)
        return sp_fail(err, errlen, "feature %lld is outside [0, %zu) of %s", (long long)v, d->F, d->path);
    return (int32_t)v;
}

static int topk_rec(Cmp *c, CmpDict *d, const TszRecord *rec, char *err, size_t errlen)
{
    int32_t f = feature_of(d, rec, err, errlen);
    if (f < 0) return -1;
    const TszTensor *tok = tsz_record_get(rec, "top_tokens"), *src = tsz_record_get(rec, "top_src");
    json_t *dens = json_object_get(rec->meta, "density");
    if (!tok || !src || tok->dtype != TSZ_I32 || src->dtype != TSZ_I64 || tok->ndim != 2 || src->ndim != 2 ||
        src->shape[0] != tok->shape[0] || src->shape[1] != 3 || !json_is_number(dens))
        return sp_fail(err, errlen, "want \"density\" and top_tokens i32 (k,W) with top_src i64 (k,3)");
    size_t k = tok->shape[0], W = tok->shape[1];
    const int32_t *t = tok->data;
    const int64_t *s = src->data;
    int32_t *seen = xmalloc(k * sizeof *seen + 1);
    size_t distinct = 0;
    for (size_t i = 0; i < k; i++) {
        if (s[3 * i + 2] < 0 || (size_t)s[3 * i + 2] >= W) {
            free(seen);
            return sp_fail(err, errlen, "top_src[%zu] position %lld is outside the window of %zu", i,
                           (long long)s[3 * i + 2], W);
        }
        int32_t id = t[i * W + (size_t)s[3 * i + 2]];
        size_t q = 0;
        while (q < distinct && seen[q] != id) q++;
        if (q == distinct) seen[distinct++] = id;
    }
    free(seen);
    d->density[f] = (float)json_number_value(dens), d->n_top[f] = (int32_t)k, d->spread[f] = (int32_t)distinct;
    return 0;
}

int cmp_add_topk(Cmp *c, size_t i, const char *path)
{
    CmpDict *d = &c->d[i];
    d->density = xmalloc(d->F * sizeof *d->density);
    d->n_top = xcalloc(d->F, sizeof *d->n_top), d->spread = xcalloc(d->F, sizeof *d->spread);
    for (size_t f = 0; f < d->F; f++) d->density[f] = NAN;
    return each_record(c, d, path, SP_K_FEATURE, SP_K_DICT_STATS, topk_rec);
}

static int expl_rec(Cmp *c, CmpDict *d, const TszRecord *rec, char *err, size_t errlen)
{
    int32_t f = feature_of(d, rec, err, errlen);
    if (f < 0) return -1;
    const char *e = json_string_value(json_object_get(rec->meta, "explanation"));
    const char *st = json_string_value(json_object_get(rec->meta, "status"));
    free(d->expl[f]);
    // a failed or dead feature has no explanation to compare
    d->expl[f] = e && *e && (!st || !strcmp(st, "ok")) ? xstrdup(e) : NULL;
    return 0;
}

int cmp_add_explanations(Cmp *c, size_t i, const char *path)
{
    CmpDict *d = &c->d[i];
    d->expl = xcalloc(d->F, sizeof *d->expl);
    return each_record(c, d, path, SP_K_EXPLANATION, 0, expl_rec);
}

static int recon_rec(Cmp *c, CmpDict *d, const TszRecord *rec, char *err, size_t errlen)
{
    json_t *f = json_object_get(rec->meta, "f");
    if (json_is_integer(f) && (size_t)json_integer_value(f) != d->F)
        return sp_fail(err, errlen, "f=%lld, but %s has f=%zu", (long long)json_integer_value(f), d->path, d->F);
    const struct { const char *k; double *v; } m[] = {
        {"score", &d->recon_score}, {"fvu", &d->recon_fvu}, {"l0", &d->recon_l0}};
    for (size_t k = 0; k < sizeof m / sizeof *m; k++) {
        json_t *v = json_object_get(rec->meta, m[k].k);
        *m[k].v = json_is_number(v) ? json_number_value(v) : NAN;
    }
    return 0;
}

int cmp_add_recon(Cmp *c, size_t i, const char *path)
{
    return each_record(c, &c->d[i], path, SP_K_RECON, 0, recon_rec);
}

/* ---- the activation sample ---- */
#define CMP_ENC_ROWS 64   /* rows encoded at once: (64, 131072) floats are 32 MB */

static void sample_stats(CmpDict *d, size_t N)
{
    d->fires = xcalloc(d->F, sizeof *d->fires);
    d->mean = xcalloc(d->F, sizeof *d->mean), d->sd = xcalloc(d->F, sizeof *d->sd);
    for (size_t k = 0; k < d->act.nnz; k++) {
        int32_t j = d->act.indices[k];
        double v = d->act.values[k];
        d->fires[j]++, d->mean[j] += v, d->sd[j] += v * v;
    }
    for (size_t j = 0; j < d->F; j++) {
        d->mean[j] /= (double)N;
        double var = d->sd[j] / (double)N - d->mean[j] * d->mean[j];
        d->sd[j] = var > 0 ? sqrt(var) : 0;
    }
}

int cmp_add_acts(Cmp *c, const char *path, uint64_t rows)
{
    RowReader r;
    if (rows_open(&r, path) < 0) return SP_FAIL(c, "%s", r.err), rows_close(&r), -1;
    size_t Fmax = 0;
    for (size_t i = 0; i < c->n; i++) Fmax = c->d[i].F > Fmax ? c->d[i].F : Fmax;
    float *x = xmalloc_aligned(CMP_ENC_ROWS * c->D * sizeof *x), *f = xmalloc_aligned(CMP_ENC_ROWS * Fmax * sizeof *f);
    size_t got = 0, m = 0;
    int ret = 0;
    while (got < rows) {
        if (r.pos == r.nrows && (ret = rows_next(&r)) <= 0) break;
        if (r.D != c->D) {
            ret = SP_FAIL(c, "%s: rows of width %zu, but the dictionaries have d=%zu", sp_in_name(path), r.D, c->D);
            break;
        }
        // rows mlp-tap normalised (meta norm_scale s) go back to the hook's scale, as sae-encode does
        json_t *ns = json_object_get(r.rec.meta, "norm_scale");
        double inv = json_is_number(ns) && json_number_value(ns) > 0 ? 1 / json_number_value(ns) : 1;
        for (size_t k = 0; k < c->D; k++) x[m * c->D + k] = (float)(r.buf[r.pos * c->D + k] * inv);
        r.pos++, got++, m++;
        if (m < CMP_ENC_ROWS && got < rows) continue;
        for (size_t i = 0; i < c->n; i++) {
            // rows placed by their number in the sample: a row's code never depends on the block
            sae_encode(&c->d[i].sae, x, m, SP_ROWS_AT(got - m), f);
            sparse_buf_append_dense(&c->d[i].act, f, m, c->d[i].F, NULL);
        }
        m = 0;
    }
    if (ret < 0 && !*c->err) SP_FAIL(c, "%s", r.err);
    if (ret >= 0 && got < rows)
        ret = SP_FAIL(c, "%s: %zu rows, fewer than the %" PRIu64 " asked for (--rows)", sp_in_name(path), got, rows);
    rows_close(&r);
    free(x), free(f);
    if (ret < 0) return -1;
    c->N = rows;
    snprintf(c->acts_path, sizeof c->acts_path, "%s", path);
    for (size_t i = 0; i < c->n; i++) sample_stats(&c->d[i], c->N);
    return 0;
}

/* ---- the run ---- */
static int by_f(const void *a, const void *b)
{
    const CmpDict *x = a, *y = b;
    return (x->F > y->F) - (x->F < y->F);
}

/* 1 when latent p of a is on one of c's firing rows of b's sample (rows ascending). */
static int fires_on(const SpCsrBuf *a, size_t r, int32_t p)
{
    for (int64_t k = a->indptr[r]; k < a->indptr[r + 1]; k++)
        if (a->indices[k] == p) return 1;
    return 0;
}

/* Children of a's latents in b (compare.h): b->parent, b->parent_cover, a->n_children. */
static void split(const Cmp *c, CmpDict *a, CmpDict *b)
{
    b->parent = xmalloc(b->F * sizeof *b->parent), b->parent_cover = xmalloc(b->F * sizeof *b->parent_cover);
    a->n_children = xcalloc(a->F, sizeof *a->n_children);
    float *cov = b->parent_cover;
    for (size_t j = 0; j < b->F; j++) cov[j] = NAN;
    if (c->N) {   // cofiring counts of each latent of b with its decoder match in a, row by row
        uint32_t *co = xcalloc(b->F, sizeof *co);
        for (size_t r = 0; r < c->N; r++)
            for (int64_t k = b->act.indptr[r]; k < b->act.indptr[r + 1]; k++) {
                int32_t j = b->act.indices[k];
                co[j] += (uint32_t)fires_on(&a->act, r, b->side[0].dec_best[j]);
            }
        for (size_t j = 0; j < b->F; j++)
            if (b->fires[j]) cov[j] = (float)co[j] / (float)b->fires[j];
        free(co);
    }
    for (size_t j = 0; j < b->F; j++) {
        int32_t p = b->side[0].dec_best[j];
        int ok = p >= 0 && b->side[0].dec_cos[j] >= c->o.cos_min && !(cov[j] < c->o.cover_min);
        b->parent[j] = ok ? p : -1;
        if (ok) a->n_children[p]++;
    }
}

static void alloc_side(CmpSide *s, size_t F, int acts)
{
    s->dec_best = xmalloc(F * sizeof *s->dec_best), s->dec_cos = xmalloc(F * sizeof *s->dec_cos);
    if (acts) s->act_best = xmalloc(F * sizeof *s->act_best), s->act_corr = xmalloc(F * sizeof *s->act_corr);
}

int cmp_run(Cmp *c)
{
    if (c->n < 2) return SP_FAIL(c, "%zu dictionary: give two or more SAE files", c->n);
    qsort(c->d, c->n, sizeof *c->d, by_f);
    for (size_t i = 0; i + 1 < c->n; i++) {
        CmpDict *a = &c->d[i], *b = &c->d[i + 1];
        alloc_side(&a->side[1], a->F, c->N > 0), alloc_side(&b->side[0], b->F, c->N > 0);
        cmp_match_dec(a->sae.p.W_dec, a->F, b->sae.p.W_dec, b->F, c->D, a->side[1].dec_best, a->side[1].dec_cos,
                      b->side[0].dec_best, b->side[0].dec_cos);
        if (c->N) {
            cmp_match_act(&a->act, a->F, a->mean, a->sd, &b->act, b->F, b->mean, b->sd, c->N, a->side[1].act_best,
                          a->side[1].act_corr);
            cmp_match_act(&b->act, b->F, b->mean, b->sd, &a->act, a->F, a->mean, a->sd, c->N, b->side[0].act_best,
                          b->side[0].act_corr);
        }
        split(c, a, b);
    }
    for (size_t i = 0; i < c->n; i++) {
        CmpDict *d = &c->d[i];
        if (!d->expl) continue;
        d->dup_exact = xmalloc(d->F * sizeof *d->dup_exact), d->dup_near = xmalloc(d->F * sizeof *d->dup_near);
        cmp_duplicates(d->expl, d->F, c->o.near_min, d->dup_exact, d->dup_near);
    }
    return 0;
}
