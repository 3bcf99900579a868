/* sae_convert.h: SAEs to and from the SAELens layout, a directory holding
 * cfg.json and sae_weights.safetensors (W_enc (d_in,d_sae), b_enc, W_dec
 * (d_sae,d_in), b_dec [, threshold]).
 *
 * Mapping (SAELens 6 architecture names and tensors):
 *   relu <-> "standard" with activation_fn_str "relu";
 *   topk <-> "standard" with activation_fn_str "topk" and
 *     activation_fn_kwargs {"k"} ("topk" with "k" is read too);
 *   jumprelu <-> "jumprelu" with threshold;
 *   batchtopk, matryoshka -> "jumprelu" with their threshold (SAELens saves
 *     its BatchTopK and Matryoshka SAEs that way), back to batchtopk or
 *     matryoshka by cfg.json "saepipe"; "batchtopk" and
 *     "matryoshka_batchtopk" with a threshold tensor are read too;
 *   gated <-> "gated" with b_gate, r_mag, b_mag (no b_enc).
 * Our norm_scale is folded into the
 * exported weights so SAELens sees raw activations (W_enc*s, W_dec/s,
 * b_dec/s), and recorded in cfg.json "saepipe" so import can unfold it.
 * An imported cfg with apply_b_dec_to_input false gets b_enc + b_dec W_enc. */
#ifndef SP_SAE_CONVERT_H
#define SP_SAE_CONVERT_H

#include <stddef.h>

#include "sae.h"

/* Write dir/cfg.json and dir/sae_weights.safetensors (dir is created if
 * missing; each file written atomically). 0 or -1 with err. */
int sae_export_saelens(const SAE *s, const char *dir, char *err, size_t errlen);
/* Read a SAELens directory into s (allocated). 0 or -1 with err. */
int sae_import_saelens(SAE *s, const char *dir, char *err, size_t errlen);

/* A safetensors file of named f32 tensors (ndim 1 or 2), each written
 * times its scale (1: as is) without a copy; written to a temporary name
 * and renamed. 0 or -1 with err. */
typedef struct { const char *name; const float *data; int ndim; size_t shape[2]; float scale; } SAEStOut;
int sae_st_write_f32(const char *path, const SAEStOut *t, size_t n, char *err, size_t errlen);

#endif
