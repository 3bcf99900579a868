/* mk-report-input DIR: small synthetic streams for sae-report's tests,
 * in the record layouts of topk-ctx, explain-gpt4, recon-score and sae-fit
 * (common conventions), with hostile strings (</script>, tags, &, U+2028)
 * in token strings and explanations. Writes into DIR:
 *   feat.tsz     4 "feature" records (ids 3, 7, 12, 14) + "dict_stats" (F=16)
 *   expl.tsz     explanations for 3 (ok), 7 (failed), 15 (no topk record)
 *   recon32.tsz  a "recon" record, header argv naming --sae sae32.tsz
 *   recon128.tsz the same for sae128.tsz
 *   sae32.tsz, sae128.tsz  "sae" records: distilgpt2, blocks.5.mlp.hook_post,
 *                d=3072, f=32x and 128x (tiny placeholder tensors); sae128's
 *                header carries its metadata as well (with "note")
 *   bad-shape.tsz a feature whose top_acts does not match top_tokens
 *   no-id.tsz     a feature record without "feature"
 *   bad-band.tsz  band_tokens/band_acts without band_id
 *   bad-hist.tsz  act_hist without act_hist_edges
 * Feature 3 also has quantile-band examples (band ids 0 0 0 1) and logit
 * effects (spoil-logits spoils them for the bad-input tests); every
 * feature an activation histogram (topk-ctx's 48 bins).
 * mk-report-input --many N W FILE [EXPL]: N feature records with 10 top, 5
 * random and 4x2 quantile-band windows of W tokens each (50257-token
 * vocabulary ids, every token string given) and an activation histogram,
 * for size and load-time checks; EXPL: an explanation of every feature,
 * "... (marker ID)", scored by simulation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"
#include "topk.h"

enum { K = 3, W = 12, R = 2, F = 16 };

static const char *TOK[] = {" the", " cat", "</script>", "<img src=x onerror=alert(1)>", "&amp;",
                            "\n", " \"quoted\"", "\xc3\xa9", "\xe2\x80\xa8", " dog"};
#define NTOK (sizeof TOK / sizeof *TOK)

static TszWriter *open_w(const char *dir, const char *name, const char *stage, int argc, char **argv)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    TszWriter *w = tsz_writer_open(path, stage, argc, argv, NULL);
    tsz_writer_check(w);
    return w;
}

/* Feature f: example k peaks on token id (f+k) % NTOK at position 8. */
/* Quantile-band examples: 4 windows, band ids 0 0 0 1 (band_id dropped when bad). */
static void add_bands(TszRecord *rec, int bad)
{
    uint64_t sb[2] = {4, W}, si[1] = {4};
    int32_t *bt = tsz_record_add(rec, "band_tokens", TSZ_I32, 2, sb)->data;
    float *ba = tsz_record_add(rec, "band_acts", TSZ_F32, 2, sb)->data;
    for (int k = 0; k < 4; k++)
        for (int t = 0; t < W; t++) {
            bt[k * W + t] = (k + t) % (int)NTOK;
            ba[k * W + t] = t == 5 ? 1.0f + (float)k : 0;
        }
    if (bad) return;
    int64_t *bi = tsz_record_add(rec, "band_id", TSZ_I64, 1, si)->data;
    bi[0] = bi[1] = bi[2] = 0, bi[3] = 1;
}

/* topk-ctx's act_hist and edges: counts n, n/2, n/4, ... from bin 24 up. */
static void add_hist(TszRecord *rec, int64_t n, int no_edges)
{
    uint64_t hn[1] = {TOPK_HIST_BINS}, he[1] = {TOPK_HIST_BINS + 1};
    int64_t *h = tsz_record_add(rec, "act_hist", TSZ_I64, 1, hn)->data;
    for (int b = 0; b < TOPK_HIST_BINS; b++) h[b] = b >= 24 ? n >> (b - 24) : 0;
    if (!no_edges) topk_hist_edges(tsz_record_add(rec, "act_hist_edges", TSZ_F32, 1, he)->data);
}

static void feature_record(TszRecord *rec, int id, int bad_shape, int no_id)
{
    tsz_record_clear(rec);
    json_object_set_new(rec->meta, "kind", json_string("feature"));
    if (!no_id) json_object_set_new(rec->meta, "feature", json_integer(id));
    json_object_set_new(rec->meta, "n_tokens", json_integer(10000));
    json_object_set_new(rec->meta, "n_fired", json_integer(10 * (id + 1)));
    json_object_set_new(rec->meta, "density", json_real(10.0 * (id + 1) / 10000));
    json_object_set_new(rec->meta, "max_act", json_real(2.0 + id));
    json_object_set_new(rec->meta, "mean_act", json_real(0.5 + id / 10.0));
    json_t *ts = json_object();
    for (size_t i = 0; i < NTOK; i++) {
        char key[16];
        snprintf(key, sizeof key, "%zu", i);
        json_object_set_new(ts, key, json_string(TOK[i]));
    }
    json_object_set_new(rec->meta, "token_strs", ts);
    add_hist(rec, 10 * (id + 1), 0);
    uint64_t sk[2] = {K, W}, sr[2] = {R, W}, ss[2] = {K, 3}, sbad[2] = {K, W - 1};
    int32_t *tt = tsz_record_add(rec, "top_tokens", TSZ_I32, 2, sk)->data;
    float *ta = tsz_record_add(rec, "top_acts", TSZ_F32, 2, bad_shape ? sbad : sk)->data;
    int64_t *src = tsz_record_add(rec, "top_src", TSZ_I64, 2, ss)->data;
    int32_t *rt = tsz_record_add(rec, "rand_tokens", TSZ_I32, 2, sr)->data;
    float *ra = tsz_record_add(rec, "rand_acts", TSZ_F32, 2, sr)->data;
    for (int k = 0; k < K; k++) {
        for (int t = 0; t < W; t++) {
            tt[k * W + t] = (id + k + t) % (int)NTOK;
            if (!bad_shape) ta[k * W + t] = 0;
        }
        tt[k * W + 8] = (id + k) % (int)NTOK;
        if (!bad_shape) {
            ta[k * W + 8] = (float)(2.0 + id) * (1.0f - 0.2f * (float)k);
            ta[k * W + 7] = 0.5f;
        }
        src[3 * k] = 100 + k, src[3 * k + 1] = 17 * k, src[3 * k + 2] = 8;
    }
    for (int k = 0; k < R; k++)
        for (int t = 0; t < W; t++) {
            rt[k * W + t] = (id + 2 * k + t) % (int)NTOK;
            ra[k * W + t] = t == 3 ? 0.25f * (float)(k + 1) : 0;
        }
}

/* topk-ctx --sae's logit effects, K = 2: promoted ids 3 (a hostile string)
 * and 1, suppressed 4 and 0. */
static void add_logits(TszRecord *rec)
{
    static const int32_t ids[2][2] = {{3, 1}, {4, 0}};
    static const float vals[2][2] = {{1.5f, 0.75f}, {-0.5f, 0}};
    static const char *const names[2][2] = {{"logit_top_ids", "logit_top_vals"}, {"logit_bot_ids", "logit_bot_vals"}};
    for (int s = 0; s < 2; s++) {
        uint64_t k[1] = {2};
        memcpy(tsz_record_add(rec, names[s][0], TSZ_I32, 1, k)->data, ids[s], k[0] * sizeof(int32_t));
        memcpy(tsz_record_add(rec, names[s][1], TSZ_F32, 1, k)->data, vals[s], k[0] * sizeof(float));
    }
}

static void write_features(const char *dir, int argc, char **argv)
{
    TszWriter *w = open_w(dir, "feat.tsz", "topk-ctx", argc, argv);
    TszRecord rec;
    tsz_record_init(&rec);
    static const int ids[] = {3, 7, 12, 14};
    for (size_t i = 0; i < 4; i++) {
        feature_record(&rec, ids[i], 0, 0);
        if (ids[i] == 3) {
            add_bands(&rec, 0);
            add_logits(&rec);
        }
        tsz_write_or_die(w, &rec);
    }
    tsz_record_clear(&rec);
    json_object_set_new(rec.meta, "kind", json_string("dict_stats"));
    json_object_set_new(rec.meta, "f", json_integer(F));
    json_object_set_new(rec.meta, "n_tokens", json_integer(10000));
    uint64_t sf[1] = {F};
    float *d = tsz_record_add(&rec, "density", TSZ_F32, 1, sf)->data;
    int dead = 0, dense = 0;
    for (int i = 0; i < F; i++) {
        d[i] = i % 5 == 0 ? 0 : (float)(10.0 * (i + 1) / 10000);
        if (i == 1) d[i] = 0.5f;
        dead += d[i] == 0, dense += d[i] > 0.1f;
    }
    json_object_set_new(rec.meta, "dead", json_integer(dead));
    json_object_set_new(rec.meta, "dense", json_integer(dense));
    tsz_write_or_die(w, &rec);
    tsz_writer_close_or_die(w);

    static const char *bad[] = {"bad-shape.tsz", "no-id.tsz", "bad-band.tsz", "bad-hist.tsz"};
    for (int b = 0; b < 4; b++) {
        w = open_w(dir, bad[b], "topk-ctx", argc, argv);
        feature_record(&rec, 5, b == 0, b == 1);
        if (b == 2) add_bands(&rec, 1);
        if (b == 3 && tsz_record_remove(&rec, "act_hist_edges") < 0) sp_die("no act_hist_edges");
        tsz_write_or_die(w, &rec);
        tsz_writer_close_or_die(w);
    }
    tsz_record_free(&rec);
}

static void write_explanations(const char *dir, int argc, char **argv)
{
    static const struct { int id; const char *expl, *status, *error; double score; } E[] = {
        {3, "the word </script><script>document.title='pwned'</script> & <b>cats</b>", "ok", "", 0.62},
        {7, "", "failed", "HTTP 429 after 5 attempts <retry>", 0},
        {15, "line\xe2\x80\xa8separator and \"quotes\"", "ok", "", 0.11},
    };
    TszWriter *w = open_w(dir, "expl.tsz", "explain-gpt4", argc, argv);
    TszRecord rec;
    tsz_record_init(&rec);
    for (size_t i = 0; i < sizeof E / sizeof *E; i++) {
        tsz_record_clear(&rec);
        json_t *m = rec.meta;
        json_object_set_new(m, "kind", json_string("explanation"));
        json_object_set_new(m, "feature", json_integer(E[i].id));
        json_object_set_new(m, "explanation", json_string(E[i].expl));
        json_object_set_new(m, "status", json_string(E[i].status));
        json_object_set_new(m, "error", json_string(E[i].error));
        json_object_set_new(m, "score", json_real(E[i].score));
        json_object_set_new(m, "score_top", json_real(E[i].score + 0.1));
        json_object_set_new(m, "score_random", json_real(E[i].score - 0.1));
        json_object_set_new(m, "attempts", json_integer(1));
        json_object_set_new(m, "scorer", json_string("simulation"));
        json_object_set_new(m, "backend", json_string("baseline"));
        tsz_write_or_die(w, &rec);
    }
    tsz_record_free(&rec);
    tsz_writer_close_or_die(w);
}

static void write_sae_and_recon(const char *dir, int mult, double score)
{
    char name[64], sae[64];
    snprintf(sae, sizeof sae, "sae%d.tsz", mult);
    char *sargv[] = {"sae-fit", "--dict", mult == 32 ? "32x" : "128x", "-o", sae};
    TszWriter *w = open_w(dir, sae, "sae-fit", 5, sargv);
    if (mult == 128) {   /* metadata in the header too: sae-report need not read the weights */
        json_t *h = tsz_writer_header(w);
        json_object_set_new(h, "kind", json_string("sae"));
        json_object_set_new(h, "arch", json_string("relu"));
        json_object_set_new(h, "d", json_integer(3072));
        json_object_set_new(h, "f", json_integer(3072 * 128));
        json_object_set_new(h, "hook", json_string("blocks.5.mlp.hook_post"));
        json_object_set_new(h, "model", json_string("distilgpt2"));
        json_object_set_new(h, "note", json_string("from the header"));
    }
    TszRecord rec;
    tsz_record_init(&rec);
    json_t *m = rec.meta;
    json_object_set_new(m, "kind", json_string("sae"));
    json_object_set_new(m, "arch", json_string("relu"));
    json_object_set_new(m, "l1", json_real(0.001));
    json_object_set_new(m, "d", json_integer(3072));
    json_object_set_new(m, "f", json_integer(3072 * mult));
    json_object_set_new(m, "hook", json_string("blocks.5.mlp.hook_post"));
    json_object_set_new(m, "model", json_string("distilgpt2"));
    json_object_set_new(m, "norm_scale", json_real(1.0));
    json_object_set_new(m, "tokens_seen", json_integer(1000000));
    uint64_t one[1] = {1};
    *(float *)tsz_record_add(&rec, "b_dec", TSZ_F32, 1, one)->data = 0;  /* placeholder */
    tsz_write_or_die(w, &rec);
    tsz_writer_close_or_die(w);

    snprintf(name, sizeof name, "recon%d.tsz", mult);
    char *rargv[] = {"recon-score", "--model", "distilgpt2", "--sae", sae};
    w = open_w(dir, name, "recon-score", 5, rargv);
    tsz_record_clear(&rec);
    m = rec.meta;
    static const char *keys[] = {"clean_loss", "recons_loss", "zero_abl_loss", "mean_abl_loss",
                                 "score", "score_mean_abl", "kl", "mse", "fvu", "l0",
                                 "dead_frac", "dense_frac"};
    double v[] = {3.25, 0, 5.5, 4.0, score, 0, 0.05, 0.01, 0.2, 31.5, 0.125, 0.0625};
    v[1] = v[2] - score * (v[2] - v[0]);
    v[5] = (v[3] - v[1]) / (v[3] - v[0]);
    json_object_set_new(m, "kind", json_string("recon"));
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) json_object_set_new(m, keys[i], json_real(v[i]));
    json_object_set_new(m, "tokens", json_integer(65536));
    tsz_write_or_die(w, &rec);
    tsz_writer_close_or_die(w);
    tsz_record_free(&rec);
}

/* Many features: activations decay from the window's middle, random ids.
 * The token_strs of a record name each of its tokens once (as topk-ctx's). */
static void many_examples(TszRecord *rec, SpRng *rng, const char *prefix, uint64_t n, size_t w, json_t *ts)
{
    char tn[32], an[32];
    snprintf(tn, sizeof tn, "%s_tokens", prefix);
    snprintf(an, sizeof an, "%s_acts", prefix);
    uint64_t sh[2] = {n, w};
    int32_t *t = tsz_record_add(rec, tn, TSZ_I32, 2, sh)->data;
    float *a = tsz_record_add(rec, an, TSZ_F32, 2, sh)->data;
    for (size_t i = 0; i < n * w; i++) {
        t[i] = (int32_t)sp_rng_below(rng, 50257);
        long d = (long)(i % w) - (long)(w / 2);
        a[i] = d > 0 || d < -8 ? 0 : (float)(10.0 / (1 - d));
        char key[16], val[32];
        snprintf(key, sizeof key, "%d", t[i]);
        if (json_object_get(ts, key)) continue;
        snprintf(val, sizeof val, " tok%d", t[i]);
        json_object_set_new(ts, key, json_string(val));
    }
}

static void write_many(size_t n, size_t w, const char *path, const char *expl, int argc, char **argv)
{
    TszWriter *wr = tsz_writer_open(path, "topk-ctx", argc, argv, NULL);
    tsz_writer_check(wr);
    TszWriter *we = expl ? tsz_writer_open(expl, "explain-gpt4", argc, argv, NULL) : NULL;
    if (we) tsz_writer_check(we);
    TszRecord rec;
    tsz_record_init(&rec);
    SpRng rng;
    sp_rng_seed(&rng, 1);
    for (size_t f = 0; f < n; f++) {
        tsz_record_clear(&rec);
        json_object_set_new(rec.meta, "kind", json_string("feature"));
        json_object_set_new(rec.meta, "feature", json_integer((json_int_t)f));
        json_object_set_new(rec.meta, "n_tokens", json_integer(1000000));
        double dens = pow(10, -5 * sp_rng_uniform(&rng));
        json_object_set_new(rec.meta, "n_fired", json_integer((json_int_t)(dens * 1e6)));
        json_object_set_new(rec.meta, "density", json_real(dens));
        json_object_set_new(rec.meta, "max_act", json_real(1 + 9 * sp_rng_uniform(&rng)));
        json_t *ts = json_object();
        many_examples(&rec, &rng, "top", 10, w, ts);
        many_examples(&rec, &rng, "rand", 5, w, ts);
        many_examples(&rec, &rng, "band", 8, w, ts);
        uint64_t bn[1] = {8};
        int32_t *bid = tsz_record_add(&rec, "band_id", TSZ_I32, 1, bn)->data;
        for (int k = 0; k < 8; k++) bid[k] = k / 2;
        add_hist(&rec, (int64_t)(dens * 1e6), 0);
        json_object_set_new(rec.meta, "token_strs", ts);
        tsz_write_or_die(wr, &rec);
        if (!we) continue;
        tsz_record_clear(&rec);
        char text[96];
        snprintf(text, sizeof text, "synthetic feature, tokens like tok%zu (marker %zu)", (f * 7919) % 50257, f);
        json_object_set_new(rec.meta, "kind", json_string("explanation"));
        json_object_set_new(rec.meta, "feature", json_integer((json_int_t)f));
        json_object_set_new(rec.meta, "explanation", json_string(text));
        json_object_set_new(rec.meta, "status", json_string("ok"));
        json_object_set_new(rec.meta, "scorer", json_string("simulation"));
        json_object_set_new(rec.meta, "backend", json_string("baseline"));
        json_object_set_new(rec.meta, "score", json_real(sp_rng_uniform(&rng) - 0.2));
        tsz_write_or_die(we, &rec);
    }
    tsz_record_free(&rec);
    tsz_writer_close_or_die(wr);
    if (we) tsz_writer_close_or_die(we);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    if ((argc == 5 || argc == 6) && !strcmp(argv[1], "--many")) {
        write_many(sp_opt_u64("N", argv[2], 1, 1u << 24), sp_opt_u64("W", argv[3], 1, 4096),
                   argv[4], argc == 6 ? argv[5] : NULL, argc, argv);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: mk-report-input DIR\n");
        return 2;
    }
    write_features(argv[1], argc, argv);
    write_explanations(argv[1], argc, argv);
    write_sae_and_recon(argv[1], 32, 0.8125);
    write_sae_and_recon(argv[1], 128, 0.625);
    return 0;
}
