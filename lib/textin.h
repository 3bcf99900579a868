/* textin.h: open a text input that may be gzip- or zstd-compressed.
 *
 * Public corpora ship as .jsonl.zst or .txt.gz; gpt2-tok reads them as
 * they are. The format is told by the first bytes (not by the name), so a
 * plain file, a pipe or stdin all work, and a compressed stream that is
 * cut short or corrupt is a read error, never silently shorter text. */
#ifndef SAEPIPE_TEXTIN_H
#define SAEPIPE_TEXTIN_H
#include <stdio.h>
#include <sys/types.h>

#include "jsonl.h"

/* A FILE* that yields the decompressed bytes of `f` (taken over: closing
 * the result closes f, unless f is stdin). NULL with a message in err on
 * failure; `what` names the input in it. After reading, ferror() on the
 * result reports a read error or corrupt or truncated compressed data,
 * and textin_error() says which (for the last failure on this thread). */
FILE *textin_open(FILE *f, const char *what, char *err, size_t errlen);
const char *textin_error(void);

/* Lines read a block at a time and handed out in place, where getline()
 * copied each into a buffer of its own; a line longer than the block grows
 * the buffer (on huge pages from 4 MB, see jsonl_buf_reserve). Zeroed to
 * start. */
typedef struct {
    JsonlBuf buf;
    size_t at;          /* the next line starts here (in map when mapped) */
    size_t scanned;     /* buf[at, scanned) has no newline */
    int eof;
    const char *map;    /* the whole file, when textin_lines_map took it */
    size_t map_len;
} TextLines;

/* Lines of f (from textin_open) read from the file mapped whole, when it
 * is a plain regular file: 1 if so, 0 to read it as above. A long line is
 * then neither copied nor held in fresh memory (a 20 MB JSON line grew its
 * buffer to 32 MB, copying as it went, and the kernel zeroing those pages
 * was most of the 100 ms before its text could go to the threads). */
/* name is the file's, for the one-line error when it is cut short while
 * mapped (SIGBUS: the run exits 1, its temporary outputs removed). */
int textin_lines_map(TextLines *r, FILE *f, const char *name);

/* The next line of f, its newline included when it has one, at *line
 * (valid until the next call): its length, 0 at the end, or -1 on a read
 * error (ferror(f)). */
ssize_t textin_line(TextLines *r, FILE *f, const char **line);
void textin_lines_free(TextLines *r);

#endif
