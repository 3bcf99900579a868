/* http.c: concurrent POSTs with retry, backoff and Retry-After over
 * libcurl's multi interface (see http.h). */
#include <curl/curl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

typedef struct {
    char *url;
    struct curl_slist *hdrs;
    char *body;
    size_t len;
    void *user;
    int attempts;
    double not_before;      /* sp_now() time before which it must not start */
    char *resp;             /* response body of the current attempt */
    size_t rlen, rcap;
    CURL *easy;             /* non-NULL while in flight */
    char curlerr[CURL_ERROR_SIZE];
} HttpReq;

struct HttpPool {
    HttpOpts o;
    CURLM *multi;
    HttpReq **wait;         /* (nwait) queued or backing off */
    size_t nwait, capwait;
    size_t inflight;
    HttpResult *done;       /* (ndone) finished, not yet returned */
    size_t ndone, capdone;
    SpRng rng;
    uint64_t n_attempts, n_retries;
};

void http_opts_default(HttpOpts *o)
{
    *o = (HttpOpts){.jobs = 8, .timeout = 120, .connect_timeout = 10, .max_attempts = 5,
                    .backoff_base = 1, .backoff_max = 60, .seed = 0x5ae91e};
}

void http_result_free(HttpResult *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

HttpPool *http_pool_new(const HttpOpts *o, char *err, size_t errlen)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return NULL;
    }
    HttpPool *p = xcalloc(1, sizeof *p);
    p->o = *o;
    if (p->o.jobs < 1) p->o.jobs = 1;
    if (p->o.max_attempts < 1) p->o.max_attempts = 1;
    p->multi = curl_multi_init();
    if (!p->multi) {
        snprintf(err, errlen, "cannot initialise libcurl");
        free(p);
        return NULL;
    }
    curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)p->o.jobs);
    sp_rng_seed(&p->rng, o->seed);
    return p;
}

static void req_free(HttpReq *r)
{
    free(r->url);
    curl_slist_free_all(r->hdrs);
    free(r->body);
    free(r->resp);
    free(r);
}

void http_pool_free(HttpPool *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nwait; i++) {
        if (p->wait[i]->easy) {
            curl_multi_remove_handle(p->multi, p->wait[i]->easy);
            curl_easy_cleanup(p->wait[i]->easy);
        }
        req_free(p->wait[i]);
    }
    for (size_t i = 0; i < p->ndone; i++) http_result_free(&p->done[i]);
    free(p->wait);
    free(p->done);
    curl_multi_cleanup(p->multi);
    free(p);
    curl_global_cleanup();
}

static void push_wait(HttpPool *p, HttpReq *r)
{
    if (p->nwait == p->capwait) p->wait = xrealloc(p->wait, (p->capwait = p->capwait * 2 + 16) * sizeof *p->wait);
    p->wait[p->nwait++] = r;
}

void http_submit(HttpPool *p, const char *url, const char *const *headers, const char *body,
                 size_t len, void *user)
{
    HttpReq *r = xcalloc(1, sizeof *r);
    r->url = xstrdup(url);
    for (size_t i = 0; headers && headers[i]; i++) r->hdrs = curl_slist_append(r->hdrs, headers[i]);
    r->hdrs = curl_slist_append(r->hdrs, "Expect:");   /* no 100-continue round trip */
    r->body = xmalloc(len + 1);
    memcpy(r->body, body, len);
    r->body[len] = 0;
    r->len = len;
    r->user = user;
    push_wait(p, r);
}

size_t http_pending(const HttpPool *p)
{
    return p->nwait + p->ndone;
}

uint64_t http_attempts(const HttpPool *p) { return p->n_attempts; }
uint64_t http_retries(const HttpPool *p) { return p->n_retries; }

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    HttpReq *r = ud;
    size_t n = size * nmemb;
    if (r->rlen + n + 1 > r->rcap) {
        r->rcap = (r->rlen + n + 1) * 2;
        r->resp = xrealloc(r->resp, r->rcap);
    }
    memcpy(r->resp + r->rlen, ptr, n);
    r->rlen += n;
    r->resp[r->rlen] = 0;
    return n;
}

static int start(HttpPool *p, HttpReq *r)
{
    CURL *e = curl_easy_init();
    if (!e) return -1;
    r->rlen = 0;
    r->curlerr[0] = 0;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curlerr);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(p->o.timeout * 1000));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(p->o.connect_timeout * 1000));
    curl_easy_setopt(e, CURLOPT_USERAGENT, "saepipe/" SAEPIPE_VERSION);
    if (curl_multi_add_handle(p->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return -1;
    }
    r->easy = e;
    r->attempts++;
    p->inflight++;
    p->n_attempts++;
    return 0;
}

static int retryable_status(long s)
{
    return s == 408 || s == 409 || s == 429 || s >= 500;
}

static int retryable_curl(CURLcode c)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT: case CURLE_COULDNT_CONNECT: case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_PARTIAL_FILE: case CURLE_GOT_NOTHING: case CURLE_RECV_ERROR: case CURLE_SEND_ERROR:
    case CURLE_HTTP2: case CURLE_HTTP2_STREAM: case CURLE_SSL_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}

/* Seconds to wait before attempt r->attempts + 1: full jitter over an
 * exponentially growing window, but at least Retry-After (capped). */
static double backoff(HttpPool *p, const HttpReq *r, double retry_after)
{
    double win = p->o.backoff_base * pow(2.0, r->attempts - 1);
    if (win > p->o.backoff_max) win = p->o.backoff_max;
    double d = win * sp_rng_uniform(&p->rng);
    if (retry_after > p->o.backoff_max) retry_after = p->o.backoff_max;
    return d < retry_after ? retry_after : d;
}

static void finish(HttpPool *p, HttpReq *r, CURLcode rc)
{
    long status = 0;
    curl_off_t ra = -1;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &ra);
    curl_multi_remove_handle(p->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    p->inflight--;

    char err[256] = "";
    int retry = 0;
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(err, sizeof err, "no complete reply within %g s", p->o.timeout);
        retry = 1;
    } else if (rc == CURLE_PARTIAL_FILE) {
        snprintf(err, sizeof err, "reply cut short (%zu bytes received)", r->rlen);
        retry = 1;
    } else if (rc != CURLE_OK) {
        snprintf(err, sizeof err, "%s", r->curlerr[0] ? r->curlerr : curl_easy_strerror(rc));
        retry = retryable_curl(rc);
    } else if (status < 200 || status > 299) {
        snprintf(err, sizeof err, "HTTP %ld", status);
        retry = retryable_status(status);
    }
    if (err[0] && retry && r->attempts < p->o.max_attempts) {
        r->not_before = sp_now() + backoff(p, r, ra > 0 ? (double)ra : 0);
        p->n_retries++;
        push_wait(p, r);
        return;
    }
    if (p->ndone == p->capdone) p->done = xrealloc(p->done, (p->capdone = p->capdone * 2 + 8) * sizeof *p->done);
    HttpResult *res = &p->done[p->ndone++];
    *res = (HttpResult){.user = r->user, .ok = !err[0], .status = status, .attempts = r->attempts,
                        .body = r->resp ? r->resp : xstrdup(""), .len = r->rlen};
    if (err[0] && r->attempts > 1)
        snprintf(res->err, sizeof res->err, "%.200s (after %d attempts)", err, r->attempts);
    else
        snprintf(res->err, sizeof res->err, "%s", err);
    r->resp = NULL;
    req_free(r);
}

/* Start what may start; return seconds until the next backoff ends (or 1). */
static double start_ready(HttpPool *p, int *failed)
{
    double now = sp_now(), next = 1.0;
    size_t j = 0;
    for (size_t i = 0; i < p->nwait; i++) {
        HttpReq *r = p->wait[i];
        if (!r->easy && p->inflight < p->o.jobs && r->not_before <= now && start(p, r) < 0) *failed = 1;
        if (!r->easy && r->not_before > now && r->not_before - now < next) next = r->not_before - now;
        p->wait[j++] = r;
    }
    p->nwait = j;
    return next;
}

static void drop_finished(HttpPool *p, HttpReq *r)
{
    for (size_t i = 0; i < p->nwait; i++)
        if (p->wait[i] == r) {
            memmove(p->wait + i, p->wait + i + 1, (p->nwait - i - 1) * sizeof *p->wait);
            p->nwait--;
            return;
        }
}

int http_run(HttpPool *p, HttpResult *out, size_t max, char *err, size_t errlen)
{
    for (;;) {
        if (p->ndone) {
            size_t n = p->ndone < max ? p->ndone : max;
            memcpy(out, p->done, n * sizeof *out);
            memmove(p->done, p->done + n, (p->ndone - n) * sizeof *p->done);
            p->ndone -= n;
            return (int)n;
        }
        if (!p->nwait) return 0;
        int failed = 0;
        double next = start_ready(p, &failed);
        if (failed) {
            snprintf(err, errlen, "cannot start a transfer (libcurl)");
            return -1;
        }
        int running = 0;
        if (curl_multi_perform(p->multi, &running) != CURLM_OK) {
            snprintf(err, errlen, "libcurl multi interface failed");
            return -1;
        }
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(p->multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            HttpReq *r = NULL;
            CURLcode rc = m->data.result;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            drop_finished(p, r);
            finish(p, r, rc);
        }
        if (p->ndone) continue;
        int ms = (int)(next * 1000) + 1;
        if (ms > 1000) ms = 1000;
        if (curl_multi_poll(p->multi, NULL, 0, ms, NULL) != CURLM_OK) {
            snprintf(err, errlen, "libcurl multi interface failed");
            return -1;
        }
    }
}
