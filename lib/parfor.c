/* parfor.c: sp_parfor (see parfor.h). Threads are created per call: a call
 * covers tens of milliseconds of work or more, against ~50 us to start a
 * thread, and no pool means no idle spinning beside OpenBLAS's own. */
#include <cblas.h>
#include <pthread.h>

#include "parfor.h"

enum { PAR_MAX = 64 };

typedef struct {
    SpParBody body;
    void *arg;
    size_t lo, hi;
} ParChunk;

static void *run_chunk(void *p)
{
    ParChunk *c = p;
    c->body(c->arg, c->lo, c->hi);
    return NULL;
}

/* The count is OpenBLAS's at the first call (OPENBLAS_NUM_THREADS, else
 * the cores); OpenBLAS itself is then kept to one thread, so that every
 * sgemm runs on the thread that calls it: sp_gemm's tiles and sp_parfor's
 * chunks are the only parallelism, and their partition never depends on
 * OpenBLAS's choices. */
static int par_threads;
static pthread_once_t par_once = PTHREAD_ONCE_INIT;

static int clamp_threads(int n) { return n < 1 ? 1 : n > PAR_MAX ? PAR_MAX : n; }

static void par_init(void)
{
    par_threads = clamp_threads(openblas_get_num_threads());
    openblas_set_num_threads(1);
}

int sp_par_threads(void)
{
    pthread_once(&par_once, par_init);
    return par_threads;
}

/* At start-up, before any BLAS call, so that no call (an sgemv before the
 * first sp_gemm, say) runs on OpenBLAS's threads. OpenBLAS, a shared
 * library, is initialised before the program's constructors run. */
__attribute__((constructor)) static void par_at_start(void)
{
    sp_par_threads();
}

void sp_par_set_threads(int n)
{
    pthread_once(&par_once, par_init);
    par_threads = clamp_threads(n);
}

void sp_parfor(size_t n, size_t min_chunk, SpParBody body, void *arg)
{
    if (!n) return;
    size_t T = (size_t)sp_par_threads();
    if (min_chunk < 1) min_chunk = 1;
    if (T > n / min_chunk) T = n / min_chunk;
    if (T <= 1) {
        body(arg, 0, n);
        return;
    }
    ParChunk c[PAR_MAX];
    pthread_t th[PAR_MAX];
    size_t started = 1;
    for (size_t k = 0; k < T; k++) c[k] = (ParChunk){body, arg, n * k / T, n * (k + 1) / T};
    for (size_t k = 1; k < T; k++) {
        if (pthread_create(&th[k], NULL, run_chunk, &c[k]) != 0) break; /* run the rest here */
        started++;
    }
    run_chunk(&c[0]);
    for (size_t k = started; k < T; k++) run_chunk(&c[k]);
    for (size_t k = 1; k < started; k++) pthread_join(th[k], NULL);
}
