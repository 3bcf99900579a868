/* Unit tests for lib/compare_*.c: decoder and activation matching and
 * duplicate explanations against brute force on random inputs, and the
 * normalisation of explanations. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "tap.h"

/* brute force: best cosine of each row of A among rows of B (unit rows), ties to the lower index */
static size_t check_dec(SpRng *rng, size_t Fa, size_t Fb, size_t D)
{
    float *A = xmalloc_aligned(Fa * D * sizeof *A), *B = xmalloc_aligned(Fb * D * sizeof *B);
    for (size_t i = 0; i < Fa * D; i++) A[i] = (float)sp_rng_normal(rng);
    for (size_t i = 0; i < Fb * D; i++) B[i] = (float)sp_rng_normal(rng);
    cmp_unit_rows(A, Fa, D), cmp_unit_rows(B, Fb, D);
    int32_t *ab = xmalloc(Fa * sizeof *ab), *bb = xmalloc(Fb * sizeof *bb);
    float *ac = xmalloc(Fa * sizeof *ac), *bc = xmalloc(Fb * sizeof *bc);
    cmp_match_dec(A, Fa, B, Fb, D, ab, ac, bb, bc);
    size_t bad = 0;
    for (size_t i = 0; i < Fa; i++)
        for (size_t j = 0; j < Fb; j++) {
            double c = 0;
            for (size_t k = 0; k < D; k++) c += (double)A[i * D + k] * B[j * D + k];
            // no other row may beat the chosen one by more than rounding
            bad += c > ac[i] + 1e-5 || c > bc[j] + 1e-5;
            bad += (int32_t)j == ab[i] && fabs(c - ac[i]) > 1e-5;
            bad += (int32_t)i == bb[j] && fabs(c - bc[j]) > 1e-5;
        }
    free(A), free(B), free(ab), free(bb), free(ac), free(bc);
    return bad;
}

/* a random sparse (N,F) sample with its column means and deviations */
static void sample(SpRng *rng, SpCsrBuf *b, float *dense, size_t N, size_t F, double p, double *m, double *s)
{
    for (size_t i = 0; i < N * F; i++) dense[i] = sp_rng_uniform(rng) < p ? (float)(1 + sp_rng_uniform(rng)) : 0;
    sparse_buf_append_dense(b, dense, N, F, NULL);
    for (size_t j = 0; j < F; j++) {
        double a = 0, q = 0;
        for (size_t r = 0; r < N; r++) a += dense[r * F + j], q += (double)dense[r * F + j] * dense[r * F + j];
        m[j] = a / N, s[j] = sqrt(fmax(q / N - m[j] * m[j], 0));
    }
}

static size_t check_act(SpRng *rng, size_t N, size_t Fa, size_t Fb)
{
    SpCsrBuf a = {0}, b = {0};
    float *da = xmalloc(N * Fa * sizeof *da), *db = xmalloc(N * Fb * sizeof *db), *corr = xmalloc(Fa * sizeof *corr);
    double *ma = xmalloc(Fa * sizeof *ma), *sa = xmalloc(Fa * sizeof *sa), *mb = xmalloc(Fb * sizeof *mb),
           *sb = xmalloc(Fb * sizeof *sb);
    int32_t *best = xmalloc(Fa * sizeof *best);
    sample(rng, &a, da, N, Fa, 0.05, ma, sa), sample(rng, &b, db, N, Fb, 0.05, mb, sb);
    cmp_match_act(&a, Fa, ma, sa, &b, Fb, mb, sb, N, best, corr);
    size_t bad = 0;
    for (size_t i = 0; i < Fa; i++) {
        double bc = -INFINITY;
        int32_t bj = -1;
        for (size_t j = 0; j < Fb; j++) {
            double c = 0;
            int together = 0;
            for (size_t r = 0; r < N; r++) c += (da[r * Fa + i] - ma[i]) * (db[r * Fb + j] - mb[j]),
                                               together |= da[r * Fa + i] > 0 && db[r * Fb + j] > 0;
            c /= N * sa[i] * sb[j];
            if (together && c > bc + 1e-6) bc = c, bj = (int32_t)j;
        }
        bad += bj != best[i] && !(bj >= 0 && best[i] >= 0 && fabs(bc - corr[i]) < 1e-5);
        bad += bj >= 0 && fabs(bc - corr[i]) > 1e-5;
    }
    sparse_buf_free(&a), sparse_buf_free(&b);
    free(da), free(db), free(corr), free(ma), free(sa), free(mb), free(sb), free(best);
    return bad;
}

/* word-set Jaccard by brute force (words: runs of ASCII letters and digits, lowercased) */
static double jaccard(const char *x, const char *y)
{
    char wx[16][8], wy[16][8];
    size_t nx = 0, ny = 0;
    for (const char *p = x; *p; p++)
        if (*p != ' ') { size_t n = 0; while (p[n] && p[n] != ' ') n++; snprintf(wx[nx++], 8, "%.*s", (int)n, p); p += n - 1; }
    for (const char *p = y; *p; p++)
        if (*p != ' ') { size_t n = 0; while (p[n] && p[n] != ' ') n++; snprintf(wy[ny++], 8, "%.*s", (int)n, p); p += n - 1; }
    size_t ux = 0, inter = 0, uy = 0;
    for (size_t i = 0; i < nx; i++) {   // distinct words of x, and how many are in y
        int dup = 0, in = 0;
        for (size_t k = 0; k < i; k++) dup |= !strcmp(wx[i], wx[k]);
        if (dup) continue;
        ux++;
        for (size_t k = 0; k < ny; k++) in |= !strcmp(wx[i], wy[k]);
        inter += in;
    }
    for (size_t i = 0; i < ny; i++) {
        int dup = 0;
        for (size_t k = 0; k < i; k++) dup |= !strcmp(wy[i], wy[k]);
        uy += !dup;
    }
    return ux + uy - inter ? (double)inter / (double)(ux + uy - inter) : 0;
}

static size_t check_dups(SpRng *rng, size_t n, double t)
{
    static const char *const words[] = {"the", "token", "a", "of", "code", "word", "x1", "y2", "cat", "dog", "in", "on"};
    char **s = xcalloc(n, sizeof *s);
    for (size_t i = 0; i < n; i++) {
        if (sp_rng_below(rng, 10) == 0) continue;     /* some features have none */
        s[i] = xcalloc(128, 1);
        size_t w = 1 + sp_rng_below(rng, 5);
        for (size_t k = 0; k < w; k++) {
            strcat(s[i], k ? " " : ""), strcat(s[i], words[sp_rng_below(rng, sizeof words / sizeof *words)]);
        }
    }
    int32_t *ex = xmalloc(n * sizeof *ex), *nr = xmalloc(n * sizeof *nr);
    cmp_duplicates(s, n, t, ex, nr);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t first = -1, anynear = 0;
        for (size_t j = 0; j < n && s[i]; j++) {
            if (j == i || !s[j]) continue;
            if (first < 0 && !strcmp(s[i], s[j])) first = (int32_t)j;
            anynear |= jaccard(s[i], s[j]) >= t - 1e-12 || !strcmp(s[i], s[j]);
        }
        bad += ex[i] != first;
        bad += (nr[i] >= 0) != anynear;
        bad += nr[i] >= 0 && (nr[i] == (int32_t)i || !s[nr[i]] ||
                              (jaccard(s[i], s[nr[i]]) < t - 1e-12 && strcmp(s[i], s[nr[i]])));
    }
    for (size_t i = 0; i < n; i++) free(s[i]);
    free(s), free(ex), free(nr);
    return bad;
}

int main(void)
{
    SpRng rng;
    sp_rng_seed(&rng, 7);
    size_t bad = check_dec(&rng, 300, 700, 24);
    ok(bad == 0, "decoder matches of 300 x 700 rows (two blocks) equal brute force (%zu wrong)", bad);
    bad = check_dec(&rng, 5, 3, 4);
    ok(bad == 0, "decoder matches of 5 x 3 rows (%zu wrong)", bad);
    bad = check_act(&rng, 200, 40, 60);
    ok(bad == 0, "activation matches equal brute force Pearson among co-firing latents (%zu wrong)", bad);
    for (int k = 0; k < 3; k++) {
        double t = k == 0 ? 0.8 : k == 1 ? 0.5 : 0.34;
        bad = check_dups(&rng, 400, t);
        ok(bad == 0, "duplicates of 400 random texts at Jaccard %.2f equal brute force (%zu wrong)", t, bad);
    }
    char *n = cmp_norm_text("  The Token\t\"Foo\"  ..  ");
    ok(!strcmp(n, "the token \"foo\""), "normalised: '%s'", n);
    free(n);
    char *two[] = {"Cats and dogs.", "cats  AND dogs", "Dogs and cats", NULL};
    int32_t ex[4], nr[4];
    cmp_duplicates(two, 4, 0.8, ex, nr);
    ok(ex[0] == 1 && ex[1] == 0 && ex[2] == -1 && ex[3] == -1, "exact: %d %d %d %d", ex[0], ex[1], ex[2], ex[3]);
    ok(nr[0] >= 0 && nr[1] >= 0 && nr[2] >= 0 && nr[3] == -1, "near: word order does not matter (%d %d %d %d)",
       nr[0], nr[1], nr[2], nr[3]);
    return done_testing();
}
