/* explain.c: example split, prompts, reply parsing and alignment, scoring
 * and the baseline explainer (see explain.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "explain.h"

/* ---- a growing string ---- */
typedef struct { char *s; size_t n, cap; } Sb;

static void sb_add(Sb *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2 + 64;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void sb_str(Sb *b, const char *s) { sb_add(b, s, strlen(s)); }
static char *sb_done(Sb *b) { return b->s ? b->s : xstrdup(""); }

/* ---- examples ---- */
void explain_heldout(ExplainHeldout *h, const ExplainExamples *x, size_t n_explain, size_t n_score)
{
    size_t nt = x->K > n_explain ? x->K - n_explain : 0, nr = x->R;
    if (nt > n_score) nt = n_score;
    if (nr > n_score) nr = n_score;
    h->E = nt + nr;
    h->W = x->W;
    h->n_top = nt;
    h->tok = xmalloc((h->E + 1) * sizeof *h->tok);
    h->act = xmalloc((h->E + 1) * sizeof *h->act);
    for (size_t e = 0; e < nt; e++) {
        h->tok[e] = x->top_tokens + (n_explain + e) * x->W;
        h->act[e] = x->top_acts + (n_explain + e) * x->W;
    }
    for (size_t e = 0; e < nr; e++) {
        h->tok[nt + e] = x->rand_tokens + e * x->W;
        h->act[nt + e] = x->rand_acts + e * x->W;
    }
}

void explain_heldout_free(ExplainHeldout *h)
{
    free(h->tok);
    free(h->act);
    h->tok = NULL;
    h->act = NULL;
}

const char *explain_token_text(const ExplainExamples *x, int32_t id, char *buf, size_t n)
{
    char key[24];
    snprintf(key, sizeof key, "%d", (int)id);
    const char *s = json_string_value(json_object_get(x->token_strs, key));
    if (!s) {
        snprintf(buf, n, "<%d>", (int)id);
        return buf;
    }
    size_t j = 0;
    for (; *s && j + 3 < n; s++) {
        const char *esc = *s == '\n' ? "\\n" : *s == '\t' ? "\\t" : *s == '\r' ? "\\r" : NULL;
        if (esc) {
            buf[j++] = esc[0];
            buf[j++] = esc[1];
        } else {
            buf[j++] = *s;
        }
    }
    buf[j] = 0;
    return buf;
}

/* ---- prompt templates ---- */
int explain_prompt_parse(ExplainPrompt *p, const char *text, const char *name, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->path = xstrdup(name);
    Sb cur = {0};
    int line_no = 0;
    for (const char *s = text; *s;) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        line_no++;
        if (len >= 4 && !strncmp(s, "=== ", 4)) {
            char role[32];
            snprintf(role, sizeof role, "%.*s", (int)(len - 4 < 31 ? len - 4 : 31), s + 4);
            while (*role && isspace((unsigned char)role[strlen(role) - 1])) role[strlen(role) - 1] = 0;
            if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
                snprintf(err, errlen, "%s: line %d: unknown role '%s' (system, user or assistant)", name, line_no, role);
                goto fail;
            }
            if (p->n == EXPLAIN_MAX_MSGS) {
                snprintf(err, errlen, "%s: more than %d messages", name, EXPLAIN_MAX_MSGS);
                goto fail;
            }
            if (p->n) p->text[p->n - 1] = sb_done(&cur);
            cur = (Sb){0};
            p->role[p->n++] = xstrdup(role);
        } else if (p->n) {
            sb_add(&cur, s, len);
            sb_str(&cur, "\n");
        } else if (len && s[0] != '#' && strspn(s, " \t\r") < len) {
            snprintf(err, errlen, "%s: line %d: text before the first '=== ROLE' line", name, line_no);
            goto fail;
        }
        s += len + (e != NULL);
    }
    if (!p->n) {
        snprintf(err, errlen, "%s: no messages (expected '=== system', '=== user' lines)", name);
        goto fail;
    }
    p->text[p->n - 1] = sb_done(&cur);
    /* trim the blank lines that separate messages */
    for (size_t i = 0; i < p->n; i++) {
        char *t = p->text[i];
        size_t l = strlen(t);
        while (l && (t[l - 1] == '\n' || t[l - 1] == ' ')) t[--l] = 0;
    }
    return 0;
fail:
    free(cur.s);
    explain_prompt_free(p);
    return -1;
}

int explain_prompt_load(ExplainPrompt *p, const char *path, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    size_t len;
    char *text = sp_read_file(path, &len);
    if (!text) {
        snprintf(err, errlen, "%s: cannot read prompt file: %s", path, strerror(errno));
        return -1;
    }
    if (strlen(text) != len) {
        snprintf(err, errlen, "%s: prompt file contains a NUL byte", path);
        free(text);
        return -1;
    }
    int rc = explain_prompt_parse(p, text, path, err, errlen);
    free(text);
    return rc;
}

void explain_prompt_free(ExplainPrompt *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->role[i]);
        free(p->text[i]);
    }
    free(p->path);
    memset(p, 0, sizeof *p);
}

json_t *explain_prompt_render(const ExplainPrompt *p, const char *examples, const char *explanation,
                              const char *n)
{
    static const char *names[] = {"{{EXAMPLES}}", "{{EXPLANATION}}", "{{N}}"};
    const char *vals[] = {examples, explanation, n};
    json_t *msgs = json_array();
    for (size_t i = 0; i < p->n; i++) {
        Sb b = {0};
        const char *s = p->text[i];
        while (*s) {
            size_t v = 0;
            while (v < 3 && (!vals[v] || strncmp(s, names[v], strlen(names[v])))) v++;
            if (v < 3) {
                sb_str(&b, vals[v]);
                s += strlen(names[v]);
            } else {
                sb_add(&b, s++, 1);
            }
        }
        char *t = sb_done(&b);
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", p->role[i], "content", t));
        free(t);
    }
    return msgs;
}

char *explain_messages_text(const json_t *msgs)
{
    Sb b = {0};
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *text = json_string_value(json_object_get(m, "content"));
        if (!role || !text) continue;
        if (!strcmp(role, "user")) sb_str(&b, "User:\n");
        else if (!strcmp(role, "assistant")) sb_str(&b, "Assistant:\n");
        sb_str(&b, text);
        sb_str(&b, "\n\n");
    }
    sb_str(&b, "Assistant:\n");
    return sb_done(&b);
}

/* ---- example text ---- */
char *explain_text_explain(const ExplainExamples *x, size_t n_show)
{
    if (n_show > x->K) n_show = x->K;
    float mx = 0;
    for (size_t i = 0; i < n_show * x->W; i++)
        if (x->top_tokens[i] >= 0 && x->top_acts[i] > mx) mx = x->top_acts[i];
    Sb b = {0};
    char tb[256], line[300];
    for (size_t k = 0; k < n_show; k++) {
        sb_str(&b, "<start>\n");
        for (size_t t = 0; t < x->W; t++) {
            int32_t id = x->top_tokens[k * x->W + t];
            if (id < 0) continue;
            float a = x->top_acts[k * x->W + t];
            int v = mx > 0 && a > 0 ? (int)floorf(10.0f * a / mx) : 0;
            snprintf(line, sizeof line, "%s\t%d\n", explain_token_text(x, id, tb, sizeof tb), v > 10 ? 10 : v);
            sb_str(&b, line);
        }
        sb_str(&b, "<end>\n");
    }
    return sb_done(&b);
}

char *explain_text_simulate(const ExplainExamples *x, const ExplainHeldout *h)
{
    Sb b = {0};
    char tb[256];
    for (size_t e = 0; e < h->E; e++) {
        sb_str(&b, "<start>\n");
        for (size_t t = 0; t < h->W; t++) {
            if (h->tok[e][t] < 0) continue;
            sb_str(&b, explain_token_text(x, h->tok[e][t], tb, sizeof tb));
            sb_str(&b, "\tunknown\n");
        }
        sb_str(&b, "<end>\n");
    }
    return sb_done(&b);
}

char *explain_text_detect(const ExplainExamples *x, const ExplainHeldout *h, const size_t *perm)
{
    Sb b = {0};
    char tb[256], num[32];
    for (size_t i = 0; i < h->E; i++) {
        snprintf(num, sizeof num, "%zu: ", i + 1);
        sb_str(&b, num);
        for (size_t t = 0; t < h->W; t++)
            if (h->tok[perm[i]][t] >= 0) sb_str(&b, explain_token_text(x, h->tok[perm[i]][t], tb, sizeof tb));
        sb_str(&b, "\n");
    }
    return sb_done(&b);
}

/* ---- replies ---- */
/* The completions-style logprobs some servers put in chat replies
 * ({"tokens": [...], "top_logprobs": [{"tok": lp, ...}, ...]}) in the chat
 * shape ([{"token", "top_logprobs": [{"token", "logprob"}]}]). */
static json_t *legacy_logprobs(const json_t *lpo)
{
    json_t *out = json_array(), *toks = json_object_get(lpo, "tokens"), *tops = json_object_get(lpo, "top_logprobs");
    size_t i;
    json_t *t;
    json_array_foreach(toks, i, t) {
        json_t *alts = json_array(), *top = json_array_get(tops, i), *v;
        const char *k;
        json_object_foreach(top, k, v) json_array_append_new(alts, json_pack("{s:s, s:O}", "token", k, "logprob", v));
        json_array_append_new(out, json_pack("{s:s, s:o}", "token", json_string_value(t) ? json_string_value(t) : "",
                                             "top_logprobs", alts));
    }
    return out;
}

int explain_reply_parse(ExplainReply *r, const char *body, size_t len, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!j || !json_is_object(j)) {
        snprintf(err, errlen, "reply is not a JSON object (%zu bytes)", len);
        json_decref(j);
        return -1;
    }
    const char *apierr = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    const char *content = json_string_value(json_object_get(json_object_get(ch, "message"), "content"));
    if (!content) content = json_string_value(json_object_get(ch, "text"));
    if (!content) {
        if (apierr) snprintf(err, errlen, "API error: %.200s", apierr);
        else snprintf(err, errlen, "reply has no choices[0].message.content or choices[0].text");
        json_decref(j);
        return -1;
    }
    r->content = xstrdup(content);
    json_t *lpo = json_object_get(ch, "logprobs"), *lp = json_object_get(lpo, "content");
    if (json_is_array(lp)) r->logprobs = json_incref(lp);
    else if (json_is_array(json_object_get(lpo, "tokens"))) r->logprobs = legacy_logprobs(lpo);
    json_t *u = json_object_get(j, "usage");
    r->prompt_tokens = json_integer_value(json_object_get(u, "prompt_tokens"));
    r->completion_tokens = json_integer_value(json_object_get(u, "completion_tokens"));
    json_decref(j);
    return 0;
}

void explain_reply_free(ExplainReply *r)
{
    free(r->content);
    json_decref(r->logprobs);
    memset(r, 0, sizeof *r);
}

/* The closing quote that matches an opening one at s, or NULL. */
static const char *quote_pair(const char *s, size_t *len)
{
    static const char *q[][2] = {{"\"", "\""}, {"'", "'"}, {"\xe2\x80\x9c", "\xe2\x80\x9d"}, {"\xe2\x80\x98", "\xe2\x80\x99"}};
    for (size_t i = 0; i < sizeof q / sizeof *q; i++)
        if (!strncmp(s, q[i][0], strlen(q[i][0]))) {
            *len = strlen(q[i][0]);
            return q[i][1];
        }
    return NULL;
}

static int strip_prefix_ci(char **s, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncasecmp(*s, prefix, n)) return 0;
    *s += n;
    return 1;
}

char *explain_clean(const char *reply)
{
    static const char *prefixes[] = {"the main thing this feature does is find", "the main thing this neuron does is find",
                                     "explanation of feature behavior:", "explanation of neuron behavior:",
                                     "explanation:", "answer:", "feature:"};
    char *buf = xstrdup(reply), *s = buf;
    /* drop markdown bold, backticks and heading marks everywhere */
    size_t j = 0;
    for (size_t i = 0; buf[i]; i++)
        if (!strchr("*`#", buf[i])) buf[j++] = buf[i];
    buf[j] = 0;
    /* first non-empty line */
    for (;;) {
        s += strspn(s, " \t\r\n>-");
        char *e = strchr(s, '\n');
        if (e) *e = 0;
        if (*s || !e) break;
        s = e + 1;
    }
    for (int changed = 1; changed;) {
        changed = 0;
        s += strspn(s, " \t\r:-");
        for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) changed |= strip_prefix_ci(&s, prefixes[i]);
        /* a quote around the whole answer goes; a quoted token inside stays */
        size_t ql, l = strlen(s);
        const char *close = quote_pair(s, &ql);
        if (!close) continue;
        size_t cl = strlen(close);
        while (l > ql + cl && strchr(" .\t\r", s[l - 1])) l--;
        if (l >= ql + cl && !strncmp(s + l - cl, close, cl) &&
            strstr(s + ql, close) == s + l - cl) {
            s[l - cl] = 0;
            s += ql;
            changed = 1;
        }
    }
    size_t l = strlen(s);
    while (l && (isspace((unsigned char)s[l - 1]) || s[l - 1] == '.')) s[--l] = 0;
    char *out = xstrdup(s);
    free(buf);
    return out;
}

/* ---- aligning a simulation reply ---- */
typedef struct {
    char *tok;          /* token text, trimmed (points into a copy of the reply) */
    int value;          /* 0..10 */
    size_t off;         /* byte offset of the value in the reply */
    int block;          /* block index, -1 outside any block */
} SimLine;

static char *trim(char *s)
{
    while (*s == ' ') s++;
    size_t l = strlen(s);
    while (l && (s[l - 1] == ' ' || s[l - 1] == '\r')) s[--l] = 0;
    return s;
}

/* Parse "token<TAB>N" lines; blocks count <start> markers. */
static size_t parse_sim_lines(char *copy, SimLine **out, int *nblocks)
{
    size_t n = 0, cap = 0;
    SimLine *v = NULL;
    int block = -1, nb = 0;
    for (char *s = copy; s && *s;) {
        char *e = strchr(s, '\n');
        if (e) *e = 0;
        char *line = s;
        s = e ? e + 1 : NULL;
        char *t = trim(line);
        if (!strcmp(t, "<start>")) { block = nb++; continue; }
        if (!strcmp(t, "<end>")) { block = -1; continue; }
        char *sep = strrchr(line, '\t');
        if (!sep) sep = strrchr(t, ' ');
        if (!sep) continue;
        char *num = sep + 1, *end;
        while (*num == ' ') num++;
        long val = strtol(num, &end, 10);
        if (end == num || *trim(end) || val < 0 || val > 10) continue;
        *sep = 0;
        if (n == cap) v = xrealloc(v, (cap = cap * 2 + 64) * sizeof *v);
        v[n++] = (SimLine){.tok = trim(line), .value = (int)val, .off = (size_t)(num - copy), .block = block};
    }
    *out = v;
    *nblocks = nb;
    return n;
}

/* The logprobs entries with the reply offset each starts at, for lookup by
 * offset (bisection) instead of a walk per line. */
typedef struct {
    size_t n;
    size_t *start;              /* (n + 1) */
    json_t **ent;               /* (n) borrowed */
} LpIndex;

static void lp_index(LpIndex *ix, const json_t *lp)
{
    ix->n = json_is_array(lp) ? json_array_size(lp) : 0;
    ix->start = xmalloc((ix->n + 1) * sizeof *ix->start);
    ix->ent = xmalloc((ix->n + 1) * sizeof *ix->ent);
    size_t pos = 0;
    for (size_t i = 0; i < ix->n; i++) {
        ix->ent[i] = json_array_get(lp, i);
        const char *tk = json_string_value(json_object_get(ix->ent[i], "token"));
        ix->start[i] = pos;
        pos += tk ? strlen(tk) : 0;
    }
    ix->start[ix->n] = pos;
}

/* Value at a reply offset: the expected value over 0..10 from the logprobs
 * entry covering off (counted in *used), or fallback when there is none. */
static float lp_value(const LpIndex *ix, size_t off, int fallback, size_t *used)
{
    if (!ix->n || off >= ix->start[ix->n]) return (float)fallback;
    size_t lo = 0, hi = ix->n;   /* the last entry starting at or before off */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ix->start[mid] <= off) lo = mid;
        else hi = mid;
    }
    /* the sampled token must be the whole number written: a tokenizer that
     * cuts "10" into "1" and "0" offers digits, not 0..10, at that place */
    const char *tk = json_string_value(json_object_get(ix->ent[lo], "token"));
    char *tend;
    long tv = tk ? strtol(tk, &tend, 10) : -1;
    if (!tk || tend == tk || tv != fallback) return (float)fallback;
    while (*tend == ' ' || *tend == '\t' || *tend == '\n' || *tend == '\r') tend++;
    if (*tend) return (float)fallback;
    double sp = 0, sv = 0;
    size_t k;
    json_t *alt;
    json_array_foreach(json_object_get(ix->ent[lo], "top_logprobs"), k, alt) {
        const char *at = json_string_value(json_object_get(alt, "token"));
        char *end;
        long v = at ? strtol(at, &end, 10) : -1;
        if (!at || end == at || *end || v < 0 || v > 10) continue;
        double p = exp(json_number_value(json_object_get(alt, "logprob")));
        sp += p;
        sv += p * (double)v;
    }
    if (sp <= 0) return (float)fallback;
    ++*used;
    return (float)(sv / sp);
}

/* LCS of expected token texts exp[0..m) and lines[0..n); match[i] = index of
 * the line matched to exp[i] or -1. Returns the number matched. */
static size_t lcs(char **exp, size_t m, SimLine **lines, size_t n, long *match)
{
    int *dp = xcalloc((m + 1) * (n + 1), sizeof *dp);
#define DP(i, j) dp[(i) * (n + 1) + (j)]
    for (size_t i = m; i-- > 0;)
        for (size_t j = n; j-- > 0;) {
            int eq = !strcmp(exp[i], lines[j]->tok);
            int best = DP(i + 1, j) > DP(i, j + 1) ? DP(i + 1, j) : DP(i, j + 1);
            DP(i, j) = eq && DP(i + 1, j + 1) + 1 > best ? DP(i + 1, j + 1) + 1 : best;
        }
    size_t i = 0, j = 0, got = 0;
    for (size_t k = 0; k < m; k++) match[k] = -1;
    while (i < m && j < n) {
        if (!strcmp(exp[i], lines[j]->tok) && DP(i, j) == DP(i + 1, j + 1) + 1) {
            match[i++] = (long)j++;
            got++;
        } else if (DP(i + 1, j) >= DP(i, j + 1)) {
            i++;
        } else {
            j++;
        }
    }
#undef DP
    free(dp);
    return got;
}

double explain_align(const ExplainExamples *x, const ExplainHeldout *h, const char *content,
                     const json_t *lp, float *pred, double *lp_frac, char *err, size_t errlen)
{
    size_t n_lp = 0;
    if (lp_frac) *lp_frac = 0;
    char *copy = xstrdup(content);
    SimLine *lines;
    int nb;
    size_t nl = parse_sim_lines(copy, &lines, &nb);
    size_t E = h->E, W = h->W, total = 0, got = 0;
    memset(pred, 0, E * W * sizeof *pred);
    if (!nl) {
        snprintf(err, errlen, "simulation reply has no 'token<TAB>number' lines");
        free(copy);
        return -1;
    }
    /* expected texts of every held-out token, trimmed as the reply's are */
    char **exp = xmalloc(E * W * sizeof *exp);
    size_t *pos = xmalloc(E * W * sizeof *pos);
    size_t *start = xmalloc((E + 1) * sizeof *start);
    char tb[256];
    for (size_t e = 0; e < E; e++) {
        start[e] = total;
        for (size_t t = 0; t < W; t++) {
            if (h->tok[e][t] < 0) continue;
            char *s = xstrdup(explain_token_text(x, h->tok[e][t], tb, sizeof tb));
            exp[total] = s;
            memmove(s, trim(s), strlen(trim(s)) + 1);
            pos[total++] = e * W + t;
        }
    }
    start[E] = total;
    LpIndex ix;
    lp_index(&ix, lp);
    SimLine **ptr = xmalloc(nl * sizeof *ptr);
    long *match = xmalloc((total + 1) * sizeof *match);
    if (nb == 0) {
        /* no block markers: one alignment over everything */
        for (size_t j = 0; j < nl; j++) ptr[j] = &lines[j];
        got = lcs(exp, total, ptr, nl, match);
        for (size_t i = 0; i < total; i++)
            if (match[i] >= 0) pred[pos[i]] = lp_value(&ix, ptr[match[i]]->off, ptr[match[i]]->value, &n_lp);
    } else {
        /* each example takes the unused block it matches best */
        uint8_t *used = xcalloc((size_t)nb, 1);
        long *best_match = xmalloc((total + 1) * sizeof *best_match);
        for (size_t e = 0; e < E; e++) {
            size_t m = start[e + 1] - start[e], best = 0;
            int bb = -1;
            for (int b = 0; b < nb; b++) {
                if (used[b]) continue;
                size_t n = 0;
                for (size_t j = 0; j < nl; j++)
                    if (lines[j].block == b) ptr[n++] = &lines[j];
                size_t g = lcs(exp + start[e], m, ptr, n, match);
                if (g <= best) continue;
                best = g;
                bb = b;
                for (size_t i = 0; i < m; i++) best_match[i] = match[i] >= 0 ? (long)(ptr[match[i]] - lines) : -1;
            }
            if (bb < 0) continue;
            used[bb] = 1;
            got += best;
            for (size_t i = 0; i < m; i++)
                if (best_match[i] >= 0)
                    pred[pos[start[e] + i]] = lp_value(&ix, lines[best_match[i]].off, lines[best_match[i]].value, &n_lp);
        }
        free(used);
        free(best_match);
    }
    for (size_t i = 0; i < total; i++) free(exp[i]);
    free(exp);
    free(pos);
    free(start);
    free(ptr);
    free(match);
    free(ix.start);
    free(ix.ent);
    free(lines);
    free(copy);
    if (lp_frac && got) *lp_frac = (double)n_lp / (double)got;
    return total ? (double)got / (double)total : 1.0;
}

int explain_parse_detect(const char *content, size_t E, uint8_t *said, char *err, size_t errlen)
{
    memset(said, 0, E);
    int named = 0;
    for (const char *s = content; *s;) {
        if (!isdigit((unsigned char)*s)) {
            s++;
            continue;
        }
        char *end;
        long v = strtol(s, &end, 10);
        if (v >= 1 && (size_t)v <= E) {
            said[v - 1] = 1;
            named = 1;
        }
        s = end;
    }
    if (named || strcasestr(content, "none")) return 0;
    snprintf(err, errlen, "detection reply names no example and does not say 'none'");
    return -1;
}

/* ---- scoring ---- */
double explain_pearson(const float *a, const float *b, size_t n)
{
    if (n < 2) return NAN;
    double ma = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++) {
        double da = a[i] - ma, db = b[i] - mb;
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    if (saa <= 0 || sbb <= 0) return NAN;
    return sab / sqrt(saa * sbb);
}

/* Correlation over held-out rows [e0, e1), padding skipped. */
static double pearson_rows(const ExplainHeldout *h, const float *pred, size_t e0, size_t e1)
{
    size_t n = 0;
    float *a = xmalloc((e1 - e0) * h->W * sizeof *a + 1), *b = xmalloc((e1 - e0) * h->W * sizeof *b + 1);
    for (size_t e = e0; e < e1; e++)
        for (size_t t = 0; t < h->W; t++) {
            if (h->tok[e][t] < 0) continue;
            a[n] = h->act[e][t];
            b[n++] = pred[e * h->W + t];
        }
    double r = explain_pearson(a, b, n);
    free(a);
    free(b);
    return r;
}

void explain_score_sim(const ExplainHeldout *h, const float *pred, double *all, double *top, double *rnd)
{
    *all = pearson_rows(h, pred, 0, h->E);
    *top = pearson_rows(h, pred, 0, h->n_top);
    *rnd = pearson_rows(h, pred, h->n_top, h->E);
}

double explain_score_detect(const ExplainHeldout *h, const uint8_t *said, double *tpr, double *tnr)
{
    size_t pos = 0, neg = 0, tp = 0, tn = 0;
    for (size_t e = 0; e < h->E; e++) {
        int act = 0;
        for (size_t t = 0; t < h->W; t++) act |= h->tok[e][t] >= 0 && h->act[e][t] > 0;
        if (act) {
            pos++;
            tp += said[e] != 0;
        } else {
            neg++;
            tn += said[e] == 0;
        }
    }
    *tpr = pos ? (double)tp / (double)pos : NAN;
    *tnr = neg ? (double)tn / (double)neg : NAN;
    if (!pos) return *tnr;
    if (!neg) return *tpr;
    return 0.5 * (*tpr + *tnr);
}

/* ---- baseline ---- */
typedef struct { int32_t id; double fires, sum, bg, rank; } BaseTok;

static BaseTok *base_find(BaseTok **v, size_t *n, size_t *cap, int32_t id)
{
    for (size_t i = 0; i < *n; i++)
        if ((*v)[i].id == id) return &(*v)[i];
    if (*n == *cap) *v = xrealloc(*v, (*cap = *cap * 2 + 64) * sizeof **v);
    (*v)[*n] = (BaseTok){.id = id};
    return &(*v)[(*n)++];
}

static int base_cmp(const void *a, const void *b)
{
    const BaseTok *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

char *explain_baseline(const ExplainExamples *x, size_t n_explain, size_t n_score, size_t max_tokens,
                       ExplainBaseline *b)
{
    size_t ns = n_explain < x->K ? n_explain : x->K, W = x->W;
    float mx = 0;
    for (size_t i = 0; i < ns * W; i++)
        if (x->top_tokens[i] >= 0 && x->top_acts[i] > mx) mx = x->top_acts[i];
    BaseTok *v = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < ns * W; i++) {
        if (x->top_tokens[i] < 0) continue;
        BaseTok *t = base_find(&v, &n, &cap, x->top_tokens[i]);
        if (x->top_acts[i] > 0) {
            t->fires += 1;
            t->sum += mx > 0 ? 10.0 * x->top_acts[i] / mx : 0;
        } else {
            t->bg += 1;
        }
    }
    for (size_t r = n_score; r < x->R; r++)
        for (size_t w = 0; w < W; w++) {
            int32_t id = x->rand_tokens[r * W + w];
            if (id < 0) continue;
            for (size_t i = 0; i < n; i++)
                if (v[i].id == id) v[i].bg += 1;
        }
    double most = 0;
    for (size_t i = 0; i < n; i++) {
        v[i].rank = v[i].fires > 0 ? log((v[i].fires + 1) / (v[i].bg + 1)) : -INFINITY;
        if (v[i].fires > most) most = v[i].fires;
    }
    qsort(v, n, sizeof *v, base_cmp);
    if (max_tokens > EXPLAIN_BASELINE_MAX) max_tokens = EXPLAIN_BASELINE_MAX;
    double need = most >= 2 ? 2 : 1;
    b->n = 0;
    for (size_t i = 0; i < n && b->n < max_tokens; i++) {
        if (v[i].rank <= 0 || v[i].fires < need) continue;
        b->id[b->n] = v[i].id;
        b->value[b->n++] = (float)(v[i].sum / v[i].fires);
    }
    free(v);
    Sb s = {0};
    char tb[256];
    sb_str(&s, b->n == 1 ? "the token " : b->n ? "the tokens " : "nothing recognisable");
    for (size_t i = 0; i < b->n; i++) {
        if (i) sb_str(&s, i + 1 == b->n ? " and " : ", ");
        sb_str(&s, "\"");
        sb_str(&s, explain_token_text(x, b->id[i], tb, sizeof tb));
        sb_str(&s, "\"");
    }
    return sb_done(&s);
}

void explain_baseline_simulate(const ExplainBaseline *b, const ExplainHeldout *h, float *pred)
{
    for (size_t e = 0; e < h->E; e++)
        for (size_t t = 0; t < h->W; t++) {
            float v = 0;
            for (size_t i = 0; i < b->n; i++)
                if (h->tok[e][t] == b->id[i]) v = b->value[i];
            pred[e * h->W + t] = v;
        }
}

/* ---- prices (USD per million tokens; longest matching prefix wins) ---- */
static const struct { const char *prefix; double in, out; } PRICES[] = {
    {"gpt-4-turbo", 10.0, 30.0},   {"gpt-4-1106", 10.0, 30.0},  {"gpt-4-0125", 10.0, 30.0},
    {"gpt-4o-mini", 0.15, 0.60},   {"gpt-4o", 2.50, 10.0},      {"gpt-4.1-mini", 0.40, 1.60},
    {"gpt-4.1-nano", 0.10, 0.40},  {"gpt-4.1", 2.00, 8.00},     {"gpt-4-32k", 60.0, 120.0},
    {"gpt-4", 30.0, 60.0},         {"gpt-3.5-turbo", 0.50, 1.50},
};

int explain_price(const char *model, double *in_per_m, double *out_per_m)
{
    size_t best = 0;
    int found = 0;
    for (size_t i = 0; i < sizeof PRICES / sizeof *PRICES; i++) {
        size_t l = strlen(PRICES[i].prefix);
        if (strncmp(model, PRICES[i].prefix, l) || l <= best) continue;
        best = l;
        *in_per_m = PRICES[i].in;
        *out_per_m = PRICES[i].out;
        found = 1;
    }
    if (!found) *in_per_m = *out_per_m = 0;
    return found;
}
