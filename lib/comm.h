/* comm.h: the ranks of a latent-sharded sae-fit (mpirun -np R sae-fit):
 * the collectives the trainer needs, the split of F latents into R
 * contiguous ranges, and tensors whose latent rows live on all ranks,
 * written and read by rank 0 alone (row ranges gathered from or scattered
 * to the others as parts.h asks for them).
 *
 * SpComm is an interface: lib/sae_mpi.c implements it over MPI, and only
 * sae-fit links that (and libmpi); the trainer calls through ops, so a
 * trainer without a communicator (comm NULL) never touches MPI. Every rank
 * makes the same collective calls in the same order. */
#ifndef SP_COMM_H
#define SP_COMM_H

#include <stddef.h>
#include <stdint.h>

typedef struct SpComm SpComm;

/* A candidate latent of a row: its value and its global id. */
typedef struct { float v; uint32_t j; } SpCand;

typedef struct {
    /* sum over ranks, in place; every rank gets the same bytes */
    void (*sum_f32)(SpComm *c, float *buf, size_t n);
    void (*sum_f64)(SpComm *c, double *buf, size_t n);
    /* every rank's `bytes` into recv (size * bytes), rank order */
    void (*allgather)(SpComm *c, const void *send, size_t bytes, void *recv);
    /* rank 0's buf to every rank */
    void (*bcast)(SpComm *c, void *buf, size_t bytes);
    /* rank q's bytes_of[q] bytes into rank 0's recv, rank order (recv and
     * bytes_of only on rank 0) */
    void (*gather)(SpComm *c, const void *send, size_t bytes, void *recv, const size_t *bytes_of);
    /* rank 0's send, bytes_of[q] bytes to rank q in rank order, into recv */
    void (*scatter)(SpComm *c, const void *send, const size_t *bytes_of, void *recv, size_t bytes);
    /* cand (n rows of k) becomes every rank's merged by sp_cand_merge: an
     * all-reduce, so a rank sends and receives about 2 n k candidates
     * whatever the number of ranks */
    void (*topk)(SpComm *c, SpCand *cand, size_t n, size_t k);
} SpCommOps;

struct SpComm {
    int rank, size;
    const SpCommOps *ops;
    uint64_t sent;          /* bytes this rank passed to the collectives, */
    double secs;            /* and seconds spent in them (sae-fit --progress) */
};

/* Latents [*f0, *f1) of F are rank r's of R. */
static inline void sp_shard_range(size_t F, int R, int r, size_t *f0, size_t *f1)
{
    *f0 = (size_t)((uint64_t)F * (uint64_t)r / (uint64_t)R);
    *f1 = (size_t)((uint64_t)F * (uint64_t)(r + 1) / (uint64_t)R);
}

/* The global k best of each of n rows: cand holds this rank's k best of
 * each row, largest first (padded with v = -INFINITY), and gets every
 * rank's lists merged (ops->topk). */
void sp_comm_topk(SpComm *c, SpCand *cand, size_t n, size_t k);
/* b = the k best of a and b, row by row (n rows of k, each largest first),
 * largest first, ties to the lower id: sae_topk_row's order, so the merged
 * set is the one an unsharded trainer picks, and the merge is associative
 * and commutative (the reduction's order does not matter). */
void sp_cand_merge(const SpCand *a, SpCand *b, size_t n, size_t k);

/* A tensor spread over the ranks: segments one after another in a flat
 * element order; a segment of width w holds w elements per latent (rank q
 * has latents [f0, f1) of F in local), one of width 0 holds count elements
 * every rank keeps the same (rank 0's are written). transposed: one
 * segment (F, cols) held per latent, the tensor being its transpose
 * (cols, F), as the SAE's W_enc. cols: elements per row of the tensor as
 * written (1 for a vector). id: its index in the table sp_shard_serve is
 * given, the same on every rank. */
typedef struct { size_t width, count; void *local; } SpSeg;
typedef struct {
    SpComm *comm;
    size_t F, esize, cols, nseg;
    int transposed, id;
    SpSeg seg[4];
} SpShard;

/* parts.h's TszFillFn and TszStoreFn on rank 0, ctx an SpShard: rows of
 * the tensor gathered from the ranks, or scattered to them. */
void sp_shard_fill(const void *ctx, uint64_t r0, uint64_t n, void *dst);
void sp_shard_store(const void *ctx, uint64_t r0, uint64_t n, const void *src);
/* Ranks but 0: answer rank 0's fills and stores on tab (n, the table rank
 * 0 uses) until rank 0 calls sp_shard_done. */
void sp_shard_serve(SpComm *c, SpShard *tab, size_t n);
void sp_shard_done(SpComm *c);

#endif
