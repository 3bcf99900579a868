/* explain.h: automated interpretability after Bills et al. (2023),
 * "Language models can explain neurons in language models": explain a
 * feature from its top examples, simulate its activations from the
 * explanation alone, score the simulation by correlation. Plus detection
 * and fuzzing scorers (as EleutherAI's delphi) and an offline baseline
 * explainer.
 *
 * This header holds the pure parts, one file each: the example split and
 * its prompt text (explain_examples.c), prompt templates (explain_prompt.c),
 * fuzzing items (explain_fuzz.c), replies (explain_reply.c), aligning a
 * simulation (explain_align.c), scoring (explain_score.c), the baseline
 * (explain_baseline.c) and prices (explain_price.c). The concurrent API client that drives them is
 * explain_run.c (explain_run.h).
 *
 * The split. A feature has K top examples (rows of top_tokens/top_acts, in
 * the order topk-ctx wrote them: strongest first) and R random ones. Rows
 * 0 .. n_explain-1 of the top examples are shown to the explainer. The
 * held-out set that is scored is top rows n_explain .. n_explain+n_score-1
 * and random rows 0 .. n_score-1 (as many as exist), never a shown row.
 * The baseline explainer may also look at random rows n_score .. R-1, which
 * are not scored. Token ids below 0 are padding and are skipped everywhere. */
#ifndef SP_EXPLAIN_H
#define SP_EXPLAIN_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "util.h"

/* One feature's examples, pointing into a topk-ctx record (not owned). */
typedef struct {
    int64_t feature;
    size_t K, R, W;             /* top rows, random rows, window length */
    const int32_t *top_tokens;  /* (K,W) */
    const float *top_acts;      /* (K,W) */
    const int32_t *rand_tokens; /* (R,W) */
    const float *rand_acts;     /* (R,W) */
    const json_t *token_strs;   /* {"id": "display string"} */
    double density;             /* fraction of tokens the feature fires on (NAN: unknown) */
} ExplainExamples;

/* The held-out examples: E rows of W tokens. */
typedef struct {
    size_t E, W, n_top;         /* the first n_top rows are top examples */
    const int32_t **tok;        /* (E) -> (W) */
    const float **act;          /* (E) -> (W) */
} ExplainHeldout;

/* Fill h (tok/act arrays malloc'd; free with explain_heldout_free). */
void explain_heldout(ExplainHeldout *h, const ExplainExamples *x, size_t n_explain, size_t n_score);
void explain_heldout_free(ExplainHeldout *h);

/* The display text of a token for a prompt line: token_strs[id] (topk-ctx
 * already writes newlines and tabs as \n and \t) with any raw newline, tab
 * or CR still in it escaped the same way, so a token is always one line;
 * "<id>" when absent. */
const char *explain_token_text(const ExplainExamples *x, int32_t id, char *buf, size_t n);

/* ---- prompt templates ----
 * A template file is a conversation: lines "=== system", "=== user" or
 * "=== assistant" start a message; lines starting with "#" before the first
 * message are comments. In message text, {{EXAMPLES}}, {{EXPLANATION}} and
 * {{N}} are replaced when the prompt is built. */
#define EXPLAIN_MAX_MSGS 32
typedef struct {
    size_t n;
    char *role[EXPLAIN_MAX_MSGS];
    char *text[EXPLAIN_MAX_MSGS];
    char *path;
} ExplainPrompt;
int explain_prompt_load(ExplainPrompt *p, const char *path, char *err, size_t errlen) SP_RESULT_USED;
int explain_prompt_parse(ExplainPrompt *p, const char *text, const char *name, char *err,
                         size_t errlen) SP_RESULT_USED;
void explain_prompt_free(ExplainPrompt *p);
/* The messages array with the variables substituted (NULL ones left as is). */
json_t *explain_prompt_render(const ExplainPrompt *p, const char *examples, const char *explanation,
                              const char *n);

/* The messages as one prompt for a completions endpoint (malloc'd): a
 * system message as it is, then each user or assistant message as a line
 * "User:" or "Assistant:" followed by its text, messages separated by a
 * blank line, and a final "Assistant:" line for the model to continue. */
char *explain_messages_text(const json_t *msgs);

/* ---- the text blocks that go into {{EXAMPLES}} (malloc'd) ---- */
/* The first n_show top examples as "token<TAB>act" lines, act scaled to
 * floor(10 * a / max) by the maximum over the shown rows (0 if that max <= 0),
 * each between "<start>" and "<end>" lines. */
char *explain_text_explain(const ExplainExamples *x, size_t n_show);
/* Every held-out example as "token<TAB>unknown" lines between <start>/<end>. */
char *explain_text_simulate(const ExplainExamples *x, const ExplainHeldout *h);
/* Held-out examples in the order perm (E entries), numbered from 1, each on
 * one line "N: text" where text is the tokens joined. */
char *explain_text_detect(const ExplainExamples *x, const ExplainHeldout *h, const size_t *perm);

/* ---- fuzzing (as EleutherAI's delphi) ----
 * Items made of the held-out examples, some tokens highlighted: each example
 * that fires gives one item with exactly its firing tokens highlighted (the
 * truth: 1) and one with as many of its other tokens highlighted at random
 * (0); each example that does not fire gives one item with a random token
 * highlighted (0). The scorer asks whether the highlighted tokens are what
 * the explanation describes. Random choices come from seed (the feature). */
typedef struct {
    size_t n, W;
    size_t *ex;                 /* (n) the held-out example of each item */
    uint8_t *mark;              /* (n,W) 1 = highlighted */
    uint8_t *label;             /* (n) 1 = the highlights are the firing tokens */
} ExplainFuzz;
void explain_fuzz_prepare(ExplainFuzz *z, const ExplainHeldout *h, uint64_t seed);
void explain_fuzz_free(ExplainFuzz *z);
/* Items in the order perm (n entries), numbered from 1, one a line, "N: text"
 * with each run of highlighted tokens between << and >>. */
char *explain_text_fuzz(const ExplainExamples *x, const ExplainHeldout *h, const ExplainFuzz *z, const size_t *perm);

/* ---- replies ---- */
typedef struct {
    char *content;              /* the assistant message (owned) */
    json_t *logprobs;           /* choices[0].logprobs.content array (completions-style
                                 * logprobs converted to that shape) or NULL (owned ref) */
    int64_t prompt_tokens, completion_tokens;
} ExplainReply;
/* Parse a chat-completions response body (choices[0].message.content) or a
 * completions one (choices[0].text). 0, or -1 with err ("reply is not JSON",
 * "reply has no choices[0].message.content or choices[0].text", "API error: ..."). */
int explain_reply_parse(ExplainReply *r, const char *body, size_t len, char *err, size_t errlen) SP_RESULT_USED;
void explain_reply_free(ExplainReply *r);

/* The explanation from an explainer reply: the first non-empty line, cleaned
 * of an echoed "the main thing this feature does is find" prefix, "Explanation:"
 * labels, markdown (* ` #), surrounding quotes and a final period. Empty when
 * nothing is left. Malloc'd. */
char *explain_clean(const char *reply);

/* Align a simulation reply with the held-out tokens and fill pred (E,W) with
 * the simulated activations (0..10): from logprobs (expected value over
 * 0..10, when lp is an array and the token sampled at the number is that
 * whole number; a tokenizer that splits "10" into digits gets the integer)
 * or the integers given. Blocks between <start>
 * and <end> are matched to examples by content (so reordered blocks are
 * fine); within a block tokens are matched by longest common subsequence,
 * so missing, extra or reordered lines, prose and code fences are skipped.
 * Returns the fraction of held-out tokens matched (unmatched ones get 0),
 * sets *lp_frac (when not NULL) to the fraction of matched tokens whose
 * value is a logprob expected value rather than the integer written,
 * or -1 with err when no line of the reply has the "token<TAB>N" shape. */
double explain_align(const ExplainExamples *x, const ExplainHeldout *h, const char *content,
                     const json_t *lp, float *pred, double *lp_frac, char *err, size_t errlen);

/* Example numbers named in a detection reply: said[i] = 1 when example i+1
 * is named. -1 with err when the reply names none and does not say "none". */
int explain_parse_detect(const char *content, size_t E, uint8_t *said, char *err, size_t errlen) SP_RESULT_USED;

/* ---- scoring ---- */
/* Pearson correlation of a and b over n values; NAN when n < 2 or either is
 * constant. Computed in double with two passes. */
double explain_pearson(const float *a, const float *b, size_t n);
/* Pooled, top-only and random-only correlations between pred and the true
 * activations of the held-out set (padding skipped). */
void explain_score_sim(const ExplainHeldout *h, const float *pred, double *all, double *top, double *rnd);
/* The truth of detection: label[e] = 1 when held-out example e fires (E). */
void explain_detect_labels(const ExplainHeldout *h, uint8_t *label);

/* A yes/no scorer (detection, fuzzing) against the truth, as delphi reports
 * it. Every rate is NAN when undefined (an empty class, no "yes" said). */
typedef struct {
    size_t n, tp, fp, tn, fn;
    double balanced_accuracy;   /* (tpr + tnr) / 2, or the one defined */
    double tpr, tnr;            /* recall of the positives, of the negatives */
    double precision, recall, f1;
    double auroc;               /* of prob; with yes/no answers it equals the
                                 * balanced accuracy (ties count half) */
} ExplainClassScore;
/* said[i] is the answer about item i, label[i] the truth; prob (NULL: said
 * as 0/1) ranks the items for the AUROC. */
void explain_class_score(ExplainClassScore *s, const uint8_t *label, const uint8_t *said, const double *prob,
                         size_t n);
/* Area under the ROC curve of score against label over n items (the
 * Mann-Whitney statistic, ties counting half); NAN when a class is empty. */
double explain_auroc(const double *score, const uint8_t *label, size_t n);

/* ---- the offline baseline ----
 * Tokens that fire (activation > 0) in the shown top examples are ranked by
 * log((fires + 1) / (background occurrences + 1)), background being the
 * non-firing positions of the shown rows plus every position of the unscored
 * random rows. The best up to max_tokens tokens with a positive rank and at
 * least two firings (one if nothing has two) are the explanation, each with
 * its mean scaled activation (0..10) when firing as its simulated value. */
#define EXPLAIN_BASELINE_MAX 8
typedef struct {
    size_t n;
    int32_t id[EXPLAIN_BASELINE_MAX];
    float value[EXPLAIN_BASELINE_MAX];
} ExplainBaseline;
/* The explanation text (malloc'd): tokens "a", "b" and "c". */
char *explain_baseline(const ExplainExamples *x, size_t n_explain, size_t n_score, size_t max_tokens,
                       ExplainBaseline *b);
void explain_baseline_simulate(const ExplainBaseline *b, const ExplainHeldout *h, float *pred);

/* ---- cost ----
 * USD per million prompt and completion tokens for a model name; the table
 * is in explain_price.c and in explain-gpt4(1). 0 when the model is unknown. */
int explain_price(const char *model, double *in_per_m, double *out_per_m);

#endif
