/* jsonl.h: one string field of a JSON Lines record, without a DOM.
 *
 * gpt2-tok wants one string (the text) from each line of a corpus. Building
 * jansson's tree of the line and copying the string out of it cost as much
 * as the BPE of that text (a byte at a time through a lexer, a saved copy,
 * a decoded copy, a copy for the tree). jsonl_field() scans the line once,
 * checks that it is JSON jansson would accept, and decodes the field's
 * string (escapes, \u surrogate pairs) straight into the caller's buffer.
 *
 * It answers only when it is sure. Whatever it does not take (a malformed
 * line, invalid UTF-8, a missing or non-string field, a number jansson
 * might call too big, nesting deeper than JSONL_MAX_DEPTH) returns 0, and
 * the caller parses that line with jansson, whose value and error message
 * stand: the scanner never accepts a line jansson rejects, and where both
 * accept, they give the same bytes. */
#ifndef SP_JSONL_H
#define SP_JSONL_H

#include <stddef.h>

#define JSONL_MAX_DEPTH 64   /* deeper lines go to jansson (its limit: 2048) */

/* A growable byte buffer: n bytes used of cap. */
typedef struct {
    char *v;
    size_t n, cap;
} JsonlBuf;

/* Room for `more` bytes after buf->n (xrealloc). */
void jsonl_buf_reserve(JsonlBuf *buf, size_t more);

/* 1: `line` (n bytes, a trailing newline allowed) is one JSON object as
 * json_loadb(..., JSON_ALLOW_NUL, ...) reads it, and its member `key`
 * (keylen bytes; the last one if repeated, as in jansson) is a string: the
 * string's decoded bytes are appended to buf. 0: not sure; buf->n is as it
 * was (the bytes past it may have changed). */
int jsonl_field(const char *line, size_t n, const char *key, size_t keylen, JsonlBuf *buf);

#endif
