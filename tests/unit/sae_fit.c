/* The training run of lib/sae_fit.c without the executable: the row reader's
 * checks, the schedule's ends, and resume and keep-best: a run stopped after
 * a checkpoint and resumed ends bit-identical to one never stopped, and the
 * kept weights are those of the evaluation with the lowest fvu. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sae_fit.h"
#include "tap.h"

enum { D = 8, NROWS = 1200, NVAL = 200 };

/* rows of a few sparse non-negative directions, in records of 100 rows */
static void write_rows(const char *path, size_t n, size_t d, int ndim, const char *kind, uint64_t seed)
{
    SpRng rng;
    sp_rng_seed(&rng, seed);
    char *argv[] = {"sae_fit.t"};
    TszWriter *w = tsz_writer_open(path, "test", 1, argv, NULL);
    TszRecord rec;
    tsz_record_init(&rec);
    for (size_t r0 = 0; r0 < n; r0 += 100) {
        tsz_record_clear(&rec);
        if (kind) json_object_set_new(rec.meta, "kind", json_string(kind));
        uint64_t shape2[] = {100, d}, shape3[] = {10, 10, d};
        TszTensor *t = tsz_record_add(&rec, "acts", TSZ_F32, ndim, ndim == 2 ? shape2 : shape3);
        float *x = t->data;
        for (size_t i = 0; i < 100 * d; i++) x[i] = sp_rng_uniform(&rng) < 0.3 ? (float)sp_rng_uniform(&rng) : 0;
        if (tsz_write(w, &rec) < 0) abort();
    }
    char err[256];
    if (tsz_writer_close(w, err, sizeof err) < 0) abort();
    tsz_record_free(&rec);
}

static void test_rows(void)
{
    RowReader r;
    write_rows("fit-nokind.tsz", 200, D, 2, NULL, 1);
    int got = rows_open(&r, "fit-nokind.tsz");
    got = got ? got : rows_next(&r);
    ok(got == 1 && r.D == D && r.nrows == 100, "rows without a kind but with acts (N,D) are rows");
    rows_close(&r);
    uint64_t n = 0;
    char err[512];
    static const char *const two[] = {"fit-nokind.tsz", "fit-nokind.tsz"};
    got = rows_count(two, 2, &n, err, sizeof err);
    ok(got == 0 && n == 400, "rows_count of two files: %llu", (unsigned long long)n);
    size_t rows = 0, recs = 0;
    got = rows_open_list(&r, two, 2);
    while (!got && (got = rows_next(&r)) > 0) rows += r.nrows, recs++, got = 0;
    ok(got == 0 && rows == 400 && recs == 4 && r.cur == 1 && r.rec_no == 2, "two files read as one input");
    rows_close(&r);
    write_rows("fit-tokens.tsz", 100, D, 2, "tokens", 1);
    got = rows_open(&r, "fit-tokens.tsz");
    got = got ? got : rows_next(&r);
    ok(got < 0 && !strcmp(r.err, "fit-tokens.tsz: record 1: kind 'tokens' is not 'acts' (mlp-tap output)"),
       "another kind is refused: %s", r.err);
    rows_close(&r);
    write_rows("fit-ctx.tsz", 100, D, 3, "acts", 1);
    got = rows_open(&r, "fit-ctx.tsz");
    got = got ? got : rows_next(&r);
    ok(got < 0 &&
           !strcmp(r.err, "fit-ctx.tsz: record 1: kind 'acts' (read as 'ctx_acts': its 'acts' is 3-D) is not 'acts' (mlp-tap output)"),
       "contexts are refused: %s", r.err);
    rows_close(&r);
}

static void test_schedule(void)
{
    SAEFit f = {0};
    sae_fit_opts_default(&f.o);
    f.o.tokens = 4096 * 400, f.o.sched = SAE_LR_LINEAR;
    if (sae_fit_length(&f) < 0) abort();
    ok(f.total_steps == 400, "length from --tokens on stdin: %llu steps", (unsigned long long)f.total_steps);
    ok(sae_fit_lr(&f, 0) == f.o.lr / 20, "warmup over 5%% of a short run: %g", sae_fit_lr(&f, 0));
    ok(sae_fit_lr(&f, 200) == f.o.lr, "full rate in the middle");
    ok(sae_fit_lr(&f, 399) < 0.05 * f.o.lr && sae_fit_lr(&f, 399) > 0, "decayed at the last step: %g",
       sae_fit_lr(&f, 399));
}

static void opts(SAEFitOpts *o)
{
    sae_fit_opts_default(o);
    static const char *const train[] = {"fit-train1.tsz", "fit-train2.tsz"};
    o->inputs = train, o->ninputs = 2, o->val = "fit-val.tsz", o->ckdir = "fit-ck";
    o->dict_n = 24, o->K = 2, o->aux_k = 4, o->batch = 32, o->lr = 3e-3, o->warmup = 5, o->warmup_set = 1;
    o->dead_rows = 300, o->eval_every = 4, o->ck_every = 10, o->epochs = 2, o->keep = SAE_KEEP_FVU;
}

/* Train until stop_step (0: the end); with every evaluation's fvu in fvus. */
static int run(SAEFit *f, int resume, uint64_t stop_step, double *fvus)
{
    static char *argv[] = {"sae_fit.t"};
    opts(&f->o);
    f->o.resume = resume, f->argc = 1, f->argv = argv;
    if (sae_fit_length(f) < 0 || sae_fit_open(f) < 0 || sae_fit_init(f) < 0) return -1;
    int resumed = resume ? sae_fit_resume(f) : 0;
    if (resumed < 0 || sae_fit_load_val(f) < 0) return -1;
    SAEStats st;
    size_t n;
    while (sae_fit_batch(f, &n) == 0 && n) {
        if (!resumed && f->t.step == 0) sae_trainer_init_params(&f->t, &f->rng, f->x, n, f->o.bdec);
        uint64_t step = f->t.step;
        double lr = sae_fit_lr(f, step), l1 = sae_fit_l1(f, step);
        sae_trainer_forward(&f->t, f->x, n, l1, &st);
        sae_trainer_step(&f->t, lr);
        f->rows_trained += n;
        if (f->t.step % f->o.eval_every == 0) {
            if (sae_fit_eval(f, l1, lr) < 0) return -1;
            fvus[f->t.step] = sae_fit_metric(f->last_val, "fvu");
        }
        if (f->t.step % f->o.ck_every == 0 && sae_fit_save_checkpoint(f) < 0) return -1;
        if (f->t.step == stop_step) break;
    }
    return f->err[0] ? -1 : 0;
}

static void test_resume_keep_best(void)
{
    write_rows("fit-train1.tsz", NROWS / 2, D, 2, "acts", 2);
    write_rows("fit-train2.tsz", NROWS / 2, D, 2, "acts", 4);
    write_rows("fit-val.tsz", NVAL, D, 2, "acts", 3);
    double fvu_a[128] = {0}, fvu_c[128] = {0};
    SAEFit a = {0}, b = {0}, c = {0}, b2 = {0}, c2 = {0};
    int rc = run(&a, 0, 0, fvu_a);
    ok(rc == 0 && a.t.step == 2 * NROWS / 32, "a whole run: %llu steps %s", (unsigned long long)a.t.step, a.err);
    rc = run(&b, 0, 23, fvu_c);
    ok(rc == 0 && b.t.step == 23 && b.src.cur == 1,
       "a run stopped at step 23 in the second file, its checkpoint at 20");
    sae_fit_free(&b);
    rc = run(&c, 1, 0, fvu_c);
    ok(rc == 0 && c.t.step == a.t.step && c.rows_trained == a.rows_trained, "resumed from step 20 to the end %s",
       c.err);
    ok(!memcmp(a.t.param, c.t.param, a.t.P * sizeof *a.t.param), "resumed weights bit-identical");
    rc = run(&b2, 0, 53, fvu_c);
    ok(rc == 0 && b2.epoch == 1, "a run stopped at step 53 in the second epoch, its checkpoint at 50");
    sae_fit_free(&b2);
    rc = run(&c2, 1, 0, fvu_c);
    ok(rc == 0 && !memcmp(a.t.param, c2.t.param, a.t.P * sizeof *a.t.param) && c2.rows_trained == a.rows_trained,
       "resumed in the second epoch: weights bit-identical %s", c2.err);
    sae_fit_free(&c2);
    ok(!memcmp(a.best, c.best, a.t.P * sizeof *a.best) && a.best_step == c.best_step,
       "resumed best weights bit-identical (step %llu)", (unsigned long long)a.best_step);
    uint64_t best = 0;
    for (uint64_t s = 1; s < 128; s++)
        if (fvu_a[s] > 0 && (!best || fvu_a[s] < fvu_a[best])) best = s;
    ok(best == a.best_step && sae_fit_metric(a.best_val, "fvu") == fvu_a[best],
       "keep-best: step %llu has the lowest val fvu %g", (unsigned long long)best, fvu_a[best]);
    sae_fit_free(&a);
    sae_fit_free(&c);
    SAEFit d = {0};
    opts(&d.o);
    d.o.max_memory = 1000;
    rc = sae_fit_length(&d) < 0 || sae_fit_open(&d) < 0 ? -2 : sae_fit_init(&d);
    ok(rc == -1 && strstr(d.err, "d=8 f=24 batch=32 needs ") == d.err, "memory check returns: %s", d.err);
    sae_fit_free(&d);
}

int main(void)
{
    char dir[] = "/tmp/sae_fit_t.XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) < 0) return 1;
    test_rows();
    test_schedule();
    test_resume_keep_best();
    if (system("rm -rf fit-*.tsz fit-ck") != 0) diag("cleanup failed");
    if (chdir("/") == 0) rmdir(dir);
    return done_testing();
}
