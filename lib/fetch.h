/* fetch.h: models from the Hugging Face hub into a local cache, and the
 * mapping every stage's --model uses (a directory, or a repo id already in
 * the cache).
 *
 * Cache layout: $SAEPIPE_HOME/models/ID (ID as on the hub, "gpt2" or
 * "openai-community/gpt2"), SAEPIPE_HOME defaulting to
 * $XDG_CACHE_HOME/saepipe, then ~/.cache/saepipe.
 *
 * A file is fetched from $HF_ENDPOINT/ID/resolve/REVISION/FILE (HF_ENDPOINT
 * defaults to https://huggingface.co; HF_TOKEN, when set, is sent as a
 * bearer token and never appears in a message). First a HEAD without
 * following redirects learns the size (X-Linked-Size, else Content-Length)
 * and, for LFS files, the SHA-256 (X-Linked-Etag or ETag when it is 64 hex
 * digits), as the hub reports them; then the body goes into FILE.part,
 * resumed with a Range request when FILE.part exists and retried (resuming)
 * after a cut connection; then the size and SHA-256 are checked and
 * FILE.part is renamed to FILE. A file that exists under its final name is
 * whole (it got there by rename), so fetching it again does nothing and
 * needs no network. A checksum or size mismatch removes FILE.part. */
#ifndef SP_FETCH_H
#define SP_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define FETCH_DEFAULT_ENDPOINT "https://huggingface.co"

typedef struct {
    const char *endpoint;       /* no trailing slash needed */
    const char *token;          /* bearer token or NULL */
    const char *revision;       /* "main" */
    int retries;                /* extra attempts after a cut transfer */
    double connect_timeout;     /* seconds */
    double low_speed_time;      /* abort when under 1 byte/s this long */
    /* progress: called now and then with bytes so far and the total
     * (0 when unknown); lib/ never prints, the caller draws it */
    void (*progress)(void *user, const char *file, uint64_t done, uint64_t total);
    void *user;
} FetchOpts;

/* Defaults, with endpoint and token from HF_ENDPOINT and HF_TOKEN. */
void fetch_opts_default(FetchOpts *o);

/* 1 if id is a plausible hub repo id: NAME or OWNER/NAME, each of
 * [A-Za-z0-9._-], not starting with '.' and without "..". */
int fetch_valid_id(const char *id);

/* The cache root ($SAEPIPE_HOME/models ...) into buf. 0 or -1 (err). */
int fetch_cache_root(char *buf, size_t len, char *err, size_t errlen) SP_RESULT_USED;

/* dir for --model ARG: ARG itself when it is a directory, else the cache
 * directory of repo id ARG when that exists. 0 or -1 with a message saying
 * which it tried and how to fetch it. */
int fetch_resolve_model(const char *arg, char *dir, size_t len, char *err, size_t errlen) SP_RESULT_USED;

/* Fetch FILE of repo ID into DIR/FILE (DIR is created). 1 = downloaded,
 * 0 = already complete, -1 = error in err ("model.safetensors: HTTP 404
 * Not Found from https://..."). */
int fetch_file(const FetchOpts *o, const char *id, const char *file, const char *dir, char *err,
               size_t errlen) SP_RESULT_USED;

/* Fetch the weights of repo ID into DIR: model.safetensors, or, when the
 * hub answers 404 for it, model.safetensors.index.json and every shard its
 * "weight_map" names (the layout Hugging Face uses for large checkpoints).
 * Each file as fetch_file does it; a DIR that already holds
 * model.safetensors, or the index, needs no network for it. Returns how
 * many files were downloaded, or -1 with err; *nfiles gets how many files
 * the checkpoint has (1, or the index plus its shards). */
int fetch_checkpoint(const FetchOpts *o, const char *id, const char *dir, int *nfiles, char *err, size_t errlen)
    SP_RESULT_USED;

/* SHA-256 of a file as 64 hex digits. 0 or -1 (errno). */
int fetch_sha256_file(const char *path, char hex[65]) SP_RESULT_USED;

#endif
