/* explain_score.c: scores of a simulation (correlation) and of a detection
 * (balanced accuracy) against the true activations (see explain.h). */
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
