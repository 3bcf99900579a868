/* logits.c: the logit effects' selection and folding on hand-made weights
 * whose answers are known: ties go to the lower id, the decoder norm does
 * not matter, c_proj is applied for mlp hooks only, a zero row gives zeros,
 * and the refusals. (tests/t4110-topk-logits.sh checks real shapes against
 * numpy.) */
#include <string.h>

#include "logits.h"
#include "tap.h"

/* V = 6 tokens, C = 2 channels, one layer with a 3-wide MLP. The
 * unembedding rows, centred over tokens and channels, are (a, -a) with
 * a = +-0.5 alternating: a direction (1, 0) gives logits +-0.5, all tied. */
static float wte[6 * 2] = {1, 0, 0, 1, 1, 0, -1, 0, 0, -1, -1, 0};
static float lnfw[2] = {1, 1};
static float proj[3 * 2] = {1, 0, 0, 1, 0, 0};

static void model(GPT2 *g)
{
    memset(g, 0, sizeof *g);
    g->cfg = (GPT2Config){.max_seq_len = 8, .vocab_size = 6, .num_layers = 1, .num_heads = 1, .channels = 2,
                          .n_inner = 3, .ln_eps = 1e-5f};
    g->w.wte = g->w.lm_head = wte, g->w.lnfw = lnfw, g->w.fcprojw = proj;
}

static void sae(SAE *s, const char *hook, size_t D, float *W_dec, size_t F)
{
    memset(s, 0, sizeof *s);
    snprintf(s->hook, sizeof s->hook, "%s", hook);
    s->D = D, s->F = F, s->norm_scale = 7;
    s->p.W_dec = W_dec;
}

static int ids_are(const int32_t *got, const int32_t *want, size_t n)
{
    return !memcmp(got, want, n * sizeof *got);
}

int main(void)
{
    GPT2 g;
    SAE s;
    LogitEffects e;
    char err[256];
    model(&g);

    float resid[3 * 2] = {1, 0, 3, 0, 0, 0};   /* the same direction twice (norms 1 and 3), and a zero row */
    sae(&s, "blocks.0.hook_resid_post", 2, resid, 3);
    int32_t sel[3] = {0, 1, 2};
    ok(logit_effects(&g, &s, sel, 3, 6, &e, err, sizeof err) == 0, "a residual hook: computed");
    int32_t top[6] = {0, 2, 4, 1, 3, 5}, bot[6] = {1, 3, 5, 0, 2, 4}, zero[6] = {0, 1, 2, 3, 4, 5};
    ok(ids_are(e.top_ids, top, 6) && ids_are(e.bot_ids, bot, 6), "ties go to the lower id, both ways");
    ok(e.top_vals[0] == 0.5f && e.top_vals[3] == -0.5f && e.bot_vals[0] == -0.5f, "values +-0.5");
    ok(!memcmp(e.top_vals, e.top_vals + 6, 6 * sizeof(float)) && ids_are(e.top_ids + 6, top, 6),
       "the decoder row's norm (and norm_scale) changes nothing");
    ok(ids_are(e.top_ids + 12, zero, 6) && ids_are(e.bot_ids + 12, zero, 6) && e.top_vals[12] == 0 &&
       e.bot_vals[17] == 0, "a zero row: all logits 0, ids in order");
    logit_effects_free(&e);

    int32_t one = 1;
    ok(logit_effects(&g, &s, &one, 1, 2, &e, err, sizeof err) == 0 && e.n == 1 && e.K == 2 &&
       e.top_ids[0] == 0 && e.top_ids[1] == 2 && e.bot_ids[1] == 3, "K = 2 of a selected feature");
    logit_effects_free(&e);

    float mlp[2 * 3] = {0, 1, 0, 0, 0, 2};       /* through c_proj: (0, 1), and the third neuron writes nothing */
    sae(&s, "blocks.0.mlp.hook_post", 3, mlp, 2);
    int32_t both[2] = {0, 1};
    ok(logit_effects(&g, &s, both, 2, 3, &e, err, sizeof err) == 0, "an mlp hook: computed");
    int32_t flip[3] = {1, 3, 5};
    ok(ids_are(e.top_ids, flip, 3) && e.top_vals[0] == 0.5f, "mlp.hook_post goes through c_proj");
    ok(e.top_vals[3] == 0 && e.bot_vals[5] == 0, "a neuron c_proj ignores has no logit effect");
    logit_effects_free(&e);
    sae(&s, "blocks.0.mlp.hook_pre", 3, mlp, 2);
    ok(logit_effects(&g, &s, both, 2, 3, &e, err, sizeof err) == 0 && ids_are(e.top_ids, flip, 3),
       "mlp.hook_pre too (the GELU skipped)");
    logit_effects_free(&e);

    sae(&s, "blocks.0.hook_resid_post", 3, mlp, 2);
    ok(logit_effects(&g, &s, both, 2, 3, &e, err, sizeof err) < 0 &&
       !strcmp(err, "the SAE is d=3 wide but blocks.0.hook_resid_post of this model is 2 wide"), "width: %s", err);
    sae(&s, "", 2, resid, 3);
    ok(logit_effects(&g, &s, sel, 1, 3, &e, err, sizeof err) < 0 && strstr(err, "names no hook"), "no hook: %s", err);
    sae(&s, "blocks.1.hook_resid_post", 2, resid, 3);
    ok(logit_effects(&g, &s, sel, 1, 3, &e, err, sizeof err) < 0 && strstr(err, "the SAE's hook: "), "layer: %s", err);
    sae(&s, "blocks.0.hook_resid_post", 2, resid, 3);
    ok(logit_effects(&g, &s, sel, 1, 7, &e, err, sizeof err) < 0 &&
       !strcmp(err, "7 tokens each way, but the vocabulary has 6"), "K > V: %s", err);
    return done_testing();
}
