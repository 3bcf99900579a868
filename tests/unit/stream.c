/* Unit tests of lib/stream*.c and lib/dtype.c: round trips for every dtype,
 * empty and large tensors, concatenation, truncation at every byte, bit
 * flips, and the f16/bf16 conversions against known values. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stream.h"
#include "tap.h"

static char tmpdir[] = "/tmp/sp-stream-XXXXXX";

static char *tmpname(const char *base)
{
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, base);
    return p;
}

/* A record with one tensor of each dtype filled from the RNG. */
static void fill_record(TszRecord *rec, SpRng *rng, uint64_t rows)
{
    tsz_record_clear(rec);
    for (int d = 0; d < TSZ_NDTYPE; d++) {
        uint64_t shape[2] = {rows, 3 + (uint64_t)d};
        char name[32];
        snprintf(name, sizeof name, "t_%s", tsz_dtype_name((TszDtype)d));
        TszTensor *t = tsz_record_add(rec, name, (TszDtype)d, 2, shape);
        uint8_t *p = t->data;
        for (size_t i = 0; i < t->nbytes; i++) p[i] = (uint8_t)sp_rng_u64(rng);
    }
    json_object_set_new(rec->meta, "kind", json_string("test"));
    json_object_set_new(rec->meta, "rows", json_integer((json_int_t)rows));
    json_object_set_new(rec->meta, "pi", json_real(3.25));
    json_t *a = json_array();
    json_array_append_new(a, json_string("x\xc3\xa9"));
    json_array_append_new(a, json_true());
    json_array_append_new(a, json_null());
    json_object_set_new(rec->meta, "list", a);
}

static int records_equal(const TszRecord *a, const TszRecord *b)
{
    if (a->n != b->n || !json_equal(a->meta, b->meta)) return 0;
    for (size_t i = 0; i < a->n; i++) {
        const TszTensor *x = &a->t[i], *y = tsz_record_get(b, a->t[i].name);
        if (!y || x->dtype != y->dtype || x->ndim != y->ndim || x->nbytes != y->nbytes) return 0;
        if (memcmp(x->shape, y->shape, sizeof x->shape)) return 0;
        if (x->nbytes && memcmp(x->data, y->data, x->nbytes)) return 0;
    }
    return 1;
}

/* Write nrec records generated from seed into path (async: on the writer's
 * thread); 0, or -1 with the writer's message in last_err. */
static char last_err[512];
static int write_stream_opts(const char *path, uint64_t seed, int nrec, uint64_t rows, int shuffle, int async)
{
    TszWriteOpts o;
    tsz_write_opts_default(&o);
    o.shuffle = shuffle;
    o.async = async;
    char *argv[] = {"unit", "--flag"};
    TszWriter *w = tsz_writer_open(path, "unit-test", 2, argv, &o);
    if (tsz_writer_error(w) || tsz_writer_async(w) != async) {
        snprintf(last_err, sizeof last_err, "%s", tsz_writer_error(w) ? tsz_writer_error(w) : "no writer thread");
        tsz_writer_abort(w);
        return -1;
    }
    TszRecord rec;
    tsz_record_init(&rec);
    SpRng rng;
    sp_rng_seed(&rng, seed);
    int rc = 0;
    for (int i = 0; i < nrec && rc == 0; i++) {
        fill_record(&rec, &rng, rows + (uint64_t)i);
        rc = tsz_write(w, &rec);
    }
    tsz_record_free(&rec);
    if (rc == 0) return tsz_writer_close(w, last_err, sizeof last_err);
    snprintf(last_err, sizeof last_err, "%s", tsz_writer_error(w));
    tsz_writer_abort(w);
    return -1;
}

static int write_stream(const char *path, uint64_t seed, int nrec, uint64_t rows, int shuffle)
{
    return write_stream_opts(path, seed, nrec, rows, shuffle, 0);
}

/* Whether two files hold the same bytes. */
static int same_bytes(const char *a, const char *b)
{
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    int c, d, same = f && g;
    while (same && (c = fgetc(f), d = fgetc(g), c == d) && c != EOF) {}
    same = same && c == d;
    if (f) fclose(f);
    if (g) fclose(g);
    return same;
}

/* Read path and compare against the records seed generates; returns the
 * number of records matched, or -1 on a read error (message in err). */
static int read_stream(const char *path, uint64_t seed, uint64_t rows, char *err, size_t errlen)
{
    TszReader *r = tsz_reader_open(path);
    TszRecord got, want;
    tsz_record_init(&got);
    tsz_record_init(&want);
    SpRng rng;
    sp_rng_seed(&rng, seed);
    int n = 0, rc;
    while (!tsz_reader_error(r) && (rc = tsz_read(r, &got)) == 1) {
        fill_record(&want, &rng, rows + (uint64_t)n);
        if (!records_equal(&got, &want)) {
            n = -2;
            break;
        }
        n++;
    }
    if (tsz_reader_error(r)) {
        snprintf(err, errlen, "%s", tsz_reader_error(r));
        n = -1;
    }
    tsz_reader_close(r);
    tsz_record_free(&got);
    tsz_record_free(&want);
    return n;
}

static size_t file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return (size_t)n;
}

static void copy_prefix(const char *src, const char *dst, size_t n, long flip_at, int mask)
{
    FILE *f = fopen(src, "rb"), *g = fopen(dst, "wb");
    for (size_t i = 0; i < n; i++) {
        int c = fgetc(f);
        if ((long)i == flip_at) c ^= mask;
        fputc(c, g);
    }
    fclose(f);
    fclose(g);
}

static void test_dtypes(void)
{
    ok(f32_to_f16(1.0f) == 0x3c00 && f32_to_f16(-2.0f) == 0xc000 && f32_to_f16(65504.f) == 0x7bff,
       "f16 encodes exact values");
    ok(f32_to_f16(1e6f) == 0x7c00 && f32_to_f16(5.96046448e-8f) == 0x0001, "f16 overflow and smallest subnormal");
    ok(f32_to_f16(1.0f + 0x1p-11f) == 0x3c00 && f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02,
       "f16 rounds ties to even");
    uint16_t nan = f32_to_f16(NAN);
    ok((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff), "f16 keeps NaN");
    int all = 1;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = f16_to_f32((uint16_t)h);
        if (f == f && f32_to_f16(f) != h) all = 0;
    }
    ok(all, "f16 -> f32 -> f16 is the identity on every non-NaN half");
    ok(f32_to_bf16(1.0f) == 0x3f80 && bf16_to_f32(0x4049) == 3.140625f, "bf16 known values");
    ok(f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80 && f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82,
       "bf16 rounds ties to even");
    uint8_t a[24], b[24], c[24];
    for (int i = 0; i < 24; i++) a[i] = (uint8_t)i;
    tsz_shuffle(b, a, 6, 4);
    tsz_unshuffle(c, b, 6, 4);
    ok(b[1] == 4 && b[6] == 1 && !memcmp(a, c, 24), "shuffle groups byte planes and inverts");
    float fs[3] = {1.5f, -2.f, 0.f};
    uint16_t hs[3];
    float back[3];
    tsz_convert(hs, TSZ_BF16, fs, TSZ_F32, 3);
    tsz_to_f32(back, hs, TSZ_BF16, 3);
    ok(!memcmp(fs, back, sizeof fs), "convert f32 -> bf16 -> f32 exact on representable values");
}

int main(void)
{
    if (!mkdtemp(tmpdir)) return 1;
    char err[512];
    test_dtypes();

    for (int shuffle = -1; shuffle <= 1; shuffle++) {
        const char *p = tmpname("rt.tsz");
        ok(write_stream(p, 7, 5, 40, shuffle) == 0, "write 5 records (shuffle=%d)", shuffle);
        ok(read_stream(p, 7, 40, err, sizeof err) == 5, "round trip every dtype (shuffle=%d)", shuffle);
    }

    /* the writer's own thread: the same bytes; its write errors reach
     * the caller by tsz_writer_close at the latest */
    for (int shuffle = -1; shuffle <= 1; shuffle++) {
        const char *pa = tmpname("async.tsz"), *ps = tmpname("sync.tsz");
        ok(write_stream_opts(pa, 9, 7, 300, shuffle, 1) == 0 && write_stream_opts(ps, 9, 7, 300, shuffle, 0) == 0 &&
           same_bytes(pa, ps) && read_stream(pa, 9, 300, err, sizeof err) == 7,
           "async writer: the same bytes as without (shuffle=%d)", shuffle);
    }
    if (access("/dev/full", W_OK) == 0)
        ok(write_stream_opts("/dev/full", 9, 7, 3000, 0, 1) < 0 && strstr(last_err, "/dev/full") &&
           strstr(last_err, "write failed"), "async writer to a full device: %s", last_err);
    else
        ok(1, "async writer to a full device # SKIP no /dev/full");

    /* empty stream, empty tensors */
    const char *pe = tmpname("empty.tsz");
    ok(write_stream(pe, 1, 0, 0, -1) == 0 && read_stream(pe, 1, 0, err, sizeof err) == 0,
       "stream with no records is valid and empty");
    const char *pz = tmpname("zero.tsz");
    ok(write_stream(pz, 2, 1, 0, -1) == 0 && read_stream(pz, 2, 0, err, sizeof err) == 1,
       "tensors with a zero dimension round trip");

    /* a large record (~48 MB) */
    {
        const char *pl = tmpname("large.tsz");
        TszWriter *w = tsz_writer_open(pl, "unit", 0, NULL, NULL);
        TszRecord rec;
        tsz_record_init(&rec);
        uint64_t shape[2] = {4096, 3072};
        TszTensor *t = tsz_record_add(&rec, "acts", TSZ_F32, 2, shape);
        float *x = t->data;
        SpRng rng;
        sp_rng_seed(&rng, 3);
        for (size_t i = 0; i < 4096 * 3072; i++) x[i] = (float)sp_rng_normal(&rng);
        int rc = tsz_write(w, &rec);
        ok(rc == 0 && tsz_writer_close(w, err, sizeof err) == 0, "write a 48 MB record");
        TszReader *r = tsz_reader_open(pl);
        TszRecord got;
        tsz_record_init(&got);
        ok(tsz_read(r, &got) == 1 && records_equal(&got, &rec) && tsz_read(r, &got) == 0,
           "read it back whole");
        tsz_reader_close(r);
        tsz_record_free(&got);
        tsz_record_free(&rec);
    }

    /* concatenation: cat a b is a's records then b's */
    {
        const char *pa = tmpname("a.tsz"), *pb = tmpname("b.tsz"), *pc = tmpname("ab.tsz");
        write_stream(pa, 11, 3, 10, -1);
        write_stream(pb, 11, 3, 10, -1);  /* same seed: b continues nothing, restarts */
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "cat %s %s > %s", pa, pb, pc);
        ok(system(cmd) == 0, "cat two streams");
        TszReader *r = tsz_reader_open(pc);
        TszRecord rec;
        tsz_record_init(&rec);
        int n = 0;
        while (tsz_read(r, &rec) == 1) n++;
        ok(!tsz_reader_error(r) && n == 6 && tsz_reader_segments(r) == 2 &&
           json_array_size(tsz_reader_headers(r)) == 2, "concatenation reads 6 records in 2 segments");
        const json_t *h = tsz_reader_header(r);
        ok(h && !strcmp(json_string_value(json_object_get(h, "stage")), "unit-test"),
           "header carries the stage");
        tsz_reader_close(r);
        tsz_record_free(&rec);
    }

    /* rows declared in the end records: one file, two catted, one without, cut, stdin */
    {
        const char *pr = tmpname("rows.tsz"), *pn = tmpname("norows.tsz"), *p2 = tmpname("rows2.tsz");
        const char *pm = tmpname("mixed.tsz"), *pt = tmpname("rowscut.tsz");
        SpRng rng;
        sp_rng_seed(&rng, 4);
        TszRecord rec;
        tsz_record_init(&rec);
        TszWriter *w = tsz_writer_open(pr, "unit", 0, NULL, NULL);
        for (int i = 0; i < 3; i++) {
            fill_record(&rec, &rng, 5 + (uint64_t)i);
            if (tsz_write(w, &rec) < 0) break;
        }
        tsz_writer_set_rows(w, 18);
        ok(tsz_writer_close(w, err, sizeof err) == 0, "a stream declaring 18 rows");
        tsz_record_free(&rec);
        write_stream(pn, 3, 2, 4, -1);
        uint64_t rows = 0;
        ok(tsz_file_rows(pr, &rows) == 1 && rows == 18, "its end record tells the rows (%llu)",
           (unsigned long long)rows);
        TszReader *r = tsz_reader_open(pr);
        int n = 0;
        tsz_record_init(&rec);
        while (tsz_read(r, &rec) == 1) n++;
        ok(!tsz_reader_error(r) && n == 3, "the stream with zbytes and rows reads: %s",
           tsz_reader_error(r) ? tsz_reader_error(r) : "ok");
        tsz_reader_close(r);
        tsz_record_free(&rec);
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "cat %s %s %s > %s && cat %s %s > %s", pr, pr, pr, p2, pr, pn, pm);
        ok(system(cmd) == 0, "cat three copies; cat one with a stream without rows");
        ok(tsz_file_rows(p2, &rows) == 1 && rows == 54, "three segments: 54 rows (%llu)", (unsigned long long)rows);
        ok(tsz_file_rows(pn, &rows) == 0 && tsz_file_rows(pm, &rows) == 0,
           "no rows told when a segment does not declare them");
        size_t sz = file_size(pr);
        int none = 1;
        for (size_t cut = 0; cut < sz; cut++) {
            copy_prefix(pr, pt, cut, -1, 0);
            none &= tsz_file_rows(pt, &rows) == 0;
        }
        ok(none, "no rows told for any of the %zu truncations", sz);
        ok(tsz_file_rows("-", &rows) == 0 && tsz_file_rows(tmpname("missing.tsz"), &rows) == 0,
           "stdin and a missing file: not told");
    }

    /* truncation at every byte offset and bit flips */
    {
        const char *ps = tmpname("small.tsz"), *pt = tmpname("cut.tsz");
        write_stream(ps, 5, 3, 4, -1);
        size_t n = file_size(ps);
        int all_fail = 1, named = 1;
        for (size_t cut = 0; cut < n; cut++) {
            copy_prefix(ps, pt, cut, -1, 0);
            int got = read_stream(pt, 5, 4, err, sizeof err);
            if (got != -1) {
                all_fail = 0;
                diag("cut at %zu of %zu read %d records without error", cut, n, got);
            } else if (!strstr(err, "cut.tsz: ")) {
                named = 0;
            }
        }
        ok(all_fail, "truncation at each of %zu byte offsets is an error", n);
        ok(named, "every truncation error names the file");
        copy_prefix(ps, pt, n, -1, 0);
        ok(read_stream(pt, 5, 4, err, sizeof err) == 3, "the whole copy reads");
        /* A flip must be an error, or (in the bits zstd's frame header
         * ignores) leave the records exactly as written: never garbage. */
        int flips_caught = 1, harmless = 0;
        for (size_t at = 0; at < n; at++) {
            for (int mask = 1; mask < 256; mask <<= 3) {
                copy_prefix(ps, pt, n, (long)at, mask);
                int got = read_stream(pt, 5, 4, err, sizeof err);
                if (got == 3) harmless++;
                if (got != -1 && got != 3) {
                    flips_caught = 0;
                    diag("bit flip at %zu (mask %d) gave %d", at, mask, got);
                }
            }
        }
        ok(flips_caught && harmless < 16, "bit flips at each of %zu bytes: all detected but %d that change nothing", n, harmless);
        copy_prefix(ps, pt, n - 5, -1, 0);
        read_stream(pt, 5, 4, err, sizeof err);
        ok(strstr(err, "truncated") != NULL, "truncation inside a frame says truncated: %s", err);
    }

    /* length that disagrees with shape and dtype */
    {
        TszRecord rec;
        tsz_record_init(&rec);
        uint64_t shape[2] = {8, 256};
        TszTensor *t = tsz_record_add(&rec, "x", TSZ_F32, 2, shape);
        memset(t->data, 0, t->nbytes);
        t->nbytes = 4096;   /* lie: half the data */
        const char *pb = tmpname("bad.tsz");
        TszWriter *w = tsz_writer_open(pb, "unit", 0, NULL, NULL);
        int rc = tsz_write(w, &rec);
        rc |= tsz_writer_close(w, err, sizeof err);
        t->nbytes = 8192;
        tsz_record_free(&rec);
        ok(rc == 0 && read_stream(pb, 0, 0, err, sizeof err) == -1 &&
           strstr(err, "tensor \"x\" is 4096 bytes but (8,256) f32 needs 8192"),
           "short tensor data is refused: %s", err);
    }

    /* a writer that aborts leaves no file at its path */
    {
        const char *pa = tmpname("aborted.tsz");
        TszWriter *w = tsz_writer_open(pa, "unit", 0, NULL, NULL);
        TszRecord rec;
        tsz_record_init(&rec);
        int rc = tsz_write(w, &rec);
        tsz_writer_abort(w);
        tsz_record_free(&rec);
        ok(rc == 0 && access(pa, F_OK) != 0, "an aborted writer leaves nothing at its path");
    }

    /* not a stream, empty, missing */
    {
        const char *pn = tmpname("notes.txt");
        FILE *f = fopen(pn, "w");
        fputs("hello, this is not zstd\n", f);
        fclose(f);
        ok(read_stream(pn, 0, 0, err, sizeof err) == -1 && strstr(err, "not a tsz stream"),
           "text is not a stream: %s", err);
        f = fopen(pn, "w");
        fclose(f);
        ok(read_stream(pn, 0, 0, err, sizeof err) == -1 && strstr(err, "empty input"),
           "empty file: %s", err);
        ok(read_stream(tmpname("missing.tsz"), 0, 0, err, sizeof err) == -1 &&
           strstr(err, "cannot open"), "missing file: %s", err);
    }

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) diag("could not remove %s", tmpdir);
    return done_testing();
}
