/* explain.c: unit tests for lib/cache.c and lib/explain_*.c: SHA-256 against
 * known digests (FIPS 180-4 examples and Python's hashlib), explanation
 * cleaning, simulation-reply alignment, logprob expected values, Pearson
 * against numpy, detection parsing, yes/no scores and AUROC, fuzzing items,
 * prompt templates, the cache. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "explain.h"
#include "tap.h"

static void test_sha256(void)
{
    char hex[65];
    cache_sha256_hex("", 0, hex);
    ok(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256 of empty");
    cache_sha256_hex("abc", 3, hex);
    ok(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256 of abc");
    char *m = malloc(1000000);
    memset(m, 'a', 1000000);
    CacheSha256 s;
    uint8_t d[32];
    cache_sha256_init(&s);
    for (size_t i = 0; i < 1000000; i += 999) cache_sha256_update(&s, m + i, i + 999 > 1000000 ? 1000000 - i : 999);
    cache_sha256_final(&s, d);
    cache_sha256_hex(m, 1000000, hex);
    ok(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") && d[0] == 0xcd && d[31] == 0xd0,
       "sha256 of a million a, whole and in odd pieces");
    free(m);
    cache_key("http://x/v1/chat/completions", "m", "{}", 2, hex);
    ok(!strcmp(hex, "4c3e85b6586ac5c28cf0bb9601205c7f01e0e16b1239d5d5b13cb1efe9a48bcb"), "cache key = sha256(endpoint NUL model NUL body)");
}

static void test_cache(void)
{
    char dir[] = "/tmp/explain-unit-XXXXXX";
    ok(mkdtemp(dir) != NULL, "temp dir");
    char sub[64], key[65];
    snprintf(sub, sizeof sub, "%s/deep/er", dir);
    Cache c;
    ok(cache_open(&c, sub) == 0, "cache_open makes missing directories");
    cache_key("e", "m", "body", 4, key);
    char *got;
    size_t len;
    ok(cache_get(&c, key, &got, &len) == 0 && !got, "miss before put");
    ok(cache_put(&c, key, "reply", 5) == 0, "put");
    ok(cache_get(&c, key, &got, &len) == 1 && len == 5 && !memcmp(got, "reply", 5), "hit after put");
    free(got);
    ok(c.hits == 1 && c.misses == 1 && c.writes == 1, "counters");
    cache_close(&c);
    Cache off;
    ok(cache_open(&off, "") == 0 && cache_get(&off, key, &got, &len) == 0 && cache_put(&off, key, "x", 1) == 0,
       "empty dir turns the cache off");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ok(system(cmd) == 0, "cleanup");
}

static void test_clean(void)
{
    static const char *cases[][2] = {
        {"the word \"dog\".", "the word \"dog\""},
        {" years in the 1900s.\n\nThis feature also fires on ...", "years in the 1900s"},
        {"\"closing quotation marks\"", "closing quotation marks"},
        {"**Explanation:** the main thing this feature does is find `if` statements", "if statements"},
        {"The main thing this feature does is find: \xe2\x80\x9cnumbers\xe2\x80\x9d.", "numbers"},
        {"\"a\" and \"b\"", "\"a\" and \"b\""},
        {"\n\n  # Answer: past tense verbs\n", "past tense verbs"},
        {"   \n \"\" ", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *got = explain_clean(cases[i][0]);
        ok(!strcmp(got, cases[i][1]), "clean case %zu: got '%s' want '%s'", i, got, cases[i][1]);
        free(got);
    }
}

/* Three held-out rows of 4 tokens; token ids 3..8 shown as " w3" .. " w8",
 * id 1 a tab (escaped \t), -1 padding. */
typedef struct {
    ExplainExamples x;
    ExplainHeldout h;
    json_t *strs;
    int32_t tok[6 * 4];
    float act[6 * 4];
} Fixture;

static void fixture(Fixture *f)
{
    static const int32_t tok[6 * 4] = {3, 4, 5, 6, 4, 4, 7, 8, 3, 1, 8, -1,  /* top: 1 shown, 2 held out */
                                       5, 6, 7, 8, 3, 4, 5, 6, 8, 8, 8, 8};
    memset(f, 0, sizeof *f);
    memcpy(f->tok, tok, sizeof tok);
    for (int i = 0; i < 24; i++) f->act[i] = (float)(i % 5 == 0 ? i + 1 : 0);
    f->strs = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "1", "\t", "3", " w3", "4", " w4", "5", " w5",
                        "6", " w6", "7", " w7", "8", " w8");
    f->x = (ExplainExamples){.feature = 7, .K = 3, .R = 3, .W = 4, .top_tokens = f->tok, .top_acts = f->act,
                             .rand_tokens = f->tok + 12, .rand_acts = f->act + 12, .token_strs = f->strs};
    explain_heldout(&f->h, &f->x, 1, 2);
}

static void test_split_and_text(void)
{
    Fixture f;
    fixture(&f);
    ok(f.h.E == 4 && f.h.n_top == 2 && f.h.tok[0] == f.tok + 4 && f.h.tok[1] == f.tok + 8 && f.h.tok[2] == f.tok + 12 &&
       f.h.tok[3] == f.tok + 16, "held out: top rows 1..2 and random rows 0..1");
    char *t = explain_text_simulate(&f.x, &f.h);
    ok(strstr(t, "<start>\n w4\tunknown\n w4\tunknown\n w7\tunknown\n w8\tunknown\n<end>\n<start>\n w3\tunknown\n\\t\tunknown\n w8\tunknown\n<end>") == t,
       "simulation text escapes the tab token and skips padding");
    free(t);
    t = explain_text_explain(&f.x, 1);
    ok(!strcmp(t, "<start>\n w3\t10\n w4\t0\n w5\t0\n w6\t0\n<end>\n"), "explain text scales to 0..10 by the shown max");
    free(t);
    size_t perm[4] = {3, 2, 1, 0};
    t = explain_text_detect(&f.x, &f.h, perm);
    ok(!strcmp(t, "1:  w3 w4 w5 w6\n2:  w5 w6 w7 w8\n3:  w3\\t w8\n4:  w4 w4 w7 w8\n"), "detection text numbers examples in perm order");
    free(t);
    explain_heldout_free(&f.h);
    json_decref(f.strs);
}

static void test_align(void)
{
    Fixture f;
    fixture(&f);
    float pred[16];
    char err[200];
    /* in order, with fences and prose */
    const char *r1 = "Sure:\n```\n<start>\n w4\t1\n w4\t2\n w7\t3\n w8\t4\n<end>\n<start>\n w3\t5\n\\t\t6\n w8\t7\n<end>\n"
                     "<start>\n w5\t8\n w6\t9\n w7\t10\n w8\t0\n<end>\n<start>\n w3\t1\n w4\t2\n w5\t3\n w6\t4\n<end>\n```\nDone.";
    double fr = explain_align(&f.x, &f.h, r1, NULL, pred, NULL, err, sizeof err);
    float want1[16] = {1, 2, 3, 4, 5, 6, 7, 0, 8, 9, 10, 0, 1, 2, 3, 4};
    ok(fr == 1.0 && !memcmp(pred, want1, sizeof want1), "aligned in order through fences and prose (%g)", fr);
    /* blocks reordered, one line missing, one extra line */
    const char *r2 = "<start>\n w3\t1\n w4\t2\n w5\t3\n w6\t4\n<end>\n<start>\n w5\t8\n w6\t9\n w7\t10\n w8\t0\n<end>\n"
                     "<start>\n w3\t5\n w8\t7\n<end>\n<start>\n w4\t1\n w4\t2\n w9\t9\n w7\t3\n w8\t4\n<end>\n";
    fr = explain_align(&f.x, &f.h, r2, NULL, pred, NULL, err, sizeof err);
    float want2[16] = {1, 2, 3, 4, 5, 0, 7, 0, 8, 9, 10, 0, 1, 2, 3, 4};
    ok(fabs(fr - 14.0 / 15) < 1e-9 && !memcmp(pred, want2, sizeof want2), "reordered blocks matched by content, a missing line left 0 (%g)", fr);
    /* no block markers at all, tokens without their leading space */
    const char *r3 = "w4\t1\nw4\t2\nw7\t3\nw8\t4\nw3\t5\n\\t\t6\nw8\t7\nw5\t8\nw6\t9\nw7\t10\nw8\t0\nw3 1\nw4 2\nw5 3\nw6 4\n";
    fr = explain_align(&f.x, &f.h, r3, NULL, pred, NULL, err, sizeof err);
    ok(fr == 1.0 && !memcmp(pred, want1, sizeof want1), "no markers: one alignment over all lines (%g)", fr);
    fr = explain_align(&f.x, &f.h, "I think they are all zero.", NULL, pred, NULL, err, sizeof err);
    ok(fr < 0 && strstr(err, "no 'token<TAB>number' lines"), "prose only is refused: %s", err);
    /* logprobs: the expected value over 0..10 at each number */
    const char *r4 = "<start>\n w4\t10\n<end>";
    json_t *lp = json_pack("[{s:s, s:[]}, {s:s, s:[{s:s, s:f}, {s:s, s:f}, {s:s, s:f}]}, {s:s, s:[]}]",
                           "token", "<start>\n w4\t", "top_logprobs",
                           "token", "10", "top_logprobs", "token", "10", "logprob", log(0.6), "token", "5", "logprob",
                           log(0.2), "token", "x", "logprob", log(0.2),
                           "token", "\n<end>", "top_logprobs");
    double lpf = -1;
    fr = explain_align(&f.x, &f.h, r4, lp, pred, &lpf, err, sizeof err);
    ok(fabs(pred[0] - (0.6 * 10 + 0.2 * 5) / 0.8) < 1e-5, "logprob expected value %g (want %g)", pred[0], (0.6 * 10 + 0.2 * 5) / 0.8);
    ok(lpf == 1, "every matched value from logprobs (%g)", lpf);
    fr = explain_align(&f.x, &f.h, r4, NULL, pred, &lpf, err, sizeof err);
    ok(lpf == 0 && pred[0] == 10, "without logprobs: the integer, none from logprobs (%g)", lpf);
    json_t *split = json_pack("[{s:s, s:[]}, {s:s, s:[{s:s, s:f}, {s:s, s:f}]}, {s:s, s:[]}, {s:s, s:[]}]",
                              "token", "<start>\n w4\t", "top_logprobs",
                              "token", "1", "top_logprobs", "token", "1", "logprob", log(0.9), "token", "2", "logprob",
                              log(0.1), "token", "0", "top_logprobs", "token", "\n<end>", "top_logprobs");
    fr = explain_align(&f.x, &f.h, r4, split, pred, &lpf, err, sizeof err);
    ok(lpf == 0 && pred[0] == 10, "\"10\" sampled as \"1\" \"0\": the integer, not digit logprobs (%g, %g)", pred[0], lpf);
    json_decref(split);
    json_decref(lp);
    explain_heldout_free(&f.h);
    json_decref(f.strs);
}

static void test_scores(void)
{
    const float a[10] = {0, 0, 3.5f, 0, 1, 0, 0, 7, 0, 0.25f}, b[10] = {0, 1, 9, 0, 0, 0, 2, 10, 0, 0};
    double r = explain_pearson(a, b, 10), want = 0.9259784189052498;   /* numpy.corrcoef */
    ok(fabs(r - want) < 1e-12, "pearson vs numpy (diff %.3g)", fabs(r - want));
    const float c[3] = {1, 1, 1};
    ok(isnan(explain_pearson(a, c, 3)) && isnan(explain_pearson(a, b, 1)), "pearson undefined is NAN");
    uint8_t said[5];
    char err[200];
    ok(explain_parse_detect("Examples 2 and 5, also 9.", 5, said, err, sizeof err) == 0 && !said[0] && said[1] &&
       !said[2] && !said[3] && said[4], "detect reply: numbers in range");
    ok(explain_parse_detect("None of them.", 5, said, err, sizeof err) == 0 && !said[1], "detect reply: none");
    ok(explain_parse_detect("I cannot tell.", 5, said, err, sizeof err) < 0, "detect reply without numbers is refused");
    Fixture f;
    fixture(&f);
    /* truth: held-out top rows fire (at 5 and 10), random row 0 fires (15), random row 1 does not */
    uint8_t s4[4] = {1, 0, 0, 1};
    uint8_t *label = malloc(f.h.E + 1);
    ExplainClassScore cs;
    explain_detect_labels(&f.h, label);
    explain_class_score(&cs, label, s4, NULL, f.h.E);
    double tpr = cs.tpr, tnr = cs.tnr, ba = cs.balanced_accuracy;
    ok(fabs(tpr - 1.0 / 3) < 1e-12 && tnr == 0 && fabs(ba - 1.0 / 6) < 1e-12, "detection: tpr %g tnr %g balanced %g", tpr, tnr, ba);
    uint8_t s5[4] = {1, 1, 1, 0};
    explain_class_score(&cs, label, s5, NULL, f.h.E);
    ok(cs.balanced_accuracy == 1.0, "detection: all right is 1");
    free(label);
    explain_heldout_free(&f.h);
    json_decref(f.strs);
}

static void test_class_scores(void)
{
    const uint8_t label[5] = {1, 1, 1, 0, 0}, said[5] = {1, 0, 1, 1, 0};
    ExplainClassScore c;
    explain_class_score(&c, label, said, NULL, 5);
    ok(c.tp == 2 && c.fn == 1 && c.fp == 1 && c.tn == 1 && fabs(c.tpr - 2.0 / 3) < 1e-12 && c.tnr == 0.5 &&
       fabs(c.balanced_accuracy - 7.0 / 12) < 1e-12, "class score: counts, rates, balanced accuracy");
    ok(fabs(c.precision - 2.0 / 3) < 1e-12 && c.recall == c.tpr && fabs(c.f1 - 2.0 / 3) < 1e-12,
       "class score: precision %g recall %g f1 %g", c.precision, c.recall, c.f1);
    ok(fabs(c.auroc - c.balanced_accuracy) < 1e-12, "AUROC of yes/no answers is the balanced accuracy");
    /* pairs (positive, negative) ordered right: 0.9>0.65, 0.9>0.1, 0.4>0.1, 0.65>0.1, a tie: 4.5 of 6 */
    const double p[5] = {0.9, 0.4, 0.65, 0.65, 0.1};
    ok(fabs(explain_auroc(p, label, 5) - 0.75) < 1e-12, "AUROC by pairs, ties half (%g)", explain_auroc(p, label, 5));
    const uint8_t all[3] = {1, 1, 1}, yes[3] = {1, 0, 1};
    explain_class_score(&c, all, yes, NULL, 3);
    ok(isnan(c.tnr) && isnan(c.auroc) && fabs(c.balanced_accuracy - 2.0 / 3) < 1e-12 && c.precision == 1,
       "one class: tnr and AUROC undefined, balanced accuracy is the tpr");
    const uint8_t none[3] = {0, 0, 0};
    explain_class_score(&c, none, none, NULL, 3);
    ok(isnan(c.precision) && isnan(c.f1) && c.balanced_accuracy == 1, "no positive, none said: precision undefined");
}

static void test_fuzz(void)
{
    Fixture f;
    fixture(&f);
    ExplainFuzz z = {0};
    explain_fuzz_prepare(&z, &f.h, 42);
    /* three held-out examples fire (one token each): right and wrong items;
     * the fourth fires nowhere: one wrong item */
    size_t pos = 0, bad = 0;
    for (size_t i = 0; i < z.n; i++) {
        size_t e = z.ex[i], marked = 0, right = 0, fire = 0;
        for (size_t t = 0; t < 4; t++) {
            int fires = f.h.tok[e][t] >= 0 && f.h.act[e][t] > 0;
            marked += z.mark[i * 4 + t];
            right += z.mark[i * 4 + t] && fires;
            fire += fires;
            bad += z.mark[i * 4 + t] && f.h.tok[e][t] < 0;
        }
        pos += z.label[i];
        if (z.label[i] ? marked != fire || right != fire : marked != 1 || right != 0) bad++;
    }
    ok(z.n == 7 && pos == 3 && bad == 0, "fuzz items: %zu, %zu right; marks as labelled, never padding", z.n, pos);
    ExplainFuzz y = {0};
    explain_fuzz_prepare(&y, &f.h, 42);
    ok(y.n == z.n && !memcmp(y.mark, z.mark, z.n * 4), "fuzz items are the same for the same seed");
    explain_fuzz_free(&y);
    explain_fuzz_free(&z);
    uint8_t mark[8] = {0, 1, 1, 0, 0, 0, 1, 1};
    size_t ex[2] = {0, 2}, perm[2] = {1, 0};
    z = (ExplainFuzz){.n = 2, .W = 4, .ex = ex, .mark = mark};
    char *t = explain_text_fuzz(&f.x, &f.h, &z, perm);
    ok(!strcmp(t, "1:  w5 w6<< w7 w8>>\n2:  w4<< w4 w7>> w8\n"), "fuzz text: runs of highlights in << >>, perm order");
    free(t);
    explain_heldout_free(&f.h);
    json_decref(f.strs);
}

static void test_prompt(void)
{
    ExplainPrompt p;
    char err[300];
    ok(explain_prompt_parse(&p, "# c\n=== system\nS {{N}}\n\n=== user\nA {{EXAMPLES}} B {{EXPLANATION}}\n", "t", err,
                            sizeof err) == 0 && p.n == 2, "prompt parses");
    json_t *m = explain_prompt_render(&p, "EX", "EXPL", "3");
    ok(!strcmp(json_string_value(json_object_get(json_array_get(m, 0), "content")), "S 3") &&
       !strcmp(json_string_value(json_object_get(json_array_get(m, 1), "content")), "A EX B EXPL") &&
       !strcmp(json_string_value(json_object_get(json_array_get(m, 1), "role")), "user"), "prompt renders");
    char *t = explain_messages_text(m);
    ok(!strcmp(t, "S 3\n\nUser:\nA EX B EXPL\n\nAssistant:\n"), "completions prompt text");
    free(t);
    json_decref(m);
    explain_prompt_free(&p);
    ExplainReply r;
    const char *comp = "{\"choices\":[{\"text\":\"a\\t10\\n\",\"logprobs\":{\"tokens\":[\"a\",\"\\t\",\"10\",\"\\n\"],"
                       "\"top_logprobs\":[{},{},{\"10\":-0.1,\"9\":-2.5},{}]}}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}";
    ok(explain_reply_parse(&r, comp, strlen(comp), err, sizeof err) == 0 && !strcmp(r.content, "a\t10\n") &&
       json_array_size(r.logprobs) == 4 && r.prompt_tokens == 7, "a completions reply parses (text, logprobs)");
    explain_reply_free(&r);
    ok(explain_reply_parse(&r, "{\"choices\":[{}]}", 16, err, sizeof err) < 0 &&
       strstr(err, "choices[0].message.content or choices[0].text"), "%s", err);
    ok(explain_prompt_parse(&p, "=== boss\nx\n", "t", err, sizeof err) < 0 && strstr(err, "unknown role 'boss'"), "%s", err);
    ok(explain_prompt_parse(&p, "# only comments\n", "t", err, sizeof err) < 0 && strstr(err, "no messages"), "%s", err);
}

static void test_price(void)
{
    double in, out;
    ok(explain_price("gpt-4-turbo-2024-04-09", &in, &out) && in == 10 && out == 30, "price of gpt-4-turbo");
    ok(explain_price("gpt-4o-mini-2024-07-18", &in, &out) && in == 0.15, "longest prefix wins (gpt-4o-mini)");
    ok(!explain_price("llama-3-8b", &in, &out) && in == 0, "unknown model costs 0");
}

int main(void)
{
    test_sha256();
    test_cache();
    test_clean();
    test_split_and_text();
    test_align();
    test_scores();
    test_class_scores();
    test_fuzz();
    test_prompt();
    test_price();
    return done_testing();
}
