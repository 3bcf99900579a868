/* tsz: inspect, validate, convert, split and merge tensor streams.
 *   tsz info|json|cat|head|split|from-npy|to-npy ...
 * Each subcommand is one function; the stream logic is in lib/stream*.c. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"
#include "stream.h"

static void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: tsz COMMAND [OPTIONS] [FILE...]\n"
"Inspect, validate, convert, split and merge saepipe tensor streams (.tsz).\n"
"FILE '-' or no FILE is standard input. Stream output goes to stdout or -o.\n"
"\n"
"Commands:\n"
"  info [FILE...]            records, tensors (dtype, shape, totals), provenance,\n"
"                            compression ratio\n"
"  json [--full] [--headers] [FILE...]\n"
"                            one JSON object per record: its metadata, and each\n"
"                            tensor's dtype and shape (--full: values too)\n"
"  cat FILE...               validate every input, then write them as one stream\n"
"  head -n N [FILE]          the first N records [Default: 10]\n"
"  split -n K PREFIX [FILE]  K shards PREFIX.00.tsz ... balanced by rows, in order,\n"
"                            so that cat of the shards is the input again\n"
"  from-npy [--rows N] [--meta KEY=VALUE]... NAME=FILE.npy...\n"
"                            NumPy arrays to a stream; arrays that share axis 0 are\n"
"                            cut into records of N rows [Default: about 4 MB each];\n"
"                            the others go whole into the first record\n"
"  to-npy [--name NAME] OUT.npy [FILE]\n"
"                            one tensor, concatenated along axis 0, to a .npy\n"
"                            (bf16 is written as f32) [Default NAME: the first]\n"
"\n"
"Options:\n"
"  -o, --output FILE   write the stream to FILE (atomically) [Default: stdout]\n"
"  -f, --force         write a binary stream even to a terminal\n"
"      --level N       zstd level for written streams [Default: 3]\n"
"  -h, --help          this help\n"
"  -V, --version       version\n"
"\n"
"Exit status: 0 on success, 1 on a bad or unreadable input, 2 on bad usage.\n"
"The format is described in tsz(5).\n");
    exit(status);
}

typedef struct {
    const char *output;
    int force, full, headers;
    uint64_t n;
    uint64_t rows;
    const char *name;
    TszWriteOpts wo;
    json_t *meta;
    int argc;
    char **argv;     /* the whole command line, for provenance */
} Opts;

static TszWriter *open_out(const Opts *o, const char *stage)
{
    if (!o->output || !strcmp(o->output, "-")) sp_check_binary_stdout(o->force);
    TszWriter *w = tsz_writer_open(o->output ? o->output : "-", stage, o->argc, o->argv, &o->wo);
    tsz_writer_check(w);
    return w;
}

static TszReader *open_in(const char *path)
{
    TszReader *r = tsz_reader_open(path);
    tsz_reader_check(r);
    return r;
}

/* Rows of a record: axis 0 of its first tensor with a dimension. */
static uint64_t record_rows(const TszRecord *rec)
{
    for (size_t i = 0; i < rec->n; i++)
        if (rec->t[i].ndim >= 1) return rec->t[i].shape[0];
    return 0;
}

/* ---- info ---- */
typedef struct {
    char *name;
    TszDtype dtype;
    int ndim, varies;
    uint64_t shape[TSZ_MAX_DIMS], rows, bytes;
} InfoTensor;

static void print_header(const json_t *h, int i)
{
    const char *stage = json_string_value(json_object_get(h, "stage"));
    const char *ver = json_string_value(json_object_get(h, "version"));
    printf("  segment %d: %s %s:", i + 1, stage ? stage : "?", ver ? ver : "?");
    // a command line over a corpus can name thousands of files: show its
    // start and say how much is left (tsz json --headers has all of it)
    size_t k, shown = 0;
    json_t *a, *argv = json_object_get(h, "argv");
    json_array_foreach(argv, k, a) {
        const char *s = json_string_value(a);
        if (shown > 300 && json_array_size(argv) - k > 1) {
            printf(" ... (%zu more arguments)", json_array_size(argv) - k);
            break;
        }
        printf(" %s", s ? s : "?");
        shown += 1 + (s ? strlen(s) : 1);
    }
    printf("\n");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)h, key, v) {
        if (!strcmp(key, "stage") || !strcmp(key, "version") || !strcmp(key, "argv")) continue;
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("    %s: %.300s%s\n", key, s, strlen(s) > 300 ? "..." : "");
        free(s);
    }
}

static void cmd_info_one(const char *path)
{
    TszReader *r = open_in(path);
    TszRecord rec;
    tsz_record_init(&rec);
    InfoTensor *it = NULL;
    size_t nit = 0;
    while (tsz_read_or_die(r, &rec)) {
        for (size_t i = 0; i < rec.n; i++) {
            const TszTensor *t = &rec.t[i];
            size_t j;
            for (j = 0; j < nit && strcmp(it[j].name, t->name); j++) {}
            if (j == nit) {
                it = xrealloc(it, ++nit * sizeof *it);
                it[j] = (InfoTensor){.name = xstrdup(t->name), .dtype = t->dtype, .ndim = t->ndim};
                memcpy(it[j].shape, t->shape, sizeof t->shape);
            }
            if (t->dtype != it[j].dtype || t->ndim != it[j].ndim ||
                memcmp(t->shape + 1, it[j].shape + 1, sizeof(uint64_t) * (TSZ_MAX_DIMS - 1)))
                it[j].varies = 1;
            it[j].rows += t->ndim ? t->shape[0] : 1;
            it[j].bytes += t->nbytes;
        }
    }
    printf("file: %s\n", sp_in_name(path));
    const json_t *hs = tsz_reader_headers(r);
    printf("segments: %zu\n", json_array_size(hs));
    for (size_t i = 0; i < json_array_size(hs); i++) print_header(json_array_get(hs, i), (int)i);
    printf("records: %" PRIu64 "\n", tsz_reader_records(r));
    printf("tensors:\n");
    for (size_t j = 0; j < nit; j++) {
        printf("  %-32s %-4s (*", it[j].name, tsz_dtype_name(it[j].dtype));
        for (int d = 1; d < it[j].ndim; d++) printf(",%" PRIu64, it[j].shape[d]);
        printf(")%s  rows %" PRIu64 "  bytes %" PRIu64 "\n", it[j].varies ? " (varies)" : "",
               it[j].rows, it[j].bytes);
        free(it[j].name);
    }
    uint64_t in = tsz_reader_bytes_in(r), out = tsz_reader_bytes_out(r);
    printf("bytes: %" PRIu64 " compressed, %" PRIu64 " uncompressed, ratio %.2f\n", in, out,
           in ? (double)out / in : 0.0);
    free(it);
    tsz_record_free(&rec);
    tsz_reader_close(r);
}

/* ---- json ---- */
static json_t *json_value_at(const TszTensor *t, uint64_t i)
{
    switch (t->dtype) {
    case TSZ_I32: return json_integer(((const int32_t *)t->data)[i]);
    case TSZ_I64: return json_integer(((const int64_t *)t->data)[i]);
    case TSZ_U8: return json_integer(((const uint8_t *)t->data)[i]);
    case TSZ_U16: return json_integer(((const uint16_t *)t->data)[i]);
    case TSZ_U32: return json_integer(((const uint32_t *)t->data)[i]);
    default: {
        float f;
        tsz_to_f32(&f, (const uint8_t *)t->data + i * tsz_dtype_size(t->dtype), t->dtype, 1);
        double v = f;
        return v == v && v - v == 0 ? json_real(v) : json_null();   /* JSON has no NaN/Inf */
    }
    }
}

/* Nested arrays following the shape, as numpy's tolist() gives. */
static json_t *json_values(const TszTensor *t, int dim, uint64_t *at)
{
    if (dim == t->ndim) return json_value_at(t, (*at)++);
    json_t *a = json_array();
    for (uint64_t i = 0; i < t->shape[dim]; i++) json_array_append_new(a, json_values(t, dim + 1, at));
    return a;
}

static int dump_line(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
    int rc = s ? printf("%s\n", s) : -1;
    free(s);
    json_decref(j);
    return rc < 0 ? -1 : 0;
}

static void cmd_json_one(const Opts *o, const char *path)
{
    TszReader *r = open_in(path);
    TszRecord rec;
    tsz_record_init(&rec);
    size_t nh = 0;
    for (;;) {
        int got = tsz_read_or_die(r, &rec);
        const json_t *hs = tsz_reader_headers(r);
        for (; o->headers && nh < json_array_size(hs); nh++)
            if (dump_line(json_pack("{sO}", "header", json_array_get(hs, nh))) < 0) sp_die("stdout: write failed");
        if (!got) break;
        json_t *j = json_deep_copy(rec.meta);
        json_t *ts = json_object();
        for (size_t i = 0; i < rec.n; i++) {
            const TszTensor *t = &rec.t[i];
            json_t *shape = json_array();
            for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
            json_t *d = json_pack("{sssO}", "dtype", tsz_dtype_name(t->dtype), "shape", shape);
            json_decref(shape);
            uint64_t at = 0;
            if (o->full) json_object_set_new(d, "data", json_values(t, 0, &at));
            json_object_set_new(ts, t->name, d);
        }
        json_object_set_new(j, "tensors", ts);
        if (dump_line(j) < 0) sp_die("stdout: write failed");
    }
    tsz_record_free(&rec);
    tsz_reader_close(r);
}

/* ---- cat, head ---- */
static void cmd_cat(const Opts *o, int nin, char **in, uint64_t limit)
{
    TszWriter *w = open_out(o, "tsz");
    TszRecord rec;
    tsz_record_init(&rec);
    uint64_t n = 0;
    for (int i = 0; i < nin; i++) {
        TszReader *r = open_in(in[i]);
        tsz_writer_add_input(w, r);
        while (n < limit && tsz_read_or_die(r, &rec)) {
            tsz_write_or_die(w, &rec);
            n++;
        }
        tsz_reader_close(r);
    }
    tsz_record_free(&rec);
    tsz_writer_close_or_die(w);
}

/* ---- split ---- */
/* Copy rows [a, b) of rec: tensors whose axis 0 is the record's rows are
 * cut; the others go whole with the first piece (a == 0) only, so the
 * pieces together hold the record once. */
static void slice_record(TszRecord *dst, const TszRecord *src, uint64_t a, uint64_t b)
{
    uint64_t rows = record_rows(src);
    tsz_record_clear(dst);
    json_object_update(dst->meta, src->meta);
    for (size_t i = 0; i < src->n; i++) {
        const TszTensor *t = &src->t[i];
        if (t->ndim == 0 || t->shape[0] != rows) {
            if (a == 0) tsz_record_add_copy(dst, t->name, t->dtype, t->ndim, t->shape, t->data);
            continue;
        }
        uint64_t shape[TSZ_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        shape[0] = b - a;
        size_t rb = rows ? t->nbytes / rows : 0;
        tsz_record_add_copy(dst, t->name, t->dtype, t->ndim, shape, (const uint8_t *)t->data + a * rb);
    }
}

/* Shard i of K is PREFIX.NN.tsz, zero-padded so that the shell's sort
 * order is the shard order. */
static TszWriter *open_shard(const Opts *o, const char *prefix, uint64_t K, uint64_t i, json_t *prov)
{
    char num[32];
    unsigned width = 2;
    for (uint64_t k = K - 1; k >= 100 && width < 20; k /= 10) width++;
    snprintf(num, sizeof num, "%0*llu", (int)width, (unsigned long long)i);
    size_t len = strlen(prefix) + strlen(num) + 8;
    char *name = xmalloc(len);
    snprintf(name, len, "%s.%s.tsz", prefix, num);
    TszWriter *w = tsz_writer_open(name, "tsz", o->argc, o->argv, &o->wo);
    tsz_writer_check(w);
    json_object_set(tsz_writer_header(w), "inputs", prov);
    free(name);
    return w;
}

static void cmd_split(Opts *o, uint64_t K, const char *prefix, const char *path)
{
    /* pass 1: validate and count rows (a pipe is spooled to a temp file) */
    char spool[] = "/tmp/tsz-split-XXXXXX";
    const char *src = path;
    TszReader *r = open_in(path);
    TszRecord rec, piece;
    tsz_record_init(&rec);
    tsz_record_init(&piece);
    struct stat st;
    int spooled = 0;
    TszWriter *sw = NULL;
    if (!strcmp(path, "-") || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        int fd = mkstemp(spool);
        if (fd < 0) sp_die("cannot create a temporary file in /tmp");
        close(fd);
        sw = tsz_writer_open(spool, "tsz", 0, NULL, &o->wo);
        tsz_writer_check(sw);
        src = spool;
        spooled = 1;
    }
    uint64_t total = 0;
    while (tsz_read_or_die(r, &rec)) {
        total += record_rows(&rec);
        if (sw) tsz_write_or_die(sw, &rec);
    }
    if (sw) tsz_writer_close_or_die(sw);
    json_t *prov = json_deep_copy(tsz_reader_headers(r));
    tsz_reader_close(r);

    /* pass 2: shard i gets rows [i*total/K, (i+1)*total/K) */
    r = open_in(src);
    uint64_t row = 0, shard = 0;
    TszWriter *w = open_shard(o, prefix, K, 0, prov);
    while (tsz_read_or_die(r, &rec)) {
        uint64_t n = record_rows(&rec), done = 0;
        if (n == 0) tsz_write_or_die(w, &rec);   /* no rows: goes whole where we are */
        while (done < n) {
            uint64_t end = (shard + 1) * total / K;
            if (row == end) {
                tsz_writer_close_or_die(w);
                w = open_shard(o, prefix, K, ++shard, prov);
                continue;
            }
            uint64_t take = n - done < end - row ? n - done : end - row;
            slice_record(&piece, &rec, done, done + take);
            tsz_write_or_die(w, &piece);
            done += take;
            row += take;
        }
    }
    tsz_writer_close_or_die(w);
    while (++shard < K) tsz_writer_close_or_die(open_shard(o, prefix, K, shard, prov));
    json_decref(prov);
    tsz_reader_close(r);
    tsz_record_free(&rec);
    tsz_record_free(&piece);
    if (spooled) unlink(spool);
}

/* ---- from-npy, to-npy ---- */
static void cmd_from_npy(const Opts *o, int nin, char **in)
{
    if (nin == 0) sp_usage_die("from-npy: give at least one NAME=FILE.npy");
    NpyReader *np = xcalloc((size_t)nin, sizeof *np);
    char **names = xcalloc((size_t)nin, sizeof *names);
    for (int i = 0; i < nin; i++) {
        char *eq = strchr(in[i], '=');
        if (!eq || eq == in[i] || !eq[1]) sp_usage_die("from-npy: expected NAME=FILE.npy, got '%s'", in[i]);
        names[i] = strndup(in[i], (size_t)(eq - in[i]));
        if (npy_open(&np[i], eq + 1) < 0) sp_die("%s", np[i].err);
    }
    /* arrays sharing the first array's axis 0 are cut into records */
    uint64_t N = np[0].ndim ? np[0].shape[0] : 0, row_bytes = 0;
    int *cut = xcalloc((size_t)nin, sizeof *cut);
    for (int i = 0; i < nin; i++) {
        cut[i] = np[i].ndim >= 1 && np[i].shape[0] == N;
        if (cut[i]) row_bytes += np[i].row_bytes;
    }
    uint64_t per = o->rows ? o->rows : tsz_rows_per_record(row_bytes);
    TszWriter *w = open_out(o, "tsz");
    TszRecord rec;
    tsz_record_init(&rec);
    uint64_t done = 0;
    int first = 1;
    while (first || done < N) {
        uint64_t n = N - done < per ? N - done : per;
        tsz_record_clear(&rec);
        json_object_update(rec.meta, o->meta);
        for (int i = 0; i < nin; i++) {
            if (!cut[i] && !first) continue;
            uint64_t shape[TSZ_MAX_DIMS];
            memcpy(shape, np[i].shape, sizeof shape);
            if (cut[i]) shape[0] = n;
            TszTensor *t = tsz_record_add(&rec, names[i], np[i].dtype, np[i].ndim, shape);
            if (!t) sp_die("%s: array too large", np[i].path);
            uint64_t rows = cut[i] ? n : (np[i].ndim ? np[i].shape[0] : 1);
            if (npy_read_rows(&np[i], t->data, rows) != (int64_t)rows) sp_die("%s", np[i].err);
        }
        tsz_write_or_die(w, &rec);
        done += n;
        first = 0;
    }
    tsz_writer_close_or_die(w);
    for (int i = 0; i < nin; i++) {
        npy_close(&np[i]);
        free(names[i]);
    }
    free(np);
    free(names);
    free(cut);
    tsz_record_free(&rec);
}

static void cmd_to_npy(const Opts *o, const char *out, const char *path)
{
    TszReader *r = open_in(path);
    TszRecord rec;
    tsz_record_init(&rec);
    NpyWriter w;
    int open = 0;
    const char *want = o->name;
    TszDtype dt = TSZ_F32;
    int ndim = 0;
    uint64_t shape[TSZ_MAX_DIMS];
    void *conv = NULL;
    size_t conv_cap = 0;
    while (tsz_read_or_die(r, &rec)) {
        if (!want && rec.n) want = xstrdup(rec.t[0].name);
        const TszTensor *t = want ? tsz_record_get(&rec, want) : NULL;
        if (!t) continue;
        if (!open) {
            dt = t->dtype == TSZ_BF16 ? TSZ_F32 : t->dtype;
            ndim = t->ndim;
            memcpy(shape, t->shape, sizeof shape);
            if (npy_create(&w, out, dt, ndim, shape) < 0) sp_die("%s", w.err);
            open = 1;
        } else if (t->ndim != ndim || memcmp(t->shape + 1, shape + 1, sizeof(uint64_t) * (TSZ_MAX_DIMS - 1)) ||
                   (t->dtype != dt && !(t->dtype == TSZ_BF16 && dt == TSZ_F32))) {
            char a[160];
            npy_abort(&w);
            sp_die("%s: record %" PRIu64 ": tensor \"%s\" is %s, unlike the records before it",
                   sp_in_name(path), tsz_reader_records(r), want, tsz_tensor_desc(t, a, sizeof a));
        }
        const void *src = t->data;
        if (t->dtype == TSZ_BF16) {
            size_t need = tsz_tensor_numel(t) * 4;
            if (need > conv_cap) conv = xrealloc(conv, conv_cap = need);
            tsz_to_f32(conv, t->data, TSZ_BF16, tsz_tensor_numel(t));
            src = conv;
        }
        if (npy_append(&w, src, ndim ? t->shape[0] : 1) < 0) {
            npy_abort(&w);
            sp_die("%s", w.err);
        }
    }
    if (!open) sp_die("%s: no tensor named \"%s\"", sp_in_name(path), want ? want : "(any)");
    if (npy_finish(&w) < 0) sp_die("%s", w.err);
    if (want != o->name) free((char *)want);
    free(conv);
    tsz_record_free(&rec);
    tsz_reader_close(r);
}

static void add_meta(Opts *o, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) sp_usage_die("--meta: expected KEY=VALUE, got '%s'", kv);
    char *key = strndup(kv, (size_t)(eq - kv));
    json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);   /* JSON if it parses */
    if (!v) v = json_string(eq + 1);
    if (!v) sp_usage_die("--meta: value of %s is not valid UTF-8", key);
    json_object_set_new(o->meta, key, v);
    free(key);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    Opts o = {.n = 10, .argc = argc, .argv = argv};
    tsz_write_opts_default(&o.wo);
    o.meta = json_object();
    if (argc < 2) usage(stderr, 2);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) usage(stdout, 0);
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) sp_print_version();
    static const struct option lo[] = {
        {"output", 1, 0, 'o'}, {"force", 0, 0, 'f'}, {"level", 1, 0, 'L'}, {"full", 0, 0, 'F'},
        {"headers", 0, 0, 'H'}, {"rows", 1, 0, 'r'}, {"name", 1, 0, 'N'}, {"meta", 1, 0, 'M'},
        {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0, 0, 0, 0}};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "o:fn:hV", lo, NULL)) != -1) {
        switch (c) {
        case 'o': o.output = optarg; break;
        case 'f': o.force = 1; break;
        case 'L': o.wo.level = (int)sp_opt_long("--level", optarg, -7, 22); break;
        case 'F': o.full = 1; break;
        case 'H': o.headers = 1; break;
        case 'n': o.n = sp_opt_u64("-n", optarg, 0, UINT64_MAX); break;
        case 'r': o.rows = sp_opt_u64("--rows", optarg, 1, UINT64_MAX); break;
        case 'N': o.name = optarg; break;
        case 'M': add_meta(&o, optarg); break;
        case 'h': usage(stdout, 0); break;
        case 'V': sp_print_version(); break;
        default: sp_usage_try();   // getopt said what was wrong
        }
    }
    int nin = argc - optind;
    char **in = argv + optind;
    static char *dash[] = {"-"};
    if (!strcmp(cmd, "info") || !strcmp(cmd, "json")) {
        if (nin == 0) { in = dash; nin = 1; }
        for (int i = 0; i < nin; i++) {
            if (cmd[0] == 'i') cmd_info_one(in[i]);
            else cmd_json_one(&o, in[i]);
        }
        if (fclose(stdout) != 0) sp_die("stdout: write failed");
    } else if (!strcmp(cmd, "cat")) {
        if (nin == 0) { in = dash; nin = 1; }
        cmd_cat(&o, nin, in, UINT64_MAX);
    } else if (!strcmp(cmd, "head")) {
        if (nin > 1) sp_usage_die("head takes one input");
        cmd_cat(&o, 1, nin ? in : dash, o.n);
    } else if (!strcmp(cmd, "split")) {
        if (o.n < 1 || o.n > 100000) sp_usage_die("split: -n K must be from 1 to 100000");
        if (nin < 1 || nin > 2) sp_usage_die("split: expected -n K PREFIX [FILE]");
        cmd_split(&o, o.n, in[0], nin == 2 ? in[1] : "-");
    } else if (!strcmp(cmd, "from-npy")) {
        cmd_from_npy(&o, nin, in);
    } else if (!strcmp(cmd, "to-npy")) {
        if (nin < 1 || nin > 2) sp_usage_die("to-npy: expected OUT.npy [FILE]");
        cmd_to_npy(&o, in[0], nin == 2 ? in[1] : "-");
    } else {
        sp_usage_die("unknown command '%s'", cmd);
    }
    json_decref(o.meta);
    return 0;
}
