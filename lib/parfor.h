/* parfor.h: a parallel loop over an index range on plain pthreads, with as
 * many threads as OPENBLAS_NUM_THREADS says, so "the thread count" stays
 * one knob. Chunks are contiguous and fixed by (n, threads):
 * a body that writes only its own indices, or reduces within one index,
 * gives the same bytes on every run and for every thread count. */
#ifndef SP_PARFOR_H
#define SP_PARFOR_H

#include <stddef.h>

typedef void (*SpParBody)(void *arg, size_t lo, size_t hi);

/* The threads sp_parfor and sp_gemm use: OPENBLAS_NUM_THREADS, else the
 * cores (OpenBLAS's count at the first call, which then leaves OpenBLAS
 * itself single-threaded); at least 1. */
int sp_par_threads(void);
/* Set that count (tests, benchmarks). */
void sp_par_set_threads(int n);
/* body(arg, lo, hi) over [0, n) in up to sp_par_threads() chunks of at least
 * min_chunk indices; the calling thread runs the first chunk. Returns when
 * every chunk is done. */
void sp_parfor(size_t n, size_t min_chunk, SpParBody body, void *arg);

#endif
