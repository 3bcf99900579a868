/* report_features.c: topk-ctx feature records (and the explanations joined
 * to them) as the feature browser's JSON objects, one per feature, handed
 * to the page's buffer (one-page report) or to report_pages.c (side files).
 * The keys are short: a page of 1000 features is read by a browser at once.
 *   i id, e explanation, x status, er error, sc scorer, be backend,
 *   s/st/sr simulation scores, y detection or fuzzing scores,
 *   d density, n fired, nt tokens seen, mx max, mn mean activation,
 *   h activation histogram, lg logit effects, top/rnd/bands examples. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "report_int.h"
#include "stream.h"
#include "topkctx.h"

/* A (K,W) i32 tokens tensor and its (K,W) float activations: 1 present,
 * 0 both absent, -1 malformed. */
static int example_tensors(Report *r, TszReader *rd, const TszRecord *rec, const char *tn,
                           const char *an, const TszTensor **tok, const TszTensor **act)
{
    *tok = tsz_record_get(rec, tn);
    *act = tsz_record_get(rec, an);
    if (!*tok && !*act) return 0;
    const char *name = tsz_reader_name(rd);
    unsigned long long nr = (unsigned long long)tsz_reader_records(rd);
    if (!*tok || !*act)
        return SP_FAIL(r, "%s: record %llu: \"%s\" without \"%s\"", name, nr, *tok ? tn : an,
                    *tok ? an : tn);
    char b1[96], b2[96];
    if ((*tok)->dtype != TSZ_I32 || (*tok)->ndim != 2)
        return SP_FAIL(r, "%s: record %llu: \"%s\" is %s, not (K,W) i32", name, nr, tn,
                    tsz_tensor_desc(*tok, b1, sizeof b1));
    if (!tsz_dtype_is_float((*act)->dtype) || (*act)->ndim != 2 ||
        (*act)->shape[0] != (*tok)->shape[0] || (*act)->shape[1] != (*tok)->shape[1])
        return SP_FAIL(r, "%s: record %llu: \"%s\" is %s but \"%s\" is %s", name, nr, an,
                    tsz_tensor_desc(*act, b1, sizeof b1), tn, tsz_tensor_desc(*tok, b2, sizeof b2));
    return 1;
}

static double round_sig(double v, int digits)
{
    if (v == 0 || !isfinite(v)) return isfinite(v) ? v : 0;
    double m = pow(10, digits - 1 - (int)floor(log10(fabs(v))));
    return round(v * m) / m;
}

/* One example, cut to ctx_before tokens before its max and ctx_after after,
 * packed small (pages hold thousands of features): {"t": token ids, three
 * base-64 digits each, "a": activation levels round(63 a / max_act) clamped
 * to 0-63, one digit each (shading needs no more), "m": the example's max
 * activation, "src": [doc, offset]}. Ids past 64^3 (no GPT-2 vocabulary has
 * them) make "t" a plain array. */
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static json_t *example_json(const ReportOpts *o, const int32_t *tok, const float *a, size_t W,
                            double scale, const int64_t *src)
{
    size_t c = 0;
    for (size_t i = 1; i < W; i++)
        if (a[i] > a[c]) c = i;
    size_t lo = c > o->ctx_before ? c - o->ctx_before : 0;
    size_t hi = c + o->ctx_after + 1 < W ? c + o->ctx_after + 1 : W;
    char *t = xmalloc(3 * (hi - lo) + 1), *q = xmalloc(hi - lo + 1);
    size_t n = 0;
    int wide = 0;
    json_t *ta = json_array();
    for (size_t i = lo; i < hi; i++) {
        if (tok[i] < 0) continue;     /* padding */
        double lv = scale > 0 && isfinite(a[i]) ? round(63 * a[i] / scale) : 0;
        int l = lv < 0 ? 0 : lv > 63 ? 63 : (int)lv;
        int32_t id = tok[i];
        wide |= id >= 64 * 64 * 64;
        t[3 * n] = B64[(id >> 12) & 63], t[3 * n + 1] = B64[(id >> 6) & 63], t[3 * n + 2] = B64[id & 63];
        json_array_append_new(ta, json_integer(id));
        q[n++] = B64[l];
    }
    t[3 * n] = 0, q[n] = 0;
    json_t *ex = json_object();
    json_object_set_new(ex, "t", wide ? ta : json_string(t));
    if (!wide) json_decref(ta);
    json_object_set_new(ex, "a", json_string(q));
    json_object_set_new(ex, "m", json_real(round_sig(a[c], 4)));
    if (src) json_object_set_new(ex, "src", json_pack("[II]", (json_int_t)src[0], (json_int_t)src[1]));
    free(t);
    free(q);
    return ex;
}

/* Examples in stored order, at most keep of them; with band ids (K), at
 * most keep per band, each tagged "b". */
static json_t *examples_json(Report *r, const TszTensor *tok, const TszTensor *act,
                             const TszTensor *src, const int64_t *band, size_t keep, double scale)
{
    size_t K = tok->shape[0], W = tok->shape[1], kept = 0;
    float *a = xmalloc((W ? W : 1) * sizeof *a);
    json_t *arr = json_array(), *per = json_object();
    for (size_t k = 0; k < K && (band || kept < keep); k++) {
        if (band) {
            char key[32];
            snprintf(key, sizeof key, "%lld", (long long)band[k]);
            json_int_t c = json_integer_value(json_object_get(per, key));
            if ((size_t)c >= keep) continue;
            json_object_set_new(per, key, json_integer(c + 1));
        }
        kept++;
        const uint8_t *arow = (const uint8_t *)act->data + k * W * tsz_dtype_size(act->dtype);
        tsz_to_f32(a, arow, act->dtype, W);
        const int64_t *s = src ? (const int64_t *)src->data + 3 * k : NULL;
        json_t *ex = example_json(&r->o, (const int32_t *)tok->data + k * W, a, W, scale, s);
        if (band) json_object_set_new(ex, "b", json_integer((json_int_t)band[k]));
        json_array_append_new(arr, ex);
    }
    json_decref(per);
    free(a);
    return arr;
}

static void set_num(json_t *o, const char *key, const json_t *v, int digits)
{
    if (json_is_integer(v)) json_object_set_new(o, key, json_integer(json_integer_value(v)));
    else if (json_is_number(v)) json_object_set_new(o, key, json_real(round_sig(json_number_value(v), digits)));
}

/* A detection or fuzzing scorer's numbers, as "y": {"k": scorer, "ba",
 * "p", "r", "f1", "auc"}. */
static void yes_no_scores(json_t *f, const json_t *e)
{
    static const char *const scorers[] = {"detection", "fuzzing"};
    static const char *const keys[][2] = {{"balanced_accuracy", "ba"}, {"precision", "p"}, {"recall", "r"},
                                          {"f1", "f1"}, {"auroc", "auc"}};
    for (size_t i = 0; i < 2; i++) {
        const json_t *c = json_object_get(e, scorers[i]);
        if (!json_is_object(c)) continue;
        json_t *y = json_pack("{s:s}", "k", scorers[i]);
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) set_num(y, keys[k][1], json_object_get(c, keys[k][0]), 3);
        json_object_set_new(f, "y", y);
    }
}

/* The explanation's fields, joined into f. */
static void join_explanation(json_t *f, const json_t *e)
{
    static const char *const strs[][2] = {{"explanation", "e"}, {"status", "x"}, {"error", "er"},
                                          {"scorer", "sc"}, {"backend", "be"}};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        const char *s = json_string_value(json_object_get(e, strs[i][0]));
        if (s && (s[0] || strcmp(strs[i][1], "er"))) json_object_set_new(f, strs[i][1], json_string(s));
    }
    const char *st = json_string_value(json_object_get(e, "status"));
    if (st && !strcmp(st, "failed")) return;   /* a failed feature has no score */
    set_num(f, "s", json_object_get(e, "score"), 3);
    set_num(f, "st", json_object_get(e, "score_top"), 3);
    set_num(f, "sr", json_object_get(e, "score_random"), 3);
    yes_no_scores(f, e);
}

/* Put one feature (its explanation joined) into the browser's JSON; tt is
 * the most active token of its top example (-1: none), for the index. */
static int emit_feature(Report *r, long long id, json_t *f, int32_t tt)
{
    char key[32];
    snprintf(key, sizeof key, "%lld", id);
    json_object_set_new(f, "i", json_integer(id));
    const json_t *e = json_object_get(r->expl, key);
    if (e) join_explanation(f, e);
    json_object_set_new(r->seen, key, json_true());
    int rc = 0;
    if (!r->o.max_features || r->nfeat < r->o.max_features) {
        if (r->pages) {
            rc = report_pages_put(r, f, tt);
        } else {
            char *js = json_dumps(f, JSON_COMPACT | JSON_REAL_PRECISION(5));
            if (r->nfeat) fputc(',', r->feat_f);
            fputc('\n', r->feat_f);
            fputs(js, r->feat_f);
            free(js);
        }
        r->nfeat++;
    }
    json_decref(f);
    return rc;
}

int report_emit_unseen_explanations(Report *r)
{
    const char *key;
    json_t *v;
    json_object_foreach(r->expl, key, v) {
        if (json_object_get(r->seen, key)) continue;
        if (emit_feature(r, json_integer_value(json_object_get(v, "feature")), json_object(), -1) < 0) return -1;
    }
    return 0;
}

static void push_density(Report *r, double d)
{
    if (r->ndens == r->dens_cap) {
        r->dens_cap = r->dens_cap ? 2 * r->dens_cap : 1024;
        r->density = xrealloc(r->density, r->dens_cap * sizeof *r->density);
    }
    r->density[r->ndens++] = d;
}

/* The activation histogram (topk-ctx's act_hist, counts per bin, and
 * act_hist_edges, one more) as "h": {"c": counts, "e": edges} cut to the
 * bins from the first to the last non-empty one; an infinite last edge is
 * null. 0 (absent too), or -1 malformed. */
static int act_hist_json(Report *r, TszReader *rd, const TszRecord *rec, json_t *f)
{
    const TszTensor *h = tsz_record_get(rec, "act_hist"), *e = tsz_record_get(rec, "act_hist_edges");
    if (!h) return 0;
    size_t B = tsz_tensor_numel(h);
    if (h->ndim != 1 || !e || e->ndim != 1 || !tsz_dtype_is_float(e->dtype) || tsz_tensor_numel(e) != B + 1)
        return SP_FAIL(r, "%s: record %llu: \"act_hist\" needs \"act_hist_edges\", float, one value longer (%zu)",
                       tsz_reader_name(rd), (unsigned long long)tsz_reader_records(rd), B + 1);
    int64_t *c = xmalloc((B + 1) * sizeof *c);
    float *ed = xmalloc((B + 1) * sizeof *ed);
    tsz_convert(c, TSZ_I64, h->data, h->dtype, B);
    tsz_to_f32(ed, e->data, e->dtype, B + 1);
    size_t lo = 0, hi = B;
    while (lo < B && c[lo] <= 0) lo++;
    while (hi > lo && c[hi - 1] <= 0) hi--;
    if (hi > lo) {
        json_t *jc = json_array(), *je = json_array();
        for (size_t b = lo; b < hi; b++) json_array_append_new(jc, json_integer((json_int_t)c[b]));
        for (size_t b = lo; b <= hi; b++) json_array_append_new(je, sp_json_real_or_null(round_sig(ed[b], 4)));
        json_object_set_new(f, "h", json_pack("{s:o,s:o}", "c", jc, "e", je));
    }
    free(c);
    free(ed);
    return 0;
}

/* topk-ctx --sae's logit effects (read by topkctx_logits: the tokens the
 * feature's decoder direction promotes most and suppresses most) as "lg":
 * [["promoted", [[id, value], ...]], ["suppressed", ...]] in stored order.
 * 0 (absent too), or -1 malformed. */
static int logits_json(Report *r, TszReader *rd, const TszRecord *rec, json_t *f)
{
    static const char *const sides[2] = {"promoted", "suppressed"};
    TopkLogits lg;
    char err[512];
    int rc = topkctx_logits(rec, 0, &lg, err, sizeof err);
    if (rc < 0)
        return SP_FAIL(r, "%s: record %llu: %s", tsz_reader_name(rd), (unsigned long long)tsz_reader_records(rd), err);
    if (!rc) return 0;
    json_t *all = json_array();
    for (int s = 0; s < 2; s++) {
        json_t *a = json_array();
        for (size_t k = 0; k < lg.K; k++)
            json_array_append_new(a, json_pack("[i,f]", lg.ids[s][k], round_sig(lg.vals[s][k], 4)));
        json_array_append_new(all, json_pack("[s,o]", sides[s], a));
    }
    json_object_set_new(f, "lg", all);
    return 0;
}

/* The most active token of the first top example, -1 when none. */
static int32_t top_token(const TszTensor *tok, const TszTensor *act)
{
    size_t W = tok->shape[1];
    if (!tok->shape[0] || !W) return -1;
    float *a = xmalloc(W * sizeof *a);
    tsz_to_f32(a, act->data, act->dtype, W);
    size_t c = 0;
    for (size_t i = 1; i < W; i++)
        if (a[i] > a[c]) c = i;
    free(a);
    return ((const int32_t *)tok->data)[c];
}

int report_add_feature(Report *r, TszReader *rd, const TszRecord *rec)
{
    long long id;
    if (report_feature_id(r, rd, rec, &id) < 0) return -1;
    const json_t *m = rec->meta;
    const TszTensor *tt, *ta, *rt, *ra;
    int top = example_tensors(r, rd, rec, "top_tokens", "top_acts", &tt, &ta);
    int rnd = top < 0 ? -1 : example_tensors(r, rd, rec, "rand_tokens", "rand_acts", &rt, &ra);
    const TszTensor *bt = NULL, *ba = NULL, *bid = tsz_record_get(rec, "band_id");
    int bnd = rnd < 0 ? -1 : example_tensors(r, rd, rec, "band_tokens", "band_acts", &bt, &ba);
    if (top < 0 || rnd < 0 || bnd < 0) return -1;
    if (bnd && (!bid || bid->ndim != 1 || bid->shape[0] != bt->shape[0] ||
                (bid->dtype != TSZ_I32 && bid->dtype != TSZ_I64)))
        return SP_FAIL(r, "%s: record %llu: \"band_tokens\" needs \"band_id\" i32 or i64 (%llu)",
                    tsz_reader_name(rd), (unsigned long long)tsz_reader_records(rd),
                    (unsigned long long)bt->shape[0]);
    const TszTensor *src = tsz_record_get(rec, "top_src");
    if (src && (src->dtype != TSZ_I64 || src->ndim != 2 || src->shape[1] != 3 || !top ||
                src->shape[0] != tt->shape[0])) src = NULL;  /* optional: ignore if odd */
    json_t *ts = json_object_get(m, "token_strs");
    const char *k;
    json_t *v;
    json_object_foreach(ts, k, v)
        if (json_is_string(v) && !json_object_get(r->vocab, k)) json_object_set(r->vocab, k, v);

    json_t *f = json_object();
    if (act_hist_json(r, rd, rec, f) < 0 || logits_json(r, rd, rec, f) < 0) {
        json_decref(f);
        return -1;
    }
    double dens = NAN;
    if (json_is_number(json_object_get(m, "density"))) dens = json_number_value(json_object_get(m, "density"));
    else if (json_number_value(json_object_get(m, "n_tokens")) > 0)
        dens = json_number_value(json_object_get(m, "n_fired")) /
               json_number_value(json_object_get(m, "n_tokens"));
    if (isfinite(dens)) json_object_set_new(f, "d", json_real(round_sig(dens, 4)));
    set_num(f, "mx", json_object_get(m, "max_act"), 4);
    set_num(f, "mn", json_object_get(m, "mean_act"), 4);
    set_num(f, "n", json_object_get(m, "n_fired"), 15);
    set_num(f, "nt", json_object_get(m, "n_tokens"), 15);
    double scale = json_number_value(json_object_get(m, "max_act"));
    if (!(scale > 0) && top) {              /* no max given: the top example's */
        float *a = xmalloc(tsz_tensor_numel(ta) * sizeof *a + 4);
        tsz_to_f32(a, ta->data, ta->dtype, tsz_tensor_numel(ta));
        for (uint64_t i = 0; i < tsz_tensor_numel(ta); i++) if (a[i] > scale) scale = a[i];
        free(a);
    }
    if (top) json_object_set_new(f, "top", examples_json(r, tt, ta, src, NULL, r->o.max_top, scale));
    if (rnd) json_object_set_new(f, "rnd", examples_json(r, rt, ra, NULL, NULL, r->o.max_random, scale));
    if (bnd && r->o.max_band) {
        int64_t *ids = xmalloc(bid->shape[0] * sizeof *ids + 8);
        tsz_convert(ids, TSZ_I64, bid->data, bid->dtype, bid->shape[0]);
        json_object_set_new(f, "bands", examples_json(r, bt, ba, NULL, ids, r->o.max_band, scale));
        free(ids);
    }
    if (!r->dens_from_stats && isfinite(dens)) push_density(r, dens);
    return emit_feature(r, id, f, top ? top_token(tt, ta) : -1);
}

static double *tensor_f64(const TszTensor *t)
{
    size_t n = tsz_tensor_numel(t);
    float *f = xmalloc(n * sizeof *f + 4);
    double *d = xmalloc(n * sizeof *d + 8);
    tsz_to_f32(f, t->data, t->dtype, n);
    for (size_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

int report_add_dict_stats(Report *r, TszReader *rd, const TszRecord *rec)
{
    json_decref(r->dict_stats);
    r->dict_stats = json_deep_copy(rec->meta);
    const TszTensor *d = tsz_record_get(rec, "density");
    if (d && tsz_dtype_is_float(d->dtype) && d->ndim == 1) {
        free(r->density);
        r->density = tensor_f64(d);
        r->ndens = r->dens_cap = tsz_tensor_numel(d);
        r->dens_from_stats = 1;
    }
    const TszTensor *h = tsz_record_get(rec, "log10_density_hist"), *e = NULL;
    for (size_t i = 0; i < rec->n && h; i++)
        if (strstr(rec->t[i].name, "edge")) e = &rec->t[i];
    if (h && e) {
        if (h->ndim != 1 || e->ndim != 1 || tsz_tensor_numel(e) != tsz_tensor_numel(h) + 1)
            return SP_FAIL(r, "%s: dict_stats: \"%s\" needs one more value than \"%s\"",
                        tsz_reader_name(rd), e->name, h->name);
        free(r->hist_counts);
        free(r->hist_edges);
        r->hist_counts = tensor_f64(h);
        r->hist_edges = tensor_f64(e);
        r->nhist = tsz_tensor_numel(h);
    }
    return 0;
}
