/* sae.c: the SAE file (load, save) and its forward maps. The layout and the
 * maps are documented in sae.h. */
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "kinds.h"
#include "parfor.h"
#include "parts.h"
#include "sae.h"
#include "stream.h"

static const char *const arch_names[SAE_NARCH] = {"relu", "topk", "batchtopk", "jumprelu", "gated", "matryoshka"};

const char *sae_arch_name(SAEArch a)
{
    return (unsigned)a < sizeof arch_names / sizeof *arch_names ? arch_names[a] : "?";
}

int sae_arch_parse(const char *s, SAEArch *out)
{
    for (size_t i = 0; i < sizeof arch_names / sizeof *arch_names; i++)
        if (s && !strcmp(s, arch_names[i])) { *out = (SAEArch)i; return 0; }
    return -1;
}

const char *sae_arch_list(void) { return "relu, topk, batchtopk, jumprelu, gated or matryoshka"; }

int sae_arch_has_k(SAEArch a) { return a == SAE_TOPK || a == SAE_BATCHTOPK || a == SAE_MATRYOSHKA; }

int sae_arch_has_threshold(SAEArch a) { return a == SAE_BATCHTOPK || a == SAE_MATRYOSHKA || a == SAE_JUMPRELU; }

size_t sae_slots(SAE *s, SAESlot tab[SAE_SLOTS])
{
    size_t n = 0, D = s->D, F = s->F;
    tab[n++] = (SAESlot){"W_enc", D, F, &s->p.W_enc};
    tab[n++] = (SAESlot){s->arch == SAE_GATED ? "b_gate" : "b_enc", F, 0, &s->p.b_enc};
    tab[n++] = (SAESlot){"W_dec", F, D, &s->p.W_dec};
    tab[n++] = (SAESlot){"b_dec", D, 0, &s->p.b_dec};
    if (sae_arch_has_threshold(s->arch)) tab[n++] = (SAESlot){"threshold", F, 0, &s->p.threshold};
    if (s->arch == SAE_GATED) {
        tab[n++] = (SAESlot){"r_mag", F, 0, &s->p.r_mag};
        tab[n++] = (SAESlot){"b_mag", F, 0, &s->p.b_mag};
    }
    return n;
}

/* Slot i of tab is W_enc, and the SAE is loaded without it (sae_load_decoder) */
static int skipped(const SAE *s, const SAESlot *tab, size_t i) { return s->no_encoder && tab[i].slot == &s->p.W_enc; }

/* sae_alloc; with no_enc, W_enc stays NULL and takes no memory */
static int alloc_slots(SAE *s, SAEArch arch, size_t D, size_t F, int no_enc, char *err, size_t errlen)
{
    SAESlot tab[SAE_SLOTS];
    memset(s, 0, sizeof *s);
    s->arch = arch, s->D = D, s->F = F, s->norm_scale = 1.0, s->no_encoder = no_enc;
    if (D == 0 || F == 0 || D > (1u << 20) || F > (1u << 26) || (uint64_t)D * F > (1ull << 36))
        return sp_fail(err, errlen, "bad SAE size d=%zu f=%zu", D, F);
    size_t n = sae_slots(s, tab), total = 0;
    for (size_t i = 0; i < n; i++)
        if (!skipped(s, tab, i)) total += tab[i].rows * (tab[i].cols ? tab[i].cols : 1);
    float *cur = s->mem = xmalloc_aligned(total * sizeof *cur);
    memset(cur, 0, total * sizeof *cur);
    for (size_t i = 0; i < n; i++) {
        if (skipped(s, tab, i)) continue;
        *tab[i].slot = cur;
        cur += tab[i].rows * (tab[i].cols ? tab[i].cols : 1);
    }
    return 0;
}

int sae_alloc(SAE *s, SAEArch arch, size_t D, size_t F, char *err, size_t errlen)
{
    return alloc_slots(s, arch, D, F, 0, err, errlen);
}

/* what tsz_read_parts does with the parts of a tensor not kept */
static void discard_rows(const void *ctx, uint64_t r0, uint64_t n, const void *src)
{
    (void)ctx, (void)r0, (void)n, (void)src;
}

void sae_free(SAE *s)
{
    if (!s) return;
    free(s->mem);
    memset(s, 0, sizeof *s);
}

/* A non-negative integer member of meta (key NULL: meta itself), or -1. */
static long long meta_uint(const json_t *meta, const char *key)
{
    const json_t *v = key ? json_object_get(meta, key) : meta;
    if (json_is_integer(v) && json_integer_value(v) >= 0) return json_integer_value(v);
    if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) == floor(json_real_value(v)))
        return (long long)json_real_value(v);
    return -1;
}

int sae_groups_from_json(SAE *s, const json_t *g)
{
    size_t n = json_array_size(g);
    if (!json_is_array(g) || n == 0 || n > SAE_MAX_GROUPS) return -1;
    for (size_t i = 0; i < n; i++) {
        long long v = meta_uint(json_array_get(g, i), NULL);
        if (v <= 0 || (size_t)v > s->F || (i && (size_t)v <= s->groups[i - 1])) return -1;
        s->groups[i] = (size_t)v;
    }
    if (s->groups[n - 1] != s->F) return -1;
    s->ngroups = n;
    return 0;
}

/* The SAE of the first record rec of r, and its parts from r. */
static int load_record(SAE *s, TszReader *r, const TszRecord *rec, const char *name, int no_enc, char *err,
                       size_t errlen)
{
    const json_t *m = rec->meta;
    char kerr[400];
    if (sp_kind_check(rec, SP_K_SAE, kerr, sizeof kerr) < 0)
        return sp_fail(err, errlen, "%s: not an SAE file: record 1: %s", name, kerr);
    SAEArch arch;
    const char *an = json_string_value(json_object_get(m, "arch"));
    if (sae_arch_parse(an, &arch) < 0)
        return sp_fail(err, errlen, "%s: unknown SAE arch '%s' (want %s)", name, an ? an : "", sae_arch_list());
    long long D = meta_uint(m, "d"), F = meta_uint(m, "f"), K = meta_uint(m, "k");
    if (D <= 0 || F <= 0) return sp_fail(err, errlen, "%s: meta d and f must be positive integers", name);
    if (sae_arch_has_k(arch) && (K <= 0 || K > F))
        return sp_fail(err, errlen, "%s: %s SAE needs meta k in 1..%lld", name, an, F);
    if (alloc_slots(s, arch, (size_t)D, (size_t)F, no_enc, err, errlen) < 0) return -1;
    s->K = sae_arch_has_k(arch) ? (size_t)K : 0;
    if (arch == SAE_MATRYOSHKA && sae_groups_from_json(s, json_object_get(m, "groups")) < 0)
        return sp_fail(err, errlen, "%s: matryoshka SAE needs meta groups, ascending sizes ending in f=%lld", name, F);
    const json_t *v = json_object_get(m, "l1");
    s->l1 = json_is_number(v) ? json_number_value(v) : 0;
    v = json_object_get(m, "norm_scale");
    s->norm_scale = json_is_number(v) ? json_number_value(v) : 1.0;
    if (!(s->norm_scale > 0) || !isfinite(s->norm_scale))
        return sp_fail(err, errlen, "%s: norm_scale must be a positive number", name);
    const char *str = json_string_value(json_object_get(m, "hook"));
    snprintf(s->hook, sizeof s->hook, "%s", str ? str : "");
    str = json_string_value(json_object_get(m, "model"));
    snprintf(s->model, sizeof s->model, "%s", str ? str : "");
    SAESlot tab[SAE_SLOTS];
    TszBig big[SAE_SLOTS];
    size_t n = sae_slots(s, tab);
    for (size_t i = 0; i < n; i++) {
        TszTensor ann;
        const TszTensor *t = tsz_parts_get(rec, tab[i].name, &ann);
        if (!t) return sp_fail(err, errlen, "%s: SAE has no tensor %s", name, tab[i].name);
        int want_nd = tab[i].cols ? 2 : 1;
        char desc[96];
        if (!tsz_dtype_is_float(t->dtype) || t->ndim != want_nd || t->shape[0] != tab[i].rows ||
            (want_nd == 2 && t->shape[1] != tab[i].cols)) {
            if (want_nd == 2)
                return sp_fail(err, errlen, "%s: %s is %s but d=%lld f=%lld needs (%zu,%zu) float", name,
                            tab[i].name, tsz_tensor_desc(t, desc, sizeof desc), D, F, tab[i].rows, tab[i].cols);
            return sp_fail(err, errlen, "%s: %s is %s but d=%lld f=%lld needs (%zu) float", name, tab[i].name,
                        tsz_tensor_desc(t, desc, sizeof desc), D, F, tab[i].rows);
        }
        big[i] = (TszBig){tab[i].name, TSZ_F32, want_nd, {tab[i].rows, tab[i].cols}, *tab[i].slot, NULL, NULL, NULL};
        if (skipped(s, tab, i)) big[i].store = discard_rows;   /* its shape checked, its parts read past */
        else if (t->data) tsz_to_f32(*tab[i].slot, t->data, t->dtype, tab[i].rows * (tab[i].cols ? tab[i].cols : 1));
    }
    /* the tensors that come in part records, and the end of the stream */
    if (tsz_read_parts(r, rec, big, n, err, errlen) < 0) return -1;
    for (size_t i = 0; i < n; i++) {
        size_t cnt = skipped(s, tab, i) ? 0 : tab[i].rows * (tab[i].cols ? tab[i].cols : 1);
        for (size_t j = 0; j < cnt; j++)
            if (!isfinite((*tab[i].slot)[j]))
                return sp_fail(err, errlen, "%s: %s has a non-finite value at %zu", name, tab[i].name, j);
    }
    return 0;
}

static int load_file(SAE *s, const char *path, int no_enc, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    const char *name = sp_in_name(path);
    TszReader *r = tsz_reader_open(path);
    TszRecord rec;
    tsz_record_init(&rec);
    int rc = -1;
    if (tsz_reader_error(r)) {
        sp_fail(err, errlen, "%s", tsz_reader_error(r));
        goto out;
    }
    int got = tsz_read(r, &rec);
    if (got < 0) {
        sp_fail(err, errlen, "%s", tsz_reader_error(r));
        goto out;
    }
    if (got == 0) {
        sp_fail(err, errlen, "%s: no SAE record in the stream", name);
        goto out;
    }
    rc = load_record(s, r, &rec, name, no_enc, err, errlen);
out:
    if (rc < 0) sae_free(s);
    tsz_record_free(&rec);
    tsz_reader_close(r);
    return rc;
}

int sae_load(SAE *s, const char *path, char *err, size_t errlen)
{
    return load_file(s, path, 0, err, errlen);
}

int sae_load_decoder(SAE *s, const char *path, char *err, size_t errlen)
{
    return load_file(s, path, 1, err, errlen);
}

/* The heap keeps the K best seen so far with the worst at the root;
 * "better" = larger value, then lower index. */
static int topk_better(const float *v, uint32_t a, uint32_t b)
{
    return v[a] > v[b] || (v[a] == v[b] && a < b);
}

static void heap_sift_down(const float *v, uint32_t *h, size_t K, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < K && topk_better(v, h[w], h[l])) w = l;
        if (r < K && topk_better(v, h[w], h[r])) w = r;
        if (w == i) return;
        uint32_t t = h[i];
        h[i] = h[w], h[w] = t, i = w;
    }
}

void sae_topk_row(const float *v, size_t n, size_t K, uint32_t *idx)
{
    if (K == 0) return;
    for (size_t i = 0; i < K; i++) idx[i] = (uint32_t)i;
    for (size_t i = K / 2; i-- > 0;) heap_sift_down(v, idx, K, i);
    float worst = v[idx[0]];
    for (size_t j = K; j < n; j++) {
        if (!(v[j] > worst)) continue;  /* equal values lose to the lower index already held */
        idx[0] = (uint32_t)j;
        heap_sift_down(v, idx, K, 0);
        worst = v[idx[0]];
    }
    /* heap sort: pop the worst to the back, so idx ends best first */
    for (size_t m = K; m > 1; m--) {
        uint32_t t = idx[0];
        idx[0] = idx[m - 1], idx[m - 1] = t;
        heap_sift_down(v, idx, m - 1, 0);
    }
}

/* pre (N,F) = (s*x - b_dec) W_enc + b (b NULL: 0), computed as s * x W_enc + c
 * with c = b - b_dec W_enc, so no (N,D) scratch is needed. */
static void sae_pre(const SAE *s, const float *b, const float *x, size_t N, SpRows L, float *pre)
{
    size_t D = s->D, F = s->F;
    float *c = xmalloc(F * sizeof *c);
    if (b) memcpy(c, b, F * sizeof *c);
    else memset(c, 0, F * sizeof *c);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)D, (int)F, -1.0f, s->p.W_enc, (int)F, s->p.b_dec, 1, 1.0f, c, 1);
    sp_gemm_rows(L, CblasNoTrans, CblasNoTrans, N, F, D, (float)s->norm_scale, x, D, s->p.W_enc, F, 0.0f, pre, F);
    for (size_t i = 0; i < N; i++) {
        float *row = pre + i * F;
        for (size_t j = 0; j < F; j++) row[j] += c[j];
    }
    free(c);
}

void sae_encode(const SAE *s, const float *x, size_t N, SpRows L, float *f)
{
    size_t F = s->F, K = s->K;
    sae_pre(s, s->arch == SAE_GATED ? NULL : s->p.b_enc, x, N, L, f);
    if (s->arch == SAE_RELU) {
        for (size_t i = 0; i < N * F; i++) f[i] = f[i] > 0 ? f[i] : 0;
    } else if (s->arch == SAE_GATED) {
        /* f holds z; the gate and the magnitude share it (sae.h) */
        const float *bg = s->p.b_enc, *rm = s->p.r_mag, *bm = s->p.b_mag;
        float *er = xmalloc(F * sizeof *er);
        for (size_t j = 0; j < F; j++) er[j] = expf(rm[j]);
        for (size_t i = 0; i < N; i++) {
            float *row = f + i * F;
            for (size_t j = 0; j < F; j++) {
                float mag = er[j] * row[j] + bm[j];
                row[j] = row[j] + bg[j] > 0 && mag > 0 ? mag : 0;
            }
        }
        free(er);
    } else if (sae_arch_has_threshold(s->arch)) {
        const float *th = s->p.threshold;
        for (size_t i = 0; i < N; i++) {
            float *row = f + i * F;
            for (size_t j = 0; j < F; j++) row[j] = (row[j] > th[j] && row[j] > 0) ? row[j] : 0;
        }
    } else {
        uint32_t *idx = xmalloc(K * sizeof *idx);
        float *val = xmalloc(K * sizeof *val);
        for (size_t i = 0; i < N; i++) {
            float *row = f + i * F;
            sae_topk_row(row, F, K, idx);
            for (size_t k = 0; k < K; k++) val[k] = row[idx[k]] > 0 ? row[idx[k]] : 0;
            memset(row, 0, F * sizeof *row);
            for (size_t k = 0; k < K; k++) row[idx[k]] = val[k];
        }
        free(idx);
        free(val);
    }
}

void sae_decode(const SAE *s, const float *f, size_t N, SpRows L, float *x_hat)
{
    size_t D = s->D, F = s->F;
    float inv = (float)(1.0 / s->norm_scale);
    sp_gemm_rows(L, CblasNoTrans, CblasNoTrans, N, D, F, inv, f, F, s->p.W_dec, D, 0.0f, x_hat, D);
    for (size_t i = 0; i < N; i++) {
        float *row = x_hat + i * D;
        for (size_t d = 0; d < D; d++) row[d] += s->p.b_dec[d] * inv;
    }
}

void sae_reconstruct(const SAE *s, const float *x, size_t N, SpRows L, float *scratch, float *x_hat)
{
    sae_encode(s, x, N, L, scratch);
    sae_decode(s, scratch, N, L, x_hat);
}

json_t *sae_meta(const SAE *s, const json_t *extra)
{
    json_t *m = json_object();
    json_object_set_new(m, "kind", json_string(SP_KIND_SAE));
    json_object_set_new(m, "arch", json_string(sae_arch_name(s->arch)));
    json_object_set_new(m, "k", json_integer((json_int_t)s->K));
    json_object_set_new(m, "l1", json_real(s->l1));
    json_object_set_new(m, "d", json_integer((json_int_t)s->D));
    json_object_set_new(m, "f", json_integer((json_int_t)s->F));
    json_object_set_new(m, "hook", json_string(s->hook));
    json_object_set_new(m, "model", json_string(s->model));
    json_object_set_new(m, "norm_scale", json_real(s->norm_scale));
    if (s->arch == SAE_MATRYOSHKA) {
        json_t *g = json_array();
        for (size_t i = 0; i < s->ngroups; i++) json_array_append_new(g, json_integer((json_int_t)s->groups[i]));
        json_object_set_new(m, "groups", g);
    }
    if (extra) json_object_update(m, (json_t *)extra);
    return m;
}

size_t sae_big(const SAE *s, TszBig big[SAE_SLOTS])
{
    SAE tmp = *s; /* sae_slots wants a mutable SAE for its slot pointers */
    SAESlot tab[SAE_SLOTS];
    size_t n = sae_slots(&tmp, tab);
    for (size_t i = 0; i < n; i++)
        big[i] = (TszBig){tab[i].name, TSZ_F32, tab[i].cols ? 2 : 1, {tab[i].rows, tab[i].cols}, *tab[i].slot,
                          NULL, NULL, NULL};
    return n;
}

int sae_write_big(TszWriter *w, const SAE *s, const TszBig *big, size_t n, const json_t *extra_meta, char *err,
                  size_t errlen)
{
    TszRecord rec;
    tsz_record_init(&rec);
    json_t *m = sae_meta(s, extra_meta);
    json_object_update(rec.meta, m);
    /* readers of the metadata alone (sae-report) find it in the header */
    json_object_update(tsz_writer_header(w), m);
    json_decref(m);
    int rc = tsz_write_parts(w, &rec, big, n, err, errlen);
    tsz_record_free(&rec);
    return rc;
}

int sae_write(TszWriter *w, const SAE *s, const json_t *extra_meta, char *err, size_t errlen)
{
    TszBig big[SAE_SLOTS];
    size_t n = sae_big(s, big);
    return sae_write_big(w, s, big, n, extra_meta, err, errlen);
}

/* An SAE's weights hardly compress (ratio ~1.15 shuffled): level 1 makes
 * files as small as level 3's from them (a 16384 x 2048 SAE: 232 MB
 * against 235) at 2.4 times the speed, and the writer's thread overlaps
 * the compression and the kernel's copy with packing the next part. */
void sae_write_opts(TszWriteOpts *o)
{
    tsz_write_opts_default(o);
    if (!getenv("TSZ_LEVEL")) o->level = 1;
    o->async = sp_par_threads() > 1;
}

int sae_save_as(const SAE *s, const char *path, const json_t *extra_meta, const char *stage, int argc,
                char **argv, char *err, size_t errlen)
{
    TszWriteOpts o;
    sae_write_opts(&o);
    TszWriter *w = tsz_writer_open(path, stage ? stage : "sae", argc, argv, &o);
    if (tsz_writer_error(w)) {
        sp_fail(err, errlen, "%s", tsz_writer_error(w));
        tsz_writer_abort(w);
        return -1;
    }
    if (sae_write(w, s, extra_meta, err, errlen) < 0) {
        tsz_writer_abort(w);
        return -1;
    }
    return tsz_writer_close(w, err, errlen);
}

int sae_save(const SAE *s, const char *path, json_t *extra_meta, char *err, size_t errlen)
{
    return sae_save_as(s, path, extra_meta, NULL, 0, NULL, err, errlen);
}
