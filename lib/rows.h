/* rows.h: activation rows: the reader of mlp-tap's row layout, and the
 * shuffle buffer and scale that mlp-tap makes them with.
 *
 * Reading: training rows from a tensor stream of `acts` records (tsz(5), kind "acts": a tensor "acts"
 * (N,D) of f32, f16 or bf16). Records without a kind that carry such a
 * tensor are rows too, so `tsz from-npy acts=X.npy` feeds sae-fit as it is.
 *
 * A reader reads one or more files in order as one input (as cat would
 * join them) and holds one record at a time, widened to f32; the caller walks
 * buf by pos up to nrows and asks rows_next for the next record. Return
 * codes as in stream.h: 1 record, 0 clean end, -1 error with the message
 * in r->err ("acts.tsz: record 3 has rows of width 16, earlier ones 32"). */
#ifndef SP_ROWS_H
#define SP_ROWS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "stream.h"

typedef struct {
    const char *const *paths;   /* (npaths) the input files, in order; "-" is stdin */
    size_t npaths, cur;         /* cur: the file being read */
    const char *path, *name;    /* the current file; name: for messages ("-" is "stdin") */
    TszReader *r;               /* the current file's reader */
    TszReader **seen;           /* (nseen) the first pass's readers, kept for provenance */
    size_t nseen;
    int first_pass;
    TszRecord rec;
    float *buf;                 /* (nrows,D) the current record's rows as f32 */
    size_t cap;                 /* floats buf holds */
    size_t nrows, pos, D;       /* D: fixed by the first record */
    uint64_t rec_no;            /* records read from the current file */
    json_t *meta;               /* the first record's meta (owned copy), or NULL */
    json_t *header;             /* the first header (owned copy), or NULL */
    const char *one;            /* rows_open's one path (paths points here: do not copy r) */
    char err[512];
} RowReader;

/* Open path ("-" is stdin), or the n paths read one after the other (paths
 * must outlive r). 0, or -1 with r->err. r is zeroed first. */
int rows_open(RowReader *r, const char *path) SP_RESULT_USED;
int rows_open_list(RowReader *r, const char *const *paths, size_t n) SP_RESULT_USED;
/* Back to the start of the same input (next epoch); meta, header and D are
 * kept, so the rows must have the same width. 0 or -1. */
int rows_rewind(RowReader *r) SP_RESULT_USED;
/* The next record's rows into buf, pos 0. 1, 0 at the clean end, -1. */
int rows_next(RowReader *r) SP_RESULT_USED;
/* Move pos on by n rows, reading records as needed. 0, or -1 when the input
 * ends first (message names how far it got) or fails. */
int rows_skip(RowReader *r, uint64_t n) SP_RESULT_USED;
/* Frees everything; safe on a zeroed or half-opened reader. */
void rows_close(RowReader *r);

/* Record the provenance of what was read (every file's segment headers,
 * those of the first pass and of the current file) under w's "inputs", as
 * tsz_writer_add_input does. */
void rows_add_inputs(const RowReader *r, TszWriter *w);

/* Rows in the whole input, the n paths: what a file's end records declare
 * (tsz_file_rows), else read through, checking every record as rows_next
 * does. 0 or -1 (err). */
int rows_count(const char *const *paths, size_t n, uint64_t *rows, char *err, size_t errlen) SP_RESULT_USED;

/* The rows tensor of one record, or NULL with err "WHAT: record R: ...":
 * the record must be of kind acts and "acts" a float (N,D), D > 0, as
 * sp_kind_check and sp_kind_tensor (kinds.h) see it. */
const TszTensor *rows_check(const TszRecord *rec, const char *what, uint64_t rec_no, char *err,
                            size_t errlen);

/* 1 when all D values of x are finite. */
int rows_finite(const float *x, size_t D);
/* sqrt(D / mean ||x||^2) over n rows of x (D): the scale that gives the rows
 * a mean squared norm of D; 1 when they are all zero. */
double rows_norm_scale(const float *x, size_t n, size_t D);
/* x (n values) *= s, rounded to f32; nothing when s is 1. */
void rows_scale(float *x, size_t n, double s);

/* A shuffle buffer of rows (mlp-tap --shuffle-buffer): the first cap rows
 * fill it; then each new row takes the place of a uniformly chosen one,
 * which leaves through emit; drain leaves what is held in a Fisher-Yates
 * order. With cap 0 rows pass straight through. The output is a
 * permutation of the input, fixed by the RNG's seed. */
typedef void (*RowEmit)(void *ud, const float *row);
typedef struct {
    size_t D;
    uint64_t cap, n;       /* rows the buffer holds, and holds now */
    float *buf;            /* (cap,D) */
    SpRng *rng;
    RowEmit emit;
    void *ud;
} RowShuffle;
void row_shuffle_init(RowShuffle *s, uint64_t cap, size_t D, SpRng *rng, RowEmit emit, void *ud);
void row_shuffle_put(RowShuffle *s, const float *row);
void row_shuffle_drain(RowShuffle *s);
void row_shuffle_free(RowShuffle *s);

#endif
