/* Unit tests for lib/recon.c: metrics from sums against direct formulas,
 * exact merging, the record round trip, the row patch, log-softmax and KL
 * against straightforward double computations. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "recon.h"
#include "tap.h"

/* Fill sums as the evaluation would from rows x (N,D), x_hat (N,D), f (N,F). */
static void fill(ReconSums *s, const double *x, const double *xh, const double *f, size_t N)
{
    for (size_t n = 0; n < N; n++) {
        for (size_t i = 0; i < s->D; i++) {
            double v = x[n * s->D + i], e = v - xh[n * s->D + i];
            s->sum_x[i] += v, s->sum_sq += v * v, s->sse += e * e;
        }
        for (size_t j = 0; j < s->F; j++) {
            int on = f[n * s->F + j] > 0;
            s->fires[j] += on, s->l0 += on;
        }
    }
    s->n_rows += N, s->tokens += N + 1, s->windows += 1;
}

int main(void)
{
    enum { N = 40, D = 6, F = 10 };
    SpRng rng;
    sp_rng_seed(&rng, 7);
    double x[N * D], xh[N * D], f[N * F];
    for (size_t i = 0; i < N * D; i++) x[i] = 3 + sp_rng_normal(&rng), xh[i] = x[i] + 0.3 * sp_rng_normal(&rng);
    for (size_t i = 0; i < N * F; i++) f[i] = sp_rng_normal(&rng) - 1.2;
    for (size_t n = 0; n < N; n++) f[n * F + 0] = 0, f[n * F + 1] = n < 5 ? 1 : 0, f[n * F + 2] = 1;

    // direct formulas
    double mu[D] = {0}, sse = 0, var = 0, l0 = 0;
    for (size_t n = 0; n < N; n++)
        for (size_t i = 0; i < D; i++) mu[i] += x[n * D + i] / N;
    for (size_t n = 0; n < N; n++)
        for (size_t i = 0; i < D; i++) {
            sse += pow(x[n * D + i] - xh[n * D + i], 2);
            var += pow(x[n * D + i] - mu[i], 2);
        }
    size_t dead = 0, dense = 0;
    for (size_t j = 0; j < F; j++) {
        size_t c = 0;
        for (size_t n = 0; n < N; n++) c += f[n * F + j] > 0;
        l0 += c, dead += c == 0, dense += c > 0.1 * N;
    }

    ReconSums a, b, all;
    recon_sums_init(&a, D, F), recon_sums_init(&b, D, F), recon_sums_init(&all, D, F);
    fill(&a, x, xh, f, 17);
    fill(&b, x + 17 * D, xh + 17 * D, f + 17 * F, N - 17);
    fill(&all, x, xh, f, N);
    double L[RECON_NRUN] = {3.0, 3.5, 5.0, 4.0};
    for (int i = 0; i < RECON_NRUN; i++) a.loss[i] = L[i] * 30, b.loss[i] = L[i] * 20, all.loss[i] = L[i] * 50;
    a.n_pred = 30, b.n_pred = 20, all.n_pred = 50;
    a.kl = 1.5, b.kl = 0.5, all.kl = 2, a.n_kl = 25, b.n_kl = 15, all.n_kl = 40;
    char err[256];
    ok(recon_sums_add(&a, &b, err, sizeof err) == 0, "add two shards");
    ReconMetrics m, m1;
    recon_metrics(&a, &m);
    recon_metrics(&all, &m1);
    ok(fabs(m.fvu - sse / var) < 1e-12 * (sse / var), "fvu from sums %.12g == direct %.12g", m.fvu, sse / var);
    ok(fabs(m.mse - sse / (N * D)) < 1e-14, "mse per element %.12g", m.mse);
    ok(fabs(m.l0 - l0 / N) < 1e-14, "l0 %.6g == %.6g", m.l0, l0 / N);
    ok(m.dead_frac == (double)dead / F && m.dense_frac == (double)dense / F, "dead %g (want %g) dense %g (want %g)",
       m.dead_frac, (double)dead / F, m.dense_frac, (double)dense / F);
    ok(dead >= 1 && dense >= 1, "the data has dead and dense features (%zu, %zu)", dead, dense);
    ok(fabs(m.score - (5.0 - 3.5) / (5.0 - 3.0)) < 1e-12 && fabs(m.score_mean_abl - (4.0 - 3.5) / (4.0 - 3.0)) < 1e-12,
       "score %.12g, score vs mean %.12g", m.score, m.score_mean_abl);
    ok(fabs(m.kl - 2.0 / 40) < 1e-15 && m.tokens == N + 2, "kl over n_kl, tokens summed");
    ok(fabs(m.fvu - m1.fvu) < 1e-12 && fabs(m.mse - m1.mse) < 1e-15 && m.l0 == m1.l0 &&
       fabs(m.clean_loss - m1.clean_loss) < 1e-15, "merged shards == one run");

    // record round trip: exact
    TszRecord rec;
    tsz_record_init(&rec);
    recon_sums_to_record(&a, &m, &rec);
    ReconSums back;
    ok(recon_sums_from_record(&back, &rec, err, sizeof err) == 0, "from record: %s", err);
    int same = back.D == D && back.F == F && back.n_rows == a.n_rows && back.sse == a.sse && back.kl == a.kl &&
               !memcmp(back.sum_x, a.sum_x, D * sizeof(double)) && !memcmp(back.fires, a.fires, F * sizeof(int64_t));
    for (int i = 0; i < RECON_NRUN; i++) same = same && back.loss[i] == a.loss[i];
    ok(same, "record round trip is bit exact");
    recon_sums_free(&back);
    json_object_del(rec.meta, "sum_x");
    ok(recon_sums_from_record(&back, &rec, err, sizeof err) < 0 && strstr(err, "sum_x"), "missing sum_x: %s", err);
    json_object_set_new(rec.meta, "kind", json_string("acts"));
    ok(recon_sums_from_record(&back, &rec, err, sizeof err) < 0 &&
           !strcmp(err, "kind 'acts' (read as 'hook_acts': no tensor 'acts') is not 'recon' or 'recon_mean' (recon-score output)"),
       "wrong kind: %s", err);
    tsz_record_free(&rec);

    ReconSums c;
    recon_sums_init(&c, D + 1, F);
    ok(recon_sums_add(&a, &c, err, sizeof err) < 0, "widths differ: %s", err);
    recon_sums_free(&c);

    // undefined metrics are NaN, written as null
    ReconSums z;
    recon_sums_init(&z, D, F);
    recon_metrics(&z, &m);
    ok(isnan(m.clean_loss) && isnan(m.score) && isnan(m.fvu), "empty sums give NaN");
    json_t *j = recon_metrics_json(&m);
    ok(json_is_null(json_object_get(j, "score")) && json_object_size(j) == 13, "NaN is null, 13 keys");
    json_decref(j);
    recon_sums_free(&z);

    // row patch: rows t >= pos0
    float act[2 * 3 * 2], rows[2 * 3 * 2], vec[2] = {7, 8};
    for (int i = 0; i < 12; i++) act[i] = (float)i, rows[i] = 100.0f + i;
    ReconPatch p = {.rows = rows, .pos0 = 1};
    recon_patch(&p, "h", act, 2, 3, 2);
    ok(act[0] == 0 && act[1] == 1 && act[2] == 102 && act[6] == 6 && act[11] == 111, "patch rows keeps t < pos0");
    p = (ReconPatch){.vec = vec, .pos0 = 2};
    recon_patch(&p, "h", act, 2, 3, 2);
    ok(act[2] == 102 && act[4] == 7 && act[5] == 8 && act[10] == 7, "patch vector");
    p = (ReconPatch){.pos0 = 0};
    recon_patch(&p, "h", act, 2, 3, 2);
    int zero = 1;
    for (int i = 0; i < 12; i++) zero = zero && act[i] == 0;
    ok(zero, "patch zero");

    // log-softmax and KL against double formulas; windows B=2 of T=3
    enum { BB = 2, TT = 3, V = 50 };
    float z1[BB * TT * V], z2[BB * TT * V], lp[BB * TT * V], loss1[BB * (TT - 1)], loss2[BB * (TT - 1)];
    int32_t tok[BB * TT] = {1, 7, 49, 3, 0, 22};
    for (size_t i = 0; i < BB * TT * V; i++) z1[i] = (float)(4 * sp_rng_normal(&rng)), z2[i] = (float)(4 * sp_rng_normal(&rng));
    double lse1[BB * TT], lse2[BB * TT];
    for (size_t r = 0; r < BB * TT; r++) {
        double s1 = 0, s2 = 0;
        for (size_t v = 0; v < V; v++) s1 += exp(z1[r * V + v]), s2 += exp(z2[r * V + v]);
        lse1[r] = log(s1), lse2[r] = log(s2);
    }
    for (size_t w = 0; w < BB; w++)
        for (size_t t = 0; t + 1 < TT; t++) {
            size_t r = w * TT + t, tgt = (size_t)tok[r + 1];
            loss1[w * (TT - 1) + t] = (float)(lse1[r] - z1[r * V + tgt]);
            loss2[w * (TT - 1) + t] = (float)(lse2[r] - z2[r * V + tgt]);
        }
    recon_clean_logp(lp, z1, loss1, tok, BB, TT, V);
    double want = 0, want0 = 0, maxd = 0;
    for (size_t w = 0; w < BB; w++)
        for (size_t t = 0; t + 1 < TT; t++) {
            size_t r = w * TT + t;
            for (size_t v = 0; v < V; v++) {
                double l1 = z1[r * V + v] - lse1[r], l2 = z2[r * V + v] - lse2[r];
                maxd = fmax(maxd, fabs(lp[r * V + v] - l1));
                want0 += exp(l1) * (l1 - l2);
                if (t >= 1) want += exp(l1) * (l1 - l2);
            }
        }
    ok(maxd < 1e-5, "log-softmax from the loss (max diff %.3g)", maxd);
    double got = recon_kl_sum(lp, z2, loss2, tok, BB, TT, V, 1);
    ok(fabs(got - want) < 1e-5 * fabs(want), "KL sum from t0=1: %.9g == %.9g", got, want);
    got = recon_kl_sum(lp, z2, loss2, tok, BB, TT, V, 0);
    ok(fabs(got - want0) < 1e-5 * fabs(want0), "KL sum from t0=0: %.9g == %.9g", got, want0);
    ok(fabs(recon_kl_sum(lp, z1, loss1, tok, BB, TT, V, 0)) < 1e-5, "KL(p || p) ~ 0");
    ok(recon_kl_sum(lp, z2, loss2, tok, BB, 1, V, 0) == 0, "T=1: no rows");

    recon_sums_free(&a), recon_sums_free(&b), recon_sums_free(&all);
    return done_testing();
}
