/* topk.c: bounded heaps with windows, keys, hashes, exact statistics.
 * The merge argument is in topk.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "topk.h"
#include "util.h"

uint64_t topk_heaps_bytes(size_t F, size_t cap, size_t W)
{
    return (uint64_t)F * (sizeof(uint32_t) + cap * (sizeof(TopkEnt) + W * (sizeof(int32_t) + sizeof(float)) +
                                                    3 * sizeof(int64_t)));
}

void topk_heaps_init(TopkHeaps *h, size_t F, size_t cap, size_t W)
{
    h->F = F, h->cap = cap, h->W = W;
    size_t slots = F * cap;
    h->ent = xmalloc(slots * sizeof *h->ent + 1);
    h->n = xcalloc(F ? F : 1, sizeof *h->n);
    h->tok = xmalloc(slots * W * sizeof *h->tok + 1);
    h->act = xmalloc(slots * W * sizeof *h->act + 1);
    h->src = xmalloc(slots * 3 * sizeof *h->src + 1);
}

void topk_heaps_free(TopkHeaps *h)
{
    free(h->ent);
    free(h->n);
    free(h->tok);
    free(h->act);
    free(h->src);
    memset(h, 0, sizeof *h);
}

void topk_heaps_clear(TopkHeaps *h)
{
    memset(h->n, 0, (h->F ? h->F : 1) * sizeof *h->n);
}

/* Total order: key, then doc, window offset, position. */
int topk_cmp(uint64_t ka, const TopkGid *a, uint64_t kb, const TopkGid *b)
{
    if (ka != kb) return ka < kb ? -1 : 1;
    if (a->doc != b->doc) return a->doc < b->doc ? -1 : 1;
    if (a->off != b->off) return a->off < b->off ? -1 : 1;
    if (a->t != b->t) return a->t < b->t ? -1 : 1;
    return 0;
}

static int ent_cmp(const TopkEnt *a, const TopkEnt *b)
{
    return topk_cmp(a->key, &a->id, b->key, &b->id);
}

static void sift_down(TopkEnt *e, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && ent_cmp(&e[l], &e[m]) > 0) m = l;
        if (r < n && ent_cmp(&e[r], &e[m]) > 0) m = r;
        if (m == i) return;
        TopkEnt t = e[i];
        e[i] = e[m], e[m] = t;
        i = m;
    }
}

static void sift_up(TopkEnt *e, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (ent_cmp(&e[i], &e[p]) <= 0) return;
        TopkEnt t = e[i];
        e[i] = e[p], e[p] = t;
        i = p;
    }
}

int topk_wants(const TopkHeaps *h, size_t f, uint64_t key, const TopkGid *id)
{
    if (h->cap == 0) return 0;
    if (h->n[f] < h->cap) return 1;
    const TopkEnt *root = &h->ent[f * h->cap];
    return topk_cmp(key, id, root->key, &root->id) < 0;
}

long topk_find(const TopkHeaps *h, size_t f, uint64_t key, const TopkGid *id)
{
    const TopkEnt *e = h->ent + f * h->cap;
    for (size_t i = 0; i < h->n[f]; i++)
        if (!topk_cmp(key, id, e[i].key, &e[i].id)) return (long)e[i].slot;
    return -1;
}

long topk_offer(TopkHeaps *h, size_t f, uint64_t key, const TopkGid *id)
{
    if (!topk_wants(h, f, key, id)) return -1;
    TopkEnt *e = h->ent + f * h->cap;
    if (h->n[f] < h->cap) {
        size_t i = h->n[f]++;
        e[i] = (TopkEnt){key, *id, (uint32_t)i};
        sift_up(e, i);
        return (long)i;
    }
    e[0].key = key, e[0].id = *id;          /* the worst goes; its slot is reused */
    uint32_t slot = e[0].slot;
    sift_down(e, h->n[f], 0);
    return (long)slot;
}

static int qcmp(const void *a, const void *b)
{
    return ent_cmp(a, b);
}

size_t topk_sorted(const TopkHeaps *h, size_t f, TopkEnt *out)
{
    size_t n = h->n[f];
    memcpy(out, h->ent + f * h->cap, n * sizeof *out);
    qsort(out, n, sizeof *out, qcmp);
    return n;
}

/* Order-preserving map of a float onto 32 bits, flipped so that the
 * largest activation has the smallest key. */
uint64_t topk_act_key(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u;
    return (uint64_t)(0xffffffffu - u);
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t topk_hash_prefix(uint64_t seed, uint64_t salt, uint64_t f)
{
    return mix64(mix64(seed ^ mix64(salt)) ^ f);
}

uint64_t topk_hash_gid(uint64_t prefix, const TopkGid *id)
{
    uint64_t h = mix64(prefix ^ (uint64_t)id->doc);
    h = mix64(h ^ (uint64_t)id->off);
    return mix64(h ^ (uint64_t)id->t);
}

uint64_t topk_hash(uint64_t seed, uint64_t salt, uint64_t f, const TopkGid *id)
{
    return topk_hash_gid(topk_hash_prefix(seed, salt, f), id);
}

/* v = m 2^e with m in [0.5, 1): half octave 2(e-1), or 2(e-1)+1 when
 * m >= 1/sqrt(2). Exact, so every run puts a value in the same bin. */
size_t topk_hist_bin(float v)
{
    if (!(v >= 0x1p-12f)) return 0;
    int e;
    float m = frexpf(v, &e);
    long h = 2L * (e - 1) + (m >= 0.70710678f);
    long b = h + 25;
    return b >= TOPK_HIST_BINS - 1 ? TOPK_HIST_BINS - 1 : (size_t)b;
}

void topk_hist_edges(float *edges)
{
    edges[0] = 0;
    for (int b = 1; b < TOPK_HIST_BINS; b++) edges[b] = (float)exp2((b - 25) / 2.0);
    edges[TOPK_HIST_BINS] = INFINITY;
}

TopkSum topk_fixed(float v)
{
    double d = v;
    if (fabs(d) < 0x1p30) return (TopkSum)llrint(d * 0x1p32);
    if (fabs(d) >= 0x1p62) d = d < 0 ? -0x1p62 : 0x1p62;   /* garbage-sized: saturate */
    return (TopkSum)(int64_t)d * ((TopkSum)1 << 32);
}

double topk_sum_double(TopkSum s)
{
    return (double)s * 0x1p-32;
}

void topk_density_edges(float *edges)
{
    for (int b = 0; b <= TOPK_DENS_BINS; b++) edges[b] = -8.0f + 0.25f * (float)b;
}

size_t topk_density_bin(uint64_t fired, uint64_t tokens)
{
    if (!fired || !tokens) return (size_t)-1;
    double b = floor((log10((double)fired / (double)tokens) + 8.0) * 4.0);
    if (b < 0) return 0;
    return b >= TOPK_DENS_BINS ? TOPK_DENS_BINS - 1 : (size_t)b;
}
