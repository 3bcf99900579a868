/* gpt2.h: a GPT-2 family model (Hugging Face layout: config.json +
 * model.safetensors) and its forward pass on OpenBLAS, with activation
 * hooks named as TransformerLens names them.
 *
 * Three parts, as llama2.c keeps them: GPT2Config (the blueprint, from
 * config.json), GPT2Params (read-only weights: one f32 allocation, F16/BF16
 * widened once at load; the safetensors file is mmapped while loading),
 * GPT2Acts (scratch for the largest batch, allocated once by gpt2_alloc).
 *
 * Hooks. Every layer L has seven hook points, in forward order:
 *   blocks.L.hook_resid_pre    (B,T,C)  residual stream entering the block
 *   blocks.L.hook_attn_out     (B,T,C)  attention output (after c_proj + bias)
 *   blocks.L.hook_resid_mid    (B,T,C)  resid_pre + attn_out
 *   blocks.L.mlp.hook_pre      (B,T,4C) MLP pre-activation (c_fc + bias)
 *   blocks.L.mlp.hook_post     (B,T,4C) gelu_new(hook_pre): the MLP neurons
 *   blocks.L.hook_mlp_out      (B,T,C)  MLP output (after c_proj + bias)
 *   blocks.L.hook_resid_post   (B,T,C)  resid_mid + mlp_out
 * A GPT2Tap at a hook point can save a copy of the value and/or call a
 * function that may overwrite it in place (a patch: zero ablation, mean
 * ablation, an SAE reconstruction); the rest of the forward then runs on
 * the patched value, so losses under intervention use the same code path.
 *
 * Typical use (recon-score: clean run once, patched runs resumed at the
 * hook point so what comes before it is computed once):
 *   GPT2 g;  if (gpt2_open(&g, dir) || gpt2_alloc(&g, B, T, 1)) die(g.err);
 *   GPT2Hook h;  gpt2_hook_parse(&g.cfg, "blocks.3.mlp.hook_post", &h, err, n);
 *   GPT2Hook rp = gpt2_hook_resid(h);             // blocks.3.hook_resid_mid
 *   GPT2Tap clean[] = { {.hook = rp, .save = resid0}, {.hook = h, .save = x} };
 *   GPT2Run r = { .tokens = tok, .B = B, .T = T, .taps = clean, .ntaps = 2, .loss = l0 };
 *   gpt2_forward(&g, &r);                        // g.acts.logits holds clean logits
 *   GPT2Tap patch[] = { {.hook = h, .fn = my_patch, .ctx = &c} };
 *   GPT2Run p = { .tokens = tok, .B = B, .T = T, .taps = patch, .ntaps = 1, .loss = l1,
 *                 .resid_in = resid0, .resume = &h, .act_in = x };
 *   gpt2_forward(&g, &p);
 *   gpt2_close(&g);
 */
#ifndef SP_GPT2_H
#define SP_GPT2_H

#include <stddef.h>
#include <stdint.h>

#include "stream.h"
#include "util.h"

#define GPT2_BOS 50256

typedef struct {
    size_t max_seq_len;   /* n_positions: the longest window */
    size_t vocab_size;    /* V */
    size_t num_layers;    /* L */
    size_t num_heads;     /* NH */
    size_t channels;      /* C = n_embd */
    size_t n_inner;       /* MLP width, 4C unless config.json says otherwise */
    float ln_eps;         /* layer_norm_epsilon */
} GPT2Config;

/* All weights, f32, one allocation (GPT2.params_mem). Matrices keep the
 * Conv1D [in, out] layout of the checkpoint, stacked over layers, so
 * out = inp @ W is one sgemm with no transpose. */
typedef struct {
    float *wte;      /* (V, C) token embedding; also the unembedding when tied */
    float *wpe;      /* (maxT, C) position embedding */
    float *ln1w;     /* (L, C) */
    float *ln1b;     /* (L, C) */
    float *qkvw;     /* (L, C, 3C) c_attn */
    float *qkvb;     /* (L, 3C) */
    float *attprojw; /* (L, C, C) attn.c_proj */
    float *attprojb; /* (L, C) */
    float *ln2w;     /* (L, C) */
    float *ln2b;     /* (L, C) */
    float *fcw;      /* (L, C, 4C) mlp.c_fc */
    float *fcb;      /* (L, 4C) */
    float *fcprojw;  /* (L, 4C, C) mlp.c_proj */
    float *fcprojb;  /* (L, C) */
    float *lnfw;     /* (C) ln_f */
    float *lnfb;     /* (C) */
    float *lm_head;  /* (V, C): == wte when tied (no lm_head.weight, or identical) */
} GPT2Params;

/* Scratch for one forward of up to maxB windows of up to maxT tokens. */
typedef struct {
    float *resid;    /* (B, T, C) residual stream, updated in place */
    float *ln;       /* (B, T, C) layernorm output */
    float *qkv;      /* (B, T, 3C) */
    float *att;      /* (att_slots, T, T) attention probabilities, one (b, head) per worker */
    float *atty;     /* (B, T, C) attention values, heads concatenated */
    float *attn_out; /* (B, T, C) */
    float *fch;      /* (B, T, 4C) hook_pre */
    float *fch_gelu; /* (B, T, 4C) hook_post */
    float *mlp_out;  /* (B, T, C) */
    float *logits;   /* (B, T, V), only when gpt2_alloc(.., logits = 1), else NULL */
} GPT2Acts;

typedef struct {
    GPT2Config cfg;
    GPT2Params w;
    float *params_mem;    /* one allocation for all weights */
    size_t num_params;
    GPT2Acts acts;
    float *acts_mem;      /* one allocation for all scratch */
    size_t maxB, maxT;    /* what acts_mem holds */
    size_t att_slots;     /* attention scratches in acts.att: the threads at gpt2_alloc */
    int has_logits;
    char err[512];        /* message of the last failure */
} GPT2;

/* Load dir/config.json and dir/model.safetensors (or the shards of
 * dir/model.safetensors.index.json, see st_ckpt_open). Refuses non-GPT-2 configs
 * and checkpoints that do not match their config, naming the key and both
 * shapes. 0, or -1 with g->err. gpt2_close is safe after a failed open. */
int gpt2_open(GPT2 *g, const char *dir) SP_RESULT_USED;
/* Parse a config.json text into c. 0 or -1 with err. */
int gpt2_config_parse(GPT2Config *c, const char *json, const char *name, char *err, size_t errlen)
    SP_RESULT_USED;
/* (Re)allocate scratch for batches of up to B windows of up to T tokens;
 * logits = 1 also reserves (B,T,V) logits (needed for loss). 0 or -1. */
int gpt2_alloc(GPT2 *g, size_t B, size_t T, int logits) SP_RESULT_USED;
void gpt2_close(GPT2 *g);

/* ---- hooks ---- */
typedef enum {
    GPT2_HOOK_RESID_PRE = 0, GPT2_HOOK_ATTN_OUT, GPT2_HOOK_RESID_MID, GPT2_HOOK_MLP_PRE,
    GPT2_HOOK_MLP_POST, GPT2_HOOK_MLP_OUT, GPT2_HOOK_RESID_POST, GPT2_HOOK_NKIND
} GPT2HookKind;

typedef struct {
    size_t layer;
    GPT2HookKind kind;
} GPT2Hook;

/* "blocks.3.mlp.hook_post" -> {3, GPT2_HOOK_MLP_POST}; checks the layer
 * against c (c may be NULL to skip that). 0, or -1 with err. */
int gpt2_hook_parse(const GPT2Config *c, const char *name, GPT2Hook *h, char *err, size_t errlen)
    SP_RESULT_USED;
/* The TransformerLens name into buf; returns buf. */
const char *gpt2_hook_name(GPT2Hook h, char *buf, size_t len);
/* A record's `tokens` tensor as the model takes it: i32/i64 (rows,T) with
 * 0 < T <= n_positions. NULL with the reason in err otherwise. */
const TszTensor *gpt2_record_tokens(const GPT2Config *c, const TszRecord *rec, char *err, size_t errlen);
/* Width of the hook's value: n_inner for mlp.hook_pre/post, else C. */
size_t gpt2_hook_dim(const GPT2Config *c, GPT2Hook h);
/* Forward order: a total order on hook points (layer * 7 + kind). */
size_t gpt2_hook_index(GPT2Hook h);
/* The residual point whose value the residual stream holds at h (what a
 * forward resumed at h needs besides h's value): resid_pre for resid_pre
 * and attn_out, resid_mid for resid_mid and the three MLP points,
 * resid_post for itself. */
GPT2Hook gpt2_hook_resid(GPT2Hook h);

/* A function called at a hook point with the live value act (B*T rows of
 * D floats, row-major (B,T,D)); it may overwrite act in place. Return 0, or
 * -1 to abort the forward (gpt2_forward then fails with "hook NAME failed"). */
typedef int (*GPT2HookFn)(void *ctx, const char *hook, float *act, size_t B, size_t T, size_t D);

typedef struct {
    GPT2Hook hook;
    float *save;      /* if non-NULL: receives a copy (B,T,D) of the value, before fn */
    GPT2HookFn fn;    /* if non-NULL: called after save, may patch the value */
    void *ctx;
} GPT2Tap;
/* Several taps at one hook point run in array order (so a second tap with
 * .save after a patching tap sees the patched value). */

/* Ready-made patches. ctx NULL for zero; ctx = const float *mean (D) for mean. */
int gpt2_patch_zero(void *ctx, const char *hook, float *act, size_t B, size_t T, size_t D);
int gpt2_patch_mean(void *ctx, const char *hook, float *act, size_t B, size_t T, size_t D);

typedef struct {
    const int32_t *tokens;  /* (B, T) token ids in [0, V); needed for loss and
                               for the embedding (unless resid_in) */
    size_t B, T;            /* B <= maxB, T <= maxT and <= n_positions */
    const GPT2Tap *taps;    /* (ntaps), any order */
    size_t ntaps;
    int logits;             /* 1: final LN + unembedding into g->acts.logits (B,T,V) */
    float *loss;            /* (B, T-1) if non-NULL: -log p(tokens[b,t+1] | ..t)
                               (implies logits) */
    const float *resid_in;  /* (B, T, C) if non-NULL: skip the embedding and the
                               layers before start_layer; this is the value of
                               blocks.{start_layer}.hook_resid_pre */
    size_t start_layer;
    const GPT2Hook *resume; /* with resid_in, if non-NULL: start at this hook
                               point instead, mid-layer: resid_in is the value of
                               gpt2_hook_resid(*resume), act_in (B,T,D) the
                               point's own value (unused at a residual point);
                               the point's taps run first, then what follows it */
    const float *act_in;
} GPT2Run;

/* Run the forward. It stops after the last layer a tap needs unless
 * logits or loss are asked for, and skips the unembedding unless they are.
 * 0, or -1 with g->err (bad token id, window too long, batch larger than
 * gpt2_alloc reserved, a tap before start_layer, a hook fn failing). */
int gpt2_forward(GPT2 *g, const GPT2Run *r) SP_RESULT_USED;

/* Per-token losses from logits (B,T,V): loss (B,T-1). Exposed so callers
 * can score logits they hold (e.g. a cached clean run). Rows are spread
 * over sp_par_threads() threads; the result does not depend on the thread
 * count. */
void gpt2_token_loss(const float *logits, const int32_t *tokens, size_t B, size_t T, size_t V,
                     float *loss);

#endif
