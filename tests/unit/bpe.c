/* bpe.c: the GPT-2 tokenizer against golden ids from an independent
 * reference (tests/data/tok/NAME.ids, made by tests/helpers/make-tok-goldens.sh
 * with node: the npm gpt-tokenizer package and a transcription of GPT-2's
 * encoder.py; see tests/helpers/tok-ref.js for how invalid UTF-8 is
 * referenced), decoding round trips, display strings and load errors.
 * Needs the GPT-2 files ($GPT2_DIR, $SAEPIPE_GPT2_DIR or ../shared/gpt2);
 * without them the tests that need them are skipped, visibly. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpe.h"
#include "tap.h"

static const char *gpt2_dir(void)
{
    static const char *cand[] = {"GPT2_DIR", "SAEPIPE_GPT2_DIR"};
    struct stat st;
    for (size_t i = 0; i < 2; i++) {
        const char *d = getenv(cand[i]);
        if (d && *d) return d;
    }
    const char *fallback[] = {"../shared/gpt2", "examples/models/tiny-gpt2-docs"};
    for (size_t i = 0; i < 2; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/merges.txt", fallback[i]);
        if (stat(p, &st) == 0) return fallback[i];
    }
    return NULL;
}

/* ids file: one decimal id per line */
static int32_t *read_ids(const char *path, size_t *n)
{
    size_t len;
    char *txt = sp_read_file(path, &len);
    if (!txt) return NULL;
    size_t cap = 1024, k = 0;
    int32_t *v = xmalloc(cap * sizeof *v);
    for (char *p = txt, *end; *p; p = end) {
        long x = strtol(p, &end, 10);
        if (end == p) break;
        if (k == cap) v = xrealloc(v, (cap *= 2) * sizeof *v);
        v[k++] = (int32_t)x;
    }
    free(txt);
    *n = k;
    return v;
}

static void test_goldens(const Bpe *b, BpeEnc *e)
{
    DIR *d = opendir("tests/data/tok");
    if (!ok(d != NULL, "tests/data/tok is readable (run from the repo root)")) return;
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d))) {
        size_t L = strlen(de->d_name);
        if (L < 5 || strcmp(de->d_name + L - 4, ".txt")) continue;
        char tp[512], ip[512];
        snprintf(tp, sizeof tp, "tests/data/tok/%s", de->d_name);
        snprintf(ip, sizeof ip, "tests/data/tok/%.*s.ids", (int)(L - 4), de->d_name);
        size_t n, nw = 0;
        char *text = sp_read_file(tp, &n);
        int32_t *want = read_ids(ip, &nw);
        BpeIds got = {0};
        int rc = text && want ? bpe_encode(e, text, n, 0, &got) : -1;
        size_t first = 0;
        while (first < got.n && first < nw && got.v[first] == want[first]) first++;
        ok(rc == 0 && got.n == nw && first == nw, "%s: %zu tokens equal the reference's %zu", de->d_name, got.n, nw);
        if (first < nw && first < got.n) diag("first difference at token %zu: got %d, want %d", first, got.v[first], want[first]);
        /* a second pass goes through the per-word cache: same ids */
        BpeIds again = {0};
        rc = text ? bpe_encode(e, text, n, 0, &again) : -1;
        ok(rc == 0 && again.n == got.n && !memcmp(again.v, got.v, got.n * sizeof *got.v), "%s: cached pass equal",
           de->d_name);
        /* decode gives the bytes back, invalid UTF-8 included */
        char *back = xmalloc(n + 1);
        size_t bl;
        rc = bpe_decode(b, got.v, got.n, back, n + 1, &bl);
        ok(rc == 0 && bl == n && !memcmp(back, text, n), "%s: decode round trip (%zu bytes)", de->d_name, bl);
        free(back);
        bpe_ids_free(&again);
        bpe_ids_free(&got);
        free(want);
        free(text);
        files++;
    }
    closedir(d);
    ok(files >= 13, "%d golden files", files);
}

static void test_special(const Bpe *b, BpeEnc *e)
{
    const char *t = "a<|endoftext|>b";
    BpeIds x = {0}, y = {0};
    int rc = bpe_encode(e, t, strlen(t), 0, &x) | bpe_encode(e, t, strlen(t), BPE_NO_SPECIAL, &y);
    ok(rc == 0 && x.n == 3 && x.v[1] == 50256 && b->eot == 50256, "<|endoftext|> is token 50256");
    ok(y.n > 3, "BPE_NO_SPECIAL encodes it as text (%zu tokens)", y.n);
    for (size_t i = 0; i < y.n; i++)
        if (y.v[i] == 50256) rc = -1;
    ok(rc == 0, "BPE_NO_SPECIAL never gives 50256");
    bpe_ids_free(&x);
    bpe_ids_free(&y);
}

static void test_display(const Bpe *b, BpeEnc *e)
{
    /* "😀" is 4 bytes; GPT-2 has no token for it, so it is split into pieces */
    const char *t = "x\n\t\r\x01 caf\xc3\xa9 \xf0\x9f\x98\x80";
    BpeIds ids = {0};
    char all[256] = "", buf[64];
    if (bpe_encode(e, t, strlen(t), 0, &ids) < 0) ids.n = 0;
    for (size_t i = 0; i < ids.n; i++) {
        bpe_token_display(b, ids.v[i], buf, sizeof buf);
        strncat(all, buf, sizeof all - strlen(all) - 2);
        strcat(all, "|");
    }
    ok(!strcmp(all, "x|\\n|\\t|\\r|\\x01| caf\xc3\xa9| \\xf0\\x9f\\x98|\\x80|"), "display strings: %s", all);
    size_t need = bpe_token_display(b, 50256, buf, 5);
    ok(need == 13 && !strcmp(buf, "<|en"), "display is snprintf-style when truncated (%zu, '%s')", need, buf);
    need = bpe_token_display(b, 60000, buf, sizeof buf);
    ok(!strcmp(buf, "<bad:60000>"), "out-of-range id displays as %s", buf);
    int32_t bad[2] = {11, -3};
    size_t len;
    ok(bpe_decode(b, bad, 2, buf, sizeof buf, &len) == -1 && len == 1, "bpe_decode refuses id -3 at index 1");
    bpe_ids_free(&ids);
}

/* Long pieces go through a heap (merge_long) when the merges are ordered;
 * the same vocabulary with ordered = 0 takes encoder.py's loop on every
 * piece. Random long pieces from small alphabets must agree. */
static void test_long_paths(const Bpe *b)
{
    static const char *alpha[] = {"!?.-=#*", " \n\t", "0123456789", "abcde", "ab", "\xe4\xb8\xad\xf0\x9f\x98\x80!",
                                  "\x80\xff\xfe\xc3"};
    Bpe plain = *b;
    plain.ordered = 0;
    BpeEnc e1, e2;
    if (bpe_enc_init(&e1, b) < 0 || bpe_enc_init(&e2, &plain) < 0) return;
    SpRng rng;
    sp_rng_seed(&rng, 7);
    char *text = xmalloc(4096);
    int same = 1, tested = 0;
    for (int k = 0; k < 300 && same; k++) {
        const char *a = alpha[k % 7];
        size_t na = strlen(a), n = 49 + sp_rng_below(&rng, 3000);
        for (size_t i = 0; i < n; i++) text[i] = a[sp_rng_below(&rng, na)];
        BpeIds x = {0}, y = {0};
        if (bpe_encode(&e1, text, n, 0, &x) < 0 || bpe_encode(&e2, text, n, 0, &y) < 0) same = 0;
        same &= x.n == y.n && !memcmp(x.v, y.v, x.n * sizeof *x.v);
        tested++;
        bpe_ids_free(&x);
        bpe_ids_free(&y);
    }
    ok(b->ordered == 1, "GPT-2's merges are ordered (long pieces take the heap)");
    ok(same, "heap and encoder.py loop agree on %d random long texts", tested);
    free(text);
    bpe_enc_free(&e1);
    bpe_enc_free(&e2);
}

/* Random bytes (any value, runs of one class, <|endoftext|> spliced in):
 * every id in range, and decoding gives the bytes back. */
static void test_random_bytes(const Bpe *b, BpeEnc *e)
{
    SpRng rng;
    sp_rng_seed(&rng, 11);
    char *text = xmalloc(6000), *back = xmalloc(6000);
    int good = 1, k;
    for (k = 0; k < 400 && good; k++) {
        size_t n = sp_rng_below(&rng, 5000);
        for (size_t i = 0; i < n; i++) {
            uint64_t c = sp_rng_below(&rng, 4);
            text[i] = (char)(c == 0 ? sp_rng_below(&rng, 256) : c == 1 ? ' ' : c == 2 ? 0x80 + sp_rng_below(&rng, 64)
                                                                                      : 'a' + sp_rng_below(&rng, 3));
        }
        if (n > 40 && k % 3 == 0) memcpy(text + n / 2, BPE_EOT_TEXT, 13);
        BpeIds ids = {0};
        size_t bl = 0;
        good = bpe_encode(e, text, n, k % 2 ? BPE_NO_SPECIAL : 0, &ids) == 0;
        for (size_t i = 0; good && i < ids.n; i++) good = ids.v[i] >= 0 && (size_t)ids.v[i] < b->V;
        good = good && bpe_decode(b, ids.v, ids.n, back, 6000, &bl) == 0 && bl == n && !memcmp(back, text, n);
        bpe_ids_free(&ids);
    }
    ok(good, "random bytes: %d texts encode to valid ids and decode back", k);
    free(text);
    free(back);
}

/* Every place bpe_split_point gives cuts a text into two parts whose ids,
 * one after the other, are the ids of the whole; texts of the characters
 * that make pieces meet: every kind of whitespace, apostrophes, Unicode
 * spaces, invalid bytes, <|endoftext|>. */
static void test_split_points(BpeEnc *e)
{
    static const char *atoms[] = {" ", "\t", "\n", "\r", "\v", "\f", "\r\n", "a", "Zq", "7", "42", ".", "'s", "'",
                                  "\xc2\xa0", "\xe3\x80\x80", "\xc3\xa9", "\xff", "\x80", "<|endoftext|>", "!?", "  "};
    size_t natoms = sizeof atoms / sizeof *atoms;
    SpRng rng;
    sp_rng_seed(&rng, 23);
    char text[2048];
    int good = 1, cuts = 0, cr_tab = 0;
    for (int k = 0; k < 300 && good; k++) {
        size_t n = 0;
        while (n < 1000) {
            const char *a = atoms[sp_rng_below(&rng, natoms)];
            memcpy(text + n, a, strlen(a));
            n += strlen(a);
        }
        BpeIds whole = {0};
        good = bpe_encode(e, text, n, 0, &whole) == 0;
        for (size_t p = bpe_split_point(text, n, 1); good && p < n; p = bpe_split_point(text, n, p + 1)) {
            BpeIds two = {0};
            good = bpe_encode(e, text, p, 0, &two) == 0 && bpe_encode(e, text + p, n - p, 0, &two) == 0 &&
                   two.n == whole.n && !memcmp(two.v, whole.v, whole.n * sizeof *whole.v);
            if (!good) diag("text %d: the cut at %zu changes the ids", k, p);
            cuts++;
            cr_tab += text[p] == '\r' || text[p] == '\t';
            bpe_ids_free(&two);
        }
        bpe_ids_free(&whole);
    }
    ok(good && cuts > 1000 && cr_tab > 100, "split points: %d cuts (%d before \\r or \\t) keep the ids", cuts, cr_tab);
}

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(s, f);
        fclose(f);
    }
}

static void test_load_errors(void)
{
    /* a tiny byte-level vocabulary: 256 bytes + "ab" */
    char dir[] = "/tmp/bpe-unit-XXXXXX";
    if (!ok(mkdtemp(dir) != NULL, "temp dir")) return;
    char vp[128], mp[128];
    snprintf(vp, sizeof vp, "%s/vocab.json", dir);
    snprintf(mp, sizeof mp, "%s/merges.txt", dir);
    Bpe b;
    ok(bpe_load(&b, dir) == -1 && strstr(b.err, "vocab.json: No such file or directory"), "missing vocab: %s", b.err);
    bpe_free(&b);
    write_file(vp, "{\"a\": 0, ");
    ok(bpe_load(&b, dir) == -1 && strstr(b.err, "vocab.json: line 1"), "malformed vocab: %s", b.err);
    bpe_free(&b);
    write_file(vp, "{\"a\": 0, \"b\": 1}");
    write_file(mp, "#version: 0.2\na b\n");
    ok(bpe_load(&b, dir) == -1 && strstr(b.err, "no token for byte 0x00"), "not byte-level: %s", b.err);
    bpe_free(&b);
    /* all 256 byte tokens, written in the byte-level alphabet */
    char *v = xmalloc(1 << 16);
    int n = 0, k = 0;
    n += sprintf(v + n, "{");
    for (int c = 0; c < 256; c++) {
        int pr = (c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae);
        unsigned cp = pr ? (unsigned)c : 256u + (unsigned)k++;
        char u[4] = {0};
        if (cp < 0x80) u[0] = (char)cp;
        else { u[0] = (char)(0xc0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3f)); }
        n += sprintf(v + n, "\"%s%s\": %d, ", cp == '"' || cp == '\\' ? "\\" : "", u, c);
    }
    n += sprintf(v + n, "\"ab\": 256}");
    write_file(vp, v);
    write_file(mp, "#version: 0.2\na b\nb c\n");
    ok(bpe_load(&b, dir) == -1 && strstr(b.err, "merges.txt: line 3: the merge 'bc' is not in vocab.json"),
       "merge result missing: %s", b.err);
    bpe_free(&b);
    write_file(mp, "#version: 0.2\na b c\n");
    ok(bpe_load(&b, dir) == -1 && strstr(b.err, "line 2: expected two tokens"), "bad merges line: %s", b.err);
    bpe_free(&b);
    write_file(mp, "#version: 0.2\na b\n");
    BpeEnc e;
    BpeIds ids = {0};
    int rc = bpe_load(&b, dir);
    ok(rc == 0, "a tiny vocabulary loads (%s)", rc ? b.err : "ok");
    if (rc == 0 && bpe_enc_init(&e, &b) == 0) {
        rc = bpe_encode(&e, "abab a", 6, 0, &ids);
        ok(rc == 0 && ids.n == 4 && ids.v[0] == 256 && ids.v[1] == 256 && ids.v[2] == ' ' && ids.v[3] == 'a',
           "tiny vocabulary: 'abab a' -> 256 256 32 97");
        ok(b.eot == -1, "no <|endoftext|> in a vocabulary without it");
        bpe_enc_free(&e);
    }
    bpe_ids_free(&ids);
    bpe_free(&b);
    free(v);
    remove(vp);
    remove(mp);
    rmdir(dir);
}

int main(void)
{
    test_load_errors();
    const char *dir = gpt2_dir();
    if (!dir) {
        printf("ok %d # skip GPT-2 tokenizer files not found ($GPT2_DIR, ../shared/gpt2)\n", ++tap_n);
        return done_testing();
    }
    Bpe b;
    BpeEnc e;
    if (!ok(bpe_load(&b, dir) == 0, "load %s (%s)", dir, b.err)) return done_testing();
    ok(b.V == 50257 && b.n_merges == 50000, "V %zu, %zu merges", b.V, b.n_merges);
    if (bpe_enc_init(&e, &b) < 0) return done_testing();
    test_goldens(&b, &e);
    test_special(&b, &e);
    test_display(&b, &e);
    test_long_paths(&b);
    test_random_bytes(&b, &e);
    test_split_points(&e);
    bpe_enc_free(&e);
    bpe_free(&b);
    return done_testing();
}
