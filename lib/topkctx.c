/* topkctx.c: topk-ctx's collector. Reads sae-encode records, keeps every
 * selected feature's top, random and band examples with their windows and
 * its statistics, merges topk-ctx outputs, and writes the records.
 *
 * Windows: the example token at position t of its context row (T' rows with
 * activations) starts a window of W tokens at s = t - 3W/4, clamped to
 * [0, max(0, T'-W)], so the token sits three quarters in when the row
 * allows: the model is causal, the text before a token explains it. Rows
 * shorter than W give windows padded with token -1 and activation 0.
 * Top examples: each context row offers one candidate per feature, its
 * maximum (earliest on ties), so overlapping windows never repeat a row. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kinds.h"
#include "logits.h"
#include "topkctx.h"

#define SALT_RAND 0x72616e64u   /* "rand" */
#define SALT_BAND 0x62616e64u   /* "band" */

uint64_t topkctx_bytes(const TopkOpts *o, size_t nsel)
{
    return topk_heaps_bytes(nsel, o->K, o->W) + topk_heaps_bytes(nsel, o->R, o->W) +
           topk_heaps_bytes(nsel, o->NB * o->NPB, o->W) + (uint64_t)nsel * sizeof(TopkStat);
}

void topkctx_init(TopkCtx *c, const TopkOpts *o, size_t F, const int32_t *sel, size_t nsel)
{
    memset(c, 0, sizeof *c);
    c->o = *o, c->F = F;
    if (!sel) nsel = F;
    c->nsel = nsel;
    c->sel = xmalloc(nsel * sizeof *c->sel + 1);
    c->col_of = xmalloc(F * sizeof *c->col_of + 1);
    for (size_t f = 0; f < F; f++) c->col_of[f] = -1;
    for (size_t i = 0; i < nsel; i++) {
        c->sel[i] = sel ? sel[i] : (int32_t)i;
        c->col_of[c->sel[i]] = (int32_t)i;
    }
    topk_heaps_init(&c->top, nsel, o->K, o->W);
    topk_heaps_init(&c->rnd, nsel, o->R, o->W);
    topk_heaps_init(&c->band, nsel, o->NB * o->NPB, o->W);
    c->st = xcalloc(nsel ? nsel : 1, sizeof *c->st);
}

void topkctx_free(TopkCtx *c)
{
    topk_heaps_free(&c->top);
    topk_heaps_free(&c->rnd);
    topk_heaps_free(&c->band);
    sparse_csc_free(&c->csc);
    free(c->sel);
    free(c->col_of);
    free(c->st);
    memset(c, 0, sizeof *c);
}

/* A tensor of the given dtype and rank, or NULL with c->err set; shape
 * entries of UINT64_MAX are free. */
static const TszTensor *need(TopkCtx *c, const TszRecord *rec, const char *name, TszDtype dt, int ndim,
                             const uint64_t *shape)
{
    const TszTensor *t = tsz_record_get(rec, name);
    char want[96] = "", got[96];
    for (int i = 0; i < ndim; i++) {
        size_t l = strlen(want);
        if (shape[i] == UINT64_MAX) snprintf(want + l, sizeof want - l, "%s*", i ? "," : "(");
        else snprintf(want + l, sizeof want - l, "%s%llu", i ? "," : "(", (unsigned long long)shape[i]);
    }
    if (!t) {
        SP_FAIL(c, "no \"%s\" tensor", name);
        return NULL;
    }
    int okshape = t->ndim == ndim && t->dtype == dt;
    for (int i = 0; okshape && i < ndim; i++) okshape = shape[i] == UINT64_MAX || shape[i] == t->shape[i];
    if (!okshape) {
        SP_FAIL(c, "\"%s\" is %s but needs %s) %s", name, tsz_tensor_desc(t, got, sizeof got), want,
             tsz_dtype_name(dt));
        return NULL;
    }
    return t;
}

/* Where the context rows of one record are. */
typedef struct {
    const int32_t *tok;         /* (B,T) */
    size_t B, T, Tp, pos0;      /* Tp = T - pos0 rows with activations */
    const int64_t *doc, *off;   /* (B) each, or NULL: window ordinal, 1 */
    uint64_t wbase;             /* ordinal of the record's first window */
} CtxRows;

static TopkGid gid_of(const CtxRows *x, size_t b, size_t tp)
{
    return (TopkGid){x->doc ? x->doc[b] : (int64_t)(x->wbase + b), x->off ? x->off[b] : 1,
                     (int64_t)(x->pos0 + tp)};
}

/* Fill slot of column j with the window around position tp of row b;
 * row/val[g0, g1) are the feature's entries in that row. */
static void fill(TopkHeaps *h, size_t j, long slot, const CtxRows *x, size_t b, size_t tp, const uint32_t *row,
                 const float *val, int64_t g0, int64_t g1)
{
    size_t W = h->W, back = 3 * W / 4;
    size_t s = tp > back ? tp - back : 0, smax = x->Tp > W ? x->Tp - W : 0;
    if (s > smax) s = smax;
    size_t len = x->Tp < W ? x->Tp : W, at = (j * h->cap + (size_t)slot);
    int32_t *tok = h->tok + at * W;
    float *act = h->act + at * W;
    const int32_t *src = x->tok + b * x->T + x->pos0 + s;
    for (size_t k = 0; k < W; k++) tok[k] = k < len ? src[k] : -1, act[k] = 0;
    for (int64_t e = g0; e < g1; e++) {
        size_t t = row[e] - b * x->Tp;
        if (t >= s && t < s + len) act[t - s] = val[e];
    }
    TopkGid g = gid_of(x, b, s);
    int64_t *sp = h->src + at * 3;
    sp[0] = g.doc, sp[1] = g.off + g.t - 1, sp[2] = (int64_t)(tp - s);
}

static void add_stats(TopkStat *st, const float *val, int64_t a, int64_t b)
{
    for (int64_t e = a; e < b; e++) {
        float v = val[e];
        st->fired++;
        st->sum += topk_fixed(v);
        if (v > st->max) st->max = v;
        st->hist[topk_hist_bin(v)]++;
    }
}

/* One column's entries of one record: statistics, reservoirs, and one top
 * candidate per context row. */
static void add_column(TopkCtx *c, size_t j, const CtxRows *x)
{
    const SpCsc *m = &c->csc;
    uint64_t f = (uint64_t)c->sel[j];
    int64_t e = m->colptr[j], end = m->colptr[j + 1];
    uint64_t hr = topk_hash_prefix(c->o.seed, SALT_RAND, f), hb = topk_hash_prefix(c->o.seed, SALT_BAND, f);
    add_stats(&c->st[j], m->val, e, end);
    while (e < end) {
        size_t b = m->row[e] / x->Tp;
        int64_t g1 = e, best = e;
        while (g1 < end && m->row[g1] / x->Tp == b) {
            if (m->val[g1] > m->val[best]) best = g1;
            g1++;
        }
        for (int64_t i = e; i < g1 && (c->o.R || c->o.NB * c->o.NPB > 0); i++) {
            size_t tp = m->row[i] - b * x->Tp;
            TopkGid g = gid_of(x, b, tp);
            long slot = topk_offer(&c->rnd, j, topk_hash_gid(hr, &g), &g);
            if (slot >= 0) fill(&c->rnd, j, slot, x, b, tp, m->row, m->val, e, g1);
            slot = topk_offer(&c->band, j, topk_hash_gid(hb, &g), &g);
            if (slot >= 0) fill(&c->band, j, slot, x, b, tp, m->row, m->val, e, g1);
        }
        size_t tp = m->row[best] - b * x->Tp;
        TopkGid g = gid_of(x, b, tp);
        long slot = topk_offer(&c->top, j, topk_act_key(m->val[best]), &g);
        if (slot >= 0) fill(&c->top, j, slot, x, b, tp, m->row, m->val, e, g1);
        e = g1;
    }
}

/* Read the activations of rec (CSR, or dense "features") into c->csc. */
static int load_acts(TopkCtx *c, const TszRecord *rec, size_t rows)
{
    const TszTensor *dense = tsz_record_get(rec, "features");
    if (dense) {
        uint64_t ds[2] = {rows, UINT64_MAX};
        if (!need(c, rec, "features", TSZ_F32, 2, ds)) return -1;
        size_t Fc = dense->shape[1];
        const int32_t *ids = NULL;
        if (tsz_record_get(rec, "feature_ids")) {
            uint64_t is[1] = {Fc};
            const TszTensor *it = need(c, rec, "feature_ids", TSZ_I32, 1, is);
            if (!it) return -1;
            ids = it->data;
            for (size_t k = 0; k < Fc; k++)
                if (ids[k] < 0 || (size_t)ids[k] >= c->F || (k && ids[k] <= ids[k - 1]))
                    return SP_FAIL(c, "\"feature_ids\" must be ascending ids in [0, %zu)", c->F);
        } else if (Fc != c->F) {
            return SP_FAIL(c, "\"features\" has %zu columns but f is %zu", Fc, c->F);
        }
        const float *x = dense->data;
        for (size_t i = 0; i < rows * Fc; i++)
            if (!isfinite(x[i])) return SP_FAIL(c, "\"features\" has a value that is not finite");
        sparse_csc_from_dense(&c->csc, x, rows, Fc, ids, c->col_of, c->nsel);
        return 0;
    }
    uint64_t ps[1] = {rows + 1}, any[1] = {UINT64_MAX};
    const TszTensor *ip = need(c, rec, "indptr", TSZ_I64, 1, ps);
    const TszTensor *ix = ip ? need(c, rec, "indices", TSZ_I32, 1, any) : NULL;
    const TszTensor *vx = ix ? need(c, rec, "values", TSZ_F32, 1, ix->shape) : NULL;
    if (!vx) return -1;
    SpCsr a = {rows, c->F, ix->shape[0], ip->data, ix->data, vx->data};
    char err[256];
    if (sparse_csr_check(&a, err, sizeof err) < 0) return SP_FAIL(c, "%s", err);
    sparse_csc_from_csr(&c->csc, &a, c->col_of, c->nsel);
    return 0;
}

int topkctx_add(TopkCtx *c, const TszRecord *rec)
{
    if (sp_kind_check(rec, SP_K_FEATURES, c->err, sizeof c->err) < 0) return -1;
    json_t *jf = json_object_get(rec->meta, "f");
    if (!json_is_integer(jf) || (size_t)json_integer_value(jf) != c->F)
        return SP_FAIL(c, "meta 'f' is not %zu, the dictionary size of the first record", c->F);
    json_t *jp = json_object_get(rec->meta, "pos0");
    long long pos0 = jp ? json_integer_value(jp) : 0;
    if (jp && (!json_is_integer(jp) || pos0 < 0 || pos0 > 1)) return SP_FAIL(c, "meta 'pos0' must be 0 or 1");
    uint64_t ts[2] = {UINT64_MAX, UINT64_MAX};
    const TszTensor *tt = tsz_record_get(rec, "tokens") ? need(c, rec, "tokens", TSZ_I32, 2, ts) : NULL;
    if (!tt) {
        if (!tsz_record_get(rec, "tokens"))
            SP_FAIL(c, "no \"tokens\" tensor (topk-ctx needs context windows: mlp-tap --keep-context)");
        return -1;
    }
    CtxRows x = {tt->data, tt->shape[0], tt->shape[1], 0, (size_t)pos0, NULL, NULL, c->n_windows};
    if (x.T <= x.pos0 && x.B) return SP_FAIL(c, "\"tokens\" rows of %zu tokens leave none after pos0 %zu", x.T, x.pos0);
    x.Tp = x.T - x.pos0;
    int hd = tsz_record_get(rec, "doc") != NULL, ho = tsz_record_get(rec, "offset") != NULL;
    if (hd != ho) return SP_FAIL(c, "\"doc\" and \"offset\" come together or not at all");
    if (hd) {
        uint64_t bs[1] = {x.B};
        const TszTensor *d = need(c, rec, "doc", TSZ_I64, 1, bs), *o = d ? need(c, rec, "offset", TSZ_I64, 1, bs) : NULL;
        if (!o) return -1;
        x.doc = d->data, x.off = o->data;
    }
    size_t rows = x.B * x.Tp;
    json_t *jr = json_object_get(rec->meta, "rows");
    if (jr && (!json_is_integer(jr) || (size_t)json_integer_value(jr) != rows))
        return SP_FAIL(c, "meta 'rows' is not %zu, the rows of \"tokens\" (%zu,%zu) after pos0 %zu", rows, x.B, x.T,
                    x.pos0);
    if (rows > UINT32_MAX) return SP_FAIL(c, "%zu rows in one record is too many", rows);
    if (load_acts(c, rec, rows) < 0) return -1;
    for (size_t j = 0; j < c->nsel; j++)
        if (c->csc.colptr[j + 1] > c->csc.colptr[j]) add_column(c, j, &x);
    c->n_tokens += rows;
    c->n_windows += x.B;
    return 0;
}

/* ---- output ---- */
typedef struct { const char *name; TopkHeaps *h; } SetTab;

static void put_set(TszRecord *rec, const char *prefix, const TopkHeaps *h, size_t j, const TopkEnt *e, size_t n)
{
    char name[64];
    size_t W = h->W;
    uint64_t sw[2] = {n, W}, s3[2] = {n, 3};
    snprintf(name, sizeof name, "%s_tokens", prefix);
    int32_t *tok = tsz_record_add(rec, name, TSZ_I32, 2, sw)->data;
    snprintf(name, sizeof name, "%s_acts", prefix);
    float *act = tsz_record_add(rec, name, TSZ_F32, 2, sw)->data;
    snprintf(name, sizeof name, "%s_src", prefix);
    int64_t *src = tsz_record_add(rec, name, TSZ_I64, 2, s3)->data;
    snprintf(name, sizeof name, "%s_gid", prefix);
    int64_t *gid = tsz_record_add(rec, name, TSZ_I64, 2, s3)->data;
    for (size_t k = 0; k < n; k++) {
        size_t at = j * h->cap + e[k].slot;
        memcpy(tok + k * W, h->tok + at * W, W * sizeof *tok);
        memcpy(act + k * W, h->act + at * W, W * sizeof *act);
        memcpy(src + k * 3, h->src + at * 3, 3 * sizeof *src);
        gid[3 * k] = e[k].id.doc, gid[3 * k + 1] = e[k].id.off, gid[3 * k + 2] = e[k].id.t;
    }
}

static float ex_act(const TopkHeaps *h, size_t j, const TopkEnt *e)
{
    size_t at = j * h->cap + e->slot;
    return h->act[at * h->W + (size_t)h->src[at * 3 + 2]];
}

static void sort_by_act(const TopkHeaps *h, size_t j, TopkEnt *e, size_t n)
{
    for (size_t i = 0; i < n; i++) e[i].key = topk_act_key(ex_act(h, j, &e[i]));
    for (size_t i = 1; i < n; i++)     /* insertion sort: n is small */
        for (size_t k = i; k > 0 && topk_cmp(e[k].key, &e[k].id, e[k - 1].key, &e[k - 1].id) < 0; k--) {
            TopkEnt t = e[k];
            e[k] = e[k - 1], e[k - 1] = t;
        }
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* token_strs: every id in the examples, ascending, so the object's order
 * is the same however the record was made. */
static json_t *token_strs(const TszRecord *rec, TopkStrFn strs, void *ud)
{
    static const char *const names[] = {"top_tokens", "rand_tokens", "band_tokens", "logit_top_ids",
                                        "logit_bot_ids"};
    enum { NNAMES = sizeof names / sizeof *names };
    size_t n = 0;
    for (size_t i = 0; i < NNAMES; i++) {
        const TszTensor *t = tsz_record_get(rec, names[i]);
        n += t ? tsz_tensor_numel(t) : 0;   /* the logit ids only with logit effects */
    }
    int32_t *ids = xmalloc(n * sizeof *ids + 1);
    n = 0;
    for (size_t i = 0; i < NNAMES; i++) {
        const TszTensor *t = tsz_record_get(rec, names[i]);
        if (!t) continue;
        size_t m = tsz_tensor_numel(t);
        memcpy(ids + n, t->data, m * sizeof *ids);
        n += m;
    }
    qsort(ids, n, sizeof *ids, cmp_i32);
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (i && ids[i] == ids[i - 1])) continue;
        const char *s = strs(ud, ids[i]);
        char key[16];
        snprintf(key, sizeof key, "%d", ids[i]);
        if (s) json_object_set_new(o, key, json_string(s));
    }
    free(ids);
    return o;
}

/* The four logit tensors, in TopkLogits's order (side 0 promoted, side 1
 * suppressed; ids then values): one table for the writer and the reader. */
static const struct { const char *name; TszDtype dt; } logit_tab[4] = {
    {"logit_top_ids", TSZ_I32}, {"logit_top_vals", TSZ_F32}, {"logit_bot_ids", TSZ_I32}, {"logit_bot_vals", TSZ_F32}};

static void put_logits(TszRecord *rec, const LogitEffects *e, size_t j)
{
    uint64_t ks[1] = {e->K};
    const void *src[4] = {e->top_ids, e->top_vals, e->bot_ids, e->bot_vals};   /* (n, K) each, 4-byte elements */
    for (int k = 0; k < 4; k++)
        memcpy(tsz_record_add(rec, logit_tab[k].name, logit_tab[k].dt, 1, ks)->data,
               (const char *)src[k] + j * e->K * 4, e->K * 4);
}

/* 0 when t[4] (logit_tab's order, NULL for absent, at least one present)
 * are well formed, else -1 with the problem in err. */
static int logits_check(const TszTensor *const *t, size_t V, char *err, size_t errlen)
{
    char d[96];
    for (int k = 0; k < 4; k++) {
        if (!t[k])
            return sp_fail(err, errlen, "no \"%s\": topk-ctx --sae writes all four logit tensors, or none",
                           logit_tab[k].name);
        if (t[k]->ndim != 1 || t[k]->dtype != logit_tab[k].dt)
            return sp_fail(err, errlen, "\"%s\" is %s but needs (K) %s", logit_tab[k].name,
                           tsz_tensor_desc(t[k], d, sizeof d), tsz_dtype_name(logit_tab[k].dt));
    }
    // each tensor against the one it pairs with: values against their ids, then the
    // suppressed ids against the promoted (K tokens each way)
    static const int pairs[3][2] = {{1, 0}, {3, 2}, {2, 0}};
    for (int i = 0; i < 3; i++) {
        int k = pairs[i][0], p = pairs[i][1];
        if (t[k]->shape[0] != t[p]->shape[0])
            return sp_fail(err, errlen, "\"%s\" has length %llu but \"%s\" has length %llu%s", logit_tab[k].name,
                           (unsigned long long)t[k]->shape[0], logit_tab[p].name, (unsigned long long)t[p]->shape[0],
                           k == 2 ? ": K differs between the promoted and the suppressed tokens" : "");
    }
    if (!t[0]->shape[0]) return sp_fail(err, errlen, "\"%s\" is empty: K is at least 1", logit_tab[0].name);
    for (int k = 0; k < 4; k += 2) {
        const int32_t *id = t[k]->data;
        for (uint64_t i = 0; i < t[k]->shape[0]; i++) {
            if (id[i] >= 0 && (!V || (size_t)id[i] < V)) continue;
            if (V)
                return sp_fail(err, errlen, "\"%s\"[%llu] is %d, outside the vocabulary [0, %zu)", logit_tab[k].name,
                               (unsigned long long)i, id[i], V);
            return sp_fail(err, errlen, "\"%s\"[%llu] is %d, not a token id", logit_tab[k].name,
                           (unsigned long long)i, id[i]);
        }
    }
    return 0;
}

int topkctx_logits(const TszRecord *rec, size_t V, TopkLogits *lg, char *err, size_t errlen)
{
    const TszTensor *t[4];
    int n = 0;
    memset(lg, 0, sizeof *lg);
    for (int k = 0; k < 4; k++) n += (t[k] = tsz_record_get(rec, logit_tab[k].name)) != NULL;
    if (!n) return 0;
    char why[400];
    if (logits_check(t, V, why, sizeof why) < 0) {
        json_t *jf = json_object_get(rec->meta, "feature");
        if (!json_is_integer(jf)) return sp_fail(err, errlen, "%s", why);
        return sp_fail(err, errlen, "feature %lld: %s", (long long)json_integer_value(jf), why);
    }
    lg->K = t[0]->shape[0];
    for (int s = 0; s < 2; s++) lg->ids[s] = t[2 * s]->data, lg->vals[s] = t[2 * s + 1]->data;
    return 1;
}

void topkctx_record(const TopkCtx *c, size_t j, TszRecord *rec, TopkStrFn strs, void *ud)
{
    const TopkStat *st = &c->st[j];
    tsz_record_clear(rec);
    size_t cap = c->o.K > c->o.R ? c->o.K : c->o.R;
    if (c->o.NB * c->o.NPB > cap) cap = c->o.NB * c->o.NPB;
    TopkEnt *e = xmalloc(cap * sizeof *e + 1);
    size_t n = topk_sorted(&c->top, j, e);
    put_set(rec, "top", &c->top, j, e, n);
    n = topk_sorted(&c->rnd, j, e);
    put_set(rec, "rand", &c->rnd, j, e, n);
    n = topk_sorted(&c->band, j, e);
    sort_by_act(&c->band, j, e, n);
    put_set(rec, "band", &c->band, j, e, n);
    uint64_t bn[1] = {n}, hn[1] = {TOPK_HIST_BINS}, he[1] = {TOPK_HIST_BINS + 1}, sn[1] = {2};
    int32_t *bid = tsz_record_add(rec, "band_id", TSZ_I32, 1, bn)->data;
    for (size_t k = 0; k < n; k++) bid[k] = (int32_t)(k * c->o.NB / n);
    free(e);
    int64_t *hist = tsz_record_add(rec, "act_hist", TSZ_I64, 1, hn)->data;
    for (size_t b = 0; b < TOPK_HIST_BINS; b++) hist[b] = (int64_t)st->hist[b];
    topk_hist_edges(tsz_record_add(rec, "act_hist_edges", TSZ_F32, 1, he)->data);
    int64_t *sum = tsz_record_add(rec, "act_sum", TSZ_I64, 1, sn)->data;
    sum[0] = (int64_t)(st->sum >> 64), sum[1] = (int64_t)(uint64_t)st->sum;
    if (c->logits) put_logits(rec, c->logits, j);

    json_t *m = rec->meta;
    json_object_set_new(m, "kind", json_string(SP_KIND_FEATURE));
    json_object_set_new(m, "feature", json_integer(c->sel[j]));
    json_object_set_new(m, "n_tokens", json_integer((json_int_t)c->n_tokens));
    json_object_set_new(m, "n_fired", json_integer((json_int_t)st->fired));
    json_object_set_new(m, "density", json_real(c->n_tokens ? (double)st->fired / (double)c->n_tokens : 0.0));
    json_object_set_new(m, "max_act", json_real(st->max));
    json_object_set_new(m, "mean_act", json_real(st->fired ? topk_sum_double(st->sum) / (double)st->fired : 0.0));
    if (strs) json_object_set_new(m, "token_strs", token_strs(rec, strs, ud));
}

/* ---- merge ---- */
static int merge_set(TopkCtx *c, size_t j, const TszRecord *rec, const char *prefix, TopkHeaps *h, uint64_t salt)
{
    char nt[64], na[64], ns[64], ng[64];
    snprintf(nt, sizeof nt, "%s_tokens", prefix);
    snprintf(na, sizeof na, "%s_acts", prefix);
    snprintf(ns, sizeof ns, "%s_src", prefix);
    snprintf(ng, sizeof ng, "%s_gid", prefix);
    uint64_t sw[2] = {UINT64_MAX, h->W};
    const TszTensor *tt = need(c, rec, nt, TSZ_I32, 2, sw);
    if (!tt) return -1;
    size_t n = tt->shape[0], W = h->W;
    if (n > h->cap) return SP_FAIL(c, "\"%s\" has %zu examples but the options keep %zu", nt, n, h->cap);
    uint64_t s2[2] = {n, W}, s3[2] = {n, 3};
    const TszTensor *ta = need(c, rec, na, TSZ_F32, 2, s2), *ts = ta ? need(c, rec, ns, TSZ_I64, 2, s3) : NULL;
    const TszTensor *tg = ts ? need(c, rec, ng, TSZ_I64, 2, s3) : NULL;
    if (!tg) return -1;
    const int64_t *src = ts->data, *gid = tg->data;
    const float *acts = ta->data;
    for (size_t k = 0; k < n; k++) {
        TopkGid g = {gid[3 * k], gid[3 * k + 1], gid[3 * k + 2]};
        if (src[3 * k + 2] < 0 || (size_t)src[3 * k + 2] >= W)
            return SP_FAIL(c, "\"%s\" row %zu: position %lld is outside the window", ns, k, (long long)src[3 * k + 2]);
        float v = acts[k * W + (size_t)src[3 * k + 2]];
        if (!isfinite(v)) return SP_FAIL(c, "\"%s\" row %zu is not finite", na, k);
        uint64_t key = salt ? topk_hash(c->o.seed, salt, (uint64_t)c->sel[j], &g) : topk_act_key(v);
        // shards of one input hold disjoint tokens: the same token, window and key twice means
        // overlapping inputs (a shard given twice), whose counts would be added twice
        long dup = topk_find(h, j, key, &g);
        if (dup >= 0 && !memcmp(h->tok + (j * h->cap + (size_t)dup) * W, (const int32_t *)tt->data + k * W,
                                W * sizeof(int32_t)))
            return SP_FAIL(c, "feature %d: token (doc %lld, offset %lld, position %lld) is in two inputs: the "
                        "inputs overlap (a shard given twice?)", c->sel[j], (long long)g.doc, (long long)g.off,
                        (long long)g.t);
        long slot = topk_offer(h, j, key, &g);
        if (slot < 0) continue;
        size_t at = j * h->cap + (size_t)slot;
        memcpy(h->tok + at * W, (const int32_t *)tt->data + k * W, W * sizeof(int32_t));
        memcpy(h->act + at * W, acts + k * W, W * sizeof(float));
        memcpy(h->src + at * 3, src + 3 * k, 3 * sizeof(int64_t));
    }
    return 0;
}

int topkctx_merge(TopkCtx *c, size_t j, const TszRecord *rec)
{
    const json_t *m = rec->meta;
    if (sp_kind_check(rec, SP_K_FEATURE, c->err, sizeof c->err) < 0) return -1;
    json_t *jf = json_object_get(m, "feature"), *jn = json_object_get(m, "n_fired"),
           *jx = json_object_get(m, "max_act");
    if (!json_is_integer(jf) || json_integer_value(jf) != c->sel[j])
        return SP_FAIL(c, "feature is not %d: the inputs hold different features", c->sel[j]);
    if (!json_is_integer(jn) || json_integer_value(jn) < 0 || !json_is_number(jx))
        return SP_FAIL(c, "feature %d: meta needs integer 'n_fired' and number 'max_act'", c->sel[j]);
    uint64_t hn[1] = {TOPK_HIST_BINS}, sn[1] = {2};
    const TszTensor *th = need(c, rec, "act_hist", TSZ_I64, 1, hn);
    const TszTensor *ts = th ? need(c, rec, "act_sum", TSZ_I64, 1, sn) : NULL;
    if (!ts) return -1;
    TopkStat *st = &c->st[j];
    st->fired += (uint64_t)json_integer_value(jn);
    float mx = (float)json_number_value(jx);
    if (mx > st->max) st->max = mx;
    const int64_t *sum = ts->data, *hist = th->data;
    st->sum += (TopkSum)(((unsigned __int128)(uint64_t)sum[0] << 64) | (uint64_t)sum[1]);
    for (size_t b = 0; b < TOPK_HIST_BINS; b++) st->hist[b] += (uint64_t)hist[b];
    if (merge_set(c, j, rec, "top", &c->top, 0) < 0 || merge_set(c, j, rec, "rand", &c->rnd, SALT_RAND) < 0 ||
        merge_set(c, j, rec, "band", &c->band, SALT_BAND) < 0)
        return -1;
    return 0;
}

void topkctx_dict_stats(const TopkOpts *o, size_t F, const int32_t *sel, size_t nsel, const uint64_t *fired,
                        uint64_t n_tokens, TszRecord *rec)
{
    tsz_record_clear(rec);
    uint64_t fs[1] = {nsel}, hs[1] = {TOPK_DENS_BINS}, es[1] = {TOPK_DENS_BINS + 1};
    float *dens = tsz_record_add(rec, "density", TSZ_F32, 1, fs)->data;
    memcpy(tsz_record_add(rec, "feature_ids", TSZ_I32, 1, fs)->data, sel, nsel * sizeof *sel);
    int64_t *hist = tsz_record_add(rec, "log10_density_hist", TSZ_I64, 1, hs)->data;
    topk_density_edges(tsz_record_add(rec, "log10_density_edges", TSZ_F32, 1, es)->data);
    memset(hist, 0, TOPK_DENS_BINS * sizeof *hist);
    size_t dead = 0, dense = 0;
    for (size_t i = 0; i < nsel; i++) {
        double d = n_tokens ? (double)fired[i] / (double)n_tokens : 0.0;
        dens[i] = (float)d;
        dead += fired[i] == 0;
        dense += d > 0.1;
        size_t b = topk_density_bin(fired[i], n_tokens);
        if (b != (size_t)-1) hist[b]++;
    }
    json_t *m = rec->meta;
    json_object_set_new(m, "kind", json_string(SP_KIND_DICT_STATS));
    json_object_set_new(m, "f", json_integer((json_int_t)F));
    json_object_set_new(m, "n_features", json_integer((json_int_t)nsel));
    json_object_set_new(m, "n_tokens", json_integer((json_int_t)n_tokens));
    json_object_set_new(m, "dead", json_integer((json_int_t)dead));
    json_object_set_new(m, "dense", json_integer((json_int_t)dense));
    json_object_set_new(m, "dense_threshold", json_real(0.1));
    json_object_set_new(m, "topk", topk_opts_json(o));
}

/* ---- options ---- */
typedef struct { const char *name; size_t off; } OptTab;
#define OPT(x) {#x, offsetof(TopkOpts, x)}
static const OptTab opt_tab[] = {OPT(K), OPT(W), OPT(R), OPT(NB), OPT(NPB)};

json_t *topk_opts_json(const TopkOpts *o)
{
    json_t *j = json_object();
    for (size_t i = 0; i < sizeof opt_tab / sizeof *opt_tab; i++)
        json_object_set_new(j, opt_tab[i].name, json_integer((json_int_t) * (const size_t *)((const char *)o + opt_tab[i].off)));
    json_object_set_new(j, "seed", json_integer((json_int_t)o->seed));
    return j;
}

int topk_opts_from_json(const json_t *j, TopkOpts *o)
{
    memset(o, 0, sizeof *o);
    for (size_t i = 0; i < sizeof opt_tab / sizeof *opt_tab; i++) {
        json_t *v = json_object_get(j, opt_tab[i].name);
        if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
        *(size_t *)((char *)o + opt_tab[i].off) = (size_t)json_integer_value(v);
    }
    json_t *s = json_object_get(j, "seed");
    if (!json_is_integer(s)) return -1;
    o->seed = (uint64_t)json_integer_value(s);
    return 0;
}
