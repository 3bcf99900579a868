/* Unit tests for lib/assign.c and lib/synth*.c: the assignment against
 * brute force over every matching of small matrices (square and
 * rectangular, ties included, maximising and minimising), a hidden
 * permutation found in a large one; the model's rows the same for the
 * same seeds; scores of a perfect and a permuted dictionary. */
#include <stdlib.h>
#include <string.h>

#include "assign.h"
#include "synth.h"
#include "tap.h"

/* Best sum over injective maps of the shorter side into the longer. */
static void brute(const float *S, size_t n, size_t m, int maximize, size_t i, uint32_t used, double acc, double *best)
{
    size_t rows = n <= m ? n : m, cols = n <= m ? m : n;
    if (i == rows) {
        if (maximize ? acc > *best : acc < *best) *best = acc;
        return;
    }
    for (size_t j = 0; j < cols; j++) {
        if (used & (1u << j)) continue;
        double v = n <= m ? S[i * m + j] : S[j * m + i];
        brute(S, n, m, maximize, i + 1, used | (1u << j), acc + v, best);
    }
}

/* The matching is one-to-one, covers min(n,m) rows, and sums to what it says. */
static int valid(const float *S, size_t n, size_t m, const int32_t *col, double sum)
{
    uint8_t seen[16] = {0};
    size_t k = 0;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        if (col[i] < 0) continue;
        if ((size_t)col[i] >= m || seen[col[i]]) return 0;
        seen[col[i]] = 1, k++, s += S[i * m + (size_t)col[i]];
    }
    return k == (n < m ? n : m) && fabs(s - sum) < 1e-9 * (1 + fabs(sum));
}

static void test_brute(SpRng *r)
{
    float S[64];
    int32_t col[8];
    size_t cases = 0, bad = 0, invalid = 0;
    double maxd = 0;
    for (size_t n = 1; n <= 6; n++)
        for (size_t m = 1; m <= 6; m++)
            for (int rep = 0; rep < 30; rep++) {
                int ties = rep % 2, maximize = rep % 3 != 0;
                for (size_t i = 0; i < n * m; i++)
                    S[i] = ties ? (float)sp_rng_below(r, 4) : (float)(sp_rng_uniform(r) * 2 - 1);
                double got = assign_solve(S, n, m, maximize, col), want = maximize ? -INFINITY : INFINITY;
                brute(S, n, m, maximize, 0, 0, 0.0, &want);
                double d = fabs(got - want);
                if (d > maxd) maxd = d;
                bad += d > 1e-6, invalid += !valid(S, n, m, col, got), cases++;
            }
    ok(!bad, "assignment equals brute force on %zu matrices 1..6 x 1..6 (max diff %.3g)", cases, maxd);
    ok(!invalid, "every matching is one-to-one over min(n,m) rows and sums to the returned value");
}

static void test_hidden_permutation(SpRng *r)
{
    size_t n = 300, m = 400;
    float *S = xmalloc(n * m * sizeof *S);
    int32_t *perm = xmalloc(m * sizeof *perm), *col = xmalloc(n * sizeof *col);
    for (size_t j = 0; j < m; j++) perm[j] = (int32_t)j;
    for (size_t j = m - 1; j > 0; j--) {
        size_t k = sp_rng_below(r, j + 1);
        int32_t t = perm[j]; perm[j] = perm[k]; perm[k] = t;
    }
    for (size_t i = 0; i < n * m; i++) S[i] = (float)(sp_rng_uniform(r) * 0.9);
    for (size_t i = 0; i < n; i++) S[i * m + (size_t)perm[i]] = 1.0f;
    double sum = assign_solve(S, n, m, 1, col);
    size_t hit = 0;
    for (size_t i = 0; i < n; i++) hit += col[i] == perm[i];
    ok(hit == n && fabs(sum - n) < 1e-6, "300x400: the hidden permutation is found (%zu/%zu, sum %.6g)", hit, n, sum);
    /* transposed: 400 rows, 300 columns; 100 rows left over */
    float *T = xmalloc(n * m * sizeof *T);
    int32_t *colT = xmalloc(m * sizeof *colT);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < m; j++) T[j * n + i] = S[i * m + j];
    sum = assign_solve(T, m, n, 1, colT);
    size_t left = 0;
    hit = 0;
    for (size_t j = 0; j < m; j++) left += colT[j] < 0;
    for (size_t i = 0; i < n; i++) hit += colT[perm[i]] == (int32_t)i;
    ok(hit == n && left == m - n, "400x300: the same matching, %zu rows left over", left);
    free(S), free(T), free(perm), free(col), free(colT);
}

static void test_rows_deterministic(void)
{
    SynthConfig c;
    synth_config_default(&c);
    Synth a, b;
    ok(synth_build(&a, &c) == 0 && synth_build(&b, &c) == 0, "the default model builds");
    size_t n = 500, D = c.D;
    float *xa = xmalloc(n * D * sizeof *xa), *xb = xmalloc(n * D * sizeof *xb);
    SpCsrBuf ca = {0}, cb = {0};
    synth_rows_seed(&a, 7), synth_rows_seed(&b, 7);
    synth_rows(&a, n, xa, &ca);
    synth_rows(&b, 200, xb, &cb), synth_rows(&b, 300, xb + 200 * D, &cb);
    ok(!memcmp(xa, xb, n * D * sizeof *xa) && ca.nnz == cb.nnz &&
       !memcmp(ca.indices, cb.indices, ca.nnz * sizeof *ca.indices),
       "same seeds, same rows and truth, in one call or two (%zu nonzeros)", ca.nnz);
    synth_rows_seed(&b, 8);
    sparse_buf_reset(&cb);
    synth_rows(&b, n, xb, &cb);
    ok(memcmp(xa, xb, n * D * sizeof *xa) != 0, "another data seed, other rows");
    /* x is the sum of the true activations times the directions, plus the bias */
    double maxd = 0;
    for (size_t r = 0; r < n; r++)
        for (size_t k = 0; k < D; k++) {
            double v = a.bias[k];
            for (int64_t q = ca.indptr[r]; q < ca.indptr[r + 1]; q++)
                v += (double)ca.values[q] * a.dirs[(size_t)ca.indices[q] * D + k];
            if (fabs(v - xa[r * D + k]) > maxd) maxd = fabs(v - xa[r * D + k]);
        }
    ok(maxd < 1e-4, "rows = truth . directions + bias (max diff %.3g)", maxd);

    /* scores: the truth itself as latents and decoder; then permuted */
    size_t F = c.F;
    float *A = xcalloc(n * F, sizeof *A), *Ap = xcalloc(n * F, sizeof *Ap), *Wp = xmalloc(F * D * sizeof *Wp);
    for (size_t r = 0; r < n; r++)
        for (int64_t q = ca.indptr[r]; q < ca.indptr[r + 1]; q++) A[r * F + (size_t)ca.indices[q]] = ca.values[q];
    for (size_t l = 0; l < F; l++) {        /* latent l is true feature (l*5+3) % F */
        size_t j = (l * 5 + 3) % F;
        memcpy(Wp + l * D, a.dirs + j * D, D * sizeof *Wp);
        for (size_t r = 0; r < n; r++) Ap[r * F + l] = A[r * F + j];
    }
    SpCsr t = {.rows = n, .F = F, .nnz = ca.nnz, .indptr = ca.indptr, .indices = ca.indices, .values = ca.values};
    SynthScore sc;
    synth_score(&sc, Ap, xa, xa, &t, Wp, a.dirs, n, F, F, D);
    size_t right = 0;
    for (size_t l = 0; l < F; l++) right += sc.dec_best[l] == (int32_t)((l * 5 + 3) % F);
    ok(fabs(sc.mcc_dec - 1) < 1e-5 && fabs(sc.mmcs_sae - 1) < 1e-5 && right == F,
       "permuted true dictionary: mcc_dec %.6f, mmcs %.6f, %zu/%zu latents on their feature", sc.mcc_dec,
       sc.mmcs_sae, right, F);
    ok(sc.f1 > 0.9999 && sc.uniqueness > 0.9999 && fabs(sc.r2 - 1) < 1e-9 && fabs(sc.sae_l0 - sc.true_l0) < 1e-9,
       "its live latents: f1 %.6f, uniqueness %.6f, r2 %.6f", sc.f1, sc.uniqueness, sc.r2);
    /* features that never fired in these rows correlate with nothing; the rest match exactly */
    size_t live = 0, exact = 0;
    for (size_t l = 0; l < F; l++) {
        int fired = 0;
        for (size_t r = 0; r < n && !fired; r++) fired = Ap[r * F + l] > 0;
        live += fired, exact += fired && sc.act_match[l] == (int32_t)((l * 5 + 3) % F) && sc.act_corr[l] > 0.99999f;
    }
    ok(live > F / 2 && exact == live, "activations: %zu/%zu live latents matched to their feature at corr 1", exact, live);
    synth_score_free(&sc);
    free(A), free(Ap), free(Wp), free(xa), free(xb);
    sparse_buf_free(&ca), sparse_buf_free(&cb);
    synth_free(&a), synth_free(&b);
}

int main(void)
{
    SpRng r;
    sp_rng_seed(&r, 17);
    test_brute(&r);
    test_hidden_permutation(&r);
    test_rows_deterministic();
    return done_testing();
}
