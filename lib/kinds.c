/* kinds.c: record kinds and their one check (kinds.h). */
#include <string.h>

#include "dtype.h"
#include "kinds.h"
#include "util.h"

typedef struct {
    SpKind k;
    const char *name, *writer;   /* the writer as in "(WRITER output)" */
    size_t ndim;                 /* of the main tensor; 0: none checked */
    const char *shape;           /* of the main tensor, for messages */
} SpKindInfo;

static const SpKindInfo kinds[] = {
    {SP_K_TOKENS, SP_KIND_TOKENS, "gpt2-tok", 0, NULL},
    {SP_K_HOOK_ACTS, SP_KIND_HOOK_ACTS, "gpt2-fwd", 3, "(B,T,D)"},
    {SP_K_ACTS, SP_KIND_ACTS, "mlp-tap", 2, "(N,D)"},
    {SP_K_CTX_ACTS, SP_KIND_CTX_ACTS, "mlp-tap --keep-context", 3, "(B,T',D)"},
    {SP_K_FEATURES, SP_KIND_FEATURES, "sae-encode", 0, NULL},
    {SP_K_FEATURE, SP_KIND_FEATURE, "topk-ctx", 0, NULL},
    {SP_K_DICT_STATS, SP_KIND_DICT_STATS, "topk-ctx", 0, NULL},
    {SP_K_RECON, SP_KIND_RECON, "recon-score", 0, NULL},
    {SP_K_RECON_MEAN, SP_KIND_RECON_MEAN, "recon-score", 0, NULL},
    {SP_K_SAE, SP_KIND_SAE, "sae-fit or sae-convert", 0, NULL},
    {SP_K_EXPLANATION, SP_KIND_EXPLANATION, "explain-gpt4", 0, NULL},
    {SP_K_COMPARE, SP_KIND_COMPARE, "sae-compare", 0, NULL},
    {SP_K_COMPARE_SUMMARY, SP_KIND_COMPARE_SUMMARY, "sae-compare", 0, NULL},
};
#define NKINDS (sizeof kinds / sizeof *kinds)

static const SpKindInfo *info(SpKind k)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (kinds[i].k == k) return &kinds[i];
    return NULL;
}

const char *sp_kind_name(SpKind k)
{
    const SpKindInfo *f = info(k);
    return f ? f->name : "";
}

/* 1 when rec has a float tensor other than "tokens" (hook-named activations). */
static int has_float(const TszRecord *rec)
{
    for (size_t i = 0; i < rec->n; i++)
        if (tsz_dtype_is_float(rec->t[i].dtype) && strcmp(rec->t[i].name, "tokens")) return 1;
    return 0;
}

SpKind sp_kind_of(const TszRecord *rec)
{
    const char *s = json_string_value(json_object_get(rec->meta, "kind"));
    const TszTensor *a = tsz_record_get(rec, "acts");
    if (!s && !a && !has_float(rec)) return SP_K_TOKENS;
    if (!s || !strcmp(s, "acts")) return !a ? SP_K_HOOK_ACTS : a->ndim == 3 ? SP_K_CTX_ACTS : SP_K_ACTS;
    for (size_t i = 0; i < NKINDS; i++)
        if (!strcmp(s, kinds[i].name)) return kinds[i].k;
    return 0;
}

int sp_kind_check(const TszRecord *rec, unsigned want, char *err, size_t errlen)
{
    SpKind k = sp_kind_of(rec);
    if (k & want) return 0;
    // the old "acts" and no kind are read as one of the layouts; say which
    const char *s = json_string_value(json_object_get(rec->meta, "kind"));
    char as[64] = "", list[512] = "";
    if (k && (!s || strcmp(s, sp_kind_name(k)))) {
        /* and why: the layout is told by the tensors (sp_kind_of) */
        const char *why = k == SP_K_HOOK_ACTS ? ": no tensor 'acts'"
                          : k == SP_K_CTX_ACTS ? ": its 'acts' is 3-D"
                          : k == SP_K_ACTS     ? ": its 'acts' is not 3-D"
                          : k == SP_K_TOKENS   ? ": no activations in it"
                                               : "";
        snprintf(as, sizeof as, " (read as '%s'%s)", sp_kind_name(k), why);
    }
    // "'a' (w1 output), 'b' or 'c' (w2 output)": a writer once after its kinds
    const SpKindInfo *w[NKINDS];
    size_t n = 0;
    for (size_t i = 0; i < NKINDS; i++)
        if (kinds[i].k & want) w[n++] = &kinds[i];
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(list);
        int same = i + 1 < n && !strcmp(w[i]->writer, w[i + 1]->writer);
        snprintf(list + len, sizeof list - len, "%s'%s'%s%s%s", !i ? "" : i + 1 < n ? ", " : " or ", w[i]->name,
                 same ? "" : " (", same ? "" : w[i]->writer, same ? "" : " output)");
    }
    return sp_fail(err, errlen, "kind '%s'%s is not %s", s ? s : "", as, list);
}

const TszTensor *sp_kind_tensor(const TszRecord *rec, SpKind k, const char *name, char *err, size_t errlen)
{
    const SpKindInfo *f = info(k);
    if (!name || !*name) name = k == SP_K_HOOK_ACTS ? NULL : "acts";
    if (!name) return sp_fail(err, errlen, "no hook named to take from kind '%s'", SP_KIND_HOOK_ACTS), NULL;
    const TszTensor *t = tsz_record_get(rec, name);
    char desc[96];
    if (!t) return sp_fail(err, errlen, "no tensor '%s'", name), NULL;
    if (!f || !f->ndim) return t;
    if ((size_t)t->ndim != f->ndim || !tsz_dtype_is_float(t->dtype) || !t->shape[t->ndim - 1])
        return sp_fail(err, errlen, "tensor '%s' is %s, want float %s for kind '%s'", name,
                       tsz_tensor_desc(t, desc, sizeof desc), f->shape, f->name), NULL;
    return t;
}
