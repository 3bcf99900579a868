/* Unit tests for topkctx_logits (lib/topkctx.c): the logit effects that
 * topkctx_record writes read back as written; a record without them is
 * "absent"; each malformed set is refused with its own message. */
#include <stdlib.h>
#include <string.h>

#include "logits.h"
#include "tap.h"
#include "topkctx.h"

enum { F = 4, K = 3 };

/* Feature f's logit effects: ids 10f + k, values +-(K - k). */
static void make_effects(LogitEffects *e)
{
    *e = (LogitEffects){F, K, xmalloc(F * K * sizeof(int32_t)), xmalloc(F * K * sizeof(int32_t)),
                        xmalloc(F * K * sizeof(float)), xmalloc(F * K * sizeof(float))};
    for (size_t i = 0; i < F * K; i++) {
        e->top_ids[i] = (int32_t)(10 * (i / K) + i % K), e->bot_ids[i] = (int32_t)(10 * (i / K) + 5 + i % K);
        e->top_vals[i] = (float)(K - i % K), e->bot_vals[i] = -(float)(K - i % K);
    }
}

/* The record of feature 2 with logit effects; with and without them. */
static void round_trip(TszRecord *rec)
{
    TopkOpts o = {.K = 2, .W = 4, .R = 1, .NB = 1, .NPB = 1, .seed = 1};
    TopkCtx c;
    LogitEffects e;
    make_effects(&e);
    topkctx_init(&c, &o, F, NULL, 0);
    topkctx_record(&c, 2, rec, NULL, NULL);
    TopkLogits lg;
    char err[512] = "";
    ok(topkctx_logits(rec, 0, &lg, err, sizeof err) == 0 && lg.K == 0 && !lg.ids[0] && !err[0],
       "a record without logit effects: absent, K 0");
    c.logits = &e;
    topkctx_record(&c, 2, rec, NULL, NULL);
    int rc = topkctx_logits(rec, 50257, &lg, err, sizeof err);
    ok(rc == 1 && lg.K == K && !memcmp(lg.ids[0], e.top_ids + 2 * K, K * sizeof(int32_t)) &&
           !memcmp(lg.ids[1], e.bot_ids + 2 * K, K * sizeof(int32_t)) &&
           !memcmp(lg.vals[0], e.top_vals + 2 * K, K * sizeof(float)) &&
           !memcmp(lg.vals[1], e.bot_vals + 2 * K, K * sizeof(float)),
       "topkctx_record's logit effects read back as written (rc %d, K %zu)", rc, lg.K);
    topkctx_free(&c);
    logit_effects_free(&e);
}

/* A spoiled copy of a good record (spoil's what), read with vocabulary
 * size V: refused with message want. */
typedef struct { const char *what, *want; size_t V; } Case;

static void spoil(TszRecord *r, const char *what)
{
    static const char *const names[4] = {"logit_top_ids", "logit_top_vals", "logit_bot_ids", "logit_bot_vals"};
    uint64_t k[1] = {K}, short_k[1] = {K - 1}, col[2] = {K, 1}, none[1] = {0};
    int32_t *top = tsz_record_get(r, "logit_top_ids")->data;
    if (!strcmp(what, "short")) tsz_record_add(r, "logit_top_vals", TSZ_F32, 1, short_k);
    if (!strcmp(what, "k"))
        for (int s = 2; s < 4; s++) tsz_record_add(r, names[s], s % 2 ? TSZ_F32 : TSZ_I32, 1, short_k);
    if (!strcmp(what, "vals dtype")) tsz_record_add(r, "logit_bot_vals", TSZ_F16, 1, k);
    if (!strcmp(what, "rank")) tsz_record_add(r, "logit_top_ids", TSZ_I32, 2, col);
    if (!strcmp(what, "missing") && tsz_record_remove(r, "logit_top_vals") < 0) sp_die("no logit_top_vals");
    if (!strcmp(what, "negative")) top[1] = -7;
    if (!strcmp(what, "vocab")) top[2] = 100;
    if (!strcmp(what, "empty"))
        for (int s = 0; s < 4; s++) tsz_record_add(r, names[s], s % 2 ? TSZ_F32 : TSZ_I32, 1, none);
}

static void refusals(const TszRecord *good)
{
    static const Case cases[] = {
        {"short", "feature 2: \"logit_top_vals\" has length 2 but \"logit_top_ids\" has length 3", 0},
        {"k", "feature 2: \"logit_bot_ids\" has length 2 but \"logit_top_ids\" has length 3: K differs between the "
              "promoted and the suppressed tokens", 0},
        {"vals dtype", "feature 2: \"logit_bot_vals\" is (3) f16 but needs (K) f32", 0},
        {"rank", "feature 2: \"logit_top_ids\" is (3,1) i32 but needs (K) i32", 0},
        {"missing", "feature 2: no \"logit_top_vals\": topk-ctx --sae writes all four logit tensors, or none", 0},
        {"negative", "feature 2: \"logit_top_ids\"[1] is -7, not a token id", 0},
        {"vocab", "feature 2: \"logit_top_ids\"[2] is 100, outside the vocabulary [0, 100)", 100},
        {"empty", "feature 2: \"logit_top_ids\" is empty: K is at least 1", 0},
    };
    TszRecord r;
    tsz_record_init(&r);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tsz_record_clear(&r);
        json_object_update(r.meta, good->meta);
        for (size_t t = 0; t < good->n; t++)
            tsz_record_add_copy(&r, good->t[t].name, good->t[t].dtype, good->t[t].ndim, good->t[t].shape,
                                good->t[t].data);
        spoil(&r, cases[i].what);
        TopkLogits lg;
        char err[512] = "";
        int rc = topkctx_logits(&r, cases[i].V, &lg, err, sizeof err);
        ok(rc == -1 && !strcmp(err, cases[i].want), "%s: refused (%s)", cases[i].what, err);
    }
    tsz_record_free(&r);
    TopkLogits lg;
    char err[512];
    ok(topkctx_logits(good, 100, &lg, err, sizeof err) == 1, "ids below the vocabulary size pass");
}

int main(void)
{
    TszRecord rec;
    tsz_record_init(&rec);
    round_trip(&rec);
    refusals(&rec);
    tsz_record_free(&rec);
    return done_testing();
}
