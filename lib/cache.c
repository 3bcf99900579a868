/* cache.c: SHA-256 and the on-disk response cache (see cache.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

void cache_sha256_init(CacheSha256 *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->nbuf = 0;
}

void cache_sha256_update(CacheSha256 *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->len += n;
    while (n) {
        size_t take = 64 - s->nbuf < n ? 64 - s->nbuf : n;
        memcpy(s->buf + s->nbuf, p, take);
        s->nbuf += take;
        p += take;
        n -= take;
        if (s->nbuf == 64) {
            sha256_block(s->h, s->buf);
            s->nbuf = 0;
        }
    }
}

void cache_sha256_final(CacheSha256 *s, uint8_t out[32])
{
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80, zero = 0, lenb[8];
    cache_sha256_update(s, &pad, 1);
    while (s->nbuf != 56) cache_sha256_update(s, &zero, 1);
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    cache_sha256_update(s, lenb, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

static void to_hex(const uint8_t d[32], char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[64] = 0;
}

void cache_sha256_hex(const void *data, size_t n, char hex[65])
{
    CacheSha256 s;
    uint8_t d[32];
    cache_sha256_init(&s);
    cache_sha256_update(&s, data, n);
    cache_sha256_final(&s, d);
    to_hex(d, hex);
}

void cache_key(const char *endpoint, const char *model, const char *body, size_t len, char key[65])
{
    CacheSha256 s;
    uint8_t d[32];
    cache_sha256_init(&s);
    cache_sha256_update(&s, endpoint, strlen(endpoint) + 1);   /* NUL separates the parts */
    cache_sha256_update(&s, model, strlen(model) + 1);
    cache_sha256_update(&s, body, len);
    cache_sha256_final(&s, d);
    to_hex(d, key);
}

static int mkdir_p(const char *dir)
{
    char *p = xstrdup(dir);
    for (char *q = p + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(p, 0777) < 0 && errno != EEXIST) goto fail;
        *q = '/';
    }
    if (mkdir(p, 0777) < 0 && errno != EEXIST) goto fail;
    free(p);
    return 0;
fail:
    free(p);
    return -1;
}

int cache_open(Cache *c, const char *dir)
{
    memset(c, 0, sizeof *c);
    if (!dir || !*dir) return 0;
    struct stat st;
    if (mkdir_p(dir) < 0 || stat(dir, &st) < 0 || (!S_ISDIR(st.st_mode) && (errno = ENOTDIR))) {
        snprintf(c->err, sizeof c->err, "%s: cannot create cache directory: %s", dir, strerror(errno));
        return -1;
    }
    c->dir = xstrdup(dir);
    return 0;
}

void cache_close(Cache *c)
{
    free(c->dir);
    c->dir = NULL;
}

/* DIR/ab/<key>; sub non-zero gives DIR/ab only. */
static char *entry_path(const Cache *c, const char key[65], int sub)
{
    size_t n = strlen(c->dir) + 80;
    char *p = xmalloc(n);
    if (sub) snprintf(p, n, "%s/%.2s", c->dir, key);
    else snprintf(p, n, "%s/%.2s/%s", c->dir, key, key);
    return p;
}

int cache_get(Cache *c, const char key[65], char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!c->dir) return 0;
    char *p = entry_path(c, key, 0);
    char *data = sp_read_file(p, len);
    if (!data) {
        int e = errno;
        if (e == ENOENT) {
            c->misses++;
            free(p);
            return 0;
        }
        snprintf(c->err, sizeof c->err, "%s: cannot read cache entry: %s", p, strerror(e));
        free(p);
        return -1;
    }
    free(p);
    c->hits++;
    *out = data;
    return 1;
}

/* Temp file in the same directory, then rename: a reader sees no entry or
 * a whole one, even after kill -9. No fsync: that would cost milliseconds a
 * reply, and an entry spoilt by a power cut is still harmless, because every
 * reply, cached or not, is parsed and checked before use and asked afresh
 * when it is unusable. */
static int write_atomic(const char *path, const char *data, size_t len)
{
    size_t n = strlen(path) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644), rc = fd < 0 ? -1 : 0;
    for (size_t done = 0; rc == 0 && done < len;) {
        ssize_t w = write(fd, data + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) rc = -1;
        else done += (size_t)w;
    }
    int e = errno;
    if (fd >= 0 && close(fd) < 0 && rc == 0) rc = -1, e = errno;
    if (rc == 0 && rename(tmp, path) < 0) rc = -1, e = errno;
    if (rc < 0) unlink(tmp);
    free(tmp);
    errno = e;
    return rc;
}

int cache_put(Cache *c, const char key[65], const char *data, size_t len)
{
    if (!c->dir) return 0;
    char *sub = entry_path(c, key, 1);
    char *p = entry_path(c, key, 0);
    int rc = 0;
    if ((mkdir(sub, 0777) < 0 && errno != EEXIST) || write_atomic(p, data, len) < 0) {
        snprintf(c->err, sizeof c->err, "%s: cannot write cache entry: %s", p, strerror(errno));
        rc = -1;
    } else {
        c->writes++;
    }
    free(sub);
    free(p);
    return rc;
}
