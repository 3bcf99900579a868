/* bpe.c: GPT-2 byte-level BPE (see bpe.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bpe.h"
#include "jsonl.h"

/* GPT-2's pre-tokenizer, from encoder.py:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \s spelled out as Unicode White_Space (U+0009-000D, U+0085, \p{Z}),
 * which is what Python's regex module (GPT-2's own encoder), tiktoken and
 * Hugging Face tokenizers match; PCRE2's \s also takes U+180E. */
#define WS "\\t-\\r\\x{85}\\p{Z}"
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

/* Pieces longer than this are merged every time instead of cached. */
#define CACHE_MAX_PIECE 128
/* Pieces longer than this are merged through a heap (merge_long). */
#define LONG_PIECE 48
#define CACHE_SLOTS (1u << 17)
#define CACHE_KEY_BYTES (4u << 20)
#define CACHE_TOKS (1u << 20)

/* ---- hashing ---- */

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        h = (h ^ x) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t x = 0;
    memcpy(&x, p, n);
    h = (h ^ x) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return h ? h : 1;
}

static size_t hash_pair(uint64_t key, size_t mask)
{
    key *= 0x9e3779b97f4a7c15ull;
    return (size_t)(key >> 29) & mask;
}

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

/* Rank of merging (a, b), UINT32_MAX if there is no such rule. */
static inline uint32_t merge_find(const Bpe *b, int32_t x, int32_t y, int32_t *mid)
{
    uint64_t key = (uint64_t)(uint32_t)x << 32 | (uint32_t)y;
    size_t mask = b->mcap - 1;
    for (size_t i = hash_pair(key, mask);; i = (i + 1) & mask) {
        if (b->mkey[i] == key) {
            *mid = b->mid[i];
            return b->mrank[i];
        }
        if (b->mkey[i] == UINT64_MAX) return UINT32_MAX;
    }
}

static int index_vocab(Bpe *b, const char *path, int *dup);

/* The load's tables (0.2 to 2 MB each) on huge pages: xmalloc_aligned puts
 * 4 MB and more there. On the shared machine (a VM) a first touch of a 4 kB page
 * costs 10-16 us, so the 1,000-odd pages of these tables took 10 ms of the
 * load, which every run waits for (the threads cannot encode before it);
 * a 2 MB page costs about 150 us. The price: up to 2 MB of memory each. */
static void *hmalloc(size_t n) { return xmalloc_aligned(n < (4u << 20) ? (4u << 20) : n); }
static void *hcalloc(size_t n, size_t k) { return memset(hmalloc(n * k), 0, n * k); }

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

/* ---- ids ---- */

void bpe_ids_push(BpeIds *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? 2 * ids->cap : 1024;
        ids->v = xrealloc(ids->v, ids->cap * sizeof *ids->v);
    }
    ids->v[ids->n++] = id;
}

void bpe_ids_append(BpeIds *ids, const int32_t *v, size_t n)
{
    if (ids->n + n > ids->cap) {
        while (ids->n + n > ids->cap) ids->cap = ids->cap ? 2 * ids->cap : 1024;
        ids->v = xrealloc(ids->v, ids->cap * sizeof *ids->v);
    }
    memcpy(ids->v + ids->n, v, n * sizeof *v);
    ids->n += n;
}

void bpe_ids_free(BpeIds *ids)
{
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

/* ---- encoding ---- */

int bpe_enc_init(BpeEnc *e, const Bpe *b)
{
    memset(e, 0, sizeof *e);
    e->b = b;
    e->md = pcre2_match_data_create_from_pattern(b->re, NULL);
    if (!e->md) {
        snprintf(e->err, sizeof e->err, "out of memory for PCRE2 match data");
        return -1;
    }
    /* On huge pages, and the slots written (zeroed) here: calloc's fresh
     * pages were first read by a lookup (the kernel maps its shared zero
     * page) and then written by the insert, and replacing that mapping
     * flushes the TLB of every CPU running the process: with a second
     * thread encoding, ~100 of 2,400 samples of a 2-thread run were those
     * IPIs, none at 1 thread. */
    e->cache_cap = CACHE_SLOTS;
    e->slot = hcalloc(e->cache_cap, sizeof *e->slot);
    e->key_cap = CACHE_KEY_BYTES;
    e->key_arena = hmalloc(e->key_cap);
    e->tok_cap = CACHE_TOKS;
    e->tok_arena = hmalloc(e->tok_cap * sizeof *e->tok_arena);
    e->wcap = 256;
    e->w = xmalloc(e->wcap * sizeof *e->w);
    return 0;
}

void bpe_enc_free(BpeEnc *e)
{
    if (e->md) pcre2_match_data_free(e->md);
    free(e->slot);
    free(e->key_arena);
    free(e->tok_arena);
    free(e->w);
    free(e->san);
    free(e->subst);
    free(e->nx);
    free(e->pv);
    free(e->heap);
    memset(e, 0, sizeof *e);
}

/* encoder.py's bpe(): merge the lowest-ranked adjacent pair, every
 * occurrence left to right, until no pair has a rule. w holds n symbols;
 * returns the new count. */
static size_t merge_word(const Bpe *b, int32_t *w, size_t n)
{
    while (n > 1) {
        uint32_t best = UINT32_MAX;
        int32_t x = 0, y = 0, m = 0, mid;
        for (size_t i = 0; i + 1 < n; i++) {
            uint32_t r = merge_find(b, w[i], w[i + 1], &mid);
            if (r < best) {
                best = r;
                x = w[i];
                y = w[i + 1];
                m = mid;
            }
        }
        if (best == UINT32_MAX) break;
        size_t j = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && w[i] == x && w[i + 1] == y) {
                w[j++] = m;
                i += 2;
            } else {
                w[j++] = w[i++];
            }
        }
        n = j;
    }
    return n;
}

/* The same result for long pieces in O(n log n): pop the lowest (rank,
 * position) pair, merge it, push the two new neighbour pairs. Equal ranks
 * pop left to right, as encoder.py's pass merges them, and a merge made at
 * rank r only creates pairs of rank > r when every rule's parts were made
 * by earlier rules (b->ordered, checked at load; true of trained BPE such
 * as GPT-2's), so the pops follow encoder.py's order exactly. Entries made
 * stale by a neighbour's merge are recognised and skipped on pop. */
static void heap_push(uint64_t *h, size_t *n, uint64_t x)
{
    size_t i = (*n)++;
    while (i && h[(i - 1) / 2] > x) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= x) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

static size_t merge_long(BpeEnc *e, size_t n)
{
    const Bpe *b = e->b;
    int32_t *w = e->w, *nx = e->nx, *pv = e->pv, mid;
    size_t nh = 0, left = n;
    for (size_t i = 0; i < n; i++) {
        nx[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        pv[i] = (int32_t)i - 1;
        uint32_t r = i + 1 < n ? merge_find(b, w[i], w[i + 1], &mid) : UINT32_MAX;
        if (r != UINT32_MAX) heap_push(e->heap, &nh, (uint64_t)r << 32 | i);
    }
    while (nh) {
        uint64_t top = heap_pop(e->heap, &nh);
        uint32_t r = (uint32_t)(top >> 32);
        int32_t p = (int32_t)(uint32_t)top, q = nx[p];
        /* stale: p was merged away (w[p] < 0), is last, or its pair changed */
        if (w[p] < 0 || q < 0 || merge_find(b, w[p], w[q], &mid) != r) continue;
        w[p] = mid;
        w[q] = -1;
        nx[p] = nx[q];
        if (nx[q] >= 0) pv[nx[q]] = p;
        left--;
        if (pv[p] >= 0 && (r = merge_find(b, w[pv[p]], w[p], &mid)) != UINT32_MAX)
            heap_push(e->heap, &nh, (uint64_t)r << 32 | (uint32_t)pv[p]);
        if (nx[p] >= 0 && (r = merge_find(b, w[p], w[nx[p]], &mid)) != UINT32_MAX)
            heap_push(e->heap, &nh, (uint64_t)r << 32 | (uint32_t)p);
    }
    size_t j = 0;
    for (int32_t p = 0; p >= 0; p = nx[p]) w[j++] = w[p];
    (void)left;
    return j;
}

static void cache_clear(BpeEnc *e)
{
    memset(e->slot, 0, e->cache_cap * sizeof *e->slot);
    e->cache_n = e->key_n = e->tok_n = 0;
}

static void encode_piece(BpeEnc *e, const char *p, size_t n, BpeIds *out)
{
    const Bpe *b = e->b;
    if (n == 1) {
        bpe_ids_push(out, b->byte_tok[(unsigned char)*p]);
        return;
    }
    uint64_t h = 0;
    size_t mask = e->cache_cap - 1, i = 0;
    if (n <= CACHE_MAX_PIECE) {
        h = hash_bytes(p, n);
        for (i = h & mask; e->slot[i].h; i = (i + 1) & mask) {
            const BpeCacheSlot *s = &e->slot[i];
            if (s->h == h && s->key_len == n && !memcmp(e->key_arena + s->key_off, p, n)) {
                e->hits++;
                bpe_ids_append(out, e->tok_arena + s->tok_off, s->ntok);
                return;
            }
        }
    }
    e->misses++;
    if (n > e->wcap) {
        while (n > e->wcap) e->wcap *= 2;
        e->w = xrealloc(e->w, e->wcap * sizeof *e->w);
    }
    for (size_t k = 0; k < n; k++) e->w[k] = b->byte_tok[(unsigned char)p[k]];
    size_t m;
    if (n > LONG_PIECE && b->ordered) {
        if (n > e->lcap) {
            e->lcap = n;
            e->nx = xrealloc(e->nx, n * sizeof *e->nx);
            e->pv = xrealloc(e->pv, n * sizeof *e->pv);
            e->heap = xrealloc(e->heap, 3 * n * sizeof *e->heap);   /* n-1 pairs + 2 per merge */
        }
        m = merge_long(e, n);
    } else {
        m = merge_word(b, e->w, n);
    }
    bpe_ids_append(out, e->w, m);
    if (!h) return;
    if (2 * (e->cache_n + 1) > e->cache_cap || e->key_n + n > e->key_cap || e->tok_n + m > e->tok_cap) {
        cache_clear(e);
        for (i = h & mask; e->slot[i].h; i = (i + 1) & mask) {}
    }
    e->slot[i] = (BpeCacheSlot){h, (uint32_t)e->key_n, (uint32_t)n, (uint32_t)e->tok_n, (uint32_t)m};
    memcpy(e->key_arena + e->key_n, p, n);
    memcpy(e->tok_arena + e->tok_n, e->w, m * sizeof *e->w);
    e->key_n += n;
    e->tok_n += m;
    e->cache_n++;
}

size_t bpe_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xc2 || c > 0xf4) return 0;
    size_t need = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (n < need) return 0;
    for (size_t k = 1; k < need; k++)
        if ((s[k] & 0xc0) != 0x80) return 0;
    if (c == 0xe0 && s[1] < 0xa0) return 0;   /* overlong */
    if (c == 0xed && s[1] > 0x9f) return 0;   /* surrogate */
    if (c == 0xf0 && s[1] < 0x90) return 0;   /* overlong */
    if (c == 0xf4 && s[1] > 0x8f) return 0;   /* > U+10FFFF */
    return need;
}

/* Offset of the first invalid UTF-8 byte in s, or n if all valid. */
static size_t utf8_first_invalid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t x;
            memcpy(&x, u + i, 8);
            if (!(x & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        size_t k = bpe_utf8_len(u + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

/* Copy s into e->san with every invalid byte B replaced by the private-use
 * character U+E000+B (3 bytes), which the pattern classes like an invalid
 * byte under surrogateescape: not a letter, number or space. e->subst gets
 * the sanitized offsets of the replacements, in order. Returns how many. */
static size_t sanitize(BpeEnc *e, const char *s, size_t n, size_t first_bad)
{
    if (3 * n > e->san_cap) {
        e->san_cap = 3 * n;
        e->san = xrealloc(e->san, e->san_cap);
    }
    memcpy(e->san, s, first_bad);
    size_t o = first_bad, ns = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = first_bad; i < n;) {
        size_t k = bpe_utf8_len(u + i, n - i);
        if (k) {
            memcpy(e->san + o, s + i, k);
            o += k;
            i += k;
            continue;
        }
        if (ns == e->subst_cap) {
            e->subst_cap = e->subst_cap ? 2 * e->subst_cap : 64;
            e->subst = xrealloc(e->subst, e->subst_cap * sizeof *e->subst);
        }
        e->subst[ns++] = o;
        uint32_t cp = 0xe000u + u[i++];
        e->san[o++] = (char)(0xe0 | (cp >> 12));
        e->san[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        e->san[o++] = (char)(0x80 | (cp & 0x3f));
    }
    return ns;
}

/* Pre-tokenize and encode one segment (no special tokens in it). */
static int encode_segment(BpeEnc *e, const char *s, size_t n, BpeIds *out)
{
    if (!n) return 0;
    size_t bad = utf8_first_invalid(s, n), nsub = 0, k = 0;
    const char *subj = s;
    size_t sn = n;
    if (bad < n) {
        nsub = sanitize(e, s, n, bad);
        subj = e->san;
        sn = n + 2 * nsub;
    }
    pcre2_code *re = e->b->re;
    pcre2_match_data *md = e->md;
    size_t off = 0, orig = 0;   /* sanitized and original offsets of the next piece */
    while (off < sn) {
        /* pcre2_jit_match: the JIT code without pcre2_match's per-call checks
         * and setup, which cost 40% as much again as the matching (the
         * subject is valid UTF-8 here, so nothing is left unchecked) */
        int rc = e->b->jit ? pcre2_jit_match(re, (PCRE2_SPTR)subj, sn, off, 0, md, NULL)
                           : pcre2_match(re, (PCRE2_SPTR)subj, sn, off, PCRE2_NO_UTF_CHECK, md, NULL);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (rc < 0 || ov[0] != off || ov[1] <= off) {
            snprintf(e->err, sizeof e->err, "pre-tokenizer: no match at byte %zu (PCRE2 code %d)", orig, rc);
            return -1;
        }
        size_t end = ov[1], oend = end;
        while (k < nsub && e->subst[k] < end) k++;
        oend = end - 2 * k;   /* each replacement is 2 bytes longer than its byte */
        encode_piece(e, s + orig, oend - orig, out);
        off = end;
        orig = oend;
    }
    return 0;
}

int bpe_encode(BpeEnc *e, const char *text, size_t n, int flags, BpeIds *out)
{
    const Bpe *b = e->b;
    if ((flags & BPE_NO_SPECIAL) || b->eot < 0) return encode_segment(e, text, n, out);
    const size_t L = sizeof BPE_EOT_TEXT - 1;
    const char *p = text, *end = text + n, *q;
    while ((q = memmem(p, (size_t)(end - p), BPE_EOT_TEXT, L))) {
        if (encode_segment(e, p, (size_t)(q - p), out) < 0) return -1;
        bpe_ids_push(out, b->eot);
        p = q + L;
    }
    return encode_segment(e, p, (size_t)(end - p), out);
}

/* A byte at a time: in prose a point comes within a word or two, and a
 * search by memchr for the next space rescanned the rest of the text at
 * every newline that was no point (quadratic in the text). */
size_t bpe_split_point(const char *text, size_t n, size_t from)
{
    for (size_t p = from ? from : 1; p < n; p++)
        if ((text[p] == ' ' || (text[p] >= '\t' && text[p] <= '\r')) && text[p - 1] > ' ' && text[p - 1] < 0x7f)
            return p;
    return n;
}

/* ---- decoding ---- */

const char *bpe_token_bytes(const Bpe *b, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= b->V) return NULL;
    *len = b->tok_off[id + 1] - b->tok_off[id];
    return b->tok_bytes + b->tok_off[id];
}

int bpe_decode(const Bpe *b, const int32_t *ids, size_t n, char *buf, size_t cap, size_t *len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        const char *s = bpe_token_bytes(b, ids[i], &k);
        if (!s) {
            *len = i;
            return -1;
        }
        if (o < cap) memcpy(buf + o, s, o + k <= cap ? k : cap - o);
        o += k;
    }
    *len = o;
    return 0;
}

size_t bpe_token_display(const Bpe *b, int32_t id, char *buf, size_t cap)
{
    size_t n, o = 0;
    const unsigned char *s = (const unsigned char *)bpe_token_bytes(b, id, &n);
    if (!s) return (size_t)snprintf(buf, cap, "<bad:%ld>", (long)id);
    char tmp[8];
    for (size_t i = 0; i < n;) {
        size_t k = bpe_utf8_len(s + i, n - i), t;
        const char *piece = tmp;
        if (k > 1) {
            piece = (const char *)s + i;
            t = k;
        } else if (k == 1 && s[i] >= 0x20 && s[i] != 0x7f) {
            piece = (const char *)s + i;
            t = 1;
        } else if (k == 1 && (s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) {
            t = (size_t)snprintf(tmp, sizeof tmp, "\\%c", s[i] == '\n' ? 'n' : s[i] == '\t' ? 't' : 'r');
        } else {
            t = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", s[i]);
        }
        i += k ? k : 1;
        if (o + t < cap) memcpy(buf + o, piece, t);
        else if (o < cap) cap = o + 1;   /* stop writing at a character boundary */
        o += t;
    }
    if (cap) buf[o < cap ? o : cap - 1] = 0;
    return o;
}
