/* Gradients of every SAE architecture (lib/sae_train.c, lib/sae_arch.c)
 * against central finite differences of an independent double-precision
 * loss written here, at active sets fixed at the unperturbed point; jumprelu's
 * threshold, whose gradient is a straight-through estimate, against the
 * estimator's formula in double and (its L0 part) against the finite
 * difference of the true step loss over the kernel's width; plus the Adam
 * step's invariants (unit decoder rows, bf16 state). relu also with a free
 * decoder, its penalty weighted by the decoder rows' norms. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parfor.h"
#include "sae_arch.h"
#include "sae_train.h"
#include "tap.h"

enum { D = 6, F = 14, N = 9, K = 3, AUXK = 4 };
/* matryoshka's prefixes in the small check */
static const size_t GROUPS[] = {4, 9, F};

/* the objective of sae_train.h in double, given parameters p in the trainer's
 * block layout; active sets from sel (fixed at the unperturbed point, as a
 * derivative sees them); r0 the AuxK residual target held constant */
typedef struct {
    SAEArch arch;
    double l1, aux_coef, scale, tanh_c;
    int dec_free;       /* relu: the penalty f_ij ||W_dec_j|| */
    const double *p0;   /* gated: the unperturbed parameters (the aux term's frozen decoder) */
    int act[N][F];      /* 1 when latent j is active in row i */
    int gate[N][F];     /* gated: 1 when pi_gate > 0 */
    int aux[N][F];      /* 1 when latent j is in row i's AuxK set */
    double r0[N][D];    /* x - x_hat at the unperturbed point */
} Ref;

static double ref_loss(const Ref *R, const double *p, const float *x, int fill_sets, Ref *out_sets,
                       const int64_t *since, uint64_t dead_rows)
{
    const double *Wt = p, *be = Wt + F * D, *Wd = be + F, *bd = Wd + F * D, *xp = bd + D;
    double pre[N][F], mag[N][F], recon = 0, aux = 0, l1 = 0, lev = 0;
    int gated = R->arch == SAE_GATED, jump = R->arch == SAE_JUMPRELU;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < F; j++) {
            double z = 0;
            for (int d = 0; d < D; d++) z += (x[i * D + d] - bd[d]) * Wt[j * D + d];
            pre[i][j] = z + be[j];                       /* gated: pi_gate */
            mag[i][j] = gated ? exp(xp[j]) * z + xp[F + j] : pre[i][j];
        }
    if (fill_sets) {
        /* choose active sets by the rules: topk per row, batchtopk over all */
        memset(out_sets->act, 0, sizeof out_sets->act);
        memset(out_sets->aux, 0, sizeof out_sets->aux);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < F; j++) {
                if (R->arch == SAE_RELU) { out_sets->act[i][j] = pre[i][j] > 0; continue; }
                if (jump) { out_sets->act[i][j] = pre[i][j] > exp(xp[j]); continue; }
                if (gated) {
                    out_sets->gate[i][j] = pre[i][j] > 0;
                    out_sets->act[i][j] = pre[i][j] > 0 && mag[i][j] > 0;
                    continue;
                }
                int beat = 0;
                if (R->arch == SAE_TOPK) {
                    for (int m = 0; m < F; m++) beat += pre[i][m] > pre[i][j];
                    out_sets->act[i][j] = beat < K && pre[i][j] > 0;
                } else {
                    for (int a = 0; a < N; a++)
                        for (int m = 0; m < F; m++) beat += pre[a][m] > pre[i][j];
                    out_sets->act[i][j] = beat < K * N && pre[i][j] > 0;
                }
            }
        if (sae_arch_has_k(R->arch))
            for (int i = 0; i < N; i++)
                for (int j = 0; j < F; j++) {
                    if ((uint64_t)since[j] < dead_rows) continue;
                    int beat = 0;
                    for (int m = 0; m < F; m++) beat += (uint64_t)since[m] >= dead_rows && pre[i][m] > pre[i][j];
                    out_sets->aux[i][j] = beat < AUXK && pre[i][j] > 0;
                }
    }
    const double *Wd0 = gated ? R->p0 + F * D + F : NULL, *bd0 = gated ? Wd0 + F * D : NULL;
    for (int i = 0; i < N; i++) {
        double xh[D], eh[D], xg[D];
        for (int d = 0; d < D; d++) xh[d] = bd[d], eh[d] = 0, xg[d] = gated ? bd0[d] : 0;
        for (int j = 0; j < F; j++) {
            if (R->act[i][j]) {
                for (int d = 0; d < D; d++) xh[d] += mag[i][j] * Wd[j * D + d];
                double wn = 0;
                for (int d = 0; R->dec_free && d < D; d++) wn += Wd[j * D + d] * Wd[j * D + d];
                if (!gated) l1 += R->tanh_c > 0 ? tanh(R->tanh_c * mag[i][j] / R->scale) : jump ? 1 : mag[i][j] * (R->dec_free ? sqrt(wn) : 1);
            }
            if (gated && R->gate[i][j]) {
                l1 += pre[i][j];
                for (int d = 0; d < D; d++) xg[d] += pre[i][j] * Wd0[j * D + d];
            }
            if (R->aux[i][j])
                for (int d = 0; d < D; d++) eh[d] += pre[i][j] * Wd[j * D + d];
        }
        for (int d = 0; d < D; d++) {
            double e = xh[d] - x[i * D + d];
            recon += e * e;
            if (fill_sets) out_sets->r0[i][d] = -e;
            double r = eh[d] - R->r0[i][d];
            aux += gated ? (xg[d] - x[i * D + d]) * (xg[d] - x[i * D + d]) : r * r;
        }
        /* matryoshka: each inner prefix's reconstruction error */
        for (size_t g = 0; R->arch == SAE_MATRYOSHKA && g + 1 < sizeof GROUPS / sizeof *GROUPS; g++)
            for (int d = 0; d < D; d++) {
                double v = bd[d] - x[i * D + d];
                for (size_t j = 0; j < GROUPS[g]; j++)
                    if (R->act[i][j]) v += pre[i][j] * Wd[j * D + d];
                lev += v * v;
            }
    }
    recon /= N;
    if (R->arch == SAE_RELU) return recon + R->l1 * l1 / N;
    if (jump) return recon + R->l1 * R->scale * R->scale * l1 / N;
    if (gated) return recon + R->l1 * R->scale * l1 / N + aux / N;
    return recon + R->aux_coef * aux / N + lev / N;
}

static void small_config(SAETrainConfig *c)
{
    c->ngroups = sizeof GROUPS / sizeof *GROUPS;
    memcpy(c->groups, GROUPS, sizeof GROUPS);
    c->bandwidth = 0.2, c->theta0 = 0.1;
}

static void check_ste(SAETrainer *t, const Ref *R, const float *x);

/* relu_sparse: as SAETrainConfig (relu: 1 forces the sparse path, -1 the
 * dense one); tanh_c: jumprelu's tanh penalty (0: step); dec_free: relu's
 * free decoder */
static void check_arch(SAEArch arch, double relu_sparse, double tanh_c, int dec_free)
{
    char an[64];
    snprintf(an, sizeof an, "%s%s%s%s", sae_arch_name(arch), relu_sparse > 0 ? " sparse" : relu_sparse < 0 ? " dense" : "",
             tanh_c > 0 ? " tanh" : "", dec_free ? " free decoder" : "");
    int k = sae_arch_has_k(arch);
    SAETrainConfig c = {.arch = arch, .D = D, .F = F, .K = k ? K : 0, .B = N,
                        .aux_k = k ? AUXK : 0, .aux_coef = 0.5, .beta1 = 0.9, .beta2 = 0.999,
                        .eps = 1e-8, .dead_rows = 100, .threshold_ema = 0.9, .relu_sparse = relu_sparse,
                        .tanh_scale = tanh_c, .dec_free = dec_free};
    small_config(&c);
    SAETrainer t;
    char err[256];
    ok(sae_trainer_init(&t, &c, err, sizeof err) == 0, "%s: init", an);
    SpRng r;
    sp_rng_seed(&r, 5 + arch);
    float x[N * D];
    for (int i = 0; i < N * D; i++) x[i] = (float)sp_rng_normal(&r);
    sae_trainer_init_params(&t, &r, x, N, SAE_BDEC_MEDIAN);
    /* move away from the symmetric start: encoder, biases and decoder all random */
    for (size_t i = 0; i < t.P; i++) t.param[i] += (float)(0.3 * sp_rng_normal(&r));
    if (arch == SAE_JUMPRELU) /* thresholds among the pre-activations, some entries in the kernel's window */
        for (int j = 0; j < F; j++) t.xp[j] = (float)log(0.3 + 0.05 * j);
    /* half the latents dead so AuxK has work */
    for (int j = 0; j < F; j++) t.since_fired[j] = j % 2 ? 1000 : 0;
    int64_t since[F];
    memcpy(since, t.since_fired, sizeof since);
    double l1 = 0.7;
    SAEStats st;
    sae_trainer_forward(&t, x, N, l1, &st);
    sae_trainer_backward(&t);
    ok(st.sparse == (k || relu_sparse > 0), "%s: %s decoder and backward", an, st.sparse ? "sparse" : "dense");

    double *p = malloc(t.P * sizeof *p), *p0 = malloc(t.P * sizeof *p0);
    for (size_t i = 0; i < t.P; i++) p0[i] = p[i] = t.param[i];
    Ref R = {.arch = arch, .l1 = l1, .aux_coef = 0.5, .scale = t.scale, .tanh_c = tanh_c, .p0 = p0, .dec_free = dec_free};
    double L0 = ref_loss(&R, p, x, 1, &R, since, c.dead_rows);
    /* the aux target is now fixed: recompute with the sets */
    L0 = ref_loss(&R, p, x, 0, NULL, since, c.dead_rows);
    ok(fabs(L0 - st.loss) <= 1e-4 * fmax(1, fabs(L0)), "%s: loss %.6f matches the double reference %.6f", an,
       st.loss, L0);
    size_t nact = 0, naux = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < F; j++) nact += R.act[i][j], naux += R.aux[i][j];
    ok(fabs(st.l0 - (double)nact / N) < 1e-9, "%s: L0 %.3f = %zu active / %d rows", an, st.l0, nact, N);
    if (k) ok(naux > 0 && st.aux > 0, "%s: AuxK term is live (%zu, %.4f)", an, naux, st.aux);

    float *fd = malloc(t.P * sizeof *fd);
    double h = 1e-5;
    for (size_t i = 0; i < t.P; i++) {
        double keep = p[i];
        p[i] = keep + h;
        double lp = ref_loss(&R, p, x, 0, NULL, since, c.dead_rows);
        p[i] = keep - h;
        double lm = ref_loss(&R, p, x, 0, NULL, since, c.dead_rows);
        p[i] = keep;
        fd[i] = (float)((lp - lm) / (2 * h));
    }
    char name[160];
    /* jumprelu's threshold has no gradient at a fixed active set: check_ste */
    size_t PF = arch == SAE_JUMPRELU ? t.P - F : t.P;
    snprintf(name, sizeof name, "%s: gradient of all %zu parameters vs finite differences", an, PF);
    close_enough(t.grad, fd, PF, 2e-3, name);
    const char *part[] = {"W_enc", arch == SAE_GATED ? "b_gate" : "b_enc", "W_dec", "b_dec", "r_mag", "b_mag"};
    size_t off[] = {0, F * D, F * D + F, 2 * F * D + F, 2 * F * D + F + D, 2 * F * D + 2 * F + D, t.P};
    int nq = arch == SAE_GATED ? 6 : 4;
    if (arch == SAE_JUMPRELU) check_ste(&t, &R, x);
    for (int q = 0; q < nq; q++) {
        double nz = 0;
        for (size_t i = off[q]; i < off[q + 1]; i++) nz += fabs(fd[i]);
        snprintf(name, sizeof name, "%s: %s gradient", an, part[q]);
        ok(nz > 0, "%s: %s gradient is not all zero", an, part[q]);
        close_enough(t.grad + off[q], fd + off[q], off[q + 1] - off[q], 2e-3, name);
    }

    /* Adam: decoder rows end at unit norm (free: left as they are); loss goes down over a few steps */
    double first = st.loss;
    for (int s = 0; s < 30; s++) {
        sae_trainer_forward(&t, x, N, l1, &st);
        sae_trainer_backward(&t);
        sae_trainer_update(&t, 1e-2);
    }
    double worst = 0;
    for (int j = 0; j < F; j++) {
        double n2 = 0;
        for (int d = 0; d < D; d++) n2 += (double)t.Wd[j * D + d] * t.Wd[j * D + d];
        worst = fmax(worst, fabs(sqrt(n2) - 1));
    }
    if (dec_free) ok(worst > 1e-2, "%s: decoder rows not renormalised (norms off 1 by up to %.2g)", an, worst);
    else ok(worst < 1e-5, "%s: decoder rows unit norm after Adam (worst %.2g)", an, worst);
    sae_trainer_forward(&t, x, N, l1, &st);
    ok(st.loss < first, "%s: 30 Adam steps lower the loss %.4f -> %.4f", an, first, st.loss);
    free(p), free(p0);
    free(fd);
    sae_trainer_free(&t);
}

/* jumprelu's threshold gradient (t holds the backward of the unperturbed
 * point): the estimator of sae_arch.h computed here in double,
 *   dL/dlog theta_j = theta_j sum_i K((pre_ij - theta_j)/eps) (-(theta_j/eps) dL/df_ij - lam/eps),
 * with dL/df_ij = 2/n (x_hat_i - x_i) . W_dec_j (+ the tanh penalty's
 * derivative); and, for the step penalty, that its L0 part is the central
 * difference of the true L0 term over the kernel's width: with the
 * rectangle kernel, -(1/eps) #{|pre - theta| < eps/2} = (L0(theta + eps/2) -
 * L0(theta - eps/2)) / eps exactly. */
static void check_ste(SAETrainer *t, const Ref *R, const float *x)
{
    const float *Wt = t->Wt, *be = t->b_enc, *Wd = t->Wd, *bd = t->b_dec;
    double s = R->scale, eps = t->c.bandwidth * s, lam = R->l1 * s * s / N, c = R->tanh_c / s;
    double g[F] = {0}, l0fd[F] = {0}, l0ste[F] = {0};
    int inwin = 0;
    for (int i = 0; i < N; i++) {
        double pre[F], xh[D];
        for (int d = 0; d < D; d++) xh[d] = bd[d];
        for (int j = 0; j < F; j++) {
            double a = be[j];
            for (int d = 0; d < D; d++) a += (x[i * D + d] - (double)bd[d]) * Wt[j * D + d];
            pre[j] = a;
            if (a > exp(t->xp[j]))
                for (int d = 0; d < D; d++) xh[d] += a * Wd[j * D + d];
        }
        for (int j = 0; j < F; j++) {
            double th = exp(t->xp[j]), df = 0, f = pre[j] > th ? pre[j] : 0;
            for (int d = 0; d < D; d++) df += 2.0 / N * (xh[d] - x[i * D + d]) * Wd[j * D + d];
            if (c > 0) df += lam * c * (1 - tanh(c * f) * tanh(c * f));
            int win = fabs(pre[j] - th) < eps / 2;
            inwin += win;
            g[j] += win ? th * (-(th / eps) * df - (c > 0 ? 0 : lam / eps)) : 0;
            l0ste[j] -= win ? lam / eps : 0;
            l0fd[j] += lam * ((pre[j] > th + eps / 2) - (pre[j] > th - eps / 2)) / eps;
        }
    }
    float gf[F];
    for (int j = 0; j < F; j++) gf[j] = (float)g[j];
    char name[96];
    snprintf(name, sizeof name, "jumprelu%s: threshold gradient is the STE's (%d entries in windows)",
             c > 0 ? " tanh" : "", inwin);
    ok(inwin > 0, "jumprelu: some entries sit in the kernel's window (%d)", inwin);
    close_enough(t->gxp, gf, F, 1e-3, name);
    double md = 0;
    for (int j = 0; j < F; j++) md = fmax(md, fabs(l0ste[j] - l0fd[j]));
    if (c == 0) ok(md < 1e-9, "jumprelu: the STE's L0 part is the central difference of the L0 term over eps (%.2g)", md);
}

static void check_bf16_state(void)
{
    SAETrainConfig c = {.arch = SAE_TOPK, .D = D, .F = F, .K = K, .B = N, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                        .dead_rows = 100, .state_bf16 = 1};
    SAETrainer a, b;
    char err[256];
    ok(sae_trainer_init(&a, &c, err, sizeof err) == 0, "bf16 state: init");
    c.state_bf16 = 0;
    ok(sae_trainer_init(&b, &c, err, sizeof err) == 0, "f32 state: init");
    ok(sae_trainer_bytes(&c) > sae_trainer_bytes(&a.c), "bf16 state needs fewer bytes");
    SpRng r;
    sp_rng_seed(&r, 9);
    float x[N * D];
    for (int i = 0; i < N * D; i++) x[i] = (float)sp_rng_normal(&r);
    sp_rng_seed(&r, 1);
    sae_trainer_init_params(&a, &r, x, N, SAE_BDEC_MEAN);
    sp_rng_seed(&r, 1);
    sae_trainer_init_params(&b, &r, x, N, SAE_BDEC_MEAN);
    SAEStats st;
    for (int s = 0; s < 10; s++) {
        sae_trainer_forward(&a, x, N, 0, &st);
        sae_trainer_backward(&a);
        sae_trainer_update(&a, 1e-2);
        sae_trainer_forward(&b, x, N, 0, &st);
        sae_trainer_backward(&b);
        sae_trainer_update(&b, 1e-2);
    }
    double md = 0;
    for (size_t i = 0; i < a.P; i++) md = fmax(md, fabs(a.param[i] - b.param[i]));
    ok(md > 0 && md < 5e-3, "bf16 moments track f32 moments over 10 steps (max diff %.2g)", md);
    sae_trainer_free(&a);
    sae_trainer_free(&b);
}

/* At a size where sp_parfor splits rows, latents and columns and sp_gemm
 * has several tiles: the same bytes on 1, 2 and 3 threads for every arch,
 * by construction (fixed tiles and chunks, whatever the thread count, on
 * any OpenBLAS kernel); relu's sparse step follows its dense one; and
 * sae_trainer_step (Adam inside the sparse backward) gives the bytes of
 * sae_trainer_backward and sae_trainer_update, AuxK live from step 2.
 * fused: step by sae_trainer_step */
static float *run_steps(SAEArch arch, double relu_sparse, int bf16, int threads, int fused, const float *x,
                        size_t n, size_t *P)
{
    enum { TD = 64, TF = 1024 };
    int k = sae_arch_has_k(arch);
    SAETrainConfig c = {.arch = arch, .D = TD, .F = TF, .K = k ? 8 : 0, .B = n,
                        .aux_k = k ? 32 : 0, .aux_coef = 0.1, .beta1 = 0.9, .beta2 = 0.999,
                        .eps = 1e-8, .dead_rows = 300, .threshold_ema = 0.9, .relu_sparse = relu_sparse,
                        .bandwidth = 0.05, .theta0 = 0.01, .ngroups = 3, .groups = {64, 256, TF},
                        .state_bf16 = bf16};
    SAETrainer t;
    char err[256];
    if (sae_trainer_init(&t, &c, err, sizeof err) < 0) return NULL;
    sp_par_set_threads(threads);
    SpRng r;
    sp_rng_seed(&r, 3);
    sae_trainer_init_params(&t, &r, x, n, SAE_BDEC_MEAN);
    /* few latents fire, as in a trained relu SAE */
    for (size_t j = 0; j < TF; j++) t.b_enc[j] = -0.25f;
    SAEStats st;
    int s = 0;
    for (; s < 4; s++) {
        sae_trainer_forward(&t, x, n, 0.5, &st);
        if (s > 0 && sae_arch_has_k(arch) && !(st.aux > 0)) break; /* AuxK must be live */
        if (fused) {
            sae_trainer_step(&t, 1e-3);
        } else {
            sae_trainer_backward(&t);
            sae_trainer_update(&t, 1e-3);
        }
    }
    float *p = s == 4 ? malloc(t.P * sizeof *p) : NULL;
    if (p) memcpy(p, t.param, t.P * sizeof *p);
    *P = t.P;
    sae_trainer_free(&t);
    return p;
}

static void check_threads(void)
{
    size_t n = 600, P, Prelu = 0;
    float *x = malloc(n * 64 * sizeof *x);
    SpRng r;
    sp_rng_seed(&r, 11);
    for (size_t i = 0; i < n * 64; i++) x[i] = (float)(sp_rng_normal(&r) / 8); /* pre ~ N(0, 1/8^2) */
    struct { SAEArch arch; double rs; int bf16; const char *name; } runs[] = {
        {SAE_RELU, -1, 0, "relu dense"}, {SAE_RELU, 1, 0, "relu sparse"}, {SAE_TOPK, 0, 0, "topk"},
        {SAE_BATCHTOPK, 0, 0, "batchtopk"}, {SAE_MATRYOSHKA, 0, 0, "matryoshka"}, {SAE_JUMPRELU, 0, 0, "jumprelu"},
        {SAE_GATED, 0, 0, "gated"}, {SAE_TOPK, 0, 1, "topk, bf16 state"}};
    float *relu[2] = {0};
    for (int k = 0; k < (int)(sizeof runs / sizeof *runs); k++) {
        SAEArch arch = runs[k].arch;
        double rs = runs[k].rs;
        int bf = runs[k].bf16;
        float *a = run_steps(arch, rs, bf, 1, 1, x, n, &P), *b = run_steps(arch, rs, bf, 2, 1, x, n, &P);
        float *c = run_steps(arch, rs, bf, 3, 1, x, n, &P), *u = run_steps(arch, rs, bf, 2, 0, x, n, &P);
        ok(a && b && c && !memcmp(a, b, P * sizeof *a) && !memcmp(c, b, P * sizeof *a),
           "%s: 4 steps give the same bytes on 1, 2 and 3 threads", runs[k].name);
        size_t nd = 0;
        for (size_t i = 0; b && u && i < P; i++) nd += memcmp(b + i, u + i, sizeof *b) != 0;
        ok(b && u && nd == 0, "%s: sae_trainer_step gives the bytes of backward and update (%zu of %zu differ)",
           runs[k].name, nd, P);
        if (k < 2) relu[k] = a, Prelu = P;
        else free(a);
        free(b), free(c), free(u);
    }
    sp_par_set_threads(2);
    double md = 0;
    for (size_t i = 0; i < Prelu; i++) md = fmax(md, fabs(relu[0][i] - relu[1][i]));
    ok(md < 1e-4, "relu: the sparse step follows the dense one (max diff %.2g after 4 steps)", md);
    free(relu[0]);
    free(relu[1]);
    free(x);
}

/* sae_trainer_init_params on several threads: rows drawn in blocks and
 * made in parallel are still sp_rng_normal's values in order, normalised,
 * and the geometric median (computed by rows and by columns) is
 * Weiszfeld's; the same bytes on 1 and 3 threads */
static float *init_on(int threads, const float *x, size_t n, SpRng *after)
{
    enum { TD = 64, TF = 200 }; /* 200: blocks of 64 rows and a short one */
    SAETrainConfig c = {.arch = SAE_TOPK, .D = TD, .F = TF, .K = 4, .B = 8, .beta1 = 0.9, .beta2 = 0.999};
    SAETrainer t;
    char err[256];
    sp_par_set_threads(threads);
    if (sae_trainer_init(&t, &c, err, sizeof err) < 0) return NULL;
    sp_rng_seed(after, 5);
    sae_trainer_init_params(&t, after, x, n, SAE_BDEC_MEDIAN);
    float *p = malloc(t.P * sizeof *p);
    memcpy(p, t.param, t.P * sizeof *p);
    sae_trainer_free(&t);
    return p;
}

static void check_init(void)
{
    enum { TD = 64, TF = 200 };
    size_t n = 300, P = 2 * TD * TF + TF + TD;
    float *x = malloc(n * TD * sizeof *x);
    SpRng r, r1, r3;
    sp_rng_seed(&r, 12);
    for (size_t i = 0; i < n * TD; i++) x[i] = (float)(sp_rng_normal(&r) + (i % TD == 0 ? 3 * sp_rng_normal(&r) : 0));
    float *a = init_on(1, x, n, &r1), *b = init_on(3, x, n, &r3);
    sp_par_set_threads(2);
    ok(a && b && !memcmp(a, b, P * sizeof *a) && !memcmp(&r1, &r3, sizeof r1), "init: same bytes on 1 and 3 threads");
    const float *Wt = a, *Wd = a + TD * TF + TF, *b_dec = Wd + TD * TF;
    /* row j: Box-Muller pairs (cos, sin) from a generator seeded by the
     * run's one draw (key) and j */
    sp_rng_seed(&r, 5);
    uint64_t key = sp_rng_u64(&r);
    double md = 0, m1 = 0, m2 = 0;
    for (size_t j = 0; j < TF; j++) {
        double w[TD], s = 0;
        SpRng rj;
        sp_rng_seed(&rj, key ^ (j * 0xd1342543de82ef95ull));
        for (size_t d = 0; d < TD; d += 2) {
            double u1 = (sp_rng_u64(&rj) >> 11) * 0x1.0p-53, u2 = (sp_rng_u64(&rj) >> 11) * 0x1.0p-53;
            double m = sqrt(-2.0 * log(u1 < 1e-300 ? 1e-300 : u1));
            w[d] = (float)(m * cos(2 * M_PI * u2)), w[d + 1] = (float)(m * sin(2 * M_PI * u2));
        }
        for (size_t d = 0; d < TD; d++) s += w[d] * w[d], m1 += w[d], m2 += w[d] * w[d];
        for (size_t d = 0; d < TD; d++) md = fmax(md, fabs(Wd[j * TD + d] - w[d] / sqrt(s)));
    }
    m1 /= TD * TF, m2 /= TD * TF;
    ok(fabs(m1) < 0.03 && fabs(m2 - 1) < 0.05, "init: the rows' draws are N(0, 1): mean %.3f, mean square %.3f", m1, m2);
    ok(md < 1e-6 && !memcmp(&r, &r1, sizeof r) && !memcmp(Wt, Wd, TD * TF * sizeof *Wt),
       "init: decoder rows are Box-Muller pairs of their own generators, unit norm (max diff %.2g); encoder the same", md);
    /* Weiszfeld in double from the mean: the median's gradient vanishes */
    double y[TD], g[TD] = {0}, gn = 0;
    for (size_t d = 0; d < TD; d++) y[d] = b_dec[d];
    for (size_t i = 0; i < n; i++) {
        double r2 = 0;
        for (size_t d = 0; d < TD; d++) r2 += (x[i * TD + d] - y[d]) * (x[i * TD + d] - y[d]);
        for (size_t d = 0; d < TD; d++) g[d] += (y[d] - x[i * TD + d]) / sqrt(r2);
    }
    for (size_t d = 0; d < TD; d++) gn += g[d] * g[d];
    ok(sqrt(gn) / n < 1e-4 && fabs(b_dec[0]) > 0, "init: b_dec is the geometric median (|grad|/n %.2g)",
       sqrt(gn) / n);
    free(a), free(b), free(x);
}

int main(void)
{
    check_arch(SAE_RELU, -1, 0, 0);
    check_arch(SAE_RELU, 1, 0, 0);
    check_arch(SAE_RELU, -1, 0, 1);
    check_arch(SAE_RELU, 1, 0, 1);
    check_arch(SAE_TOPK, 0, 0, 0);
    check_arch(SAE_BATCHTOPK, 0, 0, 0);
    check_arch(SAE_MATRYOSHKA, 0, 0, 0);
    check_arch(SAE_JUMPRELU, 0, 0, 0);
    check_arch(SAE_JUMPRELU, 0, 4, 0);
    check_arch(SAE_GATED, 0, 0, 0);
    check_bf16_state();
    check_threads();
    check_init();
    return done_testing();
}
