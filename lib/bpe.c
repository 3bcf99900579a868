/* bpe.c: GPT-2 byte-level BPE (see bpe.h): text to token ids and back with
 * the model bpe_load.c reads in. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_int.h"

/* Pieces longer than this are merged every time instead of cached. */
#define CACHE_MAX_PIECE 128
/* Pieces longer than this are merged through a heap (merge_long). */
#define LONG_PIECE 48
#define CACHE_SLOTS (1u << 17)
#define CACHE_KEY_BYTES (4u << 20)
#define CACHE_TOKS (1u << 20)

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
