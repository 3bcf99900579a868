/* compare_expl.c: duplicate explanations within a dictionary: exact (same
 * normalised text, found by sorting) and near (word-set Jaccard >= t,
 * found by prefix filtering: two sets with Jaccard >= t share a word among
 * the first |x| - ceil(t |x|) + 1 of each, words ordered rarest first, so
 * only pairs sharing such a word are compared). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"

char *cmp_norm_text(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *t = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isspace(ch)) {
            if (o && t[o - 1] != ' ') t[o++] = ' ';
        } else {
            t[o++] = (char)tolower(ch);
        }
    }
    while (o && (t[o - 1] == ' ' || t[o - 1] == '.')) o--;
    t[o] = 0;
    return t;
}

/* ---- words to ids: an open-addressing table of strings ---- */
typedef struct { char **key; int32_t *id; size_t cap, n; } WordTab;

static uint64_t fnv(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void tab_grow(WordTab *t);

static int32_t word_id(WordTab *t, const char *w, size_t len)
{
    if (2 * (t->n + 1) > t->cap) tab_grow(t);
    size_t at = fnv(w, len) & (t->cap - 1);
    while (t->key[at]) {
        if (!strncmp(t->key[at], w, len) && !t->key[at][len]) return t->id[at];
        at = (at + 1) & (t->cap - 1);
    }
    t->key[at] = xmalloc(len + 1);
    memcpy(t->key[at], w, len), t->key[at][len] = 0;
    return t->id[at] = (int32_t)t->n++;
}

static void tab_grow(WordTab *t)
{
    WordTab g = {xcalloc(t->cap ? 2 * t->cap : 1024, sizeof *g.key), NULL, t->cap ? 2 * t->cap : 1024, 0};
    g.id = xmalloc(g.cap * sizeof *g.id);
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->key[i]) continue;
        size_t at = fnv(t->key[i], strlen(t->key[i])) & (g.cap - 1);
        while (g.key[at]) at = (at + 1) & (g.cap - 1);
        g.key[at] = t->key[i], g.id[at] = t->id[i];
    }
    g.n = t->n;
    free(t->key), free(t->id);
    *t = g;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Word sets as CSR: ids of text i in w[ptr[i]..ptr[i+1]), ascending, unique. */
typedef struct { int64_t *ptr; int32_t *w; size_t nw; } WordSets;

static void word_sets(WordSets *ws, char *const *s, size_t n)
{
    WordTab t = {0};
    size_t cap = 1024, nnz = 0;
    ws->ptr = xcalloc(n + 1, sizeof *ws->ptr), ws->w = xmalloc(cap * sizeof *ws->w);
    char buf[256];
    for (size_t i = 0; i < n; i++) {
        const char *p = s[i] ? s[i] : "";
        while (*p) {
            if (!isalnum((unsigned char)*p)) { p++; continue; }
            size_t len = 0;
            for (; isalnum((unsigned char)*p); p++)
                if (len < sizeof buf) buf[len++] = (char)tolower((unsigned char)*p);
            if (nnz == cap) ws->w = xrealloc(ws->w, (cap *= 2) * sizeof *ws->w);
            ws->w[nnz++] = word_id(&t, buf, len);
        }
        size_t b = (size_t)ws->ptr[i], m = nnz - b, u = 0;
        qsort(ws->w + b, m, sizeof *ws->w, cmp_i32);
        for (size_t k = 0; k < m; k++)
            if (!u || ws->w[b + k] != ws->w[b + u - 1]) ws->w[b + u++] = ws->w[b + k];
        nnz = b + u;
        ws->ptr[i + 1] = (int64_t)nnz;
    }
    ws->nw = t.n;
    for (size_t i = 0; i < t.cap; i++) free(t.key[i]);
    free(t.key), free(t.id);
}

static size_t overlap(const int32_t *x, size_t nx, const int32_t *y, size_t ny)
{
    size_t i = 0, j = 0, o = 0;
    while (i < nx && j < ny) {
        if (x[i] == y[j]) o++, i++, j++;
        else if (x[i] < y[j]) i++;
        else j++;
    }
    return o;
}

/* ordering of a set's words for the prefix: rarest first (df: counts), then by id */
static int cmp_rare(const void *a, const void *b, void *df_)
{
    const int64_t *df = df_;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (df[x] != df[y]) return df[x] < df[y] ? -1 : 1;
    return (x > y) - (x < y);
}

/* An inverted list per word: the texts indexed so far whose prefix holds it. */
typedef struct { int32_t *v; size_t n, cap; } IdList;

static void near_pairs(const WordSets *ws, size_t n, double t, int32_t *dup_near)
{
    int64_t *df = xcalloc(ws->nw + 1, sizeof *df);
    for (size_t k = 0; k < (size_t)ws->ptr[n]; k++) df[ws->w[k]]++;
    IdList *inv = xcalloc(ws->nw + 1, sizeof *inv);
    int32_t *stamp = xmalloc(n * sizeof *stamp + 1), *pre = xmalloc((size_t)ws->ptr[n] * sizeof *pre + 1);
    for (size_t i = 0; i < n; i++) stamp[i] = -1;
    memcpy(pre, ws->w, (size_t)ws->ptr[n] * sizeof *pre);
    for (size_t x = 0; x < n; x++) {
        size_t sx = (size_t)(ws->ptr[x + 1] - ws->ptr[x]);
        if (!sx) continue;
        int32_t *px = pre + ws->ptr[x];
        qsort_r(px, sx, sizeof *px, cmp_rare, df);
        size_t p = sx - (size_t)ceil(t * (double)sx - 1e-9) + 1;
        for (size_t k = 0; k < p && k < sx; k++) {
            IdList *l = &inv[px[k]];
            for (size_t q = 0; q < l->n; q++) {
                int32_t y = l->v[q];
                size_t sy = (size_t)(ws->ptr[y + 1] - ws->ptr[y]);
                if (stamp[y] == (int32_t)x || (dup_near[x] >= 0 && dup_near[y] >= 0)) continue;
                stamp[y] = (int32_t)x;
                if ((double)sy < t * (double)sx - 1e-9 || (double)sx < t * (double)sy - 1e-9) continue;
                size_t o = overlap(ws->w + ws->ptr[x], sx, ws->w + ws->ptr[y], sy);
                if ((double)o < t * (double)(sx + sy - o) - 1e-9) continue;
                if (dup_near[x] < 0) dup_near[x] = y;
                if (dup_near[y] < 0) dup_near[y] = (int32_t)x;
            }
            if (l->n == l->cap) l->v = xrealloc(l->v, (l->cap = l->cap * 2 + 4) * sizeof *l->v);
            l->v[l->n++] = (int32_t)x;
        }
    }
    for (size_t w = 0; w <= ws->nw; w++) free(inv[w].v);
    free(inv), free(df), free(stamp), free(pre);
}

/* sort order of normalised texts: by text, then index */
static int cmp_norm(const void *a, const void *b, void *norm_)
{
    char **norm = norm_;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    int c = strcmp(norm[x], norm[y]);
    return c ? c : (x > y) - (x < y);
}

void cmp_duplicates(char *const *s, size_t n, double t, int32_t *dup_exact, int32_t *dup_near)
{
    char **norm = xcalloc(n + 1, sizeof *norm);
    int32_t *ord = xmalloc(n * sizeof *ord + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        dup_exact[i] = dup_near[i] = -1;
        if (s[i]) norm[i] = cmp_norm_text(s[i]), ord[m++] = (int32_t)i;
    }
    qsort_r(ord, m, sizeof *ord, cmp_norm, norm);
    for (size_t a = 0, b; a < m; a = b) {
        for (b = a + 1; b < m && !strcmp(norm[ord[a]], norm[ord[b]]); b++) {}
        if (b - a < 2) continue;
        // the lowest index of the run is ord[a]; its own lowest other is ord[a+1]
        for (size_t k = a; k < b; k++) dup_exact[ord[k]] = ord[k == a ? a + 1 : a];
    }
    for (size_t i = 0; i < n; i++) dup_near[i] = dup_exact[i];
    WordSets ws;
    word_sets(&ws, s, n);
    near_pairs(&ws, n, t, dup_near);
    free(ws.ptr), free(ws.w);
    for (size_t i = 0; i < n; i++) free(norm[i]);
    free(norm), free(ord);
}
