/* topkctx.h: topk-ctx's collector (lib/topkctx.c). It reads sae-encode
 * records, keeps every selected feature's top, random and quantile-band
 * examples (heaps of topk.h) with their windows and statistics, merges
 * topk-ctx outputs exactly, and writes the "feature" and "dict_stats"
 * records. */
#ifndef SP_TOPKCTX_H
#define SP_TOPKCTX_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "sparse.h"
#include "stream.h"
#include "topk.h"

typedef struct {
    size_t K;               /* top examples per feature */
    size_t W;               /* window length */
    size_t R;               /* random examples */
    size_t NB, NPB;         /* quantile bands, examples per band */
    uint64_t seed;
} TopkOpts;

typedef struct {
    uint64_t fired;
    float max;
    TopkSum sum;
    uint64_t hist[TOPK_HIST_BINS];
} TopkStat;

typedef struct {
    TopkOpts o;
    size_t F, nsel;
    int32_t *sel;           /* (nsel) feature ids, ascending */
    int32_t *col_of;        /* (F) column of a feature, -1 if not selected */
    TopkHeaps top, rnd, band;
    TopkStat *st;           /* (nsel) */
    uint64_t n_tokens, n_windows;
    SpCsc csc;              /* scratch: one record's activations by feature */
    const struct LogitEffects *logits; /* NULL, or row i the logit effects of column i (logits.h; set by the caller) */
    char err[512];
} TopkCtx;

/* Memory of the collector for nsel features, in bytes. */
uint64_t topkctx_bytes(const TopkOpts *o, size_t nsel);
/* sel NULL: every feature. */
void topkctx_init(TopkCtx *c, const TopkOpts *o, size_t F, const int32_t *sel, size_t nsel);
void topkctx_free(TopkCtx *c);
/* Add one "features" record (sae-encode output). 0, or -1 with c->err
 * naming what is wrong with the record. */
int topkctx_add(TopkCtx *c, const TszRecord *rec) SP_RESULT_USED;
/* Merge a "feature" record of a topk-ctx output into column i (its meta
 * "feature" must be sel[i]). 0, or -1 with c->err. */
int topkctx_merge(TopkCtx *c, size_t i, const TszRecord *rec) SP_RESULT_USED;
/* Tokens' display strings: NULL for none. */
typedef const char *(*TopkStrFn)(void *ud, int32_t id);
/* The output record of column i (kind "feature"); strs may be NULL (then
 * no token_strs). With c->logits, also logit_top_ids/_vals and
 * logit_bot_ids/_vals (K) of row i, their tokens in token_strs. */
void topkctx_record(const TopkCtx *c, size_t i, TszRecord *rec, TopkStrFn strs, void *ud);
/* The dict_stats record from every selected feature's fired count. */
void topkctx_dict_stats(const TopkOpts *o, size_t F, const int32_t *sel, size_t nsel, const uint64_t *fired,
                        uint64_t n_tokens, TszRecord *rec);
/* The logit effects of one "feature" record (topk-ctx --sae): views into
 * the record, side 0 the promoted tokens (logit_top_ids/_vals, largest
 * effect first), side 1 the suppressed (logit_bot_ids/_vals, most negative
 * first). */
typedef struct {
    size_t K;               /* tokens each way; 0: the record has none */
    const int32_t *ids[2];  /* (K) each */
    const float *vals[2];   /* (K) each */
} TopkLogits;
/* Read rec's four logit tensors: i32 ids and f32 values, all of one length
 * K >= 1, ids >= 0 and, with V > 0, below V (the vocabulary size; 0:
 * unknown). 1 present, 0 absent (none of the four: topk-ctx without
 * --sae; lg->K is 0), or -1 with err naming the feature and the problem.
 * The one reader of these tensors: every stage that reads them uses it. */
int topkctx_logits(const TszRecord *rec, size_t V, TopkLogits *lg, char *err, size_t errlen) SP_RESULT_USED;
/* The options as a JSON object (header "topk"), and back: 0 or -1. */
json_t *topk_opts_json(const TopkOpts *o);
int topk_opts_from_json(const json_t *j, TopkOpts *o);

#endif
