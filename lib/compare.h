/* compare.h: dictionaries of one hook side by side (sae-compare).
 *
 * Two or more SAEs of one hook and input width D, sorted by size F
 * (smallest first); each neighbouring pair (a smaller, b larger) is
 * compared both ways:
 *  - decoder matching: each latent's best match in the other dictionary by
 *    the cosine of decoder rows, and the mean of those best cosines (MMCS);
 *  - activation matching (given a sample of activation rows, each
 *    dictionary encodes it): each latent's best match by the Pearson
 *    correlation of activations over the sample rows, among the latents
 *    that fire on one of its rows at least;
 *  - feature splitting: latent c of b is a child of latent p of a when p is
 *    c's best decoder match, their cosine is >= cos_min and, when c fires
 *    on the sample, p also fires on at least cover_min of c's firing rows
 *    (p "covers" c's direction and activations). Each latent has at most
 *    one parent, so the children form a forest across the sizes.
 * Per dictionary, given explain-gpt4 and topk-ctx outputs:
 *  - explanation duplication: exact (the same text after normalising:
 *    ASCII lower case, whitespace runs as one space, no leading or trailing
 *    space or final period) and near (Jaccard similarity of the sets of
 *    words, maximal runs of ASCII letters and digits lowercased, >= near_min;
 *    exact duplicates are near ones too), over the features explained;
 *  - breadth: a live feature is broad when its density (topk-ctx) is above
 *    broad_density or its top examples (at least broad_min_top) fall on
 *    distinct tokens for more than broad_spread of them.
 * Memory: the SAEs (W_dec normalised in place), the sample's sparse
 * activations, and per pair a block of 256 rows of cosines. */
#ifndef SP_COMPARE_H
#define SP_COMPARE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "sae.h"
#include "sparse.h"
#include "stream.h"

typedef struct {
    double cos_min;          /* child rule: decoder cosine with the parent [0.5] */
    double cover_min;        /* child rule: parent fires on this share of the child's rows [0.5] */
    double near_min;         /* near-duplicate explanations: word-set Jaccard [0.8] */
    double broad_density;    /* broad: density above [0.01] */
    double broad_spread;     /* broad: distinct tokens / top examples above [0.5] */
    size_t broad_min_top;    /* ... when there are at least this many top examples [5] */
    size_t tree_roots;       /* trees in the summary: the roots with most descendants [20] */
    size_t tree_children;    /* children listed per node in those trees [12] */
} CmpOpts;
void cmp_opts_default(CmpOpts *o);

/* Per-feature results towards one neighbour (dir 0: the next smaller
 * dictionary, 1: the next larger); NULL where there is none. */
typedef struct {
    int32_t *dec_best;       /* (F) best decoder match, -1 none */
    float *dec_cos;          /* (F) its cosine */
    int32_t *act_best;       /* (F) best activation match, -1 none (no acts, or fires with none) */
    float *act_corr;         /* (F) its correlation, NaN when none */
} CmpSide;

typedef struct {
    char path[1024];         /* the SAE file */
    char label[32];          /* "8x" when F is a multiple of D, else F */
    SAE sae;                 /* W_dec rows normalised to unit length */
    size_t F;
    CmpSide side[2];
    int32_t *parent;         /* (F) parent in the next smaller dictionary, -1 none */
    float *parent_cover;     /* (F) share of rows covered by the decoder match, NaN unfired */
    int32_t *n_children;     /* (F) children in the next larger dictionary */
    /* the activation sample */
    SpCsrBuf act;            /* (N,F) */
    int32_t *fires;          /* (F) sample rows where the latent fires */
    double *mean, *sd;       /* (F) of its activation over the sample */
    /* topk-ctx, NULL when not given */
    float *density;          /* (F) n_fired / n_tokens */
    int32_t *n_top, *spread; /* (F) top examples, distinct tokens at their example positions */
    /* explain-gpt4, NULL when not given */
    char **expl;             /* (F) explanation or NULL */
    int32_t *dup_exact;      /* (F) the lowest other feature with the same text, -1 none */
    int32_t *dup_near;       /* (F) another feature within near_min, -1 none */
    /* recon-score, NaN when not given */
    double recon_score, recon_fvu, recon_l0;
} CmpDict;

typedef struct {
    CmpOpts o;
    size_t D;
    char hook[128];
    CmpDict *d;              /* (n) ascending F once cmp_run has sorted them */
    size_t n;
    size_t N;                /* sample rows (0: no sample) */
    char acts_path[1024];
    char err[1024];
} Cmp;

void cmp_init(Cmp *c, const CmpOpts *o);
void cmp_free(Cmp *c);
/* Load an SAE: same hook and D as the first one. 0 or -1 (c->err). */
int cmp_add_sae(Cmp *c, const char *path) SP_RESULT_USED;
/* The outputs of dictionary i (in the order added) of topk-ctx,
 * explain-gpt4 and recon-score: 0 or -1. Call before cmp_run. */
int cmp_add_topk(Cmp *c, size_t i, const char *path) SP_RESULT_USED;
int cmp_add_explanations(Cmp *c, size_t i, const char *path) SP_RESULT_USED;
int cmp_add_recon(Cmp *c, size_t i, const char *path) SP_RESULT_USED;
/* The first `rows` rows of an activation stream (mlp-tap acts), encoded by
 * every dictionary. 0 or -1; fewer rows in the input is an error. */
int cmp_add_acts(Cmp *c, const char *path, uint64_t rows) SP_RESULT_USED;
/* Sort by F, then match, split and count. 0 or -1. */
int cmp_run(Cmp *c) SP_RESULT_USED;

/* The stream: one record of kind "compare" per dictionary, ascending F,
 * then one "compare_summary" (tsz(5), sae-compare(1)). 0 or -1. */
int cmp_write(Cmp *c, TszWriter *w) SP_RESULT_USED;
/* The summary object (also the last record's "summary"). New reference. */
json_t *cmp_summary(const Cmp *c);

/* ---- pieces, exposed for the unit tests (compare_match.c, compare_expl.c) ---- */
/* Rows of v (n,D) scaled to unit length in place (zero rows stay zero). */
void cmp_unit_rows(float *v, size_t n, size_t D);
/* Best decoder matches both ways between unit rows A (Fa,D) and B (Fb,D):
 * a_best/a_cos (Fa) the best row of B for each row of A, b_best/b_cos (Fb)
 * the reverse. Ties: the lower index. */
void cmp_match_dec(const float *A, size_t Fa, const float *B, size_t Fb, size_t D, int32_t *a_best, float *a_cos,
                   int32_t *b_best, float *b_cos);
/* Best activation match of each latent of a among those of b that fire on
 * one of its rows (Pearson correlation over N rows); -1 and NaN when none.
 * mean/sd: of each latent's activation (population sd); ties: the lower index. */
void cmp_match_act(const SpCsrBuf *a, size_t Fa, const double *ma, const double *sa, const SpCsrBuf *b, size_t Fb,
                   const double *mb, const double *sb, size_t N, int32_t *best, float *corr);
/* Normalise an explanation for exact comparison into a new string. */
char *cmp_norm_text(const char *s);
/* Duplicates among the n texts s (NULL: none): dup_exact[i] the lowest
 * other index with the same normalised text, dup_near[i] another index
 * whose word set has Jaccard >= t, -1 none. */
void cmp_duplicates(char *const *s, size_t n, double t, int32_t *dup_exact, int32_t *dup_near);

#endif
