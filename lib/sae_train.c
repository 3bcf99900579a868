/* sae_train.c: forward, loss and backward for relu, topk and batchtopk
 * SAEs (see sae_train.h for the objective), and the step that runs Adam
 * (sae_adam.c) inside the backward. Dense matrix work is OpenBLAS sgemm;
 * topk and batchtopk compute the decoder and the whole backward over the
 * active latents only, and so does relu when few latents fire. Element
 * passes run on sp_parfor; the bytes do not depend on the thread count. The
 * trainer's parameters and state in and out of files are in
 * sae_train_io.c, their starting values in sae_train_init.c, relu's
 * resampling of dead latents in sae_resample.c. */
#include <cblas.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "parfor.h"
#include "sae_arch.h"
#include "sae_train.h"
#include "sae_train_int.h"

/* parameters in the block: the four tensors and the arch's vectors */
static uint64_t nparam(const SAETrainConfig *c)
{
    return 2 * (uint64_t)c->D * c->F + c->F + c->D + sae_arch_extra(c->arch) * (uint64_t)c->F;
}

/* entries the CSR holds: K per row, or relu's sparse share of B*F */
static uint64_t csr_cap(const SAETrainConfig *c)
{
    if (sae_arch_own_step(c->arch)) return 0;
    if (c->arch != SAE_RELU) return (uint64_t)c->B * c->K;
    double r = c->relu_sparse == 0 ? SAE_RELU_SPARSE : c->relu_sparse > 1 ? 1 : c->relu_sparse;
    return r < 0 ? 0 : (uint64_t)(r * (double)c->B * (double)c->F);
}
static int needs_g(const SAETrainConfig *c) { return c->arch != SAE_TOPK; }
/* topk (one process) selects each row's latents alone, so its pre-
 * activations need only live for the encoder product's tile of rows
 * (<= 512): 8x at D=2048 holds 32 MB of them, not 268 MB (128x at D=3072,
 * 6.4 GB less). The other archs' selection or backward sees the batch. */
static int pre_tiled(const SAETrainConfig *c) { return c->arch == SAE_TOPK && !c->comm; }
enum { PRE_TILE = 512 }; /* lib/gemm.h's tiles of a window: at most 512 rows */
/* latents over every rank */
static size_t cand_k(const SAETrainConfig *c) { return kmax(c) > c->aux_k ? kmax(c) : c->aux_k; }
/* b_dec's gradient sums the latents' shares in chunks of this many, in
 * order: the same bytes for any thread count */
enum { BDEC_CHUNK = 64 };
static size_t bdec_chunks(size_t F) { return (F + BDEC_CHUNK - 1) / BDEC_CHUNK; }

uint64_t sae_trainer_bytes(const SAETrainConfig *c)
{
    uint64_t D = c->D, F = c->F, B = c->B, A = c->aux_k;
    uint64_t P = nparam(c);
    /* the gradient: the k archs' step (sae_trainer_step) never writes its
     * rows, so their pages are never touched */
    uint64_t G = sae_arch_has_k(c->arch) ? F + D : P;
    uint64_t b = sae_arch_bytes(c) + (P + G) * 4 + P * (c->state_bf16 ? 4 : 8);
    b += (B + (pre_tiled(c) ? PRE_TILE : 0)) * D * 4 + B * D * 4; /* xc (with a tile's padding), e */
    b += (pre_tiled(c) && B > PRE_TILE ? PRE_TILE : B) * F * 4 + (needs_g(c) ? B * F * 4 : 0);
    b += csr_cap(c) * 16 + (B + 1) * 8 + B * A * 16 + F * 36 + B * 28 + D * 8 + (A ? B : 1) * D * 4;
    b += bdec_chunks(F) * D * 4;
    if (c->comm) b += B * cand_k(c) * 8 + B * 8;
    return b;
}

/* The parameters' and moments' 0.8 GB (at D=2048, F=16384) cost their
 * first touch, the kernel clearing every page: zeroing on every thread
 * shares that out. */
static void pass_zero_bytes(void *p, size_t lo, size_t hi) { memset((char *)p + lo, 0, hi - lo); }

static void *par_zalloc(size_t n)
{
    void *p = xmalloc_aligned(n);
    sp_parfor(n, 1 << 21, pass_zero_bytes, p);
    return p;
}

int sae_trainer_init(SAETrainer *t, const SAETrainConfig *c, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    t->c = *c;
    size_t D = c->D, F = c->F, B = c->B, K = kmax(c), A = c->aux_k;
    if (!D || !F || !B) return sp_fail(err, errlen, "bad trainer size d=%zu f=%zu batch=%zu", D, F, B);
    if (sae_arch_has_k(c->arch) && (K < 1 || K > f_all(c)))
        return sp_fail(err, errlen, "k must be in 1..%zu, got %zu", f_all(c), K);
    if (A > f_all(c)) t->c.aux_k = A = f_all(c);
    size_t P = t->P = nparam(c);
    t->param = par_zalloc(P * sizeof(float));
    /* not cleared: every backward writes the gradient it reads, and
     * sae_trainer_step's sparse path never touches its rows */
    t->grad = xmalloc_aligned(P * sizeof(float));
    if (c->state_bf16) {
        t->m16 = par_zalloc(P * sizeof *t->m16);
        t->v16 = par_zalloc(P * sizeof *t->v16);
    } else {
        t->m = par_zalloc(P * sizeof *t->m);
        t->v = par_zalloc(P * sizeof *t->v);
    }
    t->Wt = t->param, t->b_enc = t->Wt + F * D, t->Wd = t->b_enc + F, t->b_dec = t->Wd + F * D;
    t->gWt = t->grad, t->gb_enc = t->gWt + F * D, t->gWd = t->gb_enc + F, t->gb_dec = t->gWd + F * D;
    t->xp = t->b_dec + D, t->gxp = t->gb_dec + D;
    t->scale = 1;
    t->since_fired = xcalloc(F, sizeof *t->since_fired);
    /* tiled: xc has a tile's rows beyond B, zero, so the last (short)
     * tile's product is the full tile's shape, as sp_gemm pads it */
    size_t xrows = B + (pre_tiled(c) ? PRE_TILE : 0);
    t->xc = xmalloc_aligned(xrows * D * sizeof(float));
    if (xrows > B) memset(t->xc + B * D, 0, (xrows - B) * D * sizeof(float));
    t->e = xmalloc_aligned(B * D * sizeof(float));
    t->pre_rows = pre_tiled(c) && B > PRE_TILE ? PRE_TILE : B;
    t->pre = xmalloc_aligned(t->pre_rows * F * sizeof(float));
    if (needs_g(c)) t->g = xmalloc_aligned(B * F * sizeof(float));
    t->cap = csr_cap(c);
    size_t nk = t->cap ? t->cap : 1;
    t->idx = xmalloc(nk * sizeof *t->idx);
    t->val = xmalloc(nk * sizeof *t->val);
    t->cq = xmalloc(nk * sizeof *t->cq);
    t->crow = xmalloc(nk * sizeof *t->crow);
    t->ptr = xmalloc((B + 1) * sizeof *t->ptr);
    t->cptr = xmalloc((F + 1) * sizeof *t->cptr);
    t->rsq = xmalloc(3 * B * sizeof *t->rsq);
    t->rl1 = t->rsq + B, t->ract = t->rl1 + B;
    t->aidx = xmalloc(B * (A ? A : 1) * sizeof *t->aidx);
    t->aval = xmalloc(B * (A ? A : 1) * sizeof *t->aval);
    t->abuf = xmalloc(F * sizeof *t->abuf);
    t->dead = xmalloc(F * sizeof *t->dead);
    t->rowloss = xmalloc(B * sizeof *t->rowloss);
    t->acc = xmalloc(D * sizeof *t->acc);
    t->ar = xmalloc((A ? B : 1) * D * sizeof *t->ar);
    t->aq = xmalloc(B * (A ? A : 1) * sizeof *t->aq);
    t->arow = xmalloc(B * (A ? A : 1) * sizeof *t->arow);
    t->aptr = xmalloc((F + 1) * sizeof *t->aptr);
    t->bpart = xmalloc(bdec_chunks(F) * D * sizeof *t->bpart);
    if (c->comm) {
        t->cand = xmalloc(B * (cand_k(&t->c) ? cand_k(&t->c) : 1) * sizeof *t->cand);
        t->rowq = xmalloc(B * sizeof *t->rowq);
    }
    return sae_arch_alloc(t, err, errlen);
}

void sae_trainer_drop_state(SAETrainer *t)
{
    void **big[] = {(void **)&t->grad, (void **)&t->m, (void **)&t->v, (void **)&t->m16, (void **)&t->v16,
                    (void **)&t->xc, (void **)&t->e, (void **)&t->pre, (void **)&t->g,
                    (void **)&t->h, (void **)&t->e2, (void **)&t->lev}; /* the last three: arch scratch */
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) free(*big[i]), *big[i] = NULL;
    t->gWt = t->gb_enc = t->gWd = t->gb_dec = t->gxp = NULL;
}

void sae_trainer_free(SAETrainer *t)
{
    if (!t) return;
    void *ptrs[] = {t->param, t->grad, t->m, t->v, t->m16, t->v16, t->since_fired, t->xc, t->e, t->pre, t->g,
                    t->idx, t->val, t->ptr, t->cq, t->crow, t->cptr, t->rsq, t->aidx, t->aval, t->abuf, t->dead,
                    t->rowloss, t->acc, t->ar, t->aq, t->arow, t->aptr, t->bpart, t->cand, t->rowq};
    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++) free(ptrs[i]);
    sae_arch_free(t);
    memset(t, 0, sizeof *t);
}

void sae_normalize_row(float *w, size_t D)
{
    double s = 0;
    for (size_t d = 0; d < D; d++) s += (double)w[d] * w[d];
    if (s <= 0) return;
    float inv = (float)(1.0 / sqrt(s));
    for (size_t d = 0; d < D; d++) w[d] *= inv;
}

/* a count summed over the ranks */
static size_t count_all(const SAETrainer *t, size_t n)
{
    if (!t->c.comm) return n;
    double v = (double)n;
    t->c.comm->ops->sum_f64(t->c.comm, &v, 1);
    return (size_t)v;
}

size_t sae_trainer_dead(const SAETrainer *t)
{
    size_t nd = 0;
    for (size_t j = 0; j < t->c.F; j++) nd += (uint64_t)t->since_fired[j] >= t->c.dead_rows;
    return count_all(t, nd);
}

/* ---- the kth largest value (k from 0) for batchtopk: three-way quickselect ---- */
static void swapf(float *a, size_t i, size_t j)
{
    float x = a[i];
    a[i] = a[j], a[j] = x;
}

float sae_kth_largest(float *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1], p;
        p = (x > y) == (y > z) ? y : ((y > x) == (x > z) ? x : z); /* median of three */
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (a[i] > p) swapf(a, lt++, i++);
            else if (a[i] < p) swapf(a, i, --gt);
            else i++;
        }
        if (k < lt) hi = lt;
        else if (k < gt) return p;
        else lo = gt;
    }
    return a[lo];
}

/* Row i's pre-activations (topk: of the tile from row pre_r0). */
static float *pre_row(const SAETrainer *t, size_t i) { return t->pre + (i - t->pre_r0) * t->c.F; }

/* topk's rows pre_r0 + [lo, hi) (the tile's): the K best of each, val =
 * relu(pre). Rows apart, on sp_parfor: serial, it was ~0.1 s of a 2 s step
 * (8x, batch 4096) with the other core idle. */
static void pass_topk(void *a, size_t lo, size_t hi)
{
    SAETrainer *t = a;
    size_t F = t->c.F, K = t->c.K;
    for (size_t i = t->pre_r0 + lo; i < t->pre_r0 + hi; i++) {
        uint32_t *id = t->idx + i * K;
        const float *pre = pre_row(t, i);
        sae_topk_row(pre, F, K, id);
        for (size_t k = 0; k < K; k++) {
            float v = pre[id[k]];
            t->val[i * K + k] = v > 0 ? v : 0;
        }
        t->ptr[i + 1] = (i + 1) * K;
    }
}

/* Active sets into CSR (ptr, idx, val): topk per row, batchtopk over the
 * batch (training only: the inference threshold is applied densely). val = relu(pre). */
static void select_active(SAETrainer *t, size_t n)
{
    size_t F = t->c.F, K = t->c.K;
    float *pre = t->pre;
    size_t nnz = 0;
    t->ptr[0] = 0;
    if (t->c.arch == SAE_TOPK && t->c.comm) {
        sae_shard_topk(t, n);
        return;
    }
    /* batchtopk: threshold thr; entries > thr are in, entries == thr fill up
     * to n*K in row-major order */
    float thr;
    size_t quota = n * K, n_eq_left = 0;
    {
        float *a = t->g;
        for (size_t i = 0; i < n * F; i++) a[i] = pre[i] > 0 ? pre[i] : 0;
        thr = t->c.comm ? sae_shard_threshold(t, a, n * F, quota) : sae_kth_largest(a, n * F, quota - 1);
        size_t above = 0;
        for (size_t i = 0; i < n * F; i++) above += pre[i] > thr;
        n_eq_left = quota - count_all(t, above);
        if (thr <= 0) n_eq_left = 0; /* never select zeros */
        if (t->c.comm) sae_shard_ties(t, n, thr, n_eq_left);
        sae_arch_update_theta(t, thr, n * F);
    }
    for (size_t i = 0; i < n; i++) {
        const float *row = pre + i * F;
        if (t->c.comm) n_eq_left = t->rowq[i];
        for (size_t j = 0; j < F; j++) {
            int on = row[j] > thr && row[j] > 0;
            if (!on && row[j] == thr && n_eq_left) on = 1, n_eq_left--;
            if (!on) continue;
            t->idx[nnz] = (uint32_t)j;
            t->val[nnz++] = row[j];
        }
        t->ptr[i + 1] = nnz;
    }
}

/* Eight partial sums in a fixed order: vectorisable, and the same result
 * on every run. */
SAE_VEC float sae_dotf(const float *restrict a, const float *restrict b, size_t D)
{
    float s[8] = {0}, r = 0;
    size_t d = 0;
    for (; d + 8 <= D; d += 8)
        for (int k = 0; k < 8; k++) s[k] += a[d + k] * b[d + k];
    for (; d < D; d++) r += a[d] * b[d];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + r;
}

SAE_VEC void sae_axpyf(float *restrict y, float a, const float *restrict x, size_t D)
{
    for (size_t d = 0; d < D; d++) y[d] += a * x[d];
}

/* AuxK: the aux_k largest pre-activations among dead latents reconstruct
 * the residual r_i = x_i - x_hat_i (held constant; e holds x_hat - x).
 * Each row's latents and activations stay in aidx, aval (aux_a of them),
 * its residual in ar, for the backward: made before any row changes. */
void sae_auxk_residual(SAETrainer *t, size_t i, float *r)
{
    size_t D = t->c.D, A = t->aux_a;
    const uint32_t *ai = t->aidx + i * A;
    const float *av = t->aval + i * A;
    int first = !t->c.comm || t->c.comm->rank == 0; /* sharded: rank 0 adds e, each rank its latents */
    for (size_t d = 0; d < D; d++) r[d] = first ? t->e[i * D + d] : 0; /* e^ - (x - x_hat) = e^ + e */
    for (size_t a = 0; a < A; a++)
        if (av[a] > 0) sae_axpyf(r, av[a], t->Wd + (size_t)ai[a] * D, D);
}

/* AuxK's dead latents and how many a row takes (aux_a; 0: off). Before
 * the rows' picks: they read the tile's pre-activations. Sharded: 0 here,
 * sae_shard_auxk picks. */
static size_t auxk_begin(SAETrainer *t)
{
    size_t F = t->c.F, nd = 0;
    for (size_t j = 0; j < F; j++)
        if ((uint64_t)t->since_fired[j] >= t->c.dead_rows) t->dead[nd++] = (uint32_t)j;
    size_t nd_all = count_all(t, nd), A = t->c.aux_k < nd_all ? t->c.aux_k : nd_all;
    t->aux_a = t->c.aux_coef == 0 ? 0 : A;
    /* SAELens scales its AuxK by the dead share, min(dead/aux_k, 1) */
    t->aux_sc = t->c.aux_coef * (t->c.aux_dyn && t->c.aux_k && nd_all < t->c.aux_k ? (double)nd_all / t->c.aux_k : 1);
    return nd;
}

/* Row i's aux_a largest pre-activations among the nd dead latents */
static void auxk_pick(SAETrainer *t, size_t i, size_t nd)
{
    size_t A = t->aux_a;
    const float *pre = pre_row(t, i);
    for (size_t a = 0; a < nd; a++) t->abuf[a] = pre[t->dead[a]];
    uint32_t *ai = t->aidx + i * A;
    float *av = t->aval + i * A;
    sae_topk_row(t->abuf, nd, A, ai);
    for (size_t a = 0; a < A; a++) {
        float v = t->abuf[ai[a]];
        ai[a] = t->dead[ai[a]];
        av[a] = v > 0 ? v : 0;
    }
}

/* AuxK's loss; the picks are made (picked) or made here from pre */
static double auxk_forward(SAETrainer *t, size_t n, size_t nd, int picked)
{
    size_t D = t->c.D;
    if (!t->aux_a) return 0;
    if (t->c.comm) return sae_shard_auxk(t, n, nd);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        float *r = t->ar + i * D;
        if (!picked) auxk_pick(t, i, nd);
        sae_auxk_residual(t, i, r);
        double s2 = 0;
        for (size_t d = 0; d < D; d++) s2 += (double)r[d] * r[d];
        sum += s2;
    }
    return t->aux_sc * sum / n;
}

/* The entries with a value > 0 of n rows (row i's from ptr[i], or with
 * ptr NULL from i*A, to the next row's), grouped by latent, rows
 * ascending: CSC (cptr over F latents; cq the entry, crow the row) */
static void build_csc(size_t F, size_t n, const size_t *ptr, size_t A, const uint32_t *idx, const float *val,
                      size_t *cptr, uint32_t *cq, uint32_t *crow)
{
    size_t end = ptr ? ptr[n] : n * A;
    memset(cptr, 0, (F + 1) * sizeof *cptr);
    for (size_t q = 0; q < end; q++) cptr[idx[q] + 1] += val[q] > 0;
    for (size_t j = 0; j < F; j++) cptr[j + 1] += cptr[j];
    for (size_t i = 0; i < n; i++)
        for (size_t q = ptr ? ptr[i] : i * A; q < (ptr ? ptr[i + 1] : (i + 1) * A); q++) {
            if (!(val[q] > 0)) continue;
            size_t c = cptr[idx[q]]++;
            cq[c] = (uint32_t)q, crow[c] = (uint32_t)i;
        }
    for (size_t j = F; j > 0; j--) cptr[j] = cptr[j - 1]; /* undo the shift */
    cptr[0] = 0;
}


/* ---- the step's element passes, run on sp_parfor chunks of rows, latents
 * or columns. Every reduction stays inside one index (a row's sums, a
 * latent's sum over rows ascending), so the bytes do not depend on the
 * thread count. ---- */
typedef struct {
    SAETrainer *t;
    const float *x;
    size_t n;
    float th, l1n, sc;
} Pass;

/* rows pre_r0 + [lo, hi): xc = x - b_dec; pre = b_enc (the sgemm adds xc W_enc) */
static void pass_center(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t D = t->c.D, F = t->c.F;
    for (size_t i = t->pre_r0 + lo; i < t->pre_r0 + hi; i++) {
        for (size_t d = 0; d < D; d++) t->xc[i * D + d] = p->x[i * D + d] - t->b_dec[d];
        memcpy(pre_row(t, i), t->b_enc, F * sizeof(float));
    }
}

/* topk: the encoder product in the tiles sp_gemm_rows makes of the batch
 * (one window of n rows: tiles of R <= 512), one at a time at the tile's
 * full shape (a short last tile reads xc's rows past n: rows never mix in
 * a product), so every row gets the whole batch's product's bytes; each
 * tile's rows picked (top-k, AuxK) while its pre-activations are there. */
static void encode_tiles(SAETrainer *t, Pass *ps, size_t n, size_t nd)
{
    size_t D = t->c.D, F = t->c.F, R = sp_gemm_tile_rows(SP_ROWS_WINDOWS(n), D); /* <= PRE_TILE */
    t->ptr[0] = 0;
    for (size_t r0 = 0; r0 < n; r0 += R) {
        size_t m = n - r0 < R ? n - r0 : R;
        t->pre_r0 = r0;
        sp_parfor(m, 16384 / D + 1, pass_center, ps);
        if (m < R) memset(t->pre + m * F, 0, (R - m) * F * sizeof(float));
        sp_gemm_rows(SP_ROWS_WINDOWS(R), CblasNoTrans, CblasTrans, R, F, D, 1.0f, t->xc + r0 * D, D, t->Wt, D, 1.0f,
                     t->pre, F);
        sp_parfor(m, 1, pass_topk, t);
        for (size_t i = r0; i < r0 + m && t->aux_a; i++) auxk_pick(t, i, nd);
    }
    t->pre_r0 = 0;
}

/* act = pre where pre > 0 and > th, else 0; per row its sum and count */
static void pass_act(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t F = t->c.F;
    float *act = t->c.arch == SAE_RELU ? t->pre : t->g;
    for (size_t i = lo; i < hi; i++) {
        double s = 0, c = 0;
        for (size_t j = i * F; j < (i + 1) * F; j++) {
            float v = t->pre[j] > 0 && t->pre[j] > p->th ? t->pre[j] : 0;
            act[j] = v;
            s += t->dn ? v * t->dn[j - i * F] : v; /* relu, free decoder: f ||W_dec_j|| */
            c += v > 0;
        }
        t->rl1[i] = s, t->ract[i] = c;
    }
}

/* relu's active set as CSR (ptr already holds the row offsets) */
static void pass_csr(void *a, size_t lo, size_t hi)
{
    SAETrainer *t = ((Pass *)a)->t;
    size_t F = t->c.F;
    for (size_t i = lo; i < hi; i++) {
        size_t q = t->ptr[i];
        for (size_t j = 0; j < F; j++)
            if (t->pre[i * F + j] > 0) t->idx[q] = (uint32_t)j, t->val[q++] = t->pre[i * F + j];
    }
}

/* x_hat (before b_dec) of the active set, row by row */
static void pass_decode(void *a, size_t lo, size_t hi)
{
    SAETrainer *t = ((Pass *)a)->t;
    size_t D = t->c.D;
    for (size_t i = lo; i < hi; i++) {
        float *er = t->e + i * D;
        double c = 0;
        memset(er, 0, D * sizeof *er);
        for (size_t q = t->ptr[i]; q < t->ptr[i + 1]; q++)
            if (t->val[q] > 0) sae_axpyf(er, t->val[q], t->Wd + (size_t)t->idx[q] * D, D), c++;
        t->ract[i] = c;
    }
}

/* e = x_hat - x and each row's squared error */
static void pass_err(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t D = t->c.D;
    for (size_t i = lo; i < hi; i++) {
        double s = 0;
        for (size_t d = 0; d < D; d++) {
            float v = t->e[i * D + d] + t->b_dec[d] - p->x[i * D + d];
            t->e[i * D + d] = v;
            s += (double)v * v;
        }
        t->rowloss[i] = (float)s;
        t->rsq[i] = s;
    }
}

/* over columns d: dx_hat = sc e, and acc = its sum over rows (b_dec's gradient) */
static void pass_dxhat(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t D = t->c.D;
    for (size_t d = lo; d < hi; d++) t->acc[d] = 0;
    for (size_t i = 0; i < p->n; i++)
        for (size_t d = lo; d < hi; d++) {
            float v = t->e[i * D + d] * p->sc;
            t->e[i * D + d] = v;
            t->acc[d] += v;
        }
}

void sae_trainer_dxhat(SAETrainer *t, size_t n)
{
    Pass ps = {.t = t, .n = n, .sc = (float)(2.0 / n)};
    sp_parfor(t->c.D, 256, pass_dxhat, &ps);
}

/* relu's penalty l1/n f_j (free decoder: l1/n f_j ||W_dec_j||): its slope
 * on f_j, and on W_dec_j, from the latent's activations summed over rows,
 * added to the decoder gradient gd (along the row: it only shrinks it) */
static float pen_slope(const Pass *p, size_t j) { return p->t->dn ? p->l1n * p->t->dn[j] : p->l1n; }
static void pen_dec(const Pass *p, size_t j, float fsum, float *gd)
{
    const SAETrainer *t = p->t;
    if (t->dn && t->dn[j] > 0) sae_axpyf(gd, p->l1n * fsum / t->dn[j], t->Wd + j * t->c.D, t->c.D);
}

/* relu dense, over latents: dpre = (f>0)(df + l1/n) in g, b_enc's gradient */
static void pass_mask(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t F = t->c.F;
    float *fsum = t->dn ? t->dn + F : NULL;
    for (size_t j = lo; j < hi; j++) t->gb_enc[j] = 0;
    for (size_t j = lo; fsum && j < hi; j++) fsum[j] = 0;
    for (size_t i = 0; i < p->n; i++) {
        float *gr = t->g + i * F;
        const float *fr = t->pre + i * F;
        for (size_t j = lo; j < hi; j++) {
            float v = fr[j] > 0 ? gr[j] + pen_slope(p, j) : 0;
            gr[j] = v;
            t->gb_enc[j] += v;
            if (fsum && fr[j] > 0) fsum[j] += fr[j];
            if (fr[j] > 0) t->since_fired[j] = -1; /* reset at the end of the step */
        }
    }
    for (size_t j = lo; fsum && j < hi; j++) pen_dec(p, j, fsum[j], t->gWd + j * t->c.D);
}

/* AuxK's residuals (the forward's) become their gradient: r *= 2 aux_sc / n */
static void pass_auxsc(void *a, size_t lo, size_t hi)
{
    Pass *p = a;
    SAETrainer *t = p->t;
    size_t D = t->c.D;
    float sc = (float)(2 * t->aux_sc / p->n);
    for (size_t i = lo * D; i < hi * D; i++) t->ar[i] *= sc;
}

/* one entry of latent j (decoder row w) in row i: dx the gradient of the
 * row's reconstruction, v the activation, l1 the penalty's slope; gd, ge
 * gain its share of W_dec_j's and W_encT_j's gradients, b_enc_j's returned */
static float entry_grad(float *gd, float *ge, const float *w, const float *dx, float v, float l1, const float *xc,
                        size_t D)
{
    float dv = sae_dotf(dx, w, D) + l1;
    sae_axpyf(gd, v, dx, D);
    sae_axpyf(ge, dv, xc, D);
    return dv;
}

/* The sparse backward of latent j over its entries by row, AuxK's first:
 * dv = dx_hat_i . W_dec_j (+ l1/n), and from it W_dec_j's gradient into gd,
 * W_encT_j's into ge (D each, overwritten), b_enc_j's returned. Going by
 * latent keeps W_dec_j and both gradient rows in cache while the rows i
 * stream past. */
static float latent_grad(const Pass *p, size_t j, float *gd, float *ge)
{
    SAETrainer *t = p->t;
    size_t D = t->c.D;
    const float *w = t->Wd + j * D;
    float gb = 0;
    memset(gd, 0, D * sizeof *gd);
    memset(ge, 0, D * sizeof *ge);
    for (size_t c = t->aux_a ? t->aptr[j] : 0; c < (t->aux_a ? t->aptr[j + 1] : 0); c++) {
        size_t i = t->arow[c];
        gb += entry_grad(gd, ge, w, t->ar + i * D, t->aval[t->aq[c]], 0, t->xc + i * D, D);
    }
    float fsum = 0;
    for (size_t c = t->cptr[j]; c < t->cptr[j + 1]; c++) {
        size_t i = t->crow[c];
        fsum += t->val[t->cq[c]];
        gb += entry_grad(gd, ge, w, sae_arch_dx(t, i, j), t->val[t->cq[c]], pen_slope(p, j), t->xc + i * D, D);
    }
    pen_dec(p, j, fsum, gd);
    if (t->cptr[j + 1] > t->cptr[j]) t->since_fired[j] = -1; /* reset at the end of the step */
    return gb;
}

/* the sparse backward into t->grad, over latents */
static void pass_grad(void *a, size_t lo, size_t hi)
{
    SAETrainer *t = ((Pass *)a)->t;
    size_t D = t->c.D;
    for (size_t j = lo; j < hi; j++) t->gb_enc[j] = latent_grad(a, j, t->gWd + j * D, t->gWt + j * D);
}

/* b_dec's gradient, part 1, over chunks c of BDEC_CHUNK latents: bpart_c =
 * sum over the chunk's latents ascending of b_enc_j's gradient times W_encT_j */
static void bdec_part(SAETrainer *t, size_t j, float gb)
{
    size_t D = t->c.D;
    float *part = t->bpart + j / BDEC_CHUNK * D;
    if (j % BDEC_CHUNK == 0) memset(part, 0, D * sizeof *part);
    sae_axpyf(part, gb, t->Wt + j * D, D);
}

static void pass_bdec_part(void *a, size_t lo, size_t hi)
{
    SAETrainer *t = ((Pass *)a)->t;
    for (size_t j = lo * BDEC_CHUNK; j < hi * BDEC_CHUNK && j < t->c.F; j++) bdec_part(t, j, t->gb_enc[j]);
}

/* part 2: the decoder's bias, minus its share through xc = x - b_dec, the
 * chunks in order. Sharded: rank 0 starts from the bias's own term, each
 * rank subtracts its latents' share, and the sum is every rank's. */
static void bdec_grad(SAETrainer *t)
{
    size_t D = t->c.D, C = bdec_chunks(t->c.F);
    int first = !t->c.comm || t->c.comm->rank == 0;
    for (size_t d = 0; d < D; d++) t->gb_dec[d] = first ? (float)t->acc[d] : 0;
    for (size_t c = 0; c < C; c++)
        for (size_t d = 0; d < D; d++) t->gb_dec[d] -= t->bpart[c * D + d];
    if (t->c.comm) t->c.comm->ops->sum_f32(t->c.comm, t->gb_dec, D);
}

/* relu goes sparse when its active set fits the CSR buffers */
static int relu_sparse(SAETrainer *t, size_t n)
{
    size_t nnz = 0;
    for (size_t i = 0; i < n; i++) nnz += (size_t)t->ract[i];
    if (nnz > t->cap) return 0;
    t->ptr[0] = 0;
    for (size_t i = 0; i < n; i++) t->ptr[i + 1] = t->ptr[i] + (size_t)t->ract[i];
    return 1;
}

/* The forward of n rows, the training map or (eval) the inference map;
 * what the backward needs stays in t (last_*). */
static void forward(SAETrainer *t, const float *x, size_t n, double l1, int eval, SAEStats *st, uint64_t *fired)
{
    size_t D = t->c.D, F = t->c.F;
    int relu = t->c.arch == SAE_RELU;
    if (sae_arch_own_step(t->c.arch)) {
        sae_arch_forward(t, x, n, l1, eval, st, fired);
        return;
    }
    float *xc = t->xc, *pre = t->pre, *e = t->e;
    Pass ps = {.t = t, .x = x, .n = n, .th = relu ? 0.0f : (float)t->theta};
    size_t rows = 16384 / D + 1; /* chunks worth a thread */
    size_t nd = relu ? 0 : auxk_begin(t);
    int tiled = pre_tiled(&t->c);
    if (tiled) encode_tiles(t, &ps, n, nd);
    else sp_parfor(n, rows, pass_center, &ps);
    /* pre = xc W_enc + b_enc: the one dense product every arch needs. The
     * batch as one window: tiles of up to 512 rows (a run's are 256), so
     * each 1024-column slab of W_enc is repacked half as often (OpenBLAS's
     * incopy: 4.8% -> 3.3% of sae_bench's CPU). A row's bytes depend on n,
     * fixed for a run, never on the thread count. */
    if (!tiled) sp_gemm_rows(SP_ROWS_WINDOWS(n), CblasNoTrans, CblasTrans, n, F, D, 1.0f, xc, D, t->Wt, D, 1.0f, pre, F);
    /* dense activations: relu always; batchtopk in eval, where the threshold
     * may let any number of latents through (act = g, so pre stays for AuxK).
     * relu's decoder and backward go sparse (sparse = 1) when few latents
     * fire: the same sums over the active entries, without the zeros. */
    int dense = relu || (eval && sae_arch_has_threshold(t->c.arch)), sparse = !dense;
    float *act = relu ? pre : t->g;
    for (size_t i = 0; i < n; i++) t->rl1[i] = 0;
    sae_arch_dec_norms(t); /* relu, free decoder: the penalty's weights */
    if (dense) {
        sp_parfor(n, rows, pass_act, &ps);
        if (relu && relu_sparse(t, n)) {
            sparse = 1;
            sp_parfor(n, rows, pass_csr, &ps);
        } else {
            sp_gemm(CblasNoTrans, CblasNoTrans, n, D, F, 1.0f, act, F, t->Wd, D, 0.0f, e, D);
        }
    } else if (!tiled) {
        select_active(t, n);
    }
    if (sparse) sp_parfor(n, rows, pass_decode, &ps);
    SpComm *comm = t->c.comm;
    if (comm) comm->ops->sum_f32(comm, e, n * D); /* sharded: each rank decoded its latents */
    sp_parfor(n, rows, pass_err, &ps);
    double sq = 0, l1sum = 0, active = 0;
    for (size_t i = 0; i < n; i++) sq += t->rsq[i], l1sum += t->rl1[i], active += t->ract[i];
    if (comm) {
        double sums[2] = {l1sum, active};
        comm->ops->sum_f64(comm, sums, 2);
        l1sum = sums[0], active = sums[1];
    }
    if (fired) {
        if (!sparse) {
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < F; j++) fired[j] += act[i * F + j] > 0;
        } else {
            for (size_t q = 0; q < t->ptr[n]; q++) fired[t->idx[q]] += t->val[q] > 0;
        }
    }
    memset(st, 0, sizeof *st);
    st->n = n;
    st->sq_err = sq;
    st->recon = sq / n;
    st->l0 = active / n;
    st->sparse = sparse;
    st->aux = relu ? l1 * l1sum / n : auxk_forward(t, n, nd, tiled); /* auxk needs e as x_hat - x */
    st->loss = st->recon + st->aux;
    if (!eval && t->lev) st->loss += sae_arch_levels_forward(t, x, n) / n; /* matryoshka's inner levels */
    t->last_n = eval && !relu ? 0 : n; /* no gradient of batchtopk's inference map */
    t->last_l1 = l1, t->last_sparse = sparse;
}

void sae_trainer_forward(SAETrainer *t, const float *x, size_t n, double l1, SAEStats *st)
{
    forward(t, x, n, l1, 0, st, NULL);
}

void sae_trainer_eval(SAETrainer *t, const float *x, size_t n, double l1, SAEStats *st, uint64_t *fired)
{
    forward(t, x, n, l1, 1, st, fired);
}

/* The backward up to the per-latent gradients: dx_hat, matryoshka's
 * levels, AuxK's residuals scaled; the sparse step's entries by latent.
 * Returns the rows (0: nothing to differentiate). */
static size_t backward_begin(SAETrainer *t, Pass *ps)
{
    size_t D = t->c.D, F = t->c.F, n = t->last_n, A = t->aux_a;
    if (!n) return 0;
    *ps = (Pass){.t = t, .n = n, .l1n = t->c.arch == SAE_RELU ? (float)(t->last_l1 / n) : 0, .sc = (float)(2.0 / n)};
    if (A) sp_parfor(n, 16384 / D + 1, pass_auxsc, ps);
    sp_parfor(D, 256, pass_dxhat, ps); /* e becomes dx_hat = 2/n e */
    if (t->lev) sae_arch_levels_dxhat(t, n);
    if (t->last_sparse) {
        build_csc(F, n, t->ptr, 0, t->idx, t->val, t->cptr, t->cq, t->crow);
        if (A) build_csc(F, n, NULL, A, t->aidx, t->aval, t->aptr, t->aq, t->arow);
    }
    return n;
}

/* the firing counters: 0 where a latent fired, else n rows more */
void sae_backward_end(SAETrainer *t, size_t n)
{
    for (size_t j = 0; j < t->c.F; j++) t->since_fired[j] = t->since_fired[j] < 0 ? 0 : t->since_fired[j] + (int64_t)n;
    t->last_n = 0; /* one backward per forward */
}

void sae_trainer_backward(SAETrainer *t)
{
    size_t D = t->c.D, F = t->c.F, n;
    if (sae_arch_own_step(t->c.arch)) {
        sae_arch_backward(t);
        return;
    }
    Pass ps;
    if (!(n = backward_begin(t, &ps))) return;
    size_t cols = 256; /* chunks worth a thread */
    if (!t->last_sparse) {
        /* relu: gW_dec = f^T dx_hat; df = dx_hat W_dec^T; dpre = (f>0)(df + l1/n); gW_encT = dpre^T xc */
        sp_gemm(CblasTrans, CblasNoTrans, F, D, n, 1.0f, t->pre, F, t->e, D, 0.0f, t->gWd, D);
        sp_gemm(CblasNoTrans, CblasTrans, n, F, D, 1.0f, t->e, D, t->Wd, D, 0.0f, t->g, F);
        sp_parfor(F, cols, pass_mask, &ps);
        sp_gemm(CblasTrans, CblasNoTrans, F, D, n, 1.0f, t->g, F, t->xc, D, 0.0f, t->gWt, D);
    } else {
        sp_parfor(F, cols, pass_grad, &ps);
    }
    sp_parfor(bdec_chunks(F), 1, pass_bdec_part, &ps);
    bdec_grad(t);
    sae_backward_end(t, n);
}

/* the sparse step over chunks of BDEC_CHUNK latents: each latent's
 * gradient into rows of cache, its share of b_dec's, then its Adam */
typedef struct {
    Pass ps;
    SAEAdam s;
} Fused;

static void pass_fused(void *a, size_t lo, size_t hi)
{
    Fused *f = a;
    SAETrainer *t = f->ps.t;
    size_t D = t->c.D;
    float *gd = xmalloc_aligned(2 * D * sizeof *gd), *ge = gd + D;
    for (size_t j = lo * BDEC_CHUNK; j < hi * BDEC_CHUNK && j < t->c.F; j++) {
        float gb = latent_grad(&f->ps, j, gd, ge);
        bdec_part(t, j, gb);
        sae_adam_latent(&f->s, j, ge, gb, gd);
    }
    free(gd);
}

void sae_trainer_step(SAETrainer *t, double lr)
{
    if (!t->last_n) return; /* no forward since the last step: no gradient (t->grad is not kept zeroed) */
    if (sae_arch_own_step(t->c.arch) || !t->last_sparse) {
        sae_trainer_backward(t);
        sae_trainer_update(t, lr);
        return;
    }
    Fused f;
    size_t n = backward_begin(t, &f.ps);
    sae_adam_begin(t, lr, &f.s);
    sp_parfor(bdec_chunks(t->c.F), 1, pass_fused, &f);
    bdec_grad(t);
    sae_adam_bdec(&f.s);
    sae_backward_end(t, n);
}
