/* sae_bench: tokens/s of sae-fit's training step (forward, backward, Adam,
 * decoder normalisation) on random rows, without I/O.
 *   sae_bench ARCH D F B K STEPS [DENSITY [RELU_SPARSE]]
 * Rows x ~ N(0,1) and unit decoder rows make every pre-activation N(0,1);
 * DENSITY (relu) sets b_enc = -z with P(N(0,1) > z) = DENSITY, so that
 * fraction of latents fires, as in a trained relu SAE (default 0.5: the
 * initial b_enc = 0). sae_torch_bench.py builds the same. RELU_SPARSE is
 * SAETrainConfig.relu_sparse (default 0: the library's choice).
 * SAE_BENCH_UNFUSED=1 in the environment steps by sae_trainer_backward and
 * sae_trainer_update instead of sae_trainer_step (the same bytes; the
 * gradient written out and read back), to compare the two in one build.
 * Prints "ARCH D F B K: T tokens/s (S s/step, G GFLOP/s ...) L0 .. path ..
 * cpu C s/step (forward F s, backward and Adam A s); alloc W s (cpu C s),
 * init W s (cpu C s)" after one
 * warm-up step: CPU time (every thread's) says more than wall time on a
 * shared machine; alloc is sae_trainer_init (the block's first touch), init
 * sae_trainer_init_params (random rows, b_dec zero).
 * bench/sae.sh runs it beside PyTorch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parfor.h"
#include "sae_train.h"

/* z with P(N(0,1) > z) = p, by bisection */
static double upper_quantile(double p)
{
    double lo = -10, hi = 10;
    for (int i = 0; i < 100; i++) {
        double mid = (lo + hi) / 2;
        if (0.5 * erfc(mid / sqrt(2.0)) > p) lo = mid;
        else hi = mid;
    }
    return (lo + hi) / 2;
}

/* CPU seconds of every thread of the process so far */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    if (argc < 7 || argc > 9) {
        fprintf(stderr, "Usage: sae_bench ARCH D F B K STEPS [DENSITY [RELU_SPARSE]]\n");
        return 2;
    }
    SAEArch arch;
    if (sae_arch_parse(argv[1], &arch) < 0) sp_usage_die("bad arch '%s'", argv[1]);
    size_t D = sp_opt_u64("D", argv[2], 1, 1 << 16), F = sp_opt_u64("F", argv[3], 1, 1 << 22);
    size_t B = sp_opt_u64("B", argv[4], 1, 1 << 20), K = sp_opt_u64("K", argv[5], 1, 1 << 16);
    size_t steps = sp_opt_u64("STEPS", argv[6], 1, 1 << 20);
    double density = argc > 7 ? atof(argv[7]) : 0.5, relu_sparse = argc > 8 ? atof(argv[8]) : 0;
    if (!(density > 0 && density < 1)) sp_usage_die("DENSITY must be in (0,1), got '%s'", argv[7]);
    SAETrainConfig c = {.arch = arch, .D = D, .F = F, .K = arch == SAE_RELU ? 0 : K, .B = B,
                        .aux_k = arch == SAE_RELU ? 0 : 512, .aux_coef = 1.0 / 32, .beta1 = 0.9, .beta2 = 0.999,
                        .eps = 1e-8, .dead_rows = 1000000, .threshold_ema = 0.99, .relu_sparse = relu_sparse};
    SAETrainer t;
    char err[256];
    float *x = xmalloc_aligned(B * D * sizeof *x);
    SpRng r;
    sp_rng_seed(&r, 1);
    for (size_t i = 0; i < B * D; i++) x[i] = (float)sp_rng_normal(&r);
    double i0 = sp_now(), ic0 = cpu_now();
    if (sae_trainer_init(&t, &c, err, sizeof err) < 0) sp_die("%s", err);
    double alloc = sp_now() - i0, alloc_cpu = cpu_now() - ic0;
    sae_trainer_init_params(&t, &r, x, 0, SAE_BDEC_ZERO);
    double init = sp_now() - i0 - alloc, init_cpu = cpu_now() - ic0 - alloc_cpu;
    if (arch == SAE_RELU)
        for (size_t j = 0; j < F; j++) t.b_enc[j] = (float)-upper_quantile(density);
    const char *uf = getenv("SAE_BENCH_UNFUSED");
    int fused = !(uf && *uf && strcmp(uf, "0"));
    SAEStats st;
    double t0 = 0, c0 = 0, l0 = 0, fwd = 0;
    int sparse = 0;
    for (size_t s = 0; s <= steps; s++) { /* step 0: the warm-up */
        if (s == 1) t0 = sp_now(), c0 = cpu_now();
        double f0 = cpu_now();
        sae_trainer_forward(&t, x, B, 5.0, &st);
        if (s > 0) fwd += cpu_now() - f0;
        if (fused) {
            sae_trainer_step(&t, 1e-4);
        } else {
            sae_trainer_backward(&t);
            sae_trainer_update(&t, 1e-4);
        }
        if (s > 0) l0 += st.l0 / steps, sparse += st.sparse;
    }
    double dt = (sp_now() - t0) / steps, cpu = (cpu_now() - c0) / steps;
    fwd /= steps;
    double flops = 2.0 * B * D * F * (arch == SAE_RELU ? 5 : 1);
    printf("%s D=%zu F=%zu B=%zu K=%zu: %.0f tokens/s (%.3f s/step, %.1f GFLOP/s in the dense products) "
           "L0 %.0f, %s decoder and backward%s, %d threads; cpu %.3f s/step (forward %.3f s, backward and "
           "Adam %.3f s); alloc %.2f s (cpu %.2f s), init %.2f s (cpu %.2f s)\n",
           argv[1], D, F, B, arch == SAE_RELU ? 0 : K, B / dt, dt, flops / dt / 1e9, l0,
           sparse == (int)steps ? "sparse" : sparse ? "mixed" : "dense", fused ? "" : " (unfused)", sp_par_threads(),
           cpu, fwd, cpu - fwd, alloc,
           alloc_cpu, init, init_cpu);
    free(x);
    sae_trainer_free(&t);
    return 0;
}
