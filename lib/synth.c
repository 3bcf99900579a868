/* synth.c: the synthetic model of synth.h: building it from a config,
 * drawing rows, the truth record, loading it back, and the statistics
 * that check the rows against the model. */
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kinds.h"
#include "synth.h"

void synth_config_default(SynthConfig *c)
{
    *c = (SynthConfig){
        .F = 128, .D = 32, .zipf_exp = 0.5, .p_max = 0.25, .p_min = 0.01,
        .corr_rank = 4, .corr_scale = 0.1,
        .h_roots = 4, .h_branch = 3, .h_depth = 2, .h_exclusive = 1, .h_scale = 1,
        .mag_start = 5.0, .mag_end = 4.0, .std_mean = 0.5, .std_std = 0.5,
        .bias = 0.5, .noise = 0.0, .seed = 42,
    };
}

int synth_config_preset(SynthConfig *c, const char *name)
{
    if (!strcmp(name, "small")) { synth_config_default(c); return 0; }
    if (strcmp(name, "synthsaebench")) return -1;
    /* SynthSAEBench-16k (SAELens docs, "SynthSAEBench"); see sae-synth(1)
     * for where the model differs. */
    synth_config_default(c);
    c->F = 16384, c->D = 768;
    c->zipf_exp = 0.5, c->p_max = 0.4, c->p_min = 5e-4;
    c->corr_rank = 25, c->corr_scale = 0.1;
    c->h_roots = 128, c->h_branch = 4, c->h_depth = 4;    /* their max_depth 3, below the root */
    return 0;
}

/* Features in the hierarchy: roots * (1 + b + ... + b^(depth-1)). */
static size_t hier_size(const SynthConfig *c)
{
    size_t n = 0, level = c->h_roots;
    for (size_t l = 0; l < c->h_depth; l++) n += level, level *= c->h_branch;
    return n;
}

int synth_config_check(const SynthConfig *c, char *err, size_t errlen)
{
    if (!c->F || !c->D) return sp_fail(err, errlen, "--features and --dim must be positive");
    if (!(c->p_min > 0 && c->p_min < c->p_max && c->p_max <= 1))
        return sp_fail(err, errlen, "need 0 < --p-min (%g) < --p-max (%g) <= 1", c->p_min, c->p_max);
    if (!(c->zipf_exp > 0)) return sp_fail(err, errlen, "--zipf %g must be positive", c->zipf_exp);
    if (c->h_roots && (!c->h_depth || (c->h_depth > 1 && !c->h_branch)))
        return sp_fail(err, errlen, "a hierarchy needs --depth >= 1 and, past depth 1, --branch >= 1");
    if (c->h_roots && c->h_depth > 16) return sp_fail(err, errlen, "--depth %zu is over 16", c->h_depth);
    size_t nh = c->h_roots ? hier_size(c) : 0;
    if (nh > c->F)
        return sp_fail(err, errlen, "the hierarchy needs %zu features but there are %zu (--features)", nh, c->F);
    if (c->corr_rank > c->F) return sp_fail(err, errlen, "--corr-rank %zu is over --features %zu", c->corr_rank, c->F);
    if (!(c->mag_start > 0 && c->mag_end > 0)) return sp_fail(err, errlen, "magnitudes must be positive");
    return 0;
}

/* The config as JSON and back: one table of the double and size fields. */
typedef struct { const char *key; size_t off; char t; } CfgField;   /* t: 'z' size_t, 'd' double, 'i' int, 'u' u64 */
#define CF(k, f, t) {k, offsetof(SynthConfig, f), t}
static const CfgField cfg_fields[] = {
    CF("features", F, 'z'), CF("dim", D, 'z'), CF("zipf", zipf_exp, 'd'), CF("p_max", p_max, 'd'),
    CF("p_min", p_min, 'd'), CF("corr_rank", corr_rank, 'z'), CF("corr_scale", corr_scale, 'd'),
    CF("roots", h_roots, 'z'), CF("branch", h_branch, 'z'), CF("depth", h_depth, 'z'),
    CF("exclusive", h_exclusive, 'i'), CF("scale_children", h_scale, 'i'), CF("mag_start", mag_start, 'd'),
    CF("mag_end", mag_end, 'd'), CF("std_mean", std_mean, 'd'), CF("std_std", std_std, 'd'),
    CF("bias", bias, 'd'), CF("noise", noise, 'd'), CF("seed", seed, 'u'),
};

json_t *synth_config_json(const SynthConfig *c)
{
    json_t *j = json_object();
    for (size_t i = 0; i < sizeof cfg_fields / sizeof *cfg_fields; i++) {
        const CfgField *f = &cfg_fields[i];
        const char *p = (const char *)c + f->off;
        json_t *v = f->t == 'z' ? json_integer((json_int_t)*(const size_t *)p)
                  : f->t == 'd' ? json_real(*(const double *)p)
                  : f->t == 'i' ? json_integer(*(const int *)p)
                  : json_integer((json_int_t)*(const uint64_t *)p);
        json_object_set_new(j, f->key, v);
    }
    return j;
}

int synth_config_from_json(SynthConfig *c, const json_t *j, char *err, size_t errlen)
{
    synth_config_default(c);
    if (!json_is_object(j)) return sp_fail(err, errlen, "meta 'config' is not an object");
    for (size_t i = 0; i < sizeof cfg_fields / sizeof *cfg_fields; i++) {
        const CfgField *f = &cfg_fields[i];
        json_t *v = json_object_get(j, f->key);
        if (!json_is_number(v)) return sp_fail(err, errlen, "meta 'config' has no number '%s'", f->key);
        char *p = (char *)c + f->off;
        if (f->t == 'd') *(double *)p = json_number_value(v);
        else if (json_integer_value(v) < 0 || !json_is_integer(v))
            return sp_fail(err, errlen, "meta 'config' '%s' must be a count", f->key);
        else if (f->t == 'z') *(size_t *)p = (size_t)json_integer_value(v);
        else if (f->t == 'i') *(int *)p = (int)json_integer_value(v);
        else *(uint64_t *)p = (uint64_t)json_integer_value(v);
    }
    return synth_config_check(c, err, errlen);
}

/* Normal deviates, Marsaglia's polar method (no trigonometry), two a draw. */
static double normal(SpRng *r, double *spare, int *have)
{
    if (*have) { *have = 0; return *spare; }
    double u, v, s;
    do {
        u = 2.0 * sp_rng_uniform(r) - 1.0, v = 2.0 * sp_rng_uniform(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double m = sqrt(-2.0 * log(s) / s);
    *spare = v * m, *have = 1;
    return u * m;
}

/* Phi^-1(p): Acklam's rational approximation, then one Halley step on erfc. */
static double norm_ppf(double p)
{
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                               1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                               6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                               -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    if (p <= 0) return -INFINITY;
    if (p >= 1) return INFINITY;
    double x, q = p < 0.5 ? p : 1 - p;
    if (q < 0.02425) {
        double t = sqrt(-2 * log(q));
        x = (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) /
            ((((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1);
        if (p > 0.5) x = -x;
    } else {
        double t = p - 0.5, r = t * t;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * t /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    }
    double e = 0.5 * erfc(-x / sqrt(2.0)) - p, u = e * sqrt(2 * M_PI) * exp(x * x / 2);
    return x - u / (1 + x * u / 2);
}

/* Each part of the model draws from its own stream, so changing one knob
 * (the copula's rank, say) leaves the directions as they were. */
enum { PART_DIRS = 1, PART_LOAD, PART_HIER, PART_MAG, PART_BIAS };
static void part_rng(SpRng *r, uint64_t seed, int part) { sp_rng_seed(r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)part); }

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void build_hierarchy(Synth *s)
{
    const SynthConfig *c = &s->cfg;
    size_t F = c->F, nh = c->h_roots ? hier_size(c) : 0;
    SpRng r;
    part_rng(&r, c->seed, PART_HIER);
    int32_t *perm = xmalloc(F * sizeof *perm);   /* the features of the trees: a random choice */
    for (size_t i = 0; i < F; i++) perm[i] = (int32_t)i;
    for (size_t i = 0; i < nh; i++) {
        size_t j = i + sp_rng_below(&r, F - i);
        int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    /* Parents more frequent than their children: the chosen features go to
     * the nodes in rank order, level by level, so a child's q = p/p_parent
     * stays below 1 and the compensation holds (but for exclusion). */
    qsort(perm, nh, sizeof *perm, cmp_i32);
    for (size_t i = 0; i < F; i++) s->parent[i] = -1;
    /* Level by level over all trees: order[] lists parents before children. */
    size_t at = 0, prev0 = 0, prevn = 0;
    for (size_t l = 0; l < (c->h_roots ? c->h_depth : 0); l++) {
        size_t start = at;
        if (!l) for (size_t k = 0; k < c->h_roots; k++) s->order[at] = perm[at], at++;
        else
            for (size_t k = prev0; k < prev0 + prevn; k++)
                for (size_t b = 0; b < c->h_branch; b++) s->order[at] = perm[at], s->parent[perm[at]] = s->order[k], at++;
        prev0 = start, prevn = at - start;
    }
    s->nh = nh;
    free(perm);
    /* children as CSR, in order[] order */
    for (size_t i = 0; i <= F; i++) s->kid_ptr[i] = 0;
    for (size_t i = 0; i < F; i++) if (s->parent[i] >= 0) s->kid_ptr[s->parent[i] + 1]++;
    for (size_t i = 0; i < F; i++) s->kid_ptr[i + 1] += s->kid_ptr[i];
    int32_t *fill = xmalloc(F * sizeof *fill);
    for (size_t i = 0; i < F; i++) fill[i] = s->kid_ptr[i];
    for (size_t k = 0; k < nh; k++) {
        int32_t f = s->order[k], p = s->parent[f];
        if (p >= 0) s->kids[fill[p]++] = f;
    }
    free(fill);
}

/* q and the per-row constants from p, parent and L. */
static void derive(Synth *s)
{
    size_t F = s->cfg.F, R = s->cfg.corr_rank;
    for (size_t i = 0; i < F; i++) {
        double q = s->p[i];
        if (s->parent[i] >= 0) q = q / s->p[s->parent[i]];   /* compensate for the parent's gate */
        s->q[i] = (float)(q > 1 ? 1 : q);
        double l2 = 0;
        for (size_t k = 0; k < R; k++) l2 += (double)s->L[i * R + k] * s->L[i * R + k];
        s->sd[i] = (float)sqrt(l2 < 1 ? 1 - l2 : 0);
        s->thr[i] = (float)norm_ppf(1 - s->q[i]);
    }
}

static void synth_alloc(Synth *s, const SynthConfig *c)
{
    size_t F = c->F, D = c->D, R = c->corr_rank, nh = c->h_roots ? hier_size(c) : 0;
    *s = (Synth){.cfg = *c};
    s->dirs = xmalloc_aligned(F * D * sizeof *s->dirs);
    s->bias = xcalloc(D, sizeof *s->bias);
    s->p = xmalloc(F * sizeof *s->p), s->q = xmalloc(F * sizeof *s->q);
    s->mean = xmalloc(F * sizeof *s->mean), s->std = xmalloc(F * sizeof *s->std);
    s->L = R ? xmalloc(F * R * sizeof *s->L) : NULL;
    s->parent = xmalloc(F * sizeof *s->parent);
    s->order = xmalloc((nh ? nh : 1) * sizeof *s->order);
    s->kid_ptr = xmalloc((F + 1) * sizeof *s->kid_ptr), s->kids = xmalloc((nh ? nh : 1) * sizeof *s->kids);
    s->thr = xmalloc(F * sizeof *s->thr), s->sd = xmalloc(F * sizeof *s->sd);
    s->a = xmalloc(F * sizeof *s->a), s->on = xmalloc(F);
    s->g = xmalloc((R ? R : 1) * sizeof *s->g);
}

int synth_build(Synth *s, const SynthConfig *c)
{
    char err[256];
    if (synth_config_check(c, err, sizeof err) < 0) {
        *s = (Synth){0};
        return SP_FAIL(s, "%s", err);
    }
    synth_alloc(s, c);
    size_t F = c->F, D = c->D, R = c->corr_rank;
    SpRng r;
    double spare; int have = 0;
    part_rng(&r, c->seed, PART_DIRS);
    for (size_t i = 0; i < F; i++) {        /* random unit directions: superposition when F > D */
        float *d = s->dirs + i * D;
        double n2 = 0;
        for (size_t k = 0; k < D; k++) d[k] = (float)normal(&r, &spare, &have), n2 += (double)d[k] * d[k];
        for (size_t k = 0; k < D; k++) d[k] = (float)(d[k] / sqrt(n2));
    }
    part_rng(&r, c->seed, PART_BIAS), have = 0;
    double n2 = 0;
    for (size_t k = 0; k < D; k++) s->bias[k] = (float)normal(&r, &spare, &have), n2 += (double)s->bias[k] * s->bias[k];
    for (size_t k = 0; k < D; k++) s->bias[k] = (float)(c->bias * s->bias[k] / sqrt(n2));
    part_rng(&r, c->seed, PART_LOAD), have = 0;
    for (size_t i = 0; i < F; i++) {        /* loadings; a row over norm 0.99 is shrunk to it */
        float *l = s->L ? s->L + i * R : NULL;
        double m2 = 0;
        for (size_t k = 0; k < R; k++) l[k] = (float)(c->corr_scale * normal(&r, &spare, &have)), m2 += (double)l[k] * l[k];
        for (size_t k = 0; k < R && m2 > 0.99 * 0.99; k++) l[k] = (float)(l[k] * 0.99 / sqrt(m2));
    }
    double top = pow(1.0, -c->zipf_exp), bot = pow((double)F, -c->zipf_exp);
    part_rng(&r, c->seed, PART_MAG), have = 0;
    for (size_t i = 0; i < F; i++) {        /* Zipf in rank, rescaled to [p_min, p_max] */
        double z = F > 1 ? (pow((double)(i + 1), -c->zipf_exp) - bot) / (top - bot) : 1.0;
        s->p[i] = (float)(c->p_min + (c->p_max - c->p_min) * z);
        s->mean[i] = (float)(c->mag_start + (c->mag_end - c->mag_start) * (F > 1 ? (double)i / (F - 1) : 0));
        s->std[i] = (float)fabs(c->std_mean + c->std_std * normal(&r, &spare, &have));
    }
    build_hierarchy(s);
    derive(s);
    synth_rows_seed(s, c->seed + 1);
    return 0;
}

void synth_free(Synth *s)
{
    free(s->dirs), free(s->bias), free(s->p), free(s->q), free(s->mean), free(s->std), free(s->L);
    free(s->parent), free(s->order), free(s->kid_ptr), free(s->kids);
    free(s->thr), free(s->sd), free(s->a), free(s->on), free(s->g);
    *s = (Synth){0};
}

void synth_rows_seed(Synth *s, uint64_t data_seed)
{
    sp_rng_seed(&s->rng, data_seed);
    s->have_spare = 0;
}

static double rnorm(Synth *s) { return normal(&s->rng, &s->spare, &s->have_spare); }

/* Which features fire in one row: the copula, then the hierarchy's gates. */
static void row_firing(Synth *s)
{
    size_t F = s->cfg.F, R = s->cfg.corr_rank;
    for (size_t k = 0; k < R; k++) s->g[k] = rnorm(s);
    for (size_t i = 0; i < F; i++) {
        if (!R) { s->on[i] = sp_rng_uniform(&s->rng) < s->q[i]; continue; }
        const float *l = s->L + i * R;
        double z = 0;
        for (size_t k = 0; k < R; k++) z += l[k] * s->g[k];
        s->on[i] = z + s->sd[i] * rnorm(s) > s->thr[i];
    }
    for (size_t k = 0; k < s->nh; k++) {      /* parents first: a child only with its parent */
        int32_t f = s->order[k], p = s->parent[f];
        if (p >= 0 && !s->on[p]) s->on[f] = 0;
        if (!s->on[f] || !s->cfg.h_exclusive) continue;
        int32_t n = 0, *kid = s->kids + s->kid_ptr[f], nk = s->kid_ptr[f + 1] - s->kid_ptr[f];
        for (int32_t j = 0; j < nk; j++) n += s->on[kid[j]];
        if (n < 2) continue;
        int32_t keep = (int32_t)sp_rng_below(&s->rng, (uint64_t)n);   /* one of the firing children */
        for (int32_t j = 0; j < nk; j++)
            if (s->on[kid[j]] && keep-- != 0) s->on[kid[j]] = 0;
    }
}

void synth_rows(Synth *s, size_t n, float *x, SpCsrBuf *b)
{
    size_t F = s->cfg.F, D = s->cfg.D;
    for (size_t r = 0; r < n; r++) {
        row_firing(s);
        for (size_t i = 0; i < F; i++) {
            double v = s->on[i] ? s->mean[i] + s->std[i] * rnorm(s) : 0.0;
            s->a[i] = (float)(v > 0 ? v : 0);
        }
        for (size_t k = 0; k < s->nh; k++) {    /* a child's magnitude follows its parent's */
            int32_t f = s->order[k], p = s->parent[f];
            if (p < 0 || !s->a[f]) continue;
            if (!s->a[p]) s->a[f] = 0;
            else if (s->cfg.h_scale) s->a[f] = s->a[f] * s->a[p] / s->mean[p];
        }
        float *xr = x + r * D;
        for (size_t k = 0; k < D; k++) xr[k] = s->bias[k];
        for (size_t i = 0; i < F; i++) {
            if (!s->a[i]) continue;
            const float *d = s->dirs + i * D;
            for (size_t k = 0; k < D; k++) xr[k] += s->a[i] * d[k];
        }
        if (s->cfg.noise > 0)
            for (size_t k = 0; k < D; k++) xr[k] += (float)(s->cfg.noise * rnorm(s));
        sparse_buf_append_dense(b, s->a, 1, F, NULL);
    }
}

void synth_truth_record(const Synth *s, TszRecord *rec)
{
    const SynthConfig *c = &s->cfg;
    tsz_record_clear(rec);
    json_object_set_new(rec->meta, "kind", json_string(SP_KIND_SYNTH_TRUTH));
    json_object_set_new(rec->meta, "f", json_integer((json_int_t)c->F));
    json_object_set_new(rec->meta, "d", json_integer((json_int_t)c->D));
    json_object_set_new(rec->meta, "config", synth_config_json(c));
    uint64_t fd[2] = {c->F, c->D}, f1[1] = {c->F}, d1[1] = {c->D}, fr[2] = {c->F, c->corr_rank};
    tsz_record_add_copy(rec, "dirs", TSZ_F32, 2, fd, s->dirs);
    tsz_record_add_copy(rec, "bias", TSZ_F32, 1, d1, s->bias);
    const struct { const char *name; const float *v; } vec[] = {{"p", s->p}, {"q", s->q}, {"mean", s->mean}, {"std", s->std}};
    for (size_t i = 0; i < sizeof vec / sizeof *vec; i++) tsz_record_add_copy(rec, vec[i].name, TSZ_F32, 1, f1, vec[i].v);
    tsz_record_add_copy(rec, "parent", TSZ_I32, 1, f1, s->parent);
    if (c->corr_rank) tsz_record_add_copy(rec, "loadings", TSZ_F32, 2, fr, s->L);
}

/* The file's tensor name, its shape, into dst; 0 or -1 (err). */
static int take(const TszRecord *rec, const char *path, const char *name, TszDtype dt, int ndim, const uint64_t *shape,
                void *dst, char *err, size_t errlen)
{
    const TszTensor *t = tsz_record_get(rec, name);
    char desc[96];
    if (!t) return sp_fail(err, errlen, "%s: the truth record has no tensor '%s'", path, name);
    int ok = t->dtype == dt && t->ndim == ndim;
    for (int k = 0; ok && k < ndim; k++) ok = t->shape[k] == shape[k];
    if (!ok) {
        TszTensor want = {.dtype = dt, .ndim = ndim};
        for (int k = 0; k < ndim; k++) want.shape[k] = shape[k];
        char wd[96];
        return sp_fail(err, errlen, "%s: %s is %s but its config needs %s", path, name,
                       tsz_tensor_desc(t, desc, sizeof desc), tsz_tensor_desc(&want, wd, sizeof wd));
    }
    memcpy(dst, t->data, t->nbytes);
    return 0;
}

int synth_load(Synth *s, const char *path, char *err, size_t errlen)
{
    *s = (Synth){0};
    TszReader *r = tsz_reader_open(path);
    TszRecord rec;
    tsz_record_init(&rec);
    int rc = -1;
    if (tsz_reader_error(r)) { sp_fail(err, errlen, "%s", tsz_reader_error(r)); goto out; }
    int got = tsz_read(r, &rec);
    if (got < 0) { sp_fail(err, errlen, "%s", tsz_reader_error(r)); goto out; }
    const char *kind = got ? json_string_value(json_object_get(rec.meta, "kind")) : NULL;
    if (!kind || strcmp(kind, SP_KIND_SYNTH_TRUTH)) {
        sp_fail(err, errlen, "%s: not a truth file (its first record is not kind 'synth_truth'; sae-synth --truth writes one)", path);
        goto out;
    }
    SynthConfig c;
    char e2[256];
    if (synth_config_from_json(&c, json_object_get(rec.meta, "config"), e2, sizeof e2) < 0) {
        sp_fail(err, errlen, "%s: %s", path, e2);
        goto out;
    }
    if (synth_build(s, &c) < 0) { sp_fail(err, errlen, "%s: %s", path, s->err); goto out; }
    /* The file is the truth: its tensors replace what the build computed
     * (the same on this machine; another libm may round otherwise). */
    int32_t *par = xmalloc(c.F * sizeof *par);
    uint64_t fd[2] = {c.F, c.D}, f1[1] = {c.F}, d1[1] = {c.D}, fr[2] = {c.F, c.corr_rank};
    if (take(&rec, path, "dirs", TSZ_F32, 2, fd, s->dirs, err, errlen) < 0 ||
        take(&rec, path, "bias", TSZ_F32, 1, d1, s->bias, err, errlen) < 0 ||
        take(&rec, path, "p", TSZ_F32, 1, f1, s->p, err, errlen) < 0 ||
        take(&rec, path, "mean", TSZ_F32, 1, f1, s->mean, err, errlen) < 0 ||
        take(&rec, path, "std", TSZ_F32, 1, f1, s->std, err, errlen) < 0 ||
        take(&rec, path, "parent", TSZ_I32, 1, f1, par, err, errlen) < 0 ||
        (c.corr_rank && take(&rec, path, "loadings", TSZ_F32, 2, fr, s->L, err, errlen) < 0)) {
        free(par);
        synth_free(s);
        goto out;
    }
    int same = !memcmp(par, s->parent, c.F * sizeof *par);
    free(par);
    if (!same) {
        sp_fail(err, errlen, "%s: its parent tensor is not the hierarchy of its config", path);
        synth_free(s);
        goto out;
    }
    derive(s);
    rc = 0;
out:
    tsz_record_free(&rec);
    tsz_reader_close(r);
    return rc;
}

/* ---- statistics ---- */
#define STATS_TOP 32
struct SynthStats {
    const Synth *s;
    uint64_t rows, nnz, hier_bad, excl_bad;
    uint64_t *fires;        /* (F) */
    int32_t top[STATS_TOP]; /* the most frequent free features */
    size_t M;
    int32_t *slot;          /* (F) place in top[] or -1 */
    uint64_t co[STATS_TOP * STATS_TOP];
    uint8_t *on;            /* (F) scratch */
};

static int is_free(const Synth *s, size_t i) { return s->parent[i] < 0 && s->kid_ptr[i + 1] == s->kid_ptr[i]; }

SynthStats *synth_stats_new(const Synth *s)
{
    SynthStats *st = xcalloc(1, sizeof *st);
    size_t F = s->cfg.F;
    st->s = s;
    st->fires = xcalloc(F, sizeof *st->fires);
    st->slot = xmalloc(F * sizeof *st->slot);
    st->on = xcalloc(F, 1);
    for (size_t i = 0; i < F; i++) {        /* features are in rank order: the first free ones are the most frequent */
        st->slot[i] = -1;
        if (st->M < STATS_TOP && is_free(s, i)) st->slot[i] = (int32_t)st->M, st->top[st->M++] = (int32_t)i;
    }
    return st;
}

void synth_stats_add(SynthStats *st, const SpCsr *t)
{
    const Synth *s = st->s;
    for (size_t r = 0; r < t->rows; r++) {
        int64_t a = t->indptr[r], b = t->indptr[r + 1];
        int32_t sl[STATS_TOP];
        size_t ns = 0;
        for (int64_t k = a; k < b; k++) {
            int32_t f = t->indices[k];
            st->on[f] = 1, st->fires[f]++;
            if (st->slot[f] >= 0) sl[ns++] = st->slot[f];
        }
        for (size_t i = 0; i < ns; i++)
            for (size_t j = 0; j < ns; j++) st->co[sl[i] * STATS_TOP + sl[j]]++;
        for (int64_t k = a; k < b; k++) {
            int32_t f = t->indices[k], p = s->parent[f];
            if (p >= 0 && !st->on[p]) st->hier_bad++;
            int32_t n = 0;
            for (int32_t j = s->kid_ptr[f]; j < s->kid_ptr[f + 1]; j++) n += st->on[s->kids[j]];
            if (s->cfg.h_exclusive && n > 1) st->excl_bad++;
        }
        for (int64_t k = a; k < b; k++) st->on[t->indices[k]] = 0;
        st->nnz += (uint64_t)(b - a);
    }
    st->rows += t->rows;
}

/* A number, or null for NaN (JSON has none). */

/* Least-squares slope of y on x over n points. */
static double slope(const double *x, const double *y, size_t n)
{
    double mx = 0, my = 0, sxx = 0, sxy = 0;
    for (size_t i = 0; i < n; i++) mx += x[i], my += y[i];
    if (n < 2) return NAN;
    mx /= n, my /= n;
    for (size_t i = 0; i < n; i++) sxx += (x[i] - mx) * (x[i] - mx), sxy += (x[i] - mx) * (y[i] - my);
    return sxy / sxx;
}

json_t *synth_stats_json(const SynthStats *st)
{
    const Synth *s = st->s;
    size_t F = s->cfg.F, R = s->cfg.corr_rank, n = 0;
    double N = (double)st->rows, l0_target = 0, zmax = 0;
    double *lx = xmalloc(F * sizeof *lx), *ly = xmalloc(F * sizeof *ly), *lt = xmalloc(F * sizeof *lt);
    for (size_t i = 0; i < F; i++) {
        l0_target += s->p[i];
        if (!is_free(s, i) || !st->fires[i]) continue;
        double f = st->fires[i] / N, p = s->p[i], z = fabs(f - p) / sqrt(p * (1 - p) / N);
        if (z > zmax) zmax = z;
        lx[n] = log((double)i + 1), ly[n] = log(f), lt[n] = log(p), n++;
    }
    /* The copula: among the most frequent free features, pairs whose latent
     * correlation L_i.L_j is over 0.1 in size should co-fire with its sign. */
    size_t pairs = 0, agree = 0;
    for (size_t i = 0; i < st->M; i++)
        for (size_t j = i + 1; j < st->M && R; j++) {
            const float *li = s->L + (size_t)st->top[i] * R, *lj = s->L + (size_t)st->top[j] * R;
            double rho = 0;
            for (size_t k = 0; k < R; k++) rho += (double)li[k] * lj[k];
            if (fabs(rho) <= 0.1) continue;
            double pi = st->co[i * STATS_TOP + i] / N, pj = st->co[j * STATS_TOP + j] / N;
            double phi = st->co[i * STATS_TOP + j] / N - pi * pj;
            pairs++, agree += (phi > 0) == (rho > 0);
        }
    json_t *j = json_object();
    json_object_set_new(j, "rows", json_integer((json_int_t)st->rows));
    json_object_set_new(j, "l0", json_real(st->nnz / N));
    json_object_set_new(j, "l0_target", json_real(l0_target));
    json_object_set_new(j, "free_features", json_integer((json_int_t)n));
    json_object_set_new(j, "slope", sp_json_real_or_null(slope(lx, ly, n)));
    json_object_set_new(j, "slope_target", sp_json_real_or_null(slope(lx, lt, n)));
    json_object_set_new(j, "freq_z_max", json_real(zmax));
    json_object_set_new(j, "hier_violations", json_integer((json_int_t)st->hier_bad));
    json_object_set_new(j, "excl_violations", json_integer((json_int_t)st->excl_bad));
    json_object_set_new(j, "corr_pairs", json_integer((json_int_t)pairs));
    json_object_set_new(j, "corr_agree", sp_json_real_or_null(pairs ? (double)agree / pairs : NAN));
    free(lx), free(ly), free(lt);
    return j;
}

void synth_stats_free(SynthStats *st)
{
    if (!st) return;
    free(st->fires), free(st->slot), free(st->on), free(st);
}
