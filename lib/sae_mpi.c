/* sae_mpi.c: comm.h's operations over MPI (Open MPI from Debian). */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sae_mpi.h"
#include "util.h"

/* MPI counts are int: large buffers go in chunks */
#define CHUNK ((size_t)1 << 30)

/* one collective, its wall time added to c->secs */
#define TIMED(c, call) do { double t0_ = MPI_Wtime(); call; (c)->secs += MPI_Wtime() - t0_; } while (0)

static void sum_f32(SpComm *c, float *buf, size_t n)
{
    c->sent += n * sizeof *buf;
    for (size_t o = 0; o < n; o += CHUNK)
        TIMED(c, MPI_Allreduce(MPI_IN_PLACE, buf + o, (int)(n - o < CHUNK ? n - o : CHUNK), MPI_FLOAT, MPI_SUM,
                               MPI_COMM_WORLD));
}

static void sum_f64(SpComm *c, double *buf, size_t n)
{
    c->sent += n * sizeof *buf;
    for (size_t o = 0; o < n; o += CHUNK)
        TIMED(c, MPI_Allreduce(MPI_IN_PLACE, buf + o, (int)(n - o < CHUNK ? n - o : CHUNK), MPI_DOUBLE, MPI_SUM,
                               MPI_COMM_WORLD));
}

static void allgather(SpComm *c, const void *send, size_t bytes, void *recv)
{
    if (bytes > INT_MAX) sp_die("allgather of %zu bytes: more than MPI counts", bytes);
    c->sent += bytes;
    TIMED(c, MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD));
}

static void bcast(SpComm *c, void *buf, size_t bytes)
{
    if (c->rank == 0) c->sent += bytes;
    for (size_t o = 0; o < bytes; o += CHUNK)
        TIMED(c, MPI_Bcast((char *)buf + o, (int)(bytes - o < CHUNK ? bytes - o : CHUNK), MPI_BYTE, 0, MPI_COMM_WORLD));
}

/* int counts and displacements of bytes_of (rank 0) */
static void counts(const SpComm *c, const size_t *bytes_of, int *cnt, int *disp)
{
    size_t off = 0;
    for (int q = 0; q < c->size; q++) {
        if (bytes_of[q] > INT_MAX || off > INT_MAX) sp_die("a part of %zu bytes: more than MPI counts", off);
        cnt[q] = (int)bytes_of[q], disp[q] = (int)off;
        off += bytes_of[q];
    }
}

static void gather(SpComm *c, const void *send, size_t bytes, void *recv, const size_t *bytes_of)
{
    int *cnt = NULL, *disp = NULL;
    c->sent += bytes;
    if (c->rank == 0) {
        cnt = xmalloc(2 * (size_t)c->size * sizeof *cnt), disp = cnt + c->size;
        counts(c, bytes_of, cnt, disp);
    }
    TIMED(c, MPI_Gatherv(send, (int)bytes, MPI_BYTE, recv, cnt, disp, MPI_BYTE, 0, MPI_COMM_WORLD));
    free(cnt);
}

static void scatter(SpComm *c, const void *send, const size_t *bytes_of, void *recv, size_t bytes)
{
    int *cnt = NULL, *disp = NULL;
    if (c->rank == 0) {
        cnt = xmalloc(2 * (size_t)c->size * sizeof *cnt), disp = cnt + c->size;
        counts(c, bytes_of, cnt, disp);
        for (int q = 1; q < c->size; q++) c->sent += bytes_of[q];
    }
    TIMED(c, MPI_Scatterv(send, cnt, disp, MPI_BYTE, recv, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD));
    free(cnt);
}

/* MPI_Op of sp_cand_merge; a row (k candidates) is one element */
static void merge_op(void *in, void *inout, int *len, MPI_Datatype *row)
{
    int bytes;
    MPI_Type_size(*row, &bytes);
    sp_cand_merge(in, inout, (size_t)*len, (size_t)bytes / sizeof(SpCand));
}

static void topk(SpComm *c, SpCand *cand, size_t n, size_t k)
{
    static MPI_Op op = MPI_OP_NULL;
    if (op == MPI_OP_NULL) MPI_Op_create(merge_op, 1, &op);
    if (n > INT_MAX || k * sizeof *cand > INT_MAX) sp_die("top-k of %zu rows of %zu: more than MPI counts", n, k);
    MPI_Datatype row;
    MPI_Type_contiguous((int)(k * sizeof *cand), MPI_BYTE, &row);
    MPI_Type_commit(&row);
    c->sent += n * k * sizeof *cand;
    TIMED(c, MPI_Allreduce(MPI_IN_PLACE, cand, (int)n, row, op, MPI_COMM_WORLD));
    MPI_Type_free(&row);
}

static const SpCommOps mpi_ops = {sum_f32, sum_f64, allgather, bcast, gather, scatter, topk};
static SpComm world;
static int finished;

/* An exit before the end (sp_die, a failed write) takes every rank down:
 * the others would wait in a collective for ever. */
static void abort_at_exit(void)
{
    if (!finished) MPI_Abort(MPI_COMM_WORLD, 1);
}

SpComm *sae_mpi_init(int *argc, char ***argv)
{
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_RANK")) return NULL;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) sp_die("MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
    if (world.size == 1) { /* one rank: the plain run */
        MPI_Finalize();
        return NULL;
    }
    world.ops = &mpi_ops;
    static char prog[384];
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    snprintf(prog, sizeof prog, "%s (rank %d of %d on %s)", sp_prog, world.rank, world.size, host);
    sp_prog = prog;
    atexit(abort_at_exit);
    return &world;
}

void sae_mpi_finish(SpComm *c)
{
    if (!c) return;
    finished = 1;
    MPI_Finalize();
}
