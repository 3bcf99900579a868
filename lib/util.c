/* util.c: errors, checked allocation and numbers, progress, RNG. */
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *sp_prog = "saepipe";

void sp_set_prog(const char *argv0)
{
    const char *s = argv0 ? strrchr(argv0, '/') : NULL;
    sp_prog = s ? s + 1 : (argv0 ? argv0 : "saepipe");
}

static void vmsg(const char *fmt, va_list ap)
{
    int saved = errno;
    fprintf(stderr, "%s: ", sp_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    errno = saved;
}

void sp_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    exit(1);
}

void sp_usage_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", sp_prog);
    exit(2);
}

int sp_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

void sp_stage_opt(int c, const char **output, int *force, int *progress,
                  void (*usage)(FILE *, int))
{
    switch (c) {
    case 'o': *output = optarg; break;
    case 'f': *force = 1; break;
    case SP_OPT_PROGRESS: *progress = 1; break;
    case 'h': usage(stdout, 0); break;
    case 'V': sp_print_version();
    default: sp_usage_try();   // getopt said what was wrong
    }
}

void sp_stage_help(FILE *f, int width, const char *what)
{
    char out[64];
    snprintf(out, sizeof out, "write %s to FILE (atomically) [Default: stdout]", what);
    const char *lines[][2] = {
        {"-o, --output FILE", out},
        {"-f, --force", "write a binary stream even to a terminal"},
        {"    --progress", "show progress on stderr (also when stderr is a terminal)"},
        {"-h, --help", "this help"},
        {"-V, --version", "version"},
    };
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++)
        fprintf(f, "  %-*s%s\n", width, lines[i][0], lines[i][1]);
}

char *sp_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void sp_usage_try(void)
{
    fprintf(stderr, "Try '%s --help' for more information.\n", sp_prog);
    exit(2);
}

void sp_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
}

void sp_print_version(void)
{
    printf("%s (saepipe) %s\n", sp_prog, SAEPIPE_VERSION);
    exit(fclose(stdout) == 0 ? 0 : 1);
}

static void oom(size_t n)
{
    fprintf(stderr, "%s: out of memory (asked for %zu bytes)\n", sp_prog, n);
    exit(1);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

/* Blocks from this size on are placed on 2 MB boundaries and given
 * transparent huge pages (where the kernel offers them on request): a
 * fresh SAE's parameters, gradients and Adam state are ~1 GB at D=2048
 * F=16384, and touching them first costs one page fault per 4 KB, about a
 * third of a one-step run's CPU time on a virtual machine. */
#define HUGE_MIN (4u << 20)
#define HUGE_ALIGN (2u << 20)

void *xmalloc_aligned(size_t n)
{
    void *p = NULL;
    size_t align = n >= HUGE_MIN ? HUGE_ALIGN : 64;
    /* round up: aligned_alloc wants a multiple of the alignment */
    size_t m = (n + align - 1) & ~(align - 1);
    if (posix_memalign(&p, align, m ? m : align) != 0) oom(n);
#ifdef MADV_HUGEPAGE
    if (align == HUGE_ALIGN) madvise(p, m, MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
    return p;
}

void *xzalloc_aligned(size_t n)
{
    return memset(xmalloc_aligned(n), 0, n);
}

int sp_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return -1;
    uint64_t mul = 1;
    switch (*end) {
    case 'K': case 'k': mul = 1000ull; end++; break;
    case 'M': mul = 1000000ull; end++; break;
    case 'G': mul = 1000000000ull; end++; break;
    case 'T': mul = 1000000000000ull; end++; break;
    default: break;
    }
    if (*end) return -1;
    if (v > UINT64_MAX / mul) return -1;
    *out = (uint64_t)v * mul;
    return 0;
}

int sp_parse_long(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int sp_parse_double(const char *s, double *out)
{
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

uint64_t sp_opt_u64(const char *flag, const char *s, uint64_t lo, uint64_t hi)
{
    uint64_t v;
    if (sp_parse_u64(s, &v) < 0 || v < lo || v > hi)
        sp_usage_die("%s: expected a whole number from %llu to %llu, got '%s'", flag,
                     (unsigned long long)lo, (unsigned long long)hi, s ? s : "");
    return v;
}

long sp_opt_long(const char *flag, const char *s, long lo, long hi)
{
    long v;
    if (sp_parse_long(s, lo, hi, &v) < 0)
        sp_usage_die("%s: expected a whole number from %ld to %ld, got '%s'", flag, lo, hi,
                     s ? s : "");
    return v;
}

double sp_opt_double(const char *flag, const char *s, double lo, double hi)
{
    double v;
    if (sp_parse_double(s, &v) < 0 || v < lo || v > hi)
        sp_usage_die("%s: expected a number from %g to %g, got '%s'", flag, lo, hi, s ? s : "");
    return v;
}

int sp_opt_choice(const char *flag, const char *s, const SpChoice *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, c[i].name)) return c[i].value;
    char names[256] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", c[i].name);
    sp_usage_die("%s: expected one of %s, got '%s'", flag, names, s);
}

uint64_t sp_mem_available(void)
{
    FILE *fp = fopen("/proc/meminfo", "r");
    char line[256];
    uint64_t kb = 0;
    if (!fp) return 0;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "MemAvailable: %" SCNu64 " kB", &kb) == 1) break;
    fclose(fp);
    return kb * 1024;
}

void sp_check_binary_stdout(int force)
{
    if (!force && isatty(STDOUT_FILENO))
        sp_usage_die("stdout is a terminal: refusing to write a binary stream (redirect it, or -f)");
}

double sp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void sp_progress_init(SpProgress *p, int force, const char *label, const char *unit, uint64_t total)
{
    memset(p, 0, sizeof *p);
    p->enabled = force || isatty(STDERR_FILENO);
    p->label = label;
    p->unit = unit ? unit : "";
    p->total = total;
    p->t0 = p->last = sp_now();
}

static void progress_draw(SpProgress *p, double now, int final)
{
    double el = now - p->t0, rate = el > 0 ? p->done / el : 0;
    if (p->total) {
        double frac = (double)p->done / p->total;
        double eta = rate > 0 ? (p->total - (p->done < p->total ? p->done : p->total)) / rate : 0;
        fprintf(stderr, "\r%s: %s %llu/%llu %s (%.0f%%) %.3g %s/s ETA %.0fs   ", sp_prog,
                p->label, (unsigned long long)p->done, (unsigned long long)p->total, p->unit,
                100 * frac, rate, p->unit, eta);
    } else {
        fprintf(stderr, "\r%s: %s %llu %s %.3g %s/s %.0fs   ", sp_prog, p->label,
                (unsigned long long)p->done, p->unit, rate, p->unit, el);
    }
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

void sp_progress_update(SpProgress *p, uint64_t done)
{
    p->done = done;
    if (!p->enabled) return;
    double now = sp_now();
    if (now - p->last < 0.25) return;
    p->last = now;
    progress_draw(p, now, 0);
}

void sp_progress_end(SpProgress *p)
{
    if (p->enabled) progress_draw(p, sp_now(), 1);
}

const char *sp_in_name(const char *path) { return !path || !strcmp(path, "-") ? "stdin" : path; }
const char *sp_out_name(const char *path) { return !path || !strcmp(path, "-") ? "stdout" : path; }

char *sp_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

json_t *sp_json_real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

int sp_path_is_special(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && !S_ISREG(st.st_mode);
}

/* All of buf to fd, through short writes and EINTR: 0, or -1 with errno. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w, len -= (size_t)w;
    }
    return 0;
}

int sp_write_file_atomic(const char *path, const void *buf, size_t len)
{
    if (sp_path_is_special(path)) { /* write in place */
        int fd = open(path, O_WRONLY);
        if (fd < 0) return -1;
        if (write_all(fd, buf, len) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        return close(fd);
    }
    size_t n = strlen(path) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    if (write_all(fd, buf, len) < 0) goto fail;
    if (fsync(fd) < 0 || close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    if (rename(tmp, path) < 0) {
        fd = -1;
        goto fail;
    }
    free(tmp);
    return 0;
fail:;
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(tmp);
    errno = e;
    return -1;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sp_rng_seed(SpRng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sp_rng_u64(SpRng *r)
{
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

static double unit(uint64_t x) { return (x >> 11) * 0x1.0p-53; } /* [0, 1) */

double sp_rng_uniform(SpRng *r) { return unit(sp_rng_u64(r)); }

double sp_normal_of(uint64_t a, uint64_t b)
{
    /* Box-Muller; one value per call keeps the state simple to checkpoint */
    double u1 = unit(a), u2 = unit(b);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double sp_rng_normal(SpRng *r)
{
    uint64_t a = sp_rng_u64(r); /* a first: argument order is unspecified */
    return sp_normal_of(a, sp_rng_u64(r));
}

void sp_rng_normals(SpRng *r, float *out, size_t n)
{
    /* Box-Muller's pair: both the cos and the sin of one log and angle, in
     * float (half the time of double's log and sincos, 27 -> 13 ns a value:
     * an SAE's initial decoder is ~34M of them). u may round up to 1
     * (radius 0); kept off 0 as in sp_normal_of. */
    for (size_t i = 0; i < n; i += 2) {
        float u = (float)unit(sp_rng_u64(r)), c, s;
        if (u < 1e-30f) u = 1e-30f;
        float m = sqrtf(-2.0f * logf(u));
        sincosf(6.28318531f * (float)unit(sp_rng_u64(r)), &s, &c);
        out[i] = m * c;
        if (i + 1 < n) out[i + 1] = m * s;
    }
}

uint64_t sp_rng_below(SpRng *r, uint64_t n)
{
    if (n <= 1) return 0;
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = sp_rng_u64(r); while (x >= lim);
    return x % n;
}
