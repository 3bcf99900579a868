/* gpt2-tok: text or JSON Lines to GPT-2 token windows (kind "tokens").
 * The tokenizer lives in lib/bpe.c; this main reads documents, joins them
 * with <|endoftext|> and cuts the token stream into BOS-led windows. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bpe.h"
#include "fetch.h"
#include "jsonl.h"
#include "kinds.h"
#include "stream.h"
#include "textin.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: gpt2-tok --model DIR|ID [OPTIONS] [FILE... | -] > TOKENS.tsz\n"
"Tokenize text with GPT-2's byte-level BPE (identical ids to GPT-2's own\n"
"tokenizer) into windows `tokens` i32 (rows, ctx), each starting with\n"
"<|endoftext|> (50256) as BOS, documents joined by <|endoftext|>; `doc` and\n"
"`offset` i64 (rows) trace every window back to its document.\n"
"\n"
"Options:\n"
"  -m, --model DIR|ID    model directory with vocab.json and merges.txt, or a\n"
"                        hub id already fetched by model-fetch [required]\n"
"      --format FMT      text or jsonl [Default: text]\n"
"      --key KEY         jsonl: the string field holding the text [Default: text]\n"
"      --split HOW       text: what a document is: file (each input),\n"
"                        blank (blocks between blank lines) or line [Default: file]\n"
"      --ctx N           tokens per window, BOS included; 0 = one record per\n"
"                        document, (1, 1+n) [Default: 128]\n"
"      --drop-tail       drop the last, incomplete window [Default: keep it as a\n"
"                        final record of shape (1, 1+rest)]\n"
"      --no-special      <|endoftext|> in the text is plain text [Default: it is\n"
"                        token 50256]\n"
"      --rows N          windows per record [Default: about 4 MB of tokens]\n"
"  -j, --threads N       encode on N threads (long documents in parts); the\n"
"                        output is the same [Default: 1]\n"
);
    sp_stage_help(f, 22, "the stream");
    fprintf(f,
"\n"
"No FILE or '-' reads standard input. Input compressed with gzip or zstd is\n"
"read as its text (told by its first bytes). Invalid UTF-8 is encoded byte\n"
"for byte.\n"
"--ctx may not exceed the model's n_positions (config.json) when known.\n"
"Exit status: 0 on success, 1 on a bad input or model, 2 on bad usage.\n");
    exit(status);
}

enum { FMT_TEXT, FMT_JSONL };
enum { SPLIT_FILE, SPLIT_BLANK, SPLIT_LINE };

typedef struct {
    const char *model, *output, *key;
    int format, split, drop_tail, no_special, force, progress;
    uint64_t ctx, rows, threads;
    char **inputs;
    int ninputs;
} Opts;

static void parse_args(Opts *o, int argc, char **argv)
{
    enum { O_FORMAT = 256, O_KEY, O_SPLIT, O_CTX, O_DROP, O_NOSPEC, O_ROWS };
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'}, {"format", required_argument, 0, O_FORMAT},
        {"key", required_argument, 0, O_KEY}, {"split", required_argument, 0, O_SPLIT},
        {"ctx", required_argument, 0, O_CTX}, {"drop-tail", no_argument, 0, O_DROP},
        {"no-special", no_argument, 0, O_NOSPEC}, {"rows", required_argument, 0, O_ROWS},
        {"threads", required_argument, 0, 'j'},
        SP_STAGE_LONGOPTS,
    };
    static const SpChoice formats[] = {{"text", FMT_TEXT}, {"jsonl", FMT_JSONL}};
    static const SpChoice splits[] = {{"file", SPLIT_FILE}, {"blank", SPLIT_BLANK}, {"line", SPLIT_LINE}};
    *o = (Opts){.key = "text", .ctx = 128, .threads = 1};
    int c, key_given = 0, split_given = 0;
    while ((c = getopt_long(argc, argv, "m:o:j:fhV", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case O_FORMAT: o->format = SP_OPT_CHOICE("--format", optarg, formats); break;
        case O_KEY: o->key = optarg; key_given = 1; break;
        case O_SPLIT: o->split = SP_OPT_CHOICE("--split", optarg, splits); split_given = 1; break;
        case O_CTX: o->ctx = sp_opt_u64("--ctx", optarg, 0, 1u << 24); break;
        case O_DROP: o->drop_tail = 1; break;
        case O_NOSPEC: o->no_special = 1; break;
        case O_ROWS: o->rows = sp_opt_u64("--rows", optarg, 1, 1u << 30); break;
        case 'j': o->threads = sp_opt_u64("--threads", optarg, 1, 256); break;
        default: sp_stage_opt(c, &o->output, &o->force, &o->progress, usage);
        }
    }
    if (!o->model) sp_usage_die("--model DIR|ID is required");
    if (o->ctx == 1) sp_usage_die("--ctx: 1 leaves no room after the BOS; use 0 or at least 2");
    if (key_given && o->format != FMT_JSONL) sp_usage_die("--key goes with --format jsonl");
    if (split_given && o->format != FMT_TEXT) sp_usage_die("--split goes with --format text");
    o->inputs = argv + optind;
    o->ninputs = argc - optind;
}

/* ---- windows ---- */

typedef struct {
    Opts *o;
    TszWriter *w;
    TszRecord rec;
    size_t T;           /* ctx */
    size_t R;           /* rows per record */
    int32_t *tok;       /* (R, T) */
    int64_t *doc, *off; /* (R) */
    size_t row, pos;    /* row being filled, next position in it (1..T-1) */
    uint64_t rows_out, tokens, docs;
} Win;

static void emit(Win *wn, const int32_t *tok, const int64_t *doc, const int64_t *off, size_t rows, size_t T)
{
    TszRecord *r = &wn->rec;
    tsz_record_clear(r);
    json_object_set_new(r->meta, "kind", json_string(SP_KIND_TOKENS));
    uint64_t s2[2] = {rows, T}, s1[1] = {rows};
    tsz_record_add_copy(r, "tokens", TSZ_I32, 2, s2, tok);
    tsz_record_add_copy(r, "doc", TSZ_I64, 1, s1, doc);
    tsz_record_add_copy(r, "offset", TSZ_I64, 1, s1, off);
    tsz_write_or_die(wn->w, r);
    wn->rows_out += rows;
}

static void win_flush(Win *wn)
{
    if (wn->row) emit(wn, wn->tok, wn->doc, wn->off, wn->row, wn->T);
    wn->row = 0;
}

/* n ids of document `doc`, the first at offset `off`, into windows: a
 * window's worth at a time (one call per token took about 8% of the main
 * thread's instructions, beside its reading and compressing). */
static void win_push(Win *wn, const int32_t *ids, size_t n, int64_t doc, int64_t off)
{
    while (n) {
        int32_t *t = wn->tok + wn->row * wn->T;
        if (wn->pos == 1) {
            t[0] = 50256;
            wn->doc[wn->row] = doc;
            wn->off[wn->row] = off;
        }
        size_t k = wn->T - wn->pos < n ? wn->T - wn->pos : n;
        memcpy(t + wn->pos, ids, k * sizeof *ids);
        ids += k;
        n -= k;
        off += (int64_t)k;
        wn->pos += k;
        if (wn->pos < wn->T) return;
        wn->pos = 1;
        if (++wn->row == wn->R) win_flush(wn);
    }
}

static void win_finish(Win *wn)
{
    if (wn->T == 0) return;
    size_t rest = wn->pos - 1, r = wn->row;   /* the incomplete window is row r */
    if (r) emit(wn, wn->tok, wn->doc, wn->off, r, wn->T);
    if (rest && !wn->o->drop_tail) emit(wn, wn->tok + r * wn->T, wn->doc + r, wn->off + r, 1, rest + 1);
    wn->row = 0;
}

/* ---- documents to pieces, pieces to jobs, jobs to threads ----
 *
 * The text of the documents is gathered into batches of about BATCH_BYTES.
 * Documents are cut, as they are read, into pieces of about PIECE_BYTES
 * where the BPE gives the same ids as for the whole (bpe_split_point): a
 * long document (a whole file) goes out a batch at a time, so the threads
 * encode its start while the rest is read, and it keeps every thread busy.
 * Jobs (runs of pieces, about PIECE_BYTES each) are encoded by the threads,
 * each with its own BpeEnc, while the main thread reads the next batch and
 * places finished jobs in input order: the output does not depend on the
 * number of threads. With threads, the model loads on a thread of its own
 * while the main thread reads the first batches; the workers wait for it.
 * N threads are the main thread and N - 1 workers: when the main thread
 * would wait for a job, it encodes one itself. With N workers beside it,
 * N + 1 threads were busy on N cores, and every wake-up of the main thread
 * (its reading, placing and compressing are a quarter of the work) took a
 * core from a worker: 650 context switches a run on 20 MB, now 250. */
#define PIECE_BYTES (64u << 10)
#define BATCH_BYTES (1u << 20)
#define NBATCH 8    /* batches in flight: one filling, the rest encoding or waiting to be placed
                       (8 MB: what the main thread can read while the model loads) */

typedef struct {
    size_t off, len;        /* its text in the batch */
    size_t id0, id1;        /* its ids in its job's ids */
    int first, last;        /* it starts / ends its document */
} Piece;

typedef struct {
    size_t p0, p1;          /* pieces [p0, p1) */
    BpeIds ids;
    int done;               /* under Reader.mu */
} Job;

typedef struct {
    JsonlBuf text;          /* the documents, concatenated */
    Piece *pc;              /* (npc) */
    size_t npc, cappc;
    Job *job;               /* (njob) */
    size_t njob, capjob;
    size_t open;            /* first piece not in a job yet */
    size_t next;            /* next job to hand out (under Reader.mu) */
    size_t placed;          /* jobs placed */
} Batch;

typedef struct Reader Reader;
typedef struct {
    Reader *rd;
    BpeEnc e;
    BpeIds ids;             /* a job's ids are written here, then handed to the job */
} Worker;

struct Reader {
    Win *wn;
    int flags;              /* for bpe_encode */
    SpProgress prog;
    uint64_t bytes;
    int64_t doc;            /* the document being placed, and the offset of its next token */
    int64_t doc_off;
    BpeIds ids;             /* --ctx 0: the document being placed, BOS first */
    Batch b[NBATCH];
    uint64_t head, tail;    /* batches [head, tail) are posted; tail % NBATCH fills */
    size_t cut;             /* the filling batch's text from here on is in no piece yet */
    size_t scanned;         /* ... and has no cut point before here (when past cut + PIECE_BYTES) */
    int in_doc;             /* the document being read has pieces already */
    BpeEnc *e;              /* the main thread's encoder (with threads: set up when first needed) */
    BpeIds ids_e;           /* its ids */
    int e_ready;            /* with threads: e is set up (1), cannot be (-1) */
    Worker *wk;             /* (nwk) threads; none for one thread */
    size_t nwk;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t work, done;   /* a batch was posted, the model loaded (or quit) / a job finished */
    int quit;
    const Bpe *bpe;         /* the model once loaded (under mu) */
    int loaded;             /* 1 loaded, -1 failed (under mu) */
    char err[512];          /* the first failure to load or encode */
};

static Batch *filling(Reader *rd) { return &rd->b[rd->tail % NBATCH]; }

/* The ids go into the encoding thread's own list, which is then swapped
 * with the job's: two threads on neighbouring jobs would otherwise write
 * one cache line (their lists' counts) at every token. */
static void encode_job(BpeEnc *e, int flags, Batch *b, Job *j, BpeIds *ids, char *err, size_t errlen)
{
    ids->n = 0;
    for (size_t i = j->p0; i < j->p1; i++) {
        Piece *pc = &b->pc[i];
        pc->id0 = ids->n;
        if (bpe_encode(e, b->text.v + pc->off, pc->len, flags, ids) < 0 && !*err) snprintf(err, errlen, "%s", e->err);
        pc->id1 = ids->n;
    }
    BpeIds t = j->ids;
    j->ids = *ids;
    *ids = t;
}

/* A failure of another thread: the main thread reports it (place_ready). */
static void fail(Reader *rd, const char *msg)
{
    pthread_mutex_lock(&rd->mu);
    if (!*rd->err) snprintf(rd->err, sizeof rd->err, "%s", msg);
    pthread_cond_broadcast(&rd->done);
    pthread_mutex_unlock(&rd->mu);
}

/* The model's vocabulary, merges and pattern; b->err or err says why not. */
static int load_model(Bpe *b, const char *dir, char *err, size_t errlen)
{
    if (bpe_load(b, dir) < 0) return snprintf(err, errlen, "%s", b->err), -1;
    if (b->eot != 50256)
        return snprintf(err, errlen, "%.*s: <|endoftext|> is not token 50256: not a GPT-2 vocabulary",
                        (int)(errlen / 2), dir), -1;   /* a path cut short rather than the message */
    return 0;
}

typedef struct {
    Reader *rd;
    Bpe *b;
    const char *dir;
} Loader;

static void *load_run(void *arg)
{
    Loader *l = arg;
    Reader *rd = l->rd;
    char err[512];
    int rc = load_model(l->b, l->dir, err, sizeof err);
    if (rc < 0) fail(rd, err);
    pthread_mutex_lock(&rd->mu);
    rd->bpe = l->b;
    rd->loaded = rc < 0 ? -1 : 1;
    pthread_cond_broadcast(&rd->work);
    pthread_mutex_unlock(&rd->mu);
    return NULL;
}

/* With rd->mu held: the oldest job no thread has taken, or 0 if none
 * (then *bp is not set). */
static int take_job(Reader *rd, Batch **bp, Job **jp)
{
    for (uint64_t k = rd->head; k < rd->tail; k++) {
        Batch *b = &rd->b[k % NBATCH];
        if (b->next < b->njob) {
            *bp = b;
            *jp = &b->job[b->next++];
            return 1;
        }
    }
    return 0;
}

/* With rd->mu held (released while it encodes): encode a taken job. */
static void run_job(Reader *rd, BpeEnc *e, BpeIds *ids, Batch *b, Job *j)
{
    char err[256] = "";
    pthread_mutex_unlock(&rd->mu);
    encode_job(e, rd->flags, b, j, ids, err, sizeof err);
    pthread_mutex_lock(&rd->mu);
    if (*err && !*rd->err) snprintf(rd->err, sizeof rd->err, "%s", err);
    j->done = 1;
    pthread_cond_broadcast(&rd->done);
}

/* With rd->mu held: wait for the model and set up e; 0 if it failed
 * (rd->err says why). */
static int enc_ready(Reader *rd, BpeEnc *e)
{
    while (!rd->loaded) pthread_cond_wait(&rd->work, &rd->mu);
    if (rd->loaded < 0) return 0;
    pthread_mutex_unlock(&rd->mu);
    int rc = bpe_enc_init(e, rd->bpe);
    pthread_mutex_lock(&rd->mu);
    if (rc < 0 && !*rd->err) snprintf(rd->err, sizeof rd->err, "%s", e->err);
    return rc == 0;
}

/* The batches and the main thread's encoder, once all is placed. */
static void free_batches(Reader *rd)
{
    for (size_t k = 0; k < NBATCH; k++) {
        Batch *bt = &rd->b[k];
        for (size_t i = 0; i < bt->capjob; i++) bpe_ids_free(&bt->job[i].ids);
        free(bt->job);
        free(bt->pc);
        free(bt->text.v);
    }
    bpe_enc_free(rd->e);
    bpe_ids_free(&rd->ids_e);
}

static void *worker_run(void *arg)
{
    Worker *w = arg;
    Reader *rd = w->rd;
    pthread_mutex_lock(&rd->mu);
    if (enc_ready(rd, &w->e)) {
        for (;;) {
            Batch *b;
            Job *j;
            if (take_job(rd, &b, &j)) run_job(rd, &w->e, &w->ids, b, j);
            else if (rd->quit) break;
            else pthread_cond_wait(&rd->work, &rd->mu);
        }
    }
    pthread_cond_broadcast(&rd->done);   /* a failure to set up: the main thread may wait */
    int last_user = w == rd->wk && rd->quit;   /* all placed: no one uses the batches now */
    pthread_mutex_unlock(&rd->mu);
    /* freed here, while the main thread compresses the last record (after
     * it, their munmaps were a quarter of the serial end of a run) */
    bpe_enc_free(&w->e);
    bpe_ids_free(&w->ids);
    if (last_user) free_batches(rd);
    return NULL;
}

/* With rd->mu held, the main thread waiting for a job: it encodes the
 * oldest job not taken yet, or sleeps until a worker finishes one. The
 * caller checks its job again after each call (the lock was let go). */
static void help_or_wait(Reader *rd)
{
    Batch *b;
    Job *j;
    if (!rd->e_ready) {   /* its job may have finished meanwhile: no sleeping on it now */
        rd->e_ready = enc_ready(rd, rd->e) ? 1 : -1;
        return;
    }
    if (rd->e_ready < 0) return;   /* no model or encoder: rd->err is set, the caller stops */
    if (take_job(rd, &b, &j)) run_job(rd, rd->e, &rd->ids_e, b, j);
    else pthread_cond_wait(&rd->done, &rd->mu);
}

/* One piece's ids into windows: the first piece of a document starts it,
 * the last ends it with the separator (--ctx 0: emits its record). */
static void place_piece(Reader *rd, const Piece *pc, const int32_t *ids, size_t n)
{
    Win *wn = rd->wn;
    if (pc->first) {
        rd->doc = (int64_t)wn->docs++;
        rd->doc_off = 0;
        rd->ids.n = 0;
        if (wn->T == 0) bpe_ids_push(&rd->ids, 50256);   /* --ctx 0: BOS + the document's ids */
    }
    wn->tokens += n;
    if (wn->T == 0)
        bpe_ids_append(&rd->ids, ids, n);
    else
        win_push(wn, ids, n, rd->doc, rd->doc_off);
    rd->doc_off += (int64_t)n;
    if (!pc->last) return;
    if (wn->T == 0) {
        int64_t zero = 0;
        emit(wn, rd->ids.v, &rd->doc, &zero, 1, rd->ids.n);
    } else {
        int32_t sep = 50256;   /* the separator ends the document */
        win_push(wn, &sep, 1, rd->doc, rd->doc_off);
    }
}

/* Place the finished jobs of the oldest batches, in order; with `wait`,
 * until the oldest batch is all placed (or none is posted). */
static void place_ready(Reader *rd, int wait)
{
    while (rd->head < rd->tail) {
        Batch *b = &rd->b[rd->head % NBATCH];
        while (b->placed < b->njob) {
            Job *j = &b->job[b->placed];
            pthread_mutex_lock(&rd->mu);
            while (!j->done && !*rd->err && wait) help_or_wait(rd);
            int done = j->done, failed = *rd->err != 0;   /* err is written once */
            pthread_mutex_unlock(&rd->mu);
            if (failed) sp_die("%s", rd->err);
            if (!done) return;
            for (size_t i = j->p0; i < j->p1; i++) place_piece(rd, &b->pc[i], j->ids.v + b->pc[i].id0, b->pc[i].id1 - b->pc[i].id0);
            b->placed++;
        }
        pthread_mutex_lock(&rd->mu);
        rd->head++;
        pthread_mutex_unlock(&rd->mu);
        if (wait) return;
    }
}

static void close_job(Batch *b)
{
    if (b->open == b->npc) return;
    if (b->njob == b->capjob) {
        b->capjob = b->capjob ? 2 * b->capjob : 64;
        b->job = xrealloc(b->job, b->capjob * sizeof *b->job);
        memset(b->job + b->njob, 0, (b->capjob - b->njob) * sizeof *b->job);
    }
    Job *j = &b->job[b->njob++];
    j->p0 = b->open;
    j->p1 = b->open = b->npc;
    j->done = 0;
}

/* The filling batch goes to the threads (without threads: is encoded now);
 * finished jobs are placed, and a batch is made free to fill next. */
static void post(Reader *rd)
{
    Batch *b = filling(rd);
    close_job(b);
    if (!b->njob) return;
    b->next = b->placed = 0;
    if (!rd->nwk) {
        for (size_t i = 0; i < b->njob; i++) {
            encode_job(rd->e, rd->flags, b, &b->job[i], &rd->ids_e, rd->err, sizeof rd->err);
            b->job[i].done = 1;
        }
        b->next = b->njob;
    }
    pthread_mutex_lock(&rd->mu);
    rd->tail++;
    pthread_cond_broadcast(&rd->work);
    pthread_mutex_unlock(&rd->mu);
    place_ready(rd, 0);
    while (rd->tail - rd->head == NBATCH) place_ready(rd, 1);
    b = filling(rd);
    b->text.n = b->npc = b->njob = b->open = 0;
}

static void add_piece(Batch *b, size_t off, size_t len, int first, int last)
{
    if (b->npc == b->cappc) {
        b->cappc = b->cappc ? 2 * b->cappc : 1024;
        b->pc = xrealloc(b->pc, b->cappc * sizeof *b->pc);
    }
    b->pc[b->npc++] = (Piece){.off = off, .len = len, .first = first, .last = last};
    if (b->pc[b->npc - 1].off + len - b->pc[b->open].off >= PIECE_BYTES) close_job(b);
}

/* The filling batch goes out with the pieces cut so far; the rest of the
 * document being read moves to the start of the next batch. */
static void carry(Reader *rd)
{
    Batch *old = filling(rd);
    size_t rest = old->text.n - rd->cut;
    post(rd);
    JsonlBuf *t = &filling(rd)->text;   /* another batch: old's text stays as it is until placed */
    jsonl_buf_reserve(t, rest);
    memcpy(t->v, old->text.v + rd->cut, rest);
    t->n = rest;
    rd->scanned = rd->scanned > rd->cut ? rd->scanned - rd->cut : 0;
    rd->cut = 0;
}

/* The document being read is the filling batch's text from rd->cut on (and
 * the pieces before): cut what is there into pieces; with `end`, the rest
 * is its last piece. Pieces end at the first split point past PIECE_BYTES,
 * which depends only on the bytes before it, so cutting as the text comes
 * gives the cuts of the whole. */
static void add_text(Reader *rd, int end)
{
    Batch *b = filling(rd);
    size_t n = b->text.n;
    while (n - rd->cut > PIECE_BYTES) {
        size_t from = rd->scanned > rd->cut + PIECE_BYTES ? rd->scanned - rd->cut : PIECE_BYTES;
        size_t at = rd->cut + bpe_split_point(b->text.v + rd->cut, n - rd->cut, from);
        if (at == n) {   /* none yet: search on from here when more is read */
            rd->scanned = n;
            break;
        }
        add_piece(b, rd->cut, at - rd->cut, !rd->in_doc, 0);
        rd->cut = at;
        rd->in_doc = 1;
    }
    if (!end) {
        if (n >= BATCH_BYTES && b->npc) carry(rd);
        return;
    }
    add_piece(b, rd->cut, n - rd->cut, !rd->in_doc, 1);
    rd->in_doc = 0;
    rd->scanned = 0;
    if (!rd->nwk || n >= BATCH_BYTES) post(rd);   /* one thread: each document's windows go out at once */
    rd->cut = filling(rd)->text.n;
}

/* Append n bytes to the filling batch's text. */
static void gather(Reader *rd, const char *s, size_t n)
{
    JsonlBuf *t = &filling(rd)->text;
    jsonl_buf_reserve(t, n);
    memcpy(t->v + t->n, s, n);
    t->n += n;
}

static int blank_line(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* --split blank: the block being read is a document. A piece cut before
 * the newline that ends it leaves that newline in the rest, so the rest may
 * become an empty last piece. */
static void end_block(Reader *rd)
{
    JsonlBuf *t = &filling(rd)->text;
    if (t->n == rd->cut && !rd->in_doc) return;
    if (t->v[t->n - 1] == '\n') t->n--;   /* the newline before the blank line separates, it is not text */
    if (t->n > rd->cut && t->v[t->n - 1] == '\r') t->n--;
    add_text(rd, 1);
}

/* Room for the next bytes of a document in the filling batch: up to a
 * batch, then a little at a time until a piece can be cut (the buffer may
 * be larger, grown by a long line before); never under 4 bytes, a decoded
 * escape's most (with less, jsonl_unescape can take nothing). */
static size_t room(Reader *rd)
{
    JsonlBuf *t = &filling(rd)->text;
    size_t want = t->n + 4 <= BATCH_BYTES ? BATCH_BYTES - t->n : 1 << 16;
    jsonl_buf_reserve(t, want);
    return want;
}

static void jsonl_line(Reader *rd, const char *line, size_t n, uint64_t lineno, const char *in)
{
    if (blank_line(line, n)) return;
    const char *key = rd->wn->o->key;
    size_t at, len;
    if (jsonl_field_span(line, n, key, strlen(key), &filling(rd)->text, &at, &len)) {
        /* the common case, without a DOM: the line is known good, and its
         * text goes to the threads a batch at a time as it is decoded */
        while (len) {
            size_t want = room(rd), got;
            JsonlBuf *t = &filling(rd)->text;
            size_t k = jsonl_unescape(line + at, len, t->v + t->n, want, &got);
            at += k, len -= k, t->n += got;
            add_text(rd, 0);
        }
        add_text(rd, 1);
        return;
    }
    /* anything else: jansson decides, and names what is wrong */
    json_error_t je;
    json_t *j = json_loadb(line, n, JSON_ALLOW_NUL, &je);
    if (!j) sp_die("%s: line %" PRIu64 ": invalid JSON: %s", in, lineno, je.text);
    json_t *v = json_is_object(j) ? json_object_get(j, key) : NULL;
    if (!json_is_object(j)) sp_die("%s: line %" PRIu64 ": expected a JSON object", in, lineno);
    if (!v) sp_die("%s: line %" PRIu64 ": no \"%s\" field", in, lineno, key);
    if (!json_is_string(v)) sp_die("%s: line %" PRIu64 ": \"%s\" is not a string", in, lineno, key);
    gather(rd, json_string_value(v), json_string_length(v));
    json_decref(j);
    add_text(rd, 1);
}

/* Progress in the input's own bytes, the unit of the total (the compressed
 * ones for .gz/.zst); without a position (a pipe, or raw NULL) what it gave. */
static void progress(Reader *rd, FILE *raw, uint64_t base, size_t n)
{
    off_t pos = raw ? ftello(raw) : -1;
    rd->bytes = pos >= 0 ? base + (uint64_t)pos : rd->bytes + n;
    sp_progress_update(&rd->prog, rd->bytes);
}

/* --split file: the whole input is one document, read a batch at a time. */
static void read_file_doc(Reader *rd, FILE *f, FILE *raw, uint64_t base, const char *in)
{
    size_t got;
    for (;;) {
        size_t want = room(rd);
        JsonlBuf *t = &filling(rd)->text;
        if ((got = fread(t->v + t->n, 1, want, f)) == 0) break;
        t->n += got;
        progress(rd, raw, base, got);
        add_text(rd, 0);
    }
    if (ferror(f)) sp_die("%s: %s", in, textin_error());
    add_text(rd, 1);
}

static void read_input(Reader *rd, const char *path)
{
    const char *in = sp_in_name(path);
    FILE *raw = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!raw) sp_die("%s: %s", in, strerror(errno));
    char err[512];
    FILE *f = textin_open(raw, in, err, sizeof err);   // gzip and zstd are read as text
    if (!f) sp_die("%s", err);
    const Opts *o = rd->wn->o;
    uint64_t base = rd->bytes;
    if (o->format == FMT_TEXT && o->split == SPLIT_FILE) {
        read_file_doc(rd, f, raw, base, in);
    } else {
        TextLines lines = {0};
        const char *line;
        ssize_t n;
        uint64_t lineno = 0;
        FILE *at = textin_lines_map(&lines, f, in) ? NULL : raw;   /* mapped: the lines count the bytes */
        while ((n = textin_line(&lines, f, &line)) > 0) {
            lineno++;
            progress(rd, at, base, (size_t)n);
            if (o->format == FMT_JSONL) jsonl_line(rd, line, (size_t)n, lineno, in);
            else if (o->split == SPLIT_LINE) {
                size_t k = (size_t)n;
                while (k && (line[k - 1] == '\n' || line[k - 1] == '\r')) k--;
                if (blank_line(line, k)) continue;
                gather(rd, line, k);
                add_text(rd, 1);
            } else if (blank_line(line, (size_t)n)) {
                end_block(rd);
            } else {
                gather(rd, line, (size_t)n);
                add_text(rd, 0);
            }
        }
        if (n < 0) sp_die("%s: %s", in, textin_error());
        textin_lines_free(&lines);
        if (o->format == FMT_TEXT && o->split == SPLIT_BLANK) end_block(rd);
    }
    fclose(f);
}
/* n_positions from DIR/config.json, 0 when there is none. */
static uint64_t model_positions(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return 0;
    json_t *v = json_object_get(j, "n_positions");
    if (!json_is_integer(v)) v = json_object_get(j, "n_ctx");
    uint64_t n = json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
    json_decref(j);
    return n;
}

static uint64_t total_input_bytes(const Opts *o)
{
    uint64_t t = 0;
    for (int i = 0; i < o->ninputs; i++) {
        struct stat st;
        if (!strcmp(o->inputs[i], "-") || stat(o->inputs[i], &st) < 0 || !S_ISREG(st.st_mode)) return 0;
        t += (uint64_t)st.st_size;
    }
    return t;
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Opts o;
    parse_args(&o, argc, argv);
    char dir[4096], err[512];
    if (fetch_resolve_model(o.model, dir, sizeof dir, err, sizeof err) < 0) sp_die("%s", err);
    uint64_t npos = model_positions(dir);
    if (npos && o.ctx > npos)
        sp_usage_die("--ctx %" PRIu64 " exceeds the model's n_positions %" PRIu64, o.ctx, npos);
    Bpe b = {0};
    BpeEnc e = {0};
    Win wn = {.o = &o, .T = o.ctx, .pos = 1};
    Reader rd = {.wn = &wn, .e = &e, .flags = o.no_special ? BPE_NO_SPECIAL : 0};
    pthread_mutex_init(&rd.mu, NULL);
    pthread_cond_init(&rd.work, NULL);
    pthread_cond_init(&rd.done, NULL);
    Loader ld = {.rd = &rd, .b = &b, .dir = dir};
    pthread_t loader;
    if (o.threads > 1) {   /* the model loads while the input is read */
        if (pthread_create(&loader, NULL, load_run, &ld) != 0) sp_die("cannot start a thread");
        rd.nwk = o.threads - 1;   /* and the main thread */
        rd.wk = xcalloc(rd.nwk, sizeof *rd.wk);
        rd.th = xcalloc(rd.nwk, sizeof *rd.th);
        for (size_t t = 0; t < rd.nwk; t++) {
            rd.wk[t].rd = &rd;
            if (pthread_create(&rd.th[t], NULL, worker_run, &rd.wk[t]) != 0) sp_die("cannot start a thread");
        }
    } else {
        if (load_model(&b, dir, err, sizeof err) < 0) sp_die("%s", err);
        if (bpe_enc_init(&e, &b) < 0) sp_die("%s", e.err);
    }
    const char *out = o.output ? o.output : "-";
    if (!strcmp(out, "-")) sp_check_binary_stdout(o.force);
    char *stdin_only[] = {"-"};
    if (!o.ninputs) {
        o.inputs = stdin_only;
        o.ninputs = 1;
    }
    TszWriteOpts wo;
    tsz_write_opts_default(&wo);
    TszWriter *w = tsz_writer_open(out, "gpt2-tok", argc, argv, &wo);
    tsz_writer_check(w);
    json_t *h = tsz_writer_header(w);
    json_object_set_new(h, "model", json_string(o.model));
    json_object_set_new(h, "ctx", json_integer((json_int_t)o.ctx));

    wn.w = w;
    tsz_record_init(&wn.rec);
    if (wn.T) {
        wn.R = o.rows ? o.rows : tsz_rows_per_record(wn.T * sizeof(int32_t));
        wn.tok = xmalloc(wn.R * wn.T * sizeof *wn.tok);
        wn.doc = xmalloc(wn.R * sizeof *wn.doc);
        wn.off = xmalloc(wn.R * sizeof *wn.off);
    }
    sp_progress_init(&rd.prog, o.progress, "gpt2-tok", "B", total_input_bytes(&o));
    for (int i = 0; i < o.ninputs; i++) read_input(&rd, o.inputs[i]);
    post(&rd);
    while (rd.head < rd.tail) place_ready(&rd, 1);
    pthread_mutex_lock(&rd.mu);
    rd.quit = 1;   /* the workers free what they and the batches hold, while the last record is compressed */
    pthread_cond_broadcast(&rd.work);
    pthread_mutex_unlock(&rd.mu);
    if (rd.nwk) pthread_join(loader, NULL);
    else free_batches(&rd);
    /* an input with no document posts no job, so no place_ready saw a
     * failed load or worker: say it here, not an empty stream and 0 */
    pthread_mutex_lock(&rd.mu);
    int failed = *rd.err != 0;
    pthread_mutex_unlock(&rd.mu);
    if (failed) sp_die("%s", rd.err);
    win_finish(&wn);
    for (size_t t = 0; t < rd.nwk; t++) pthread_join(rd.th[t], NULL);
    if (*rd.err) sp_die("%s", rd.err);
    sp_progress_end(&rd.prog);
    tsz_writer_close_or_die(w);
    if (o.progress)
        fprintf(stderr, "gpt2-tok: %" PRIu64 " documents, %" PRIu64 " tokens, %" PRIu64 " rows\n", wn.docs,
                wn.tokens, wn.rows_out);
    bpe_ids_free(&rd.ids);
    free(rd.wk);
    free(rd.th);
    free(wn.tok);
    free(wn.doc);
    free(wn.off);
    tsz_record_free(&wn.rec);
    bpe_free(&b);
    return 0;
}
