/* comm.c: what a latent-sharded run builds on its communicator (comm.h):
 * the global top-k of candidates, and sharded tensors gathered to and
 * scattered from rank 0 in row ranges. No MPI here: only the ops. */
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "util.h"

/* a before b: larger value, or the same and the lower id */
static int cand_before(const SpCand *a, const SpCand *b) { return a->v > b->v || (a->v == b->v && a->j < b->j); }

void sp_cand_merge(const SpCand *a, SpCand *b, size_t n, size_t k)
{
    SpCand buf[64], *out = k <= 64 ? buf : xmalloc(k * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        const SpCand *x = a + i * k, *y = b + i * k;
        size_t p = 0, q = 0;
        for (size_t m = 0; m < k; m++) out[m] = cand_before(&x[p], &y[q]) ? x[p++] : y[q++];
        memcpy(b + i * k, out, k * sizeof *out);
    }
    if (out != buf) free(out);
}

void sp_comm_topk(SpComm *c, SpCand *cand, size_t n, size_t k) { c->ops->topk(c, cand, n, k); }

/* ---- sharded tensors ---- */
enum { REQ_DONE = 0, REQ_GATHER, REQ_STORE };
typedef struct { int32_t op, id; uint64_t lo, hi; } Req;

/* How a run of elements moves: between a rank's local segment and its
 * packed piece (on that rank), or between the piece and the caller's
 * buffer of the range (rank 0, for each rank's piece). */
enum { PACK, UNPACK, PLACE, TAKE };

/* Rank q's share of elements [lo, hi) of the flat tensor, segment by
 * segment, moved per mode between piece and local/buf. The count. A
 * replicated segment is rank 0's to gather, and every rank's to store. */
static size_t walk(const SpShard *s, int q, uint64_t lo, uint64_t hi, int store, int mode, char *piece, char *buf)
{
    size_t es = s->esize, f0, f1, S = 0, tot = 0;
    sp_shard_range(s->F, s->comm->size, q, &f0, &f1);
    for (size_t k = 0; k < s->nseg; k++) {
        const SpSeg *g = &s->seg[k];
        size_t len = g->width ? g->width * s->F : g->count, oa = S, ob = S;
        if (g->width) oa = S + f0 * g->width, ob = S + f1 * g->width;
        else if (q == 0 || store) ob = S + g->count;
        size_t a = oa > lo ? oa : lo, b = ob < hi ? ob : hi;
        if (a < b) {
            size_t nb = (b - a) * es;
            char *loc = (char *)g->local + (a - oa) * es, *pc = piece ? piece + tot * es : NULL;
            char *bf = buf ? buf + (a - lo) * es : NULL;
            if (mode == PACK) memcpy(pc, loc, nb);
            else if (mode == UNPACK) memcpy(loc, pc, nb);
            else if (mode == PLACE) memcpy(bf, pc, nb);
            else if (mode == TAKE) memcpy(pc, bf, nb);
            tot += b - a;
        }
        S += len;
    }
    return tot;
}

/* transposed: rank q's rows [lo, hi) of the (cols, F) tensor, (hi-lo, Fq) */
static size_t walk_t(const SpShard *s, int q, uint64_t lo, uint64_t hi, int mode, float *piece, float *buf)
{
    size_t f0, f1, D = s->seg[0].width;
    sp_shard_range(s->F, s->comm->size, q, &f0, &f1);
    size_t Fq = f1 - f0;
    const float *loc = s->seg[0].local;
    for (uint64_t r = lo; piece && r < hi; r++)
        for (size_t j = 0; j < Fq; j++) {
            if (mode == PACK) piece[(r - lo) * Fq + j] = loc[j * D + r];
            else buf[(r - lo) * s->F + f0 + j] = piece[(r - lo) * Fq + j]; /* PLACE */
        }
    return (size_t)(hi - lo) * Fq;
}

static size_t share(const SpShard *s, int q, const Req *r, int mode, void *piece, void *buf)
{
    return s->transposed ? walk_t(s, q, r->lo, r->hi, mode, piece, buf)
                         : walk(s, q, r->lo, r->hi, r->op == REQ_STORE, mode, piece, buf);
}

/* The collective of request r that every rank joins once rank 0 has
 * broadcast it; buf (rank 0): the rows of the range. */
static void run_req(const SpShard *s, const Req *r, void *buf)
{
    SpComm *c = s->comm;
    size_t es = s->transposed ? sizeof(float) : s->esize, R = (size_t)c->size;
    size_t mine = share(s, c->rank, r, -1, NULL, NULL) * es;
    char *piece = xmalloc(mine ? mine : 1);
    size_t *bytes = NULL, tot = 0;
    char *all = NULL;
    if (c->rank == 0) {
        bytes = xmalloc(R * sizeof *bytes);
        for (size_t q = 0; q < R; q++) tot += bytes[q] = share(s, (int)q, r, -1, NULL, NULL) * es;
        all = xmalloc(tot ? tot : 1);
    }
    if (r->op == REQ_GATHER) {
        share(s, c->rank, r, PACK, piece, NULL);
        c->ops->gather(c, piece, mine, all, bytes);
        for (size_t q = 0, off = 0; c->rank == 0 && q < R; off += bytes[q++])
            share(s, (int)q, r, PLACE, all + off, buf);
    } else {
        for (size_t q = 0, off = 0; c->rank == 0 && q < R; off += bytes[q++])
            share(s, (int)q, r, TAKE, all + off, buf);
        c->ops->scatter(c, all, bytes, piece, mine);
        share(s, c->rank, r, UNPACK, piece, NULL);
    }
    free(piece), free(bytes), free(all);
}

void sp_shard_fill(const void *ctx, uint64_t r0, uint64_t n, void *dst)
{
    const SpShard *s = ctx;
    uint64_t per = s->transposed ? 1 : s->cols;
    Req r = {REQ_GATHER, s->id, r0 * per, (r0 + n) * per};
    s->comm->ops->bcast(s->comm, &r, sizeof r);
    run_req(s, &r, dst);
}

void sp_shard_store(const void *ctx, uint64_t r0, uint64_t n, const void *src)
{
    const SpShard *s = ctx;
    Req r = {REQ_STORE, s->id, r0 * s->cols, (r0 + n) * s->cols};
    s->comm->ops->bcast(s->comm, &r, sizeof r);
    run_req(s, &r, (void *)src);
}

void sp_shard_serve(SpComm *c, SpShard *tab, size_t n)
{
    for (;;) {
        Req r;
        c->ops->bcast(c, &r, sizeof r);
        if (r.op == REQ_DONE) return;
        if (r.id < 0 || (size_t)r.id >= n) sp_die("rank %d: request for shard %d of %zu", c->rank, r.id, n);
        run_req(&tab[r.id], &r, NULL);
    }
}

void sp_shard_done(SpComm *c)
{
    Req r = {REQ_DONE, 0, 0, 0};
    c->ops->bcast(c, &r, sizeof r);
}
