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
"  -j, --threads N       encode documents on N threads; the output is the same\n"
"                        [Default: 1]\n"
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

static int pick(const char *flag, const char *v, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) return i;
    sp_usage_die("%s: unknown value '%s'", flag, v);
}

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
    static const char *const formats[] = {"text", "jsonl"}, *const splits[] = {"file", "blank", "line"};
    *o = (Opts){.key = "text", .ctx = 128, .threads = 1};
    int c, key_given = 0, split_given = 0;
    while ((c = getopt_long(argc, argv, "m:o:j:fhV", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case O_FORMAT: o->format = pick("--format", optarg, formats, 2); break;
        case O_KEY: o->key = optarg; key_given = 1; break;
        case O_SPLIT: o->split = pick("--split", optarg, splits, 3); split_given = 1; break;
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
    json_object_set_new(r->meta, "kind", json_string("tokens"));
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

static void win_push(Win *wn, int32_t id, int64_t doc, int64_t off)
{
    int32_t *t = wn->tok + wn->row * wn->T;
    if (wn->pos == 1) {
        t[0] = 50256;
        wn->doc[wn->row] = doc;
        wn->off[wn->row] = off;
    }
    t[wn->pos++] = id;
    if (wn->pos < wn->T) return;
    wn->pos = 1;
    if (++wn->row == wn->R) win_flush(wn);
}

static void win_finish(Win *wn)
{
    if (wn->T == 0) return;
    size_t rest = wn->pos - 1, r = wn->row;   /* the incomplete window is row r */
    if (r) emit(wn, wn->tok, wn->doc, wn->off, r, wn->T);
    if (rest && !wn->o->drop_tail) emit(wn, wn->tok + r * wn->T, wn->doc + r, wn->off + r, 1, rest + 1);
    wn->row = 0;
}

/* ids = BOS + the document's tokens; the BOS slot serves --ctx 0. */
static int encode_doc(BpeEnc *e, int flags, const char *text, size_t n, BpeIds *ids)
{
    ids->n = 0;
    bpe_ids_push(ids, 50256);
    return bpe_encode(e, text, n, flags, ids);
}

/* One document's ids to windows (or a record of its own). */
static void place_doc(Win *wn, const BpeIds *ids)
{
    int64_t d = (int64_t)wn->docs++;
    size_t n = ids->n - 1;
    wn->tokens += n;
    if (wn->T == 0) {
        int64_t zero = 0;
        emit(wn, ids->v, &d, &zero, 1, ids->n);
        return;
    }
    for (size_t i = 0; i < n; i++) win_push(wn, ids->v[i + 1], d, (int64_t)i);
    win_push(wn, 50256, d, (int64_t)n);   /* the separator ends the document */
}

/* ---- inputs ---- */

/* --threads: documents are gathered into a batch, encoded in parallel
 * (each thread with its own BpeEnc, taking the next document from a shared
 * counter) and placed in input order, so the output does not depend on N. */
#define BATCH_BYTES (8u << 20)
#define BATCH_DOCS 4096u

typedef struct {
    char *text;         /* the batch's documents, concatenated */
    size_t ntext, captext;
    size_t *off;        /* (BATCH_DOCS+1) document starts in text */
    size_t ndocs;
    BpeIds *ids;        /* (BATCH_DOCS) */
    size_t next;        /* next document to encode (atomic) */
    int flags, failed;
} Batch;

typedef struct {
    Batch *b;
    BpeEnc e;
} Worker;

typedef struct {
    Win *wn;
    BpeEnc *e;
    BpeIds ids;
    SpProgress prog;
    uint64_t bytes;
    char *doc;          /* text gathered for --split file and blank */
    size_t ndoc, capdoc;
    Batch batch;
    Worker *wk;         /* (threads) when threads > 1 */
    size_t nwk;
} Reader;

static void *worker_run(void *arg)
{
    Worker *w = arg;
    Batch *b = w->b;
    for (;;) {
        size_t i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
        if (i >= b->ndocs) break;
        if (encode_doc(&w->e, b->flags, b->text + b->off[i], b->off[i + 1] - b->off[i], &b->ids[i]) < 0)
            __atomic_store_n(&b->failed, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void batch_run(Reader *rd)
{
    Batch *b = &rd->batch;
    if (!b->ndocs) return;
    pthread_t *th = xmalloc(rd->nwk * sizeof *th);
    b->next = 0;
    for (size_t t = 0; t < rd->nwk; t++)
        if (pthread_create(&th[t], NULL, worker_run, &rd->wk[t]) != 0) sp_die("cannot start a thread");
    for (size_t t = 0; t < rd->nwk; t++) pthread_join(th[t], NULL);
    free(th);
    if (b->failed)
        for (size_t t = 0; t < rd->nwk; t++)
            if (*rd->wk[t].e.err) sp_die("%s", rd->wk[t].e.err);
    for (size_t i = 0; i < b->ndocs; i++) place_doc(rd->wn, &b->ids[i]);
    b->ndocs = b->ntext = 0;
}

/* A document's text: encoded now, or queued for the threads. */
static void add_doc(Reader *rd, const char *text, size_t n, const char *in)
{
    int flags = rd->wn->o->no_special ? BPE_NO_SPECIAL : 0;
    if (!rd->nwk) {
        if (encode_doc(rd->e, flags, text, n, &rd->ids) < 0) sp_die("%s: %s", in, rd->e->err);
        place_doc(rd->wn, &rd->ids);
        return;
    }
    Batch *b = &rd->batch;
    if (b->ntext + n > b->captext) {
        while (b->ntext + n > b->captext) b->captext = b->captext ? 2 * b->captext : BATCH_BYTES;
        b->text = xrealloc(b->text, b->captext);
    }
    memcpy(b->text + b->ntext, text, n);
    b->off[b->ndocs] = b->ntext;
    b->ntext += n;
    b->off[++b->ndocs] = b->ntext;
    b->flags = flags;
    if (b->ndocs == BATCH_DOCS || b->ntext >= BATCH_BYTES) batch_run(rd);
}

static void gather(Reader *rd, const char *s, size_t n)
{
    if (rd->ndoc + n > rd->capdoc) {
        while (rd->ndoc + n > rd->capdoc) rd->capdoc = rd->capdoc ? 2 * rd->capdoc : 1 << 16;
        rd->doc = xrealloc(rd->doc, rd->capdoc);
    }
    memcpy(rd->doc + rd->ndoc, s, n);
    rd->ndoc += n;
}

static int blank_line(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

static void end_block(Reader *rd, const char *in)
{
    if (!rd->ndoc) return;
    size_t n = rd->ndoc;
    if (rd->doc[n - 1] == '\n') n--;   /* the newline before the blank line separates, it is not text */
    if (n && rd->doc[n - 1] == '\r') n--;
    add_doc(rd, rd->doc, n, in);
    rd->ndoc = 0;
}

static void jsonl_line(Reader *rd, const char *line, size_t n, uint64_t lineno, const char *in)
{
    if (blank_line(line, n)) return;
    json_error_t je;
    json_t *j = json_loadb(line, n, JSON_ALLOW_NUL, &je);
    const char *key = rd->wn->o->key;
    if (!j) sp_die("%s: line %" PRIu64 ": invalid JSON: %s", in, lineno, je.text);
    json_t *v = json_is_object(j) ? json_object_get(j, key) : NULL;
    if (!json_is_object(j)) sp_die("%s: line %" PRIu64 ": expected a JSON object", in, lineno);
    if (!v) sp_die("%s: line %" PRIu64 ": no \"%s\" field", in, lineno, key);
    if (!json_is_string(v)) sp_die("%s: line %" PRIu64 ": \"%s\" is not a string", in, lineno, key);
    add_doc(rd, json_string_value(v), json_string_length(v), in);
    json_decref(j);
}

/* Progress in the input's own bytes, the unit of the total (the compressed
 * ones for .gz/.zst); a pipe, which has no position, counts what it gave. */
static void progress(Reader *rd, FILE *raw, uint64_t base, size_t n)
{
    off_t pos = ftello(raw);
    rd->bytes = pos >= 0 ? base + (uint64_t)pos : rd->bytes + n;
    sp_progress_update(&rd->prog, rd->bytes);
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
        char buf[1 << 16];
        size_t got;
        rd->ndoc = 0;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
            gather(rd, buf, got);
            progress(rd, raw, base, got);
        }
        if (ferror(f)) sp_die("%s: %s", in, textin_error());
        add_doc(rd, rd->doc ? rd->doc : "", rd->ndoc, in);
        rd->ndoc = 0;
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        uint64_t lineno = 0;
        while ((n = getline(&line, &cap, f)) > 0) {
            lineno++;
            progress(rd, raw, base, (size_t)n);
            if (o->format == FMT_JSONL) jsonl_line(rd, line, (size_t)n, lineno, in);
            else if (o->split == SPLIT_LINE) {
                size_t k = (size_t)n;
                while (k && (line[k - 1] == '\n' || line[k - 1] == '\r')) k--;
                if (!blank_line(line, k)) add_doc(rd, line, k, in);
            } else if (blank_line(line, (size_t)n)) end_block(rd, in);
            else gather(rd, line, (size_t)n);
        }
        if (ferror(f)) sp_die("%s: %s", in, textin_error());
        free(line);
        end_block(rd, in);
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
    Bpe b;
    if (bpe_load(&b, dir) < 0) sp_die("%s", b.err);
    if (b.eot != 50256) sp_die("%s: <|endoftext|> is not token 50256: not a GPT-2 vocabulary", dir);
    BpeEnc e;
    if (bpe_enc_init(&e, &b) < 0) sp_die("%s", e.err);
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

    Win wn = {.o = &o, .w = w, .T = o.ctx, .pos = 1};
    tsz_record_init(&wn.rec);
    if (wn.T) {
        wn.R = o.rows ? o.rows : tsz_rows_per_record(wn.T * sizeof(int32_t));
        wn.tok = xmalloc(wn.R * wn.T * sizeof *wn.tok);
        wn.doc = xmalloc(wn.R * sizeof *wn.doc);
        wn.off = xmalloc(wn.R * sizeof *wn.off);
    }
    Reader rd = {.wn = &wn, .e = &e};
    if (o.threads > 1) {
        rd.nwk = o.threads;
        rd.wk = xcalloc(rd.nwk, sizeof *rd.wk);
        for (size_t t = 0; t < rd.nwk; t++) {
            rd.wk[t].b = &rd.batch;
            if (bpe_enc_init(&rd.wk[t].e, &b) < 0) sp_die("%s", rd.wk[t].e.err);
        }
        rd.batch.off = xcalloc(BATCH_DOCS + 1, sizeof *rd.batch.off);
        rd.batch.ids = xcalloc(BATCH_DOCS, sizeof *rd.batch.ids);
    }
    sp_progress_init(&rd.prog, o.progress, "gpt2-tok", "B", total_input_bytes(&o));
    for (int i = 0; i < o.ninputs; i++) read_input(&rd, o.inputs[i]);
    batch_run(&rd);
    win_finish(&wn);
    sp_progress_end(&rd.prog);
    tsz_writer_close_or_die(w);
    if (o.progress)
        fprintf(stderr, "gpt2-tok: %" PRIu64 " documents, %" PRIu64 " tokens, %" PRIu64 " rows\n", wn.docs,
                wn.tokens, wn.rows_out);
    free(rd.doc);
    bpe_ids_free(&rd.ids);
    for (size_t t = 0; t < rd.nwk; t++) bpe_enc_free(&rd.wk[t].e);
    if (rd.batch.ids)
        for (size_t i = 0; i < BATCH_DOCS; i++) bpe_ids_free(&rd.batch.ids[i]);
    free(rd.wk);
    free(rd.batch.ids);
    free(rd.batch.off);
    free(rd.batch.text);
    free(wn.tok);
    free(wn.doc);
    free(wn.off);
    tsz_record_free(&wn.rec);
    bpe_enc_free(&e);
    bpe_free(&b);
    return 0;
}
