/* mk-topk: write a planted topk-ctx stream for the explain-gpt4 tests.
 *   mk-topk [--features N] [--first F] [-K K] [-R R] [-W W] [--vocab V]
 *           [--seed S] [--pad] [--dead I] [--break WHAT] > topk.tsz
 * Feature f (ids first..first+N-1) is driven by one planted token, id
 * 10 + (f % (V - 10)), shown as " w<id>": every top example holds it at one
 * to three positions with activation 1..5, and other tokens are 0; random
 * examples hold it with probability 1/2 at one position, activating the
 * same way. Ids 0, 1 and 2 are a newline, a tab and a double quote, so
 * prompts must escape them. --pad ends each random row with two -1 ids
 * (padding). A final dict_stats record follows, as topk-ctx writes.
 * --dead I gives feature record I (from 1) no top examples, as a feature
 * that never fired. --break WHAT spoils the second feature record for the bad-input tests:
 * strs (no token_strs), dtype (top_acts as i32), shape (rand_acts one row
 * narrower), nan (a NaN activation), nofeature (no "feature" in meta). */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

typedef struct { size_t N, K, R, W, V, first, dead; uint64_t seed; int pad; const char *brk; } Spec;

static void fill(SpRng *rng, const Spec *s, int32_t planted, int32_t *tok, float *act, size_t rows, int always,
                 int pad)
{
    for (size_t r = 0; r < rows; r++) {
        int32_t *t = tok + r * s->W;
        float *a = act + r * s->W;
        for (size_t w = 0; w < s->W; w++) {
            do t[w] = (int32_t)sp_rng_below(rng, s->V);
            while (t[w] == planted);
            a[w] = 0;
        }
        size_t n = always ? 1 + sp_rng_below(rng, 3) : sp_rng_below(rng, 2);
        for (size_t i = 0; i < n; i++) {
            size_t w = sp_rng_below(rng, s->W - (pad ? 2 : 0));
            t[w] = planted;
            a[w] = (float)(1 + 4 * sp_rng_uniform(rng));
        }
        if (pad) {
            t[s->W - 1] = t[s->W - 2] = -1;
            a[s->W - 1] = a[s->W - 2] = 0;
        }
    }
}

/* Sort top rows by their maximum, strongest first, as topk-ctx does. */
static void sort_rows(int32_t *tok, float *act, size_t K, size_t W)
{
    for (size_t i = 1; i < K; i++)
        for (size_t j = i; j > 0; j--) {
            float m0 = 0, m1 = 0;
            for (size_t w = 0; w < W; w++) {
                if (act[(j - 1) * W + w] > m0) m0 = act[(j - 1) * W + w];
                if (act[j * W + w] > m1) m1 = act[j * W + w];
            }
            if (m1 <= m0) break;
            for (size_t w = 0; w < W; w++) {
                int32_t t = tok[j * W + w];
                float a = act[j * W + w];
                tok[j * W + w] = tok[(j - 1) * W + w];
                act[j * W + w] = act[(j - 1) * W + w];
                tok[(j - 1) * W + w] = t;
                act[(j - 1) * W + w] = a;
            }
        }
}

static json_t *token_strs(const int32_t *tok, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++) {
        char key[16], val[32];
        if (tok[i] < 0) continue;
        snprintf(key, sizeof key, "%d", tok[i]);
        if (tok[i] < 3) snprintf(val, sizeof val, "%s", (const char *[]){"\n", "\t", "\""}[tok[i]]);
        else snprintf(val, sizeof val, " w%d", tok[i]);
        json_object_set_new(o, key, json_string(val));
    }
    return o;
}

static void spoil(TszRecord *rec, const char *what)
{
    TszTensor *t = tsz_record_get(rec, "top_acts");
    if (!strcmp(what, "strs")) {
        json_object_del(rec->meta, "token_strs");
    } else if (!strcmp(what, "dtype")) {
        t->dtype = TSZ_I32;
    } else if (!strcmp(what, "shape")) {
        TszTensor *ra = tsz_record_get(rec, "rand_acts");
        uint64_t sh[2] = {ra->shape[0], ra->shape[1] - 1};
        ra = tsz_record_add(rec, "rand_acts", TSZ_F32, 2, sh);
        memset(ra->data, 0, ra->nbytes);
    } else if (!strcmp(what, "nan")) {
        ((float *)t->data)[3] = NAN;
    } else if (!strcmp(what, "nofeature")) {
        json_object_del(rec->meta, "feature");
    } else {
        sp_usage_die("--break: unknown '%s'", what);
    }
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Spec s = {.N = 4, .K = 20, .R = 20, .W = 16, .V = 60, .seed = 1};
    static const struct option lo[] = {{"features", 1, 0, 'n'}, {"first", 1, 0, 'F'}, {"vocab", 1, 0, 'v'},
                                       {"seed", 1, 0, 's'}, {"pad", 0, 0, 'p'}, {"break", 1, 0, 'b'}, {"dead", 1, 0, 'd'}, {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "K:R:W:", lo, NULL)) != -1) {
        switch (ch) {
        case 'n': s.N = sp_opt_u64("--features", optarg, 1, 100000); break;
        case 'F': s.first = sp_opt_u64("--first", optarg, 0, 1000000); break;
        case 'v': s.V = sp_opt_u64("--vocab", optarg, 12, 50000); break;
        case 's': s.seed = sp_opt_u64("--seed", optarg, 0, UINT64_MAX); break;
        case 'p': s.pad = 1; break;
        case 'b': s.brk = optarg; break;
        case 'd': s.dead = sp_opt_u64("--dead", optarg, 1, 100000); break;
        case 'K': s.K = sp_opt_u64("-K", optarg, 0, 10000); break;
        case 'R': s.R = sp_opt_u64("-R", optarg, 0, 10000); break;
        case 'W': s.W = sp_opt_u64("-W", optarg, 4, 10000); break;
        default: sp_usage_die("usage: mk-topk [--features N] [--first F] [-K K] [-R R] [-W W] [--vocab V] [--seed S] [--pad] [--dead I] [--break WHAT]");
        }
    }
    sp_check_binary_stdout(0);
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    TszWriter *w = tsz_writer_open("-", "topk-ctx", argc, argv, &wo);
    tsz_writer_check(w);
    SpRng rng;
    sp_rng_seed(&rng, s.seed);
    TszRecord rec;
    tsz_record_init(&rec);
    for (size_t i = 0; i < s.N; i++) {
        size_t f = s.first + i;
        int32_t planted = (int32_t)(10 + f % (s.V - 10));
        tsz_record_clear(&rec);
        size_t K = i + 1 == s.dead ? 0 : s.K;
        uint64_t ts[2] = {K, s.W}, rs[2] = {s.R, s.W}, ss[2] = {K, 3};
        int32_t *tt = tsz_record_add(&rec, "top_tokens", TSZ_I32, 2, ts)->data;
        float *ta = tsz_record_add(&rec, "top_acts", TSZ_F32, 2, ts)->data;
        int64_t *src = tsz_record_add(&rec, "top_src", TSZ_I64, 2, ss)->data;
        int32_t *rt = tsz_record_add(&rec, "rand_tokens", TSZ_I32, 2, rs)->data;
        float *ra = tsz_record_add(&rec, "rand_acts", TSZ_F32, 2, rs)->data;
        fill(&rng, &s, planted, tt, ta, K, 1, 0);
        sort_rows(tt, ta, K, s.W);
        fill(&rng, &s, planted, rt, ra, s.R, 0, s.pad);
        for (size_t k = 0; k < K; k++) src[3 * k] = (int64_t)k, src[3 * k + 1] = 0, src[3 * k + 2] = 0;
        json_t *strs = token_strs(tt, K * s.W), *rstrs = token_strs(rt, s.R * s.W);
        json_object_update(strs, rstrs);
        json_decref(rstrs);
        float mx = 0;
        for (size_t j = 0; j < K * s.W; j++) mx = ta[j] > mx ? ta[j] : mx;
        json_object_set_new(rec.meta, "kind", json_string("feature"));
        json_object_set_new(rec.meta, "feature", json_integer((json_int_t)f));
        json_object_set_new(rec.meta, "n_tokens", json_integer(100000));
        json_object_set_new(rec.meta, "n_fired", json_integer(1000));
        json_object_set_new(rec.meta, "density", json_real(0.01));
        json_object_set_new(rec.meta, "max_act", json_real(mx));
        json_object_set_new(rec.meta, "mean_act", json_real(2.5));
        json_object_set_new(rec.meta, "token_strs", strs);
        if (i == 1 && s.brk) spoil(&rec, s.brk);
        tsz_write_or_die(w, &rec);
    }
    tsz_record_clear(&rec);
    json_object_set_new(rec.meta, "kind", json_string("dict_stats"));
    json_object_set_new(rec.meta, "f", json_integer((json_int_t)s.N));
    uint64_t fs[1] = {s.N};
    float *d = tsz_record_add(&rec, "density", TSZ_F32, 1, fs)->data;
    for (size_t i = 0; i < s.N; i++) d[i] = 0.01f;
    tsz_write_or_die(w, &rec);
    tsz_record_free(&rec);
    tsz_writer_close_or_die(w);
    return 0;
}
