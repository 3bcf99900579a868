/* Unit tests for lib/topk.c and lib/sparse.c: bounded heaps against a
 * full sort, order of keys, merge of heaps, histogram bins, exact sums,
 * feature lists, CSR checks and the CSC transpose. */
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "sparse.h"
#include "topk.h"
#include "util.h"

typedef struct { uint64_t key; TopkGid id; } Cand;

static int cand_cmp(const void *a, const void *b)
{
    const Cand *x = a, *y = b;
    return topk_cmp(x->key, &x->id, y->key, &y->id);
}

/* Offer n candidates (few distinct keys: many ties) to a heap of cap and
 * compare its sorted content with the cap smallest of a full sort. */
static int heap_matches_sort(SpRng *rng, size_t n, size_t cap)
{
    Cand *c = xmalloc(n * sizeof *c);
    TopkHeaps h;
    topk_heaps_init(&h, 1, cap, 2);
    for (size_t i = 0; i < n; i++) {
        c[i].key = sp_rng_below(rng, 5);
        c[i].id = (TopkGid){(int64_t)sp_rng_below(rng, 4), (int64_t)sp_rng_below(rng, 3), (int64_t)i};
        long slot = topk_offer(&h, 0, c[i].key, &c[i].id);
        if (slot >= 0) h.tok[(size_t)slot * 2] = (int32_t)i;   /* window marks its candidate */
    }
    qsort(c, n, sizeof *c, cand_cmp);
    TopkEnt *e = xmalloc((cap + 1) * sizeof *e);
    size_t m = topk_sorted(&h, 0, e), want = n < cap ? n : cap;
    int good = m == want;
    for (size_t i = 0; good && i < m; i++)
        good = e[i].key == c[i].key && e[i].id.t == c[i].id.t && h.tok[e[i].slot * 2] == (int32_t)c[i].id.t;
    topk_heaps_free(&h);
    free(c), free(e);
    return good;
}

static void test_heaps(void)
{
    SpRng rng;
    sp_rng_seed(&rng, 1);
    static const size_t sizes[][2] = {{0, 3}, {2, 3}, {3, 3}, {50, 1}, {200, 7}, {1000, 20}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        ok(heap_matches_sort(&rng, sizes[i][0], sizes[i][1]), "heap of %zu keeps the smallest (key, gid) of %zu offers",
           sizes[i][1], sizes[i][0]);
    TopkHeaps h;
    topk_heaps_init(&h, 2, 0, 4);
    TopkGid g = {0, 0, 0};
    ok(topk_offer(&h, 1, 0, &g) == -1 && h.n[1] == 0, "a heap of capacity 0 refuses everything");
    topk_heaps_free(&h);
}

/* Two heaps fed halves, merged by offering their content to a third, hold
 * what one heap fed everything holds. */
static void test_merge(void)
{
    SpRng rng;
    sp_rng_seed(&rng, 2);
    TopkHeaps a, b, all, m;
    size_t cap = 6;
    topk_heaps_init(&a, 1, cap, 1), topk_heaps_init(&b, 1, cap, 1);
    topk_heaps_init(&all, 1, cap, 1), topk_heaps_init(&m, 1, cap, 1);
    for (int64_t i = 0; i < 300; i++) {
        TopkGid g = {i % 7, i % 5, i};
        uint64_t key = topk_hash(9, 1, 3, &g) >> 60;          /* 16 keys: ties */
        topk_offer(i % 3 ? &a : &b, 0, key, &g);
        topk_offer(&all, 0, key, &g);
    }
    TopkEnt e[8], f[8];
    for (int k = 0; k < 2; k++) {
        TopkHeaps *src = k ? &b : &a;
        size_t n = topk_sorted(src, 0, e);
        for (size_t i = 0; i < n; i++) topk_offer(&m, 0, e[i].key, &e[i].id);
    }
    size_t n1 = topk_sorted(&all, 0, e), n2 = topk_sorted(&m, 0, f);
    int same = n1 == n2;
    for (size_t i = 0; same && i < n1; i++) same = e[i].key == f[i].key && !memcmp(&e[i].id, &f[i].id, sizeof e[i].id);
    ok(same, "merging two heaps equals one heap over all offers (%zu entries)", n1);
    topk_heaps_free(&a), topk_heaps_free(&b), topk_heaps_free(&all), topk_heaps_free(&m);
}

static void test_keys(void)
{
    static const float v[] = {-3.5f, -1e-30f, 0.0f, 1e-30f, 0.5f, 0.5000001f, 2.0f, 1e30f};
    int good = 1;
    for (size_t i = 1; i < sizeof v / sizeof *v; i++) good &= topk_act_key(v[i]) < topk_act_key(v[i - 1]);
    ok(good, "act keys fall as activations rise (negative, tiny, large)");
    TopkGid g1 = {1, 2, 3}, g2 = {1, 2, 4};
    ok(topk_hash(0, 1, 2, &g1) != topk_hash(0, 1, 2, &g2) && topk_hash(0, 1, 2, &g1) != topk_hash(1, 1, 2, &g1) &&
       topk_hash(0, 1, 2, &g1) == topk_hash(0, 1, 2, &g1), "hash depends on seed and gid, and only on them");
    /* uniformity: the top bit of many hashes is set about half the time */
    size_t ones = 0, n = 20000;
    for (size_t i = 0; i < n; i++) {
        TopkGid g = {0, 0, (int64_t)i};
        ones += topk_hash(7, 1, 0, &g) >> 63;
    }
    ok(ones > n / 2 - 400 && ones < n / 2 + 400, "hash top bit set %zu of %zu times", ones, n);
}

static void test_hist(void)
{
    float e[TOPK_HIST_BINS + 1];
    topk_hist_edges(e);
    int good = 1;
    for (size_t b = 1; b < TOPK_HIST_BINS; b++) {
        float lo = e[b], hi = nextafterf(e[b + 1], 0);   /* just inside the bin */
        float mid = (float)sqrt((double)lo * (b + 1 < TOPK_HIST_BINS ? e[b + 1] : 2 * lo));
        good &= topk_hist_bin(nextafterf(lo, INFINITY)) == b && topk_hist_bin(mid) == b;
        if (b + 1 < TOPK_HIST_BINS) good &= topk_hist_bin(hi) == b;
        if (!good) { diag("bin %zu: [%g, %g)", b, lo, e[b + 1]); break; }
    }
    ok(good, "histogram bins agree with their edges (half octaves)");
    ok(topk_hist_bin(1e-9f) == 0 && topk_hist_bin(1e9f) == TOPK_HIST_BINS - 1 && topk_hist_bin(1.0f) == 25,
       "under- and overflow bins; 1.0 opens bin 25");
    ok(topk_density_bin(0, 10) == (size_t)-1 && topk_density_bin(10, 10) == TOPK_DENS_BINS - 1 &&
       topk_density_bin(1, 1000000000000ull) == 0 && topk_density_bin(1, 100) == 24,
       "log10 density bins: dead in none, 1 in the last, 1e-2 in bin 24");
}

static void test_sums(void)
{
    SpRng rng;
    sp_rng_seed(&rng, 3);
    float v[1000];
    for (size_t i = 0; i < 1000; i++) v[i] = (float)(sp_rng_uniform(&rng) * pow(10, sp_rng_below(&rng, 8) - 4.0));
    TopkSum fwd = 0, bwd = 0, parts = 0, p1 = 0;
    double ref = 0;
    for (size_t i = 0; i < 1000; i++) fwd += topk_fixed(v[i]), ref += v[i];
    for (size_t i = 1000; i-- > 0;) bwd += topk_fixed(v[i]);
    for (size_t i = 0; i < 333; i++) p1 += topk_fixed(v[i]);
    for (size_t i = 333; i < 1000; i++) parts += topk_fixed(v[i]);
    parts += p1;
    ok(fwd == bwd && fwd == parts, "fixed-point sums do not depend on order or grouping");
    double got = topk_sum_double(fwd);
    ok(fabs(got - ref) < 1e-6 * ref, "fixed-point sum %.9g vs double %.9g", got, ref);
    ok(topk_fixed(1e12f) == (TopkSum)(int64_t)1e12f * ((TopkSum)1 << 32) && topk_fixed(-0.5f) == -((TopkSum)1 << 31),
       "large and negative values are exact");
}

static void test_features(void)
{
    int32_t *ids = NULL;
    size_t n = 0;
    char err[128];
    int rc = sparse_parse_features("5,0-2,2,9", 10, &ids, &n, err, sizeof err);
    ok(rc == 0 && n == 5 && ids[0] == 0 && ids[2] == 2 && ids[3] == 5 && ids[4] == 9,
       "feature list: ranges, unsorted, repeated");
    free(ids);
    static const char *const badl[] = {"", "1,", "a", "3-1", "1-", "10", "-1", "1 2"};
    int good = 1;
    for (size_t i = 0; i < sizeof badl / sizeof *badl; i++) {
        ids = NULL;
        good &= sparse_parse_features(badl[i], 10, &ids, &n, err, sizeof err) < 0;
        free(ids);
    }
    ok(good, "bad feature lists are refused (last: %s)", err);
}

static void test_csr(void)
{
    /* (3 rows, F=5): row 0 {1: 2, 4: -1}, row 1 {}, row 2 {0: 3, 1: 0.5} */
    int64_t ip[] = {0, 2, 2, 4};
    int32_t ix[] = {1, 4, 0, 1};
    float vx[] = {2, -1, 3, 0.5f};
    SpCsr a = {3, 5, 4, ip, ix, vx};
    char err[128];
    ok(sparse_csr_check(&a, err, sizeof err) == 0, "a good CSR passes");
    SpCsc c = {0};
    int32_t col_of[5] = {0, 1, -1, -1, 2};
    sparse_csc_from_csr(&c, &a, col_of, 3);
    ok(c.nnz == 3 && c.colptr[1] == 1 && c.colptr[2] == 3 && c.colptr[3] == 3 && c.row[0] == 2 && c.row[1] == 0 &&
       c.row[2] == 2 && c.val[1] == 2 && c.val[2] == 0.5f, "CSC of the selected positive entries, rows ascending");
    float dense[15] = {0, 2, 0, 0, -1, 0, 0, 0, 0, 0, 3, 0.5f, 0, 0, 0};
    SpCsc d = {0};
    sparse_csc_from_dense(&d, dense, 3, 5, NULL, col_of, 3);
    ok(d.nnz == c.nnz && !memcmp(d.colptr, c.colptr, 4 * sizeof *c.colptr) && !memcmp(d.row, c.row, 3 * sizeof *c.row) &&
       !memcmp(d.val, c.val, 3 * sizeof *c.val), "CSC from dense equals CSC from CSR");
    sparse_csc_free(&c), sparse_csc_free(&d);
    int32_t ix2[] = {1, 1, 0, 1};
    a.indices = ix2;
    ok(sparse_csr_check(&a, err, sizeof err) < 0 && strstr(err, "not ascending"), "repeated index: %s", err);
    a.indices = ix, ip[1] = 3;
    ok(sparse_csr_check(&a, err, sizeof err) < 0 && strstr(err, "out of order"), "indptr going back: %s", err);
    ip[1] = 2, vx[2] = NAN;
    ok(sparse_csr_check(&a, err, sizeof err) < 0 && strstr(err, "not finite"), "NaN value: %s", err);
    SpCsrBuf b = {0};
    sparse_buf_reset(&b);
    sparse_buf_append_dense(&b, dense, 3, 5, NULL);
    vx[2] = 3;
    ok(b.rows == 3 && b.nnz == 4 && !memcmp(b.indptr, ip, sizeof ip) && !memcmp(b.indices, ix, sizeof ix) &&
       !memcmp(b.values, vx, sizeof vx), "dense rows to CSR");
    sparse_buf_free(&b);
}

int main(void)
{
    test_heaps();
    test_merge();
    test_keys();
    test_hist();
    test_sums();
    test_features();
    test_csr();
    return done_testing();
}
