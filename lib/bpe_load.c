/* bpe_load.c: GPT-2's BPE model read in (see bpe.h): vocab.json, merges.txt
 * and the pre-tokenizer's pattern, into the tables bpe.c encodes with. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bpe_int.h"
#include "jsonl.h"

/* GPT-2's pre-tokenizer, from encoder.py:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \s spelled out as Unicode White_Space (U+0009-000D, U+0085, \p{Z}),
 * which is what Python's regex module (GPT-2's own encoder), tiktoken and
 * Hugging Face tokenizers match; PCRE2's \s also takes U+180E. */
#define WS "\\t-\\r\\x{85}\\p{Z}"
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ---- the byte-level alphabet (encoder.py's bytes_to_unicode) ---- */

/* byte -> code point, and code point (< 324) -> byte or -1 */
static void byte_alphabet(uint32_t enc[256], int16_t dec[324])
{
    int n = 0;
    for (int i = 0; i < 324; i++) dec[i] = -1;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff);
        enc[c] = printable ? (uint32_t)c : (uint32_t)(256 + n++);
        dec[enc[c]] = (int16_t)c;
    }
}

/* Decode a byte-level token string (UTF-8 of alphabet characters) to raw
 * bytes in out (at most as long as s). Returns the length, or -1 if s holds
 * a character outside the alphabet. */
static long unbyte(const int16_t dec[324], const char *s, size_t n, char *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        if (u[i] < 0x80) cp = u[i++];
        else if ((u[i] & 0xe0) == 0xc0 && i + 1 < n) {
            cp = ((uint32_t)(u[i] & 0x1f) << 6) | (u[i + 1] & 0x3f);
            i += 2;
        } else
            return -1;   /* the alphabet stops at U+0143: two bytes at most */
        if (cp >= 324 || dec[cp] < 0) return -1;
        out[o++] = (char)dec[cp];
    }
    return (long)o;
}

/* ---- vocabulary and merges ---- */

static int32_t vocab_find(const Bpe *b, const char *s, size_t n)
{
    size_t mask = b->vcap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = b->vslot[i];
        if (id < 0) return -1;
        size_t len = b->tok_off[id + 1] - b->tok_off[id];
        if (len == n && !memcmp(b->tok_bytes + b->tok_off[id], s, n)) return id;
    }
}

static int index_vocab(Bpe *b, const char *path, int *dup);


/* ---- vocab.json, the fast way ----
 * jansson's tree of 50257 members, walked and freed, took two thirds of
 * gpt2-tok's startup (220M of 330M instructions). jsonl_int_members reads
 * the same JSON in one pass; anything unusual (a malformed file, a repeated
 * key, an id out of range or given twice) is left to the jansson path
 * below, whose result and messages stand. */
typedef struct {
    uint32_t *off, *len;    /* (n) each key in the decoded keys */
    int64_t *id;            /* (n) */
    size_t n, cap;
} VocabScan;

static int vocab_member(void *arg, size_t key_off, size_t key_len, long long value)
{
    VocabScan *v = arg;
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 65536;
        v->off = v->off ? xrealloc(v->off, v->cap * sizeof *v->off) : hmalloc(v->cap * sizeof *v->off);
        v->len = v->len ? xrealloc(v->len, v->cap * sizeof *v->len) : hmalloc(v->cap * sizeof *v->len);
        v->id = v->id ? xrealloc(v->id, v->cap * sizeof *v->id) : hmalloc(v->cap * sizeof *v->id);
    }
    if (key_off > UINT32_MAX || key_len > UINT32_MAX) return -1;
    v->off[v->n] = (uint32_t)key_off;
    v->len[v->n] = (uint32_t)key_len;
    v->id[v->n++] = value;
    return 0;
}

/* 1: b->V, tok_bytes and tok_off are loaded; 0: leave it to jansson. */
static int load_vocab_fast(Bpe *b, const char *path, const int16_t dec[324])
{
    size_t len;
    char *txt = sp_read_file(path, &len);
    if (!txt) return 0;
    JsonlBuf keys = {0};
    VocabScan v = {0};
    int ok = jsonl_int_members(txt, len, &keys, vocab_member, &v) && v.n > 0;
    size_t V = v.n;
    uint32_t *blen = ok ? hcalloc(V, sizeof *blen) : NULL;   /* raw length + 1 by id; 0 = unseen */
    char *raw = ok ? hmalloc(keys.n + 1) : NULL;             /* the raw bytes of every key, in order */
    size_t total = 0;
    for (size_t i = 0; ok && i < V; i++) {
        long n = v.id[i] >= 0 && (size_t)v.id[i] < V && !blen[v.id[i]] ? unbyte(dec, keys.v + v.off[i], v.len[i], raw + total) : -1;
        if (n < 0) ok = 0;
        else blen[v.id[i]] = (uint32_t)n + 1;
        v.off[i] = (uint32_t)total;   /* now: the raw bytes' offset */
        total += n > 0 ? (size_t)n : 0;
    }
    if (ok) {
        b->V = V;
        b->tok_bytes = hmalloc(total + 1);
        b->tok_off = hcalloc(V + 1, sizeof *b->tok_off);
        for (size_t id = 0; id < V; id++) b->tok_off[id + 1] = b->tok_off[id] + blen[id] - 1;
        for (size_t i = 0; i < V; i++)
            memcpy(b->tok_bytes + b->tok_off[v.id[i]], raw + v.off[i], blen[v.id[i]] - 1);
    }
    free(raw);
    free(blen);
    free(v.off);
    free(v.len);
    free(v.id);
    free(keys.v);
    free(txt);
    return ok;
}

static int load_vocab(Bpe *b, const char *path, const int16_t dec[324])
{
    if (load_vocab_fast(b, path, dec)) {
        /* the same bytes twice can only be a repeated key, which jansson
         * would have merged: then its reading stands */
        int dup = 0, rc = index_vocab(b, path, &dup);
        if (!dup) return rc;
        free(b->tok_bytes), free(b->tok_off), free(b->vslot);
        b->tok_bytes = NULL, b->tok_off = NULL, b->vslot = NULL;
        b->V = b->vcap = 0;
    }
    json_error_t je;
    FILE *f = fopen(path, "rb");
    if (!f) return SP_FAIL(b, "%s: %s", path, strerror(errno));
    json_t *root = json_loadf(f, 0, &je);
    fclose(f);
    if (!root) {
        if (je.line < 0) return SP_FAIL(b, "%s: %s", path, je.text);
        return SP_FAIL(b, "%s: line %d: %s", path, je.line, je.text);
    }
    if (!json_is_object(root) || json_object_size(root) == 0) {
        json_decref(root);
        return SP_FAIL(b, "%s: expected a JSON object of token -> id", path);
    }
    size_t V = json_object_size(root), total = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || (size_t)id >= V) {
            json_decref(root);
            return SP_FAIL(b, "%s: token \"%s\": id must be an integer in [0, %zu)", path, key, V);
        }
        total += strlen(key);
    }
    b->V = V;
    b->tok_bytes = xmalloc(total + 1);
    b->tok_off = xcalloc(V + 1, sizeof *b->tok_off);
    /* first pass: lengths by id; second: place the bytes */
    uint32_t *len = xcalloc(V, sizeof *len);
    char *tmp = xmalloc(total + 1);
    int rc = 0;
    json_object_foreach(root, key, val) {
        size_t id = (size_t)json_integer_value(val);
        long n = unbyte(dec, key, strlen(key), tmp);
        if (n < 0) {
            rc = SP_FAIL(b, "%s: token \"%s\" has a character outside GPT-2's byte alphabet", path, key);
            break;
        }
        if (len[id]) {
            rc = SP_FAIL(b, "%s: id %zu is given to two tokens", path, id);
            break;
        }
        len[id] = (uint32_t)n + 1;   /* +1: 0 means unseen */
    }
    for (size_t i = 0; rc == 0 && i < V; i++) {
        if (!len[i]) rc = SP_FAIL(b, "%s: no token has id %zu (ids must be 0..%zu)", path, i, V - 1);
        else b->tok_off[i + 1] = b->tok_off[i] + len[i] - 1;
    }
    if (rc == 0) json_object_foreach(root, key, val) {
        size_t id = (size_t)json_integer_value(val);
        if (unbyte(dec, key, strlen(key), b->tok_bytes + b->tok_off[id]) < 0) rc = -1;
    }
    free(tmp);
    free(len);
    json_decref(root);
    if (rc < 0) return -1;
    int dup = 0;
    return index_vocab(b, path, &dup);
}

/* The lookup table of the loaded tokens, the byte tokens and <|endoftext|>.
 * *dup is set when two tokens have the same bytes. */
static int index_vocab(Bpe *b, const char *path, int *dup)
{
    size_t V = b->V;
    b->vcap = pow2_at_least(2 * V);
    b->vslot = hmalloc(b->vcap * sizeof *b->vslot);
    for (size_t i = 0; i < b->vcap; i++) b->vslot[i] = -1;
    for (size_t id = 0; id < V; id++) {
        const char *s = b->tok_bytes + b->tok_off[id];
        size_t n = b->tok_off[id + 1] - b->tok_off[id];
        size_t mask = b->vcap - 1, i = hash_bytes(s, n) & mask;
        for (; b->vslot[i] >= 0; i = (i + 1) & mask) {   /* vocab_find's probe, then the free slot */
            int32_t o = b->vslot[i];
            if (b->tok_off[o + 1] - b->tok_off[o] == n && !memcmp(b->tok_bytes + b->tok_off[o], s, n)) {
                *dup = 1;
                return SP_FAIL(b, "%s: two tokens have the same bytes (id %zu)", path, id);
            }
        }
        b->vslot[i] = (int32_t)id;
    }
    for (int c = 0; c < 256; c++) {
        char ch = (char)c;
        if ((b->byte_tok[c] = vocab_find(b, &ch, 1)) < 0)
            return SP_FAIL(b, "%s: no token for byte 0x%02x: not a byte-level BPE vocabulary", path, c);
    }
    b->eot = vocab_find(b, BPE_EOT_TEXT, strlen(BPE_EOT_TEXT));
    return 0;
}

/* One merges.txt line "A B" into the table; line is NUL-terminated. */
static int add_merge(Bpe *b, const char *path, size_t lineno, char *line, const int16_t dec[324], size_t rank)
{
    char *sp = strchr(line, ' ');
    if (!sp || sp == line || !sp[1] || strchr(sp + 1, ' '))
        return SP_FAIL(b, "%s: line %zu: expected two tokens separated by one space", path, lineno);
    *sp = 0;
    const char *part[2] = {line, sp + 1};
    int32_t id[2];
    size_t n0 = strlen(part[0]), n1 = strlen(part[1]);
    char stack[256], *raw = n0 + n1 <= sizeof stack ? stack : xmalloc(n0 + n1);   /* 50000 lines: no malloc each */
    long rl[2];
    rl[0] = unbyte(dec, part[0], n0, raw);
    rl[1] = rl[0] < 0 ? -1 : unbyte(dec, part[1], n1, raw + rl[0]);
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        if (rl[k] < 0) rc = SP_FAIL(b, "%s: line %zu: '%s' has a character outside GPT-2's byte alphabet", path,
                                    lineno, part[k]);
        else if ((id[k] = vocab_find(b, k ? raw + rl[0] : raw, (size_t)rl[k])) < 0)
            rc = SP_FAIL(b, "%s: line %zu: token '%s' is not in vocab.json", path, lineno, part[k]);
    }
    int32_t m = rc ? -1 : vocab_find(b, raw, (size_t)(rl[0] + rl[1]));
    if (raw != stack) free(raw);
    if (rc) return -1;
    if (m < 0) return SP_FAIL(b, "%s: line %zu: the merge '%s%s' is not in vocab.json", path, lineno, part[0], part[1]);
    uint64_t key = (uint64_t)(uint32_t)id[0] << 32 | (uint32_t)id[1];
    size_t mask = b->mcap - 1, i = hash_pair(key, mask);
    for (; b->mkey[i] != UINT64_MAX; i = (i + 1) & mask)
        if (b->mkey[i] == key) return 0;   /* a repeated rule keeps its first (lowest) rank */
    b->mkey[i] = key;
    b->mrank[i] = (uint32_t)rank;
    b->mid[i] = m;
    return 0;
}

/* b->ordered: every rule's parts are bytes or made only by earlier rules,
 * so a merge at rank r never creates a pair of rank <= r (merge_long). */
static void check_order(Bpe *b)
{
    int64_t *made = hmalloc(b->V * sizeof *made);   /* latest rank that makes each token */
    for (size_t i = 0; i < b->V; i++) made[i] = -1;
    for (size_t i = 0; i < b->mcap; i++)
        if (b->mkey[i] != UINT64_MAX && made[b->mid[i]] < (int64_t)b->mrank[i]) made[b->mid[i]] = b->mrank[i];
    b->ordered = 1;
    for (size_t i = 0; i < b->mcap; i++) {
        if (b->mkey[i] == UINT64_MAX) continue;
        int64_t r = b->mrank[i];
        if (made[b->mkey[i] >> 32] >= r || made[b->mkey[i] & 0xffffffffu] >= r) b->ordered = 0;
    }
    free(made);
}

static int load_merges(Bpe *b, const char *path, const int16_t dec[324])
{
    size_t len;
    char *txt = sp_read_file(path, &len);
    if (!txt) return SP_FAIL(b, "%s: %s", path, strerror(errno));
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += txt[i] == '\n';
    b->mcap = pow2_at_least(2 * lines);
    b->mkey = hmalloc(b->mcap * sizeof *b->mkey);
    b->mrank = hmalloc(b->mcap * sizeof *b->mrank);
    b->mid = hmalloc(b->mcap * sizeof *b->mid);
    memset(b->mkey, 0xff, b->mcap * sizeof *b->mkey);
    size_t lineno = 0, rank = 0;
    int rc = 0;
    for (char *p = txt; rc == 0 && p < txt + len;) {
        char *nl = memchr(p, '\n', (size_t)(txt + len - p));
        char *end = nl ? nl : txt + len;
        lineno++;
        if (end > p && end[-1] == '\r') end[-1] = 0;
        *end = 0;
        if (memchr(p, 0, (size_t)(end - p))) {
            if (*p) rc = SP_FAIL(b, "%s: line %zu: NUL byte", path, lineno);
        } else if (!(lineno == 1 && !strncmp(p, "#version", 8))) {
            rc = add_merge(b, path, lineno, p, dec, rank++);
        }
        p = end + 1;
    }
    free(txt);
    b->n_merges = rank;
    if (rc == 0) check_order(b);
    if (rc == 0 && rank == 0) return SP_FAIL(b, "%s: no merges", path);
    return rc;
}

static int compile_pattern(Bpe *b)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec,
                                   &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return SP_FAIL(b, "PCRE2 cannot compile the GPT-2 pattern: %s", (char *)msg);
    }
    b->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;   /* interpreted matching still works without */
    b->re = re;
    return 0;
}

int bpe_load_files(Bpe *b, const char *vocab_path, const char *merges_path)
{
    uint32_t enc[256];
    int16_t dec[324];
    memset(b, 0, sizeof *b);
    b->eot = -1;
    byte_alphabet(enc, dec);
    if (load_vocab(b, vocab_path, dec) < 0 || load_merges(b, merges_path, dec) < 0 || compile_pattern(b) < 0)
        return -1;
    return 0;
}

int bpe_load(Bpe *b, const char *dir)
{
    char *v = sp_path_join(dir, "vocab.json"), *m = sp_path_join(dir, "merges.txt");
    int rc = bpe_load_files(b, v, m);
    free(v);
    free(m);
    return rc;
}

void bpe_free(Bpe *b)
{
    free(b->tok_bytes);
    free(b->tok_off);
    free(b->vslot);
    free(b->mkey);
    free(b->mrank);
    free(b->mid);
    if (b->re) pcre2_code_free(b->re);
    memset(b, 0, sizeof *b);
}
