/* parts.h: tensors too large for one record, written as row ranges in
 * part records that follow the record announcing them (tsz(5), "Large
 * tensors"). A record holds at most TSZ_MAX_RECORD_BYTES, and writing or
 * reading one holds a few copies of it; parts bound both by their size.
 *
 * The first record lists the tensors that follow in parts, in the order
 * their parts come:
 *   meta "parts": [{"name":"W_enc","dtype":"f32","shape":[D,F]}, ...]
 * A part record of a first record of kind K has meta {"kind":"K_part",
 * "tensor":name,"row":r} and one tensor of that name holding rows r..r+n-1
 * (shape (n, shape[1..]), same dtype). Each tensor's parts come in row
 * order, without gaps or overlap; the end marker follows the last part.
 * SAE files (sae.h) and sae-fit checkpoints are written this way. */
#ifndef SP_PARTS_H
#define SP_PARTS_H

#include <stddef.h>
#include <stdint.h>

#include "stream.h"

/* Default bytes of tensor data per part record; SAEPIPE_PART_BYTES (a
 * positive integer) overrides it, so tests can split a small file. */
#define TSZ_PART_BYTES (32u << 20)

/* Rows r0..r0+n-1 of a tensor written into dst (n rows, row-major): for
 * tensors held in another layout (sae-fit's transposed encoder). */
typedef void (*TszFillFn)(const void *ctx, uint64_t r0, uint64_t n, void *dst);
/* Rows r0..r0+n-1 read (n rows, row-major, the tensor's dtype) handed on:
 * for tensors kept elsewhere (a sharded sae-fit's, on other ranks). */
typedef void (*TszStoreFn)(const void *ctx, uint64_t r0, uint64_t n, const void *src);

/* One large tensor: what tsz_write_parts writes, or where tsz_read_parts
 * puts what it reads (data; an f32 destination takes any float dtype). */
typedef struct {
    const char *name;
    TszDtype dtype;
    int ndim;                 /* 1 or 2 */
    uint64_t shape[2];
    void *data;               /* row-major; NULL: writing uses fill, reading store */
    TszFillFn fill;
    const void *ctx;          /* of fill and store */
    TszStoreFn store;
} TszBig;

/* The part size in bytes: SAEPIPE_PART_BYTES or TSZ_PART_BYTES. 0 or -1
 * (a bad SAEPIPE_PART_BYTES, message in err). */
int tsz_part_bytes(uint64_t *bytes, char *err, size_t errlen);

/* The largest record tsz_write_parts writes for tensors of these sizes in
 * bytes: the first record's (those of at most part bytes) or a part. */
uint64_t tsz_parts_largest(const uint64_t *bytes, size_t n, uint64_t part);

/* Write first with the tensors of big: those of at most the part size go
 * into first itself, the others are announced in its meta "parts" and
 * follow in part records of kind "<first's kind>_part". first is changed.
 * Memory: about four part sizes beyond the tensors. 0 or -1 with err. */
int tsz_write_parts(TszWriter *w, TszRecord *first, const TszBig *big, size_t n, char *err, size_t errlen);

/* The tensor name of first: itself when inline, else its announcement
 * written into *ann (data NULL: its rows come in parts); NULL if neither. */
const TszTensor *tsz_parts_get(const TszRecord *first, const char *name, TszTensor *ann);

/* After first was read from r: read the part records of every tensor first
 * announces into the entry of big with its name (whose shape the caller has
 * checked against the announcement), then the stream's clean end. -1 with
 * a message naming the input when a part is missing, repeated, out of
 * order, misshapen, or of a tensor big lacks, or a record follows. */
int tsz_read_parts(TszReader *r, const TszRecord *first, const TszBig *big, size_t n, char *err, size_t errlen);
/* The same after checking that first holds or announces every tensor of
 * big with exactly its dtype and shape, and copying those it holds. */
int tsz_read_tensors(TszReader *r, const TszRecord *first, const TszBig *big, size_t n, char *err, size_t errlen);

#endif
