/* neuronpedia.c: topk-ctx and explain-gpt4 records to Neuronpedia's
 * feature JSON layout (neuronpedia.h). Numbers are rounded to 3 decimals
 * as SAEDashboard's converter rounds them. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kinds.h"
#include "neuronpedia.h"
#include "topkctx.h"
#include "util.h"

/* Neuronpedia's name of the Bills et al. method explain-gpt4 follows. */
#define NP_TYPE_NAME "oai_token-act-pair"

static json_t *num3(double v)
{
    return json_real(isfinite(v) ? round(v * 1000) / 1000 : 0);   /* SAEDashboard writes NaN/inf as numbers too */
}

static int write_json(NpWriter *w, const char *rel, json_t *v)
{
    char *path = sp_path_join(w->dir, rel);
    char *s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(9));
    int rc = s && sp_write_file_atomic(path, s, strlen(s)) == 0 ? 0 : SP_FAIL(w, "%s: %s", path, strerror(errno));
    free(s), free(path);
    json_decref(v);
    return rc;
}

static int make_dir(NpWriter *w, const char *rel)
{
    char *p = rel ? sp_path_join(w->dir, rel) : strdup(w->dir);
    struct stat st;
    int rc = 0;
    if ((mkdir(p, 0777) < 0 && errno != EEXIST) || stat(p, &st) < 0) rc = SP_FAIL(w, "%s: %s", p, strerror(errno));
    else if (!S_ISDIR(st.st_mode)) rc = SP_FAIL(w, "%s: not a directory", p);
    free(p);
    return rc;
}

int np_open(NpWriter *w, const char *dir, const NpOpts *o, int force)
{
    memset(w, 0, sizeof *w);
    w->o = *o;
    w->dir = strdup(dir);
    w->expl = json_object(), w->feats = json_array(), w->expls = json_array(), w->files = json_array();
    char *man = sp_path_join(dir, "manifest.json");
    struct stat st;
    int exists = stat(man, &st) == 0;
    free(man);
    if (exists && !force)
        return SP_FAIL(w, "%s: holds an export already (manifest.json); -f replaces it", dir);
    if (make_dir(w, NULL) < 0 || make_dir(w, "features") < 0 || make_dir(w, "explanations") < 0) return -1;
    return 0;
}

int np_add_explanation(NpWriter *w, const TszRecord *rec)
{
    if (sp_kind_check(rec, SP_K_EXPLANATION, w->err, sizeof w->err) < 0) return -1;
    json_t *f = json_object_get(rec->meta, "feature");
    if (!json_is_integer(f) || json_integer_value(f) < 0) return SP_FAIL(w, "meta 'feature' is not an integer >= 0");
    char key[24];
    snprintf(key, sizeof key, "%lld", (long long)json_integer_value(f));
    json_t *keep = json_object();   /* copies: the record's meta is reused by the next read */
    static const char *const keys[] = {"explanation", "backend", "score"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        json_t *v = json_object_get(rec->meta, keys[i]);
        if (v) json_object_set_new(keep, keys[i], json_deep_copy(v));
    }
    json_object_set_new(w->expl, key, keep);
    return 0;
}

/* The display string of token id, or NULL with w->err. */
static const char *tok_str(NpWriter *w, const json_t *strs, long f, int32_t id)
{
    if (w->o.tok) {
        const char *s = w->o.tok(w->o.tok_ud, id);
        if (!s) SP_FAIL(w, "feature %ld: token %d is not in the tokenizer's vocabulary", f, id);
        return s;
    }
    char key[16];
    snprintf(key, sizeof key, "%d", id);
    const char *s = json_string_value(json_object_get(strs, key));
    if (!s) SP_FAIL(w, "feature %ld: token %d has no token_strs entry (topk-ctx --model gives them)", f, id);
    return s;
}

static const TszTensor *tensor(const TszRecord *rec, const char *name, TszDtype dt, int ndim)
{
    const TszTensor *t = tsz_record_get(rec, name);
    return t && t->dtype == dt && t->ndim == ndim ? t : NULL;
}

/* One example as Neuronpedia's activation: the window's tokens (padding
 * dropped) and values, with the bin it was drawn from. */
static json_t *activation(NpWriter *w, const json_t *strs, long f, const int32_t *tok, const float *act, size_t W,
                          double bmin, double bmax, double bcont)
{
    json_t *ts = json_array(), *vs = json_array();
    for (size_t i = 0; i < W; i++) {
        if (tok[i] < 0) continue;
        const char *s = tok_str(w, strs, f, tok[i]);
        if (!s) {
            json_decref(ts), json_decref(vs);
            return NULL;
        }
        json_array_append_new(ts, json_string(s));
        json_array_append_new(vs, num3(act[i]));
    }
    return json_pack("{s:o, s:o, s:o, s:o, s:o}", "bin_min", num3(bmin), "bin_max", num3(bmax), "bin_contains",
                     num3(bcont), "tokens", ts, "values", vs);
}

/* Top examples as SAEDashboard's "TOP ACTIVATIONS" group (bin -1 .. max,
 * contains -1); band b as an "INTERVAL" group: its examples' activation
 * range, holding 1/NB of the firing tokens (quantile bands). */
static int activations(NpWriter *w, const TszRecord *rec, const json_t *strs, long f, double max_act, json_t *out)
{
    static const char *const sets[2] = {"top", "band"};
    for (int s = 0; s < 2; s++) {
        char nt[32], na[32], ns[32];
        snprintf(nt, sizeof nt, "%s_tokens", sets[s]);
        snprintf(na, sizeof na, "%s_acts", sets[s]);
        snprintf(ns, sizeof ns, "%s_src", sets[s]);
        const TszTensor *tt = tensor(rec, nt, TSZ_I32, 2), *ta = tensor(rec, na, TSZ_F32, 2);
        const TszTensor *src = tensor(rec, ns, TSZ_I64, 2), *bid = s ? tensor(rec, "band_id", TSZ_I32, 1) : NULL;
        if (!tt || !ta || !src || memcmp(tt->shape, ta->shape, sizeof tt->shape) || src->shape[0] != tt->shape[0] ||
            (s && (!bid || bid->shape[0] != tt->shape[0])))
            return SP_FAIL(w, "feature %ld: no \"%s\", \"%s\", \"%s\"%s of one length (is this topk-ctx output?)", f,
                           nt, na, ns, s ? ", \"band_id\"" : "");
        size_t n = tt->shape[0], W = tt->shape[1];
        const int32_t *tok = tt->data, *ids = s ? bid->data : NULL;
        const float *act = ta->data;
        const int64_t *pos = src->data;
        for (size_t k = 0; k < n; k++) {
            double lo = -1, hi = max_act, cont = -1;
            if (s) {
                lo = INFINITY, hi = -INFINITY;
                for (size_t e = 0; e < n; e++) {
                    if (ids[e] != ids[k] || pos[3 * e + 2] < 0 || (size_t)pos[3 * e + 2] >= W) continue;
                    double v = act[e * W + (size_t)pos[3 * e + 2]];
                    if (v < lo) lo = v;
                    if (v > hi) hi = v;
                }
                cont = w->o.bands ? 1.0 / (double)w->o.bands : 0;
            }
            json_t *a = activation(w, strs, f, tok + k * W, act + k * W, W, lo, hi, cont);
            if (!a) return -1;
            json_array_append_new(out, a);
        }
    }
    return 0;
}

/* pos_/neg_ strings and values from topk-ctx --sae's logit effects (none: []);
 * a malformed set is an error, as in sae-report (both read it with
 * topkctx_logits). */
static int logits(NpWriter *w, const TszRecord *rec, const json_t *strs, long f, json_t *feat)
{
    static const char *const keys[2][2] = {{"pos_str", "pos_values"}, {"neg_str", "neg_values"}};
    TopkLogits lg;
    if (topkctx_logits(rec, w->o.vocab, &lg, w->err, sizeof w->err) < 0) return -1;
    for (int s = 0; s < 2; s++) {
        json_t *ss = json_array(), *vs = json_array();
        json_object_set_new(feat, keys[s][0], ss);
        json_object_set_new(feat, keys[s][1], vs);
        for (size_t k = 0; k < lg.K; k++) {
            const char *str = tok_str(w, strs, f, lg.ids[s][k]);
            if (!str) return -1;
            json_array_append_new(ss, json_string(str));
            json_array_append_new(vs, num3(lg.vals[s][k]));
        }
    }
    return 0;
}

/* The activation histogram of the firing tokens: the nonzero half-octave
 * bins of topk-ctx, each at its middle (the last, open bin at its lower
 * edge). */
static void histogram(const TszRecord *rec, json_t *feat)
{
    const TszTensor *h = tensor(rec, "act_hist", TSZ_I64, 1), *e = tensor(rec, "act_hist_edges", TSZ_F32, 1);
    json_t *vals = json_array(), *heights = json_array();
    if (h && e && e->shape[0] == h->shape[0] + 1) {
        const int64_t *c = h->data;
        const float *ed = e->data;
        for (uint64_t b = 0; b < h->shape[0]; b++) {
            if (!c[b]) continue;
            double mid = isfinite(ed[b + 1]) ? (ed[b] + ed[b + 1]) / 2.0 : ed[b];
            json_array_append_new(vals, num3(mid));
            json_array_append_new(heights, json_integer(c[b]));
        }
    }
    json_object_set_new(feat, "freq_hist_data_bar_values", vals);
    json_object_set_new(feat, "freq_hist_data_bar_heights", heights);
}

static void add_explanation(NpWriter *w, long f)
{
    char key[24], layer[64];
    snprintf(key, sizeof key, "%ld", f);
    const json_t *m = json_object_get(w->expl, key);
    const char *d = json_string_value(json_object_get(m, "explanation"));
    if (!d) return;   /* failed, dead, or not explained */
    snprintf(layer, sizeof layer, "%ld-%s", w->o.layer, w->o.sae_set);
    json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:s}", "modelId", w->o.model_id, "layer", layer, "index", key,
                          "description", d, "typeName", NP_TYPE_NAME);
    const char *backend = json_string_value(json_object_get(m, "backend"));
    if (backend) json_object_set_new(e, "explanationModelName", json_string(backend));
    const json_t *sc = json_object_get(m, "score");
    if (json_is_number(sc)) json_object_set_new(e, "scoreV1", num3(json_number_value(sc)));
    json_array_append_new(w->expls, e);
}

static int flush(NpWriter *w)
{
    if (!json_array_size(w->feats)) return 0;
    char rel[2][64];
    snprintf(rel[0], sizeof rel[0], "features/batch-%zu.json", w->nbatch);
    snprintf(rel[1], sizeof rel[1], "explanations/batch-%zu.json", w->nbatch);
    size_t nf = json_array_size(w->feats), ne = json_array_size(w->expls);
    json_t *b = json_pack("{s:s, s:I, s:s, s:O}", "model_id", w->o.model_id, "layer", (json_int_t)w->o.layer,
                          "sae_set", w->o.sae_set, "features", w->feats);
    if (write_json(w, rel[0], b) < 0 || write_json(w, rel[1], json_copy(w->expls)) < 0) return -1;
    json_array_append_new(w->files, json_pack("{s:s, s:I, s:s, s:I}", "features", rel[0], "n_features",
                                              (json_int_t)nf, "explanations", rel[1], "n_explanations", (json_int_t)ne));
    w->nfeat += nf, w->nexpl += ne, w->nbatch++;
    json_array_clear(w->feats), json_array_clear(w->expls);
    return 0;
}

int np_add_feature(NpWriter *w, const TszRecord *rec)
{
    if (sp_kind_check(rec, SP_K_FEATURE, w->err, sizeof w->err) < 0) return -1;
    const json_t *m = rec->meta, *jf = json_object_get(m, "feature"), *strs = json_object_get(m, "token_strs");
    if (!json_is_integer(jf) || json_integer_value(jf) < 0) return SP_FAIL(w, "meta 'feature' is not an integer >= 0");
    long f = (long)json_integer_value(jf);
    if (!json_is_object(strs) && !w->o.tok)
        return SP_FAIL(w, "feature %ld: no token_strs (run topk-ctx with --model, or give sae-export --model)", f);
    json_t *feat = json_pack("{s:I}", "feature_index", (json_int_t)f);
    static const char *const empty[] = {"neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
                                        "correlated_neurons_indices", "correlated_neurons_l1",
                                        "correlated_neurons_pearson", "correlated_features_indices",
                                        "correlated_features_l1", "correlated_features_pearson"};
    for (size_t i = 0; i < sizeof empty / sizeof *empty; i++) json_object_set_new(feat, empty[i], json_array());
    json_t *acts = json_array();
    if (logits(w, rec, strs, f, feat) < 0 ||
        activations(w, rec, strs, f, json_number_value(json_object_get(m, "max_act")), acts) < 0) {
        json_decref(feat), json_decref(acts);
        return -1;
    }
    json_object_set_new(feat, "frac_nonzero", json_real(json_number_value(json_object_get(m, "density"))));
    histogram(rec, feat);
    json_object_set_new(feat, "logits_hist_data_bar_heights", json_array());
    json_object_set_new(feat, "logits_hist_data_bar_values", json_array());
    json_object_set_new(feat, "n_prompts_total", json_integer(0));
    json_object_set_new(feat, "n_tokens_in_prompt", json_integer((json_int_t)w->o.window));
    json_object_set_new(feat, "dataset", json_string(w->o.dataset));
    json_object_set_new(feat, "decoder_weights_dist", json_array());
    json_object_set_new(feat, "activations", acts);
    json_array_append_new(w->feats, feat);
    add_explanation(w, f);
    return json_array_size(w->feats) >= w->o.batch ? flush(w) : 0;
}

int np_close(NpWriter *w)
{
    if (flush(w) < 0) return -1;
    json_t *man = json_pack("{s:s, s:I, s:s, s:I, s:I, s:O}", "model_id", w->o.model_id, "layer",
                            (json_int_t)w->o.layer, "sae_set", w->o.sae_set, "n_features", (json_int_t)w->nfeat,
                            "n_explanations", (json_int_t)w->nexpl, "batches", w->files);
    return write_json(w, "manifest.json", man);
}

void np_free(NpWriter *w)
{
    json_decref(w->expl), json_decref(w->feats), json_decref(w->expls), json_decref(w->files);
    free(w->dir);
    memset(w, 0, sizeof *w);
}
