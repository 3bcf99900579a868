/* kinds.h: the record kinds of tsz(5), RECORD KINDS: their names, and the one
 * check every stage makes of the kind and main tensor of a record it reads,
 * so a wrong input gets the same message from every stage. */
#ifndef SAEPIPE_KINDS_H
#define SAEPIPE_KINDS_H

#include <stddef.h>

#include "stream.h"

/* Kind names, as written in a record's meta "kind". */
#define SP_KIND_TOKENS         "tokens"          /* gpt2-tok */
#define SP_KIND_HOOK_ACTS      "hook_acts"       /* gpt2-fwd: hook-named (B,T,D) */
#define SP_KIND_ACTS           "acts"            /* mlp-tap: acts (N,D) rows */
#define SP_KIND_CTX_ACTS       "ctx_acts"        /* mlp-tap --keep-context: acts (B,T',D), pos0 */
#define SP_KIND_FEATURES       "features"        /* sae-encode */
#define SP_KIND_FEATURE        "feature"         /* topk-ctx, one per feature */
#define SP_KIND_DICT_STATS     "dict_stats"      /* topk-ctx, last record */
#define SP_KIND_EXPLANATION    "explanation"     /* explain-gpt4 */
#define SP_KIND_SAE            "sae"             /* sae-fit, sae-convert */
#define SP_KIND_SAE_CHECKPOINT "sae_checkpoint"  /* sae-fit --checkpoint-dir */
#define SP_KIND_RECON          "recon"           /* recon-score */
#define SP_KIND_RECON_MEAN     "recon_mean"      /* recon-score, mean-only pass */
#define SP_KIND_PART_SUFFIX    "_part"           /* parts.h: "sae_part", ... */
#define SP_KIND_SYNTH_TRUTH    "synth_truth"     /* sae-synth --truth */
#define SP_KIND_SYNTH_SCORE    "synth_score"     /* sae-synth score */
#define SP_KIND_COMPARE        "compare"         /* sae-compare, one per dictionary */
#define SP_KIND_COMPARE_SUMMARY "compare_summary" /* sae-compare, last record */

/* The kinds a reader checks for; bits, so a reader may take several. */
typedef enum {
    SP_K_TOKENS = 1 << 0,
    SP_K_HOOK_ACTS = 1 << 1,
    SP_K_ACTS = 1 << 2,
    SP_K_CTX_ACTS = 1 << 3,
    SP_K_FEATURES = 1 << 4,
    SP_K_FEATURE = 1 << 5,
    SP_K_DICT_STATS = 1 << 6,
    SP_K_RECON = 1 << 7,
    SP_K_RECON_MEAN = 1 << 8,
    SP_K_SAE = 1 << 9,
    SP_K_EXPLANATION = 1 << 10,
    SP_K_COMPARE = 1 << 11,
    SP_K_COMPARE_SUMMARY = 1 << 12,
} SpKind;

/* The name of one kind ("hook_acts"). */
const char *sp_kind_name(SpKind k);

/* The kind of rec; 0 when it is none of SpKind. A record of the old name
 * "acts" of all three activation layouts, or without a kind (tsz from-npy),
 * is read by its tensors: a tensor "acts" of three dimensions is ctx_acts,
 * of another number acts; without one, hook_acts (tensors named by hooks),
 * except that a record without a kind and without float tensors but
 * "tokens" is tokens. */
SpKind sp_kind_of(const TszRecord *rec);

/* 0 when rec is of one of the kinds in want (an | of SpKind), else -1 and
 * err "kind 'K' is not 'W' (WRITER output)", the kinds in want listed and
 * the old name explained ("kind 'acts' (read as 'ctx_acts') is not ...").
 * Stages print it after "IN: record R: ". */
int sp_kind_check(const TszRecord *rec, unsigned want, char *err, size_t errlen);

/* The main tensor of a record of kind k (after sp_kind_check): name, or
 * when NULL "acts", of acts (float (N,D)) and ctx_acts (float (B,T',D));
 * name, a hook, of hook_acts (float (B,T,D)); D > 0. Else NULL with err
 * "no tensor 'NAME'" or "tensor 'NAME' is DESC, want float (N,D) for kind 'acts'". */
const TszTensor *sp_kind_tensor(const TszRecord *rec, SpKind k, const char *name, char *err, size_t errlen);

#endif
