/* http.h: many HTTP POSTs in flight at once over libcurl's multi
 * interface, each retried with exponential backoff and jitter.
 *
 * A request is retried on a 408, 409, 429 or 5xx status, a timeout, a
 * connection error, an empty reply and a body cut short (fewer bytes than
 * Content-Length), at most max_attempts times in all. The wait before
 * attempt n+1 is uniform in [0, min(backoff_max, backoff_base * 2^(n-1))]
 * ("full jitter"), but never less than the server's Retry-After (seconds or
 * an HTTP date) capped at backoff_max. Other statuses (400, 401, 404, ...)
 * fail at once. Callers may also re-submit a request whose reply they
 * could not use, counting attempts themselves.
 *
 * The pool never prints. Results carry their reason in err; header values
 * (the API key's Authorization header) never appear in any message. */
#ifndef SP_HTTP_H
#define SP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct {
    size_t jobs;            /* requests in flight at once */
    double timeout;         /* seconds per attempt, whole transfer */
    double connect_timeout; /* seconds to connect */
    int max_attempts;       /* attempts per submitted request, >= 1 */
    double backoff_base;    /* seconds; first retry waits up to this */
    double backoff_max;     /* seconds; cap on any wait, Retry-After included */
    uint64_t seed;          /* jitter RNG seed */
} HttpOpts;
void http_opts_default(HttpOpts *o);   /* 8 jobs, 120 s, 10 s, 5 attempts, 1 s, 60 s */

typedef struct {
    void *user;             /* as given to http_submit */
    int ok;                 /* 1: a 2xx status and the whole body */
    long status;            /* HTTP status of the last attempt, 0 if none */
    int attempts;           /* attempts made */
    char *body;             /* owned (free with http_result_free); NUL-terminated */
    size_t len;
    char err[256];          /* why, when !ok: "HTTP 500", "timeout after 5 s", ... */
} HttpResult;
void http_result_free(HttpResult *r);

typedef struct HttpPool HttpPool;

/* NULL with err filled on failure (curl could not initialise). */
HttpPool *http_pool_new(const HttpOpts *o, char *err, size_t errlen);
void http_pool_free(HttpPool *p);
/* Queue a POST of body (copied) to url with extra headers (a NULL-terminated
 * list, copied; may be NULL). It starts when a slot is free. */
void http_submit(HttpPool *p, const char *url, const char *const *headers, const char *body,
                 size_t len, void *user);
/* Requests submitted and not yet returned by http_run. */
size_t http_pending(const HttpPool *p);
/* Drive transfers until at least one request is finished (success or final
 * failure) and return how many were put in out (at most max), or 0 when
 * nothing is pending. -1 on an internal curl error (message in err). */
int http_run(HttpPool *p, HttpResult *out, size_t max, char *err, size_t errlen) SP_RESULT_USED;
/* Counters for the summary: attempts started, retries scheduled. */
uint64_t http_attempts(const HttpPool *p);
uint64_t http_retries(const HttpPool *p);

#endif
