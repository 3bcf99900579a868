/* stream.h: the tensor stream (.tsz), saepipe's one record format.
 * The byte-level specification is man/man5/tsz.5; this is its library.
 *
 * A stream is one or more segments; a segment is a header record, data
 * records, and an end record, each a msgpack map in its own zstd frame
 * (content checksum on). Concatenated streams are streams. A reader holds
 * one record at a time, so memory is bounded by the largest record.
 *
 * Return codes, as htslib writes them down: tsz_read gives 1 for a record,
 * 0 for a clean end (every segment closed by its end record, counts
 * verified), -1 for an error, which is sticky. Messages name the input:
 * "cut.tsz: ends after record 3 without end marker". */
#ifndef SP_STREAM_H
#define SP_STREAM_H

#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#include "dtype.h"
#include "util.h"

#define TSZ_MAX_DIMS 8
#define TSZ_FORMAT_VERSION 1
/* Writers aim records at about this many bytes of tensor data. */
#define TSZ_RECORD_BYTES (4u << 20)
/* Readers refuse records that decompress to more than this. */
#define TSZ_MAX_RECORD_BYTES (1ull << 32)

typedef struct {
    char *name;                     /* owned */
    TszDtype dtype;
    int ndim;
    uint64_t shape[TSZ_MAX_DIMS];
    void *data;                     /* owned, 64-byte aligned, nbytes long, never NULL */
    size_t nbytes;
    size_t cap;                     /* allocated, reused across reads */
} TszTensor;

typedef struct {
    TszTensor *t;                   /* (n) tensors in stream order */
    size_t n, cap;
    json_t *meta;                   /* object of metadata; never NULL after init */
} TszRecord;

void tsz_record_init(TszRecord *r);
/* Forget tensors and metadata but keep the buffers for the next record. */
void tsz_record_clear(TszRecord *r);
void tsz_record_free(TszRecord *r);
/* Add (or replace) a tensor with uninitialised data of the right size. */
TszTensor *tsz_record_add(TszRecord *r, const char *name, TszDtype dt, int ndim,
                          const uint64_t *shape);
/* Same, and copy nbytes of data from src. */
TszTensor *tsz_record_add_copy(TszRecord *r, const char *name, TszDtype dt, int ndim,
                               const uint64_t *shape, const void *src);
TszTensor *tsz_record_get(const TszRecord *r, const char *name); /* NULL if absent */
int tsz_record_remove(TszRecord *r, const char *name);          /* 0 or -1 absent */
uint64_t tsz_tensor_numel(const TszTensor *t);
/* "(8,256) f32" into buf; returns buf. */
const char *tsz_tensor_desc(const TszTensor *t, char *buf, size_t len);

/* ---- reading ---- */
typedef struct TszReader TszReader;

/* Open path ("-" is stdin) and read the first segment's header. Always
 * returns a reader; check tsz_reader_error() (non-NULL means failure). */
TszReader *tsz_reader_open(const char *path);
TszReader *tsz_reader_fdopen(FILE *f, const char *name); /* f not closed */
/* 1 = record read into rec, 0 = clean end, -1 = error (sticky). */
int tsz_read(TszReader *r, TszRecord *rec) SP_RESULT_USED;
const char *tsz_reader_error(const TszReader *r);  /* NULL if no error */
const char *tsz_reader_name(const TszReader *r);
/* Metadata of the first segment's header ({"stage":..., "argv":[...], ...}). */
const json_t *tsz_reader_header(const TszReader *r);
/* Array of the headers of every segment seen so far. */
const json_t *tsz_reader_headers(const TszReader *r);
uint64_t tsz_reader_records(const TszReader *r);   /* data records read so far */
uint64_t tsz_reader_segments(const TszReader *r);
uint64_t tsz_reader_bytes_in(const TszReader *r);  /* compressed bytes consumed */
uint64_t tsz_reader_bytes_out(const TszReader *r); /* decompressed bytes */
void tsz_reader_close(TszReader *r);

/* ---- writing ---- */
typedef struct TszWriter TszWriter;

typedef struct {
    int level;      /* zstd level; default 3 (TSZ_LEVEL env overrides) */
    int shuffle;    /* -1 auto (try both on a sample), 0 never, 1 always */
    int threads;    /* zstd worker threads; 0 = none */
    int async;      /* 1: compress and write each record on a thread of
                     * the writer's own while the caller packs the next
                     * (the same bytes; for large records, e.g. an SAE's
                     * parts: their compression and the kernel's copy go
                     * beside the caller's filling and shuffling) */
} TszWriteOpts;
void tsz_write_opts_default(TszWriteOpts *o);
/* Remove every open writer's temporary file now (unlink only: for a
 * signal handler about to _exit). */
void tsz_unlink_temps_now(void);

/* Open path for writing ("-" is stdout). A named file is written to a
 * temporary name and renamed into place by tsz_writer_close, so a file at
 * path is always whole. stage names the producer in the header; argv goes
 * in the header for provenance. The header is written lazily, so callers
 * may add to it (tsz_writer_header) until the first record. */
TszWriter *tsz_writer_open(const char *path, const char *stage, int argc, char **argv,
                           const TszWriteOpts *opts);
/* The header metadata object, to add keys to before the first write. */
json_t *tsz_writer_header(TszWriter *w);
/* Record the provenance of an input: its headers go under "inputs". */
void tsz_writer_add_input(TszWriter *w, const TszReader *r);
int tsz_write(TszWriter *w, const TszRecord *rec) SP_RESULT_USED;
/* Write the end record, flush, close, rename into place. Frees w. Only
 * call this when all work succeeded. 0 or -1 (message via *err, static
 * storage inside the freed writer is not used: err gets a copy). */
int tsz_writer_close(TszWriter *w, char *err, size_t errlen) SP_RESULT_USED;
/* Put "rows" = rows in the end record: the rows of the stream's row tensor
 * (mlp-tap's acts), so that tsz_file_rows can tell them without reading. */
void tsz_writer_set_rows(TszWriter *w, uint64_t rows);
/* Give up: no end record; a named temp file is removed. Frees w. */
void tsz_writer_abort(TszWriter *w);
const char *tsz_writer_error(const TszWriter *w);
uint64_t tsz_writer_records(const TszWriter *w);
uint64_t tsz_writer_bytes_in(const TszWriter *w);   /* uncompressed */
uint64_t tsz_writer_bytes_out(const TszWriter *w);  /* compressed (async: of the records written so far) */
int tsz_writer_async(const TszWriter *w);           /* its own thread writes */

/* The rows a regular file's end records declare (tsz_writer_set_rows),
 * summed over its segments, read from the end records alone: 1 with
 * *rows, or 0 when that cannot be told (stdin or a pipe, a segment without
 * "rows", bytes that are not what the end records say); the caller then
 * counts by reading. The records are not checked: a reader does that. */
int tsz_file_rows(const char *path, uint64_t *rows);

/* For bin/ mains: die with "prog: <error>" if the reader/writer failed. */
void tsz_reader_check(const TszReader *r);
void tsz_writer_check(const TszWriter *w);
/* Read or die: returns 1 for a record, 0 at the clean end. */
int tsz_read_or_die(TszReader *r, TszRecord *rec);
void tsz_write_or_die(TszWriter *w, const TszRecord *rec);
void tsz_writer_close_or_die(TszWriter *w);

/* Rows per record so that a record carries about TSZ_RECORD_BYTES. */
uint64_t tsz_rows_per_record(uint64_t bytes_per_row);

#endif
