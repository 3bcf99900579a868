/* topk.h: bounded per-feature heaps of examples and exact statistics,
 * built to merge exactly (topk-ctx's collector, topkctx.h, uses them).
 *
 * Every token has a global identity TopkGid (doc, window offset, position
 * in the window's token row), the same in whichever shard it is seen.
 * A TopkHeaps keeps, for each of F features, the cap entries with the
 * smallest (key, gid) ever offered, plus a window of W tokens and
 * activations per entry. Keys are:
 *   top examples:     topk_act_key(activation), larger activation = smaller key
 *   random / bands:   topk_hash(seed, salt, feature, gid), uniform 64 bits,
 *                     so keeping the smallest keys is reservoir sampling.
 * Since "the cap smallest of a union" is the cap smallest of the parts'
 * cap smallest, and ties are broken by the gid, merging shard outputs gives
 * exactly the entries of one run over all shards.
 *
 * Statistics merge exactly too: counts, the max, a histogram with fixed
 * half-octave bins, and the sum of activations in 128-bit fixed point
 * (each value rounded to 2^-32 once, then summed as integers). */
#ifndef SP_TOPK_H
#define SP_TOPK_H

#include <stddef.h>
#include <stdint.h>

typedef struct { int64_t doc, off, t; } TopkGid;

typedef struct {
    uint64_t key;
    TopkGid id;
    uint32_t slot;          /* index of the window in the feature's storage */
} TopkEnt;

typedef struct {
    size_t F, cap, W;
    TopkEnt *ent;           /* (F, cap) max-heap per feature: ent[f*cap] is the worst kept */
    uint32_t *n;            /* (F) entries held */
    int32_t *tok;           /* (F, cap, W) window tokens by slot, -1 = padding */
    float *act;             /* (F, cap, W) this feature's activation on each token */
    int64_t *src;           /* (F, cap, 3) doc, doc offset of the window start, position of the token */
} TopkHeaps;

/* Bytes topk_heaps_init allocates. */
uint64_t topk_heaps_bytes(size_t F, size_t cap, size_t W);
void topk_heaps_init(TopkHeaps *h, size_t F, size_t cap, size_t W);
void topk_heaps_free(TopkHeaps *h);
void topk_heaps_clear(TopkHeaps *h);
/* -1 if (key, id) is refused, else the slot whose window the caller fills. */
long topk_offer(TopkHeaps *h, size_t f, uint64_t key, const TopkGid *id);
/* The slot holding exactly (key, id) for f, or -1. */
long topk_find(const TopkHeaps *h, size_t f, uint64_t key, const TopkGid *id);
/* Would topk_offer accept? Cheap test before building anything. */
int topk_wants(const TopkHeaps *h, size_t f, uint64_t key, const TopkGid *id);
/* The held entries of f, best (smallest) first, into out (cap). Returns n. */
size_t topk_sorted(const TopkHeaps *h, size_t f, TopkEnt *out);
int topk_cmp(uint64_t ka, const TopkGid *a, uint64_t kb, const TopkGid *b);

uint64_t topk_act_key(float v);
uint64_t topk_hash(uint64_t seed, uint64_t salt, uint64_t f, const TopkGid *id);
/* The same in two steps: the part of (seed, salt, f), then the gid's. */
uint64_t topk_hash_prefix(uint64_t seed, uint64_t salt, uint64_t f);
uint64_t topk_hash_gid(uint64_t prefix, const TopkGid *id);

/* Histogram of activations: bin 0 is (0, 2^-12), then half octaves up to
 * 2^11, the last bin [2^11, inf). */
#define TOPK_HIST_BINS 48
size_t topk_hist_bin(float v);
void topk_hist_edges(float *edges);  /* (TOPK_HIST_BINS+1), last is inf */

/* Exact sums: v rounded to a multiple of 2^-32, as a 128-bit integer. */
typedef __int128 TopkSum;
TopkSum topk_fixed(float v);
double topk_sum_double(TopkSum s);

/* log10 density histogram of the dictionary: bins of 0.25 from -8 to 0;
 * densities below 1e-8 go in the first bin, dead features in none. */
#define TOPK_DENS_BINS 32
void topk_density_edges(float *edges); /* (TOPK_DENS_BINS+1) */
size_t topk_density_bin(uint64_t fired, uint64_t tokens);

#endif
