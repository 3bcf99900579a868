/* compare_out.c: what sae-compare writes (compare.h): a "compare" record
 * per dictionary (per-feature matches, parents, children, breadth and
 * duplicates) and the summary: per dictionary and per neighbouring pair,
 * and the largest splitting trees with their explanations. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "kinds.h"

/* ---- per-dictionary figures ---- */
typedef struct {
    size_t live, explained, dup_exact, dup_near, broad, broad_density, broad_spread, fired;
    double dup_exact_n, dup_near_n;   /* shares among the first n explained (equal pools) */
} DictFig;

static int is_broad_spread(const Cmp *c, const CmpDict *d, size_t f)
{
    return (size_t)d->n_top[f] >= c->o.broad_min_top && d->spread[f] > c->o.broad_spread * d->n_top[f];
}

/* Duplicates among the first n explained features of d: shares exact, near. */
static void dup_at_n(const Cmp *c, const CmpDict *d, size_t n, double *ex, double *nr)
{
    char **s = xmalloc(n * sizeof *s + 1);
    size_t m = 0;
    for (size_t f = 0; f < d->F && m < n; f++)
        if (d->expl[f]) s[m++] = d->expl[f];
    int32_t *a = xmalloc(m * sizeof *a + 1), *b = xmalloc(m * sizeof *b + 1);
    cmp_duplicates(s, m, c->o.near_min, a, b);
    size_t ne = 0, nn = 0;
    for (size_t i = 0; i < m; i++) ne += a[i] >= 0, nn += b[i] >= 0;
    *ex = m ? (double)ne / m : NAN, *nr = m ? (double)nn / m : NAN;
    free(s), free(a), free(b);
}

static void dict_fig(const Cmp *c, const CmpDict *d, size_t n_equal, DictFig *g)
{
    *g = (DictFig){.dup_exact_n = NAN, .dup_near_n = NAN};
    for (size_t f = 0; f < d->F; f++) {
        if (d->fires) g->fired += d->fires[f] > 0;
        if (d->expl && d->expl[f]) g->explained++, g->dup_exact += d->dup_exact[f] >= 0, g->dup_near += d->dup_near[f] >= 0;
        if (!d->density || !(d->density[f] > 0)) continue;
        int bd = d->density[f] > c->o.broad_density, bs = is_broad_spread(c, d, f);
        g->live++, g->broad_density += bd, g->broad_spread += bs, g->broad += bd || bs;
    }
    if (d->expl && n_equal) dup_at_n(c, d, n_equal, &g->dup_exact_n, &g->dup_near_n);
}

static json_t *share(size_t k, size_t n)
{
    return n ? json_real((double)k / (double)n) : json_null();
}

static json_t *dict_json(const Cmp *c, const CmpDict *d, const DictFig *g)
{
    json_t *j = json_object();
    json_object_set_new(j, "label", json_string(d->label));
    json_object_set_new(j, "f", json_integer((json_int_t)d->F));
    json_object_set_new(j, "sae", json_string(d->path));
    json_object_set_new(j, "arch", json_string(sae_arch_name(d->sae.arch)));
    json_object_set_new(j, "k", json_integer((json_int_t)d->sae.K));
    if (c->N) json_object_set_new(j, "fired_in_sample", share(g->fired, d->F));
    if (d->density) {
        json_object_set_new(j, "live", json_integer((json_int_t)g->live));
        json_object_set_new(j, "broad", share(g->broad, g->live));
        json_object_set_new(j, "broad_density", share(g->broad_density, g->live));
        json_object_set_new(j, "broad_spread", share(g->broad_spread, g->live));
    }
    if (d->expl) {
        json_object_set_new(j, "explained", json_integer((json_int_t)g->explained));
        json_object_set_new(j, "dup_exact", share(g->dup_exact, g->explained));
        json_object_set_new(j, "dup_near", share(g->dup_near, g->explained));
        json_object_set_new(j, "dup_exact_equal_n", sp_json_real_or_null(g->dup_exact_n));
        json_object_set_new(j, "dup_near_equal_n", sp_json_real_or_null(g->dup_near_n));
    }
    json_object_set_new(j, "recon_score", sp_json_real_or_null(d->recon_score));
    json_object_set_new(j, "recon_fvu", sp_json_real_or_null(d->recon_fvu));
    json_object_set_new(j, "recon_l0", sp_json_real_or_null(d->recon_l0));
    return j;
}

/* mean of the finite v (n), of those with fires[i] > 0 when fires is given;
 * NaN when none */
static double mean_finite_where(const float *v, const int32_t *fires, size_t n)
{
    double s = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i]) && (!fires || fires[i] > 0)) s += v[i], m++;
    return m ? s / (double)m : NAN;
}

static double mean_finite(const float *v, size_t n) { return mean_finite_where(v, NULL, n); }

static json_t *pair_json(const Cmp *c, const CmpDict *a, const CmpDict *b)
{
    json_t *j = json_object();
    size_t kids = 0, parents = 0, split = 0, most = 0;
    for (size_t f = 0; f < b->F; f++) kids += b->parent[f] >= 0;
    for (size_t f = 0; f < a->F; f++) {
        size_t n = (size_t)a->n_children[f];
        parents += n > 0, split += n > 1, most = n > most ? n : most;
    }
    json_object_set_new(j, "small", json_string(a->label));
    json_object_set_new(j, "large", json_string(b->label));
    json_object_set_new(j, "mmcs_small", sp_json_real_or_null(mean_finite(a->side[1].dec_cos, a->F)));
    json_object_set_new(j, "mmcs_large", sp_json_real_or_null(mean_finite(b->side[0].dec_cos, b->F)));
    if (c->N) {
        /* a short run leaves most latents of a large dictionary dead, their
         * decoders near their random start: MMCS over the latents that fire
         * on the sample says how alike the trained ones are */
        json_object_set_new(j, "mmcs_small_fired",
                            sp_json_real_or_null(mean_finite_where(a->side[1].dec_cos, a->fires, a->F)));
        json_object_set_new(j, "mmcs_large_fired",
                            sp_json_real_or_null(mean_finite_where(b->side[0].dec_cos, b->fires, b->F)));
        json_object_set_new(j, "act_corr_small", sp_json_real_or_null(mean_finite(a->side[1].act_corr, a->F)));
        json_object_set_new(j, "act_corr_large", sp_json_real_or_null(mean_finite(b->side[0].act_corr, b->F)));
    }
    json_object_set_new(j, "children", share(kids, b->F));
    json_object_set_new(j, "with_children", share(parents, a->F));
    json_object_set_new(j, "split", share(split, a->F));
    json_object_set_new(j, "children_per_parent", parents ? json_real((double)kids / parents) : json_null());
    json_object_set_new(j, "max_children", json_integer((json_int_t)most));
    return j;
}

/* ---- trees: the roots of the smallest dictionary with most descendants ---- */
/* desc[i] (F of dictionary i): descendants of each latent in the larger ones */
static size_t **descendants(const Cmp *c)
{
    size_t **desc = xcalloc(c->n, sizeof *desc);
    for (size_t i = c->n; i-- > 0;) {
        const CmpDict *d = &c->d[i];
        desc[i] = xcalloc(d->F, sizeof **desc);
        if (i + 1 == c->n) continue;
        const CmpDict *b = &c->d[i + 1];
        for (size_t f = 0; f < b->F; f++)
            if (b->parent[f] >= 0) desc[i][b->parent[f]] += 1 + desc[i + 1][f];
    }
    return desc;
}

static json_t *node_json(const Cmp *c, size_t **desc, size_t i, int32_t f, int depth)
{
    const CmpDict *d = &c->d[i];
    json_t *j = json_object();
    json_object_set_new(j, "dict", json_string(d->label));
    json_object_set_new(j, "feature", json_integer(f));
    json_object_set_new(j, "descendants", json_integer((json_int_t)desc[i][f]));
    if (d->expl) json_object_set_new(j, "explanation", d->expl[f] ? json_string(d->expl[f]) : json_null());
    if (d->density) json_object_set_new(j, "density", sp_json_real_or_null(d->density[f]));
    if (i > 0 && depth) {
        json_object_set_new(j, "cos", sp_json_real_or_null(d->side[0].dec_cos[f]));
        json_object_set_new(j, "cover", sp_json_real_or_null(d->parent_cover[f]));
    }
    if (i + 1 == c->n || !d->n_children[f]) return j;
    const CmpDict *b = &c->d[i + 1];
    json_t *kids = json_array();
    size_t listed = 0;
    // children by descendants, most first (ties: lower id), up to tree_children
    uint8_t *used = xcalloc(b->F, 1);
    while (listed < c->o.tree_children) {
        int32_t best = -1;
        for (size_t g = 0; g < b->F; g++)
            if (b->parent[g] == f && !used[g] && (best < 0 || desc[i + 1][g] > desc[i + 1][best])) best = (int32_t)g;
        if (best < 0) break;
        used[best] = 1, listed++;
        json_array_append_new(kids, node_json(c, desc, i + 1, best, depth + 1));
    }
    free(used);
    json_object_set_new(j, "n_children", json_integer(d->n_children[f]));
    json_object_set_new(j, "children", kids);
    return j;
}

static json_t *trees_json(const Cmp *c)
{
    size_t **desc = descendants(c);
    const CmpDict *d = &c->d[0];
    json_t *t = json_array();
    uint8_t *used = xcalloc(d->F, 1);
    for (size_t r = 0; r < c->o.tree_roots; r++) {
        int32_t best = -1;
        for (size_t f = 0; f < d->F; f++)
            if (!used[f] && desc[0][f] && (best < 0 || desc[0][f] > desc[0][best])) best = (int32_t)f;
        if (best < 0) break;
        used[best] = 1;
        json_array_append_new(t, node_json(c, desc, 0, best, 0));
    }
    free(used);
    for (size_t i = 0; i < c->n; i++) free(desc[i]);
    free(desc);
    return t;
}

static json_t *rules_json(const Cmp *c)
{
    const CmpOpts *o = &c->o;
    json_t *j = json_pack("{s:f, s:f, s:f, s:f, s:f, s:I}", "cos_min", o->cos_min, "cover_min", o->cover_min,
                          "near_min", o->near_min, "broad_density", o->broad_density, "broad_spread", o->broad_spread,
                          "broad_min_top", (json_int_t)o->broad_min_top);
    char s[512];
    snprintf(s, sizeof s, "child c of p: p is c's best decoder match in the next smaller dictionary, cosine >= %g, "
             "and p fires on >= %g of the sample rows where c fires (when c fires on the sample)", o->cos_min,
             o->cover_min);
    json_object_set_new(j, "child", json_string(s));
    snprintf(s, sizeof s, "near duplicate: Jaccard of lowercased word sets (runs of ASCII letters and digits) >= %g",
             o->near_min);
    json_object_set_new(j, "near", json_string(s));
    snprintf(s, sizeof s, "broad: density > %g, or >= %zu top examples on distinct tokens for > %g of them",
             o->broad_density, o->broad_min_top, o->broad_spread);
    json_object_set_new(j, "broad", json_string(s));
    return j;
}

json_t *cmp_summary(const Cmp *c)
{
    json_t *j = json_object();
    json_object_set_new(j, "hook", json_string(c->hook));
    json_object_set_new(j, "d", json_integer((json_int_t)c->D));
    json_object_set_new(j, "sample_rows", json_integer((json_int_t)c->N));
    json_object_set_new(j, "acts", c->N ? json_string(c->acts_path) : json_null());
    json_object_set_new(j, "rules", rules_json(c));
    size_t n_equal = SIZE_MAX;
    for (size_t i = 0; i < c->n; i++) {
        size_t m = 0;
        for (size_t f = 0; c->d[i].expl && f < c->d[i].F; f++) m += c->d[i].expl[f] != NULL;
        if (c->d[i].expl && m < n_equal) n_equal = m;
    }
    json_object_set_new(j, "equal_n", json_integer(n_equal == SIZE_MAX ? 0 : (json_int_t)n_equal));
    json_t *ds = json_array(), *ps = json_array();
    for (size_t i = 0; i < c->n; i++) {
        DictFig g;
        dict_fig(c, &c->d[i], n_equal == SIZE_MAX ? 0 : n_equal, &g);
        json_array_append_new(ds, dict_json(c, &c->d[i], &g));
        if (i + 1 < c->n) json_array_append_new(ps, pair_json(c, &c->d[i], &c->d[i + 1]));
    }
    json_object_set_new(j, "dictionaries", ds);
    json_object_set_new(j, "pairs", ps);
    json_object_set_new(j, "trees", trees_json(c));
    return j;
}

/* ---- the stream ---- */
typedef struct { const char *name; TszDtype dt; const void *v; } CmpCol;

int cmp_write(Cmp *c, TszWriter *w)
{
    TszRecord rec;
    tsz_record_init(&rec);
    int ret = 0;
    for (size_t i = 0; i < c->n && !ret; i++) {
        const CmpDict *d = &c->d[i];
        const CmpCol cols[] = {
            {"dec_down_best", TSZ_I32, d->side[0].dec_best}, {"dec_down_cos", TSZ_F32, d->side[0].dec_cos},
            {"dec_up_best", TSZ_I32, d->side[1].dec_best},   {"dec_up_cos", TSZ_F32, d->side[1].dec_cos},
            {"act_down_best", TSZ_I32, d->side[0].act_best}, {"act_down_corr", TSZ_F32, d->side[0].act_corr},
            {"act_up_best", TSZ_I32, d->side[1].act_best},   {"act_up_corr", TSZ_F32, d->side[1].act_corr},
            {"parent", TSZ_I32, d->parent},                  {"parent_cover", TSZ_F32, d->parent_cover},
            {"n_children", TSZ_I32, d->n_children},          {"sample_fires", TSZ_I32, d->fires},
            {"density", TSZ_F32, d->density},                {"n_top", TSZ_I32, d->n_top},
            {"top_spread", TSZ_I32, d->spread},              {"dup_exact", TSZ_I32, d->dup_exact},
            {"dup_near", TSZ_I32, d->dup_near},
        };
        tsz_record_clear(&rec);
        uint64_t shape[1] = {d->F};
        for (size_t k = 0; k < sizeof cols / sizeof *cols; k++)
            if (cols[k].v) tsz_record_add_copy(&rec, cols[k].name, cols[k].dt, 1, shape, cols[k].v);
        json_t *m = rec.meta;
        json_object_set_new(m, "kind", json_string(SP_KIND_COMPARE));
        json_object_set_new(m, "dict", json_integer((json_int_t)i));
        json_object_set_new(m, "label", json_string(d->label));
        json_object_set_new(m, "f", json_integer((json_int_t)d->F));
        json_object_set_new(m, "d", json_integer((json_int_t)c->D));
        json_object_set_new(m, "sae", json_string(d->path));
        ret = tsz_write(w, &rec);
    }
    if (!ret) {
        tsz_record_clear(&rec);
        json_object_set_new(rec.meta, "kind", json_string(SP_KIND_COMPARE_SUMMARY));
        json_object_set_new(rec.meta, "summary", cmp_summary(c));
        ret = tsz_write(w, &rec);
    }
    tsz_record_free(&rec);
    if (ret) SP_FAIL(c, "%s", tsz_writer_error(w));
    return ret ? -1 : 0;
}
