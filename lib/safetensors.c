/* safetensors.c: mmap a .safetensors file, parse and check its header. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "safetensors.h"

static const struct { const char *name; size_t size; } st_dtypes[ST_NDTYPE] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2}, [ST_F64] = {"F64", 8},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4}, [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},   [ST_BOOL] = {"BOOL", 1},
};

const char *st_dtype_name(StDtype dt) { return dt < ST_NDTYPE ? st_dtypes[dt].name : "?"; }
size_t st_dtype_size(StDtype dt) { return dt < ST_NDTYPE ? st_dtypes[dt].size : 0; }

const char *st_tensor_desc(const StTensor *t, char *buf, size_t len)
{
    size_t k = 0;
    k += snprintf(buf + k, len - k, "(");
    for (int d = 0; d < t->ndim && k < len; d++)
        k += snprintf(buf + k, len - k, "%s%" PRIu64, d ? "," : "", t->shape[d]);
    if (k < len) snprintf(buf + k, len - k, ") %s", st_dtype_name(t->dtype));
    return buf;
}

/* One header entry: name -> {"dtype","shape","data_offsets"}, checked. */
static int st_entry(SafeTensors *s, const char *base, const char *key, json_t *v, const uint8_t *data,
                    uint64_t data_len, StTensor *t)
{
    const char *dt = json_string_value(json_object_get(v, "dtype"));
    json_t *shape = json_object_get(v, "shape"), *off = json_object_get(v, "data_offsets");
    if (!json_is_object(v) || !dt || !json_is_array(shape) || !json_is_array(off) || json_array_size(off) != 2)
        return SP_FAIL(s, "%s: %s: header entry needs dtype, shape and data_offsets", base, key);
    int k;
    for (k = 0; k < ST_NDTYPE && strcmp(st_dtypes[k].name, dt); k++) {}
    if (k == ST_NDTYPE) return SP_FAIL(s, "%s: %s: unsupported dtype %.20s", base, key, dt);
    if (json_array_size(shape) > ST_MAX_DIMS) return SP_FAIL(s, "%s: %s: more than %d dimensions", base, key, ST_MAX_DIMS);
    t->dtype = (StDtype)k;
    t->ndim = (int)json_array_size(shape);
    t->numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        json_t *e = json_array_get(shape, d);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > (1ll << 40))
            return SP_FAIL(s, "%s: %s: bad shape", base, key);
        t->shape[d] = (uint64_t)json_integer_value(e);
        t->numel *= t->shape[d];
        if (t->numel > (1ull << 40)) return SP_FAIL(s, "%s: %s: bad shape", base, key);
    }
    json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b) || (uint64_t)json_integer_value(e) > data_len)
        return SP_FAIL(s, "%s: %s: data_offsets outside the file's %" PRIu64 " data bytes", base, key, data_len);
    uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(e);
    char desc[96];
    t->name = xstrdup(key);
    if (end - begin != t->numel * st_dtypes[k].size)
        return SP_FAIL(s, "%s: %s: data_offsets [%" PRIu64 ", %" PRIu64 "] but %s needs %" PRIu64 " bytes",
                       base, key, begin, end, st_tensor_desc(t, desc, sizeof desc), t->numel * st_dtypes[k].size);
    t->data = data + begin;
    t->nbytes = end - begin;
    return 0;
}

int st_open(SafeTensors *s, const char *path)
{
    memset(s, 0, sizeof *s);
    const char *base = path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return SP_FAIL(s, "%s: %s", base, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0) { close(fd); return SP_FAIL(s, "%s: %s", base, strerror(errno)); }
    if (!S_ISREG(sb.st_mode)) { close(fd); return SP_FAIL(s, "%s: not a regular file", base); }
    if (sb.st_size < 8) { close(fd); return SP_FAIL(s, "%s: too short for a safetensors file (%lld bytes)", base, (long long)sb.st_size); }
    s->map_len = (size_t)sb.st_size;
    s->map = mmap(NULL, s->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (s->map == MAP_FAILED) { s->map = NULL; return SP_FAIL(s, "%s: mmap: %s", base, strerror(errno)); }
    const uint8_t *p = s->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > s->map_len - 8 || hlen > (100u << 20))
        return SP_FAIL(s, "%s: header length %" PRIu64 " does not fit the file (%zu bytes): not a safetensors file",
                       base, hlen, s->map_len);
    json_error_t je;
    json_t *h = json_loadb((const char *)p + 8, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!h) return SP_FAIL(s, "%s: header is not valid JSON: %s", base, je.text);
    if (!json_is_object(h)) { json_decref(h); return SP_FAIL(s, "%s: header is not a JSON object", base); }
    const uint8_t *data = p + 8 + hlen;
    uint64_t data_len = s->map_len - 8 - hlen;
    s->t = xcalloc(json_object_size(h) + 1, sizeof *s->t);
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(h, key, v) {
        if (!strcmp(key, "__metadata__")) {
            s->meta = json_dumps(v, JSON_COMPACT);
            continue;
        }
        if ((rc = st_entry(s, base, key, v, data, data_len, &s->t[s->n])) < 0) break;
        s->n++;
    }
    if (rc < 0 && s->t[s->n].name) free(s->t[s->n].name), s->t[s->n].name = NULL;
    json_decref(h);
    return rc;
}

const StTensor *st_find(const SafeTensors *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return &s->t[i];
    return NULL;
}

void st_close(SafeTensors *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->t[i].name);
    free(s->t);
    free(s->meta);
    if (s->map) munmap(s->map, s->map_len);
    s->t = NULL, s->meta = NULL, s->map = NULL, s->n = 0;
}

int st_to_f32(const StTensor *t, float *dst)
{
    const uint8_t *src = t->data;
    size_t n = t->numel;
    switch (t->dtype) {
    case ST_F32: memcpy(dst, src, n * 4); return 0;
    case ST_F16:
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
            dst[i] = t->dtype == ST_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
        return 0;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default: return -1;
    }
}

/* ---- a checkpoint of one file or of shards listed in an index ---- */

static int ck_add(StCheckpoint *c, const char *path)
{
    c->shard = xrealloc(c->shard, (c->nshard + 1) * sizeof *c->shard);
    c->path = xrealloc(c->path, (c->nshard + 1) * sizeof *c->path);
    SafeTensors *s = &c->shard[c->nshard];
    c->path[c->nshard] = xstrdup(path);
    c->nshard++;
    if (st_open(s, path) < 0) return SP_FAIL(c, "%s", s->err);
    c->n += s->n;
    return 0;
}

/* A shard name from the index: a plain relative path inside DIR. */
static int ck_valid_name(const char *f)
{
    return *f && f[0] != '/' && !strstr(f, "..") && strlen(f) < 1024;
}

static int ck_open_index(StCheckpoint *c, const char *dir)
{
    size_t len;
    char *text = sp_read_file(c->index, &len);
    if (!text) return SP_FAIL(c, "%s: %s", c->index, strerror(errno));
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root) return SP_FAIL(c, "%s: line %d: %s", c->index, je.line, je.text);
    json_t *wm = json_object_get(root, "weight_map");
    int rc = 0;
    if (!json_is_object(wm) || !json_object_size(wm))
        rc = SP_FAIL(c, "%s: no \"weight_map\" object naming the shards", c->index);
    const char *key;
    json_t *v;
    /* open each shard the first time the map names it */
    json_object_foreach(wm, key, v) {
        if (rc) break;
        const char *f = json_string_value(v);
        if (!f || !ck_valid_name(f)) {
            rc = SP_FAIL(c, "%s: weight_map: %s: shard must be a file name inside the directory", c->index, key);
            break;
        }
        char *path = sp_path_join(dir, f);
        size_t s;
        for (s = 0; s < c->nshard && strcmp(c->path[s], path); s++) {}
        if (s == c->nshard) rc = ck_add(c, path);
        if (!rc && !st_find(&c->shard[s], key))
            rc = SP_FAIL(c, "%s: %s: not in %s, where the index puts it", c->index, key, f);
        free(path);
    }
    /* every tensor of every shard once, and named by the index */
    for (size_t s = 0; s < c->nshard && !rc; s++)
        for (size_t i = 0; i < c->shard[s].n && !rc; i++) {
            const char *name = c->shard[s].t[i].name;
            const char *want = json_string_value(json_object_get(wm, name));
            if (!want)
                rc = SP_FAIL(c, "%s: %s: not listed in %s", c->path[s], name, c->index);
            else if (strcmp(c->path[s] + strlen(dir) + 1, want))
                rc = SP_FAIL(c, "%s: %s: %s puts it in %s", c->path[s], name, c->index, want);
        }
    json_decref(root);
    return rc;
}

int st_ckpt_open(StCheckpoint *c, const char *dir)
{
    memset(c, 0, sizeof *c);
    char *single = sp_path_join(dir, "model.safetensors");
    int rc;
    struct stat sb;
    if (stat(single, &sb) == 0 || errno != ENOENT) {
        rc = ck_add(c, single);
    } else {
        c->index = sp_path_join(dir, "model.safetensors.index.json");
        if (stat(c->index, &sb) < 0 && errno == ENOENT)
            rc = SP_FAIL(c, "%s: no model.safetensors (nor model.safetensors.index.json for a sharded one)", dir);
        else
            rc = ck_open_index(c, dir);
    }
    free(single);
    return rc;
}

const StTensor *st_ckpt_get(const StCheckpoint *c, size_t id, const char **file)
{
    for (size_t s = 0; s < c->nshard; id -= c->shard[s].n, s++)
        if (id < c->shard[s].n) {
            if (file) *file = c->path[s];
            return &c->shard[s].t[id];
        }
    return NULL;
}

const StTensor *st_ckpt_find(const StCheckpoint *c, const char *name, const char **file, size_t *id)
{
    size_t base = 0;
    for (size_t s = 0; s < c->nshard; base += c->shard[s].n, s++) {
        const StTensor *t = st_find(&c->shard[s], name);
        if (t) {
            if (file) *file = c->path[s];
            if (id) *id = base + (size_t)(t - c->shard[s].t);
            return t;
        }
    }
    return NULL;
}

void st_ckpt_close(StCheckpoint *c)
{
    for (size_t s = 0; s < c->nshard; s++) {
        st_close(&c->shard[s]);
        free(c->path[s]);
    }
    free(c->shard);
    free(c->path);
    free(c->index);
    c->shard = NULL, c->path = NULL, c->index = NULL, c->nshard = c->n = 0;
}
