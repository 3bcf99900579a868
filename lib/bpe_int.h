/* bpe_int.h: what bpe.c (encoding) and bpe_load.c (the vocabulary and
 * merges) share: the hashes of their tables, the rule lookup, the huge-page
 * allocations. Not part of the library's interface. */
#ifndef SP_BPE_INT_H
#define SP_BPE_INT_H

#include <string.h>

#include "bpe.h"
#include "util.h"

/* ---- hashing ---- */

static inline uint64_t hash_bytes(const char *p, size_t n)
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

static inline size_t hash_pair(uint64_t key, size_t mask)
{
    key *= 0x9e3779b97f4a7c15ull;
    return (size_t)(key >> 29) & mask;
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

/* The load's tables (0.2 to 2 MB each) on huge pages: xmalloc_aligned puts
 * 4 MB and more there. On the shared machine (a VM) a first touch of a 4 kB page
 * costs 10-16 us, so the 1,000-odd pages of these tables took 10 ms of the
 * load, which every run waits for (the threads cannot encode before it);
 * a 2 MB page costs about 150 us. The price: up to 2 MB of memory each. */
static inline void *hmalloc(size_t n) { return xmalloc_aligned(n < (4u << 20) ? (4u << 20) : n); }
static inline void *hcalloc(size_t n, size_t k) { return memset(hmalloc(n * k), 0, n * k); }

#endif
