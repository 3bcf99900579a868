/* explain_align.c: a simulation reply aligned with the held-out tokens,
 * valued from logprobs where they came back (see explain.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain.h"

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
