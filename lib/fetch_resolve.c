/* fetch_resolve.c: --model resolution and the cache's layout (see
 * fetch.h), apart from the downloads in fetch.c: a stage that only
 * resolves --model does not link libcurl, whose 30-odd libraries took
 * 25 ms of every run's start (gpt2-tok: 4% of a 20 MB run). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fetch.h"

static int valid_part(const char *s, size_t n)
{
    if (n == 0 || n > 96 || s[0] == '.' || s[0] == '-') return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-') return 0;
        if (c == '.' && i + 1 < n && s[i + 1] == '.') return 0;
    }
    return 1;
}

int fetch_valid_id(const char *id)
{
    const char *slash = strchr(id, '/');
    if (!slash) return valid_part(id, strlen(id));
    return valid_part(id, (size_t)(slash - id)) && valid_part(slash + 1, strlen(slash + 1));
}

int fetch_cache_root(char *buf, size_t len, char *err, size_t errlen)
{
    const char *home = getenv("SAEPIPE_HOME"), *xdg = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    int n;
    if (home && *home) n = snprintf(buf, len, "%s/models", home);
    else if (xdg && *xdg) n = snprintf(buf, len, "%s/saepipe/models", xdg);
    else if (h && *h) n = snprintf(buf, len, "%s/.cache/saepipe/models", h);
    else return sp_fail(err, errlen, "no model cache: set SAEPIPE_HOME (or HOME)");
    if (n < 0 || (size_t)n >= len) return sp_fail(err, errlen, "model cache path too long");
    return 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int fetch_resolve_model(const char *arg, char *dir, size_t len, char *err, size_t errlen)
{
    if (!arg || !*arg) return sp_fail(err, errlen, "empty --model");
    if (is_dir(arg)) {
        if ((size_t)snprintf(dir, len, "%s", arg) >= len) return sp_fail(err, errlen, "%s: path too long", arg);
        return 0;
    }
    if (!fetch_valid_id(arg)) return sp_fail(err, errlen, "%s: no such model directory", arg);
    char root[4096];
    if (fetch_cache_root(root, sizeof root, err, errlen) < 0) return -1;
    if ((size_t)snprintf(dir, len, "%s/%s", root, arg) >= len) return sp_fail(err, errlen, "%s: path too long", arg);
    if (is_dir(dir)) return 0;
    return sp_fail(err, errlen, "%s: not a directory, nor in the model cache (%s/%s); fetch it with: model-fetch %s", arg,
                root, arg, arg);
}
