/* explain_baseline.c: the offline baseline explainer and its simulation
 * (see explain.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain.h"
#include "explain_int.h"

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
