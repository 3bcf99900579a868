/* logits.c: the logit effects of SAE features (logits.h): the folded
 * unembedding U once, then chunks of features through c_proj and U with a
 * top/bottom-K selection per row. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "logits.h"
#include "parfor.h"
#include "util.h"

#define CHUNK 256   /* features per GEMM: CHUNK x V floats of logits (51 MB for GPT-2) */

typedef struct {
    const float *wte, *g, *mean;
    float *U;
    size_t C;
} FoldArg;

/* U[t] = g * (wte[t] - mean), then centred over the C channels. */
static void fold_rows(void *arg, size_t lo, size_t hi)
{
    const FoldArg *a = arg;
    size_t C = a->C;
    for (size_t t = lo; t < hi; t++) {
        const float *w = a->wte + t * C;
        float *u = a->U + t * C;
        double s = 0;
        for (size_t c = 0; c < C; c++) u[c] = a->g[c] * (w[c] - a->mean[c]), s += u[c];
        float m = (float)(s / (double)C);
        for (size_t c = 0; c < C; c++) u[c] -= m;
    }
}

/* The unembedding as SAEDashboard's TransformerLens model holds it (V, C). */
static float *fold_unembed(const GPT2 *g)
{
    size_t V = g->cfg.vocab_size, C = g->cfg.channels;
    double *acc = xcalloc(C, sizeof *acc);
    for (size_t t = 0; t < V; t++)
        for (size_t c = 0; c < C; c++) acc[c] += g->w.lm_head[t * C + c];
    float *mean = xmalloc(C * sizeof *mean);
    for (size_t c = 0; c < C; c++) mean[c] = (float)(acc[c] / (double)V);
    FoldArg a = {g->w.lm_head, g->w.lnfw, mean, xmalloc(V * C * sizeof(float)), C};
    sp_parfor(V, 1024, fold_rows, &a);
    free(acc), free(mean);
    return a.U;
}

typedef struct {
    const float *L;     /* (rows, V) */
    size_t V, K, row0;  /* row0: the chunk's first row in out */
    LogitEffects *out;
} SelArg;

/* The K largest (descending) and K smallest (ascending) of x[0..V); a
 * later equal value never displaces an earlier one, so ties go to the
 * lower id. */
static void select_row(const float *x, size_t V, size_t K, int32_t *ti, float *tv, int32_t *bi, float *bv)
{
    size_t nt = 0, nb = 0;
    for (size_t t = 0; t < V; t++) {
        float v = x[t];
        if (nt < K || v > tv[nt - 1]) {
            size_t i = nt < K ? nt++ : K - 1;
            for (; i > 0 && tv[i - 1] < v; i--) tv[i] = tv[i - 1], ti[i] = ti[i - 1];
            tv[i] = v, ti[i] = (int32_t)t;
        }
        if (nb < K || v < bv[nb - 1]) {
            size_t i = nb < K ? nb++ : K - 1;
            for (; i > 0 && bv[i - 1] > v; i--) bv[i] = bv[i - 1], bi[i] = bi[i - 1];
            bv[i] = v, bi[i] = (int32_t)t;
        }
    }
}

static void select_rows(void *arg, size_t lo, size_t hi)
{
    const SelArg *a = arg;
    LogitEffects *e = a->out;
    for (size_t r = lo; r < hi; r++) {
        size_t o = (a->row0 + r) * a->K;
        select_row(a->L + r * a->V, a->V, a->K, e->top_ids + o, e->top_vals + o, e->bot_ids + o, e->bot_vals + o);
    }
}

int logit_effects(const GPT2 *g, const SAE *s, const int32_t *sel, size_t n, size_t K, LogitEffects *out,
                  char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    GPT2Hook h;
    char herr[256];
    if (!s->hook[0])
        return sp_fail(err, errlen, "the SAE names no hook (metadata 'hook'): logit effects need the hook it reads");
    if (gpt2_hook_parse(&g->cfg, s->hook, &h, herr, sizeof herr) < 0)
        return sp_fail(err, errlen, "the SAE's hook: %s", herr);
    size_t D = gpt2_hook_dim(&g->cfg, h), C = g->cfg.channels, V = g->cfg.vocab_size;
    if (s->D != D)
        return sp_fail(err, errlen, "the SAE is d=%zu wide but %s of this model is %zu wide", s->D, s->hook, D);
    if (K < 1 || K > V) return sp_fail(err, errlen, "%zu tokens each way, but the vocabulary has %zu", K, V);
    int mlp = h.kind == GPT2_HOOK_MLP_PRE || h.kind == GPT2_HOOK_MLP_POST;
    const float *proj = g->w.fcprojw + h.layer * D * C;   /* (D, C): Conv1D [in, out] */

    *out = (LogitEffects){n, K, xmalloc(n * K * sizeof(int32_t) + 1), xmalloc(n * K * sizeof(int32_t) + 1),
                          xmalloc(n * K * sizeof(float) + 1), xmalloc(n * K * sizeof(float) + 1)};
    float *U = fold_unembed(g);
    size_t rows = n < CHUNK ? (n ? n : 1) : CHUNK;
    float *dir = xmalloc(rows * D * sizeof *dir), *resid = mlp ? xmalloc(rows * C * sizeof *resid) : dir;
    float *L = xmalloc(rows * V * sizeof *L);
    for (size_t r0 = 0; r0 < n; r0 += rows) {
        size_t m = n - r0 < rows ? n - r0 : rows;
        for (size_t i = 0; i < m; i++) {
            const float *w = s->p.W_dec + (size_t)sel[r0 + i] * D;
            double ss = 0;
            for (size_t d = 0; d < D; d++) ss += (double)w[d] * w[d];
            float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;   /* a zero row: no direction, all logits 0 */
            for (size_t d = 0; d < D; d++) dir[i * D + d] = w[d] * inv;
        }
        if (mlp) sp_gemm(CblasNoTrans, CblasNoTrans, m, C, D, 1.0f, dir, D, proj, C, 0.0f, resid, C);
        sp_gemm(CblasNoTrans, CblasTrans, m, V, C, 1.0f, resid, C, U, C, 0.0f, L, V);
        SelArg a = {L, V, K, r0, out};
        sp_parfor(m, 1, select_rows, &a);
    }
    free(U), free(dir), free(L);
    if (mlp) free(resid);
    return 0;
}

void logit_effects_free(LogitEffects *e)
{
    free(e->top_ids), free(e->bot_ids), free(e->top_vals), free(e->bot_vals);
    memset(e, 0, sizeof *e);
}
