/* cache.h: an on-disk response cache for API calls, and the SHA-256 that
 * keys it.
 *
 * An entry is one file DIR/ab/abcdef...(64 hex) holding the response body.
 * Its name is the SHA-256 of the request's identity (endpoint, model and
 * full request body, joined by NUL bytes), so a different prompt, model or
 * server is a different entry. Entries are written to a temporary name and
 * renamed into place, so a crash or kill -9 leaves either no entry or a
 * whole one, never a corrupt one (there is no fsync: see cache.c). Only requests, never
 * headers, go into the key: the API key is neither hashed nor stored. */
#ifndef SP_CACHE_H
#define SP_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* ---- SHA-256 (FIPS 180-4) ---- */
typedef struct {
    uint32_t h[8];
    uint64_t len;           /* bytes hashed so far */
    uint8_t buf[64];
    size_t nbuf;
} CacheSha256;
void cache_sha256_init(CacheSha256 *s);
void cache_sha256_update(CacheSha256 *s, const void *data, size_t n);
void cache_sha256_final(CacheSha256 *s, uint8_t out[32]);
/* 64 lowercase hex digits and a NUL into hex. */
void cache_sha256_hex(const void *data, size_t n, char hex[65]);

/* ---- the cache ---- */
typedef struct {
    char *dir;              /* owned; NULL = caching off */
    uint64_t hits, misses, writes;
    char err[512];
} Cache;

/* dir NULL or "" turns caching off (every get misses, put does nothing).
 * The directory is created if missing. 0 or -1 with c->err. */
int cache_open(Cache *c, const char *dir) SP_RESULT_USED;
void cache_close(Cache *c);
/* The key of a request: hex SHA-256 of endpoint NUL model NUL body. */
void cache_key(const char *endpoint, const char *model, const char *body, size_t len, char key[65]);
/* 1 and *out (malloc'd, NUL-terminated, *len bytes) on a hit, 0 on a miss,
 * -1 on a read error other than absence. */
int cache_get(Cache *c, const char key[65], char **out, size_t *len) SP_RESULT_USED;
/* Store atomically. 0, or -1 with c->err. */
int cache_put(Cache *c, const char key[65], const char *data, size_t len) SP_RESULT_USED;

#endif
