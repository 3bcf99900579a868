/* sae.h: a sparse autoencoder as saepipe stores it, and its forward maps.
 * sae-fit writes it; sae-encode, gpt2-fwd --patch sae:FILE, recon-score
 * and sae-convert read it.
 *
 * File: a tensor stream holding one data record with f32 tensors
 *   W_enc (D,F), b_enc (F), W_dec (F,D), b_dec (D), and for batchtopk
 *   threshold (F); metadata: "kind":"sae", "arch" ("relu"|"topk"|"batchtopk"),
 *   "k" (topk/batchtopk), "l1", "d" (D), "f" (F), "hook", "model",
 *   "norm_scale" (inputs are multiplied by it before encoding; 1 if none),
 *   "tokens_seen", "best_step" and "val" (validation metrics of the kept
 *   checkpoint).
 *
 * Maps (x one input row of D, s = norm_scale):
 *   pre  = (s*x - b_dec) W_enc + b_enc                       (F)
 *   relu:      f = relu(pre)
 *   topk:      f = relu(pre) on the k largest entries of pre, 0 elsewhere
 *   batchtopk: f = pre where pre > threshold (and pre > 0), 0 elsewhere
 *   x_hat = (f W_dec + b_dec) / s                             (D)
 */
#ifndef SP_SAE_H
#define SP_SAE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SAE_RELU = 0, SAE_TOPK, SAE_BATCHTOPK } SAEArch;

typedef struct {
    float *W_enc;     /* (D,F) */
    float *b_enc;     /* (F) */
    float *W_dec;     /* (F,D) */
    float *b_dec;     /* (D) */
    float *threshold; /* (F), batchtopk only, else NULL */
} SAEParams;

typedef struct {
    SAEArch arch;
    size_t D, F, K;   /* K: top-k (topk/batchtopk), else 0 */
    double l1;
    double norm_scale;
    char hook[128];   /* e.g. "blocks.3.mlp.hook_post", or "" */
    char model[256];
    SAEParams p;      /* points into mem */
    float *mem;       /* one allocation for all parameters */
} SAE;

const char *sae_arch_name(SAEArch a);
int sae_arch_parse(const char *s, SAEArch *out);

/* Load an SAE file (tensor stream). 0, or -1 with a message in err
 * ("sae.tsz: W_enc is (256,512) but d=256 f=1024 needs (256,1024)"). */
int sae_load(SAE *s, const char *path, char *err, size_t errlen);
void sae_free(SAE *s);

/* f (N,F) = encoder of x (N,D), dense; x is raw (un-normalised) input. */
void sae_encode(const SAE *s, const float *x, size_t N, float *f);
/* x_hat (N,D) = decoder of f (N,F), in the raw input's scale. */
void sae_decode(const SAE *s, const float *f, size_t N, float *x_hat);
/* x_hat (N,D) = decode(encode(x)); scratch (N,F) floats supplied by caller. */
void sae_reconstruct(const SAE *s, const float *x, size_t N, float *scratch, float *x_hat);

#endif
