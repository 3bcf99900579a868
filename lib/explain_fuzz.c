/* explain_fuzz.c: the items of the fuzzing scorer, held-out examples with
 * some tokens highlighted, and the truth of each (see explain.h). */
#include <stdlib.h>
#include <string.h>

#include "explain.h"

/* Highlight k of the n positions in cand[] (a partial Fisher-Yates shuffle). */
static void mark_random(uint8_t *mark, size_t *cand, size_t n, size_t k, SpRng *rng)
{
    for (size_t i = 0; i < k && i < n; i++) {
        size_t j = i + (size_t)sp_rng_below(rng, n - i), t = cand[i];
        cand[i] = cand[j];
        cand[j] = t;
        mark[cand[i]] = 1;
    }
}

void explain_fuzz_prepare(ExplainFuzz *z, const ExplainHeldout *h, uint64_t seed)
{
    size_t W = h->W;
    SpRng rng;
    sp_rng_seed(&rng, seed);
    z->W = W;
    z->n = 0;
    z->ex = xmalloc((2 * h->E + 1) * sizeof *z->ex);
    z->mark = xcalloc((2 * h->E + 1) * W, 1);
    z->label = xmalloc(2 * h->E + 1);
    size_t *fire = xmalloc((W + 1) * sizeof *fire), *rest = xmalloc((W + 1) * sizeof *rest);
    for (size_t e = 0; e < h->E; e++) {
        size_t nf = 0, nr = 0;
        for (size_t t = 0; t < W; t++) {
            if (h->tok[e][t] < 0) continue;
            if (h->act[e][t] > 0) fire[nf++] = t;
            else rest[nr++] = t;
        }
        if (nf) {   /* the firing tokens: right */
            uint8_t *m = z->mark + z->n * W;
            for (size_t i = 0; i < nf; i++) m[fire[i]] = 1;
            z->ex[z->n] = e;
            z->label[z->n++] = 1;
        }
        if (!nr) continue;
        /* as many other tokens (one in an example that does not fire): wrong */
        mark_random(z->mark + z->n * W, rest, nr, nf ? nf : 1, &rng);
        z->ex[z->n] = e;
        z->label[z->n++] = 0;
    }
    free(fire);
    free(rest);
}

void explain_fuzz_free(ExplainFuzz *z)
{
    free(z->ex);
    free(z->mark);
    free(z->label);
    memset(z, 0, sizeof *z);
}
