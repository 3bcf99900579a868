/* logits.h: the logit effects of SAE features: for each feature, the
 * output tokens its decoder direction promotes and suppresses most, as
 * the feature dashboards of sae_vis / SAEDashboard and Neuronpedia show
 * them ("positive / negative logits").
 *
 * For feature f with decoder row w = W_dec[f] (D, the hook's space):
 *   u = w / |w|                 the direction (norm_scale and the row's
 *                               norm cancel: directions are unit-free)
 *   r = u c_proj[layer]         for mlp.hook_pre / mlp.hook_post (D =
 *                               n_inner -> C); r = u for the C-wide hooks
 *   logit[t] = r . U[t]         U[t] = g * (wte[t] - mean_t' wte[t'])
 *                               centred over the C channels
 * with g = ln_f's weight. That is what SAEDashboard computes
 * (feature_resid_dir @ W_U on a TransformerLens model loaded with its
 * defaults fold_ln, center_writing_weights, center_unembed): ln_f's
 * gamma folded into W_U, W_U centred over the vocabulary, and the
 * direction centred over channels (TransformerLens centres c_proj's
 * output; ln_f centres any direction before scaling). ln_f's 1/sigma
 * depends on the token's residual and is left out, as they leave it
 * out: it scales a row and changes no ranking. Biases (c_proj's, ln_f's
 * beta) do not depend on the feature and are left out too. For
 * mlp.hook_pre the GELU is skipped: the direction is read as if the
 * neurons passed it through linearly.
 *
 * The product is one GEMM per chunk of features, (rows, C) x (C, V), in
 * row tiles (lib/gemm.h), then a top/bottom-K selection per row spread
 * over threads; (F, V) is never held: a chunk is at most 256 rows. */
#ifndef SP_LOGITS_H
#define SP_LOGITS_H

#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"
#include "sae.h"

typedef struct LogitEffects {
    size_t n, K;                /* features, tokens kept each way */
    int32_t *top_ids, *bot_ids; /* (n, K): largest first / smallest first */
    float *top_vals, *bot_vals; /* (n, K) */
} LogitEffects;

/* The effects of features sel[0..n) (ascending or not, each < s->F) of s
 * at s->hook of g, K tokens each way (K <= V). Checks that the SAE names a
 * hook of this model and that its width D is the hook's. Ties go to the
 * lower token id. 0, or -1 with the reason in err. */
int logit_effects(const GPT2 *g, const SAE *s, const int32_t *sel, size_t n, size_t K, LogitEffects *out,
                  char *err, size_t errlen) SP_RESULT_USED;
void logit_effects_free(LogitEffects *e);

#endif
