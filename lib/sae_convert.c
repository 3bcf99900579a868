/* sae_convert.c: SAELens import and export (see sae_convert.h), with a
 * small safetensors writer; reading goes through lib/safetensors. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sae_convert.h"
#include "safetensors.h"

/* x (n) times scale to f, through a small buffer rather than a copy of x. */
static void write_scaled(FILE *f, const float *x, size_t n, float scale)
{
    enum { CHUNK = 16384 };
    float buf[CHUNK];
    if (scale == 1.0f) {
        fwrite(x, 4, n, f);
        return;
    }
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < m; j++) buf[j] = x[i + j] * scale;
        fwrite(buf, 4, m, f);
    }
}

int sae_st_write_f32(const char *path, const SAEStOut *t, size_t n, char *err, size_t errlen)
{
    json_t *h = json_object();
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t cnt = t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1);
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) json_array_append_new(shape, json_integer((json_int_t)t[i].shape[d]));
        json_object_set_new(h, t[i].name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", "F32", "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + 4 * cnt)));
        off += 4 * cnt;
    }
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    size_t jl = strlen(js), pad = (8 - jl % 8) % 8;
    size_t tl = strlen(path) + 16;
    char *tmp = xmalloc(tl);
    snprintf(tmp, tl, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f) {
        rc = sp_fail(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    uint64_t hl = jl + pad;
    unsigned char le[8];
    for (int b = 0; b < 8; b++) le[b] = (unsigned char)(hl >> (8 * b));
    fwrite(le, 1, 8, f);
    fwrite(js, 1, jl, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    for (size_t i = 0; i < n; i++) /* f32 little-endian: the host's layout on x86 and arm64 */
        write_scaled(f, t[i].data, t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1), t[i].scale);
    if (ferror(f) | fflush(f) | fsync(fileno(f))) rc = sp_fail(err, errlen, "%s: write failed: %s", path, strerror(errno));
    if (fclose(f) && !rc) rc = sp_fail(err, errlen, "%s: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) < 0) rc = sp_fail(err, errlen, "%s: rename: %s", path, strerror(errno));
    if (rc) unlink(tmp);
out:
    free(tmp);
    free(js);
    return rc;
}

/* "blocks.3.mlp.hook_post" -> 3, else -1 */
static long hook_layer(const char *hook)
{
    long l;
    return sscanf(hook, "blocks.%ld.", &l) == 1 ? l : -1;
}

int sae_export_saelens(const SAE *s, const char *dir, char *err, size_t errlen)
{
    size_t D = s->D, F = s->F;
    if (mkdir(dir, 0777) < 0 && errno != EEXIST) return sp_fail(err, errlen, "%s: %s", dir, strerror(errno));
    /* fold norm_scale so SAELens sees raw activations, as the file is written */
    float sc = (float)s->norm_scale, inv = (float)(1.0 / s->norm_scale);
    if (s->norm_scale == 1.0) sc = inv = 1.0f;
    SAE tmp = *s; /* sae_slots wants a mutable SAE for its slot pointers */
    SAESlot tab[SAE_SLOTS];
    SAEStOut t[SAE_SLOTS];
    size_t n = sae_slots(&tmp, tab);
    for (size_t i = 0; i < n; i++) {
        const char *nm = tab[i].name;
        float scale = !strcmp(nm, "W_enc") ? sc : !strcmp(nm, "W_dec") || !strcmp(nm, "b_dec") ? inv : 1.0f;
        t[i] = (SAEStOut){nm, *tab[i].slot, tab[i].cols ? 2 : 1, {tab[i].rows, tab[i].cols}, scale};
    }
    char *wpath = sp_path_join(dir, "sae_weights.safetensors"), *cpath = sp_path_join(dir, "cfg.json");
    int rc = sae_st_write_f32(wpath, t, n, err, errlen);
    if (!rc) {
        const char *arch = sae_arch_has_threshold(s->arch) ? "jumprelu" : s->arch == SAE_GATED ? "gated" : "standard";
        const char *fn = s->arch == SAE_TOPK ? "topk" : "relu";
        json_t *kw = s->arch == SAE_TOPK ? json_pack("{s:I}", "k", (json_int_t)s->K) : json_object();
        json_t *cfg = json_pack("{s:s,s:I,s:I,s:s,s:s,s:s,s:I,s:n,s:s,s:o,s:b,s:b,s:s,s:s,s:I,s:b,s:o,s:o}",
                                "architecture", arch, "d_in", (json_int_t)D, "d_sae", (json_int_t)F, "dtype",
                                "float32", "device", "cpu", "model_name", s->model, "hook_layer",
                                (json_int_t)hook_layer(s->hook), "hook_head_index", "hook_name", s->hook,
                                "activation_fn_kwargs", kw, "apply_b_dec_to_input", 1, "finetuning_scaling_factor",
                                0, "normalize_activations", "none", "dataset_path", "", "context_size",
                                (json_int_t)128, "prepend_bos", 1, "model_from_pretrained_kwargs", json_object(),
                                "saepipe",
                                json_pack("{s:s,s:I,s:f,s:f}", "arch", sae_arch_name(s->arch), "k",
                                          (json_int_t)s->K, "l1", s->l1, "norm_scale", s->norm_scale));
        json_object_set_new(cfg, "activation_fn_str", json_string(fn));
        if (sae_arch_has_k(s->arch)) json_object_set_new(cfg, "k", json_integer((json_int_t)s->K));
        if (s->arch == SAE_MATRYOSHKA) {
            json_t *m = sae_meta(s, NULL); /* the groups, as the SAE file has them */
            json_object_set(json_object_get(cfg, "saepipe"), "groups", json_object_get(m, "groups"));
            json_decref(m);
        }
        char *js = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(cfg);
        size_t jl = strlen(js);
        js = xrealloc(js, jl + 2);
        js[jl++] = '\n';
        if (sp_write_file_atomic(cpath, js, jl) < 0) rc = sp_fail(err, errlen, "%s: %s", cpath, strerror(errno));
        free(js);
    }
    free(wpath), free(cpath);
    return rc;
}

static long long cfg_int(const json_t *cfg, const char *key)
{
    const json_t *v = json_object_get(cfg, key);
    if (json_is_integer(v)) return json_integer_value(v);
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v))) return (long long)json_real_value(v);
    return -1;
}

/* The architecture and k of a SAELens cfg; our own export's "saepipe"
 * block names batchtopk and matryoshka, which SAELens saves as jumprelu. */
static int cfg_arch(const json_t *cfg, const char *cpath, SAEArch *arch, long long *k, char *err, size_t errlen)
{
    const char *a = json_string_value(json_object_get(cfg, "architecture"));
    const char *fn = json_string_value(json_object_get(cfg, "activation_fn_str"));
    long long kk = cfg_int(cfg, "k");
    if (kk < 0) kk = cfg_int(json_object_get(cfg, "activation_fn_kwargs"), "k");
    if (!a) a = "standard";
    SAEArch ours;
    int has_ours = sae_arch_parse(json_string_value(json_object_get(json_object_get(cfg, "saepipe"), "arch")), &ours) == 0;
    if (!strcmp(a, "standard") && (!fn || !strcmp(fn, "relu"))) {
        *arch = SAE_RELU, kk = 0;
    } else if ((!strcmp(a, "standard") && fn && !strcmp(fn, "topk")) || !strcmp(a, "topk")) {
        *arch = SAE_TOPK;
        if (kk <= 0) return sp_fail(err, errlen, "%s: a topk SAE needs k (activation_fn_kwargs.k or k)", cpath);
    } else if (!strcmp(a, "jumprelu") || !strcmp(a, "batchtopk") || !strcmp(a, "matryoshka_batchtopk")) {
        /* one inference map, a per-latent threshold; k only steered training */
        *arch = !strcmp(a, "batchtopk") ? SAE_BATCHTOPK : !strcmp(a, "jumprelu") ? SAE_JUMPRELU : SAE_MATRYOSHKA;
        if (has_ours && sae_arch_has_threshold(ours)) *arch = ours;
        if (!sae_arch_has_k(*arch)) kk = 0;
        else if (kk <= 0) kk = 1;
    } else if (!strcmp(a, "gated")) {
        *arch = SAE_GATED, kk = 0;
    } else {
        return sp_fail(err, errlen, "%s: architecture '%s'%s%s is not supported (standard relu, topk, jumprelu, "
                       "batchtopk, matryoshka_batchtopk, gated)", cpath, a, fn ? " with activation " : "", fn ? fn : "");
    }
    *k = kk;
    return 0;
}

/* matryoshka's groups: saepipe's, else SAELens' matryoshka_widths, else one level */
static void cfg_groups(SAE *s, const json_t *cfg)
{
    if (sae_groups_from_json(s, json_object_get(json_object_get(cfg, "saepipe"), "groups")) == 0) return;
    if (sae_groups_from_json(s, json_object_get(cfg, "matryoshka_widths")) == 0) return;
    s->ngroups = 1, s->groups[0] = s->F;
}

int sae_import_saelens(SAE *s, const char *dir, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    char *cpath = sp_path_join(dir, "cfg.json"), *wpath = sp_path_join(dir, "sae_weights.safetensors");
    json_error_t je;
    json_t *cfg = NULL;
    SafeTensors st = {0};
    int rc = -1;
    cfg = json_load_file(cpath, 0, &je);
    if (!cfg) {
        if (access(cpath, R_OK) < 0) sp_fail(err, errlen, "%s: %s", cpath, strerror(errno));
        else sp_fail(err, errlen, "%s: line %d: %s", cpath, je.line, je.text);
        goto out;
    }
    if (!json_is_object(cfg)) {
        sp_fail(err, errlen, "%s: not a JSON object", cpath);
        goto out;
    }
    long long D = cfg_int(cfg, "d_in"), F = cfg_int(cfg, "d_sae"), K = 0;
    if (D <= 0 || F <= 0) {
        sp_fail(err, errlen, "%s: d_in and d_sae must be positive integers", cpath);
        goto out;
    }
    SAEArch arch;
    if (cfg_arch(cfg, cpath, &arch, &K, err, errlen) < 0) goto out;
    const json_t *nav = json_object_get(cfg, "normalize_activations");
    const char *na = json_string_value(nav);
    if (nav && !json_is_null(nav) && !json_is_false(nav) && !(na && !strcmp(na, "none"))) {
        sp_fail(err, errlen, "%s: normalize_activations '%s' is not supported (fold the scaling factor into the weights first)",
             cpath, na ? na : "?");
        goto out;
    }
    if (st_open(&st, wpath) < 0) {
        sp_fail(err, errlen, "%s", st.err);
        goto out;
    }
    if (sae_alloc(s, arch, (size_t)D, (size_t)F, err, errlen) < 0) goto out;
    s->K = (size_t)K;
    if (K > F) {
        sp_fail(err, errlen, "%s: k %lld is more than d_sae %lld", cpath, K, F);
        goto out;
    }
    SAESlot tab[SAE_SLOTS];
    size_t nslot = sae_slots(s, tab);
    for (size_t i = 0; i < nslot; i++) {
        const StTensor *t = st_find(&st, tab[i].name);
        char desc[96];
        if (!t) {
            sp_fail(err, errlen, "%s: no tensor %s", wpath, tab[i].name);
            goto out;
        }
        int nd = tab[i].cols ? 2 : 1;
        if (t->ndim != nd || t->shape[0] != tab[i].rows || (nd == 2 && t->shape[1] != tab[i].cols) ||
            st_to_f32(t, *tab[i].slot) < 0) {
            char want[64];
            if (nd == 2) snprintf(want, sizeof want, "(%zu,%zu)", tab[i].rows, tab[i].cols);
            else snprintf(want, sizeof want, "(%zu)", tab[i].rows);
            sp_fail(err, errlen, "%s: %s is %s but d_in=%lld d_sae=%lld needs %s float", wpath, tab[i].name,
                 st_tensor_desc(t, desc, sizeof desc), D, F, want);
            goto out;
        }
    }
    for (size_t i = 0; i < nslot; i++)
        for (size_t q = 0; q < tab[i].rows * (tab[i].cols ? tab[i].cols : 1); q++)
            if (!isfinite((*tab[i].slot)[q])) {
                sp_fail(err, errlen, "%s: %s is not finite at %zu", wpath, tab[i].name, q);
                goto out;
            }
    if (arch == SAE_MATRYOSHKA) cfg_groups(s, cfg);
    /* apply_b_dec_to_input false: pre = x W_enc + b_enc; ours subtracts b_dec,
     * so b_enc (gated: b_gate, and b_mag through exp(r_mag)) gains b_dec W_enc */
    const json_t *ab = json_object_get(cfg, "apply_b_dec_to_input");
    if (json_is_false(ab))
        for (size_t j = 0; j < (size_t)F; j++) {
            double a = 0;
            for (size_t d = 0; d < (size_t)D; d++) a += (double)s->p.b_dec[d] * s->p.W_enc[d * F + j];
            s->p.b_enc[j] = (float)(s->p.b_enc[j] + a);
            if (arch == SAE_GATED) s->p.b_mag[j] = (float)(s->p.b_mag[j] + exp(s->p.r_mag[j]) * a);
        }
    const char *str = json_string_value(json_object_get(cfg, "hook_name"));
    snprintf(s->hook, sizeof s->hook, "%s", str ? str : "");
    str = json_string_value(json_object_get(cfg, "model_name"));
    snprintf(s->model, sizeof s->model, "%s", str ? str : "");
    /* our own export: restore arch, k, l1 and unfold norm_scale */
    const json_t *sp = json_object_get(cfg, "saepipe");
    if (json_is_object(sp)) {
        SAEArch a2;
        const json_t *ns = json_object_get(sp, "norm_scale"), *l1 = json_object_get(sp, "l1");
        if (sae_arch_parse(json_string_value(json_object_get(sp, "arch")), &a2) == 0 && a2 == arch) {
            long long k2 = cfg_int(sp, "k");
            if (k2 > 0 && k2 <= F && sae_arch_has_k(arch)) s->K = (size_t)k2;
        }
        if (json_is_number(l1)) s->l1 = json_number_value(l1);
        double sc = json_is_number(ns) ? json_number_value(ns) : 1.0;
        if (sc > 0 && isfinite(sc) && sc != 1.0) {
            float fs = (float)sc, inv = (float)(1.0 / sc);
            s->norm_scale = sc;
            for (size_t i = 0; i < (size_t)(D * F); i++) s->p.W_enc[i] *= inv, s->p.W_dec[i] *= fs;
            for (size_t d = 0; d < (size_t)D; d++) s->p.b_dec[d] *= fs;
        }
    }
    rc = 0;
out:
    if (rc < 0) sae_free(s);
    st_close(&st);
    json_decref(cfg);
    free(cpath), free(wpath);
    return rc;
}
