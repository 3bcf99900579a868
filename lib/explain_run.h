/* explain_run.h: explain and score many features at once against an
 * OpenAI-compatible chat-completions API (or the offline baseline), with
 * the response cache (cache.h) and the retrying HTTP pool (http.h).
 *
 * A job is one feature. Its requests go in order: explain, then simulate
 * (or detect, or fuzz). Each request is first looked up in the cache; a reply is
 * stored in the cache only once it has been parsed and found usable, so a
 * rerun repeats no finished call, and a reply that could not be used is
 * asked again (up to max_attempts replies per request) instead of being
 * cached. A job ends ok, or failed with the reason in err. */
#ifndef SP_EXPLAIN_RUN_H
#define SP_EXPLAIN_RUN_H

#include "cache.h"
#include "explain.h"
#include "http.h"

typedef enum { EXPLAIN_BACKEND_OPENAI, EXPLAIN_BACKEND_BASELINE } ExplainBackend;
typedef enum {
    EXPLAIN_SCORER_SIMULATION, EXPLAIN_SCORER_DETECTION, EXPLAIN_SCORER_FUZZING, EXPLAIN_SCORER_NONE
} ExplainScorer;
typedef enum { EXPLAIN_STAGE_EXPLAIN, EXPLAIN_STAGE_SIMULATE, EXPLAIN_STAGE_DETECT, EXPLAIN_STAGE_FUZZ } ExplainStage;
/* "simulation", "detection", "fuzzing", "none" */
extern const char *const EXPLAIN_SCORER_NAME[];
/* A stage's name ("explain", "simulate", "detect", "fuzz"), and the stage
 * that scores an explanation under a scorer (not EXPLAIN_SCORER_NONE). */
extern const char *const EXPLAIN_STAGE_NAME[];
ExplainStage explain_scoring_stage(ExplainScorer scorer);

typedef struct {
    ExplainBackend backend;
    ExplainScorer scorer;
    const char *api_base;       /* ".../v1"; requests go to api_base/chat/completions */
    int completions;            /* to api_base/completions instead: one prompt text
                                 * (explain_messages_text), logprobs as a number */
    const char *model;
    const char *api_key;        /* NULL or "" for servers that need none */
    size_t n_explain, n_score;
    int logprobs;               /* ask for top_logprobs on simulation */
    double temperature;
    double min_aligned;         /* fraction of held-out tokens a simulation must match */
    size_t baseline_tokens;     /* tokens in a baseline explanation */
    const ExplainPrompt *p_explain, *p_simulate, *p_detect, *p_fuzz;
    const char *cache_dir;      /* NULL: no cache */
    HttpOpts http;
} ExplainConfig;

typedef struct {
    ExplainExamples x;          /* set by the caller; must stay valid until done */
    void *user;                 /* the caller's */
    /* results */
    int done, ok;
    int dead;                   /* no top examples: nothing to explain (not a failure) */
    char *explanation;          /* owned; NULL if none */
    double score, score_top, score_random;  /* NAN when undefined or not scored */
    ExplainClassScore cls;      /* detection or fuzzing: the yes/no scores */
    double aligned;             /* fraction of simulated tokens matched */
    double logprob_frac;        /* of those, fraction valued by logprobs (NAN: not simulated) */
    int attempts;               /* HTTP attempts made in this run */
    int cached;                 /* replies taken from the cache */
    int64_t prompt_tokens, completion_tokens;   /* usage of the replies used */
    char err[512];
    ExplainHeldout h;
    float *pred;                /* (E,W) simulated activations, or NULL */
    /* internal */
    ExplainStage stage;
    int tries;                  /* replies asked for in this stage */
    char *body;                 /* request body of this stage */
    char key[65];
    size_t n_items;             /* detection: E examples; fuzzing: the fuzz items */
    uint8_t *truth;             /* (n_items) what a perfect detector or fuzz judge says */
    size_t *perm;               /* (n_items) the order they are shown in */
    ExplainFuzz fuzz;
    ExplainBaseline base;
} ExplainJob;
void explain_job_free(ExplainJob *j);
/* The held-out split, fuzz items and the order of the judged items of j->x
 * (explain_run_add does this; --dry-run calls it alone). */
void explain_job_prepare(const ExplainConfig *c, ExplainJob *j);

typedef struct ExplainRun ExplainRun;
/* NULL with err on failure (cache directory, libcurl). */
ExplainRun *explain_run_new(const ExplainConfig *c, char *err, size_t errlen);
void explain_run_free(ExplainRun *r);
/* Start a job; it may be done on return (baseline, cache hits). */
void explain_run_add(ExplainRun *r, ExplainJob *j);
/* Drive requests until at least one finishes. 1 when something happened,
 * 0 when nothing is pending, -1 on a fatal error (explain_run_error). */
int explain_run_wait(ExplainRun *r) SP_RESULT_USED;
const char *explain_run_error(const ExplainRun *r);

/* The request body of a stage as JSON text (malloc'd); explanation is the
 * one to simulate or detect with. For --dry-run and for the cache key. */
char *explain_request_body(const ExplainConfig *c, ExplainJob *j, ExplainStage stage, const char *explanation);

typedef struct {
    uint64_t calls, retries;    /* HTTP attempts made, retries among them */
    uint64_t cache_hits;        /* usable replies taken from the cache */
    uint64_t cache_writes;
    int64_t prompt_tokens, completion_tokens;   /* of calls made in this run */
} ExplainStats;
void explain_run_stats(const ExplainRun *r, ExplainStats *s);

/* Replace every occurrence of key (4 bytes or more) in s, in place, by
 * "[redacted]", or by as many 'X's when the key is shorter than that, so s
 * never grows: no message may carry the API key. */
void explain_scrub(char *s, const char *key);

#endif
