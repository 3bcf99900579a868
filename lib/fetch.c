/* fetch.c: hub downloads into the model cache (see fetch.h); --model
 * resolution is in fetch_resolve.c. */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "fetch.h"

void fetch_opts_default(FetchOpts *o)
{
    const char *ep = getenv("HF_ENDPOINT"), *tok = getenv("HF_TOKEN");
    *o = (FetchOpts){
        .endpoint = ep && *ep ? ep : FETCH_DEFAULT_ENDPOINT,
        .token = tok && *tok ? tok : NULL,
        .revision = "main",
        .retries = 5,
        .connect_timeout = 30,
        .low_speed_time = 60,
    };
}

/* mkdir -p */
static int make_dirs(const char *path, char *err, size_t errlen)
{
    char *p = xstrdup(path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            sp_fail(err, errlen, "%s: cannot create: %s", p, strerror(e));
            free(p);
            return -1;
        }
        if (!c) break;
        *s = c;
    }
    free(p);
    return 0;
}

int fetch_sha256_file(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    CacheSha256 s;
    cache_sha256_init(&s);
    char *buf = xmalloc(1 << 20);
    size_t n;
    while ((n = fread(buf, 1, 1 << 20, f)) > 0) cache_sha256_update(&s, buf, n);
    int bad = ferror(f);
    fclose(f);
    free(buf);
    if (bad) {
        errno = EIO;
        return -1;
    }
    uint8_t d[32];
    cache_sha256_final(&s, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return 0;
}

/* ---- HEAD: what the hub says about a file ---- */

typedef struct {
    int64_t linked_size;        /* X-Linked-Size, -1 if absent */
    char linked_etag[128];      /* X-Linked-Etag */
    char etag[128];             /* ETag */
} HubHeaders;

static void header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) || line[k] != ':') return;
    const char *v = line + k + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    size_t m = (size_t)(end - v) < outlen - 1 ? (size_t)(end - v) : outlen - 1;
    memcpy(out, v, m);
    out[m] = 0;
}

static size_t on_header(char *line, size_t sz, size_t nm, void *user)
{
    HubHeaders *h = user;
    size_t n = sz * nm;
    char size[32] = "";
    if (n >= 5 && !strncmp(line, "HTTP/", 5)) *h = (HubHeaders){.linked_size = -1};   /* a new response */
    header_value(line, n, "X-Linked-Size", size, sizeof size);
    header_value(line, n, "X-Linked-Etag", h->linked_etag, sizeof h->linked_etag);
    header_value(line, n, "ETag", h->etag, sizeof h->etag);
    if (*size) {
        char *end;
        long long v = strtoll(size, &end, 10);
        if (end != size && !*end && v >= 0) h->linked_size = v;
    }
    return n;
}

/* The SHA-256 in an etag (W/"...", quoted), or "" if it is not 64 hex. */
static void etag_sha256(const char *etag, char out[65])
{
    out[0] = 0;
    if (!strncmp(etag, "W/", 2)) etag += 2;
    if (*etag == '"') etag++;
    size_t n = 0;
    while (isxdigit((unsigned char)etag[n])) n++;
    if (n != 64 || (etag[n] && etag[n] != '"')) return;
    for (size_t i = 0; i < 64; i++) out[i] = (char)tolower((unsigned char)etag[i]);
    out[64] = 0;
}

static void set_common(CURL *c, const FetchOpts *o, struct curl_slist *hdr, char *errbuf)
{
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "saepipe/" SAEPIPE_VERSION);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->connect_timeout * 1000));
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)(o->low_speed_time > 0 ? o->low_speed_time : 60));
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
}

static const char *status_hint(long code)
{
    switch (code) {
    case 401: return " (private or gated repository? set HF_TOKEN)";
    case 403: return " (forbidden: gated repository? accept its terms and set HF_TOKEN)";
    case 404: return " (no such repository or file)";
    default: return "";
    }
}

/* HEAD url without following redirects, then along the redirects until a
 * response carries X-Linked-Size or is a 200. Fills size (-1 unknown) and
 * sha (or ""). */
static int hub_head(CURL *c, const FetchOpts *o, struct curl_slist *hdr, const char *file, const char *url,
                    int64_t *size, char sha[65], long *status, char *err, size_t errlen)
{
    char errbuf[CURL_ERROR_SIZE], *cur = xstrdup(url);
    HubHeaders h;
    int rc = -1;
    for (int hop = 0; hop < 10; hop++) {
        curl_easy_reset(c);
        set_common(c, o, hdr, errbuf);
        errbuf[0] = 0;
        h = (HubHeaders){.linked_size = -1};
        curl_easy_setopt(c, CURLOPT_URL, cur);
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
        CURLcode res = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (res != CURLE_OK) {
            sp_fail(err, errlen, "%s: %s: %s", file, cur, *errbuf ? errbuf : curl_easy_strerror(res));
            break;
        }
        char *next = NULL;
        curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &next);
        if (code >= 300 && code < 400 && next && h.linked_size < 0) {
            free(cur);
            cur = xstrdup(next);
            continue;
        }
        if (code != 200 && !(code >= 300 && code < 400)) {
            *status = code;
            sp_fail(err, errlen, "%s: HTTP %ld from %s%s", file, code, url, status_hint(code));
            break;
        }
        curl_off_t cl = -1;
        curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        *size = h.linked_size >= 0 ? h.linked_size : code == 200 ? (int64_t)cl : -1;
        etag_sha256(*h.linked_etag ? h.linked_etag : h.etag, sha);
        rc = 0;
        break;
    }
    if (rc < 0 && !*err) sp_fail(err, errlen, "%s: too many redirects from %s", file, url);
    free(cur);
    return rc;
}

/* ---- GET into FILE.part ---- */

typedef struct {
    FILE *f;
    CURL *c;
    const FetchOpts *o;
    const char *file;
    uint64_t start, got;        /* bytes in the part before, bytes this transfer */
    int64_t size;
    int restarted, werr;
} Sink;

static size_t on_body(char *p, size_t sz, size_t nm, void *user)
{
    Sink *s = user;
    size_t n = sz * nm;
    if (s->start && !s->restarted && s->got == 0) {
        long code = 0;
        curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &code);
        if (code == 200) {   /* the server ignored Range: start over */
            if (fflush(s->f) || ftruncate(fileno(s->f), 0) < 0 || fseek(s->f, 0, SEEK_SET) < 0) {
                s->werr = errno ? errno : EIO;
                return 0;
            }
            s->start = 0;
            s->restarted = 1;
        }
    }
    if (fwrite(p, 1, n, s->f) != n) {
        s->werr = errno ? errno : EIO;
        return 0;
    }
    s->got += n;
    return n;
}

static int on_xfer(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ult, curl_off_t uln)
{
    Sink *s = user;
    if (s->o->progress)
        s->o->progress(s->o->user, s->file, s->start + (uint64_t)dlnow,
                       s->size >= 0 ? (uint64_t)s->size : dltotal > 0 ? s->start + (uint64_t)dltotal : 0);
    return 0;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* One GET attempt; 0 done, 1 retryable (cut short), -1 error. */
static int get_once(CURL *c, const FetchOpts *o, struct curl_slist *hdr, const char *file, const char *url,
                    const char *part, int64_t size, char *err, size_t errlen)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    int64_t have = file_size(part);
    if (have < 0 || (size >= 0 && have > size)) have = 0;
    if (size >= 0 && have == size) return 0;
    FILE *f = fopen(part, have ? "r+b" : "wb");
    if (!f || (have && (ftruncate(fileno(f), have) < 0 || fseek(f, 0, SEEK_END) < 0)))
        return sp_fail(err, errlen, "%s: %s", part, strerror(errno));
    Sink s = {.f = f, .c = c, .o = o, .file = file, .start = (uint64_t)have, .size = size};
    curl_easy_reset(c);
    set_common(c, o, hdr, errbuf);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &s);
    /* CURLOPT_RANGE rather than RESUME_FROM: a server that ignores Range and
     * sends the whole file (200) is handled in on_body instead of failing */
    char range[32];
    snprintf(range, sizeof range, "%lld-", (long long)have);
    if (have) curl_easy_setopt(c, CURLOPT_RANGE, range);
    CURLcode res = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    int bad_close = fflush(f) != 0 || fsync(fileno(f)) < 0;
    bad_close |= fclose(f) != 0;
    if (s.werr || bad_close) return sp_fail(err, errlen, "%s: write failed: %s", part, strerror(s.werr ? s.werr : errno));
    if (res == CURLE_HTTP_RETURNED_ERROR && code == 416 && have) return 0;   /* nothing left to send */
    if (res == CURLE_HTTP_RETURNED_ERROR)
        return sp_fail(err, errlen, "%s: HTTP %ld from %s%s", file, code, url, status_hint(code));
    if (res == CURLE_PARTIAL_FILE || res == CURLE_RECV_ERROR || res == CURLE_OPERATION_TIMEDOUT ||
        res == CURLE_GOT_NOTHING || res == CURLE_SEND_ERROR) {
        sp_fail(err, errlen, "%s: transfer cut after %" PRIu64 " bytes (%s); %s keeps them, run again to resume", file,
             s.start + s.got, *errbuf ? errbuf : curl_easy_strerror(res), part);
        return 1;
    }
    if (res != CURLE_OK)
        return sp_fail(err, errlen, "%s: %s: %s", file, url, *errbuf ? errbuf : curl_easy_strerror(res));
    return 0;
}

static int verify_part(const char *file, const char *part, int64_t size, const char *sha, char *err, size_t errlen)
{
    int64_t have = file_size(part);
    char got[65];
    if (size >= 0 && have != size) {
        unlink(part);
        return sp_fail(err, errlen, "%s: size mismatch: got %lld bytes, the hub says %lld; removed the partial file", file,
                    (long long)have, (long long)size);
    }
    if (!*sha) return 0;
    if (fetch_sha256_file(part, got) < 0) return sp_fail(err, errlen, "%s: %s", part, strerror(errno));
    if (strcmp(got, sha)) {
        unlink(part);
        return sp_fail(err, errlen, "%s: SHA-256 mismatch: got %s, the hub says %s; removed the download", file, got, sha);
    }
    return 0;
}

/* fetch_file, and the HTTP status of a refused HEAD in *status (0 else). */
static int fetch_file_status(const FetchOpts *o, const char *id, const char *file, const char *dir, long *status,
                             char *err, size_t errlen)
{
    *status = 0;
    if (!fetch_valid_id(id)) return sp_fail(err, errlen, "%s: not a valid repository id", id);
    if (!*file || strstr(file, "..") || file[0] == '/') return sp_fail(err, errlen, "%s: not a valid file name", file);
    size_t n = strlen(dir) + strlen(file) + 8;
    char *dst = xmalloc(n), *part = xmalloc(n), *url = NULL;
    snprintf(dst, n, "%s/%s", dir, file);
    snprintf(part, n, "%s/%s.part", dir, file);
    int rc = -1;
    struct curl_slist *hdr = NULL;
    CURL *c = NULL;
    if (file_size(dst) >= 0) {
        rc = 0;
        goto out;
    }
    {
        char *parent = xstrdup(dst);   /* FILE may have directories of its own (onnx/model.onnx) */
        *strrchr(parent, '/') = 0;
        int mk = make_dirs(parent, err, errlen);
        free(parent);
        if (mk < 0) goto out;
    }
    const char *ep = o->endpoint;
    size_t el = strlen(ep);
    while (el && ep[el - 1] == '/') el--;
    size_t ul = el + strlen(id) + strlen(o->revision) + strlen(file) + 32;
    url = xmalloc(ul);
    snprintf(url, ul, "%.*s/%s/resolve/%s/%s", (int)el, ep, id, o->revision, file);
    if (o->token) {
        size_t hl = strlen(o->token) + 32;
        char *auth = xmalloc(hl);
        snprintf(auth, hl, "Authorization: Bearer %s", o->token);
        hdr = curl_slist_append(hdr, auth);
        free(auth);
    }
    if (!(c = curl_easy_init())) {
        sp_fail(err, errlen, "cannot initialise libcurl");
        goto out;
    }
    int64_t size;
    char sha[65];
    if (hub_head(c, o, hdr, file, url, &size, sha, status, err, errlen) < 0) goto out;
    int r = 1;
    for (int attempt = 0; r == 1 && attempt <= o->retries; attempt++) r = get_once(c, o, hdr, file, url, part, size,
                                                                                   err, errlen);
    if (r != 0) goto out;
    if (verify_part(file, part, size, sha, err, errlen) < 0) goto out;
    if (rename(part, dst) < 0) {
        sp_fail(err, errlen, "%s: cannot rename into place: %s", dst, strerror(errno));
        goto out;
    }
    rc = 1;
out:
    if (c) curl_easy_cleanup(c);
    curl_slist_free_all(hdr);
    free(url);
    free(dst);
    free(part);
    return rc;
}

int fetch_file(const FetchOpts *o, const char *id, const char *file, const char *dir, char *err, size_t errlen)
{
    long status;
    return fetch_file_status(o, id, file, dir, &status, err, errlen);
}

/* The shard names of DIR/model.safetensors.index.json, each once, in the
 * order the index first names them. NULL-terminated, or NULL with err. */
static char **index_shards(const char *index, size_t *n, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(index, JSON_REJECT_DUPLICATES, &je), *v;
    if (!root) {
        sp_fail(err, errlen, "%s: line %d: %s", index, je.line, je.text);
        return NULL;
    }
    json_t *wm = json_object_get(root, "weight_map");
    char **out = NULL;
    *n = 0;
    const char *key;
    if (!json_is_object(wm) || !json_object_size(wm)) {
        sp_fail(err, errlen, "%s: no \"weight_map\" object naming the shards", index);
        goto done;
    }
    out = xcalloc(json_object_size(wm) + 1, sizeof *out);
    json_object_foreach(wm, key, v) {
        const char *f = json_string_value(v);
        if (!f || !*f || f[0] == '/' || strstr(f, "..") || !strcmp(f, "model.safetensors.index.json")) {
            sp_fail(err, errlen, "%s: weight_map: %s: shard must be a file name inside the repository", index, key);
            for (size_t i = 0; i < *n; i++) free(out[i]);
            free(out);
            out = NULL;
            goto done;
        }
        size_t i;
        for (i = 0; i < *n && strcmp(out[i], f); i++) {}
        if (i == *n) out[(*n)++] = xstrdup(f);
    }
done:
    json_decref(root);
    return out;
}

int fetch_checkpoint(const FetchOpts *o, const char *id, const char *dir, int *nfiles, char *err, size_t errlen)
{
    char *single = sp_path_join(dir, "model.safetensors");
    char *index = sp_path_join(dir, "model.safetensors.index.json");
    int rc = 0, fetched = 0;
    long status = 0;
    *nfiles = 1;
    if (file_size(single) >= 0) goto out;
    if (file_size(index) < 0) {
        /* one file, unless the hub has none: then the sharded layout */
        char err1[512];
        rc = fetch_file_status(o, id, "model.safetensors", dir, &status, err1, sizeof err1);
        if (rc >= 0 || status != 404) {
            if (rc < 0) snprintf(err, errlen, "%s", err1);
            fetched = rc;
            goto out;
        }
        rc = fetch_file_status(o, id, "model.safetensors.index.json", dir, &status, err, errlen);
        if (rc < 0) {
            if (status == 404) snprintf(err, errlen, "%s; nor model.safetensors.index.json (a sharded checkpoint)", err1);
            goto out;
        }
        fetched += rc;
    }
    size_t ns = 0;
    char **shards = index_shards(index, &ns, err, errlen);
    if (!shards) {
        rc = -1;
        goto out;
    }
    *nfiles = (int)ns + 1;
    for (size_t i = 0; i < ns && rc >= 0; i++) {
        rc = fetch_file(o, id, shards[i], dir, err, errlen);
        if (rc > 0) fetched++;
    }
    for (size_t i = 0; i < ns; i++) free(shards[i]);
    free(shards);
out:
    free(single);
    free(index);
    return rc < 0 ? -1 : fetched;
}
