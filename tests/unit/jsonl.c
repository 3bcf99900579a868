/* jsonl.c: jsonl_field() against jansson, the reference it must agree
 * with: on fixed lines (escapes, \u surrogates, invalid UTF-8, numbers at
 * jansson's limits, malformed JSON) and on a few hundred thousand random
 * mutations of valid lines. Whenever the scanner answers, jansson must
 * accept the line and hold the same bytes under the key. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"
#include "tap.h"
#include "util.h"

/* 1 and the bytes when jansson reads `key` as a string, else 0 */
static int jansson_field(const char *line, size_t n, const char *key, JsonlBuf *out)
{
    json_error_t je;
    json_t *j = json_loadb(line, n, JSON_ALLOW_NUL, &je);
    json_t *v = j && json_is_object(j) ? json_object_get(j, key) : NULL;
    int r = v && json_is_string(v);
    out->n = 0;
    if (r) {
        jsonl_buf_reserve(out, json_string_length(v));
        memcpy(out->v, json_string_value(v), json_string_length(v));
        out->n = json_string_length(v);
    }
    json_decref(j);
    return r;
}

/* jsonl_field_span, then jsonl_unescape a few bytes at a time (room 4 to
 * 10, as gpt2-tok decodes a long field into batches): the same bytes as
 * want, and the same answer as jsonl_field (got). */
static int in_parts(const char *line, size_t n, int got, const JsonlBuf *want)
{
    JsonlBuf keys = {0};
    size_t at, len, olen, o = 0;
    int span = jsonl_field_span(line, n, "text", 4, &keys, &at, &len);
    free(keys.v);
    if (span != got) return 0;
    if (!span) return 1;
    char *out = xmalloc(len + 1);
    for (size_t room = 4; len; room = 4 + (room + 1) % 7) {
        size_t k = jsonl_unescape(line + at, len, out + o, room, &olen);
        if (!k) break;   /* never with room >= 4 */
        at += k, len -= k, o += olen;
    }
    int same = !len && o == want->n && !memcmp(out, want->v, o);
    free(out);
    return same;
}

/* The scanner's answer agrees with jansson's: 0 = it left the line to
 * jansson, 1 = it answered, -1 = it answered wrongly. */
static int check(const char *line, size_t n, JsonlBuf *a, JsonlBuf *b)
{
    a->n = 3;   /* bytes already in the buffer stay */
    memcpy(a->v, "pre", 3);
    int got = jsonl_field(line, n, "text", 4, a);
    int want = jansson_field(line, n, "text", b);
    if (!in_parts(line, n, got, b)) return -1;
    if (!got) return a->n == 3 && !memcmp(a->v, "pre", 3) ? 0 : -1;
    return want && a->n == 3 + b->n && !memcmp(a->v, "pre", 3) && !memcmp(a->v + 3, b->v, b->n) ? 1 : -1;
}

static const struct {
    const char *line;
    int fast;   /* 1: the scanner must answer; 0: it must leave it to jansson */
} fixed[] = {
    {"{\"text\": \"hello\"}\n", 1},
    {" \t{\"id\":1,\"text\":\"a\\u00e9\\n\\t\\\"\\\\\\/\\b\\f\\r\",\"x\":[1,-2.5e3,true,false,null,{}]}\r\n", 1},
    {"{\"text\": \"\\ud83d\\ude00 \\u0000 nul\"}", 1},
    {"{\"te\\u0078t\": \"escaped key\"}", 1},
    {"{\"text\": \"first\", \"text\": \"last wins\"}", 1},
    {"{\"meta\": {\"text\": 5}, \"text\": \"only the top level\"}", 1},
    {"{\"text\": \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}", 1},
    {"{\"n\": 999999999999999999, \"r\": 1e308, \"z\": -0, \"text\": \"\"}", 1},
    {"{\"text\": \"x\", \"text\": 5}", 0},
    {"{\"text\": 5}", 0},
    {"{\"body\": \"x\"}", 0},
    {"[\"text\"]", 0},
    {"\"text\"", 0},
    {"{\"text\": \"\\ud83d\"}", 0},
    {"{\"text\": \"\\ude00\"}", 0},
    {"{\"text\": \"\\ud83d\\u0041\"}", 0},
    {"{\"text\": \"\\x41\"}", 0},
    {"{\"text\": \"\\u12g4\"}", 0},
    {"{\"text\": \"\xff\"}", 0},
    {"{\"text\": \"\xc0\x80\"}", 0},
    {"{\"text\": \"\xed\xa0\x80\"}", 0},
    {"{\"text\": \"\xf4\x90\x80\x80\"}", 0},
    {"{\"text\": \"\xe2\x82\"}", 0},
    {"{\"text\": \"tab\there\"}", 0},
    {"{\"text\": \"a\"} x", 0},
    {"{\"text\": \"a\",}", 0},
    {"{\"text\": \"a\" \"b\": 1}", 0},
    {"{\"text\" \"a\"}", 0},
    {"{\"n\": 01, \"text\": \"a\"}", 0},
    {"{\"n\": 1., \"text\": \"a\"}", 0},
    {"{\"n\": -, \"text\": \"a\"}", 0},
    {"{\"n\": 1e, \"text\": \"a\"}", 0},
    {"{\"n\": 9223372036854775808, \"text\": \"a\"}", 0},
    {"{\"n\": 1e400, \"text\": \"a\"}", 0},
    {"{\"n\": tru, \"text\": \"a\"}", 0},
    {"{\"n\": truex, \"text\": \"a\"}", 0},
    {"{\"a\\u0000b\": 1, \"text\": \"a\"}", 0},
    {"{\"text\": \"a\"", 0},
    {"{\"text\": \"a", 0},
    {"\xef\xbb\xbf{\"text\": \"bom\"}", 0},
};

static const char *const seeds[] = {
    "{\"id\": 12, \"text\": \"Hello, w\\u00f6rld!\\n\\\"q\\\" \\ud83d\\ude00 caf\xc3\xa9\", \"meta\": {\"a\": [1, 2.5, -3e-2, true, null, \"s\"]}}",
    "{\"text\":\"x\\\\y\\/z\\b\\f\\r\\t\",\"n\":-0.0,\"t\":false,\"e\":[],\"o\":{}}\n",
    "  {\"meta\": {\"text\": \"inner\"}, \"text\": \"\xe2\x82\xac\xf0\x9f\x98\x80 end\", \"text\": \"again\"}  \r\n",
};

static int collect(void *arg, size_t key_off, size_t key_len, long long value)
{
    long long *sum = arg;
    *sum += (long long)(key_off + key_len) * 1000 + value;
    return 0;
}

/* jsonl_int_members: vocab.json's shape, read or left to jansson */
static void int_members(void)
{
    static const struct {
        const char *text;
        int want;
        long long sum;   /* of (key end * 1000 + value) */
    } c[] = {
        {"{\"a\": 1, \"\\u0120b\": -2} \t", 1, 1000 + 1 + 4000 - 2},   /* the key decodes to 3 bytes */
        {" {} ", 1, 0},
        {"{\"a\": 999999999999999999}", 1, 1000 + 999999999999999999ll},
        {"{\"a\": 1.0}", 0, 0},
        {"{\"a\": 1e2}", 0, 0},
        {"{\"a\": 1,}", 0, 0},
        {"{\"a\": \"1\"}", 0, 0},
        {"{\"a\": 1} x", 0, 0},
        {"{\"\\u0000\": 1}", 0, 0},
        {"{\"a\": 9999999999999999999}", 0, 0},
        {"[1]", 0, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        JsonlBuf keys = {0};
        long long sum = 0;
        int got = jsonl_int_members(c[i].text, strlen(c[i].text), &keys, collect, &sum);
        json_error_t je;
        json_t *j = json_loads(c[i].text, 0, &je);
        ok(got == c[i].want && (!got || (sum == c[i].sum && j)), "int members: %s %s", c[i].text,
           got ? "read" : "left to jansson");
        json_decref(j);
        free(keys.v);
    }
}

/* A field longer than 4 MB goes into a buffer moved to huge pages as it
 * grows: the bytes already there and the new ones are all kept. */
static void long_field(void)
{
    const size_t n = 6u << 20;
    char *line = xmalloc(n + 32);
    size_t k = (size_t)sprintf(line, "{\"text\": \"");
    for (size_t i = 0; i < n; i++) line[k++] = i % 1000 == 999 ? ' ' : (char)('a' + i % 26);
    k += (size_t)sprintf(line + k, "\\n\"}\n");
    JsonlBuf buf = {0};
    jsonl_buf_reserve(&buf, 3);
    memcpy(buf.v, "pre", 3);
    buf.n = 3;
    int got = jsonl_field(line, k, "text", 4, &buf);
    int same = got && buf.n == 3 + n + 1 && !memcmp(buf.v, "pre", 3) && !memcmp(buf.v + 3, line + 10, n) &&
               buf.v[3 + n] == '\n';
    ok(same, "a %zu MB field after 3 bytes already there: all kept (%zu bytes)", n >> 20, buf.n);
    free(buf.v);
    free(line);
}

int main(void)
{
    int_members();
    long_field();
    JsonlBuf a = {0}, b = {0};
    jsonl_buf_reserve(&a, 16);
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        const char *l = fixed[i].line;
        size_t n = strlen(l);
        int r = check(l, n, &a, &b);
        ok(r == fixed[i].fast, "%s: %s", fixed[i].fast ? "read" : "left to jansson", l);
    }
    /* random mutations: flip, insert, delete or cut bytes of valid lines */
    static const char alphabet[] = "{}[]:,\"\\ u0123456789abcdefDEtrunlsx-+.eE\t\n\r\x01\x7f\x80\xbf\xc3\xed\xf0\xff";
    SpRng rng;
    sp_rng_seed(&rng, 19);
    char line[512];
    size_t answered = 0, wrong = 0, trials = 300000;
    for (size_t t = 0; t < trials; t++) {
        const char *s = seeds[t % (sizeof seeds / sizeof *seeds)];
        size_t n = strlen(s);
        memcpy(line, s, n);
        for (uint64_t k = 1 + sp_rng_below(&rng, 3); k-- && n;) {
            size_t at = (size_t)sp_rng_below(&rng, n);
            char c = alphabet[sp_rng_below(&rng, sizeof alphabet - 1)];
            switch (sp_rng_below(&rng, 4)) {
            case 0: line[at] = c; break;
            case 1:
                if (n + 1 < sizeof line) {
                    memmove(line + at + 1, line + at, n - at);
                    line[at] = c;
                    n++;
                }
                break;
            case 2:
                memmove(line + at, line + at + 1, n - at - 1);
                n--;
                break;
            default: n = at + 1;
            }
        }
        int r = check(line, n, &a, &b);
        answered += r == 1;
        if (r < 0 && wrong++ < 5) diag("disagrees with jansson: %.*s", (int)n, line);
    }
    ok(wrong == 0, "%zu random lines: the scanner never disagrees with jansson (%zu wrong)", trials, wrong);
    ok(answered > trials / 20, "and answers for many of them itself (%zu)", answered);
    free(a.v);
    free(b.v);
    return done_testing();
}
