/* Unit tests for lib/sae.c: the forward maps of every arch against a naive
 * double-precision reference written here, topk selection and ties, and a
 * save/load round trip with metadata and refusals. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sae.h"
#include "stream.h"
#include "tap.h"

/* naive reference of the maps in sae.h, in double */
static void ref_reconstruct(const SAE *s, const float *x, size_t N, double *f, double *xh)
{
    size_t D = s->D, F = s->F, K = s->K;
    double sc = s->norm_scale;
    for (size_t i = 0; i < N; i++) {
        double *fr = f + i * F;
        for (size_t j = 0; j < F; j++) {
            double a = s->p.b_enc[j];
            for (size_t d = 0; d < D; d++) a += (sc * x[i * D + d] - s->p.b_dec[d]) * s->p.W_enc[d * F + j];
            fr[j] = a;
        }
        if (s->arch == SAE_TOPK) {
            /* rank by counting: entry j is kept when fewer than K entries beat it */
            double *keep = calloc(F, sizeof *keep);
            for (size_t j = 0; j < F; j++) {
                size_t beat = 0;
                for (size_t m = 0; m < F; m++)
                    if (fr[m] > fr[j] || (fr[m] == fr[j] && m < j)) beat++;
                keep[j] = beat < K && fr[j] > 0 ? fr[j] : 0;
            }
            memcpy(fr, keep, F * sizeof *fr);
            free(keep);
        } else {
            for (size_t j = 0; j < F; j++) {
                int on = fr[j] > 0 && (s->arch != SAE_BATCHTOPK || fr[j] > s->p.threshold[j]);
                fr[j] = on ? fr[j] : 0;
            }
        }
        for (size_t d = 0; d < D; d++) {
            double a = s->p.b_dec[d];
            for (size_t j = 0; j < F; j++) a += fr[j] * s->p.W_dec[j * D + d];
            xh[i * D + d] = a / sc;
        }
    }
}

static void fill(SpRng *r, float *p, size_t n, double sd)
{
    for (size_t i = 0; i < n; i++) p[i] = (float)(sd * sp_rng_normal(r));
}

static void check_arch(SAEArch arch)
{
    size_t D = 7, F = 19, N = 13;
    SAE s;
    char err[256];
    ok(sae_alloc(&s, arch, D, F, err, sizeof err) == 0, "%s: alloc", sae_arch_name(arch));
    s.K = arch == SAE_RELU ? 0 : 4;
    s.norm_scale = 1.7;
    SpRng r;
    sp_rng_seed(&r, 11 + arch);
    fill(&r, s.p.W_enc, D * F, 0.5);
    fill(&r, s.p.b_enc, F, 0.2);
    fill(&r, s.p.W_dec, F * D, 0.5);
    fill(&r, s.p.b_dec, D, 0.3);
    if (s.p.threshold)
        for (size_t j = 0; j < F; j++) s.p.threshold[j] = (float)(0.3 * sp_rng_uniform(&r));
    float *x = malloc(N * D * sizeof *x), *f = malloc(N * F * sizeof *f), *xh = malloc(N * D * sizeof *xh);
    double *rf = malloc(N * F * sizeof *rf), *rx = malloc(N * D * sizeof *rx);
    fill(&r, x, N * D, 1.0);
    ref_reconstruct(&s, x, N, rf, rx);
    float *rff = malloc(N * F * sizeof *rff), *rxf = malloc(N * D * sizeof *rxf);
    for (size_t i = 0; i < N * F; i++) rff[i] = (float)rf[i];
    for (size_t i = 0; i < N * D; i++) rxf[i] = (float)rx[i];
    sae_encode(&s, x, N, f);
    char name[64];
    snprintf(name, sizeof name, "%s: encode matches the reference", sae_arch_name(arch));
    close_enough(f, rff, N * F, 1e-5, name);
    size_t nz = 0, nzr = 0;
    for (size_t i = 0; i < N * F; i++) nz += f[i] != 0, nzr += rf[i] != 0;
    ok(nz == nzr && nz > 0, "%s: same active set size (%zu vs %zu)", sae_arch_name(arch), nz, nzr);
    sae_reconstruct(&s, x, N, f, xh);
    snprintf(name, sizeof name, "%s: reconstruct matches the reference", sae_arch_name(arch));
    close_enough(xh, rxf, N * D, 1e-5, name);

    /* save and load: every tensor and the metadata survive */
    char path[] = "/tmp/sae-unit-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    snprintf(s.hook, sizeof s.hook, "blocks.1.mlp.hook_post");
    snprintf(s.model, sizeof s.model, "tiny");
    s.l1 = 0.25;
    json_t *extra = json_pack("{s:i}", "best_step", 42);
    ok(sae_save(&s, path, extra, err, sizeof err) == 0, "%s: save (%s)", sae_arch_name(arch), err);
    json_decref(extra);
    SAE t;
    ok(sae_load(&t, path, err, sizeof err) == 0, "%s: load", sae_arch_name(arch));
    ok(t.arch == s.arch && t.D == D && t.F == F && t.K == s.K && t.l1 == 0.25 && fabs(t.norm_scale - 1.7) < 1e-12 &&
           !strcmp(t.hook, s.hook) && !strcmp(t.model, "tiny"),
       "%s: metadata survives", sae_arch_name(arch));
    size_t np = 2 * D * F + F + D + (arch == SAE_BATCHTOPK ? F : 0);
    ok(!memcmp(s.mem, t.mem, np * sizeof *s.mem), "%s: parameters survive bit for bit", sae_arch_name(arch));
    sae_free(&t);
    unlink(path);
    sae_free(&s);
    free(x), free(f), free(xh), free(rf), free(rx), free(rff), free(rxf);
}

static void check_topk_row(void)
{
    float v[] = {1, 5, 3, 5, -2, 3, 0};
    uint32_t idx[4];
    sae_topk_row(v, 7, 4, idx);
    ok(idx[0] == 1 && idx[1] == 3 && idx[2] == 2 && idx[3] == 5, "topk_row: largest first, ties to lower index");
    sae_topk_row(v, 7, 7, (uint32_t[7]){0});
    float w[] = {2, 2, 2, 2};
    sae_topk_row(w, 4, 2, idx);
    ok(idx[0] == 0 && idx[1] == 1, "topk_row: all equal keeps the first");
}

static void check_refusals(void)
{
    char path[] = "/tmp/sae-unit-XXXXXX", err[256];
    int fd = mkstemp(path);
    close(fd);
    SAE s;
    ok(sae_load(&s, "/nonexistent/sae.tsz", err, sizeof err) < 0 && strstr(err, "sae.tsz"), "missing file: %s", err);
    /* a stream whose W_enc has the wrong shape */
    TszWriter *w = tsz_writer_open(path, "test", 0, NULL, NULL);
    TszRecord rec;
    tsz_record_init(&rec);
    json_object_set_new(rec.meta, "kind", json_string("sae"));
    json_object_set_new(rec.meta, "arch", json_string("relu"));
    json_object_set_new(rec.meta, "d", json_integer(4));
    json_object_set_new(rec.meta, "f", json_integer(8));
    uint64_t sh[2] = {4, 6};
    memset(tsz_record_add(&rec, "W_enc", TSZ_F32, 2, sh)->data, 0, 4 * 6 * 4);
    ok(tsz_write(w, &rec) == 0 && tsz_writer_close(w, err, sizeof err) == 0, "wrote a bad SAE");
    ok(sae_load(&s, path, err, sizeof err) < 0 && strstr(err, "W_enc is (4,6) f32 but d=4 f=8 needs (4,8)"),
       "wrong shape refused: %s", err);
    json_object_set_new(rec.meta, "kind", json_string("acts"));
    w = tsz_writer_open(path, "test", 0, NULL, NULL);
    ok(tsz_write(w, &rec) == 0 && tsz_writer_close(w, err, sizeof err) == 0, "wrote an acts stream");
    ok(sae_load(&s, path, err, sizeof err) < 0 && strstr(err, "not an SAE file"), "wrong kind refused: %s", err);
    tsz_record_free(&rec);
    unlink(path);
}

int main(void)
{
    check_topk_row();
    check_arch(SAE_RELU);
    check_arch(SAE_TOPK);
    check_arch(SAE_BATCHTOPK);
    check_refusals();
    return done_testing();
}
