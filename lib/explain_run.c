/* explain_run.c: the concurrent explain/simulate/detect client (see
 * explain_run.h). */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "explain_run.h"

struct ExplainRun {
    ExplainConfig c;
    Cache cache;
    HttpPool *pool;
    char *url;
    char *auth;                 /* "Authorization: Bearer ..." or NULL */
    HttpResult *res;            /* (c.http.jobs) results of one http_run */
    ExplainStats st;
    char err[512];
};

const char *const EXPLAIN_STAGE_NAME[] = {"explain", "simulate", "detect", "fuzz"};
const char *const EXPLAIN_SCORER_NAME[] = {"simulation", "detection", "fuzzing", "none", NULL};

void explain_job_free(ExplainJob *j)
{
    free(j->explanation);
    free(j->pred);
    free(j->body);
    free(j->perm);
    free(j->truth);
    explain_heldout_free(&j->h);
    explain_fuzz_free(&j->fuzz);
    j->explanation = NULL;
    j->pred = NULL;
    j->body = NULL;
    j->perm = NULL;
    j->truth = NULL;
}

void explain_scrub(char *s, const char *key)
{
    size_t kl = key ? strlen(key) : 0;
    if (kl < 4) return;
    for (char *p = strstr(s, key); p; p = strstr(p, key)) {
        static const char red[] = "[redacted]";
        if (kl >= sizeof red - 1) {
            memcpy(p, red, sizeof red - 1);
            memmove(p + sizeof red - 1, p + kl, strlen(p + kl) + 1);
            p += sizeof red - 1;
        } else {
            memset(p, 'X', kl);
            p += kl;
        }
    }
}

ExplainRun *explain_run_new(const ExplainConfig *c, char *err, size_t errlen)
{
    ExplainRun *r = xcalloc(1, sizeof *r);
    r->c = *c;
    if (cache_open(&r->cache, c->backend == EXPLAIN_BACKEND_OPENAI ? c->cache_dir : NULL) < 0) {
        snprintf(err, errlen, "%s", r->cache.err);
        free(r);
        return NULL;
    }
    if (c->backend == EXPLAIN_BACKEND_OPENAI) {
        r->pool = http_pool_new(&c->http, err, errlen);
        if (!r->pool) {
            cache_close(&r->cache);
            free(r);
            return NULL;
        }
        size_t n = strlen(c->api_base), cap = n + 32;
        while (n && c->api_base[n - 1] == '/') n--;
        r->url = xmalloc(cap);
        snprintf(r->url, cap, "%.*s/%s", (int)n, c->api_base, c->completions ? "completions" : "chat/completions");
        if (c->api_key && *c->api_key) {
            cap = strlen(c->api_key) + 32;
            r->auth = xmalloc(cap);
            snprintf(r->auth, cap, "Authorization: Bearer %s", c->api_key);
        }
    }
    r->res = xmalloc((c->http.jobs + 1) * sizeof *r->res);
    return r;
}

void explain_run_free(ExplainRun *r)
{
    if (!r) return;
    http_pool_free(r->pool);
    cache_close(&r->cache);
    if (r->auth) memset(r->auth, 0, strlen(r->auth));
    free(r->auth);
    free(r->url);
    free(r->res);
    free(r);
}

const char *explain_run_error(const ExplainRun *r) { return r->err[0] ? r->err : NULL; }

void explain_run_stats(const ExplainRun *r, ExplainStats *s)
{
    *s = r->st;
    s->cache_writes = r->cache.writes;
    if (r->pool) {
        s->calls = http_attempts(r->pool);
        s->retries = http_retries(r->pool);
    }
}

/* ---- requests ---- */
char *explain_request_body(const ExplainConfig *c, ExplainJob *j, ExplainStage stage, const char *explanation)
{
    char *ex;
    const ExplainPrompt *p;
    char nbuf[32];
    snprintf(nbuf, sizeof nbuf, "%zu", stage == EXPLAIN_STAGE_FUZZ ? j->n_items : j->h.E);
    if (stage == EXPLAIN_STAGE_EXPLAIN) {
        ex = explain_text_explain(&j->x, c->n_explain);
        p = c->p_explain;
    } else if (stage == EXPLAIN_STAGE_SIMULATE) {
        ex = explain_text_simulate(&j->x, &j->h);
        p = c->p_simulate;
    } else if (stage == EXPLAIN_STAGE_DETECT) {
        ex = explain_text_detect(&j->x, &j->h, j->perm);
        p = c->p_detect;
    } else {
        ex = explain_text_fuzz(&j->x, &j->h, &j->fuzz, j->perm);
        p = c->p_fuzz;
    }
    json_t *msgs = explain_prompt_render(p, ex, explanation, nbuf), *req;
    if (c->completions) {
        char *text = explain_messages_text(msgs);
        req = json_pack("{s:s, s:s, s:f}", "model", c->model, "prompt", text, "temperature", c->temperature);
        free(text);
        json_decref(msgs);
    } else {
        req = json_pack("{s:s, s:o, s:f}", "model", c->model, "messages", msgs, "temperature", c->temperature);
    }
    if (stage == EXPLAIN_STAGE_SIMULATE && c->logprobs) {
        /* chat: a flag and a count; completions: the count (at most 5 on
         * OpenAI's own completions endpoint, more on vLLM and others) */
        if (c->completions) {
            json_object_set_new(req, "logprobs", json_integer(5));
        } else {
            json_object_set_new(req, "logprobs", json_true());
            json_object_set_new(req, "top_logprobs", json_integer(15));
        }
    }
    /* room for every "token<TAB>N" line of the simulation, within the 4096
     * completion tokens most models allow; a short answer otherwise */
    size_t max_tokens = stage == EXPLAIN_STAGE_SIMULATE ? 32 + j->h.E * (j->h.W * 4 + 4) : 300;
    if (max_tokens > 4096) max_tokens = 4096;
    json_object_set_new(req, "max_tokens", json_integer((json_int_t)max_tokens));
    char *s = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(req);
    free(ex);
    return s;
}

static void job_fail(ExplainJob *j, const char *fmt, ...) SP_PRINTF(2, 3);
static void job_fail(ExplainJob *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, sizeof j->err, fmt, ap);
    va_end(ap);
    j->ok = 0;
    j->done = 1;
}

static void job_finish(ExplainJob *j)
{
    j->ok = 1;
    j->done = 1;
}

static void issue(ExplainRun *r, ExplainJob *j, int use_cache);

/* Held-out split; the items judged and their truth; the order they are
 * shown in: a fixed shuffle per feature. */
void explain_job_prepare(const ExplainConfig *c, ExplainJob *j)
{
    explain_heldout(&j->h, &j->x, c->n_explain, c->n_score);
    explain_fuzz_free(&j->fuzz);
    free(j->truth);
    if (c->scorer == EXPLAIN_SCORER_FUZZING) {
        explain_fuzz_prepare(&j->fuzz, &j->h, 0xf0225 ^ (uint64_t)j->x.feature);
        j->n_items = j->fuzz.n;
        j->truth = xmalloc(j->n_items + 1);
        memcpy(j->truth, j->fuzz.label, j->n_items);
    } else {
        j->n_items = j->h.E;
        j->truth = xmalloc(j->n_items + 1);
        explain_detect_labels(&j->h, j->truth);
    }
    free(j->perm);
    SpRng rng;
    sp_rng_seed(&rng, 0xde7ec7 ^ (uint64_t)j->x.feature);
    j->perm = xmalloc((j->n_items + 1) * sizeof *j->perm);
    for (size_t i = 0; i < j->n_items; i++) j->perm[i] = i;
    for (size_t i = j->n_items; i > 1; i--) {
        size_t k = (size_t)sp_rng_below(&rng, i), t = j->perm[i - 1];
        j->perm[i - 1] = j->perm[k];
        j->perm[k] = t;
    }
}

ExplainStage explain_scoring_stage(ExplainScorer scorer)
{
    static const ExplainStage second[] = {EXPLAIN_STAGE_SIMULATE, EXPLAIN_STAGE_DETECT, EXPLAIN_STAGE_FUZZ};
    return second[scorer];
}

static void next_stage(ExplainRun *r, ExplainJob *j)
{
    if (j->stage != EXPLAIN_STAGE_EXPLAIN || r->c.scorer == EXPLAIN_SCORER_NONE) {
        job_finish(j);
        return;
    }
    j->stage = explain_scoring_stage(r->c.scorer);
    j->tries = 0;
    issue(r, j, 1);
}

/* The scores of a yes/no scorer from its answers (n_items, in item order). */
static void score_yes_no(ExplainJob *j, const uint8_t *said)
{
    explain_class_score(&j->cls, j->truth, said, NULL, j->n_items);
    j->score = j->cls.balanced_accuracy;
}

/* Use a reply: 0 when it moved the job on, -1 with why when unusable. */
static int use_reply(ExplainRun *r, ExplainJob *j, const ExplainReply *rep, char *why, size_t n)
{
    if (j->stage == EXPLAIN_STAGE_EXPLAIN) {
        char *e = explain_clean(rep->content);
        if (!*e) {
            free(e);
            snprintf(why, n, "empty explanation");
            return -1;
        }
        free(j->explanation);
        j->explanation = e;
        return 0;
    }
    if (j->stage == EXPLAIN_STAGE_SIMULATE) {
        if (!j->pred) j->pred = xmalloc((j->h.E * j->h.W + 1) * sizeof *j->pred);
        double f = explain_align(&j->x, &j->h, rep->content, rep->logprobs, j->pred, &j->logprob_frac, why, n);
        if (f < 0) return -1;
        if (f < r->c.min_aligned) {
            snprintf(why, n, "simulation reply matches only %.0f%% of the held-out tokens", 100 * f);
            return -1;
        }
        j->aligned = f;
        explain_score_sim(&j->h, j->pred, &j->score, &j->score_top, &j->score_random);
        return 0;
    }
    /* detection and fuzzing: the numbers of the items said yes to */
    uint8_t *said = xmalloc(j->n_items + 1), *unperm = xmalloc(j->n_items + 1);
    int rc = explain_parse_detect(rep->content, j->n_items, said, why, n);
    if (rc == 0) {
        for (size_t i = 0; i < j->n_items; i++) unperm[j->perm[i]] = said[i];
        score_yes_no(j, unperm);
    }
    free(said);
    free(unperm);
    return rc;
}

/* A whole reply body for the current stage, from the API or the cache. */
static void on_body(ExplainRun *r, ExplainJob *j, const char *body, size_t len, int cached)
{
    ExplainReply rep;
    char why[300];
    j->tries++;
    int rc = explain_reply_parse(&rep, body, len, why, sizeof why);
    if (rc == 0) rc = use_reply(r, j, &rep, why, sizeof why);
    if (rc < 0) {
        if (rep.content) explain_reply_free(&rep);
        explain_scrub(why, r->c.api_key);
        if (j->tries < r->c.http.max_attempts) {
            issue(r, j, 0);     /* ask again, past the cache */
            return;
        }
        job_fail(j, "%s: %s (%d replies)", EXPLAIN_STAGE_NAME[j->stage], why, j->tries);
        return;
    }
    j->prompt_tokens += rep.prompt_tokens;
    j->completion_tokens += rep.completion_tokens;
    if (cached) {
        j->cached++;
        r->st.cache_hits++;
    } else {
        r->st.prompt_tokens += rep.prompt_tokens;
        r->st.completion_tokens += rep.completion_tokens;
        if (cache_put(&r->cache, j->key, body, len) < 0) snprintf(r->err, sizeof r->err, "%s", r->cache.err);
    }
    explain_reply_free(&rep);
    next_stage(r, j);
}

static void issue(ExplainRun *r, ExplainJob *j, int use_cache)
{
    free(j->body);
    j->body = explain_request_body(&r->c, j, j->stage, j->explanation);
    size_t len = strlen(j->body);
    cache_key(r->url, r->c.model, j->body, len, j->key);
    if (use_cache) {
        char *hit;
        size_t hl;
        int rc = cache_get(&r->cache, j->key, &hit, &hl);
        if (rc < 0) snprintf(r->err, sizeof r->err, "%s", r->cache.err);
        if (rc == 1) {
            on_body(r, j, hit, hl, 1);
            free(hit);
            return;
        }
    }
    const char *hdrs[] = {"Content-Type: application/json", r->auth, NULL};
    http_submit(r->pool, r->url, hdrs, j->body, len, j);
}

/* ---- the offline baseline ---- */
/* Its answer about item i: an example has the feature when one of its tokens
 * occurs; highlights (fuzzing) are right when each highlighted token is one. */
static int baseline_says(const ExplainJob *j, int fuzz, size_t i)
{
    size_t W = j->h.W, e = fuzz ? j->fuzz.ex[i] : i;
    int any = 0, all = 1;
    for (size_t t = 0; t < W; t++) {
        if (fuzz && !j->fuzz.mark[i * W + t]) continue;
        int p = j->pred[e * W + t] > 0;
        any |= p;
        all &= p;
    }
    return fuzz ? any && all : any;
}

static void run_baseline(ExplainRun *r, ExplainJob *j)
{
    j->explanation = explain_baseline(&j->x, r->c.n_explain, r->c.n_score, r->c.baseline_tokens, &j->base);
    if (r->c.scorer == EXPLAIN_SCORER_NONE) {
        job_finish(j);
        return;
    }
    j->pred = xmalloc((j->h.E * j->h.W + 1) * sizeof *j->pred);
    explain_baseline_simulate(&j->base, &j->h, j->pred);
    if (r->c.scorer == EXPLAIN_SCORER_SIMULATION) {
        j->aligned = 1;
        explain_score_sim(&j->h, j->pred, &j->score, &j->score_top, &j->score_random);
    } else {
        uint8_t *said = xcalloc(j->n_items + 1, 1);
        for (size_t i = 0; i < j->n_items; i++) said[i] = baseline_says(j, r->c.scorer == EXPLAIN_SCORER_FUZZING, i);
        score_yes_no(j, said);
        free(said);
    }
    job_finish(j);
}

void explain_run_add(ExplainRun *r, ExplainJob *j)
{
    j->done = j->ok = j->dead = 0;
    j->score = j->score_top = j->score_random = NAN;
    j->cls = (ExplainClassScore){.balanced_accuracy = NAN, .tpr = NAN, .tnr = NAN, .precision = NAN,
                                 .recall = NAN, .f1 = NAN, .auroc = NAN};
    j->err[0] = 0;
    j->stage = EXPLAIN_STAGE_EXPLAIN;
    j->tries = 0;
    explain_job_prepare(&r->c, j);
    if (j->x.K == 0) {
        job_fail(j, "no top examples (the feature never fired)");
        j->dead = 1;
        return;
    }
    if (r->c.scorer != EXPLAIN_SCORER_NONE && j->h.E == 0) {
        job_fail(j, "no held-out examples to score: every top example is shown (--n-explain)"
                    " and there are no random examples");
        return;
    }
    if (r->c.backend == EXPLAIN_BACKEND_BASELINE) {
        run_baseline(r, j);
        return;
    }
    issue(r, j, 1);
}

int explain_run_wait(ExplainRun *r)
{
    if (r->err[0]) return -1;
    if (!r->pool) return 0;
    int n = http_run(r->pool, r->res, r->c.http.jobs, r->err, sizeof r->err);
    if (n <= 0) return n;
    for (int i = 0; i < n; i++) {
        HttpResult *res = &r->res[i];
        ExplainJob *j = res->user;
        j->attempts += res->attempts;
        if (res->ok) {
            on_body(r, j, res->body, res->len, 0);
        } else {
            /* the server's own message, when it sent one, says most */
            char why[300];
            ExplainReply rep;
            if (explain_reply_parse(&rep, res->body, res->len, why, sizeof why) == 0) {
                explain_reply_free(&rep);
                why[0] = 0;
            }
            char full[400];
            snprintf(full, sizeof full, "%s%s%s", res->err, strncmp(why, "API error", 9) ? "" : ": ",
                     strncmp(why, "API error", 9) ? "" : why);
            explain_scrub(full, r->c.api_key);
            job_fail(j, "%s request failed: %s", EXPLAIN_STAGE_NAME[j->stage], full);
        }
        http_result_free(res);
    }
    return r->err[0] ? -1 : 1;
}
