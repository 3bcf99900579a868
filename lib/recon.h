/* recon.h: the standard SAE evaluation (recon-score): the model's loss
 * with the hooked activation replaced by the SAE's reconstruction, by
 * zeros and by its mean, the score against both ablations, KL of the
 * spliced model to the clean one, MSE, FVU, L0, dead and dense features.
 *
 * Everything is kept as sums (ReconSums) so that shards merge exactly:
 * the metrics of merged sums are the metrics of one run over all the
 * tokens (up to the order of double additions).
 *
 * Positions. The losses are over every next-token prediction: (T-1) per
 * window of T tokens. The interventions (reconstruction, zero, mean) and
 * the SAE metrics (MSE, FVU, L0, firing) cover positions t >= pos0 of each
 * window; pos0 = 1 (the default of recon-score) leaves position 0, the BOS
 * token of gpt2-tok's windows, clean and uncounted, as SAELens-style
 * evaluations do (BOS activations are outliers the SAE never trained on;
 * mlp-tap drops them too). KL is averaged over the predictions made at
 * positions pos0..T-2, the ones a splice can change.
 *
 * One window batch costs a clean forward (saving the residual stream at
 * the hook and the hook's value, logits kept for KL) and three forwards
 * resumed at the hook point itself (gpt2.h's resid_in/resume): what comes
 * before the hook, in its layer too, is computed once. */
#ifndef SP_RECON_H
#define SP_RECON_H

#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"
#include "sae.h"
#include "stream.h"

/* The four forwards, in the order of ReconSums.loss. */
enum { RECON_CLEAN = 0, RECON_RECONS, RECON_ZERO, RECON_MEAN, RECON_NRUN };

/* Dense: a feature firing on more than this fraction of counted positions. */
#define RECON_DENSE_FRAC 0.1

typedef struct {
    size_t D, F;          /* hook width, dictionary size (F 0 for mean-only sums) */
    uint64_t tokens;      /* tokens in the windows evaluated */
    uint64_t windows;     /* windows evaluated */
    uint64_t n_pred;      /* next-token predictions: sum of (T-1) */
    uint64_t n_kl;        /* predictions at positions pos0..T-2 */
    uint64_t n_rows;      /* spliced positions (t >= pos0): SAE metrics, mean */
    double loss[RECON_NRUN]; /* sums of per-prediction cross-entropy */
    double kl;            /* sum of KL(clean || spliced) over n_kl predictions */
    double sse;           /* sum over rows of ||x - x_hat||^2 */
    double sum_sq;        /* sum over rows of ||x||^2 */
    double l0;            /* sum over rows of the number of firing features */
    double *sum_x;        /* (D) sum over rows of x */
    int64_t *fires;       /* (F) rows on which each feature fired (f > 0) */
} ReconSums;

typedef struct {
    double clean_loss, recons_loss, zero_abl_loss, mean_abl_loss;
    double score;          /* (zero - recons) / (zero - clean) */
    double score_mean_abl; /* (mean - recons) / (mean - clean) */
    double kl, mse, fvu, l0, dead_frac, dense_frac;
    uint64_t tokens;
} ReconMetrics;

/* Zeroed sums for width D and F features (allocates sum_x, fires). */
void recon_sums_init(ReconSums *s, size_t D, size_t F);
void recon_sums_free(ReconSums *s);
/* dst += src. 0, or -1 with err if the widths differ. */
int recon_sums_add(ReconSums *dst, const ReconSums *src, char *err, size_t errlen) SP_RESULT_USED;
/* The metrics of the sums (NaN where undefined: no predictions, zero
 * denominator). mse is per element: sse / (n_rows * D). */
void recon_metrics(const ReconSums *s, ReconMetrics *m);
/* The mean of x over the counted rows into mean (D); -1 if no rows. */
int recon_sums_mean(const ReconSums *s, float *mean);

/* The metrics as a JSON object with keys clean_loss, recons_loss,
 * zero_abl_loss, mean_abl_loss, score, score_mean_abl, kl, mse, fvu, l0,
 * dead_frac, dense_frac (reals, null when undefined) and tokens. */
json_t *recon_metrics_json(const ReconMetrics *m);
/* The sums (and, when F > 0, the metrics) as a record's metadata and
 * tensors: kind "recon" (full) or "recon_mean" (mean-only pass): meta keys
 * as in recon-score(1), meta "sum_x" a JSON array of D reals (exact), tensor
 * `fires` i64 (F). */
void recon_sums_to_record(const ReconSums *s, const ReconMetrics *m, TszRecord *rec);
/* Read sums back from a "recon" or "recon_mean" record. 0, or -1 with err. */
int recon_sums_from_record(ReconSums *s, const TszRecord *rec, char *err, size_t errlen) SP_RESULT_USED;

/* ---- merging shards (recon-score --merge) ----
 * The records of disjoint shards add up to the record of one run over all
 * of them. Every record must have the first one's hook and pos0; a record
 * whose sums all equal an earlier one's is a shard given twice (disjoint
 * shards never share all of them); records made with different ablation
 * means (meta mean_hash) merge, but mean_exact says so. */
typedef struct { uint64_t fp, recno; const char *in; } ReconSeen;
typedef struct {
    ReconSums total;
    json_t *extra;        /* hook, pos0, mean_hash, model, sae of the first record; NULL before it */
    int mean_exact;       /* every record had the first one's mean_hash */
    ReconSeen *seen;      /* (nseen) fingerprints of the records added */
    size_t nseen;
    char err[512];
} ReconMerge;
void recon_merge_init(ReconMerge *m);
/* Add one record of input in (its name stays referenced), number recno.
 * 0, or -1 with m->err ("a.tsz: record 2: pos0 differs ..."). */
int recon_merge_add(ReconMerge *m, const TszRecord *rec, const char *in, uint64_t recno) SP_RESULT_USED;
void recon_merge_free(ReconMerge *m);

/* FNV-1a of n bytes at p, continuing from h (RECON_FNV_INIT to start). */
#define RECON_FNV_INIT 1469598103934665603ull
uint64_t recon_fnv(uint64_t h, const void *p, size_t n);

/* ---- the evaluation ---- */
typedef struct {
    GPT2 *g;               /* allocated by recon_eval_alloc for maxB x maxT with logits */
    const SAE *sae;        /* NULL for the mean-only pass */
    GPT2Hook hook;
    size_t D, pos0;
    size_t maxB, maxT;
    float *resid0;         /* (B,T,C) the residual stream at the hook (gpt2_hook_resid), clean */
    float *x;              /* (B,T,D) the hook's clean value */
    float *f;              /* (B*T,F) SAE features */
    float *xhat;           /* (B,T,D) SAE reconstruction */
    float *logp;           /* (B,T,V) clean log-probabilities */
    float *loss;           /* (B,T) one run's per-token losses */
    char err[512];
} ReconEval;

/* Bind an evaluator to an open model, an SAE (NULL: mean pass only) and a
 * hook whose width must equal the SAE's. 0, or -1 with e->err. */
int recon_eval_init(ReconEval *e, GPT2 *g, const SAE *sae, GPT2Hook hook, size_t pos0) SP_RESULT_USED;
/* Make room for batches of B windows of up to T tokens. 0 or -1. */
int recon_eval_alloc(ReconEval *e, size_t B, size_t T) SP_RESULT_USED;
void recon_eval_free(ReconEval *e);
/* Mean pass: forward up to the hook; add rows t >= pos0 to acc's sum_x,
 * n_rows, tokens, windows. 0 or -1. */
int recon_eval_mean(ReconEval *e, const int32_t *tok, size_t B, size_t T, ReconSums *acc) SP_RESULT_USED;
/* Full evaluation of one batch (tok (B,T)), mean (D) the ablation mean;
 * adds to acc. 0 or -1. */
int recon_eval_batch(ReconEval *e, const int32_t *tok, size_t B, size_t T, const float *mean,
                     ReconSums *acc) SP_RESULT_USED;

/* Row patch used for all three interventions: rows t >= pos0 of the hook
 * value get rows[b,t] (rows != NULL), else vec (vec != NULL), else 0. */
typedef struct {
    const float *rows;     /* (B,T,D) or NULL */
    const float *vec;      /* (D) or NULL */
    size_t pos0;
} ReconPatch;
int recon_patch(void *ctx, const char *hook, float *act, size_t B, size_t T, size_t D);

/* The log-sum-exp of a row of logits is recovered from its next-token
 * loss (gpt2_token_loss: loss = lse - z[target]), so these work on rows
 * t < T-1 only and take no exp for the normaliser. */
/* lp (B,T,V) = log-softmax of logits z (B,T,V) on rows t < T-1, given
 * their losses (B,T-1) and the tokens (B,T). */
void recon_clean_logp(float *lp, const float *z, const float *loss, const int32_t *tok, size_t B, size_t T,
                      size_t V);
/* Sum over rows t in [t0, T-1) of KL(p || q), p as log-probabilities lp
 * (B,T,V), q as logits z (B,T,V) with their losses (B,T-1). */
double recon_kl_sum(const float *lp, const float *z, const float *loss, const int32_t *tok, size_t B, size_t T,
                    size_t V, size_t t0);

#endif
