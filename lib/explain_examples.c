/* explain_examples.c: a feature's examples: the held-out split, the display
 * text of a token, and the text blocks that go into a prompt's {{EXAMPLES}}
 * (see explain.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain.h"
#include "explain_int.h"

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

/* "N: text" and a newline: the tokens of row, runs of marked ones (mark may
 * be NULL) between << and >>. */
static void numbered_line(Sb *b, const ExplainExamples *x, const int32_t *row, size_t W, const uint8_t *mark,
                          size_t num)
{
    char tb[256], nb[32];
    snprintf(nb, sizeof nb, "%zu: ", num);
    sb_str(b, nb);
    int open = 0;
    for (size_t t = 0; t < W; t++) {
        if (row[t] < 0) continue;
        int m = mark && mark[t];
        if (m != open) sb_str(b, m ? "<<" : ">>");
        open = m;
        sb_str(b, explain_token_text(x, row[t], tb, sizeof tb));
    }
    sb_str(b, open ? ">>\n" : "\n");
}

char *explain_text_detect(const ExplainExamples *x, const ExplainHeldout *h, const size_t *perm)
{
    Sb b = {0};
    for (size_t i = 0; i < h->E; i++) numbered_line(&b, x, h->tok[perm[i]], h->W, NULL, i + 1);
    return sb_done(&b);
}

char *explain_text_fuzz(const ExplainExamples *x, const ExplainHeldout *h, const ExplainFuzz *z, const size_t *perm)
{
    Sb b = {0};
    for (size_t i = 0; i < z->n; i++)
        numbered_line(&b, x, h->tok[z->ex[perm[i]]], h->W, z->mark + perm[i] * z->W, i + 1);
    return sb_done(&b);
}
