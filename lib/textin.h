/* textin.h: open a text input that may be gzip- or zstd-compressed.
 *
 * Public corpora ship as .jsonl.zst or .txt.gz; gpt2-tok reads them as
 * they are. The format is told by the first bytes (not by the name), so a
 * plain file, a pipe or stdin all work, and a compressed stream that is
 * cut short or corrupt is a read error, never silently shorter text. */
#ifndef SAEPIPE_TEXTIN_H
#define SAEPIPE_TEXTIN_H
#include <stdio.h>

/* A FILE* that yields the decompressed bytes of `f` (taken over: closing
 * the result closes f, unless f is stdin). NULL with a message in err on
 * failure; `what` names the input in it. After reading, ferror() on the
 * result reports a read error or corrupt or truncated compressed data,
 * and textin_error() says which (for the last failure on this thread). */
FILE *textin_open(FILE *f, const char *what, char *err, size_t errlen);
const char *textin_error(void);

#endif
