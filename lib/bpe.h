/* bpe.h: GPT-2's byte-level BPE tokenizer, token for token.
 *
 * Bpe is the read-only model (vocab.json + merges.txt of a Hugging Face
 * GPT-2 directory); BpeEnc is one encoder's mutable state (regex match
 * data, the per-word cache, scratch), so threads share one Bpe and own one
 * BpeEnc each.
 *
 * Encoding follows GPT-2's encoder.py: the text is split by the GPT-2
 * pre-tokenizer regex (PCRE2, UTF + Unicode properties), each piece's bytes
 * are mapped to byte tokens and merged pairwise, lowest merge rank first,
 * every occurrence left to right. The literal text <|endoftext|> is the
 * special token (50256) unless BPE_NO_SPECIAL is given.
 *
 * Invalid UTF-8 is encoded too, byte for byte: each byte that is not part
 * of a valid UTF-8 sequence counts as one character of the "other" class
 * (neither letter, number nor space), exactly as Python's GPT-2 encoder
 * behaves on text decoded with errors="surrogateescape", and its byte goes
 * through the same merges. Decoding gives the original bytes back. */
#ifndef SP_BPE_H
#define SP_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define BPE_EOT_TEXT "<|endoftext|>"

typedef struct {
    size_t V;               /* vocabulary size (50257 for GPT-2) */
    size_t n_merges;        /* merges.txt rules (50000) */
    char *tok_bytes;        /* raw bytes of every token, concatenated */
    uint32_t *tok_off;      /* (V+1) offsets into tok_bytes */
    int32_t byte_tok[256];  /* id of each single-byte token */
    int32_t eot;            /* id of <|endoftext|>, -1 if absent */
    int ordered;            /* every rule's parts are made by earlier rules (see merge_long) */
    /* raw token bytes -> id; open addressing, (vcap) slots of id or -1 */
    int32_t *vslot;
    size_t vcap;
    /* pair (a,b) -> rank and merged id; open addressing, (mcap) slots */
    uint64_t *mkey;         /* (mcap) a<<32|b, or UINT64_MAX when empty */
    uint32_t *mrank;        /* (mcap) */
    int32_t *mid;           /* (mcap) */
    size_t mcap;
    void *re;               /* pcre2_code_8 of the pre-tokenizer */
    int jit;                /* it was JIT-compiled: matched by pcre2_jit_match */
    char err[512];
} Bpe;

/* Load DIR/vocab.json and DIR/merges.txt. 0, or -1 with b->err
 * ("DIR/merges.txt: line 12: token 'xy' is not in vocab.json"). */
int bpe_load(Bpe *b, const char *dir) SP_RESULT_USED;
int bpe_load_files(Bpe *b, const char *vocab_path, const char *merges_path) SP_RESULT_USED;
void bpe_free(Bpe *b);   /* safe on a zeroed or half-loaded b */

/* A growable list of token ids. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} BpeIds;
void bpe_ids_push(BpeIds *ids, int32_t id);
void bpe_ids_append(BpeIds *ids, const int32_t *v, size_t n);
void bpe_ids_free(BpeIds *ids);

typedef struct {
    uint64_t h;             /* hash of the piece; 0 = empty slot */
    uint32_t key_off, key_len;
    uint32_t tok_off, ntok;
} BpeCacheSlot;

typedef struct {
    const Bpe *b;
    void *md;               /* pcre2_match_data_8 */
    /* per-word cache: piece bytes -> token ids; cleared when full */
    BpeCacheSlot *slot;     /* (cache_cap) */
    size_t cache_cap, cache_n;
    char *key_arena;        /* piece bytes */
    size_t key_n, key_cap;
    int32_t *tok_arena;     /* token ids */
    size_t tok_n, tok_cap;
    uint64_t hits, misses;
    /* merge scratch, grown to the longest piece seen */
    int32_t *w;             /* (wcap) symbols of the piece being merged */
    size_t wcap;
    /* long pieces: linked symbols and a heap of (rank, position) */
    int32_t *nx, *pv;       /* (lcap) next and previous alive position, -1 at the ends */
    uint64_t *heap;         /* (lcap) rank << 32 | position */
    size_t lcap;
    /* invalid UTF-8: the text with each bad byte as a private-use character */
    char *san;
    size_t san_cap;
    size_t *subst;          /* sanitized offsets of the substituted characters */
    size_t subst_cap;
    char err[256];
} BpeEnc;

#define BPE_NO_SPECIAL 1    /* <|endoftext|> in the text is plain text */

int bpe_enc_init(BpeEnc *e, const Bpe *b) SP_RESULT_USED;
void bpe_enc_free(BpeEnc *e);
/* Append the ids of n bytes of text (any bytes) to out. 0, or -1 with
 * e->err (only on an internal regex failure). */
int bpe_encode(BpeEnc *e, const char *text, size_t n, int flags, BpeIds *out) SP_RESULT_USED;

/* A place at or after `from` (and before n) where text may be cut into
 * parts that encode, one after the other, to exactly the ids of the whole:
 * a printable ASCII character followed by ASCII whitespace (space, \t,
 * \n, \v, \f, \r). The piece that holds the character ends there,
 * whatever follows (no pre-tokenizer alternative takes whitespace after a
 * non-space), the pattern has no lookbehind, and no UTF-8 sequence or
 * <|endoftext|> spans it. n if there is none. Linear in the bytes it
 * looks at, which are text[from - 1] up to the place. */
size_t bpe_split_point(const char *text, size_t n, size_t from);

/* Raw bytes of token id (not NUL-terminated), or NULL when id is out of
 * range. */
const char *bpe_token_bytes(const Bpe *b, int32_t id, size_t *len);
/* The bytes of n tokens into buf (at most cap bytes written, no NUL);
 * *len gets the full length. 0, or -1 if ids[i] is out of range (then
 * *len is i, the index of the bad id). */
int bpe_decode(const Bpe *b, const int32_t *ids, size_t n, char *buf, size_t cap, size_t *len);
/* A token as a display string, NUL-terminated, snprintf-style (returns the
 * length it needs without the NUL): valid UTF-8 is kept; \n, \r and \t are
 * shown as the two characters \n, \r, \t; other control bytes and bytes
 * that are not whole UTF-8 characters (a token that holds part of an
 * emoji, say) as \xNN. An out-of-range id shows as <bad:ID>. */
size_t bpe_token_display(const Bpe *b, int32_t id, char *buf, size_t cap);

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if the byte at s
 * does not start one (overlong forms, surrogates and > U+10FFFF are
 * invalid, as for Python and PCRE2). n > 0 bytes are available. */
size_t bpe_utf8_len(const unsigned char *s, size_t n);

#endif
