/* synth_score.c: how well an SAE recovered the features of a synthetic
 * model (synth.h): decoder directions against the true ones (MMCS and
 * SynthSAEBench's MCC), latent activations against the true activations
 * (MCC by Hungarian matching of correlations), detection F1, uniqueness. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "assign.h"
#include "gemm.h"
#include "synth.h"

/* Rows of v (n,D) scaled to unit norm into a new buffer (zero rows stay zero). */
static float *unit_rows(const float *v, size_t n, size_t D)
{
    float *u = xmalloc_aligned(n * D * sizeof *u);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t k = 0; k < D; k++) s += (double)v[i * D + k] * v[i * D + k];
        double inv = s > 0 ? 1 / sqrt(s) : 0;
        for (size_t k = 0; k < D; k++) u[i * D + k] = (float)(v[i * D + k] * inv);
    }
    return u;
}

/* Decoder rows against true directions: C (Fs,Ft) cosines; MMCS both
 * ways, each latent's best true feature, each true feature's best latent,
 * then C turned to |C| for the Hungarian MCC. */
static void score_decoder(SynthScore *sc, float *C, int32_t *best_lat, const float *W_dec, const float *dirs, size_t D)
{
    size_t Fs = sc->Fs, Ft = sc->Ft;
    float *Wn = unit_rows(W_dec, Fs, D), *Tn = unit_rows(dirs, Ft, D);
    sp_gemm(CblasNoTrans, CblasTrans, Fs, Ft, D, 1.0f, Wn, D, Tn, D, 0.0f, C, Ft);
    free(Wn), free(Tn);
    float *colmax = xmalloc(Ft * sizeof *colmax), *colabs = xmalloc(Ft * sizeof *colabs);
    for (size_t j = 0; j < Ft; j++) colmax[j] = -INFINITY, colabs[j] = -1, best_lat[j] = -1;
    double sum_row = 0;
    for (size_t l = 0; l < Fs; l++) {
        float *c = C + l * Ft, mx = -INFINITY, bestabs = -1;
        for (size_t j = 0; j < Ft; j++) {
            float a = fabsf(c[j]);
            if (c[j] > mx) mx = c[j];
            if (a > bestabs) bestabs = a, sc->dec_best[l] = (int32_t)j;
            if (c[j] > colmax[j]) colmax[j] = c[j];
            if (a > colabs[j]) colabs[j] = a, best_lat[j] = (int32_t)l;
            c[j] = a;
        }
        sc->dec_cos[l] = bestabs;
        sum_row += mx;
    }
    double sum_col = 0;
    for (size_t j = 0; j < Ft; j++) sum_col += colmax[j];
    sc->mmcs_sae = sum_row / Fs, sc->mmcs_true = sum_col / Ft;
    int32_t *m = xmalloc(Fs * sizeof *m);
    sc->mcc_dec = assign_solve(C, Fs, Ft, 1, m) / (double)(Fs < Ft ? Fs : Ft);
    free(m), free(colmax), free(colabs);
}

/* Pearson correlations of latents (A columns) with true activations (t
 * columns) into C (Fs,Ft); the sums of products go sparse, row by row. */
static void act_corr(const SynthScore *sc, float *C, const float *A, const SpCsr *t, double *ma, double *sa)
{
    size_t N = sc->rows, Fs = sc->Fs, Ft = sc->Ft;
    double *mt = xcalloc(Ft, sizeof *mt), *st = xcalloc(Ft, sizeof *st);
    float *S = xcalloc(Ft * Fs, sizeof *S);     /* (Ft,Fs) sum over rows of t[r,j] A[r,:] */
    for (size_t r = 0; r < N; r++)
        for (int64_t k = t->indptr[r]; k < t->indptr[r + 1]; k++) {
            size_t j = (size_t)t->indices[k];
            float v = t->values[k], *s = S + j * Fs;
            const float *a = A + r * Fs;
            mt[j] += v, st[j] += (double)v * v;
            for (size_t l = 0; l < Fs; l++) s[l] += v * a[l];
        }
    for (size_t j = 0; j < Ft; j++) {
        mt[j] /= N;
        double var = st[j] / N - mt[j] * mt[j];
        st[j] = var > 0 ? sqrt(var) : 0;
    }
    for (size_t l = 0; l < Fs; l++)
        for (size_t j = 0; j < Ft; j++) {
            double den = sa[l] * st[j];
            C[l * Ft + j] = den > 0 ? (float)((S[j * Fs + l] / N - ma[l] * mt[j]) / den) : 0.0f;
        }
    free(S), free(mt), free(st);
}

static double f1_of(double tp, double fired, double truth)
{
    return tp > 0 ? 2 * tp / (fired + truth) : 0.0;    /* 2PR/(P+R) with P = tp/fired, R = tp/truth */
}

void synth_score(SynthScore *sc, const float *A, const float *x, const float *xhat, const SpCsr *t,
                 const float *W_dec, const float *dirs, size_t N, size_t Fs, size_t Ft, size_t D)
{
    *sc = (SynthScore){.rows = N, .Fs = Fs, .Ft = Ft};
    sc->act_match = xmalloc(Fs * sizeof *sc->act_match), sc->act_corr = xmalloc(Fs * sizeof *sc->act_corr);
    sc->dec_best = xmalloc(Fs * sizeof *sc->dec_best), sc->dec_cos = xmalloc(Fs * sizeof *sc->dec_cos);
    sc->f1_latent = xmalloc(Fs * sizeof *sc->f1_latent);
    float *C = xmalloc_aligned(Fs * Ft * sizeof *C);
    int32_t *best_lat = xmalloc(Ft * sizeof *best_lat);
    score_decoder(sc, C, best_lat, W_dec, dirs, D);

    /* firing counts, means and deviations */
    double *fl = xcalloc(Fs, sizeof *fl), *ma = xcalloc(Fs, sizeof *ma), *sa = xcalloc(Fs, sizeof *sa);
    double *ft = xcalloc(Ft, sizeof *ft);
    for (size_t r = 0; r < N; r++)
        for (size_t l = 0; l < Fs; l++) {
            double a = A[r * Fs + l];
            fl[l] += a > 0, ma[l] += a, sa[l] += a * a;
        }
    for (size_t l = 0; l < Fs; l++) {
        ma[l] /= N;
        double var = sa[l] / N - ma[l] * ma[l];
        sa[l] = var > 0 ? sqrt(var) : 0;
        sc->sae_l0 += fl[l] / N, sc->dead += fl[l] == 0;
    }
    for (size_t k = 0; k < t->nnz; k++) ft[t->indices[k]] += 1;
    sc->true_l0 = (double)t->nnz / N;

    act_corr(sc, C, A, t, ma, sa);
    sc->mcc_act = assign_solve(C, Fs, Ft, 1, sc->act_match) / (double)(Fs < Ft ? Fs : Ft);
    int32_t *lat_of = xmalloc(Ft * sizeof *lat_of);
    for (size_t j = 0; j < Ft; j++) lat_of[j] = -1;
    for (size_t l = 0; l < Fs; l++) {
        int32_t j = sc->act_match[l];
        sc->act_corr[l] = j >= 0 ? C[l * Ft + (size_t)j] : NAN;
        if (j >= 0) lat_of[j] = (int32_t)l;
    }

    /* true positives: of each latent against its best decoder match (the
     * latents of a true feature as CSR), and of each Hungarian pair */
    int32_t *ptr = xcalloc(Ft + 1, sizeof *ptr), *lst = xmalloc(Fs * sizeof *lst), *fill = xmalloc(Ft * sizeof *fill);
    for (size_t l = 0; l < Fs; l++) ptr[sc->dec_best[l] + 1]++;
    for (size_t j = 0; j < Ft; j++) ptr[j + 1] += ptr[j];
    memcpy(fill, ptr, Ft * sizeof *fill);
    for (size_t l = 0; l < Fs; l++) lst[fill[sc->dec_best[l]]++] = (int32_t)l;
    double *tp = xcalloc(Fs, sizeof *tp), *tpm = xcalloc(Fs, sizeof *tpm);
    for (size_t r = 0; r < N; r++)
        for (int64_t k = t->indptr[r]; k < t->indptr[r + 1]; k++) {
            int32_t j = t->indices[k];
            for (int32_t q = ptr[j]; q < ptr[j + 1]; q++) tp[lst[q]] += A[r * Fs + (size_t)lst[q]] > 0;
            if (lat_of[j] >= 0) tpm[lat_of[j]] += A[r * Fs + (size_t)lat_of[j]] > 0;
        }
    size_t live = 0, pairs = 0, distinct = 0;
    uint8_t *seen = xcalloc(Ft, 1);
    int32_t *nlat = xcalloc(Ft, sizeof *nlat), *ntrue = xcalloc(Fs, sizeof *ntrue);
    for (size_t l = 0; l < Fs; l++) {
        int32_t j = sc->dec_best[l];
        sc->f1_latent[l] = NAN;
        if (sc->act_match[l] >= 0) sc->f1_matched += f1_of(tpm[l], fl[l], ft[sc->act_match[l]]), pairs++;
        if (!fl[l]) continue;
        live++;
        sc->f1_latent[l] = (float)f1_of(tp[l], fl[l], ft[j]);
        sc->f1 += sc->f1_latent[l];
        sc->precision += tp[l] / fl[l];
        sc->recall += ft[j] > 0 ? tp[l] / ft[j] : 0;
        distinct += !seen[j], seen[j] = 1, nlat[j]++;
    }
    for (size_t j = 0; j < Ft; j++) ntrue[best_lat[j]]++;
    size_t nt = 0, nl = 0;
    for (size_t l = 0; l < Fs; l++) if (ntrue[l]) sc->true_per_latent += ntrue[l], nl++;
    for (size_t j = 0; j < Ft; j++) if (nlat[j]) sc->latents_per_true += nlat[j], nt++;
    sc->true_per_latent = nl ? sc->true_per_latent / nl : 0;
    sc->latents_per_true = nt ? sc->latents_per_true / nt : 0;
    sc->f1 = live ? sc->f1 / live : 0, sc->precision = live ? sc->precision / live : 0;
    sc->recall = live ? sc->recall / live : 0, sc->uniqueness = live ? (double)distinct / live : 0;
    sc->f1_matched = pairs ? sc->f1_matched / pairs : 0;

    /* explained variance */
    double num = 0, den = 0;
    for (size_t k = 0; k < D; k++) {
        double m = 0;
        for (size_t r = 0; r < N; r++) m += x[r * D + k];
        m /= N;
        for (size_t r = 0; r < N; r++) {
            double e = (double)x[r * D + k] - xhat[r * D + k], c = x[r * D + k] - m;
            num += e * e, den += c * c;
        }
    }
    sc->r2 = den > 0 ? 1 - num / den : 0;
    free(C), free(best_lat), free(fl), free(ma), free(sa), free(ft), free(lat_of), free(ptr), free(lst), free(fill);
    free(tp), free(tpm), free(seen), free(nlat), free(ntrue);
}

void synth_score_free(SynthScore *sc)
{
    free(sc->act_match), free(sc->act_corr), free(sc->dec_best), free(sc->dec_cos), free(sc->f1_latent);
    *sc = (SynthScore){0};
}

json_t *synth_score_json(const SynthScore *sc)
{
    json_t *j = json_object();
    json_object_set_new(j, "rows", json_integer((json_int_t)sc->rows));
    json_object_set_new(j, "latents", json_integer((json_int_t)sc->Fs));
    json_object_set_new(j, "true_features", json_integer((json_int_t)sc->Ft));
    const struct { const char *k; double v; } m[] = {
        {"mcc", sc->mcc_act}, {"mcc_dec", sc->mcc_dec}, {"mmcs_sae", sc->mmcs_sae}, {"mmcs_true", sc->mmcs_true},
        {"f1", sc->f1}, {"precision", sc->precision}, {"recall", sc->recall}, {"f1_matched", sc->f1_matched},
        {"uniqueness", sc->uniqueness}, {"true_per_latent", sc->true_per_latent},
        {"latents_per_true", sc->latents_per_true}, {"r2", sc->r2}, {"true_l0", sc->true_l0},
        {"sae_l0", sc->sae_l0},
    };
    for (size_t i = 0; i < sizeof m / sizeof *m; i++)
        json_object_set_new(j, m[i].k, sp_json_real_or_null(m[i].v));
    json_object_set_new(j, "dead", json_integer((json_int_t)sc->dead));
    return j;
}
