/* util.h: process-wide helpers shared by every stage: errors, checked
 * allocation, checked number parsing, progress on stderr.
 *
 * lib/ code never prints or exits (it returns -1 with a message in its
 * handle); the sp_die* helpers here are for bin/ mains only. */
#ifndef SP_UTIL_H
#define SP_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define SAEPIPE_VERSION "0.1.0"

#if defined(__GNUC__)
#define SP_RESULT_USED __attribute__((warn_unused_result))
#define SP_NORETURN __attribute__((noreturn))
#define SP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SP_RESULT_USED
#define SP_NORETURN
#define SP_PRINTF(a, b)
#endif

/* The program name used in every message ("gpt2-tok"); set once by main. */
extern const char *sp_prog;
void sp_set_prog(const char *argv0);

/* "prog: message\n" on stderr, exit 1 (runtime failure). */
void sp_die(const char *fmt, ...) SP_NORETURN SP_PRINTF(1, 2);
/* "prog: message\nTry 'prog --help' for more information.\n", exit 2. */
void sp_usage_die(const char *fmt, ...) SP_NORETURN SP_PRINTF(1, 2);
/* "prog: message\n" on stderr, no exit. */
void sp_warn(const char *fmt, ...) SP_PRINTF(1, 2);
/* The library's error convention: the message into err[errlen], -1 back. */
int sp_fail(char *err, size_t errlen, const char *fmt, ...) SP_PRINTF(3, 4);
/* The same into obj->err, a char array of a struct that carries its error. */
#define SP_FAIL(obj, ...) sp_fail((obj)->err, sizeof (obj)->err, __VA_ARGS__)
/* "DIR/NAME", allocated. */
char *sp_path_join(const char *dir, const char *name);
/* The options of every stage that writes a stream: -o FILE, -f, --progress,
 * -h, -V. SP_STAGE_LONGOPTS ends a stage's getopt_long table; the switch's
 * default case hands what getopt_long returned to sp_stage_opt, which sets
 * these, calls usage(stdout, 0) for -h, or is a usage error. */
enum { SP_OPT_PROGRESS = 0x1000 };
#define SP_STAGE_LONGOPTS                                                         \
    {"output", required_argument, 0, 'o'}, {"force", no_argument, 0, 'f'},      \
    {"progress", no_argument, 0, SP_OPT_PROGRESS}, {"help", no_argument, 0, 'h'}, \
    {"version", no_argument, 0, 'V'}, { 0, 0, 0, 0 }
/* Their lines in --help, descriptions from column width+2; `what` is what
 * -o writes ("the stream"). */
void sp_stage_help(FILE *f, int width, const char *what);
void sp_stage_opt(int c, const char **output, int *force, int *progress,
                  void (*usage)(FILE *, int));
/* After getopt's own message on a bad flag: point at --help, exit 2. */
void sp_usage_try(void) SP_NORETURN;
/* "prog version" on stdout, exit 0. */
void sp_print_version(void) SP_NORETURN;

/* Allocation that dies with a message on failure (bin/ and lib/ both use
 * these: running out of memory is not a recoverable input error). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* 64-byte aligned, for tensors handed to BLAS (4 MB and more: 2 MB
 * aligned, on transparent huge pages); free with free(). */
void *xmalloc_aligned(size_t n);
/* The same, zeroed. */
void *xzalloc_aligned(size_t n);

/* Checked numbers: 0 on success, -1 on junk, overflow or out of range.
 * sp_parse_u64 takes K/M/G/T suffixes (powers of 1000) and k/Ki/Mi/Gi
 * is not accepted: "1M" is 1000000, "4096" is 4096. */
int sp_parse_u64(const char *s, uint64_t *out) SP_RESULT_USED;
int sp_parse_long(const char *s, long lo, long hi, long *out) SP_RESULT_USED;
int sp_parse_double(const char *s, double *out) SP_RESULT_USED;
/* Flag versions for option parsing: die with a usage error naming the flag. */
uint64_t sp_opt_u64(const char *flag, const char *s, uint64_t lo, uint64_t hi);
long sp_opt_long(const char *flag, const char *s, long lo, long hi);
double sp_opt_double(const char *flag, const char *s, double lo, double hi);
/* An enum flag: the value of the name s in c (n entries), or a usage error
 * "--arch: expected one of relu, topk, batchtopk, got 'foo'". */
typedef struct { const char *name; int value; } SpChoice;
int sp_opt_choice(const char *flag, const char *s, const SpChoice *c, size_t n);
#define SP_OPT_CHOICE(flag, s, tab) sp_opt_choice(flag, s, tab, sizeof tab / sizeof *tab)

/* MemAvailable of /proc/meminfo in bytes; 0 when unknown (no limit to check). */
uint64_t sp_mem_available(void);

/* Refuse to write binary to a terminal unless forced (zstd's rule). */
void sp_check_binary_stdout(int force);

/* Monotonic seconds. */
double sp_now(void);

/* Progress on stderr, shown when stderr is a terminal or forced (--progress).
 * Rate-limited to a few updates a second; total 0 means unknown. */
typedef struct {
    int enabled;
    const char *label;
    uint64_t total, done;
    double t0, last;
    const char *unit;
} SpProgress;
void sp_progress_init(SpProgress *p, int force, const char *label, const char *unit, uint64_t total);
void sp_progress_update(SpProgress *p, uint64_t done);
void sp_progress_end(SpProgress *p);

/* Name used in messages for a path: "-" is spelled "stdin"/"stdout". */
const char *sp_in_name(const char *path);
const char *sp_out_name(const char *path);

/* Read a whole (small) file; NUL-terminated; NULL with errno on failure. */
char *sp_read_file(const char *path, size_t *len);

/* A JSON real, or null where v is NaN or infinite (JSON has neither). */
json_t *sp_json_real_or_null(double v);

/* 1 when path exists and is not a regular file (a device such as /dev/null,
 * a FIFO): written in place, since a temp file renamed onto it would
 * replace it. */
int sp_path_is_special(const char *path);
/* Write a whole buffer to path atomically (temp file in the same directory,
 * fsync, rename; in place where sp_path_is_special). 0 or -1 with errno. */
int sp_write_file_atomic(const char *path, const void *buf, size_t len) SP_RESULT_USED;

/* A small deterministic RNG (splitmix64 seeding xoshiro256**); state lives
 * in the struct, never in globals, so runs are reproducible. */
typedef struct { uint64_t s[4]; } SpRng;
void sp_rng_seed(SpRng *r, uint64_t seed);
uint64_t sp_rng_u64(SpRng *r);
double sp_rng_uniform(SpRng *r);            /* [0, 1) */
double sp_rng_normal(SpRng *r);             /* N(0, 1) */
/* sp_rng_normal's value from the two draws it takes (a then b): lets a
 * caller draw serially and transform in parallel, the same numbers. */
double sp_normal_of(uint64_t a, uint64_t b);
/* n N(0, 1) values, two draws a pair of them (Box-Muller's cos and sin, in float) */
void sp_rng_normals(SpRng *r, float *out, size_t n);
uint64_t sp_rng_below(SpRng *r, uint64_t n); /* [0, n), unbiased */

#endif
