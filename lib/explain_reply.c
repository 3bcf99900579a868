/* explain_reply.c: the API's replies: the response body, the explanation
 * cleaned from an explainer's answer, the examples a detection answer names
 * (see explain.h). The simulation answer is explain_align.c's. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "explain.h"

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
