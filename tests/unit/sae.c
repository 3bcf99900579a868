/* Unit tests for lib/sae.c: the forward maps of every arch against a naive
 * double-precision reference written here, topk selection and ties, a
 * save/load round trip with metadata and refusals, and SAE files whose
 * matrices come in part records (lib/parts.c): round trip, and parts
 * missing, repeated, out of order, misshapen or foreign. */
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
    sae_encode(&s, x, N, SP_ROWS_RUN, f);
    char name[64];
    snprintf(name, sizeof name, "%s: encode matches the reference", sae_arch_name(arch));
    close_enough(f, rff, N * F, 1e-5, name);
    size_t nz = 0, nzr = 0;
    for (size_t i = 0; i < N * F; i++) nz += f[i] != 0, nzr += rf[i] != 0;
    ok(nz == nzr && nz > 0, "%s: same active set size (%zu vs %zu)", sae_arch_name(arch), nz, nzr);
    sae_reconstruct(&s, x, N, SP_ROWS_RUN, f, xh);
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
    TszReader *rd = tsz_reader_open(path);
    TszRecord rec;
    tsz_record_init(&rec);
    ok(tsz_read(rd, &rec) == 1 && tsz_record_get(&rec, "W_enc") && tsz_read(rd, &rec) == 0,
       "%s: a small SAE is one record, the layout before parts", sae_arch_name(arch));
    tsz_record_free(&rec);
    tsz_reader_close(rd);
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

/* The records of a small stream. */
static size_t read_all(const char *path, TszRecord *recs, size_t cap)
{
    TszReader *rd = tsz_reader_open(path);
    size_t n = 0;
    while (n < cap) {
        tsz_record_init(&recs[n]);
        if (tsz_read(rd, &recs[n]) != 1) break;
        n++;
    }
    tsz_record_free(&recs[n]);
    tsz_reader_close(rd);
    return n;
}

/* A stream of recs in the order given (-1 ends the list). */
static void write_order(const char *path, const TszRecord *recs, const int *order)
{
    TszWriter *w = tsz_writer_open(path, "test", 0, NULL, NULL);
    char err[256];
    int rc = 0;
    for (size_t i = 0; order[i] >= 0; i++) rc |= tsz_write(w, &recs[order[i]]);
    if (rc < 0 || tsz_writer_close(w, err, sizeof err) < 0) fprintf(stderr, "write_order: failed\n");
}

static void check_parts(void)
{
    size_t D = 4, F = 8;
    char path[] = "/tmp/sae-unit-XXXXXX", bad[] = "/tmp/sae-unit-XXXXXX", err[256] = "";
    close(mkstemp(path));
    close(mkstemp(bad));
    SAE s, t;
    sae_alloc(&s, SAE_TOPK, D, F, err, sizeof err);
    s.K = 2;
    SpRng r;
    sp_rng_seed(&r, 5);
    fill(&r, s.mem, 2 * D * F + F + D, 0.5);
    /* the layout before parts, as sae_to_record wrote it: one record with
     * every tensor, no SAE metadata in the header */
    TszWriter *w = tsz_writer_open(path, "sae", 0, NULL, NULL);
    TszRecord one;
    tsz_record_init(&one);
    json_t *m = sae_meta(&s, NULL);
    json_object_update(one.meta, m);
    json_decref(m);
    tsz_record_add_copy(&one, "W_enc", TSZ_F32, 2, (uint64_t[]){D, F}, s.p.W_enc);
    tsz_record_add_copy(&one, "b_enc", TSZ_F32, 1, (uint64_t[]){F}, s.p.b_enc);
    tsz_record_add_copy(&one, "W_dec", TSZ_F32, 2, (uint64_t[]){F, D}, s.p.W_dec);
    tsz_record_add_copy(&one, "b_dec", TSZ_F32, 1, (uint64_t[]){D}, s.p.b_dec);
    ok(tsz_write(w, &one) == 0 && tsz_writer_close(w, err, sizeof err) == 0, "old layout: written");
    tsz_record_free(&one);
    ok(sae_load(&t, path, err, sizeof err) == 0 && !memcmp(s.mem, t.mem, (2 * D * F + F + D) * sizeof *s.mem),
       "old layout: loads bit for bit (%s)", err);
    sae_free(&t);
    /* 40 bytes a part: W_enc (4,8) one row each, W_dec (8,4) two rows each */
    setenv("SAEPIPE_PART_BYTES", "40", 1);
    ok(sae_save(&s, path, NULL, err, sizeof err) == 0, "parts: save (%s)", err);
    TszRecord recs[12];
    size_t n = read_all(path, recs, 11);
    ok(n == 9 && !tsz_record_get(&recs[0], "W_enc") && tsz_record_get(&recs[0], "b_enc"),
       "parts: the first record and 4 + 4 parts (%zu records)", n);
    ok(sae_load(&t, path, err, sizeof err) == 0 && !memcmp(s.mem, t.mem, (2 * D * F + F + D) * sizeof *s.mem),
       "parts: parameters survive bit for bit (%s)", err);
    sae_free(&t);
    ok(sae_load_decoder(&t, path, err, sizeof err) == 0 && !t.p.W_enc && t.no_encoder &&
           !memcmp(s.p.b_enc, t.p.b_enc, F * sizeof *s.mem) && !memcmp(s.p.W_dec, t.p.W_dec, F * D * sizeof *s.mem) &&
           !memcmp(s.p.b_dec, t.p.b_dec, D * sizeof *s.mem),
       "parts: the decoder alone loads bit for bit, W_enc left out (%s)", err);
    sae_free(&t);
    setenv("SAEPIPE_PART_BYTES", "0", 1);
    ok(sae_save(&s, bad, NULL, err, sizeof err) < 0 && strstr(err, "SAEPIPE_PART_BYTES=0: want a positive"),
       "parts: a bad SAEPIPE_PART_BYTES is refused: %s", err);
    unsetenv("SAEPIPE_PART_BYTES");
    /* a foreign record, and a part of the wrong width */
    tsz_record_init(&recs[9]);
    json_object_set_new(recs[9].meta, "kind", json_string("acts"));
    tsz_record_add(&recs[9], "acts", TSZ_F32, 1, (uint64_t[]){1});
    tsz_record_init(&recs[10]);
    json_object_set_new(recs[10].meta, "kind", json_string("sae_part"));
    json_object_set_new(recs[10].meta, "tensor", json_string("W_enc"));
    json_object_set_new(recs[10].meta, "row", json_integer(1));
    memset(tsz_record_add(&recs[10], "W_enc", TSZ_F32, 2, (uint64_t[]){1, 6})->data, 0, 24);
    static const struct { int order[12]; const char *want, *what; } bads[] = {
        {{0, 1, 2, 4, 5, 6, 7, 8, -1}, "record 4 holds W_enc from row 3, want row 2 (a part is missing", "missing"},
        {{0, 1, 2, 2, 3, 4, 5, 6, 7, 8, -1}, "record 4 holds W_enc from row 1, want row 2", "repeated"},
        {{0, 5, 6, 7, 8, 1, 2, 3, 4, -1}, "record 2 is a part of W_dec, but W_enc stops at row 0 of 4", "out of order"},
        {{0, 1, 9, 2, 3, 4, 5, 6, 7, 8, -1}, "record 3 is not a part (kind 'acts', want 'sae_part'); W_enc stops at row 1",
         "foreign"},
        {{0, 1, 10, 3, 4, 5, 6, 7, 8, -1}, "record 3: the part of W_enc is (1,6) f32, want 1 to 3 rows of 8 f32",
         "misshapen"},
        {{0, 1, 2, 3, 4, 5, 6, 7, -1}, "ends at row 6 of 8 of W_dec (a part is missing)", "last one missing"},
        {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1}, "record 10 (kind 'acts') follows the sae record and its parts", "trailing"},
    };
    for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
        write_order(bad, recs, bads[i].order);
        ok(sae_load(&t, bad, err, sizeof err) < 0 && strstr(err, bads[i].want) && !strncmp(err, bad, strlen(bad)),
           "parts: %s refused, naming the file: %s", bads[i].what, err);
        ok(sae_load_decoder(&t, bad, err, sizeof err) < 0 && strstr(err, bads[i].want),
           "parts: %s refused by the decoder's load too", bads[i].what);
    }
    for (size_t i = 0; i < 11; i++) tsz_record_free(&recs[i]);
    sae_free(&s);
    unlink(path), unlink(bad);
}

int main(void)
{
    check_topk_row();
    check_arch(SAE_RELU);
    check_arch(SAE_TOPK);
    check_arch(SAE_BATCHTOPK);
    check_refusals();
    check_parts();
    return done_testing();
}
