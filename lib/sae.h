/* sae.h: a sparse autoencoder as saepipe stores it, and its forward maps.
 * sae-fit writes it; sae-encode, gpt2-fwd --patch sae:FILE, recon-score
 * and sae-convert read it.
 *
 * File: a tensor stream whose one data record holds the f32 tensors
 *   W_enc (D,F), b_enc (F) (gated: b_gate), W_dec (F,D), b_dec (D), for
 *   batchtopk, matryoshka and jumprelu threshold (F), for gated r_mag (F)
 *   and b_mag (F), except those over the part size (W_enc and W_dec of a
 *   large SAE), which it announces and which follow in "sae_part" records
 *   of row ranges (parts.h, tsz(5)); metadata: "kind":"sae", "arch"
 *   ("relu"|"topk"|"batchtopk"|"jumprelu"|"gated"|"matryoshka"), "k"
 *   (topk/batchtopk/matryoshka), "groups" (matryoshka: the nested prefix
 *   sizes, the last F), "l1", "d" (D), "f" (F), "hook", "model",
 *   "norm_scale" (inputs are multiplied by it before encoding; 1 if none),
 *   "tokens_seen", "best_step" and "val" (validation metrics of the kept
 *   checkpoint).
 *
 * Maps (x one input row of D, s = norm_scale):
 *   pre  = (s*x - b_dec) W_enc + b_enc                       (F)
 *   relu:      f = relu(pre)
 *   topk:      f = relu(pre) on the k largest entries of pre, 0 elsewhere
 *   batchtopk, matryoshka, jumprelu:
 *              f = pre where pre > threshold (and pre > 0), 0 elsewhere
 *   gated:     z = (s*x - b_dec) W_enc,
 *              f = relu(exp(r_mag) z + b_mag) where z + b_gate > 0, else 0
 *   x_hat = (f W_dec + b_dec) / s                             (D)
 */
#ifndef SP_SAE_H
#define SP_SAE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "gemm.h"
#include "parts.h"
#include "stream.h"

typedef enum { SAE_RELU = 0, SAE_TOPK, SAE_BATCHTOPK, SAE_JUMPRELU, SAE_GATED, SAE_MATRYOSHKA } SAEArch;
#define SAE_NARCH 6
/* most matryoshka prefixes */
#define SAE_MAX_GROUPS 16

typedef struct {
    float *W_enc;     /* (D,F) */
    float *b_enc;     /* (F); gated: b_gate */
    float *W_dec;     /* (F,D) */
    float *b_dec;     /* (D) */
    float *threshold; /* (F), batchtopk, matryoshka and jumprelu, else NULL */
    float *r_mag;     /* (F), gated only, else NULL */
    float *b_mag;     /* (F), gated only, else NULL */
} SAEParams;

typedef struct {
    SAEArch arch;
    size_t D, F, K;   /* K: top-k (topk/batchtopk/matryoshka), else 0 */
    size_t ngroups;   /* matryoshka: prefix sizes, ascending, the last F */
    size_t groups[SAE_MAX_GROUPS];
    double l1;
    double norm_scale;
    char hook[128];   /* e.g. "blocks.3.mlp.hook_post", or "" */
    char model[256];
    SAEParams p;      /* points into mem */
    int no_encoder;   /* loaded by sae_load_decoder: p.W_enc is NULL */
    float *mem;       /* one allocation for all parameters */
} SAE;

const char *sae_arch_name(SAEArch a);
int sae_arch_parse(const char *s, SAEArch *out);
/* "relu, topk, ..., matryoshka": the names for messages */
const char *sae_arch_list(void);
/* k selects the latents in training (topk, batchtopk, matryoshka) */
int sae_arch_has_k(SAEArch a);
/* the inference map is a per-latent threshold (batchtopk, matryoshka, jumprelu) */
int sae_arch_has_threshold(SAEArch a);

/* The SAE's tensors in file order, the one table that allocation, load,
 * save and the SAELens conversion walk: name, shape (rows, cols; cols 0
 * for a vector) and the SAEParams field. SAE_SLOTS entries at most;
 * threshold, r_mag, b_mag as the arch has them. Returns the count. */
#define SAE_SLOTS 6
typedef struct { const char *name; size_t rows, cols; float **slot; } SAESlot;
size_t sae_slots(SAE *s, SAESlot tab[SAE_SLOTS]);

/* Allocate s->mem for arch, D, F (the arch's tensors, sae_slots) and point
 * s->p into it; parameters zeroed, norm_scale 1. 0 or -1 (err). */
int sae_alloc(SAE *s, SAEArch arch, size_t D, size_t F, char *err, size_t errlen);
/* s->groups from a JSON array of ascending sizes ending in s->F. 0 or -1. */
int sae_groups_from_json(SAE *s, const json_t *g);
/* Load an SAE file (tensor stream). 0, or -1 with a message in err
 * ("sae.tsz: W_enc is (256,512) but d=256 f=1024 needs (256,1024)"). */
int sae_load(SAE *s, const char *path, char *err, size_t errlen);
/* The same without W_enc (left NULL, s->no_encoder set; its shape is still
 * checked and its parts read past): for what uses the decoder only (logit
 * effects, dictionary comparison), half the memory of a large SAE. */
int sae_load_decoder(SAE *s, const char *path, char *err, size_t errlen);
void sae_free(SAE *s);

/* f (N,F) = encoder of x (N,D), dense; x is raw (un-normalised) input.
 * L says where the rows stand (gemm.h): a row's bytes depend only on it
 * and its place in L, not on N or the other rows. */
void sae_encode(const SAE *s, const float *x, size_t N, SpRows L, float *f);
/* x_hat (N,D) = decoder of f (N,F), in the raw input's scale. */
void sae_decode(const SAE *s, const float *f, size_t N, SpRows L, float *x_hat);
/* x_hat (N,D) = decode(encode(x)); scratch (N,F) floats supplied by caller. */
void sae_reconstruct(const SAE *s, const float *x, size_t N, SpRows L, float *scratch, float *x_hat);
/* Topk of one row: the K largest entries of v (n) into idx (K), largest
 * first; ties broken by the lower index. K <= n. */
void sae_topk_row(const float *v, size_t n, size_t K, uint32_t *idx);

/* The SAE's metadata object ("kind":"sae", arch, k, l1, d, f, hook, model,
 * norm_scale) merged with extra (may be NULL; its keys win). New reference. */
json_t *sae_meta(const SAE *s, const json_t *extra);

/* Writer options for SAE files and sae-fit's checkpoints: zstd level 1
 * (TSZ_LEVEL still decides), records written on the writer's own thread
 * when there is more than one (parfor.h). */
void sae_write_opts(TszWriteOpts *o);

/* Write s to path ("-" is stdout) as an SAE file: the tensors and
 * sae_meta(s, extra_meta). stage/argc/argv go in the header (stage NULL:
 * "sae"). 0 or -1 with err; the file is whole or absent. */
int sae_save_as(const SAE *s, const char *path, const json_t *extra_meta, const char *stage,
                int argc, char **argv, char *err, size_t errlen);
int sae_save(const SAE *s, const char *path, json_t *extra_meta, char *err, size_t errlen);
/* Write s to w (before its first record) as an SAE: sae_meta(s, extra_meta)
 * also in the header, and the tensors, the matrices in part records when
 * over the part size (parts.h). The caller closes w. 0 or -1. */
int sae_write(TszWriter *w, const SAE *s, const json_t *extra_meta, char *err, size_t errlen);
/* The same with the tensors of big (n), sae_slots' order: sae_big fills
 * them from s (data pointing into it), and a writer holding a tensor in
 * another layout replaces its entry's data with a fill (parts.h). */
size_t sae_big(const SAE *s, TszBig big[SAE_SLOTS]);
int sae_write_big(TszWriter *w, const SAE *s, const TszBig *big, size_t n, const json_t *extra_meta, char *err,
                  size_t errlen);

#endif
