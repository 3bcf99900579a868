/* jsonl.c: one string field of a JSON Lines record (see jsonl.h).
 *
 * The grammar and the limits are jansson 2.14's (src/load.c): whitespace is
 * space, tab, CR and LF; strings take no raw byte below 0x20, only the
 * escapes \" \\ \/ \b \f \n \r \t \uXXXX, a \u surrogate only as a high-low
 * pair, and only valid UTF-8 (no overlong forms, surrogates or code points
 * past U+10FFFF); \u0000 is allowed in values (JSON_ALLOW_NUL) but not in
 * keys; numbers are -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, where an
 * integer that overflows int64 and a real that overflows a double are
 * errors; nothing but whitespace may follow the object. Every check that
 * fails returns -1 inside this file and 0 to the caller. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "jsonl.h"
#include "util.h"

typedef struct {
    const unsigned char *p, *end;
    const char *key;
    size_t keylen;
    JsonlBuf *buf;   /* scratch for the keys, decoded past buf->n and dropped */
    const unsigned char *val, *val_end;   /* the last `key` member seen at the top, if a string: its body */
} Scan;

/* From 4 MB on (a long JSON line's text), the buffer goes on huge pages
 * (xmalloc_aligned): in 4 kB pages, decoding a 20 MB line took 5,000 page
 * faults, a quarter of its time, all before the threads could start on it. */
void jsonl_buf_reserve(JsonlBuf *buf, size_t more)
{
    if (buf->n + more <= buf->cap) return;
    size_t cap = buf->cap ? buf->cap : 1 << 16;
    while (cap < buf->n + more) cap *= 2;
    if (cap < (4u << 20)) {
        buf->v = xrealloc(buf->v, cap);
    } else {
        char *v = xmalloc_aligned(cap);
        if (buf->n) memcpy(v, buf->v, buf->n);
        free(buf->v);
        buf->v = v;
    }
    buf->cap = cap;
}

static void skip_ws(Scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

/* The first byte at or after p that a string cannot copy as it is: '"',
 * '\\', a control byte (< 0x20) or a non-ASCII byte; end if none. Eight
 * bytes at a time: the lowest flagged byte of a word is always a real hit
 * (a borrow only flags bytes above a real one). */
static const unsigned char *plain_end(const unsigned char *p, const unsigned char *end)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t x, q, b;
        memcpy(&x, p, 8);
        q = x ^ (ones * '"');
        b = x ^ (ones * '\\');
        uint64_t hit = (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | x) & high;
        if (hit) return p + (__builtin_ctzll(hit) >> 3);
        p += 8;
    }
    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
    return p;
}

static int hex4(const unsigned char *p, const unsigned char *end, uint32_t *v)
{
    if (end - p < 4) return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') d = (c | 0x20) - 'a' + 10;
        else return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

static size_t utf8_put(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* The escape at p (p[0] == '\\'): its bytes into o, their count in *olen;
 * the escape's length, or 0 if jansson would refuse it. */
static size_t unescape(const unsigned char *p, const unsigned char *end, char *o, size_t *olen)
{
    static const char simple[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
    if (end - p < 2) return 0;
    for (const char *t = simple; *t; t += 2)
        if (p[1] == (unsigned char)t[0]) {
            *o = t[1];
            *olen = 1;
            return 2;
        }
    uint32_t cp, lo;
    if (p[1] != 'u' || hex4(p + 2, end, &cp) < 0) return 0;
    if (cp >= 0xdc00 && cp <= 0xdfff) return 0;   /* a low surrogate first */
    if (cp < 0xd800 || cp > 0xdbff) {
        *olen = utf8_put(cp, o);
        return 6;
    }
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, end, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
        return 0;
    *olen = utf8_put(0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00), o);
    return 12;
}

/* The string at s->p (an opening quote), checked and stepped over. */
static int scan_string(Scan *s)
{
    const unsigned char *p = s->p + 1, *end = s->end;
    for (;;) {
        p = plain_end(p, end);
        if (p == end || *p < 0x20) return -1;
        if (*p >= 0x80) {
            size_t k = bpe_utf8_len(p, (size_t)(end - p));
            if (!k) return -1;
            p += k;
            continue;
        }
        if (*p == '"') break;
        char tmp[4];
        size_t olen, k = unescape(p, end, tmp, &olen);
        if (!k) return -1;
        p += k;
    }
    s->p = p + 1;
    return 0;
}

size_t jsonl_unescape(const char *src, size_t n, char *out, size_t room, size_t *olen)
{
    const unsigned char *p = (const unsigned char *)src, *end = p + n;
    char *o = out;
    while (p < end) {
        size_t left = room - (size_t)(o - out), k;
        if (*p == '\\') {
            char tmp[4];
            size_t m;
            if (!(k = unescape(p, end, tmp, &m)) || m > left) break;
            memcpy(o, tmp, m);
            o += m;
        } else {
            size_t span = (size_t)(end - p) < left ? (size_t)(end - p) : left;
            if (!span) break;
            const unsigned char *q = memchr(p, '\\', span);
            k = q ? (size_t)(q - p) : span;
            memcpy(o, p, k);
            o += k;
        }
        p += k;
    }
    *olen = (size_t)(o - out);
    return (size_t)(p - (const unsigned char *)src);
}

/* The string at s->p, checked, and its decoded bytes appended to buf. */
static int decode_string(Scan *s, JsonlBuf *buf)
{
    const unsigned char *body = s->p + 1;
    if (scan_string(s) < 0) return -1;
    size_t n = (size_t)(s->p - 1 - body), olen;
    jsonl_buf_reserve(buf, n);   /* a decoded string is never longer than its source */
    jsonl_unescape((const char *)body, n, buf->v + buf->n, n, &olen);
    buf->n += olen;
    return 0;
}

static int scan_value(Scan *s, int depth);

static int scan_number(Scan *s)
{
    const unsigned char *p = s->p, *end = s->end, *start = s->p;
#define DIGIT(q) ((q) < end && *(q) >= '0' && *(q) <= '9')
    if (p < end && *p == '-') p++;
    const unsigned char *digits = p;
    if (!DIGIT(p)) return -1;
    if (*p == '0') p++;
    else while (DIGIT(p)) p++;
    if (DIGIT(p)) return -1;   /* a leading zero */
    size_t nint = (size_t)(p - digits);
    int real = 0;
    if (p < end && *p == '.') {
        if (!DIGIT(p + 1)) return -1;
        for (p++; DIGIT(p); p++) {}
        real = 1;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (!DIGIT(p)) return -1;
        while (DIGIT(p)) p++;
        real = 1;
    }
#undef DIGIT
    if (!real && nint > 18) return -1;   /* might overflow int64: jansson decides */
    if (real) {
        /* jansson refuses a real that overflows a double */
        char tmp[64];
        size_t len = (size_t)(p - start);
        if (len >= sizeof tmp) return -1;
        memcpy(tmp, start, len);
        tmp[len] = 0;
        if (isinf(strtod(tmp, NULL))) return -1;
    }
    s->p = p;
    return 0;
}

static int scan_literal(Scan *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n)) return -1;
    s->p += n;
    return 0;
}

/* A member's key: is it s->key? (-1: not a valid key, as a key with a NUL
 * byte is not for jansson.) The key is decoded past buf->n, then dropped. */
static int scan_key(Scan *s, int *match)
{
    JsonlBuf *b = s->buf;
    size_t at = b->n;
    if (decode_string(s, b) < 0) return -1;
    size_t len = b->n - at;
    const char *k = b->v + at;
    b->n = at;
    if (memchr(k, 0, len)) return -1;
    *match = len == s->keylen && !memcmp(k, s->key, len);
    return 0;
}

/* At '{' or '[': steps in; 1 if the container is empty (and steps out). */
static int open_container(Scan *s, unsigned char close)
{
    s->p++;
    skip_ws(s);
    if (s->p == s->end || *s->p != close) return 0;
    s->p++;
    return 1;
}

/* After a member or element: 1 the container closed, 0 a comma (another
 * follows), -1 neither. */
static int next_item(Scan *s, unsigned char close)
{
    skip_ws(s);
    if (s->p == s->end) return -1;
    if (*s->p == close) {
        s->p++;
        return 1;
    }
    if (*s->p++ != ',') return -1;
    skip_ws(s);
    return 0;
}

static int scan_object(Scan *s, int depth)
{
    if (depth > JSONL_MAX_DEPTH) return -1;
    if (open_container(s, '}')) return 0;
    for (;;) {
        int match;
        if (s->p == s->end || *s->p != '"' || scan_key(s, &match) < 0) return -1;
        skip_ws(s);
        if (s->p == s->end || *s->p != ':') return -1;
        s->p++;
        skip_ws(s);
        match = match && depth == 1;
        if (match && s->p < s->end && *s->p == '"') {   /* a repeated key: the last one counts */
            const unsigned char *body = s->p + 1;
            if (scan_string(s) < 0) return -1;
            s->val = body;
            s->val_end = s->p - 1;
        } else {
            if (scan_value(s, depth) < 0) return -1;
            if (match) s->val = NULL;
        }
        int r = next_item(s, '}');
        if (r) return r > 0 ? 0 : -1;
    }
}

static int scan_array(Scan *s, int depth)
{
    if (depth > JSONL_MAX_DEPTH) return -1;
    if (open_container(s, ']')) return 0;
    for (;;) {
        if (scan_value(s, depth) < 0) return -1;
        int r = next_item(s, ']');
        if (r) return r > 0 ? 0 : -1;
    }
}

static int scan_value(Scan *s, int depth)
{
    if (s->p == s->end) return -1;
    switch (*s->p) {
    case '"': return scan_string(s);
    case '{': return scan_object(s, depth + 1);
    case '[': return scan_array(s, depth + 1);
    case 't': return scan_literal(s, "true", 4);
    case 'f': return scan_literal(s, "false", 5);
    case 'n': return scan_literal(s, "null", 4);
    default: return scan_number(s);
    }
}

int jsonl_field_span(const char *line, size_t n, const char *key, size_t keylen, JsonlBuf *scratch, size_t *at,
                     size_t *len)
{
    Scan s = {(const unsigned char *)line, (const unsigned char *)line + n, key, keylen, scratch, NULL, NULL};
    skip_ws(&s);
    int ok = s.p < s.end && *s.p == '{' && scan_object(&s, 1) == 0;
    if (ok) skip_ws(&s);
    if (!ok || s.p != s.end || !s.val) return 0;
    *at = (size_t)((const char *)s.val - line);
    *len = (size_t)(s.val_end - s.val);
    return 1;
}

int jsonl_field(const char *line, size_t n, const char *key, size_t keylen, JsonlBuf *buf)
{
    size_t at, len, olen;
    if (!jsonl_field_span(line, n, key, keylen, buf, &at, &len)) return 0;
    jsonl_buf_reserve(buf, len);
    jsonl_unescape(line + at, len, buf->v + buf->n, len, &olen);
    buf->n += olen;
    return 1;
}

int jsonl_int_members(const char *text, size_t n, JsonlBuf *keys,
                      int (*fn)(void *arg, size_t key_off, size_t key_len, long long value), void *arg)
{
    Scan s = {(const unsigned char *)text, (const unsigned char *)text + n, NULL, 0, keys, NULL, NULL};
    skip_ws(&s);
    if (s.p == s.end || *s.p != '{') return 0;
    int r = open_container(&s, '}');
    while (!r) {
        size_t at = keys->n;
        if (s.p == s.end || *s.p != '"' || decode_string(&s, keys) < 0 || memchr(keys->v + at, 0, keys->n - at)) return 0;
        skip_ws(&s);
        if (s.p == s.end || *s.p++ != ':') return 0;
        skip_ws(&s);
        const unsigned char *v = s.p;
        if (scan_number(&s) < 0) return 0;
        long long x = 0;   /* at most 18 digits (scan_number): no overflow */
        for (const unsigned char *q = v + (*v == '-'); q < s.p; q++) {
            if (*q < '0' || *q > '9') return 0;   /* a real, not an integer */
            x = 10 * x + (*q - '0');
        }
        if (fn(arg, at, keys->n - at, *v == '-' ? -x : x) || (r = next_item(&s, '}')) < 0) return 0;
    }
    skip_ws(&s);
    return s.p == s.end;
}
