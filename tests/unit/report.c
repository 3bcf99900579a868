/* report.c: unit tests of sae-report's helpers: escaping, UTF-8 cleaning,
 * the seed's figures, training log parsing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "tap.h"

static char *capture(void (*fn)(FILE *, const char *), const char *in)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fn(f, in);
    fclose(f);
    return buf;
}

static void test_escape(void)
{
    char *s = capture(report_html_escape, "<a href=\"x\">&'</a>");
    ok(!strcmp(s, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"), "html escape: %s", s);
    free(s);

    /* script-safe JSON: no '<', '>', '&' left, and it parses back to the same strings */
    const char *hostile = "</script><!-- & \xe2\x80\xa8 <script>";
    json_t *o = json_pack("{s:s,s:[s]}", "e", hostile, "v", "</SCRIPT >");
    char *js = json_dumps(o, JSON_COMPACT);
    char *esc = capture(report_json_script_escape, js);
    ok(!strpbrk(esc, "<>&"), "script escape leaves no < > &: %s", esc);
    json_error_t je;
    json_t *back = json_loads(esc, 0, &je);
    ok(back && json_equal(back, o), "script-escaped JSON parses back equal");
    json_decref(back);
    json_decref(o);
    free(js);
    free(esc);
}

static void test_utf8(void)
{
    static const struct { const char *in; size_t n; const char *want; } C[] = {
        {"plain", 5, "plain"},
        {"caf\xc3\xa9", 5, "caf\xc3\xa9"},
        {"a\xff" "b", 3, "a\xef\xbf\xbd" "b"},                   /* invalid byte */
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},             /* overlong '/' */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"x\xe2\x82", 3, "x\xef\xbf\xbd\xef\xbf\xbd"},           /* cut short */
        {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},             /* emoji */
    };
    for (size_t i = 0; i < sizeof C / sizeof *C; i++) {
        char *got = report_utf8_clean(C[i].in, C[i].n);
        ok(!strcmp(got, C[i].want), "utf8 clean case %zu", i);
        json_t *j = json_string(got);
        ok(j != NULL, "utf8 clean case %zu is valid UTF-8 for jansson", i);
        json_decref(j);
        free(got);
    }
}

static void test_seed(void)
{
    ok(report_seed_score("distilgpt2", "blocks.5.mlp.hook_post", 3072, 32 * 3072) == 0.77, "seed 32x");
    ok(report_seed_score("/cache/models/distilgpt2", "", 3072, 128 * 3072) == 0.48, "seed 128x");
    ok(report_seed_score("distilgpt2", "blocks.4.mlp.hook_post", 3072, 32 * 3072) < 0, "other layer");
    ok(report_seed_score("gpt2", "blocks.5.mlp.hook_post", 3072, 32 * 3072) < 0, "other model");
    ok(report_seed_score("distilgpt2", NULL, 3072, 8 * 3072) < 0, "other size");
    ok(report_seed_score(NULL, NULL, 3072, 32 * 3072) < 0, "no model");
}

static int col(const ReportLog *lg, const char *name)
{
    for (size_t j = 0; j < lg->ncol; j++)
        if (!strcmp(lg->col[j], name)) return (int)j;
    return -1;
}

static void test_logs(void)
{
    ReportLog lg;
    char err[256];
    memset(&lg, 0, sizeof lg);
    int rc = report_parse_log(&lg, "# step\ttokens\tloss\tnote\n1\t4096\t2.5\tx\n# eval\n\n2\t8192\tnan?\t\n", err,
                              sizeof err);
    ok(rc == 0 && lg.ncol == 4 && lg.nrow == 2, "tsv: 4 columns, 2 rows (rc %d, %zu, %zu)", rc, lg.ncol, lg.nrow);
    int t = col(&lg, "tokens"), l = col(&lg, "loss"), n = col(&lg, "note");
    ok(t == 1 && l == 2 && n == 3, "tsv: header names, '#' stripped");
    ok(lg.v[lg.ncol + t] == 8192 && lg.v[l] == 2.5, "tsv: values");
    ok(isnan(lg.v[lg.ncol + l]) && isnan(lg.v[n]), "tsv: junk and text are NaN");
    report_log_free(&lg);

    rc = report_parse_log(&lg, "step,loss\n1,3\n2,2\n3,1\n", err, sizeof err);
    ok(rc == 0 && lg.ncol == 2 && lg.nrow == 3 && lg.v[5] == 1, "csv");
    report_log_free(&lg);

    rc = report_parse_log(&lg,
                          "{\"step\":1,\"loss\":2.0,\"tag\":\"a\"}\n"
                          "{\"step\":2,\"val\":{\"fvu\":0.25,\"deep\":{\"x\":1}},\"ok\":true}\n",
                          err, sizeof err);
    int f = col(&lg, "val.fvu");
    ok(rc == 0 && lg.nrow == 2 && f >= 0 && col(&lg, "tag") < 0 && col(&lg, "ok") < 0 &&
           col(&lg, "val.deep.x") < 0, "jsonl: numbers only, one level of nesting");
    ok(f >= 0 && lg.v[lg.ncol + (size_t)f] == 0.25 && isnan(lg.v[(size_t)f]) &&
           isnan(lg.v[lg.ncol + (size_t)col(&lg, "loss")]), "jsonl: values, NaN where absent");
    report_log_free(&lg);

    /* sae-fit's logs: eval lines get columns of their own, x columns shared */
    rc = report_parse_log(&lg, "kind\tstep\ttokens\tloss\tfvu\ntrain\t10\t100\t2.5\t0.9\n"
                               "eval\t10\t100\t2.75\t0.8\ntrain\t20\t200\t2.0\t0.7\n", err, sizeof err);
    int el = col(&lg, "eval.loss"), tl = col(&lg, "loss"), st = col(&lg, "step");
    ok(rc == 0 && lg.nrow == 3 && el >= 0 && tl >= 0 && st >= 0 && col(&lg, "kind") < 0 &&
           col(&lg, "eval.step") < 0, "tsv kinds: eval.loss beside loss, step shared");
    ok(el >= 0 && tl >= 0 && isnan(lg.v[(size_t)el]) && lg.v[lg.ncol + (size_t)el] == 2.75 &&
           isnan(lg.v[lg.ncol + (size_t)tl]) && lg.v[2 * lg.ncol + (size_t)tl] == 2.0 &&
           lg.v[lg.ncol + (size_t)st] == 10, "tsv kinds: values in their columns");
    report_log_free(&lg);
    rc = report_parse_log(&lg, "{\"kind\":\"train\",\"step\":1,\"loss\":3}\n"
                               "{\"kind\":\"eval\",\"step\":1,\"loss\":4}\n", err, sizeof err);
    el = col(&lg, "eval.loss");
    ok(rc == 0 && el >= 0 && lg.v[lg.ncol + (size_t)el] == 4 && col(&lg, "eval.step") < 0,
       "jsonl kinds: eval.loss");
    report_log_free(&lg);

    rc = report_parse_log(&lg, "{\"step\":1}\n[1,2]\n", err, sizeof err);
    ok(rc < 0 && strstr(err, "line 2: not a JSON object"), "jsonl: array line refused: %s", err);
    report_log_free(&lg);
    rc = report_parse_log(&lg, "step\tloss\n", err, sizeof err);
    ok(rc == 0 && lg.nrow == 0 && lg.ncol == 2, "header only: no rows, not an error");
    report_log_free(&lg);
    rc = report_parse_log(&lg, "\n\n", err, sizeof err);
    ok(rc < 0 && !strcmp(err, "no header line"), "empty: %s", err);
    report_log_free(&lg);
}

int main(void)
{
    test_escape();
    test_utf8();
    test_seed();
    test_logs();
    return done_testing();
}
