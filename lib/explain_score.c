/* explain_score.c: scores of a simulation (correlation) and of the yes/no
 * scorers, detection and fuzzing (balanced accuracy, precision, recall, F1,
 * AUROC), against the true activations (see explain.h). */
#include <math.h>
#include <stdlib.h>

#include "explain.h"

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

void explain_detect_labels(const ExplainHeldout *h, uint8_t *label)
{
    for (size_t e = 0; e < h->E; e++) {
        label[e] = 0;
        for (size_t t = 0; t < h->W; t++) label[e] |= h->tok[e][t] >= 0 && h->act[e][t] > 0;
    }
}

static double ratio(size_t a, size_t b) { return b ? (double)a / (double)b : NAN; }

void explain_class_score(ExplainClassScore *s, const uint8_t *label, const uint8_t *said, const double *prob,
                         size_t n)
{
    *s = (ExplainClassScore){.n = n};
    for (size_t i = 0; i < n; i++) {
        if (label[i]) {
            if (said[i]) s->tp++;
            else s->fn++;
        } else {
            if (said[i]) s->fp++;
            else s->tn++;
        }
    }
    s->tpr = s->recall = ratio(s->tp, s->tp + s->fn);
    s->tnr = ratio(s->tn, s->tn + s->fp);
    s->balanced_accuracy = isnan(s->tpr) ? s->tnr : isnan(s->tnr) ? s->tpr : 0.5 * (s->tpr + s->tnr);
    s->precision = ratio(s->tp, s->tp + s->fp);
    s->f1 = ratio(2 * s->tp, 2 * s->tp + s->fp + s->fn);
    /* Yes/no answers rank in two tied groups, so their AUROC (pairs ordered
     * right, ties half) is (TPR + TNR) / 2: no ranking needed. */
    if (prob) s->auroc = explain_auroc(prob, label, n);
    else s->auroc = isnan(s->tpr) || isnan(s->tnr) ? NAN : 0.5 * (s->tpr + s->tnr);
}

/* Items ordered by score, for ranks with ties. */
typedef struct { double v; uint8_t pos; } Scored;

static int scored_cmp(const void *a, const void *b)
{
    const Scored *x = a, *y = b;
    return x->v < y->v ? -1 : x->v > y->v;
}

double explain_auroc(const double *score, const uint8_t *label, size_t n)
{
    Scored *v = xmalloc((n + 1) * sizeof *v);
    size_t npos = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = (Scored){score[i], label[i] != 0};
        npos += v[i].pos;
    }
    size_t nneg = n - npos;
    if (!npos || !nneg) {
        free(v);
        return NAN;
    }
    qsort(v, n, sizeof *v, scored_cmp);
    /* the sum of the positives' ranks, a tie group sharing its mean rank */
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, pos = 0;
        while (j < n && v[j].v == v[i].v) pos += v[j++].pos;
        rank_sum += (double)pos * 0.5 * (double)(i + 1 + j);
        i = j;
    }
    free(v);
    return (rank_sum - (double)npos * (double)(npos + 1) / 2) / ((double)npos * (double)nneg);
}
