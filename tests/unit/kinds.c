/* Unit tests for lib/kinds.c: the kind of records of each name, of the old
 * name "acts" and of none, and the exact messages of the checks. */
#include <stdlib.h>
#include <string.h>

#include "kinds.h"
#include "tap.h"

/* rec := kind (NULL: none) and one tensor name of dtype dt and ndim dims of 2. */
static void make(TszRecord *rec, const char *kind, const char *name, TszDtype dt, int ndim)
{
    uint64_t shape[3] = {2, 2, 2};
    tsz_record_clear(rec);
    if (kind) json_object_set_new(rec->meta, "kind", json_string(kind));
    if (!tsz_record_add(rec, name, dt, ndim, shape)) abort();
}

int main(void)
{
    TszRecord rec;
    char err[512];
    tsz_record_init(&rec);
    static const struct {
        const char *kind, *name;
        TszDtype dt;
        int ndim;
        SpKind want;
    } cases[] = {
        {"acts", "acts", TSZ_F32, 2, SP_K_ACTS},          {"acts", "acts", TSZ_F32, 3, SP_K_CTX_ACTS},
        {"acts", "blocks.0.mlp.hook_post", TSZ_F32, 3, SP_K_HOOK_ACTS},
        {"acts", "tokens", TSZ_I32, 2, SP_K_HOOK_ACTS},   {NULL, "acts", TSZ_BF16, 2, SP_K_ACTS},
        {NULL, "acts", TSZ_F32, 3, SP_K_CTX_ACTS},        {NULL, "x", TSZ_F32, 2, SP_K_HOOK_ACTS},
        {NULL, "tokens", TSZ_I32, 2, SP_K_TOKENS},        {NULL, "tokens", TSZ_F32, 2, SP_K_TOKENS},
        {"hook_acts", "x", TSZ_F32, 3, SP_K_HOOK_ACTS},   {"ctx_acts", "acts", TSZ_F32, 3, SP_K_CTX_ACTS},
        {"features", "values", TSZ_F32, 1, SP_K_FEATURES}, {"sae_part", "W_enc", TSZ_F32, 2, 0},
        {"compare", "parent", TSZ_I32, 1, SP_K_COMPARE},  {"compare_summary", "x", TSZ_U8, 1, SP_K_COMPARE_SUMMARY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        make(&rec, cases[i].kind, cases[i].name, cases[i].dt, cases[i].ndim);
        SpKind k = sp_kind_of(&rec);
        ok(k == cases[i].want, "kind %s with %s of %d dims is '%s'", cases[i].kind ? cases[i].kind : "(none)",
           cases[i].name, cases[i].ndim, sp_kind_name(k));
    }

    make(&rec, "features", "values", TSZ_F32, 1);
    ok(sp_kind_check(&rec, SP_K_FEATURES, err, sizeof err) == 0, "the wanted kind passes");
    ok(sp_kind_check(&rec, SP_K_ACTS, err, sizeof err) < 0 &&
           !strcmp(err, "kind 'features' is not 'acts' (mlp-tap output)"),
       "another kind: %s", err);
    ok(sp_kind_check(&rec, SP_K_HOOK_ACTS | SP_K_ACTS | SP_K_CTX_ACTS, err, sizeof err) < 0 &&
           !strcmp(err, "kind 'features' is not 'hook_acts' (gpt2-fwd output), 'acts' (mlp-tap output) or "
                        "'ctx_acts' (mlp-tap --keep-context output)"),
       "three kinds listed: %s", err);
    ok(sp_kind_check(&rec, SP_K_FEATURE | SP_K_DICT_STATS, err, sizeof err) < 0 &&
           !strcmp(err, "kind 'features' is not 'feature' or 'dict_stats' (topk-ctx output)"),
       "one writer named once: %s", err);
    make(&rec, "acts", "acts", TSZ_F32, 3);
    ok(sp_kind_check(&rec, SP_K_ACTS, err, sizeof err) < 0 &&
           !strcmp(err, "kind 'acts' (read as 'ctx_acts': its 'acts' is 3-D) is not 'acts' (mlp-tap output)"),
       "the old name, read by its tensors: %s", err);
    make(&rec, "sae_part", "W_enc", TSZ_F32, 2);
    ok(sp_kind_check(&rec, SP_K_SAE, err, sizeof err) < 0 &&
           !strcmp(err, "kind 'sae_part' is not 'sae' (sae-fit or sae-convert output)"),
       "an unknown kind: %s", err);

    make(&rec, "acts", "acts", TSZ_I32, 2);
    ok(!sp_kind_tensor(&rec, SP_K_ACTS, NULL, err, sizeof err) &&
           !strcmp(err, "tensor 'acts' is (2,2) i32, want float (N,D) for kind 'acts'"),
       "wrong dtype: %s", err);
    make(&rec, "ctx_acts", "acts", TSZ_F16, 2);
    ok(!sp_kind_tensor(&rec, SP_K_CTX_ACTS, NULL, err, sizeof err) &&
           !strcmp(err, "tensor 'acts' is (2,2) f16, want float (B,T',D) for kind 'ctx_acts'"),
       "wrong shape: %s", err);
    make(&rec, "hook_acts", "blocks.0.mlp.hook_post", TSZ_BF16, 3);
    ok(sp_kind_tensor(&rec, SP_K_HOOK_ACTS, "blocks.0.mlp.hook_post", err, sizeof err) != NULL,
       "the hook's tensor of hook_acts");
    ok(!sp_kind_tensor(&rec, SP_K_HOOK_ACTS, "blocks.1.mlp.hook_post", err, sizeof err) &&
           !strcmp(err, "no tensor 'blocks.1.mlp.hook_post'"),
       "a missing hook: %s", err);
    ok(!sp_kind_tensor(&rec, SP_K_HOOK_ACTS, NULL, err, sizeof err) &&
           !strcmp(err, "no hook named to take from kind 'hook_acts'"),
       "hook_acts without a hook: %s", err);
    tsz_record_free(&rec);
    return done_testing();
}
