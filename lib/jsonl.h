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

/* jsonl_field in two steps, so that a long field can be decoded a part at
 * a time (gpt2-tok hands a 20 MB field's text to its threads as it goes,
 * where it was decoded whole first): 1 and where the field's string is in
 * the line, between its quotes (line + *at, *len bytes, still escaped),
 * when jsonl_field would give 1; else 0. scratch holds the decoded keys
 * past scratch->n, which is left as it was. */
int jsonl_field_span(const char *line, size_t n, const char *key, size_t keylen, JsonlBuf *scratch, size_t *at,
                     size_t *len);

/* Decode the start of such a string (n bytes as jsonl_field_span gave
 * them, or what is left of them) into out, at most room bytes: as much as
 * fits, never half an escape. Returns the source bytes taken (0 only when
 * room < 4 and an escape is next), their decoded length in *olen. */
size_t jsonl_unescape(const char *src, size_t n, char *out, size_t room, size_t *olen);

/* A whole JSON text that is one object of integer members (vocab.json),
 * the same way: each key is decoded and appended to keys, and fn(arg, its
 * offset in keys, its length, the value) is called in order, going on
 * while fn returns 0. 1 if the text is such an object, as json_loadb(...,
 * 0, ...) reads it, and no fn refused; 0 if not sure, or fn refused
 * (a repeated key is given twice: jansson would keep the last). */
int jsonl_int_members(const char *text, size_t n, JsonlBuf *keys,
                      int (*fn)(void *arg, size_t key_off, size_t key_len, long long value), void *arg);

#endif
