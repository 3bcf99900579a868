/* spoil-logits WHAT [IN.tsz] > OUT.tsz: a copy of a topk-ctx stream (its
 * header's "topk", "f" and "logits" kept) whose first record with logit
 * effects (topk-ctx --sae) has them spoiled, for the bad-input tests of
 * every stage that reads them (sae-report, sae-export, topk-ctx --merge).
 * WHAT:
 *   short     logit_top_vals one value shorter than logit_top_ids
 *   k         the suppressed pair one token shorter than the promoted
 *   dtype     logit_top_ids widened to i64
 *   negative  logit_top_ids[0] = -1
 *   vocab     the last of logit_bot_ids = 50257 (past GPT-2's vocabulary)
 *   missing   no logit_bot_vals
 *   none      none of the four (the header still says "logits")
 * Exit 1 when no record has logit effects. */
#include <stdlib.h>
#include <string.h>

#include "stream.h"

static TszTensor *need(TszRecord *rec, const char *name, TszDtype dt)
{
    TszTensor *t = tsz_record_get(rec, name);
    if (!t || t->dtype != dt || t->ndim != 1 || !t->shape[0]) sp_die("no 1-d %s \"%s\"", tsz_dtype_name(dt), name);
    return t;
}

/* name replaced by (n) dt values from src (copied first: src may be its data). */
static void replace(TszRecord *rec, const char *name, TszDtype dt, uint64_t n, const void *src)
{
    size_t bytes = n * tsz_dtype_size(dt);
    void *keep = xmalloc(bytes + 1);
    memcpy(keep, src, bytes);
    uint64_t shape[1] = {n};
    if (tsz_record_remove(rec, name) < 0) sp_die("no \"%s\"", name);
    tsz_record_add_copy(rec, name, dt, 1, shape, keep);
    free(keep);
}

/* One value fewer. */
static void shorten(TszRecord *rec, const char *name, TszDtype dt)
{
    TszTensor *t = need(rec, name, dt);
    replace(rec, name, dt, t->shape[0] - 1, t->data);
}

/* i32 ids as i64. */
static void widen(TszRecord *rec, const char *name)
{
    TszTensor *t = need(rec, name, TSZ_I32);
    uint64_t n = t->shape[0];
    int64_t *v = xmalloc(n * sizeof *v);
    for (uint64_t i = 0; i < n; i++) v[i] = ((const int32_t *)t->data)[i];
    replace(rec, name, TSZ_I64, n, v);
    free(v);
}

static void set_id(TszRecord *rec, const char *name, int last, int32_t v)
{
    TszTensor *t = need(rec, name, TSZ_I32);
    ((int32_t *)t->data)[last ? t->shape[0] - 1 : 0] = v;
}

static void spoil(TszRecord *rec, const char *what)
{
    if (!strcmp(what, "short")) {
        shorten(rec, "logit_top_vals", TSZ_F32);
    } else if (!strcmp(what, "k")) {
        shorten(rec, "logit_bot_ids", TSZ_I32);
        shorten(rec, "logit_bot_vals", TSZ_F32);
    } else if (!strcmp(what, "dtype")) {
        widen(rec, "logit_top_ids");
    } else if (!strcmp(what, "negative")) {
        set_id(rec, "logit_top_ids", 0, -1);
    } else if (!strcmp(what, "vocab")) {
        set_id(rec, "logit_bot_ids", 1, 50257);
    } else if (!strcmp(what, "missing")) {
        if (tsz_record_remove(rec, "logit_bot_vals") < 0) sp_die("no logit_bot_vals");
    } else if (!strcmp(what, "none")) {
        static const char *const all[] = {"logit_top_ids", "logit_top_vals", "logit_bot_ids", "logit_bot_vals"};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++)
            if (tsz_record_remove(rec, all[i]) < 0) sp_die("no %s", all[i]);
    } else {
        sp_die("unknown WHAT %s (short, k, dtype, negative, vocab, missing, none)", what);
    }
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    if (argc < 2 || argc > 3) sp_die("usage: spoil-logits WHAT [IN.tsz] > OUT.tsz");
    TszReader *r = tsz_reader_open(argc > 2 ? argv[2] : "-");
    tsz_reader_check(r);
    TszWriter *w = tsz_writer_open("-", "spoil-logits", argc, argv, NULL);
    tsz_writer_check(w);
    // the keys topk-ctx puts in its header, which sae-export reads
    static const char *const keys[] = {"topk", "f", "features", "logits"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        json_t *v = json_object_get(tsz_reader_header(r), keys[i]);
        if (v) json_object_set(tsz_writer_header(w), keys[i], v);
    }
    TszRecord rec;
    tsz_record_init(&rec);
    int done = 0;
    while (tsz_read_or_die(r, &rec)) {
        if (!done && tsz_record_get(&rec, "logit_top_ids")) spoil(&rec, argv[1]), done = 1;
        tsz_write_or_die(w, &rec);
    }
    if (!done) sp_die("%s: no record has logit effects", tsz_reader_name(r));
    tsz_writer_close_or_die(w);
    tsz_reader_close(r);
    tsz_record_free(&rec);
    return 0;
}
